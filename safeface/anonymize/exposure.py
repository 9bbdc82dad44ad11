"""Dark pixels, brightened: a face HOG misses in the dark (a night shot, a face in shadow, or
values squeezed to 0-12 on purpose) is given back by a "levels" step on the output, so the
search looks at a brightened copy too. One place for the test and the view, for photos
(views.py) and video frames (detect.FaceFinder).

Two cases. Pixels that are nearly all dark (99th percentile under DARK_P99) are stretched from
their minimum to that percentile. Otherwise, a dark area large enough to hold a face (a face in
shadow, or a dark frame with a lamp or a white border in it, which lifts the percentile; dark in
one channel or all) has its shadows lifted: in each channel, every value up to LIFT_WHITE is
spread over the full range, the rest is white.

The same trick works anywhere in the range: values squeezed to 248-255 (nearly white) or to eight
mid-grey levels hide a face from HOG as well as 0-7 does, and one "levels" step gives it back (the
negative of a nearly white photo is nearly black, but is never brightened). So a photo or frame
whose every channel spans fewer than NARROW_RANGE levels is also searched stretched to the full
range (narrow_view). An ordinary photo spans far more and pays nothing."""

from __future__ import annotations

from typing import Optional

import numpy as np

DARK_P99 = 64
LIFT_WHITE = 32
# A shadow worth a look: a square this wide (the smallest face the video search looks for in its
# copy: 40 px at upsampling 1) at least DARK_SHARE dark (a channel under LIFT_WHITE). Dark hair
# or a dark coat in an ordinary frame fills no such square; a face in deep shadow does.
SHADOW_SIDE = 40
DARK_SHARE = 0.6
# A channel spanning fewer levels than this (1st to 99th percentile) is squeezed; the nearly black
# case (dark_view) already stretches photos whose 99th percentile is under DARK_P99.
NARROW_RANGE = 64
# Pixels are read on every 4th row and column: a video pays for the test on every frame.
_SAMPLE_STEP = 4


def dark_view(pixels: np.ndarray, sample: bool = False) -> Optional[np.ndarray]:
    """The brightened copy worth a second search, or None when nothing is dark enough to hide
    a face. `sample`: decide on a sparse grid (video frames)."""
    step = _SAMPLE_STEP if sample else 1
    seen = pixels[::step, ::step]
    top = float(np.percentile(seen, 99))
    if top < DARK_P99:
        lo = float(pixels.min())
        out: np.ndarray = _stretch(lo, top)[pixels]
        return out
    # A pixel is dark if any channel is: a face under a red lamp is dark in green and blue only,
    # and lifting each channel brings those back.
    dark = (seen.min(axis=-1) if seen.ndim == 3 else seen) < LIFT_WHITE
    if not _dark_square(dark, max(1, SHADOW_SIDE // step)):
        return None
    # A table, not arithmetic on the pixels: the uint16 steps took four times the photo's size
    # at once (630 MB beside a 50-megapixel photo's 150).
    lifted: np.ndarray = _LIFT[pixels]
    return lifted


# The shadows' lift: every value up to LIFT_WHITE spread over the full range, the rest white.
_LIFT = (np.minimum(np.arange(256), LIFT_WHITE - 1) * 255 // (LIFT_WHITE - 1)).astype(np.uint8)


def _dark_square(dark: np.ndarray, side: int) -> bool:
    """Whether some side x side block of the grid (blocks tiled, and tiled again half a block
    over, so a square straddling two blocks is not missed) is at least DARK_SHARE dark."""
    h, w = dark.shape
    for oy, ox in ((0, 0), (side // 2, side // 2)):
        rows, cols = (h - oy) // side, (w - ox) // side
        if rows <= 0 or cols <= 0:  # smaller than the offset itself: negative, and reshape would raise
            continue
        blocks = dark[oy:oy + rows * side, ox:ox + cols * side].reshape(rows, side, cols, side)
        if float(blocks.mean(axis=(1, 3)).max()) >= DARK_SHARE:
            return True
    return False


def narrow_view(pixels: np.ndarray, sample: bool = False) -> Optional[np.ndarray]:
    """The copy stretched to the full range when every channel spans a narrow band of values
    (nearly white, mid-grey, any level), or None (also where dark_view already stretches it).
    Percentiles, not the extremes: a few black or white pixels must not hide the squeeze."""
    step = _SAMPLE_STEP if sample else 1
    seen = pixels[::step, ::step]
    chans = seen.reshape(-1, seen.shape[-1]) if seen.ndim == 3 else seen.reshape(-1, 1)
    if chans.shape[0] == 0:
        return None
    lo, hi = np.percentile(chans, [1, 99], axis=0)
    if float(hi.max()) < DARK_P99 or float((hi - lo).max()) >= NARROW_RANGE:
        return None
    if pixels.ndim == 2:
        gray: np.ndarray = _stretch(float(lo[0]), float(hi[0]))[pixels]
        return gray
    out = np.empty(pixels.shape, np.uint8)
    for c, (a, b) in enumerate(zip(lo, hi)):
        out[..., c] = _stretch(float(a), float(b))[pixels[..., c]]
    return out


def _stretch(lo: float, hi: float) -> np.ndarray:
    """A table mapping lo..hi onto 0..255: a float copy of a 50-megapixel photo is 600 MB."""
    levels = (np.arange(256, dtype=np.float32) - lo) * (255.0 / max(hi - lo, 1.0))
    table: np.ndarray = np.clip(levels, 0, 255).astype(np.uint8)
    return table


# The local view's tiles: about the size of a small face searched at upsampling 1, so that a
# face's own levels fill most of a tile's histogram.
LOCAL_TILE = 128


def local_contrast_view(pixels: np.ndarray) -> np.ndarray:
    """Each region stretched by its own histogram (OpenCV's CLAHE, per channel, tiles of about
    LOCAL_TILE px, a high clip limit): a face squeezed into a few levels beside a black border or
    on an ordinary background, which the whole-image tests of dark_view and narrow_view miss, is
    drawn at full contrast, as a "levels" step on that region would draw it."""
    import cv2

    h, w = pixels.shape[:2]
    clahe = cv2.createCLAHE(clipLimit=40.0, tileGridSize=(max(1, -(-w // LOCAL_TILE)), max(1, -(-h // LOCAL_TILE))))
    if pixels.ndim == 2:
        gray: np.ndarray = clahe.apply(np.ascontiguousarray(pixels))
        return gray
    out = np.empty(pixels.shape, np.uint8)
    for c in range(pixels.shape[-1]):
        out[..., c] = clahe.apply(np.ascontiguousarray(pixels[..., c]))
    return out
