"""The SDK: :class:`SafeFace`, the one door for every biometric call, and its result types."""

from .facade import SafeFace
from .results import Candidate, Enrollment, Export, LivenessCheck, Record, Verification

__all__ = ["Candidate", "Enrollment", "Export", "LivenessCheck", "Record", "SafeFace", "Verification"]
