"""Sealing gallery rows with AES-256-GCM. The associated data binds the row's id, pseudonym,
purposes, consent token, provenance, expiry and key versions to its ciphertext, so a row whose
columns were edited, or whose blob was moved to another row, fails to open."""

from __future__ import annotations

import json
from dataclasses import dataclass

from ...aead import NONCE_BYTES, Aead

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
        self._aead = Aead(key, "the seal key")

    def __repr__(self) -> str:
        return "Sealer()"

    def seal(self, plaintext: bytes, binding: RowBinding) -> bytes:
        return self._aead.seal(plaintext, binding.aad())

    def open(self, blob: bytes, binding: RowBinding) -> bytes:
        return self._aead.open(blob, binding.aad(), refused=(
            f"gallery row {binding.row_id} failed its integrity check: its sealed template or its "
            f"pseudonym, purposes, token, provenance or expiry columns were altered or truncated, or "
            f"it was sealed under another key."))


__all__ = ["NONCE_BYTES", "RowBinding", "SEAL_FORMAT", "Sealer"]
