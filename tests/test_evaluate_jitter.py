"""Test-time jitter: our own perturbation for engines without dlib's, and the pipeline option."""

from __future__ import annotations

from typing import Sequence

import numpy as np
import pytest
from datasets_path import datasets

from safeface.imageio import load_image
from safeface.hazmat.vision import Face, Pipeline, PipelineConfig, get_engine
from safeface.hazmat.vision.jitter import jitter_chip, jittered_embeddings

DATASETS = datasets()
IMAGE = DATASETS / "lfw-dev" / "images" / "Abdullah_Gul" / "Abdullah_Gul_0013.jpg"


def test_jitter_chip_is_a_small_seeded_perturbation() -> None:
    rng = np.random.default_rng(0)
    chip = rng.integers(0, 256, (150, 150, 3), dtype=np.uint8)
    chip[50:100, 50:100] = 255
    a = jitter_chip(chip, np.random.default_rng(1))
    b = jitter_chip(chip, np.random.default_rng(1))
    c = jitter_chip(chip, np.random.default_rng(2))
    assert a.shape == chip.shape and a.dtype == np.uint8
    assert np.array_equal(a, b) and not np.array_equal(a, c)
    # the bright square stays roughly in place (shift <= 2%, zoom <= 3%, turn <= 3 degrees)
    ys, xs = np.nonzero(a[:, :, 0] == 255)
    assert abs(ys.mean() - 74.5) < 8 and abs(xs.mean() - 74.5) < 8


class _NoDlibJitter:
    """The dlib networks under another engine name, so the pipeline uses safeface's own jitter
    as it does for every engine but dlib."""

    def __init__(self) -> None:
        self._e = get_engine("dlib")
        self.name, self.embedding_dim, self.chip_size = "plain", self._e.embedding_dim, self._e.chip_size

    def detect(self, image: np.ndarray, detector: str = "hog", upsample: int = 1) -> list[Face]:
        return self._e.detect(image, detector, upsample)

    def chips(self, image: np.ndarray, faces: Sequence[Face]) -> np.ndarray:
        return self._e.chips(image, faces)

    def embed_chips(self, chips: np.ndarray) -> np.ndarray:
        return self._e.embed_chips(chips)


@pytest.mark.slow
@pytest.mark.skipif(not IMAGE.is_file(), reason=f"LFW dev test image not found at {IMAGE}")
def test_jittered_descriptors_stay_close_to_the_plain_one() -> None:
    img = load_image(IMAGE)
    dlib_engine = get_engine("dlib")
    plain_pipe = Pipeline(dlib_engine, PipelineConfig(flip=False))
    chip = dlib_engine.chips(img, plain_pipe.detect(img)[:1])
    plain = plain_pipe.embed_chips(chip)[0]
    ours = jittered_embeddings(_NoDlibJitter(), chip, 3, seed=5)  # type: ignore[arg-type]
    assert ours.shape == (1, 128) and abs(np.linalg.norm(ours[0]) - 1) < 1e-5
    assert np.array_equal(ours, jittered_embeddings(_NoDlibJitter(), chip, 3, seed=5))  # type: ignore[arg-type]
    theirs = Pipeline(dlib_engine, PipelineConfig(jitter=3)).embed_chips(chip)  # dlib's own jitter
    for v in (ours[0], theirs[0]):
        assert 0.95 < float(v @ plain) < 1.0
