"""Signed audit checkpoints: a statement an assessor keeps, off the operator's machines, that
the log of a deployment held entry `seq` with hash `hash` at `time`.

A checkpoint is a JWS (RFC 7515, compact) signed with the workspace's Ed25519 receipt key
(alg "Ed25519", RFC 9864; `kid` = the key's RFC 7638 thumbprint), so any JOSE library can
check it against ``keys/receipt_public.txt``. Later, `safeface audit verify WS --checkpoint F`
proves the log still contains that very entry: a log rolled back or cut below it, or rewritten
at it, fails, even when the keyring's anchor was rolled back too.
"""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path
from typing import Any, Callable, Optional

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from joserfc import jws
from joserfc.errors import JoseError
from joserfc.jwk import OKPKey

from ..errors import IntegrityError
from ..hashing import same_digest
from ..jsondepth import loads
from ..regularfile import read_text

FORMAT = "safeface-audit-checkpoint/1"
# A checkpoint file nests a level or two (its claims in the clear beside the JWS); deeper is none.
MAX_CHECKPOINT_DEPTH = 16
# A checkpoint is under a kilobyte; anything much larger is not one.
MAX_CHECKPOINT_BYTES = 64 * 1024
ALG = "Ed25519"


def make_checkpoint(key: Ed25519PrivateKey, *, deployment: str, seq: int, head_hash: str,
                    deployment_id: Optional[str] = None, now: Optional[dt.datetime] = None) -> dict[str, Any]:
    """The checkpoint document: the signed JWS and, for people, the same claims in the clear.
    `deployment_id` (deployment.json's "id") is what a later check compares: the name shown may
    be the folder's, which a move or a rename changes."""
    claims: dict[str, Any] = {"format": FORMAT, "deployment": deployment, "seq": int(seq), "hash": head_hash,
                              "time": (now or dt.datetime.now(dt.timezone.utc)).isoformat(timespec="seconds")}
    if deployment_id is not None:
        claims["deployment_id"] = deployment_id
    jwk = OKPKey.import_key(key)
    payload = json.dumps(claims, sort_keys=True, separators=(",", ":")).encode("utf-8")
    token = jws.serialize_compact({"alg": ALG, "kid": jwk.thumbprint(), "typ": "safeface-checkpoint"}, payload, jwk,
                                  algorithms=[ALG])
    return {**claims, "kid": jwk.thumbprint(), "jws": token}


def _names_this_deployment(claims: dict[str, Any], name: str, deployment_id: Optional[str], named: bool) -> bool:
    if "deployment_id" in claims:
        return deployment_id is not None and claims["deployment_id"] == deployment_id
    # Signed before checkpoints carried the id: the name, or with none set the folder the command
    # ran in, which a move or a rename changes (every checkpoint then failed `audit verify`). The
    # signature (this workspace's key) and the entry's hash are what bind it to this log.
    return not named or claims.get("deployment") == name


def read_checkpoint(path: Path) -> dict[str, Any]:
    # The file itself (missing, a FIFO, /dev/zero, too large) is the caller's mistake, a
    # ConfigError; what it holds is judged as a checkpoint below.
    text = read_text(Path(path), f"the checkpoint {path}", MAX_CHECKPOINT_BYTES)
    try:
        doc = loads(text, MAX_CHECKPOINT_DEPTH)
    except ValueError as exc:
        raise IntegrityError(f"the checkpoint {path} is not readable JSON ({exc}).") from None
    if not isinstance(doc, dict) or not isinstance(doc.get("jws"), str):
        raise IntegrityError(f"{path} is not a safeface audit checkpoint (no signed 'jws').")
    return doc


def check_checkpoint(doc: dict[str, Any], public_key: Ed25519PublicKey, *, deployment: str, log_end: int,
                     hash_at: Callable[[int], Optional[str]], deployment_id: Optional[str] = None,
                     named: bool = True) -> dict[str, Any]:
    """Raise IntegrityError unless the checkpoint is signed by `public_key`, names this
    deployment (its id; `deployment` is its name, `named` whether deployment.json sets one rather
    than the folder's name standing in), and the log still holds its entry unchanged. Returns
    the signed claims."""
    try:
        obj = jws.deserialize_compact(str(doc["jws"]), OKPKey.import_key(public_key), algorithms=[ALG])
        claims = json.loads(obj.payload)
        seq, h = int(claims["seq"]), str(claims["hash"])
    except (JoseError, ValueError, KeyError, TypeError):
        raise IntegrityError("the checkpoint's signature does not verify with this workspace's key: it was altered "
                             "or belongs to another workspace.") from None
    if claims.get("format") != FORMAT or not _names_this_deployment(claims, deployment, deployment_id, named):
        raise IntegrityError(f"the checkpoint is for deployment {claims.get('deployment')!r}, not {deployment!r}.")
    if seq > log_end:
        raise IntegrityError(f"the audit log was rolled back or cut: the checkpoint of {claims.get('time')} saw entry "
                             f"{seq}, but the log now ends at entry {log_end}.")
    if not same_digest(str(hash_at(seq) or ""), h):
        raise IntegrityError(f"the audit log was rewritten: its entry {seq} differs from the one the checkpoint of "
                             f"{claims.get('time')} signed.")
    return dict(claims)
