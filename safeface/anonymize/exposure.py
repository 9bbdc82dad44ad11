"""Nearly black pixels, stretched: a face HOG misses in an underexposed photo or frame (a night
shot, or values squeezed to 0-7 on purpose) is given back by brightening the output, so the
search looks at the stretched copy too. One place for the test and the stretch, for photos
(views.py) and video frames (detect.FaceFinder)."""

from __future__ import annotations

from typing import Optional

import numpy as np

# Pixels whose 99th percentile is under this are stretched to the full range for a second look.
DARK_P99 = 64
# A frame's percentile is read on every 4th row and column: a video pays for it on every frame.
_SAMPLE_STEP = 4


def stretched_if_dark(pixels: np.ndarray, sample: bool = False) -> Optional[np.ndarray]:
    """The pixels stretched from their minimum to their 99th percentile, or None when they are
    not dark. `sample`: read the percentile on a sparse grid (video frames)."""
    seen = pixels[::_SAMPLE_STEP, ::_SAMPLE_STEP] if sample else pixels
    top = float(np.percentile(seen, 99))
    if top >= DARK_P99:
        return None
    lo = float(pixels.min())
    stretched = (pixels.astype(np.float32) - lo) * (255.0 / max(top - lo, 1.0))
    out: np.ndarray = np.clip(stretched, 0, 255).astype(np.uint8)
    return out
