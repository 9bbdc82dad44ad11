"""safeface: face recognition with compliance guardrails.

The safe API. Names are imported on first use (PEP 562), so ``import safeface.hazmat.index``
loads nothing of the policy, the SDK or the image stack. The raw pipeline, the index and the
template primitives live under :mod:`safeface.hazmat`; no store is exported here.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

# public name -> module that defines it
_EXPORTS = {
    "ConfigError": "safeface.errors",
    "ImageError": "safeface.errors",
    "EyesCovered": "safeface.errors",
    "IntegrityError": "safeface.errors",
    "InvalidArgument": "safeface.errors",
    "ModelError": "safeface.errors",
    "ModelFetchError": "safeface.errors",
    "PolicyViolation": "safeface.errors",
    "SafeFaceError": "safeface.errors",
    "load_image": "safeface.imageio",
    "Deployment": "safeface.policy.deployment",
    "ErasureReceipt": "safeface.policy.receipts",
    "verify_receipt": "safeface.policy.receipts",
    "ConsentToken": "safeface.policy.tokens",
    "LegalBasisToken": "safeface.policy.tokens",
    "HostKeyring": "safeface.hazmat.templates.keyring",
    "KeyProvider": "safeface.hazmat.templates.keyring",
    "SafeFace": "safeface.sdk",
    "Candidate": "safeface.sdk",
    "Enrollment": "safeface.sdk",
    "Export": "safeface.sdk",
    "Record": "safeface.sdk",
    "BackendError": "safeface.errors",
    "Verification": "safeface.sdk",
    "LivenessCheck": "safeface.sdk",
    "check_liveness": "safeface.capture.liveness",
    "AuthenticationError": "safeface.errors",
    "ServiceBusy": "safeface.errors",
    "Client": "safeface.client",
}

__all__ = sorted(_EXPORTS) + ["__version__"]


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'safeface' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))


if TYPE_CHECKING:
    from .errors import (ConfigError, ImageError, IntegrityError, InvalidArgument, ModelError, ModelFetchError,
                         PolicyViolation, SafeFaceError)
    from .hazmat.templates.keyring import HostKeyring, KeyProvider
    from .imageio import load_image
    from .policy.deployment import Deployment
    from .policy.receipts import ErasureReceipt, verify_receipt
    from .policy.tokens import ConsentToken, LegalBasisToken
    from .client import Client
    from .errors import AuthenticationError, BackendError, EyesCovered, ServiceBusy
    from .sdk import Candidate, Enrollment, Export, Record, SafeFace, Verification
