"""Anonymization: cover every face in photos and video. Detection only: no landmarks kept, no
embedding, no gallery, no consent token needed, since nobody is recognised."""

from __future__ import annotations

from .api import anonymize_file
from .cover import DEFAULT_MARGIN, DEFAULT_MODE, MODES
from .detect import DEFAULT_DETECTOR, DETECTORS, FaceFinder, Search
from .image import anonymize_image
from .report import AnonymizeReport
from .video import VideoOptions, detectable_frames

__all__ = [
    "AnonymizeReport",
    "DEFAULT_DETECTOR",
    "DEFAULT_MARGIN",
    "DEFAULT_MODE",
    "DETECTORS",
    "FaceFinder",
    "MODES",
    "Search",
    "VideoOptions",
    "anonymize_file",
    "anonymize_image",
    "detectable_frames",
]
