"""Anonymization: cover every face in photos and video. Detection only: no landmarks kept, no
embedding, no gallery, no consent token needed, since nobody is recognised."""

from __future__ import annotations

from .api import anonymize_file
from .cover import DEFAULT_MARGIN, DEFAULT_MODE, MODES
from .detect import DEFAULT_DETECTOR, DETECTORS, FaceFinder
from .image import anonymize_image
from .report import AnonymizeReport
from .video import VideoOptions

__all__ = [
    "AnonymizeReport",
    "DEFAULT_DETECTOR",
    "DEFAULT_MARGIN",
    "DEFAULT_MODE",
    "DETECTORS",
    "FaceFinder",
    "MODES",
    "VideoOptions",
    "anonymize_file",
    "anonymize_image",
]
