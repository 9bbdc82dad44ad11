"""Checks and normalisation of the arrays that pass between the pipeline's stages."""

from __future__ import annotations

import numpy as np

from ...errors import ImageError
from ...imageio import c_order


def check_rgb_image(image: np.ndarray) -> np.ndarray:
    """The image, checked, in the memory layout dlib and ONNX Runtime take (imageio.c_order)."""
    if not isinstance(image, np.ndarray) or image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
        raise ImageError("expected a decoded (H, W, 3) uint8 RGB image; use safeface.load_image first.")
    return c_order(image)


def check_chips(chips: np.ndarray, size: int) -> np.ndarray:
    """Aligned chips as a contiguous (N, size, size, 3) uint8 array."""
    chips = np.asarray(chips)
    if chips.ndim != 4 or chips.shape[1:] != (size, size, 3) or chips.dtype != np.uint8:
        raise ImageError(f"expected chips of shape (N, {size}, {size}, 3) uint8, got {chips.shape} {chips.dtype}.")
    return np.ascontiguousarray(chips)


def l2_normalize(x: np.ndarray) -> np.ndarray:
    """float32 unit vectors along the last axis (zero vectors stay zero)."""
    x = np.asarray(x, dtype=np.float64)
    n = np.linalg.norm(x, axis=-1, keepdims=True)
    out: np.ndarray = (x / np.where(n == 0, 1.0, n)).astype(np.float32)
    return out
