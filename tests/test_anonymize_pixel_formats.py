"""Photos in odd pixel formats given to the anonymizer: 16-bit grey holding 10-bit data, alpha
that leaves the face nearly transparent, an EXIF-turned JPEG (in review, palettes with a
transparent index, CMYK JPEG and TIFF, grey with alpha and bi-level photos held the same way). Whatever the format, the written output must keep no face that one
step (stretching its values, inverting them, turning it upright) shows again."""

from __future__ import annotations

import io
import sys
from pathlib import Path
from typing import Callable

import numpy as np
import pytest
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parent))
from policy_support import images  # noqa: E402

from safeface.anonymize import FaceFinder, anonymize_file  # noqa: E402
from safeface.imageio import load_image  # noqa: E402


def _photo() -> Image.Image:
    src = Image.open(images() / "obama.jpg").convert("RGB")
    return src.resize((src.width // 3, src.height // 3))


def _png(im: Image.Image, **kw: object) -> bytes:
    b = io.BytesIO()
    im.save(b, "PNG", **kw)
    return b.getvalue()


def _save(im: Image.Image, fmt: str, **kw: object) -> bytes:
    b = io.BytesIO()
    im.save(b, fmt, **kw)
    return b.getvalue()


def _exif_turned(src: Image.Image) -> bytes:
    """The photo stored turned a quarter with an orientation tag (6) that shows it upright."""
    exif = Image.Exif()
    exif[0x0112] = 6
    return _save(src.transpose(Image.Transpose.ROTATE_90), "JPEG", exif=exif.tobytes())


CASES: dict[str, tuple[str, Callable[[Image.Image], bytes]]] = {
    "16-bit grey, 10-bit data": (".png", lambda s: _png(Image.fromarray(
        np.asarray(s.convert("L")).astype(np.uint16) * 4))),
    "RGBA, alpha 6": (".png", lambda s: _png(Image.fromarray(
        np.dstack([np.asarray(s), np.full((s.height, s.width), 6, np.uint8)]), "RGBA"))),
    "EXIF-turned JPEG": (".jpg", _exif_turned),
}


def _stretched(a: np.ndarray) -> np.ndarray:
    lo, hi = np.percentile(a, 1), np.percentile(a, 99)
    return np.clip((a.astype(np.float32) - lo) * 255 / max(float(hi - lo), 1.0), 0, 255).astype(np.uint8)


@pytest.mark.parametrize("case", list(CASES))
def test_an_odd_pixel_format_keeps_no_face_in_the_output(tmp_path: Path, case: str) -> None:
    """A sender writes the photo in an odd pixel format and anonymizes it to PNG; the written
    file is searched as read, stretched, inverted and turned: no face."""
    suffix, make = CASES[case]
    src = tmp_path / ("in" + suffix)
    src.write_bytes(make(_photo()))
    finder = FaceFinder("hog")
    shown = load_image(src)
    assert finder.find(_stretched(shown), [1], masked=False), "the input must show the face for this to mean anything"
    out = tmp_path / "out.png"
    report = anonymize_file(src, out)
    assert report.face_count >= 1
    covered = np.asarray(Image.open(out).convert("RGB"))
    for view in (covered, _stretched(covered), 255 - covered):
        for k in range(4):
            turned = np.ascontiguousarray(np.rot90(view, k))
            assert not finder.find(turned, [1], masked=False), (case, k)
