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
from .policy.deployment import Deployment
from .policy.receipts import ErasureReceipt, verify_receipt
from .policy.tokens import ConsentToken, LegalBasisToken
from .sdk import Candidate, Enrollment, SafeFace, Verification

__version__ = "0.1.0"

__all__ = [
    "Candidate",
    "ConsentToken",
    "Deployment",
    "Enrollment",
    "ErasureReceipt",
    "LegalBasisToken",
    "SafeFace",
    "Verification",
    "verify_receipt",
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
