"""safeface: face recognition with compliance guardrails."""

from .errors import (
    ConfigError,
    ImageError,
    IntegrityError,
    ModelError,
    ModelFetchError,
    PolicyViolation,
    SafeFaceError,
)
from .imageio import load_image

__version__ = "0.1.0"

__all__ = [
    "ConfigError",
    "ImageError",
    "IntegrityError",
    "ModelError",
    "ModelFetchError",
    "PolicyViolation",
    "SafeFaceError",
    "load_image",
    "__version__",
]
