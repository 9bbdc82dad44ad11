"""AES-256-GCM, the one place safeface seals and opens bytes.

Two framings, both kept byte for byte as the files written before this module existed:
`seal`/`open` frame a blob as nonce(12) || ciphertext || tag(16) with a random nonce (gallery
rows, evaluation-cache shards); `encrypt`/`decrypt` take the nonce from the caller, for formats
that store it apart (keyring entries) or derive it (index chunks: file prefix + counter)."""

from __future__ import annotations

import secrets

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from .errors import ConfigError, IntegrityError

KEY_BYTES = 32
NONCE_BYTES = 12
TAG_BYTES = 16


def random_nonce() -> bytes:
    return secrets.token_bytes(NONCE_BYTES)


class Aead:
    """AES-256-GCM under one key. `what` names the key in errors (the key itself never is)."""

    def __init__(self, key: bytes, what: str = "the key") -> None:
        if not isinstance(key, (bytes, bytearray)) or len(key) != KEY_BYTES:
            size = f"{len(key)} bytes" if isinstance(key, (bytes, bytearray)) else type(key).__name__
            raise ConfigError(f"{what} must be {KEY_BYTES} random bytes (AES-256), got {size}; "
                              "make one with os.urandom(32) and keep it apart from what it protects.")
        self._aesgcm = AESGCM(bytes(key))

    def __repr__(self) -> str:
        return "Aead()"

    def encrypt(self, nonce: bytes, plaintext: bytes | memoryview, aad: bytes = b"") -> bytes:
        """ciphertext || tag under a nonce the caller guarantees is never reused with this key."""
        sealed: bytes = self._aesgcm.encrypt(nonce, plaintext, aad)
        return sealed

    def decrypt(self, nonce: bytes, sealed: bytes | memoryview, aad: bytes = b"",
                refused: str = "sealed data failed its integrity check: it was altered or sealed under another key.") -> bytes:
        """The plaintext, or IntegrityError(`refused`) when the tag does not verify."""
        try:
            plaintext: bytes = self._aesgcm.decrypt(nonce, sealed, aad)
        except (InvalidTag, ValueError):
            raise IntegrityError(refused) from None
        return plaintext

    def seal(self, plaintext: bytes | memoryview, aad: bytes = b"") -> bytes:
        """nonce || ciphertext || tag, with a fresh random nonce."""
        nonce = random_nonce()
        return nonce + self.encrypt(nonce, plaintext, aad)

    def open(self, blob: bytes, aad: bytes = b"",
             refused: str = "sealed data failed its integrity check: it was altered or sealed under another key.") -> bytes:
        """The plaintext of a `seal` blob; IntegrityError(`refused`) when it is truncated, altered,
        bound to other associated data or sealed under another key."""
        if len(blob) < NONCE_BYTES + TAG_BYTES:
            raise IntegrityError(refused)
        return self.decrypt(blob[:NONCE_BYTES], blob[NONCE_BYTES:], aad, refused)
