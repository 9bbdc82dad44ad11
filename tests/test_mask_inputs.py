"""Odd inputs to the mask generator and the mask detector (safeface.hazmat.vision.masks and
mask_detect): each refused with a typed error naming what to pass, never a bare ValueError, an
OpenCV error, a silent NaN decision or a blur that runs for minutes."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pytest

from safeface.errors import ImageError, InvalidArgument
from safeface.hazmat.vision.mask_detect import check_mask
from safeface.hazmat.vision.masks import draw_mask, mask_style
from safeface.imageio import load_image


@pytest.fixture(scope="module")
def face(fr_images: Path) -> Any:
    from safeface.hazmat.vision import Pipeline, get_engine

    pipe = Pipeline(get_engine("onnx"))
    img = load_image(fr_images / "test_images" / "obama.jpg")
    r = pipe.embed(img)
    assert r.face is not None and r.embedding is not None
    return img, r.face, np.asarray(r.embedding)


@pytest.mark.parametrize("seed", [-1, float("nan"), 1.5, "7", None, True])
def test_a_seed_that_is_no_whole_number_is_refused(face: Any, seed: Any) -> None:
    """A caller passes a negative, NaN, fractional, text or missing seed: InvalidArgument, not a
    bare ValueError or TypeError from numpy (and a fraction is not cut to another seed)."""
    img, f, _ = face
    with pytest.raises(InvalidArgument, match="seed"):
        draw_mask(img, f.landmarks, f.box, "surgical", seed)
    with pytest.raises(InvalidArgument, match="seed"):
        mask_style("random", seed)


@pytest.mark.parametrize("box, landmarks", [("abcd", None), ((1, 2), None), (None, "abc"),
                                            (None, [[1, 2]] * 4 + [["a", "b"]])])
def test_a_box_or_landmarks_that_are_no_numbers_are_refused(face: Any, box: Any, landmarks: Any) -> None:
    """A face box of text or of two values, landmarks of text: InvalidArgument naming the input."""
    img, f, _ = face
    with pytest.raises(InvalidArgument, match="box|landmarks"):
        draw_mask(img, f.landmarks if landmarks is None else landmarks, f.box if box is None else box)


@pytest.mark.parametrize("image", ["grey", "16-bit", "float"])
def test_the_mask_check_refuses_an_image_it_cannot_read(face: Any, image: str) -> None:
    """A grey, 16-bit or float array handed to check_mask: ImageError, not an OpenCV error."""
    img, f, vec = face
    odd = {"grey": img[..., 0], "16-bit": img.astype(np.uint16) * 257, "float": img / 255.0}[image]
    with pytest.raises(ImageError, match="RGB"):
        check_mask(odd, f.landmarks, vec)


def test_the_mask_check_refuses_an_embedding_of_nan(face: Any) -> None:
    """A NaN embedding gave a NaN confidence, read as bare and under every mask bar: refused."""
    img, f, vec = face
    for bad in (np.full_like(vec, np.nan), np.where(np.arange(vec.size) == 3, np.inf, vec)):
        with pytest.raises(InvalidArgument, match="finite"):
            check_mask(img, f.landmarks, bad)


@pytest.mark.timeout(60)
@pytest.mark.parametrize("spread", [1e5, 1e13])
def test_landmarks_spread_wider_than_the_image_are_refused_not_blurred(face: Any, spread: float) -> None:
    """Landmarks with the eyes 1e5 or 1e13 pixels apart: the blur ran a kernel that wide over
    the image (minutes) or failed in OpenCV; refused now, and a real portrait enlarged 3 times
    is judged as it is at its own size, from the pixels around the face alone."""
    img, f, vec = face
    lm = np.asarray(f.landmarks, dtype=np.float64)
    wide = (lm - lm.mean(axis=0)) * spread / np.ptp(lm[:, 0]) + lm.mean(axis=0)
    with pytest.raises(InvalidArgument, match="further apart than the image"):
        check_mask(img, wide, vec)
    for pixels in (img, draw_mask(img, f.landmarks, f.box, "surgical", 1)):
        big = cv2.resize(pixels, None, fx=3, fy=3, interpolation=cv2.INTER_CUBIC)
        small, large = check_mask(pixels, f.landmarks, vec), check_mask(big, lm * 3, vec)
        assert large.masked == small.masked and abs(large.confidence - small.confidence) < 0.02
