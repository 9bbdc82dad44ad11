"""What a person box looks like, from the clothing only: the upper body (shoulders to waist) and
the lower body (hips to ankles). The head is left out: its region is covered anyway, and skin
and hair are not clothing. A descriptor is kept in memory for the run that made it; it is never
written anywhere."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .colours import colour_shares

# Fractions of the box height (top to bottom) and width (inset from both sides).
UPPER = (0.20, 0.50)
LOWER = (0.55, 0.92)
INSET = 0.2
# Hue x saturation x value bins of the matching histogram.
BINS = (8, 3, 3)


@dataclass
class Appearance:
    """Colour histograms (HSV, for matching), colour-name shares (for search), texture (mean
    gradient strength) of the two regions, and the box height in pixels."""

    upper_hist: np.ndarray
    lower_hist: np.ndarray
    upper_names: np.ndarray
    lower_names: np.ndarray
    texture: np.ndarray
    height: float

    def blend(self, other: "Appearance", weight: float) -> "Appearance":
        """A running mean: `weight` of `other`, the rest of self."""
        a = 1.0 - weight
        return Appearance(a * self.upper_hist + weight * other.upper_hist,
                          a * self.lower_hist + weight * other.lower_hist,
                          a * self.upper_names + weight * other.upper_names,
                          a * self.lower_names + weight * other.lower_names,
                          a * self.texture + weight * other.texture, a * self.height + weight * other.height)


def _region(hsv: np.ndarray, grey: np.ndarray, box: tuple[int, int, int, int], band: tuple[float, float]
            ) -> tuple[np.ndarray, np.ndarray]:
    x1, y1, x2, y2 = box
    h, w = y2 - y1, x2 - x1
    ry1, ry2 = y1 + int(band[0] * h), y1 + max(int(band[1] * h), int(band[0] * h) + 1)
    rx1, rx2 = x1 + int(INSET * w), x2 - int(INSET * w)
    if rx2 <= rx1:
        rx1, rx2 = x1, x2
    return hsv[ry1:ry2, rx1:rx2], grey[ry1:ry2, rx1:rx2]


def _hist(hsv: np.ndarray) -> np.ndarray:
    if hsv.size == 0:
        return np.zeros(int(np.prod(BINS)), np.float32)
    px = hsv.reshape(-1, 3).astype(np.int32)
    idx = (px[:, 0] * BINS[0] // 180) * BINS[1] * BINS[2] + (px[:, 1] * BINS[1] // 256) * BINS[2] + px[:, 2] * BINS[2] // 256
    hist = np.bincount(idx, minlength=int(np.prod(BINS))).astype(np.float32)
    total: np.float32 = hist.sum()
    return hist / total


def _texture(grey: np.ndarray) -> float:
    if grey.shape[0] < 2 or grey.shape[1] < 2:
        return 0.0
    g = grey.astype(np.float32)
    return float(np.abs(np.diff(g, axis=0)).mean() + np.abs(np.diff(g, axis=1)).mean()) / 255.0


def describe(hsv: np.ndarray, grey: np.ndarray, box: tuple[float, float, float, float]) -> Appearance:
    """The appearance of one person box of a frame (already converted to HSV and grey)."""
    H, W = grey.shape[:2]
    b = (max(0, int(box[0])), max(0, int(box[1])), min(W, int(box[2])), min(H, int(box[3])))
    up, up_g = _region(hsv, grey, b, UPPER)
    lo, lo_g = _region(hsv, grey, b, LOWER)
    return Appearance(_hist(up), _hist(lo), colour_shares(up), colour_shares(lo),
                      np.array([_texture(up_g), _texture(lo_g)], np.float32), float(box[3] - box[1]))


def distance(a: Appearance, b: Appearance) -> float:
    """0 (same clothes) to 1: Hellinger distance of the histograms, upper and lower averaged,
    with a small texture term."""
    def hell(p: np.ndarray, q: np.ndarray) -> float:
        return float(np.sqrt(max(0.0, 1.0 - float(np.sqrt(p * q).sum()))))

    d = 0.5 * hell(a.upper_hist, b.upper_hist) + 0.5 * hell(a.lower_hist, b.lower_hist)
    return min(1.0, 0.85 * d + 0.15 * min(1.0, float(np.abs(a.texture - b.texture).sum()) * 5.0))
