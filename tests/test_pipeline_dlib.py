"""The default pipeline against the face_recognition library's own expected results, on the
same photos (../shared/datasets/face_recognition/expected.json)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from safeface import load_image
from safeface.hazmat.vision import DEFAULT_THRESHOLD, Outcome, Pipeline, PipelineConfig, cosine, euclidean_equivalent, pick_subject


@pytest.fixture(scope="module")
def expected(fr_images: Path) -> dict:  # type: ignore[type-arg]
    return json.loads((fr_images / "expected.json").read_text())


def _fr_box(face_box: tuple[float, float, float, float]) -> list[int]:
    x1, y1, x2, y2 = face_box
    return [int(y1), int(x2), int(y2), int(x1)]  # (top, right, bottom, left)


def test_hog_boxes_exact(dlib_engine, fr_images: Path, expected: dict) -> None:  # type: ignore[no-untyped-def,type-arg]
    for rel, boxes in expected["hog_boxes_upsample_1"].items():
        img = load_image(fr_images / rel)
        faces = dlib_engine.detect(img, "hog", 1)
        assert sorted(_fr_box(f.box) for f in faces) == sorted(boxes), rel


def test_image_shapes(fr_images: Path, expected: dict) -> None:  # type: ignore[type-arg]
    for rel, shape in expected["image_shapes"].items():
        assert list(load_image(fr_images / rel).shape) == shape


@pytest.mark.slow
def test_face_counts(dlib_engine, fr_images: Path, expected: dict) -> None:  # type: ignore[no-untyped-def,type-arg]
    for rel, count in expected["face_counts_hog_upsample_1"].items():
        assert len(dlib_engine.detect(load_image(fr_images / rel), "hog", 1)) == count, rel


@pytest.mark.slow
def test_raw_descriptors_equal_dlibs_own_and_expected_distances(dlib_engine, fr_images: Path, expected: dict) -> None:  # type: ignore[no-untyped-def,type-arg]
    """Our chips give the descriptors that dlib computes from the whole image and its 5-point
    shape (what face_recognition does) within 1e-5, and the peer's expected Euclidean distances."""
    import dlib

    from safeface.modelstore import registry

    rec = dlib.face_recognition_model_v1(str(registry.verified_path("dlib-resnet-v1")))
    shape = dlib.shape_predictor(str(registry.verified_path("dlib-shape-5")))
    hog = dlib.get_frontal_face_detector()

    def ours(rel: str) -> np.ndarray:
        img = load_image(fr_images / rel)
        faces = dlib_engine.detect(img, "hog", 1)
        return dlib_engine.raw_descriptors(dlib_engine.chips(img, faces[:1]))[0]  # type: ignore[no-any-return]

    def dlibs(rel: str) -> np.ndarray:
        img = load_image(fr_images / rel)
        rect = hog(img, 1)[0]
        return np.array(rec.compute_face_descriptor(img, shape(img, rect), 0))

    base = ours("test_images/obama.jpg")
    assert np.abs(base - dlibs("test_images/obama.jpg")).max() < 1e-5
    assert abs(np.linalg.norm(base) - expected["embedding_norm_approx"]) < 0.05
    for rel, dist in expected["euclidean_distance_from_obama"].items():
        other = ours(rel)
        assert np.abs(other - dlibs(rel)).max() < 1e-5, rel
        assert abs(np.linalg.norm(base - other) - dist) < 2e-3, rel


@pytest.mark.slow
def test_raw_descriptors_equal_face_recognition_when_installed(dlib_engine, fr_images: Path) -> None:  # type: ignore[no-untyped-def]
    """The peer itself, where it is installed (pip install --no-deps face_recognition)."""
    fr = pytest.importorskip("face_recognition", reason="the face_recognition peer is not installed (benchmarks install it)")
    img = load_image(fr_images / "test_images" / "obama2.jpg")
    faces = dlib_engine.detect(img, "hog", 1)
    ours = dlib_engine.raw_descriptors(dlib_engine.chips(img, faces[:1]))[0]
    peer = fr.face_encodings(fr.load_image_file(str(fr_images / "test_images" / "obama2.jpg")))[0]
    assert np.abs(ours - peer).max() < 1e-5


