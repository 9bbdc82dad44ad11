"""Capture quality (PA-02): the measures on real photographs and degraded copies of them, and the
guard refusing a poor enrolment capture for a purpose that requires quality, naming what to fix."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any, cast

import cv2
import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
from policy_support import consent, edit_config, images, make_workspace  # noqa: E402
from policy_support import last_call  # noqa: E402
from array_pipeline import open_sf  # noqa: E402

from safeface.capture.quality import QualityThresholds, assess, pose_of  # noqa: E402
from safeface.errors import ConfigError, PolicyViolation  # noqa: E402
from safeface.imageio import load_image  # noqa: E402


@pytest.fixture(scope="module")
def obama() -> tuple[np.ndarray, Any]:
    from policy_support import CachedPipeline

    img = load_image(images() / "obama.jpg")
    faces = CachedPipeline().detect(img)
    assert len(faces) == 1
    for a in (img, faces[0].landmarks):
        a.setflags(write=False)  # shared by the module's tests: a change in place fails, not leaks
    return img, faces[0]


def test_a_clear_frontal_photo_passes(obama: Any) -> None:
    img, face = obama
    r = assess(img, face.landmarks, 1)
    assert r.ok and r.score > 50, r.to_dict()
    yaw, pitch, roll = r.pose
    assert abs(yaw) < 15 and abs(pitch) < 15 and abs(roll) < 10


@pytest.mark.parametrize("degrade,reason,words", [
    (lambda a: cv2.GaussianBlur(a, (0, 0), 8.0), "sharpness", "hold still"),
    (lambda a: (a.astype(np.float32) * 0.12).astype(np.uint8), "brightness", "add light"),
    (lambda a: np.clip(a.astype(np.float32) * 3.5 + 60, 0, 255).astype(np.uint8), "clipped", "glare"),
])
def test_degraded_captures_fail_with_the_reason_and_an_action(obama: Any, degrade: Any, reason: str,
                                                              words: str) -> None:
    img, face = obama
    # The pixels change, the face stays where it was: the original landmarks still hold.
    r = assess(degrade(img), face.landmarks, 1)
    assert not r.ok and reason in r.reasons, r.to_dict()
    assert words in r.advice


def _noisy(a: np.ndarray, sigma: float, seed: int = 0) -> np.ndarray:
    """Sensor-like noise: Gaussian, `sigma` grey levels in each channel."""
    n = np.random.default_rng(seed).normal(0.0, sigma, a.shape)
    return cast(np.ndarray, np.clip(a.astype(np.float32) + n, 0, 255).astype(np.uint8))


def _jpeg(a: np.ndarray, q: int = 75) -> np.ndarray:
    """The image as a phone would store it: JPEG at quality `q`, decoded again."""
    ok, buf = cv2.imencode(".jpg", cv2.cvtColor(a, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, q])
    assert ok
    return cast(np.ndarray, cv2.cvtColor(cv2.imdecode(buf, cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB))


def _fails_for_focus_as_taken_and_as_jpeg(capture: np.ndarray, landmarks: Any) -> list[Any]:
    """assess() of `capture` and of its JPEG (q75): each must fail for "sharpness"."""
    reports = []
    for c in (capture, _jpeg(capture)):
        r = assess(c, landmarks, 1)
        assert not r.ok and "sharpness" in r.reasons, r.to_dict()
        reports.append(r)
    return reports


@pytest.mark.parametrize("sigma,noise", [(8.0, 8.0), (8.0, 12.0), (6.0, 8.0)])
def test_a_blurred_capture_with_noise_added_fails_for_focus(obama: Any, sigma: float, noise: float) -> None:
    """Noise is fine-scale energy whatever the focus: a defocused face with sensor-like noise on
    it (a low-light phone capture), stored as JPEG or not, must still fail "sharpness" and ask to
    let the camera focus, not pass on the noise's fine detail."""
    img, face = obama
    blurred = cv2.GaussianBlur(img, (0, 0), sigma)
    for r in _fails_for_focus_as_taken_and_as_jpeg(_noisy(blurred, noise), face.landmarks):
        assert "hold still" in r.advice


