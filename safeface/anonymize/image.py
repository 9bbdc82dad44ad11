"""Anonymizing one image: find every face, cover it, check the result, and (for files) write it
without any of the input's metadata."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any, Optional

import numpy as np
from PIL import Image

from ..errors import ImageError
from ..imageio import ImageInput, load_image_hashed
from .cover import DEFAULT_MARGIN, DEFAULT_MODE, check_margin, check_mode, cover_in_place, region_for_box
from .detect import DEFAULT_DETECTOR, Box, FaceFinder, iou, merge_boxes
from ..hashing import sha256_file
from ..atomicfile import atomic_path
from .files import IMAGE_EXTENSIONS
from .report import AnonymizeReport
from .views import find_in_views

# After covering, the result is searched again and anything still found is covered too; two
# extra passes have always sufficed in our tests, the bound keeps a pathological image finite.
MAX_PASSES = 3
JPEG_QUALITY = 92


def anonymize_image(
    image: ImageInput,
    mode: str = DEFAULT_MODE,
    margin: float = DEFAULT_MARGIN,
    detector: str = DEFAULT_DETECTOR,
    *,
    finder: Optional[FaceFinder] = None,
) -> tuple[np.ndarray, AnonymizeReport]:
    """Cover every face in `image` (a path, bytes or an (H, W, 3) array) and return the covered
    RGB array with a report. Detection only: no landmarks kept, no embedding, no gallery."""
    check_mode(mode)
    margin = check_margin(margin)
    digest, pixels = load_image_hashed(image)
    finder = finder or FaceFinder(detector)
    # Decoded here, the pixels are this call's own and are covered in place; a caller's array
    # is copied at the first cover.
    out, boxes, passes = cover_all(pixels, finder, mode, margin, owned=not isinstance(image, np.ndarray))
    h, w = pixels.shape[:2]
    regions = tuple(tuple(r.as_list()) for r in (region_for_box(b, margin, w, h) for b in boxes))
    report = AnonymizeReport(
        kind="image", input_sha256=digest, face_count=len(boxes), mode=mode, margin=margin,
        detector=finder.detector, width=w, height=h, regions=regions, passes=passes,  # type: ignore[arg-type]
        frames_with_faces=1 if boxes else 0, detections=len(boxes),
    )
    return out, report


def cover_all(pixels: np.ndarray, finder: FaceFinder, mode: str, margin: float, *,
              owned: bool = False) -> tuple[np.ndarray, list[Box], int]:
    """Cover, look again, cover what is still found. Returns the image, the face boxes, passes.
    `owned`: `pixels` may be covered in place (else they are copied once, at the first cover).
    One copy of a photo, covered pass after pass: a 50-megapixel photo is 150 MB a copy."""
    h, w = pixels.shape[:2]
    boxes: list[Box] = []
    out = pixels
    passes = 0
    for passes in range(1, MAX_PASSES + 1):
        # The masked search's low bar is for the first look only: on covered pixels it would
        # keep finding the covers themselves.
        found = finder.find(out, masked=None if passes == 1 else False)
        # Turned, negative or nearly black faces too: each is one step from being shown again.
        found = merge_boxes(found + find_in_views(finder, out))
        # A face found again where a cover already is means the cover was too weak there:
        # it is covered once more (the cover is idempotent in kind, stronger in effect).
        new = [b for b in found if not any(iou(b, k) > 0.5 for k in boxes)] if boxes else found
        if not found:
            break
        boxes += new
        # Should a face survive every pass, the last one paints it out.
        pass_mode = mode if passes < MAX_PASSES else "solid"
        if not owned:
            out, owned = np.array(pixels, dtype=np.uint8, copy=True), True
        cover_in_place(out, [region_for_box(b, margin, w, h) for b in found], pass_mode)
    return out, boxes, passes


def anonymize_image_file(
    in_path: Path, out_path: Path, mode: str = DEFAULT_MODE, margin: float = DEFAULT_MARGIN,
    detector: str = DEFAULT_DETECTOR, *, finder: Optional[FaceFinder] = None,
) -> AnonymizeReport:
    """Read `in_path`, write the anonymized image to `out_path` (format from its extension)
    with no EXIF, GPS, XMP, ICC or text metadata. Paths are checked by the caller."""
    out, report = anonymize_image(in_path, mode, margin, detector, finder=finder)
    return replace(report, output_path=str(out_path), output_sha256=write_clean_image(out, out_path))


def write_clean_image(pixels: np.ndarray, out_path: Path) -> str:
    """Writes the file atomically; returns the SHA-256 of the bytes renamed into place."""
    fmt = IMAGE_EXTENSIONS[out_path.suffix.lower()]
    # A fresh PIL image made from bare pixels carries no info dict, so nothing of the input's
    # metadata can reach the file; exif=b"" makes that explicit for the formats that take it.
    im = Image.fromarray(np.ascontiguousarray(pixels, dtype=np.uint8), "RGB")
    params: dict[str, Any] = {}
    if fmt == "JPEG":
        params = {"quality": JPEG_QUALITY, "exif": b""}
    elif fmt == "WEBP":
        params = {"quality": JPEG_QUALITY, "exif": b""}
    elif fmt == "PNG":
        params = {"exif": b""}
    with atomic_path(out_path) as tmp:
        try:
            im.save(tmp, format=fmt, **params)
        except (OSError, ValueError) as exc:
            raise ImageError(f"{out_path}: could not write the {fmt} image ({exc}).") from None
        return sha256_file(tmp)


