"""Signed erasure receipts (CN-05, CN-08, EU-06).

A receipt says what was removed, when and why (erase, revoke, purge), naming the subject by
pseudonym only. It is signed with the workspace's receipt key, an Ed25519 key derived from the
keyring (HKDF, its own label), so anyone holding the workspace's public receipt key
(keys/receipt_public.txt) can check a receipt without any secret.
"""

from __future__ import annotations

import datetime as dt
import json
import secrets
from dataclasses import dataclass
from typing import Any, Mapping, Optional, Sequence

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from ..errors import IntegrityError
from .tokens import b64d, b64e, key_id

RECEIPT_FORMAT = "safeface-erasure-receipt/1"


def receipt_key(secret: bytes) -> Ed25519PrivateKey:
    seed = HKDF(algorithm=hashes.SHA256(), length=32, salt=None,
                info=b"safeface erasure receipt signing key v1").derive(secret)
    return Ed25519PrivateKey.from_private_bytes(seed)


@dataclass(frozen=True)
class ErasureReceipt:
    receipt_id: str
    time: str
    reason: str  # "erase", "revoke", "purge"
    subjects: tuple[str, ...]  # pseudonyms
    token_id: Optional[str]
    templates_removed: int
    rows: tuple[int, ...]
    deployment: str
    kid: str
    signature: str
    # Where vectors live in an external index (Milvus): "removed" once a query by id found none of
    # them, "pending" when the index could not confirm it (the removal is queued and retried).
    # Absent for a store searched in process, whose erasure is one transaction.
    vectors: Optional[str] = None

    def body(self) -> dict[str, Any]:
        out = {"format": RECEIPT_FORMAT, "receipt_id": self.receipt_id, "time": self.time, "reason": self.reason,
               "subjects": list(self.subjects), "token_id": self.token_id,
               "templates_removed": self.templates_removed, "rows": list(self.rows),
               "deployment": self.deployment, "kid": self.kid}
        if self.vectors is not None:
            out["vectors"] = self.vectors
        return out

    def to_dict(self) -> dict[str, Any]:
        return {**self.body(), "signature": self.signature}


def _canon(body: Mapping[str, Any]) -> bytes:
    return json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


def issue_receipt(key: Ed25519PrivateKey, *, reason: str, subjects: Sequence[str], token_id: Optional[str],
                  rows: Sequence[int], deployment: str, now: dt.datetime,
                  vectors: Optional[str] = None) -> ErasureReceipt:
    unsigned = ErasureReceipt(secrets.token_hex(8), now.astimezone(dt.timezone.utc).isoformat(timespec="seconds"),
                              reason, tuple(sorted(set(subjects))), token_id, len(rows), tuple(rows), deployment,
                              key_id(key.public_key()), "", vectors)
    sig = b64e(key.sign(_canon(unsigned.body())))
    return ErasureReceipt(**{**unsigned.__dict__, "signature": sig})


def verify_receipt(receipt: Mapping[str, Any], public_key: Ed25519PublicKey) -> None:
    """Raise IntegrityError unless the receipt (as a dict) is signed by `public_key`."""
    body = {k: v for k, v in receipt.items() if k != "signature"}
    try:
        public_key.verify(b64d(str(receipt.get("signature", ""))), _canon(body))
    except (InvalidSignature, ValueError):
        raise IntegrityError("the erasure receipt's signature does not verify: it was altered or not issued "
                             "by this workspace.") from None