def test_an_honest_capture_and_its_jpeg_pass_with_their_noise_measured(obama: Any) -> None:
    """The noise a clean photograph, its JPEG and a sharp face with a little sensor noise carry
    is measured and stays under the floor; focus is not taken from them by the denoising."""
    img, face = obama
    for capture in (img, _jpeg(img), _jpeg(img, 50), _noisy(img, 6.0), _jpeg(_noisy(img, 6.0))):
        r = assess(capture, face.landmarks, 1)
        assert r.ok and r.score > 50, r.to_dict()
        noise = next(c for c in r.components if c.name == "noise")
        assert noise.ok and noise.value < QualityThresholds().max_noise / 2, r.to_dict()


def test_a_very_noisy_capture_is_refused_asking_for_light(obama: Any) -> None:
    """A capture too noisy for recognition fails the noise floor, saying what to fix; the floor is
    a purpose's to set like the others."""
    img, face = obama
    noisy = _noisy(img, 60.0)
    r = assess(noisy, face.landmarks, 1)
    assert not r.ok and "noise" in r.reasons and "sharpness" not in r.reasons, r.to_dict()
    assert "too noisy" in r.advice and "add light" in r.advice
    assert r.to_dict()["components"]["noise"]["limit"] == f"<= {QualityThresholds().max_noise:g} grey levels"
    loose = QualityThresholds.from_mapping({"max_noise": 40})
    assert loose.max_noise == 40.0 and assess(noisy, face.landmarks, 1, loose).ok
    with pytest.raises(ConfigError):
        QualityThresholds.from_mapping({"max_noise": -1})


def _lfw_faces(pick: slice) -> list[tuple[int, str, np.ndarray, Any]]:
    """(seed, person, image, landmarks) of the first image of LFW dev people `pick` chooses,
    those with one face found; the test is skipped without LFW dev."""
    from policy_support import CachedPipeline, datasets

    root = datasets() / "lfw-dev" / "images"
    people = sorted(p for p in root.iterdir() if p.is_dir())[pick] if root.is_dir() else []
    if not people:
        pytest.skip(f"LFW dev is absent ({root}); set SAFEFACE_DATASETS to the shared datasets")
    pipe, out = CachedPipeline(), []
    for n, person in enumerate(people):
        img = load_image(sorted(person.glob("*.jpg"))[0])
        faces = pipe.detect(img)
        if len(faces) == 1:
            out.append((n, person.name, img, faces[0].landmarks))
    return out


def test_lfw_faces_blurred_with_noise_fail_while_their_clean_and_jpeg_copies_pass() -> None:
    """Real 250 px LFW faces (where the blur and the noise are large against the face, as in a
    low-light phone capture): each clean image and its JPEG pass; blurred at sigma 4 with noise of
    6 grey levels, and at sigma 6 with 8, every one fails for focus (before the noise was taken
    out, 98% and 95% of such copies of LFW dev's faces passed)."""
    faces = _lfw_faces(slice(None, 40, 4))
    for n, name, img, lm in faces:
        for capture in (img, _jpeg(img)):
            r = assess(capture, lm, 1)
            assert r.ok, (name, r.to_dict())
        for sigma, noise in ((4.0, 6.0), (6.0, 8.0)):
            blurred = cv2.GaussianBlur(img, (0, 0), sigma)
            for capture in (_noisy(blurred, noise, n), _jpeg(_noisy(blurred, noise, n))):
                r = assess(capture, lm, 1)
                assert "sharpness" in r.reasons, (name, sigma, noise, r.to_dict())
    assert len(faces) >= 6


def _impulses(a: np.ndarray, share: float, seed: int = 0) -> np.ndarray:
    """Salt and pepper: `share` of the pixels dead (0) or hot (255), as bit errors or a failing
    sensor leave them."""
    m = np.random.default_rng(seed).random(a.shape[:2])
    out = a.copy()
    out[m < share / 2] = 0
    out[m > 1 - share / 2] = 255
    return out


