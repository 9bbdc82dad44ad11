"""Is the face in a clip flat? A physics check on the 5-point track, with no trained model.

A print or a screen is a plane: seen by a camera, every point of it moves under one map between
frames (a homography; at arm's length, an affine map to within a pixel). Stack the centred
landmarks of all frames into the 2F x 5 measurement matrix W: for a rigid object under an affine
camera W = M S with S the object's 3 x 5 shape, so W has rank 3 for a solid head and rank 2 for a
flat picture (Tomasi and Kanade, 1992). The third singular value beyond the fourth (which holds
only tracking noise) measures the parallax: how far the points move against the best planar
motion, in eye distances (each frame is divided by its eye distance, so moving closer is not
motion).

With 5 points, the nose base alone cannot show depth (a sheared picture moves it the same way),
so the parallax a head shows comes from the eye corners: the outer corners sit behind the inner
ones, and a turning head makes the near eye look wider than the far one. A second, targeted
measure uses this: the slope of the eyes' width asymmetry against the nose's shift along the eye
line. A head gives about -1 (the eye on the side the nose turns to narrows); a flat picture, however
it is tilted, gives 0.

The decision uses the second measure, because it also survives perspective. A picture held
close to the lens shows perspective (its near side is larger), which mimics a little of a head's
asymmetry; how much is bounded by the face's size in the frame (eye distance / frame width, about
eye distance / focal length): about 0.3 of it at the largest tilt a hand makes (0.29 measured
on waved prints), so a live face must exceed 0.45 of it. So the face is
live when the nose swept along the eye line (motion: its spread, in eye distances), the eyes'
asymmetry followed it with a head's sign and slope, and the asymmetry so explained ("depth")
exceeds both a noise floor and the perspective bound. The rank-3 parallax is reported beside it.

A face that did not turn cannot show depth, so too little motion is "inconclusive", never "live".
A face that turned with no depth moved as a plane: "attack".

In a clip check (liveness.py) only the motion gate of this decision is used; whether the turned
face is solid is judged from many points of its surface (parallax.py), because on a small face
(under 40 px between the eyes) the asymmetry sits within the 5-point tracker's noise, and the
tracker's shape prior gives a turned picture a head's asymmetry too. This decision stays in the
checks for the reader ("physics.decision").
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

MIN_FRAMES = 8
MIN_MOTION = 0.05  # spread of the nose along the eye line, eye distances (a head sweeping about +-12 degrees)
# The eye-asymmetry slope a solid face must show. Geometry predicts about -1 for a head; dlib's
# 5-point tracker on real footage (the Hamilton clip) gives -0.4 to -0.75, as its shape prior pulls
# the corners towards the mean; a flat picture gives 0 (about +-0.3 with tracking noise).
LIVE_COUPLING = -0.3
MIN_DEPTH = 0.035  # asymmetry explained by the turn, above tracking noise (1 px on a 60 px eye distance)
PERSPECTIVE_BOUND = 0.45  # a flat picture's asymmetry from perspective, per unit of eye distance / frame width


@dataclass(frozen=True)
class Physics:
    decision: str  # "live", "attack" or "inconclusive"
    motion: float  # spread of the nose along the eye line, eye distances
    coupling: float  # slope of eye-width asymmetry on that shift
    depth: float  # asymmetry explained by the turn: -coupling * motion
    needed: float  # the depth a live face must exceed here (noise floor or perspective bound)
    parallax: float  # rank-3 motion beyond tracking noise, eye distances (RMS per frame), reported
    frames: int
    reason: str

    @property
    def score(self) -> float:
        """0..1: how clearly the face is solid (0.5 at the decision line, 0 when inconclusive)."""
        if self.decision == "inconclusive" or self.needed <= 0:
            return 0.0
        if self.coupling > LIVE_COUPLING:
            return float(np.clip(0.5 * max(self.depth, 0.0) / self.needed, 0.0, 0.49))
        return float(np.clip(0.5 * self.depth / self.needed, 0.0, 1.0))

    def to_dict(self) -> dict[str, object]:
        return {"decision": self.decision, "motion": round(self.motion, 4), "coupling": round(self.coupling, 3),
                "depth": round(self.depth, 4), "needed": round(self.needed, 4), "parallax": round(self.parallax, 4),
                "frames": self.frames, "reason": self.reason}


def _normalised(points: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Each frame centred and divided by its eye distance; also (along, across, asym) per frame."""
    p = np.asarray(points, dtype=np.float64).reshape(-1, 5, 2)
    a, b = (p[:, 0] + p[:, 1]) / 2, (p[:, 2] + p[:, 3]) / 2
    swap = a[:, 0] > b[:, 0]
    left = np.where(swap[:, None], b, a)
    right = np.where(swap[:, None], a, b)
    e = right - left
    d = np.linalg.norm(e, axis=1)
    d = np.where(d < 1e-6, 1e-6, d)
    ex = e / d[:, None]
    ey = np.stack([-ex[:, 1], ex[:, 0]], axis=1)
    v = p[:, 4] - (left + right) / 2
    along = (v * ex).sum(axis=1) / d
    across = (v * ey).sum(axis=1) / d
    w_a = np.linalg.norm(p[:, 0] - p[:, 1], axis=1)
    w_b = np.linalg.norm(p[:, 2] - p[:, 3], axis=1)
    w_right = np.where(swap, w_a, w_b)
    w_left = np.where(swap, w_b, w_a)
    asym = (w_right - w_left) / np.maximum(w_right + w_left, 1e-6)
    centred = (p - p.mean(axis=1, keepdims=True)) / d[:, None, None]
    return centred, np.stack([along, across, asym], axis=1)


