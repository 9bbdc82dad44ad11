"""Covering face regions: where the cover goes (box plus margin) and how it hides the face
(blur, pixelate, solid, each under grain). Pure array work; knows nothing of detection or files."""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass
from typing import Iterable, Sequence

import numpy as np
from PIL import Image, ImageFilter

from ..errors import InvalidArgument, SafeFaceError
from ..lookalike import spelled

MODES = ("blur", "pixelate", "solid")
DEFAULT_MODE = "blur"
# Fraction of the detector's box added on each side. dlib's boxes run from the brows to the
# chin, so hair line, ears and forehead lie outside them; the top gets more than the sides.
DEFAULT_MARGIN = 0.4
TOP_FACTOR = 1.5
# Cells across the face box: the cover keeps at most this many averaged values per face width.
# Measured on LFW: with four (blur) or five (pixelate) the recognizer scores the covered face
# against its original no higher than it scores two different people.
BLUR_CELLS = 4
PIXELATE_CELLS = 5
SOLID_RGB = (128, 128, 128)
# Grain over every cover. A cover with no face information in it still lands near the average
# of the recognizer's embedding space, and so do small, low-detail faces: on LFW a plain grey
# square scores above the match threshold against ten of them. Monochrome grain, half the
# cover's weight, in cells of a fortieth of the face (so it survives the recognizer's resize to
# 150 px), moves the cover away from that average. Measured on LFW dev: faces still scoring
# above the threshold against their cover went from 11 to 1-2 of 1,637 (blur).
GRAIN_WEIGHT = 0.5
GRAIN_CELLS = 40


@dataclass(frozen=True)
class Region:
    """A rectangle to cover, in whole pixels, clipped to the image; `face_size` is the side of
    the face box it came from (the cover's strength scales with it)."""

    x1: int
    y1: int
    x2: int
    y2: int
    face_size: float

    @property
    def empty(self) -> bool:
        return self.x2 <= self.x1 or self.y2 <= self.y1

    def as_list(self) -> list[int]:
        return [self.x1, self.y1, self.x2, self.y2]


def check_mode(mode: str) -> str:
    if mode not in MODES:
        raise InvalidArgument(f"unknown anonymization mode {spelled(mode)}; choose one of {', '.join(MODES)}.")
    return mode


def check_margin(margin: float) -> float:
    if not isinstance(margin, (int, float)) or not math.isfinite(margin) or margin < 0 or margin > 3:
        raise SafeFaceError(f"margin {margin!r} is out of range; use a fraction of the face box from 0 to 3 (default {DEFAULT_MARGIN}).")
    return float(margin)


def region_for_box(box: Sequence[float], margin: float, width: int, height: int) -> Region:
    """The face box grown by `margin` of its size on each side (more above), clipped."""
    x1, y1, x2, y2 = (float(v) for v in box)
    w, h = max(x2 - x1, 1.0), max(y2 - y1, 1.0)
    size = max(w, h)
    rx1 = math.floor(x1 - margin * w)
    rx2 = math.ceil(x2 + margin * w)
    ry1 = math.floor(y1 - margin * TOP_FACTOR * h)
    ry2 = math.ceil(y2 + margin * h)
    return Region(max(rx1, 0), max(ry1, 0), min(rx2, width), min(ry2, height), size)


def apply_cover(image: np.ndarray, regions: Iterable[Region], mode: str = DEFAULT_MODE) -> np.ndarray:
    """A copy of `image` (H, W, 3) uint8 with every region covered."""
    out = np.array(image, dtype=np.uint8, copy=True)
    cover_in_place(out, regions, mode)
    return out


def cover_in_place(out: np.ndarray, regions: Iterable[Region], mode: str = DEFAULT_MODE) -> None:
    """apply_cover on `out` itself (an (H, W, 3) uint8 array the caller owns): a large photo's
    passes need no second copy of it."""
    check_mode(mode)
    for region in regions:
        if region.empty:
            continue
        patch = out[region.y1:region.y2, region.x1:region.x2]
        seed = _seed(patch)
        if mode == "solid":
            patch[...] = SOLID_RGB
        elif mode == "pixelate":
            patch[...] = _pixelate(patch, _cell(region.face_size, PIXELATE_CELLS))
        else:
            patch[...] = _blur(patch, _cell(region.face_size, BLUR_CELLS))
        patch[...] = _with_grain(patch, region.face_size, seed)


def _seed(patch: np.ndarray) -> int:
    # Seeded from the pixels being covered: the same input gives the same output, and without
    # the original no one can regenerate the grain to subtract it.
    digest = hashlib.blake2b(np.ascontiguousarray(patch).data, digest_size=8).digest()
    return int.from_bytes(digest, "little")


def _with_grain(patch: np.ndarray, face_size: float, seed: int) -> np.ndarray:
    h, w = patch.shape[:2]
    cell = max(1, round(face_size / GRAIN_CELLS))
    rng = np.random.default_rng(seed)
    grain = rng.integers(0, 256, (math.ceil(h / cell), math.ceil(w / cell), 1), dtype=np.uint8)
    grain = np.repeat(np.repeat(grain, cell, axis=0), cell, axis=1)[:h, :w]
    mixed = (1.0 - GRAIN_WEIGHT) * patch.astype(np.float32) + GRAIN_WEIGHT * grain.astype(np.float32)
    return np.clip(mixed + 0.5, 0, 255).astype(np.uint8)


def _cell(face_size: float, cells: int) -> int:
    return max(2, int(math.ceil(face_size / cells)))


def _coarse(patch: np.ndarray, cell: int) -> tuple[Image.Image, tuple[int, int]]:
    h, w = patch.shape[:2]
    small = (max(1, math.ceil(w / cell)), max(1, math.ceil(h / cell)))
    # BOX resampling averages each cell: the detail inside a cell is gone, not just smoothed,
    # so no deconvolution can bring it back.
    return Image.fromarray(patch).resize(small, Image.Resampling.BOX), (w, h)


def _pixelate(patch: np.ndarray, cell: int) -> np.ndarray:
    small, size = _coarse(patch, cell)
    return np.asarray(small.resize(size, Image.Resampling.NEAREST))


def _blur(patch: np.ndarray, cell: int) -> np.ndarray:
    small, size = _coarse(patch, cell)
    # Smooth upscale, then a Gaussian of about a cell's width hides the grid: a blur whose
    # strength grows with the face, over content that holds only a few values per face.
    up = small.resize(size, Image.Resampling.BILINEAR)
    return np.asarray(up.filter(ImageFilter.GaussianBlur(radius=max(1.0, cell * 0.6))))
