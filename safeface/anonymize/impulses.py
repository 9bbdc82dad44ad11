"""Video frames under heavy impulse noise: a large share of pixels set to black, white or any
value, which hides a face from HOG while a median filter gives it back. Photos search a 5x5
median (views.crafted_views); a video frame cannot pay for one more search of every frame, so a
cheap test finds such a region first and only then is the median searched (FaceFinder._search).

The test: an impulse differs far from the median of its 3x3 neighbourhood, which follows edges
and smooth shading, so in a natural frame few pixels do; a block where many do was written
that way."""

from __future__ import annotations

import numpy as np

# Blocks of this many pixels a side of the frame as decoded are judged (the scaled copy blends
# impulses into their neighbours).
BLOCK = 32
# A pixel is an impulse where some channel is this far from its 3x3 median...
IMPULSE_LEVELS = 64
# ... and a block is under impulse noise where at least this share of its pixels are.
IMPULSE_SHARE = 0.1
# The median searched, as the photos' view.
MEDIAN_SIDE = 5


def has_impulses(image: np.ndarray) -> bool:
    """Whether some block of `image` (H, W, 3 uint8) has IMPULSE_SHARE of its pixels far from
    their neighbourhood's median."""
    import cv2

    h, w = image.shape[:2]
    rows, cols = h // BLOCK, w // BLOCK
    if rows == 0 or cols == 0:
        return False
    part = np.ascontiguousarray(image[:rows * BLOCK, :cols * BLOCK])
    far = cv2.absdiff(part, cv2.medianBlur(part, 3))
    if far.ndim == 3:
        planes = cv2.split(far)
        far = cv2.max(cv2.max(planes[0], planes[1]), planes[2])
    # 255 where a pixel is an impulse, so a block's mean is 255 times its share of them.
    marked = cv2.compare(far, IMPULSE_LEVELS, cv2.CMP_GE)
    share = cv2.resize(marked, (cols, rows), interpolation=cv2.INTER_AREA)
    return bool(np.any(share >= 255 * IMPULSE_SHARE))


def median_view(image: np.ndarray) -> np.ndarray:
    """The MEDIAN_SIDE x MEDIAN_SIDE median of `image`, at its size."""
    import cv2

    out: np.ndarray = cv2.medianBlur(np.ascontiguousarray(image), MEDIAN_SIDE)
    return out
