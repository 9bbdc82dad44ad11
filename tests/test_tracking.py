"""Tracking people without their faces, on the real OpenCV pedestrian clip (vtest.avi): tracks
are made, faces are covered in every output frame, the description search works within its
closed vocabulary, the recognizer is never loaded, and the guard decides every workspace run."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import threading
from pathlib import Path
from typing import Callable

import av
import numpy as np
import pytest

from safeface.anonymize import FaceFinder, detectable_frames
from safeface.anonymize.detect import Search
from safeface.anonymize.detect import DetectionEngine
from safeface.errors import InvalidArgument, PolicyViolation
from safeface.tracking import TrackOptions, parse, track_video
from tests.child_process import child_env
from tests.video_fixtures import cut, synthetic_video
from tests.policy_support import datasets, edit_config, make_workspace, open_sf

VTEST = datasets() / "opencv" / "vtest.avi"
needs_clip = pytest.mark.skipif(not VTEST.is_file(), reason=f"the OpenCV sample clip is absent ({VTEST}); "
                                "set SAFEFACE_DATASETS to the shared datasets")


@pytest.fixture(scope="module")
def clip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    if not VTEST.is_file():
        pytest.skip(f"the OpenCV sample clip is absent ({VTEST})")
    # 4 s from 10 s in: five to seven people walking, two pairs side by side.
    return cut(VTEST, tmp_path_factory.mktemp("clip") / "clip.mp4", 100, 40, {"title": "plaza camera 3"})


@pytest.fixture(scope="module")
def short_clip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The clip's first 6 frames (four people are found in them), for tests of what a run does
    rather than how well it tracks: cropped to the 384x288 where those four walk, a quarter of
    the frame (each run's face and person searches cost by the pixel)."""
    if not VTEST.is_file():
        pytest.skip(f"the OpenCV sample clip is absent ({VTEST})")
    with av.open(str(VTEST)) as c:
        frames = [f.to_ndarray(format="rgb24")[96:384, 320:704].copy() for _, f in zip(range(106), c.decode(video=0))]
    return synthetic_video(tmp_path_factory.mktemp("short") / "short.mp4", 384, 288, frames=6, rate=10,
                           frame=lambda i: frames[100 + i])


