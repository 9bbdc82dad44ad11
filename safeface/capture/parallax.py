"""Does the face's surface move as one plane? Many points inside the face, against one homography.

A print or a screen is a plane: every point of it, seen by a camera, follows one homography from
the first frame to any later one, to within the tracker's noise. A head is not: the nose, the eye
sockets and the cheeks lie at different depths, and when the head turns they move against each
other (parallax); a face that speaks or blinks moves non-rigidly too. The 5 landmarks cannot show
this on their own (four of them lie on the eye line, and a sheared picture moves the fifth as a
turn does), so this check follows corner points of the face's texture (brow to mouth, inside the
cheeks, so no background behind the face is counted) from the first sampled frame through the
clip (pyramidal Lucas-Kanade, kept only when tracking back returns to the start), fits the best
homography from the first frame to each later one (RANSAC, then all points are scored), and
measures the share of points that sit off it by more than the tracker's noise (OFF_PLANE_PX, in
pixels: tracking noise is a pixel property, whatever the face's size). Points on a turning face
are lost within a few frames, so the points are found afresh in short pairs of frames, and only
pairs across which the face turned count (see measure()). The clip's value is the median over
those pairs, so one pair where tracking slipped does not decide.

Measured on generated waved prints and screens (H.264, crf 20), the share is at most 0.08 on the
calibration set (seed 0) and at most 0.15 on 260 held-out ones (one print; the rest under 0.05);
on the real head motion of the Hamilton clip it is 0.25 to 0.44 (README, "Measuring it"). A bent print, glare that slides over a glossy print, or a screen replaying a
video of a moving face would also move points off one plane: the surface shows depth or
non-rigid motion, not a person's presence.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np

OFF_PLANE_PX = 1.5  # a point this far off the best homography moved against the plane (LK noise is about 1 px)
MAX_POINTS = 80
MIN_POINTS = 12  # fewer tracked points than this: the check cannot judge the surface
GAP = 3  # frames compared are this many samples apart (0.2 s at 15 samples per second)
PAIR_STEP = 2  # a pair starts at every second sample
MIN_TURN = 0.04  # nose shift along the eye line across a pair, eye distances (about 6 degrees of turn)
MIN_PAIRS = 2  # at least two turns seen (pairs of a 2 s clip: up to 14)


@dataclass(frozen=True)
class Parallax:
    off_plane: float  # median over pairs of the share of face points off the best homography
    residual_px: float  # median over pairs of the points' RMS distance from it, pixels
    points: int  # median number of points followed through a pair
    pairs: int  # pairs of frames across which the face turned and enough points were followed
    # The tracked samples those pairs start and end at: the frames whose motion was judged, so
    # the face bound to the evidence can be shown to be the one that moved (liveness.bind_face).
    samples: tuple[int, ...] = ()

    @property
    def measured(self) -> bool:
        return self.pairs >= MIN_PAIRS

    def to_dict(self) -> dict[str, object]:
        return {"off_plane": round(self.off_plane, 3), "residual_px": round(self.residual_px, 2),
                "points": self.points, "pairs": self.pairs}


def _grey(frame: np.ndarray) -> np.ndarray:
    import cv2

    return cv2.cvtColor(frame, cv2.COLOR_RGB2GRAY) if frame.ndim == 3 else frame


def _window(pts: np.ndarray, shape: tuple[int, ...], grow: float) -> tuple[int, int, int, int]:
    """The face's centre region from its 5 points (eye distance d): d*(0.9+grow) to each side,
    from 0.7 d above the eyes to 1.3 d below them, plus `grow` d; clipped to the frame."""
    p = np.asarray(pts, np.float64).reshape(5, 2)
    d = float(np.linalg.norm((p[0] + p[1]) / 2 - (p[2] + p[3]) / 2)) or 1.0
    c = p[:4].mean(axis=0)
    h, w = shape[:2]
    x1, x2 = int(max(0, c[0] - (0.9 + grow) * d)), int(min(w, c[0] + (0.9 + grow) * d))
    y1, y2 = int(max(0, c[1] - (0.7 + grow) * d)), int(min(h, c[1] + (1.3 + grow) * d))
    return x1, y1, x2, y2


def _along(p: np.ndarray) -> float:
    """The nose base's offset along the eye line, in eye distances (turning moves it)."""
    a, b = (p[0] + p[1]) / 2, (p[2] + p[3]) / 2
    e = b - a
    d2 = float(e @ e) or 1.0
    return float((p[4] - (a + b) / 2) @ e) / d2


