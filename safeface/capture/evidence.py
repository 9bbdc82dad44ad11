"""Liveness evidence: what a passed check hands to the guarded call that follows (PA-01).

Wire form: ``sflv1.<base64url(JSON body)>.<base64url(Ed25519 signature)>``, the signature over
the ASCII text before the last dot. The body binds the challenge nonce, the clip's SHA-256, the
time of the check, its validity (seconds) and the live face: the face's embedding after a keyed
orthogonal transform (a protected template, ISO/IEC 24745), sealed with AES-256-GCM whose
associated data is the nonce, so the token's holder learns nothing of the face and cannot move
the face to another token. All three keys are derived (HKDF, their own labels) from one keyring
secret, as the erasure-receipt key is; the workspace publishes nothing for them because only the
workspace itself checks its evidence.

Nothing here is stored: the token lives in the caller's memory for the seconds it is valid; the
guard remembers only that its nonce was used.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from ..aead import Aead
from ..errors import IntegrityError
from ..hazmat.templates.transform import TemplateTransform

PREFIX = "sflv1"
FORMAT = "safeface-liveness-evidence/1"
DEFAULT_VALIDITY_S = 60
MAX_TOKEN_CHARS = 4096


def _b64e(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _b64d(text: str) -> bytes:
    """The bytes of `text` as _b64e spells them, and no other spelling: the decoder skips
    characters outside its alphabet and takes padding, so one genuine token could be written many
    ways, each with its own reference in the log (an honest use read as a forgery)."""
    data = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    if _b64e(data) != text:
        raise ValueError("not the canonical spelling")
    return data


def _derive(secret: bytes, label: bytes) -> bytes:
    key: bytes = HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=label).derive(secret)
    return key


@dataclass(frozen=True)
class Evidence:
    """A verified evidence token. `face` is the protected template of the live face."""

    nonce: str
    clip_sha256: str
    issued_at: float  # Unix seconds
    expires_at: float
    decision: str
    score: float
    challenge: tuple[str, ...]
    face: np.ndarray = field(repr=False)

    @property
    def live(self) -> bool:
        return self.decision == "live"


class EvidenceKeys:
    """Signs, seals, verifies and opens this workspace's liveness evidence."""

    def __init__(self, secret: bytes, dim: int = 128) -> None:
        self._sign = Ed25519PrivateKey.from_private_bytes(_derive(secret, b"safeface liveness evidence signing key v1"))
        self._public = self._sign.public_key()
        self._seal = Aead(_derive(secret, b"safeface liveness evidence face key v1"), "the evidence face key")
        self._transform = TemplateTransform.from_key(_derive(secret, b"safeface liveness evidence transform v1"), dim)
        raw = self._public.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
        self.kid = hashlib.sha256(raw).hexdigest()[:16]

    def __repr__(self) -> str:
        return f"EvidenceKeys(kid={self.kid})"

    def protect(self, embedding: np.ndarray) -> np.ndarray:
        """A probe's embedding under the evidence transform (cosine is kept; the vector is not)."""
        v = np.asarray(embedding, dtype=np.float32).reshape(-1)
        return np.asarray(self._transform.apply(v / (np.linalg.norm(v) or 1.0)), dtype=np.float32)

    def issue(self, *, nonce: str, clip_sha256: str, now: float, decision: str, score: float,
              challenge: tuple[str, ...], embedding: np.ndarray, validity_s: int = DEFAULT_VALIDITY_S) -> str:
        sealed = self._seal.seal(self.protect(embedding).tobytes(), nonce.encode("utf-8"))
        body = {"format": FORMAT, "kid": self.kid, "nonce": nonce, "clip_sha256": clip_sha256,
                "issued_at": round(float(now), 3), "expires_at": round(float(now) + validity_s, 3),
                "decision": decision, "score": round(float(score), 4), "challenge": list(challenge),
                "face": _b64e(sealed)}
        head = PREFIX + "." + _b64e(json.dumps(body, sort_keys=True, separators=(",", ":")).encode("utf-8"))
        return head + "." + _b64e(self._sign.sign(head.encode("ascii")))

    def read(self, token: str) -> Evidence:
        """The evidence a token carries; IntegrityError unless this workspace signed it unchanged."""
        bad = IntegrityError("the liveness evidence is not genuine: it was altered, truncated or issued by another "
                             "workspace. Run the liveness check again.")
        if not isinstance(token, str) or len(token) > MAX_TOKEN_CHARS or token.count(".") != 2:
            raise bad
        head, _, sig = token.rpartition(".")
        prefix, _, payload = head.partition(".")
        try:
            if prefix != PREFIX:
                raise bad
            self._public.verify(_b64d(sig), head.encode("ascii"))
            body: dict[str, Any] = json.loads(_b64d(payload))
            blob = _b64d(str(body["face"]))
            nonce = str(body["nonce"])
            face = np.frombuffer(self._seal.open(blob, nonce.encode("utf-8")), dtype=np.float32)
            ev = Evidence(nonce, str(body["clip_sha256"]), float(body["issued_at"]), float(body["expires_at"]),
                          str(body["decision"]), float(body["score"]), tuple(str(s) for s in body["challenge"]),
                          face.copy())
        except (InvalidSignature, IntegrityError, ValueError, KeyError, TypeError, UnicodeError, binascii.Error):
            raise bad from None
        if body.get("format") != FORMAT or not all(map(math.isfinite, (ev.issued_at, ev.expires_at))):
            raise bad
        return ev

    def similarity(self, evidence: Evidence, probe: np.ndarray) -> float:
        """Cosine of the live face and a probe (both protected; the transform keeps cosine)."""
        a, b = evidence.face, self.protect(probe)
        if a.shape != b.shape:
            return -1.0
        return float(np.dot(a, b) / ((np.linalg.norm(a) * np.linalg.norm(b)) or 1.0))


def clip_digest(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()