@pytest.mark.slow
def test_same_and_different_decisions(dlib_engine, fr_images: Path, expected: dict) -> None:  # type: ignore[no-untyped-def,type-arg]
    pipe = Pipeline(dlib_engine)
    # Each photo embedded once (obama.jpg is in every pair).
    rels = sorted({rel for pairs in (expected["same_person_below_0_6"], expected["different_person_above_0_6"])
                   for pair in pairs for rel in pair})
    emb = dict(zip(rels, pipe.embed_many([fr_images / rel for rel in rels])))
    for a, b in expected["same_person_below_0_6"]:
        ea, eb = emb[a], emb[b]
        assert cosine(ea.embedding, eb.embedding) >= DEFAULT_THRESHOLD, (a, b)  # type: ignore[arg-type]
    for a, b in expected["different_person_above_0_6"]:
        ea, eb = emb[a], emb[b]
        assert cosine(ea.embedding, eb.embedding) < DEFAULT_THRESHOLD, (a, b)  # type: ignore[arg-type]


def test_t1_has_six_faces(dlib_engine, datasets: Path) -> None:  # type: ignore[no-untyped-def]
    faces = Pipeline(dlib_engine).detect(datasets / "insightface" / "t1.jpg")
    assert len(faces) == 6
    for f in faces:
        assert f.landmarks.shape == (5, 2)
        x1, y1, x2, y2 = f.box
        assert (f.landmarks[:, 0] > x1 - 5).all() and (f.landmarks[:, 0] < x2 + 5).all()


@pytest.mark.slow
def test_outcomes_are_explicit(dlib_engine, fr_images: Path) -> None:  # type: ignore[no-untyped-def]
    pipe = Pipeline(dlib_engine, PipelineConfig(steps=(("hog", 1),)))
    blank = np.full((200, 200, 3), 128, dtype=np.uint8)
    none = pipe.embed(blank)
    assert none.outcome is Outcome.NO_FACE and none.embedding is None and not none.found
    two = load_image(fr_images / "examples" / "two_people.jpg")
    several = pipe.embed(two)
    assert several.outcome is Outcome.SEVERAL_FACES and len(several.faces) == 2
    assert several.face is pick_subject(several.faces, two.shape)
    largest = Pipeline(dlib_engine, PipelineConfig(steps=(("hog", 1),), pick="largest")).embed(two)
    assert largest.face is max(largest.faces, key=lambda f: f.area)
    one = pipe.embed(fr_images / "test_images" / "obama.jpg")
    assert one.outcome is Outcome.FOUND
    assert one.embedding is not None and one.embedding.dtype == np.float32
    assert abs(float(np.linalg.norm(one.embedding)) - 1.0) < 1e-5


def test_flip_average_is_mirror_invariant(dlib_engine, fr_images: Path) -> None:  # type: ignore[no-untyped-def]
    img = load_image(fr_images / "test_images" / "obama.jpg")
    pipe = Pipeline(dlib_engine)
    face = pipe.detect(img)[:1]
    chips = dlib_engine.chips(img, face)
    a = pipe.embed_chips(chips)
    b = pipe.embed_chips(np.ascontiguousarray(chips[:, :, ::-1]))
    assert np.abs(a - b).max() < 1e-6
    plain = Pipeline(dlib_engine, PipelineConfig(flip=False)).embed_chips(chips)
    assert np.abs(a - plain).max() > 1e-4  # flipping changes the descriptor


def test_center_prior_only_when_asked(dlib_engine) -> None:  # type: ignore[no-untyped-def]
    blank = np.full((120, 120, 3), 90, dtype=np.uint8)
    assert Pipeline(dlib_engine, PipelineConfig(steps=(("hog", 1),))).detect(blank) == []
    faces = Pipeline(dlib_engine, PipelineConfig(steps=(("hog", 1),), center_prior=True)).detect(blank)
    assert len(faces) == 1 and faces[0].detector == "center-prior"


def test_threshold_euclidean_equivalent() -> None:
    assert 0.55 < euclidean_equivalent(DEFAULT_THRESHOLD) < 0.62