@pytest.fixture(scope="module")
def tracked(clip: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[object, Path]:
    out = tmp_path_factory.mktemp("out") / "tracked.mp4"
    return track_video(clip, out), out


def frames_of(path: Path) -> list[np.ndarray]:
    with av.open(str(path)) as c:
        return [f.to_ndarray(format="rgb24") for f in c.decode(video=0)]


@needs_clip
def test_people_are_tracked_on_the_real_clip(tracked: tuple[object, Path]) -> None:
    result, out = tracked
    assert result.frames == 40
    long_tracks = [p for p in result.people if len(p.frames) >= 20]
    # At least the four people who walk through the whole four seconds are followed throughout.
    assert len(long_tracks) >= 4, [len(p.frames) for p in result.people]
    for p in result.people:
        assert p.frames == sorted(p.frames) and len(p.frames) == len(p.boxes)
        assert p.thumbnail is not None and p.thumbnail.ndim == 3
    doc = result.to_dict()
    assert {"id", "frames", "boxes", "colours", "start_s", "end_s"} <= set(doc["tracks"][0])
    json.dumps(doc)  # plain JSON: no array or descriptor leaks into it


@pytest.mark.slow
@needs_clip
def test_output_has_no_detectable_face_and_no_container_metadata(tracked: tuple[object, Path]) -> None:
    """The anonymizer's own no-face check, the one benches/tracking.py reports: the search the
    run covered faces with (TrackOptions().video.search), at dlib's bar, on every output frame."""
    result, out = tracked
    assert len(frames_of(out)) == result.frames == 40
    assert detectable_frames(out, TrackOptions().video.search) == []
    # At photo strength too (full size, upsample 2: faces from about 20 px), which the video
    # search cannot afford: the head zone of every tracked person is covered. Every
    # eighth frame (people move a few pixels a frame), to keep the suite's time.
    strong, finder = Search(max_side=1 << 16, upsample=2), FaceFinder("hog", engine=DetectionEngine())
    assert [i for i, f in enumerate(frames_of(out)) if i % 8 == 0 and finder.detectable(f, strong)] == []
    with av.open(str(out)) as c:
        assert "title" not in c.metadata


@needs_clip
def test_search_ranks_a_track_by_its_own_colours(tracked: tuple[object, Path]) -> None:
    result, _ = tracked
    target = next(p for p in result.people if p.to_dict(10)["colours"]["top"][0] != "black") \
        if any(p.to_dict(10)["colours"]["top"][0] != "black" for p in result.people) else result.people[0]
    c = target.to_dict(10)["colours"]
    hits = result.search(f"{c['top'][0]} top, {c['bottom'][0]} trousers", top_k=3)
    assert target.track_id in [h.track_id for h in hits]
    assert all(0.0 <= h.score <= 1.0 for h in hits) and hits[0].start_s <= hits[0].end_s


def test_faces_are_covered_before_the_tracker_sees_them(tmp_path: Path) -> None:
    """On a video of real faces, the hook the tracker runs in receives only covered frames."""
    from safeface.anonymize.video import anonymize_video_file
    from tests.video_fixtures import build_face_video

    lfw = datasets() / "lfw-dev" / "images"
    if not lfw.is_dir():
        pytest.skip(f"real face images absent ({lfw})")
    src = tmp_path / "faces.mp4"
    # 320x256 (each 250 px photo whole in it): the hook's search of every frame costs by the pixel.
    build_face_video(src, sorted(lfw.glob("*/*.jpg"))[::151][:3], frames=6, size=(320, 256), per_photo=2,
                     audio=False)
    finder = FaceFinder("hog", engine=DetectionEngine())
    assert finder.find(frames_of(src)[0]), "the input must show a face for the check to mean anything"
    seen: list[int] = []

    def hook(i: int, rgb: np.ndarray) -> np.ndarray:
        seen.append(len(finder.find(rgb, upsample=[1])))
        return rgb

    anonymize_video_file(src, tmp_path / "out.mp4", finder=finder, on_frame=hook)
    assert len(seen) == 6 and sum(seen) == 0, seen


def _brightening(width: int, height: int) -> Callable[[int], np.ndarray]:
    return lambda i: np.full((height, width, 3), 40 * i, np.uint8)


@pytest.mark.parametrize("size", [(96, 64), (2, 2), (640, 40), (40, 640)])
def test_a_video_smaller_than_a_person_is_tracked_without_a_crash(tmp_path: Path, size: tuple[int, int]) -> None:
    """OpenCV's people detector crashed the process (SIGSEGV) on a frame smaller than its
    64x128 window: a 96x64 video killed any tracking run, a service's worker with it. Run in a
    child, so that a crash fails this test rather than the test run."""
    src = synthetic_video(tmp_path / "small.mp4", *size, frames=6, frame=_brightening(*size))
    code = ("import sys; from safeface.tracking import track_video\n"
            f"r = track_video({str(src)!r})\n"
            "print('tracked', r.frames, len(r.people))\n")
    run = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, env=child_env(), capture_output=True, text=True,
                         timeout=300)
    assert run.returncode == 0 and "tracked 6 0" in run.stdout, (run.returncode, run.stderr[-2000:])


