"""The face tracker (capture/track.py) linking frames of a clip, on frames composed from real face images."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).parent))

from policy_support import images  # noqa: E402

from safeface.capture.clip import read_clip  # noqa: E402
from safeface.capture.liveness import default_engine  # noqa: E402
from safeface.capture.track import _detect_in, sampled_indices, track_subject  # noqa: E402

OBAMA, BIDEN = ("obama.jpg", (366, 136, 624, 394)), ("biden.jpg", (439, 233, 749, 542))


def _tile(which: tuple[str, tuple[int, int, int, int]], face: int) -> np.ndarray:
    """The face of a test image (its detected box, a quarter of it around) scaled to `face` px."""
    from PIL import Image

    name, (x1, y1, x2, y2) = which
    m = (x2 - x1) // 4
    im = Image.open(images() / name).convert("RGB").crop((x1 - m, y1 - m, x2 + m, y2 + m))
    return np.asarray(im.resize((face * 3 // 2, face * 3 // 2)))


@pytest.fixture(scope="module")
def engine() -> object:
    return default_engine()


def test_a_face_found_in_a_window_at_the_frames_left_edge_keeps_its_place(engine: object) -> None:
    """A face re-detected in a window clipped to the frame's left edge has its landmarks where the
    whole-frame detection puts them (the window's offset is added back on both axes)."""
    frame = np.full((480, 640, 3), 128, np.uint8)
    frame[150:300, 0:150] = _tile(OBAMA, 100)
    full = _detect_in(engine, frame, None)
    assert len(full) == 1
    b = full[0].box
    window = _detect_in(engine, frame, (b[0] - 80, b[1] - 80, b[2] + 80, b[3] + 80))
    assert len(window) == 1
    assert np.abs(window[0].landmarks - full[0].landmarks).max() < 8, (window[0].landmarks, full[0].landmarks)


def test_a_smaller_face_beside_the_subject_does_not_take_over_the_track(engine: object) -> None:
    """Two faces, the subject and a smaller one within its re-detection window: every frame's
    points stay on the subject, and the track records that two faces were seen."""
    frame = np.full((480, 640, 3), 128, np.uint8)
    frame[90:390, 40:340] = _tile(OBAMA, 200)
    frame[140:290, 330:480] = _tile(BIDEN, 100)
    tr = track_subject(read_clip([frame] * 12, 10), engine)
    assert tr is not None and len(tr) == 12 and tr.faces_seen == 2, tr
    assert np.all(tr.points[:, :, 0].max(axis=1) < 320), tr.points[:, 4]


def test_a_subject_that_moved_out_of_its_window_is_found_again_not_another_face(engine: object) -> None:
    """When the subject jumps out of its re-detection window, the whole-frame search takes the face
    nearest where it was, not another person's further away."""
    a = np.full((960, 480, 3), 128, np.uint8)
    b = a.copy()
    a[0:300, 90:390] = b[380:680, 90:390] = _tile(OBAMA, 200)
    a[800:950, 165:315] = b[800:950, 165:315] = _tile(BIDEN, 100)
    tr = track_subject(read_clip([a] * 5 + [b] * 7, 10), engine)
    assert tr is not None and len(tr) == 12, tr
    nose_y = tr.points[:, 4, 1]
    assert np.all(nose_y[:5] < 300) and np.all((nose_y[5:] > 380) & (nose_y[5:] < 700)), nose_y


def test_the_checks_read_samples_at_most_fifteen_a_second() -> None:
    """From a 30 fps track every second frame is sampled; from a 10 fps track every frame."""
    assert sampled_indices(np.arange(30) / 30.0) == list(range(0, 30, 2))
    assert sampled_indices(np.arange(10) / 10.0) == list(range(10))
