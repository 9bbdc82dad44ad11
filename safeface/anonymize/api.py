"""`anonymize_file`: one entry for images and videos, chosen by extension, with the path checks
that keep the input safe."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Optional, Union

from .cover import DEFAULT_MARGIN, DEFAULT_MODE, check_margin, check_mode
from .detect import DEFAULT_DETECTOR, FaceFinder, check_detector
from .files import check_paths
from .image import anonymize_image_file
from .report import AnonymizeReport
from .video import VideoOptions, anonymize_video_file

PathLike = Union[str, "os.PathLike[str]"]


def anonymize_file(
    in_path: PathLike, out_path: PathLike, mode: str = DEFAULT_MODE, margin: float = DEFAULT_MARGIN,
    detector: str = DEFAULT_DETECTOR, *, video: Optional[VideoOptions] = None,
    finder: Optional[FaceFinder] = None,
) -> AnonymizeReport:
    """Write an anonymized copy of an image or video. The input is never modified; the output is
    written to a temporary file and renamed into place, so a failure leaves no partial file."""
    src, dst = Path(in_path), Path(out_path)
    check_mode(mode)
    check_margin(margin)
    check_detector(detector)
    kind, _ = check_paths(src, dst)
    if kind == "image":
        return anonymize_image_file(src, dst, mode, margin, detector, finder=finder)
    return anonymize_video_file(src, dst, mode, margin, detector, options=video, finder=finder)
