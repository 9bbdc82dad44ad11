"""Test-time jitter: average the descriptors of randomly perturbed copies of an aligned chip.

The perturbations follow dlib's jitter_image: a crop shifted by up to 2% of the face size, zoomed
out by up to 3%, turned by up to 3 degrees, and mirrored half the time. The dlib engine runs dlib's
own jitter in C++; other engines use `jitter_chip` here with a seeded generator."""

from __future__ import annotations

import math

import numpy as np
from PIL import Image

from .types import Engine

MARGIN = 3
SHIFT = 0.02
MIN_SCALE = 0.97
MAX_ROTATION_DEG = 3.0


def jitter_chip(chip: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """One randomly perturbed copy of an (H, W, 3) uint8 chip, same size."""
    h, w = chip.shape[:2]
    inner_w, inner_h = w - 2 * MARGIN, h - 2 * MARGIN
    cx = (w - 1) / 2 + rng.uniform(-SHIFT, SHIFT) * inner_w
    cy = (h - 1) / 2 + rng.uniform(-SHIFT, SHIFT) * inner_h
    box = inner_h / rng.uniform(MIN_SCALE, 1.0)
    angle = math.radians(rng.uniform(-MAX_ROTATION_DEG, MAX_ROTATION_DEG))
    # PIL maps each output pixel back into the input: input = centre + R(angle) * (out - mid) * k.
    k_x, k_y = box / w, box / h
    cos, sin = math.cos(angle), math.sin(angle)
    mx, my = (w - 1) / 2, (h - 1) / 2
    a, b = cos * k_x, -sin * k_y
    d, e = sin * k_x, cos * k_y
    coeffs = (a, b, cx - a * mx - b * my, d, e, cy - d * mx - e * my)
    out = Image.fromarray(chip).transform((w, h), Image.Transform.AFFINE, coeffs, resample=Image.Resampling.BILINEAR)
    arr = np.asarray(out)
    if rng.random() > 0.5:
        arr = arr[:, ::-1]
    return np.ascontiguousarray(arr)


def jittered_embeddings(engine: Engine, chips: np.ndarray, jitters: int, seed: int = 0) -> np.ndarray:
    """(N, d) float32 unit vectors: the mean descriptor of `jitters` perturbed copies of each chip."""
    chips = np.asarray(chips)
    if len(chips) == 0:
        return np.zeros((0, engine.embedding_dim), dtype=np.float32)
    if engine.name == "dlib":
        # dlib's own jitter, in C++; the mean of its raw descriptors, then unit length.
        return _unit(engine.raw_descriptors(chips, jitters))  # type: ignore[attr-defined]
    # Other engines: our perturbations, all copies of all chips in one (batched) engine call.
    rng = np.random.default_rng(seed)
    copies = np.stack([jitter_chip(chip, rng) for chip in chips for _ in range(jitters)])
    descs = engine.embed_chips(copies).reshape(len(chips), jitters, -1)
    return _unit(descs.mean(axis=1))


def _unit(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, dtype=np.float64)
    n = np.linalg.norm(x, axis=1, keepdims=True)
    return (x / np.where(n == 0, 1, n)).astype(np.float32)
