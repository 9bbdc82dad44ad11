"""Replay cues that can be measured on the frames themselves.

* Periodic spectrum: a halftone print or a screen filmed by a camera carries a regular grid (dots,
  sub-pixels) that shows as isolated peaks in the face's high-frequency spectrum (moire); skin,
  hair and JPEG noise spread their energy. The cue is the strongest peak against the median of
  the high band, on the face at its native resolution.
* Frozen frames: a still picture shown to the camera, or a replayed video at a lower frame rate,
  repeats frames exactly; a live sensor never does (its noise alone changes every pixel).
* Borders (reported, not decisive): long straight edges around the face, both across and along,
  as a print's margin or a screen's bezel makes. A room has straight edges too (doors, windows),
  and this cue does not yet check that the edges move with the face, so it informs the checks'
  reader and the evaluation but does not decide.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np

PEAK_LIMIT = 60.0  # peak / median of the high band above which the face carries a regular grid
FROZEN_DIFF = 0.35  # mean absolute grey difference below which two frames are the same picture
FROZEN_LIMIT = 0.5  # share of repeated frames that marks a replay
SIDE = 128


@dataclass(frozen=True)
class Replay:
    spectrum_peak: float
    frozen_share: float
    border_share: float = 0.0  # share of sampled frames with a frame-like pair of long edges around the face

    @property
    def periodic(self) -> bool:
        return self.spectrum_peak >= PEAK_LIMIT

    @property
    def frozen(self) -> bool:
        return self.frozen_share >= FROZEN_LIMIT

    @property
    def flagged(self) -> bool:
        return self.periodic or self.frozen

    def to_dict(self) -> dict[str, object]:
        return {"spectrum_peak": round(self.spectrum_peak, 1), "periodic": self.periodic,
                "frozen_share": round(self.frozen_share, 3), "frozen": self.frozen,
                "border_share": round(self.border_share, 3)}


def _face_grey(frame: np.ndarray, box: Sequence[float]) -> np.ndarray:
    h, w = frame.shape[:2]
    x1, y1, x2, y2 = (int(round(v)) for v in box)
    x1, y1, x2, y2 = max(0, x1), max(0, y1), min(w, x2), min(h, y2)
    crop = np.ascontiguousarray(frame[y1:y2, x1:x2])
    if crop.size == 0:
        return np.zeros((8, 8), np.float32)
    import cv2

    return (cv2.cvtColor(crop, cv2.COLOR_RGB2GRAY) if crop.ndim == 3 else crop).astype(np.float32)


def spectrum_peak(grey: np.ndarray) -> float:
    """Strongest isolated peak of the high band against its median (1 for pure noise)."""
    import cv2

    g = grey
    if min(g.shape) < 32:
        return 0.0
    side = min(SIDE, min(g.shape))
    cy, cx = g.shape[0] // 2, g.shape[1] // 2
    g = g[cy - side // 2: cy - side // 2 + side, cx - side // 2: cx - side // 2 + side]
    hp = g - cv2.GaussianBlur(g, (0, 0), 2.0)
    win = np.outer(np.hanning(side), np.hanning(side)).astype(np.float32)
    mag = np.abs(np.fft.fftshift(np.fft.fft2(hp * win)))
    yy, xx = np.mgrid[:side, :side]
    r = np.hypot(yy - side / 2, xx - side / 2) / (side / 2)
    band = (r > 0.25) & (r < 0.95)
    vals = mag[band]
    med = float(np.median(vals))
    return float(vals.max() / med) if med > 0 else 0.0


def framed(frame: np.ndarray, box: Sequence[float]) -> bool:
    """Long straight edges (at least 0.9 face widths) outside the face, within 1.6 face sizes of
    it, one roughly horizontal and one roughly vertical: the corner of a print or a screen."""
    import cv2

    h, w = frame.shape[:2]
    x1, y1, x2, y2 = (float(v) for v in box)
    bw, bh = max(1.0, x2 - x1), max(1.0, y2 - y1)
    rx1, ry1 = int(max(0, x1 - 1.6 * bw)), int(max(0, y1 - 1.6 * bh))
    rx2, ry2 = int(min(w, x2 + 1.6 * bw)), int(min(h, y2 + 1.6 * bh))
    if rx2 - rx1 < 16 or ry2 - ry1 < 16:
        return False
    grey = cv2.cvtColor(np.ascontiguousarray(frame[ry1:ry2, rx1:rx2]), cv2.COLOR_RGB2GRAY)
    lines = cv2.HoughLinesP(cv2.Canny(grey, 60, 160), 1, np.pi / 180, 50, minLineLength=int(0.9 * bw), maxLineGap=6)
    across = along = False
    for ax, ay, bx, by in ([] if lines is None else lines[:, 0]):
        mx, my = (ax + bx) / 2 + rx1, (ay + by) / 2 + ry1
        if x1 - 0.1 * bw < mx < x2 + 0.1 * bw and y1 - 0.1 * bh < my < y2 + 0.1 * bh:
            continue  # an edge of the face itself
        angle = abs(float(np.degrees(np.arctan2(by - ay, bx - ax)))) % 180
        across |= angle < 30 or angle > 150
        along |= 60 < angle < 120
    return across and along


def replay_cues(frames: Sequence[np.ndarray], boxes: Sequence[Sequence[float]]) -> Replay:
    """Cues on the tracked frames (`boxes`: the face box in each)."""
    step = max(1, len(frames) // 4)
    picks = [_face_grey(f, b) for f, b in list(zip(frames, boxes))[::step][:4]]
    peak = float(np.median([spectrum_peak(g) for g in picks])) if picks else 0.0
    # Frozen frames: the same region compared frame to frame (the first box, every other pixel).
    x1, y1, x2, y2 = (int(round(v)) for v in boxes[0]) if boxes else (0, 0, 0, 0)
    region = tuple(float(v) for v in (x1, y1, x2, y2))
    greys = [_face_grey(f, region)[::2, ::2] for f in frames]
    same = 0
    pairs = 0
    for a, b in zip(greys, greys[1:]):
        if a.shape != b.shape or a.size == 0:
            continue
        pairs += 1
        same += float(np.mean(np.abs(a - b))) < FROZEN_DIFF
    sampled = list(zip(frames, boxes))[:: max(1, len(frames) // 5)][:5]
    borders = float(np.mean([framed(f, b) for f, b in sampled])) if sampled else 0.0
    return Replay(peak, same / pairs if pairs else 0.0, borders)