def test_the_frame_rate_is_the_streams_read_not_the_paths_after_the_run(tmp_path: Path,
                                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    """The frame rate was read by opening the path again after the run: a path pointed at a
    FIFO meanwhile kept the call waiting for ever, and one pointed at another video gave that
    video's rate. It is the rate of the stream the frames were read from."""
    import safeface.tracking.run as run

    src = synthetic_video(tmp_path / "v.mp4", 160, 240, frames=6, rate=12, frame=_brightening(160, 240))
    real = run.anonymize_video_file

    def then_a_fifo(*a: object, **kw: object) -> object:
        report = real(*a, **kw)  # type: ignore[arg-type]
        os.unlink(src)
        os.mkfifo(src)
        return report

    monkeypatch.setattr(run, "anonymize_video_file", then_a_fifo)
    box: dict[str, object] = {}
    worker = threading.Thread(target=lambda: box.setdefault("out", track_video(src)), daemon=True)
    worker.start()
    worker.join(60)
    if worker.is_alive():  # let a blocked open go: a writer comes and leaves
        os.close(os.open(src, os.O_WRONLY | os.O_NONBLOCK))
    assert not worker.is_alive() and "out" in box, "track_video waited on a FIFO put at its path after the run"
    assert box["out"].fps == 12.0 and box["out"].frames == 6  # type: ignore[attr-defined]


def test_tracking_covers_masked_faces_when_asked(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                                masked_performer: tuple[Path, int, list[int]]) -> None:
    """Tracking leaves the anonymizer's masked-face search off by default (it covers each
    tracked person's head zone instead, and keeps real time). A masked face on no tracked
    person, a performer standing still, stays in the output then; `track --masked` covers it."""
    from safeface.anonymize import VideoOptions
    from safeface.cli import main

    src, _, found = masked_performer
    masked_check = VideoOptions(masked=True).search
    assert len(found) >= 6  # the masked face is there to find
    plain, covered = tmp_path / "plain.mp4", tmp_path / "covered.mp4"
    assert main(["track", str(src), str(plain), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["tracks"] == []  # no person tracked: no head zone covered
    assert detectable_frames(plain, masked_check)
    assert main(["track", str(src), str(covered), "--json", "--masked"]) == 0
    capsys.readouterr()
    assert detectable_frames(covered, masked_check) == []


def test_description_vocabulary_is_closed() -> None:
    q = parse("a child in a red top and navy jeans")
    assert (q.top, q.bottom, q.size) == (("red",), ("blue",), "child")
    assert parse("in green").anywhere == ("green",)
    for bad in ("red top, brown eyes", "tall man", "blue top, asian", "dark skin", "face like alice", ""):
        with pytest.raises(InvalidArgument):
            parse(bad)


@pytest.mark.slow
@needs_clip
def test_track_ids_are_random_and_local_to_a_run(short_clip: Path) -> None:
    a = track_video(short_clip)
    b = track_video(short_clip)
    assert a.people and b.people
    assert not {p.track_id for p in a.people} & {p.track_id for p in b.people}


RECOGNIZER_CHECK = textwrap.dedent("""
    import sys, dlib
    def tripwire(*a, **k):
        raise SystemExit("RECOGNIZER LOADED")
    # Any landmark or recognition network built during the run ends it.
    dlib.face_recognition_model_v1 = tripwire
    dlib.shape_predictor = tripwire
    dlib.cnn_face_detection_model_v1 = tripwire
    {body}
    bad = sorted(m for m in sys.modules if m.startswith(("safeface.hazmat.vision", "onnxruntime", "insightface",
                                                          "safeface.storage", "safeface.hazmat.index")))
    print("LOADED:" + ",".join(bad))
""")


def _child(body: str, tmp: Path) -> subprocess.CompletedProcess[str]:
    code = RECOGNIZER_CHECK.format(body=body)
    return subprocess.run([sys.executable, "-c", code], cwd=tmp, env=child_env(), capture_output=True, text=True,
                          timeout=300)


@needs_clip
def test_the_recognizer_is_never_loaded_during_a_tracking_run(short_clip: Path, tmp_path: Path) -> None:
    run = _child(f"from safeface.tracking import track_video\n"
                 f"r = track_video({str(short_clip)!r}, {str(tmp_path / 'o.mp4')!r})\n"
                 f"assert r.frames == 6", tmp_path)
    assert run.returncode == 0, run.stderr[-2000:]
    assert "LOADED:\n" in run.stdout, run.stdout
    # The same tripwire does fire when the recognizer is built: the check can fail.
    trip = _child("from safeface.anonymize import FaceFinder\nFaceFinder('hog')", tmp_path)
    assert "RECOGNIZER LOADED" in trip.stderr


@needs_clip
def test_tracking_in_a_workspace_is_a_guarded_audited_purpose(short_clip: Path, tmp_path: Path) -> None:
    clip = short_clip
    ws = make_workspace(tmp_path / "ws")
    opts = TrackOptions()
    with open_sf(ws) as sf:
        with pytest.raises(PolicyViolation) as no_purpose:
            sf.track(clip, None, options=opts)  # type: ignore[arg-type]
        with pytest.raises(PolicyViolation) as undeclared:
            sf.track(clip, "find-lost-children", options=opts)
        assert no_purpose.value.rule == undeclared.value.rule
        result = sf.track(clip, "demo", options=opts)  # no consent token: no biometric
        entries = sf.audit_entries()
        assert [e.decision for e in entries if e.operation == "track"] == ["refused", "refused", "allowed"]
        assert result.report.input_sha256 in (entries[-1].note or "") and entries[-1].purpose == "demo"
        assert sf.audit_verify().entries == len(sf.audit_entries())
    # A role that may not track is refused; a deployment without a notice processes nothing (CN-02).
    edit_config(ws, lambda r: r["roles"].__setitem__("kiosk", ["verify"]))
    with open_sf(ws, role="kiosk") as sf:
        with pytest.raises(PolicyViolation):
            sf.track(clip, "demo", options=opts)
    edit_config(ws, lambda r: r["notice"].__setitem__("retention", ""))
    with open_sf(ws) as sf:
        with pytest.raises(PolicyViolation) as notice:
            sf.track(clip, "demo", options=opts)
        assert notice.value.rule == "CN-02"


@pytest.mark.slow
@needs_clip
def test_cli_track_and_search(short_clip: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from safeface.cli import main

    clip = short_clip  # the commands, not the tracker: 6 frames with four people are enough
    out = tmp_path / "t.mp4"
    assert main(["track", str(clip), str(out), "--json", "--fast"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert out.is_file() and doc["frames"] == 6 and doc["tracks"]
    thumbs = tmp_path / "hits"  # not there yet, as in the README's `--thumbnails hits/`: made by the command
    assert main(["track", "search", str(clip), "--describe", "blue trousers", "--json", "--thumbnails", str(thumbs)]) == 0
    hits = json.loads(capsys.readouterr().out)["hits"]
    assert 1 <= len(hits) <= 3 and len(list(thumbs.glob("*.png"))) == len(hits) == len(list(thumbs.iterdir()))
    assert all(p.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" for p in thumbs.iterdir())
    assert main(["track", "search", str(clip), "--describe", "blue eyes"]) == 1


ANNOTATION = Path(__file__).parent / "data" / "vtest_people.json"


@pytest.fixture(scope="module")
def annotated(tmp_path_factory: pytest.TempPathFactory) -> tuple[object, dict[str, object]]:
    """The first 6 s of the annotated segment (frames 100-159), tracked."""
    if not VTEST.is_file():
        pytest.skip(f"the OpenCV sample clip is absent ({VTEST})")
    ann = json.loads(ANNOTATION.read_text())
    seg = cut(VTEST, tmp_path_factory.mktemp("ann") / "seg.mp4", 100, 60)
    frames = {int(k) - 100: v for k, v in ann["frames"].items() if int(k) < 160}
    return track_video(seg, options=TrackOptions(draw=False)), {"frames": frames, "descriptions": ann["descriptions"]}


def _iou(a: list[int], b: tuple[float, ...]) -> float:
    from safeface.anonymize.detect import iou

    return iou(tuple(float(v) for v in a), b)  # type: ignore[arg-type]


def _covering_tracks(result: object, frames: dict[int, list[dict[str, object]]], pid: str) -> dict[str, float]:
    """For one annotated person: the share of their boxes each track matches (IoU >= 0.5)."""
    boxes = [(f, p["box"]) for f, ps in frames.items() for p in ps if p["id"] == pid]
    out: dict[str, float] = {}
    for person in result.people:  # type: ignore[attr-defined]
        n = sum(1 for f, b in boxes if (h := person.box_at(f)) is not None and _iou(b, h) >= 0.5)  # type: ignore[arg-type]
        if n:
            out[person.track_id] = n / len(boxes)
    return out


@needs_clip
def test_tracks_match_the_hand_annotation_above_a_floor(annotated: tuple[object, dict[str, object]]) -> None:
    result, ann = annotated
    frames = ann["frames"]
    gt = [(f, p["box"]) for f, ps in frames.items() for p in ps]  # type: ignore[union-attr]
    found = sum(1 for f, b in gt if any((h := p.box_at(f)) is not None and _iou(b, h) >= 0.5
                                        for p in result.people))  # type: ignore[attr-defined]
    # Floors under what this segment gives (0.85 of the boxes, 7 of 8 people followed for half
    # their boxes), above what a tracker that loses people in crowds or mis-sizes boxes gives.
    assert found / len(gt) >= 0.7, f"only {found} of {len(gt)} annotated boxes matched"
    people = {p["id"] for ps in frames.values() for p in ps}  # type: ignore[union-attr]
    followed = [pid for pid in people if max(_covering_tracks(result, frames, pid).values(), default=0) >= 0.5]
    assert len(followed) >= 6, followed


@needs_clip
def test_identities_hold_through_the_crowd(annotated: tuple[object, dict[str, object]]) -> None:
    """IDF1 (motmetrics, IoU >= 0.5) on the segment: 0.81 when measured; a tracker that swaps
    people where they cross, or splits them into pieces, falls under the floor."""
    import motmetrics as mm  # a test dependency (pyproject "test" extra)
    from safeface.anonymize.detect import iou

    result, ann = annotated
    acc = mm.MOTAccumulator(auto_id=True)
    for f, ps in sorted(ann["frames"].items()):  # type: ignore[union-attr]
        hyp = [(p.track_id, p.box_at(f)) for p in result.people]  # type: ignore[attr-defined]
        hyp = [(i, b) for i, b in hyp if b is not None and b[3] - b[1] >= 40]
        dist = [[1 - iou(tuple(g["box"]), h) if iou(tuple(g["box"]), h) >= 0.5 else float("nan") for _, h in hyp]
                for g in ps]
        acc.update([int(g["id"].lstrip("P")) for g in ps], [int(i, 16) for i, _ in hyp], dist)
    s = mm.metrics.create().compute(acc, metrics=["idf1", "num_switches"], name="x")
    assert float(s["idf1"].iloc[0]) >= 0.65, s
    assert int(s["num_switches"].iloc[0]) <= 5, s


@needs_clip
def test_search_finds_annotated_people(annotated: tuple[object, dict[str, object]]) -> None:
    result, ann = annotated
    # P7 is the one person in a light blue jacket with a white hood.
    hits = [h.track_id for h in result.search(ann["descriptions"]["P7"], 3)]  # type: ignore[index]
    assert set(hits) & set(_covering_tracks(result, ann["frames"], "P7")), hits  # type: ignore[arg-type]
    # Every described person in this segment (eight when measured) is found in the top 3;
    # the floor is three in four.
    present = {p["id"] for ps in ann["frames"].values() for p in ps}  # type: ignore[union-attr]
    asked = {pid: text for pid, text in ann["descriptions"].items() if pid in present}  # type: ignore[union-attr]
    found = [pid for pid, text in asked.items()
             if {h.track_id for h in result.search(text, 3)} & set(_covering_tracks(result, ann["frames"], pid))]  # type: ignore[attr-defined, arg-type]
    assert len(asked) >= 4 and len(found) >= 0.75 * len(asked), (found, sorted(asked))


def _look(top: tuple[int, int, int], bottom: tuple[int, int, int]) -> tuple[object, tuple[float, ...]]:
    """A real descriptor of a painted person: `top` and `bottom` are RGB clothing colours."""
    import cv2

    from safeface.tracking.appearance import describe

    rgb = np.full((200, 100, 3), 128, np.uint8)
    rgb[40:110, 20:80] = top
    rgb[110:190, 25:75] = bottom
    box = (20.0, 10.0, 80.0, 190.0)
    return describe(cv2.cvtColor(rgb, cv2.COLOR_RGB2HSV), cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY), box), box


@pytest.mark.parametrize("same_clothes", [True, False])
def test_a_lost_person_gets_their_id_back_only_in_their_own_clothes(same_clothes: bool) -> None:
    """Walking right, hidden for 3 s (longer than a track coasts, so the track has ended), seen
    again further on: the new track takes the lost track's id when the clothes match, and a
    stranger in other clothes there does not."""
    from safeface.tracking.assign import RECENT, Assigner

    red_blue, _ = _look((200, 30, 30), (30, 40, 160))
    green_grey, _ = _look((30, 160, 40), (120, 120, 120))

    def box(i: int) -> tuple[float, float, float, float]:
        return (100.0 + 6 * i, 100.0, 140.0 + 6 * i, 200.0)

    a = Assigner()
    for i in range(8):
        a.step(i, [box(i)], [red_blue])
    first = {t.track_id for t in a.live if t.confirmed}
    assert len(first) == 1
    for i in range(8, 38):
        a.step(i, [], [])
    assert not a.live
    for i in range(38, 44):
        a.step(i, [box(i)], [red_blue if same_clothes else green_grey])
    done = a.finish()
    ids = {t.track_id for t in done}
    assert (ids == first) is same_clothes, ids
    # What a track keeps per frame is bounded: a few recent looks and colour-name shares only.
    assert all(len(t.recent) <= RECENT and all(c.shape == (22,) for c, _ in t.colours) for t in done)


def _fabric(dark_hsv: tuple[int, int, int], lit_hsv: tuple[int, int, int], lit_share: float) -> np.ndarray:
    """A 40x40 HSV garment region: folds in shadow and the part light falls on."""
    region = np.empty((40, 40, 3), np.uint8)
    region[:] = dark_hsv
    region[:int(round(40 * lit_share))] = lit_hsv
    return region


def test_dark_jeans_read_blue_and_black_trousers_stay_black() -> None:
    from safeface.tracking.colours import COLOURS, colour_shares

    black, blue = COLOURS.index("black"), COLOURS.index("blue")
    # Measured on vtest.avi: dark jeans are half in shadow, their lit part saturated blue.
    jeans = colour_shares(_fabric((110, 120, 35), (105, 110, 110), 0.45))
    assert jeans[blue] > 0.8 and jeans[black] < 0.1, jeans
    # Black trousers in the same light: the lit part is grey (saturation about 12), not a colour.
    trousers = colour_shares(_fabric((0, 0, 20), (100, 12, 110), 0.45))
    assert trousers[black] > 0.5 and trousers[blue] == 0, trousers
    # A black coat with a small blue badge stays black: too little of it is lit to name its colour.
    coat = colour_shares(_fabric((0, 0, 20), (110, 200, 160), 0.1))
    assert coat[black] > 0.85, coat
    assert abs(float(jeans.sum()) - 1.0) < 1e-5 and abs(float(trousers.sum()) - 1.0) < 1e-5


def test_the_head_zone_of_a_person_box_is_covered_and_nothing_else() -> None:
    from safeface.tracking.heads import cover_heads, head_zone

    rng = np.random.default_rng(0)
    frame = rng.integers(0, 256, (300, 400, 3), dtype=np.uint8)
    box = (100.0, 80.0, 160.0, 230.0)  # a person 150 px tall
    out = cover_heads(frame.copy(), [box], "blur")
    x1, y1, x2, y2 = (int(round(v)) for v in head_zone(box))
    assert y1 < 80 and x1 >= 100 and x2 <= 160 and y2 > 80 + 0.2 * 150
    head = (slice(max(y1, 0) + 2, y2 - 2), slice(x1 + 2, x2 - 2))
    # Covered: the noise is smoothed away; below the zone and beside the box, untouched.
    assert out[head].std() < 0.5 * frame[head].std()
    assert np.array_equal(out[y2 + 20:, :], frame[y2 + 20:, :])
    assert np.array_equal(out[:, 200:], frame[:, 200:])
    assert np.array_equal(cover_heads(frame, [], "blur"), frame)


def test_a_brown_jacket_in_shade_reads_brown_and_a_black_one_stays_black() -> None:
    from safeface.tracking.colours import COLOURS, colour_shares

    black, brown = COLOURS.index("black"), COLOURS.index("brown")
    # Measured on vtest.avi: a brown jacket in shade keeps a warm, saturated hue at low value;
    # a black jacket's dark pixels are neutral or purple-pink.
    jacket = colour_shares(_fabric((0, 0, 12), (176, 120, 40), 0.3))
    assert jacket[brown] >= 0.25, jacket
    black_jacket = colour_shares(_fabric((0, 0, 12), (150, 70, 40), 0.3))
    assert black_jacket[brown] == 0 and black_jacket[black] > 0.9, black_jacket


def test_a_track_inside_a_longer_one_is_dropped_as_a_piece_of_it() -> None:
    from safeface.tracking.assign import Assigner

    look, _ = _look((200, 30, 30), (30, 30, 200))
    a = Assigner()
    # A person walking right, and a blob on their upper body that the background model split
    # off; in two frames only the blob was found, so it started a track of its own there.
    for i in range(12):
        x = 100.0 + 4 * i
        person, piece = (x, 100.0, x + 40, 200.0), (x + 8, 110.0, x + 32, 150.0)
        boxes = [person] if i < 4 else ([piece] if i < 6 else [person, piece])
        a.step(i, boxes, [look] * len(boxes))
    done = a.finish()
    assert len(done) == 1 and len(done[0].frames) == 10, [(t.frames[0], len(t.frames)) for t in done]


def test_a_run_with_no_output_writes_no_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """`safeface track search` asks for no video, yet the whole covered video was encoded to a
    temporary folder, which a process killed mid-run left on disk. Now no file is opened."""
    import tempfile

    import safeface.tracking.run as run
    from tests.video_fixtures import build_face_video

    lfw = datasets() / "lfw-dev" / "images"
    if not lfw.is_dir():
        pytest.skip(f"real face images absent ({lfw})")
    src = tmp_path / "faces.mp4"
    build_face_video(src, sorted(lfw.glob("*/*.jpg"))[::151][:2], frames=8, size=(320, 256), per_photo=4,
                     audio=False)  # small: what a run leaves on disk does not depend on the frame's size
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(scratch))
    seen: list[str] = []
    call = run._Run.__call__

    def spy(self: object, index: int, rgb: np.ndarray) -> np.ndarray:
        if index == 4:  # mid-run, where a kill would leave what is there
            seen.extend(str(p) for p in scratch.rglob("*") if p.is_file())
        return call(self, index, rgb)  # type: ignore[arg-type]

    monkeypatch.setattr(run._Run, "__call__", spy)
    result = track_video(src)
    assert result.frames == 8 and seen == [] and not list(scratch.rglob("*"))
    assert result.report.output_path is None


@pytest.mark.parametrize("text", ["a person", "someone in the", "the, dark"])
def test_a_description_of_filler_words_only_is_refused(text: str) -> None:
    """A description naming nothing to look for would rank every track."""
    from safeface.errors import InvalidArgument
    from safeface.tracking.describe import parse

    with pytest.raises(InvalidArgument, match="names no colour"):
        parse(text)


def test_track_ids_are_random_in_every_fresh_run_and_never_count_up() -> None:
    """Ids local to a run: two runs in two processes share none (a counter would start alike)."""
    from safeface.tracking.assign import new_track_id

    def first_ids() -> list[str]:
        code = "from safeface.tracking.assign import new_track_id as n; print(n(), n(), n())"
        r = subprocess.run([sys.executable, "-c", code], env=child_env(), capture_output=True, text=True, timeout=120)
        assert r.returncode == 0, r.stderr[-2000:]
        return r.stdout.split()

    a, b = first_ids(), first_ids()
    assert len(a) == len(b) == 3 and not set(a) & set(b), (a, b)
    ids = [int(new_track_id(), 16) for _ in range(50)]
    assert len(set(ids)) == 50 and sum(1 for x, y in zip(ids, ids[1:]) if y == x + 1) < 3, ids


def _walker(rgb: np.ndarray, x: int, feet: int, top: tuple[int, int, int]) -> None:
    """A painted person 144 px tall: a head with no face in it, a top, blue trousers."""
    y = feet - 144
    rgb[y:y + 34, x:x + 26] = (200, 160, 130)
    rgb[y + 34:y + 84, x - 4:x + 30] = top
    rgb[y + 84:feet, x:x + 26] = (30, 30, 160)


def test_a_box_showing_a_head_alone_gives_its_track_no_colour() -> None:
    """Someone dressed a shade darker than the background: the background model takes the body
    for a shadow and boxes the head alone, and its "top" and "bottom" regions were the face and
    neck, so the track's colours were its skin's ("orange") and a colour search ranked people
    by skin tone. A box far shorter than a person at its place colours nothing."""
    from safeface.tracking.run import _people, _Run

    run = _Run(TrackOptions(draw=False))
    for i in range(44):
        rgb = np.full((300, 480, 3), 120, np.uint8)
        _walker(rgb, 20 + 5 * i, 170, (200, 30, 30))  # two walkers give the scene its scale
        _walker(rgb, 110 + 5 * i, 290, (30, 160, 160))
        if i >= 16:
            x = 440 - 4 * (i - 16)
            rgb[146:180, x:x + 26] = (200, 150, 120)  # a head's skin
            rgb[180:290, x - 4:x + 30] = 95  # grey clothes, darker than the grey behind them
        run(i, rgb)
    people, _ = _people(run.assigner.finish())
    heads = [p for p in people if p.boxes[-1][3] - p.boxes[-1][1] < 60]
    assert len(heads) == 1 and len(people) == 3, [p.boxes[-1] for p in people]
    assert heads[0].top == [] and heads[0].bottom == [], (heads[0].top, heads[0].bottom)
    assert [p.top[0] for p in people if p is not heads[0]] == ["red", "blue"]


@pytest.mark.parametrize("face", [False, True])
def test_a_head_alone_in_a_scene_with_no_whole_person_gives_its_track_no_colour(face: bool) -> None:
    """The same head, body a shade darker than the background, in a scene with nobody else: no
    whole person gave the scene a scale, the head's box was the typical person, and its skin was
    the track's "top" and "bottom" ("orange"). A box on its body's shadow shows a head, and a
    track seen so is a head throughout (with a real face, the shadow did not show in every
    frame), and colours nothing."""
    from safeface.tracking.run import _people, _Run
    from tests.test_tracking_head_zones import _face

    head = _face() if face else (200, 150, 120)
    run = _Run(TrackOptions(draw=False))
    for i in range(60):
        rgb = np.full((300, 480, 3), 120, np.uint8)
        if i >= 16:
            x = 440 - 3 * (i - 16)
            rgb[146:180, x:x + 26] = head
            rgb[180:290, x - 4:x + 30] = 95  # grey clothes, darker than the grey behind them
        run(i, rgb)
    people, _ = _people(run.assigner.finish())
    assert people, "the head is followed"
    assert all(p.top == [] and p.bottom == [] for p in people), [(p.top, p.bottom) for p in people]


def test_a_head_whose_body_is_the_backgrounds_colour_alone_in_a_scene_gives_no_colour() -> None:
    """The same head alone, its body the background's own grey: no shadow under it to tell a
    head by, and in the frames where only its moving edge showed (while the background model
    learns fast), that edge was boxed as a small whole person and the head's skin was the
    track's "top" and "bottom" ("orange"). A scene with no scale whose boxes are mostly wider
    than a whole person's shows heads, and colours nothing."""
    from safeface.tracking.run import _people, _Run

    run = _Run(TrackOptions(draw=False))
    for i in range(46):
        rgb = np.full((220, 480, 3), 120, np.uint8)
        if i >= 16:
            x = 440 - 3 * (i - 16)
            rgb[146:180, x:x + 26] = (200, 150, 120)  # the body below it is the background's grey
        run(i, rgb)
    people, _ = _people(run.assigner.finish())
    assert people, "the head is followed"
    assert all(p.top == [] and p.bottom == [] for p in people), [(p.top, p.bottom) for p in people]


def test_a_head_whose_body_is_the_backgrounds_colour_beside_a_child_gives_no_colour() -> None:
    """The same head, with a child (72 px) walking across the scene on the same row: no scale
    still, and the head's boxes mostly wider than a whole person's, but the scene's share of
    such views let the child's whole views outvote the head's, and its skin was its track's
    "top" and "bottom" ("orange") again. Each track is judged by its own views."""
    from safeface.tracking.run import _people, _Run

    run = _Run(TrackOptions(draw=False))
    for i in range(60):
        rgb = np.full((220, 480, 3), 120, np.uint8)
        x = 20 + 3 * i
        rgb[108:125, x:x + 13] = (200, 160, 130)  # a child half the painted walker's size
        rgb[125:150, x - 2:x + 15] = (200, 30, 30)
        rgb[150:180, x:x + 13] = (30, 30, 160)
        if i >= 16:
            x = 440 - 3 * (i - 16)
            rgb[146:180, x:x + 26] = (200, 150, 120)  # the head; its body is the background's grey
        run(i, rgb)
    people, _ = _people(run.assigner.finish())
    heads = [p for p in people if p.boxes[-1][3] - p.boxes[-1][1] < 50]
    assert len(heads) == 1 and len(people) == 2, [p.boxes[-1] for p in people]
    assert heads[0].top == [] and heads[0].bottom == [], (heads[0].top, heads[0].bottom)
    assert [p.top[0] for p in people if p is not heads[0]] == ["red"]


def test_a_person_alone_in_a_scene_with_no_scale_keeps_their_colours() -> None:
    """A person walking across a scene alone, feet on one row: no scale to tell a head by, and
    their boxes a whole person's shape; their colours stay theirs."""
    from safeface.tracking.run import _people, _Run

    run = _Run(TrackOptions(draw=False))
    for i in range(46):
        rgb = np.full((300, 320, 3), 120, np.uint8)
        if i >= 16:
            _walker(rgb, 280 - 3 * (i - 16), 290, (200, 30, 30))
        run(i, rgb)
    people, _ = _people(run.assigner.finish())
    assert [(p.top[0], p.bottom[0]) for p in people] == [("red", "blue")]


def test_a_person_over_their_own_shadow_keeps_their_colours() -> None:
    """A person lit from behind casts their shadow toward the camera, under their feet, in their
    own columns and as long as they are tall: the band below the blob read as a body under a
    head, and the whole person lost their colours. A blob shaped like a whole person is no head."""
    from safeface.tracking.run import _people, _Run

    run = _Run(TrackOptions(draw=False))
    for i in range(44):
        rgb = np.full((440, 480, 3), 120, np.uint8)
        _walker(rgb, 20 + 5 * i, 170, (200, 30, 30))
        x = 110 + 5 * i
        rgb[290:434, x - 2:x + 28] = 75  # the shadow cast toward the camera
        _walker(rgb, x, 290, (30, 160, 160))
        run(i, rgb)
    people, _ = _people(run.assigner.finish())
    assert len(people) == 2 and all(p.top and p.bottom for p in people), [(p.top, p.bottom) for p in people]