def _textured(a: np.ndarray, landmarks: Any, blur: float, texture: float, rows: tuple[int, int] = (3, 8),
              seed: int = 0) -> np.ndarray:
    """The face defocused (Gaussian, `blur` pixels) and fine texture (Gaussian, `texture` grey
    levels, the same in each channel) laid over the rows rows[0]/8 to rows[1]/8 of the region focus
    is judged on (eye line less 0.6 eye distances to 1.2 below it), the rest left as the blur made
    it: the untouched rows are the flattest, so noise read there alone is the blur's, not the
    texture's."""
    from safeface.capture.quality import eye_centres

    out = cv2.GaussianBlur(a, (0, 0), blur).astype(np.float32)
    left, right = eye_centres(landmarks)
    mid, d = (left + right) / 2, float(np.hypot(*(right - left)))
    h, w = out.shape[:2]
    x1, x2 = int(max(0, mid[0] - 0.9 * d)), int(min(w, mid[0] + 0.9 * d))
    y1, y2 = int(max(0, mid[1] - 0.6 * d)), int(min(h, mid[1] + 1.2 * d))
    ys, ye = y1 + (y2 - y1) * rows[0] // 8, y1 + (y2 - y1) * rows[1] // 8
    patch = np.random.default_rng(seed).normal(0.0, texture, (ye - ys, x2 - x1))
    out[ys:ye, x1:x2] += patch[..., None]
    return cast(np.ndarray, np.clip(out, 0, 255).astype(np.uint8))


def _denoised(a: np.ndarray, seed: int = 0) -> np.ndarray:
    """A phone's night mode: sensor noise of 10 grey levels, then non-local means."""
    return cast(np.ndarray, cv2.fastNlMeansDenoisingColored(_noisy(a, 10.0, seed), None, 10, 10, 7, 21))


def _low_light(a: np.ndarray, seed: int = 0) -> np.ndarray:
    """A dim room: a quarter of the light with 1.5 grey levels of sensor noise, amplified 4 times
    and stored as JPEG (q75)."""
    dim = np.round(a.astype(np.float32) / 4 + np.random.default_rng(seed).normal(0.0, 1.5, a.shape))
    return _jpeg(np.clip(dim * 4, 0, 255).astype(np.uint8))


@pytest.mark.parametrize("sigma,share", [(8.0, 0.02), (12.0, 0.02), (8.0, 0.05), (8.0, 0.01)])
def test_a_blurred_capture_with_impulses_fails_for_focus(obama: Any, sigma: float, share: float) -> None:
    """Impulses (dead and hot pixels) are the finest detail there is, and so few that the flattest
    quarter of the region reads them as little noise: before, a defocused face with 2% of them
    passed for sharp. They are median-filtered away before focus is judged. (obama.jpg's face is
    large: sigma 8 there is about what sigma 3 is on a 250 px LFW face.)"""
    img, face = obama
    blurred = cv2.GaussianBlur(img, (0, 0), sigma)
    for r in _fails_for_focus_as_taken_and_as_jpeg(_impulses(blurred, share), face.landmarks):
        assert "hold still" in r.advice


@pytest.mark.parametrize("blur,texture,rows", [(8.0, 25.0, (3, 8)), (8.0, 12.0, (3, 8)), (8.0, 25.0, (4, 8)),
                                               (8.0, 12.0, (2, 4)), (8.0, 25.0, (0, 8))])
def test_a_blurred_capture_with_texture_laid_over_part_of_it_fails_for_focus(
        obama: Any, blur: float, texture: float, rows: tuple[int, int]) -> None:
    """Texture laid over a defocused face everywhere but its top rows (then those rows are the
    flattest quarter, and read no noise), over its lower half, over the eyes alone or over all of
    it: fine energy that does not line up with the face's own edges is not focus."""
    img, face = obama
    _fails_for_focus_as_taken_and_as_jpeg(_textured(img, face.landmarks, blur, texture, rows), face.landmarks)


def test_honest_captures_pass_focus_after_jpeg_low_light_and_denoising(obama: Any) -> None:
    """What the median filter and the coherence take out is not a sharp face's detail: the photo,
    its JPEG down to q30, a dim capture amplified and stored as JPEG, and a night mode's denoised
    capture keep passing."""
    img, face = obama
    for capture in (img, _jpeg(img), _jpeg(img, 30), _low_light(img), _denoised(img)):
        r = assess(capture, face.landmarks, 1)
        assert r.ok and r.score > 50, r.to_dict()


