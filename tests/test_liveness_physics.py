"""The 5-point physics check (capture/physics.py) on landmark tracks built to a known along/asymmetry."""

from __future__ import annotations

import numpy as np

from safeface.capture.physics import MIN_FRAMES, analyse


def track(along: np.ndarray, asym: np.ndarray, eye: float = 60.0,
          at: tuple[float, float] = (320.0, 240.0)) -> np.ndarray:
    """Points of a face with eyes `eye` px apart whose nose sits `along` eye distances along the eye
    line and whose eyes' width asymmetry is `asym`, frame by frame (first eye on the image's right)."""
    out = []
    for s, q in zip(along, asym):
        wr, wl = 0.5 * eye * (1 + q), 0.5 * eye * (1 - q)
        r, l = 0.5 * eye, -0.5 * eye
        out.append([[r + wr / 2, 0], [r - wr / 2, 0], [l - wl / 2, 0], [l + wl / 2, 0], [s * eye, 0.77 * eye]])
    return np.array(out, np.float64) + np.array(at)


def sweep(n: int = 30, amp: float = 0.3) -> np.ndarray:
    return amp * np.sin(2 * np.pi * np.arange(n) / (n - 1))


def test_a_head_like_track_is_live_and_the_same_track_too_short_is_inconclusive() -> None:
    """A track shorter than MIN_FRAMES frames is never judged, however clearly it turns."""
    s = sweep()
    assert analyse(track(s, -0.8 * s), 640).decision == "live"
    short = sweep(MIN_FRAMES - 1)
    r = analyse(track(short, -0.8 * short), 640)
    assert r.decision == "inconclusive" and r.score == 0.0, r
    s8 = sweep(MIN_FRAMES)
    assert analyse(track(s8, -0.8 * s8), 640).decision == "live"


def test_a_wide_sweep_with_a_weak_eye_coupling_is_an_attack_not_live() -> None:
    """A flat picture swung far (eyes' asymmetry following the nose at a slope weaker than a head's)
    is refused, even though the asymmetry it shows is well above the noise floor."""
    s = sweep(amp=0.6)
    r = analyse(track(s, -0.2 * s), 640)
    assert r.depth > r.needed and r.coupling > -0.3, r
    assert r.decision == "attack", r


def test_a_face_large_in_the_frame_needs_more_depth_than_perspective_gives_a_print() -> None:
    """Close to the lens (eye distance 200 px in a 640 px frame) a print's perspective mimics some
    head-like asymmetry; a depth under the perspective bound is an attack, the same track far away is live."""
    s = sweep(amp=0.2)
    q = -0.6 * s
    near = analyse(track(s, q, eye=200.0), 640)
    assert near.depth > 0.035 and near.depth < near.needed, near
    assert near.decision == "attack", near
    assert analyse(track(s, q, eye=40.0), 640).decision == "live"


def test_moving_closer_is_not_parallax() -> None:
    """Each frame is measured in eye distances: the same track at twice the size reports the same
    parallax."""
    rng = np.random.default_rng(0)
    s = sweep()
    base = track(s, -0.8 * s) + rng.normal(0, 0.5, (30, 5, 2))
    small, big = analyse(base, 640), analyse((base - 240.0) * 2 + 240.0, 1280)
    assert small.decision == big.decision == "live"
    assert np.isclose(small.parallax, big.parallax, rtol=1e-6, atol=1e-9), (small, big)
    assert small.parallax > 0


def test_one_slipped_frame_does_not_make_a_still_face_live() -> None:
    """A still face whose tracker slips in a single frame (nose and eye widths jump together) is not
    judged live."""
    s = np.zeros(30)
    q = np.zeros(30)
    s[15], q[15] = 0.6, -0.6
    r = analyse(track(s, q), 640)
    assert r.decision == "inconclusive", r


def test_a_turn_under_the_motion_floor_is_inconclusive_not_judged() -> None:
    """A face whose nose swept less than MIN_MOTION eye distances has not turned: inconclusive,
    neither live nor attack."""
    s = sweep(amp=0.05)  # spread about 0.035 eye distances
    r = analyse(track(s, -1.0 * s), 640)
    assert 0.02 < r.motion < 0.05, r
    assert r.decision == "inconclusive" and r.score == 0.0, r
