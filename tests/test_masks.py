"""The synthetic mask generator: reproducible, kinds that differ, the lower face covered and the
eyes left alone, and bad input refused with a sentence."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from safeface.errors import InvalidArgument
from safeface.hazmat.vision.masks import MASK_KINDS, draw_mask, lower_face_polygon, mask_style
from safeface.imageio import load_image


@pytest.fixture(scope="module")
def face(datasets: Path, dlib_engine):  # type: ignore[no-untyped-def]
    img = load_image(datasets / "lfw-dev" / "images" / "Aaron_Tippin" / "Aaron_Tippin_0001.jpg")
    found = dlib_engine.detect(img, "hog", 1)
    assert found, "HOG finds this LFW face unmasked"
    return img, found[0]


def test_same_seed_same_pixels(face) -> None:  # type: ignore[no-untyped-def]
    img, f = face
    for kind in MASK_KINDS + ("random",):
        a = draw_mask(img, f.landmarks, f.box, kind, seed=11)
        b = draw_mask(img, f.landmarks, f.box, kind, seed=11)
        assert np.array_equal(a, b), kind
        assert not np.array_equal(a, img), f"{kind}: the mask changed nothing"


def test_kinds_and_seeds_differ(face) -> None:  # type: ignore[no-untyped-def]
    img, f = face
    drawn = {k: draw_mask(img, f.landmarks, f.box, k, seed=3) for k in MASK_KINDS}
    for i, a in enumerate(MASK_KINDS):
        for b in MASK_KINDS[i + 1:]:
            changed = np.abs(drawn[a].astype(int) - drawn[b].astype(int)).sum(axis=2) > 30
            assert changed.mean() > 0.01, f"{a} and {b} look the same"
    assert not np.array_equal(draw_mask(img, f.landmarks, f.box, "cloth", 1),
                              draw_mask(img, f.landmarks, f.box, "cloth", 2))
    kinds = {mask_style("random", s).kind for s in range(40)}
    assert len(kinds) == len(MASK_KINDS), "random draws every kind"
    tilts = [mask_style("surgical", s).tilt for s in range(20)]
    assert max(tilts) - min(tilts) > 4.0 and all(abs(t) <= 6.0 for t in tilts)


def test_covers_mouth_not_eyes(face) -> None:  # type: ignore[no-untyped-def]
    img, f = face
    for kind in MASK_KINDS:
        out = draw_mask(img, f.landmarks, f.box, kind, seed=0)
        diff = np.abs(out.astype(int) - img.astype(int)).sum(axis=2) > 20
        for x, y in f.landmarks[:4]:  # eye corners stay visible
            yy, xx = int(round(y)), int(round(x))
            assert not diff[yy - 2:yy + 3, xx - 2:xx + 3].any(), f"{kind} covers an eye"
        eyes = f.landmarks[:4].mean(axis=0)
        nose = f.landmarks[4]
        mouth = nose + 0.6 * (nose - eyes)  # below the nose base, where the mouth is
        my, mx = int(round(mouth[1])), int(round(mouth[0]))
        assert diff[my - 3:my + 4, mx - 3:mx + 4].mean() > 0.9, f"{kind} leaves the mouth bare"
    poly = lower_face_polygon(f.landmarks)
    assert poly[:, 1].min() > f.landmarks[:4, 1].max() and poly[:, 1].max() > f.landmarks[4, 1]


def test_bad_input_refused(face) -> None:  # type: ignore[no-untyped-def]
    img, f = face
    with pytest.raises(InvalidArgument, match="unknown mask kind"):
        draw_mask(img, f.landmarks, f.box, "balaclava")
    with pytest.raises(InvalidArgument, match="5 landmarks"):
        draw_mask(img, f.landmarks[:3], f.box)
    with pytest.raises(InvalidArgument, match="RGB uint8"):
        draw_mask(img.astype(np.float32), f.landmarks, f.box)
    with pytest.raises(InvalidArgument, match="too small"):
        draw_mask(img, np.zeros((5, 2)), f.box)