def _pair(frames: Sequence[np.ndarray], pts: np.ndarray, k: int, gap: int) -> tuple[float, float, int]:
    """Points of the face in frame k followed to frame k + gap: (share off the best homography,
    RMS distance from it in pixels, points left); points left 0 when it cannot be judged."""
    import cv2

    x1, y1, x2, y2 = _window(pts[k], frames[k].shape, 0.0)
    if x2 - x1 < 8 or y2 - y1 < 8:
        return 0.0, 0.0, 0
    d = float(np.linalg.norm((pts[k, 0] + pts[k, 1]) / 2 - (pts[k, 2] + pts[k, 3]) / 2)) or 1.0
    # Only the region the face can reach is searched (pyramids of a crop, not of the frame).
    wx1, wy1, wx2, wy2 = _window(pts[k], frames[k].shape, 1.5)
    crops = [np.ascontiguousarray(_grey(frames[j])[wy1:wy2, wx1:wx2]) for j in range(k, k + gap + 1)]
    mask = np.zeros(crops[0].shape, np.uint8)
    mask[y1 - wy1:y2 - wy1, x1 - wx1:x2 - wx1] = 255
    start = cv2.goodFeaturesToTrack(crops[0], MAX_POINTS, 0.01, max(3.0, d / 12), mask=mask)
    if start is None or len(start) < MIN_POINTS:
        return 0.0, 0.0, 0
    cur = start.astype(np.float32)
    alive = np.ones(len(start), bool)
    lk = {"winSize": (15, 15), "maxLevel": 2}
    for a, b in zip(crops, crops[1:]):
        nxt, st, _ = cv2.calcOpticalFlowPyrLK(a, b, cur, None, **lk)
        back, st2, _ = cv2.calcOpticalFlowPyrLK(b, a, nxt, None, **lk)
        fb = np.linalg.norm((back - cur).reshape(-1, 2), axis=1)
        alive &= (st.ravel() == 1) & (st2.ravel() == 1) & (fb < 0.5)
        cur = nxt
    if alive.sum() < MIN_POINTS:
        return 0.0, 0.0, 0
    src, dst = start.reshape(-1, 2)[alive], cur.reshape(-1, 2)[alive]
    hmat, _ = cv2.findHomography(src, dst, cv2.RANSAC, 3.0)
    if hmat is None:
        return 0.0, 0.0, 0
    r = np.linalg.norm(cv2.perspectiveTransform(src.reshape(-1, 1, 2), hmat).reshape(-1, 2) - dst, axis=1)
    return float(np.mean(r > OFF_PLANE_PX)), float(np.sqrt(np.mean(r ** 2))), int(alive.sum())


def measure(frames: Sequence[np.ndarray], points: np.ndarray) -> Parallax:
    """`frames`: the tracked frames (RGB); `points`: the 5 landmarks in each, (n, 5, 2).

    Pairs of frames GAP samples apart are compared, fresh points each time (points on a turning
    face are lost within a few frames). Only pairs across which the face turned (the nose moved
    along the eye line by MIN_TURN eye distances) count: between two frames of a still face a head
    is as flat as a picture, so the surface is judged against the turn actually observed."""
    pts = np.asarray(points, np.float64).reshape(-1, 5, 2)
    along = np.array([_along(p) for p in pts])
    shares: list[float] = []
    rms: list[float] = []
    found: list[int] = []
    used: set[int] = set()
    for k in range(0, len(frames) - GAP, PAIR_STEP):
        if abs(along[k + GAP] - along[k]) < MIN_TURN:
            continue
        share, dist, n = _pair(frames, pts, k, GAP)
        if n:
            shares.append(share)
            rms.append(dist)
            found.append(n)
            used |= {k, k + GAP}
    if not shares:
        return Parallax(0.0, 0.0, 0, 0)
    return Parallax(float(np.median(shares)), float(np.median(rms)), int(np.median(found)), len(shares),
                    tuple(sorted(used)))
