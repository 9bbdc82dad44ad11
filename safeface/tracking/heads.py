"""Covering the heads of the people being tracked. The video search covers the faces HOG can
find (from about 48 px at 768x576); CCTV faces are often smaller. Every person box the tracker
holds in a frame says where a head is, whatever its size, so the head zone of each is covered
too, after the frame's clothing is described and before a thumbnail is cut or the frame is
written: the output, and every thumbnail, shows no face at any size."""

from __future__ import annotations

from typing import Iterable, Sequence

import numpy as np

from ..anonymize.cover import apply_cover, region_for_box

# The head zone of an upright person box (fractions of its height): from a little above the
# box (blobs and HOG boxes cut the crown) to below the chin, and as wide as a head turned
# sideways plus the box's own jitter, never wider than the box.
ABOVE = 0.06
BELOW = 0.24
HALF_WIDTH = 0.2
MARGIN = 0.15  # of the zone, on each side (cover.region_for_box)


def head_zone(box: Sequence[float]) -> tuple[float, float, float, float]:
    x1, y1, x2, y2 = (float(v) for v in box)
    h = max(y2 - y1, 1.0)
    cx = (x1 + x2) / 2
    return (max(x1, cx - HALF_WIDTH * h), y1 - ABOVE * h, min(x2, cx + HALF_WIDTH * h), y1 + BELOW * h)


def cover_heads(rgb: np.ndarray, boxes: Iterable[Sequence[float]], mode: str) -> np.ndarray:
    """A copy of `rgb` with the head zone of every person box covered (`rgb` itself when there
    is none)."""
    h, w = rgb.shape[:2]
    regions = [region_for_box(head_zone(b), MARGIN, w, h) for b in boxes]
    return apply_cover(rgb, regions, mode) if regions else rgb