def _median3(x: np.ndarray) -> np.ndarray:
    if len(x) < 3:
        return x
    padded = np.concatenate([x[:1], x, x[-1:]])
    out: np.ndarray = np.median(np.stack([padded[:-2], padded[1:-1], padded[2:]]), axis=0)
    return out


def analyse(points: np.ndarray, frame_width: float) -> Physics:
    """Decide live / attack / inconclusive from a (frames, 5, 2) landmark track of frames
    `frame_width` pixels wide."""
    n = int(np.asarray(points).reshape(-1, 5, 2).shape[0])
    if n < MIN_FRAMES:
        return Physics("inconclusive", 0.0, 0.0, 0.0, 0.0, 0.0, n, f"only {n} frames with a face (at least "
                       f"{MIN_FRAMES} needed)")
    centred, feats = _normalised(points)
    w = np.concatenate([centred[:, :, 0], centred[:, :, 1]], axis=0)  # 2F x 5
    s = np.linalg.svd(w, compute_uv=False)
    s = np.pad(s, (0, max(0, 4 - len(s))))
    parallax = float(np.sqrt(max(s[2] ** 2 - s[3] ** 2, 0.0) / n))
    # A 3-frame running median: a single frame where the tracker slipped must not decide.
    along, asym = _median3(feats[:, 0]), _median3(feats[:, 2])
    motion = float(np.std(along))
    coupling = float(np.cov(along, asym)[0, 1] / np.var(along, ddof=1)) if motion > 1e-9 else 0.0
    depth = -coupling * motion
    p = np.asarray(points, dtype=np.float64).reshape(-1, 5, 2)
    eye_px = float(np.median(np.linalg.norm((p[:, 0] + p[:, 1]) / 2 - (p[:, 2] + p[:, 3]) / 2, axis=1)))
    needed = max(MIN_DEPTH, PERSPECTIVE_BOUND * eye_px / max(float(frame_width), 1.0))
    args = (motion, coupling, depth, needed, parallax, n)
    if motion < MIN_MOTION:
        return Physics("inconclusive", *args, "the face hardly turned: too little motion to tell a head from a picture")
    if coupling <= LIVE_COUPLING and depth >= needed:
        return Physics("live", *args, "the eyes' widths changed with the turn as a solid head's do")
    if coupling > LIVE_COUPLING:
        return Physics("attack", *args, "the face turned but its landmarks moved as one plane (a print or a screen)")
    return Physics("attack", *args, "the face turned with too little depth for a head at this distance from the lens")