def test_lfw_faces_blurred_with_impulses_or_partial_texture_fail_while_honest_copies_pass() -> None:
    """Real 250 px LFW faces: each clean image, its JPEG (q50) and a denoised noisy copy pass;
    blurred at sigma 4 with 2% impulses, at sigma 6 with texture of 25 grey levels below the top
    3/8 of the region, and at 4 with 12 over the lower half, every one fails for focus (before,
    every such copy of 23 LFW dev people passed, and the recogniser matched 13% of them)."""
    faces = _lfw_faces(slice(2, 60, 6))
    for n, name, img, lm in faces:
        for capture in (img, _jpeg(img, 50), _denoised(img, n)):
            r = assess(capture, lm, 1)
            assert r.ok, (name, r.to_dict())
        for capture in (_impulses(cv2.GaussianBlur(img, (0, 0), 4.0), 0.02, n),
                        _textured(img, lm, 6.0, 25.0, (3, 8), n), _textured(img, lm, 4.0, 12.0, (4, 8), n)):
            r = assess(capture, lm, 1)
            assert "sharpness" in r.reasons, (name, r.to_dict())
    assert len(faces) >= 6


def test_a_small_face_asks_to_move_closer(obama: Any) -> None:
    img, face = obama
    r = assess(img, face.landmarks, 1, QualityThresholds(min_eye_distance=10_000))
    assert r.reasons == ("eye_distance",) and "move closer" in r.advice


