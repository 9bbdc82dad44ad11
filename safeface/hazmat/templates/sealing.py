"""Sealing gallery rows with AES-256-GCM. The associated data binds the row's id, pseudonym,
purposes, consent token, provenance, expiry and key versions to its ciphertext, so a row whose
columns were edited, or whose blob was moved to another row, fails to open."""

from __future__ import annotations

import json
import secrets
from dataclasses import dataclass

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from ...errors import ConfigError, IntegrityError

NONCE_BYTES = 12
SEAL_FORMAT = 1


@dataclass(frozen=True)
class RowBinding:
    """Everything about a row that its seal vouches for."""

    row_id: int
    pseudonym: str
    purposes: tuple[str, ...]
    token_id: str
    provenance: str
    expires_us: int
    transform_version: int
    seal_version: int

    def aad(self) -> bytes:
        doc = {
            "f": SEAL_FORMAT,
            "row": self.row_id,
            "ps": self.pseudonym,
            "pu": sorted(self.purposes),
            "tok": self.token_id,
            "prov": self.provenance,
            "exp": self.expires_us,
            "tv": self.transform_version,
            "sv": self.seal_version,
        }
        return json.dumps(doc, sort_keys=True, separators=(",", ":")).encode("utf-8")


class Sealer:
    """AES-256-GCM under one seal key version. The blob is nonce || ciphertext || tag."""

    def __init__(self, key: bytes) -> None:
        if len(key) != 32:
            raise ConfigError("the seal key must be 32 bytes.")
        self._aead = AESGCM(bytes(key))

    def __repr__(self) -> str:
        return "Sealer()"

    def seal(self, plaintext: bytes, binding: RowBinding) -> bytes:
        nonce = secrets.token_bytes(NONCE_BYTES)
        return nonce + self._aead.encrypt(nonce, plaintext, binding.aad())

    def open(self, blob: bytes, binding: RowBinding) -> bytes:
        if len(blob) < NONCE_BYTES + 16:
            raise IntegrityError(f"gallery row {binding.row_id} is damaged: its sealed template is truncated.")
        try:
            return self._aead.decrypt(blob[:NONCE_BYTES], blob[NONCE_BYTES:], binding.aad())
        except InvalidTag:
            raise IntegrityError(
                f"gallery row {binding.row_id} failed its integrity check: its sealed template or its "
                f"pseudonym, purposes, token, provenance or expiry columns were altered, or it was "
                f"sealed under another key.") from None
