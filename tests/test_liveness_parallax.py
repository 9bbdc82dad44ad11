"""The surface check (capture/parallax.py) on rendered surfaces of known geometry."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))

from safeface.capture.liveness import MIN_OFF_PLANE  # noqa: E402
from safeface.capture.parallax import measure  # noqa: E402
from tests.test_liveness import _rendered  # noqa: E402


def test_one_pair_where_tracking_slipped_does_not_make_a_plane_solid() -> None:
    """A plane whose one frame is warped (a tracking slip in one pair) still reads as one plane: the
    median decides."""
    import cv2

    frames, pts = _rendered(False, 0)
    h, w = frames[0].shape[:2]
    yy, xx = np.mgrid[:h, :w].astype(np.float32)
    frames[17] = cv2.remap(frames[17], xx + 3 * np.sin(yy / 12), yy + 3 * np.cos(xx / 12), cv2.INTER_LINEAR)
    r = measure(frames, pts)
    assert r.measured and r.off_plane < MIN_OFF_PLANE / 4, r


def test_a_solid_seen_turning_in_only_one_pair_of_frames_is_not_judged() -> None:
    """Depth is judged only when the face turned across at least two pairs of frames; one is not enough, and
    the frames reported as judged are both ends of that pair."""
    frames, pts = _rendered(True, 0)
    still = np.repeat(pts[:1], len(pts), axis=0)
    still[16:, 4, 0] += 6.0  # the nose moves along the eye line once, between frames 15 and 16
    r = measure(frames, still)
    assert r.pairs == 1 and not r.measured, r
    assert r.samples == (14, 17), r  # the frames whose motion was judged: both ends of the pair


def test_points_that_flicker_on_a_plane_are_not_counted_as_depth() -> None:
    """Texture that changes from frame to frame on a plane (a flickering patch) is dropped by tracking
    back, not counted as points moving off the plane."""
    frames, pts = _rendered(False, 0)
    rng = np.random.default_rng(5)
    for f in frames:
        f[110:150, 145:185] = rng.integers(0, 256, (40, 40, 1), dtype=np.uint8)
    r = measure(frames, pts)
    assert r.measured and r.off_plane < MIN_OFF_PLANE / 2, r


def test_a_few_points_moving_on_their_own_do_not_pull_the_plane_fit() -> None:
    """A small patch sliding over a plane moves its own points off it, but the plane is fitted
    robustly: the rest of the plane's points stay on it and the share stays low."""
    import cv2

    frames, pts = _rendered(False, 0)
    rng = np.random.default_rng(3)
    patch = cv2.GaussianBlur(np.repeat(rng.integers(0, 256, (32, 32, 1), dtype=np.uint8), 3, axis=2), (0, 0), 1.0)
    for i, f in enumerate(frames):
        y = 110 + (4 * i) % 60
        f[y:y + 32, 140:172] = patch
    r = measure(frames, pts)
    assert r.measured and r.off_plane < MIN_OFF_PLANE / 2, r


def test_a_surface_with_too_few_points_followed_is_not_judged() -> None:
    """When flickering texture leaves fewer than MIN_POINTS points followed through a pair, that pair
    is not judged: a handful of points cannot show a plane's depth."""
    frames, pts = _rendered(False, 0)
    rng = np.random.default_rng(5)
    for f in frames:
        f[100:170, 120:190] = rng.integers(0, 256, (70, 70, 1), dtype=np.uint8)
    assert not measure(frames, pts).measured
