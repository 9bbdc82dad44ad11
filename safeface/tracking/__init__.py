"""Tracking people without their faces: faces are covered first (safeface.anonymize), then
people are followed by clothing colours, build and motion, and found by a description in a
closed vocabulary. No face is detected beyond where to cover it, no face is recognised, and no
descriptor outlives the result object of the run that made it. This package never imports the
recognizer (safeface.hazmat.vision's pipeline and engines)."""

from __future__ import annotations

from .assign import AssignOptions
from .colours import COLOURS
from .describe import Query, parse, vocabulary
from .people import DEFAULT_PERSON_DETECTOR, PERSON_DETECTORS
from .run import Hit, Person, TrackOptions, TrackResult, track_video

__all__ = [
    "AssignOptions", "COLOURS", "DEFAULT_PERSON_DETECTOR", "Hit", "PERSON_DETECTORS", "Person", "Query",
    "TrackOptions", "TrackResult", "parse", "track_video", "vocabulary",
]
