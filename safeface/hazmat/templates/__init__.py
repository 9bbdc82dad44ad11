"""Template protection: pseudonyms, the keyed revocable transform, row sealing and the keyring.

Hazmat: these primitives know nothing of consent, purposes or the audit log. A template made or
stored with them directly is not a guarded enrolment; the workspace's store audit names any row
that has no "enroll allowed" record behind it."""

from __future__ import annotations

from .keyring import (
    PURPOSES,
    AnchorProvider,
    HostKeyring,
    Keyring,
    KeyProvider,
    PassphraseKeyring,
    ScryptParams,
    StaticKeyProvider,
    key_id_of,
)
from .pseudonym import normalize_subject, pseudonymize, same_pseudonym
from .sealing import RowBinding, Sealer
from .transform import TemplateTransform

__all__ = [
    "PURPOSES",
    "AnchorProvider",
    "HostKeyring",
    "KeyProvider",
    "Keyring",
    "PassphraseKeyring",
    "RowBinding",
    "ScryptParams",
    "Sealer",
    "StaticKeyProvider",
    "TemplateTransform",
    "key_id_of",
    "normalize_subject",
    "pseudonymize",
    "same_pseudonym",
]