def test_a_face_cut_by_the_frame_and_a_second_face_fail(obama: Any) -> None:
    img, face = obama
    x1, y1, x2, y2 = (int(v) for v in face.box)
    cut = img[:, : (x1 + x2) // 2 + 5]  # the right half of the face is outside the picture
    lm = face.landmarks.copy()
    r = assess(cut, lm, 1)
    assert "in_frame" in r.reasons and "centre the face" in r.advice
    assert "face_count" in assess(img, face.landmarks, 2).reasons
    assert assess(img, None, 0).reasons == ("face",)


def test_pose_from_five_points_follows_a_turned_head() -> None:
    # Eye corners and nose base of a head-like 3D shape (eye distance 1, nose 0.35 in front of the
    # eye centres), turned and projected.
    pts = np.array([[0.75, 0, -0.2], [0.25, 0, 0], [-0.75, 0, -0.2], [-0.25, 0, 0], [0, 0.74, 0.25]])
    for yaw in (-25.0, 0.0, 20.0):
        a = np.radians(yaw)
        rot = np.array([[np.cos(a), 0, np.sin(a)], [0, 1, 0], [-np.sin(a), 0, np.cos(a)]])
        img_pts = (pts @ rot.T)[:, :2] * 100 + 200
        est_yaw, est_pitch, roll = pose_of(img_pts)
        assert abs(est_yaw - yaw) < 6 and abs(roll) < 1 and abs(est_pitch) < 8


def test_only_a_face_that_could_be_taken_for_the_subject_counts_as_a_second_face(obama: Any) -> None:
    """A bystander small in the background or far off to the side leaves the capture unambiguous;
    a face of comparable size about as central as the subject does not."""
    img, face = obama
    lm = np.asarray(face.landmarks, np.float64)
    centre = lm[:4].mean(axis=0)
    d = float(np.linalg.norm((lm[0] + lm[1]) / 2 - (lm[2] + lm[3]) / 2))
    small = (lm - centre) * 0.5 + centre + np.array([1.2 * d, 0.0])  # half the size, beside the subject
    h, w = img.shape[:2]
    edge = lm - centre + np.array([w - 0.5 * d, centre[1]])  # same size, at the picture's right edge
    near = lm + np.array([0.6 * d, 0.0])  # same size, as central as the subject
    mid = np.array([w / 2, h / 2])
    assert np.linalg.norm(edge[:4].mean(axis=0) - mid) > np.linalg.norm(centre - mid) + d  # really off to the side
    for others in ([small], [edge], [small, edge]):
        r = assess(img, lm, 1 + len(others), others=others)
        assert "face_count" not in r.reasons, r.to_dict()
    r = assess(img, lm, 2, others=[near])
    assert "face_count" in r.reasons and "ask others to step out" in r.advice
    assert "face_count" in assess(img, lm, 3, others=[small, near]).reasons


def test_a_strong_profile_and_a_tiny_face_fail_at_the_defaults(obama: Any) -> None:
    """The default floors are loose enough for every correctly matched LFW dev photograph
    (benches/capture_quality.py) and still refuse a head turned towards profile and a far face."""
    pts = np.array([[0.75, 0, -0.2], [0.25, 0, 0], [-0.75, 0, -0.2], [-0.25, 0, 0], [0, 0.74, 0.25]])
    a = np.radians(75.0)
    rot = np.array([[np.cos(a), 0, np.sin(a)], [0, 1, 0], [-np.sin(a), 0, np.cos(a)]])
    img, face = obama
    lm = np.asarray(face.landmarks, np.float64)
    centre = lm[:4].mean(axis=0)
    profile = (pts @ rot.T)[:, :2] * 60 + centre  # eye distance 60 px before the turn
    r = assess(img, profile, 1)
    assert "yaw" in r.reasons and "face the camera" in r.advice, r.to_dict()
    f = 18.0 / float(np.linalg.norm((lm[0] + lm[1]) / 2 - (lm[2] + lm[3]) / 2))  # eyes 18 px apart
    tiny = cv2.resize(img, None, fx=f, fy=f, interpolation=cv2.INTER_AREA)
    r = assess(tiny, lm * f, 1)
    assert "eye_distance" in r.reasons and "move closer" in r.advice, r.to_dict()
    assert QualityThresholds().max_yaw < 75 and QualityThresholds().min_eye_distance >= 20


def test_a_covered_lower_face_fails_at_the_mask_confidence_bar(obama: Any) -> None:
    img, face = obama
    assert "lower_face" not in [c.name for c in assess(img, face.landmarks, 1).components]  # not judged
    assert assess(img, face.landmarks, 1, mask_confidence=0.6).ok  # above the detector's decision, under the bar
    r = assess(img, face.landmarks, 1, mask_confidence=0.95)
    assert r.reasons == ("lower_face",) and r.score == 0 and "take off the mask" in r.advice
    # A purpose's own bar: 1 accepts any mask, 0.1 refuses what the default lets by.
    assert assess(img, face.landmarks, 1, QualityThresholds(max_mask_confidence=1.0), mask_confidence=1.0).ok
    assert assess(img, face.landmarks, 1, QualityThresholds(max_mask_confidence=0.1), mask_confidence=0.2).reasons == (
        "lower_face",)


def test_thresholds_from_a_purpose_are_checked() -> None:
    assert QualityThresholds.from_mapping({"min_eye_distance": 60}).min_eye_distance == 60
    assert QualityThresholds.from_mapping({"max_mask_confidence": 1}).max_mask_confidence == 1.0
    for bad in ({"min_eye_distanse": 60}, {"max_yaw": "wide"}, {"max_yaw": -1}, [1], {"max_mask_confidence": 1.5},
                {"max_mask_confidence": float("nan")}, {"max_mask_confidence": True}, {"max_mask_confidence": "1"},
                {"max_mask_confidence": -0.1}, {"max_mask_confidence": float("inf")}):
        with pytest.raises(ConfigError):
            QualityThresholds.from_mapping(bad)  # type: ignore[arg-type]


# -- PA-02 through the SDK ------------------------------------------------------------------------
def _quality_ws(tmp_path: Path, floor: Any = None) -> Any:
    def edit(r: dict[str, Any]) -> None:
        r["purposes"]["demo"]["capture_quality"] = "required"
        if floor is not None:
            r["purposes"]["demo"]["quality"] = floor
    return make_workspace(tmp_path / "ws", edit=edit)


def test_a_purpose_requiring_quality_enrols_a_good_capture_and_refuses_a_poor_one(tmp_path: Path) -> None:
    ws = _quality_ws(tmp_path)
    dark = (load_image(images() / "obama.jpg").astype(np.float32) * 0.12).astype(np.uint8)
    with open_sf(ws) as sf:
        t = consent(ws, "alice")
        with pytest.raises(PolicyViolation) as info:
            sf.enroll(dark, "alice", "demo", t)
        assert info.value.rule == "PA-02" and "add light" in info.value.message
        last = last_call(sf)
        assert (last.operation, last.decision, last.rule) == ("enroll", "refused", "PA-02")
        assert sf.records() == []
        sf.enroll(images() / "obama.jpg", "alice", "demo", t)
        assert len(sf.records()) == 1
        # Quality is an enrolment rule: a dark probe is still verified (and matches).
        assert sf.verify(images() / "obama2.jpg", "alice", "demo", t).match
        report = json.loads(sf.report(tmp_path / "report")["json"].read_text())
    rows = {r["id"]: r for r in report["rules"]}
    assert rows["PA-02"]["state"] == "satisfied" and report["can_process"] is True


def test_a_purpose_requiring_quality_refuses_a_noisy_blurred_capture_and_a_very_noisy_one(tmp_path: Path) -> None:
    """Through the SDK (PA-02): a defocused capture with noise on it is refused asking to let the
    camera focus, a very noisy one asking for light; nothing is stored, and the clean capture
    enrols."""
    ws = _quality_ws(tmp_path)
    img = load_image(images() / "obama.jpg")
    with open_sf(ws) as sf:
        t = consent(ws, "alice")
        for capture, words in ((_noisy(cv2.GaussianBlur(img, (0, 0), 8.0), 8.0), "hold still"),
                               (_noisy(img, 60.0), "too noisy")):
            with pytest.raises(PolicyViolation, match=words) as info:
                sf.enroll(capture, "alice", "demo", t)
            assert info.value.rule == "PA-02" and sf.records() == []
        sf.enroll(_jpeg(img), "alice", "demo", t)
        assert len(sf.records()) == 1


def test_a_purpose_requiring_quality_refuses_a_blurred_capture_with_impulses(tmp_path: Path) -> None:
    """Through the SDK (PA-02): obama.jpg defocused (sigma 8) with 2% impulses, which enrolled
    before, is refused asking to let the camera focus; nothing is stored."""
    ws = _quality_ws(tmp_path)
    img = load_image(images() / "obama.jpg")
    with open_sf(ws) as sf:
        t = consent(ws, "alice")
        with pytest.raises(PolicyViolation, match="hold still") as info:
            sf.enroll(_impulses(cv2.GaussianBlur(img, (0, 0), 8.0), 0.02), "alice", "demo", t)
        assert info.value.rule == "PA-02" and sf.records() == []


def test_a_purpose_floor_is_applied(tmp_path: Path) -> None:
    ws = _quality_ws(tmp_path, {"min_eye_distance": 5000})
    with open_sf(ws) as sf:
        with pytest.raises(PolicyViolation, match="move closer") as info:
            sf.enroll(images() / "obama.jpg", "alice", "demo", consent(ws, "alice"))
    assert info.value.rule == "PA-02"


def test_a_masked_capture_is_refused_as_a_reference_unless_the_purpose_accepts_masks(tmp_path: Path) -> None:
    """PA-02 names occlusion: a mask drawn on the photo, as a camera sees it, fails the quality
    floor with what to do; the same capture enrols where the purpose accepts masked references,
    and its row says it came from a masked image."""
    from policy_support import masked_image

    ws = _quality_ws(tmp_path)
    capture = masked_image(images() / "obama.jpg", "n95")
    with open_sf(ws) as sf:
        t = consent(ws, "alice")
        with pytest.raises(PolicyViolation, match="take off the mask") as info:
            sf.enroll(capture, "alice", "demo", t)
        assert info.value.rule == "PA-02" and sf.records() == []
        assert (last_call(sf).decision, last_call(sf).rule) == ("refused", "PA-02")
        # A masked probe is still verified: quality is an enrolment rule.
        sf.enroll(images() / "obama.jpg", "alice", "demo", t)
        v = sf.verify(masked_image(images() / "obama2.jpg"), "alice", "demo", t)
        assert v.masked and v.match
    ws2 = _quality_ws(tmp_path / "accepts", {"max_mask_confidence": 1})
    with open_sf(ws2) as sf:
        sf.enroll(capture, "alice", "demo", consent(ws2, "alice"))
        assert [r.masked_enrolment for r in sf.records()] == [True]


@pytest.mark.slow
def test_a_masked_reference_under_the_pa02_bar_is_enrolled_as_a_masked_enrolment(tmp_path: Path) -> None:
    """PA-02 refuses only what the mask detector is sure of (above 0.9); a masked capture it is
    less sure of (a surgical mask on a greyscale copy: about 0.885) is enrolled, but as what it
    is: the row says masked_enrolment, so a masked probe meets it at the both-masked threshold and
    a bare probe by its own visible region at the masked threshold, never whole."""
    from policy_support import masked_image

    grey = cv2.cvtColor(masked_image(images() / "obama.jpg", "surgical"), cv2.COLOR_RGB2GRAY)
    capture = np.ascontiguousarray(np.repeat(grey[..., None], 3, axis=2))
    ws = _quality_ws(tmp_path)
    with open_sf(ws) as sf:
        t = consent(ws, "alice")
        sf.enroll(capture, "alice", "demo", t)
        assert [r.masked_enrolment for r in sf.records()] == [True]
        v = sf.verify(np.ascontiguousarray(masked_image(images() / "obama2.jpg")[::2, ::2]), "alice", "demo", t)
        assert v.masked and v.mask_confidence is not None and 0.9 < v.mask_confidence
        assert v.masked_enrolment and v.path == "masked-enrolment" and v.threshold == sf.both_masked_threshold
        v = sf.verify(images() / "obama2.jpg", "alice", "demo", t)
        assert v.path == "masked-enrolment-bare-probe" and v.threshold == sf.masked_threshold and v.match
        assert sf.verify(images() / "biden.jpg", "alice", "demo", t).match is False


def test_a_masked_capture_in_a_batch_refuses_the_whole_batch(tmp_path: Path) -> None:
    """Bulk enrolment is no way around PA-02: one masked reference among good ones refuses the
    batch, naming what to fix, and nothing is stored."""
    from policy_support import masked_image

    ws = _quality_ws(tmp_path)
    with open_sf(ws) as sf:
        items = [(images() / "biden.jpg", "bob", consent(ws, "bob")),
                 (masked_image(images() / "obama.jpg", "n95"), "alice", consent(ws, "alice"))]
        with pytest.raises(PolicyViolation, match="take off the mask") as info:
            sf.enroll_many(items, "demo")
        assert info.value.rule == "PA-02" and sf.records() == []


def test_mask_floor_on_a_purpose_without_capture_quality_is_an_error(tmp_path: Path) -> None:
    """A max_mask_confidence on a purpose that does not require capture quality would judge no
    enrolment, so a masked reference would enrol under a floor that reads as refusing it: the
    configuration is refused, saying how to make the floor apply."""
    ws = make_workspace(tmp_path / "ws")
    edit_config(ws, lambda r: r["purposes"]["demo"].__setitem__("quality", {"max_mask_confidence": 0.5}),
                reassess=False)
    with pytest.raises(ConfigError, match="PA-02.*\"capture_quality\": \"required\""):
        open_sf(ws)


def test_a_mask_bar_written_twice_is_an_error(tmp_path: Path) -> None:
    """A hostile operator writes the purpose's mask bar twice: a reviewer reading the file sees
    the first (0.9) while a JSON parser keeps the last (1, masked references accepted), which the
    recorded assessment covers. The file is refused instead, naming the member."""
    ws = make_workspace(tmp_path / "ws", edit=lambda r: r["purposes"]["demo"].update(
        capture_quality="required", quality={"max_mask_confidence": 1}))
    text = ws.config.read_text()
    first = text.index('"max_mask_confidence": 1')  # the purpose's own (the sealed copy in "assessment" comes later)
    assert text.index('"assessment"') > first
    ws.config.write_text(text[:first] + '"max_mask_confidence": 0.9, ' + text[first:])
    with pytest.raises(ConfigError, match="'max_mask_confidence' twice"):
        open_sf(ws)


def test_a_misspelt_floor_is_an_error(tmp_path: Path) -> None:
    ws = make_workspace(tmp_path / "ws")
    edit_config(ws, lambda r: r["purposes"]["demo"].__setitem__("quality", {"min_eyes": 3}), reassess=False)
    with pytest.raises(ConfigError, match="min_eyes"):
        open_sf(ws)


def _obama_landmarks(obama: Any) -> tuple[np.ndarray, np.ndarray]:
    img, face = obama
    return img, np.asarray(face.landmarks, np.float64)


def test_roll_pitch_and_yaw_are_refused_whichever_way_the_head_goes(obama: Any) -> None:
    from safeface.capture.quality import eye_centres

    img, lm = _obama_landmarks(obama)
    centre = lm[:4].mean(axis=0)
    for angle in (40.0, -40.0):  # tilted either way
        m = cv2.getRotationMatrix2D((float(centre[0]), float(centre[1])), angle, 1.0)
        turned = cv2.warpAffine(img, m, (img.shape[1], img.shape[0]), borderMode=cv2.BORDER_REFLECT)
        assert "roll" in assess(turned, np.hstack([lm, np.ones((5, 1))]) @ m.T, 1).reasons, angle
    left, right = eye_centres(lm)
    d = float(np.hypot(*(right - left)))
    down = np.array([-(right - left)[1], (right - left)[0]]) / d
    for across in (1.5, 0.0):  # the nose base far below the eyes (nodded down), or level with them (up)
        pts = lm.copy()
        pts[4] = (left + right) / 2 + across * d * down
        assert "pitch" in assess(img, pts, 1).reasons, across
    pts3 = np.array([[0.75, 0, -0.2], [0.25, 0, 0], [-0.75, 0, -0.2], [-0.25, 0, 0], [0, 0.74, 0.25]])
    for deg in (75.0, -75.0):  # towards either profile
        a = np.radians(deg)
        rot = np.array([[np.cos(a), 0, np.sin(a)], [0, 1, 0], [-np.sin(a), 0, np.cos(a)]])
        assert "yaw" in assess(img, (pts3 @ rot.T)[:, :2] * 60 + centre, 1).reasons, deg


def test_each_bound_of_the_capture_gate_refuses_just_past_it(obama: Any) -> None:
    """An overexposed face with nothing clipped, a face 0.3 eye distances outside the picture,
    a central second face at 0.8 of the subject's size, a washed-out face, and eyes 12 px apart
    at an estimated 63 degrees of turn (the turn correction stops at 60: 24 px, under the 25 px
    floor; uncapped it would pass)."""
    import math

    from safeface.capture.quality import eye_centres

    img, lm = _obama_landmarks(obama)
    bright = np.clip(img.astype(np.float32) * 0.2 + 195, 0, 255).astype(np.uint8)
    r = assess(bright, lm, 1)
    assert "brightness" in r.reasons and "clipped" not in r.reasons, r.to_dict()
    left, right = eye_centres(lm)
    d = float(np.hypot(*(right - left)))
    assert "in_frame" in assess(img[:, : int((left + right)[0] / 2 + 0.8 * d)], lm, 1).reasons
    centre = lm[:4].mean(axis=0)
    other = (lm - centre) * 0.8 + centre + np.array([0.6 * d, 0.0])
    assert "face_count" in assess(img, lm, 2, others=[other]).reasons
    flat = (img.astype(np.float32) * 0.25 + 100).astype(np.uint8)
    r = assess(flat, lm, 1)
    assert "contrast" in r.reasons and "light the face evenly" in r.advice, r.to_dict()
    along = 0.35 * math.tan(math.radians(63.0))
    tiny = np.array([[-9, 0], [-3, 0], [3, 0], [9, 0], [12 * along, 9]], np.float64) + [450, 250]
    assert "eye_distance" in assess(img, tiny, 1).reasons