def test_pick_rules_on_a_bystander_at_the_edge() -> None:
    from safeface.hazmat.vision import Face

    lm = np.zeros((5, 2), np.float32)
    framed = Face(box=(80.0, 80.0, 170.0, 170.0), score=1.0, landmarks=lm)  # 90 px, centred
    bystander = Face(box=(150.0, 40.0, 250.0, 150.0), score=1.0, landmarks=lm)  # 100 px, at the edge
    faces = [bystander, framed]
    shape = (250, 250, 3)
    assert pick_subject(faces, shape, "largest") is bystander
    assert pick_subject(faces, shape, "central") is framed
    assert pick_subject(faces, shape) is framed
    # A much larger face wins even off centre: the penalty is on distance, not a veto.
    near = Face(box=(120.0, 20.0, 250.0, 150.0), score=1.0, landmarks=lm)
    small = Face(box=(110.0, 110.0, 140.0, 140.0), score=1.0, landmarks=lm)
    assert pick_subject([small, near], shape) is near
    assert pick_subject([], shape) is None
    with pytest.raises(ValueError, match="pick rule"):
        pick_subject(faces, shape, "biggest")
    with pytest.raises(ValueError, match="pick rule"):
        PipelineConfig(pick="biggest")


def test_subject_is_the_framed_face_not_a_closer_bystander(dlib_engine, datasets: Path) -> None:  # type: ignore[no-untyped-def]
    """LFW photos where someone nearer the camera stands at the edge: the default pick embeds the
    person the photo is of, the largest face would not match that person's other photo."""
    lfw = datasets / "lfw-dev" / "images"
    for name, probe, ref in (("Kosuke_Kitajima", 2, 1), ("Tammy_Lynn_Michaels", 1, 2)):
        img = load_image(lfw / name / f"{name}_{probe:04d}.jpg")
        default = Pipeline(dlib_engine).embed(img)
        largest = Pipeline(dlib_engine, PipelineConfig(pick="largest")).embed(img)
        assert default.outcome is Outcome.SEVERAL_FACES and largest.outcome is Outcome.SEVERAL_FACES
        assert default.face is not None and largest.face is not None and default.face.box != largest.face.box
        other = Pipeline(dlib_engine).embed(lfw / name / f"{name}_{ref:04d}.jpg").embedding
        assert other is not None and default.embedding is not None and largest.embedding is not None
        assert cosine(default.embedding, other) >= DEFAULT_THRESHOLD > cosine(largest.embedding, other)


@pytest.mark.slow
def test_hog_detection_from_several_threads_matches_one(dlib_engine, datasets: Path) -> None:  # type: ignore[no-untyped-def]
    from concurrent.futures import ThreadPoolExecutor

    image = load_image(datasets / "insightface" / "t1.jpg")

    def boxes(_: int) -> list[tuple[int, int, int, int]]:
        return sorted((r.left(), r.top(), r.right(), r.bottom()) for r, _ in dlib_engine.detect_rects(image, "hog", 1))

    alone = boxes(0)
    with ThreadPoolExecutor(4) as pool:
        together = list(pool.map(boxes, range(8)))
    assert len(alone) == 6 and all(b == alone for b in together)


@pytest.mark.slow
def test_embed_many_on_threads_matches_one_thread(dlib_engine, fr_images: Path, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    from PIL import Image

    paths = []
    for src in sorted((fr_images / "test_images").glob("*.jpg")) + [fr_images / "examples" / "two_people.jpg"]:
        # Files at half size (every face still found): HOG at upsample 1 on the 2333 px obama3.jpg
        # was most of the time, and the claim is about threads, not sizes.
        paths.append(tmp_path / src.name)
        Image.open(src).reduce(2).save(paths[-1], quality=95)
    steps = (("hog", 1),)
    one = Pipeline(dlib_engine, PipelineConfig(steps=steps, threads=1)).embed_many(paths)
    many = Pipeline(dlib_engine, PipelineConfig(steps=steps, threads=3)).embed_many(paths)
    assert [r.outcome for r in one] == [r.outcome for r in many]
    assert sum(r.found for r in one) >= 5
    for a, b in zip(one, many):
        assert (a.face is None) == (b.face is None)
        if a.embedding is not None and b.embedding is not None and a.face is not None and b.face is not None:
            assert a.face.box == b.face.box
            np.testing.assert_allclose(a.embedding, b.embedding, atol=1e-6)
    with pytest.raises(ValueError, match="threads"):
        PipelineConfig(threads=-1)
