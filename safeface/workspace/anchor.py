"""The audit log's head, remembered outside the log.

The log's own signed head proves that no entry was changed, but a restored older copy of
``audit.db`` carries an older, genuinely signed head. So after each append the log also records
``(seq, hash)`` of its new last entry in one or more anchors:

* the keyring's anchor: ``WS/keys/audit-anchor.json``, MACed with a key derived from the keyring
  (a host keyring may hold it instead, e.g. in a KMS monotonic counter, see `HostAnchor`);
* witnesses the operator chooses (``deployment.json`` ``audit.witness``, a path or a list of
  paths on another volume, ideally one the operator cannot roll back: WORM or object-locked
  storage, or another administrator's share).

An anchor is a lower bound: the log may be ahead of it (an entry committed just before a crash),
but an anchor beyond the log's end, or naming a different hash at its seq, means the log was
rolled back or cut (IntegrityError). Anchors only move forward: writers take a lock, re-read
and keep the larger seq.

What this cannot stop: whoever can write the workspace folder, with or without the passphrase,
can restore the log AND the keyring's anchor from the same older backup (both are genuine); only
a host anchor or a witness (or a signed checkpoint, checkpoint.py) that they cannot roll back
detects that.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional, Protocol, runtime_checkable

from ..errors import ConfigError, IntegrityError
from ..regularfile import read_workspace_file
from ..atomicfile import exclusive_lock, write_atomic

FORMAT = "safeface-audit-anchor/1"
# An anchor is one short JSON line; anything longer was not written by safeface.
MAX_ANCHOR_BYTES = 64 * 1024


@dataclass(frozen=True)
class Anchor:
    seq: int
    hash: str


@runtime_checkable
class AnchorStore(Protocol):
    """Somewhere the head is remembered. `read` returns None when nothing was recorded yet;
    `advance` never moves the anchor backwards."""

    name: str
    required: bool  # a missing anchor is tampering (True) or simply not written yet (False)

    def read(self) -> Optional[Anchor]: ...

    def advance(self, seq: int, head_hash: str) -> None: ...


class FileAnchor:
    """An anchor in a small JSON file, MACed with a keyring-derived key."""

    def __init__(self, path: Path, key: bytes, *, name: str, required: bool) -> None:
        self.path = Path(path)
        self._key = key
        self.name = name
        self.required = required

    def __repr__(self) -> str:
        return f"FileAnchor({self.name}: {str(self.path)!r})"

    def _mac(self, seq: int, h: str) -> str:
        return hmac.new(self._key, f"{FORMAT}|{seq}|{h}".encode("ascii"), hashlib.sha256).hexdigest()

    def read(self) -> Optional[Anchor]:
        data = read_workspace_file(self.path, f"the {self.name} {self.path}", MAX_ANCHOR_BYTES)
        if data is None:
            return None
        try:
            doc = json.loads(data.decode("utf-8"))
            seq, h, mac = int(doc["seq"]), str(doc["hash"]), str(doc["mac"])
            if doc.get("format") != FORMAT:
                raise ValueError
        except (ValueError, KeyError, TypeError):
            raise IntegrityError(f"the {self.name} {self.path} is corrupt: it was altered.") from None
        if not hmac.compare_digest(self._mac(seq, h), mac):
            raise IntegrityError(f"the {self.name} {self.path} does not carry this workspace's MAC: it was "
                                 "altered, forged or copied from another workspace.")
        return Anchor(seq, h)

    def advance(self, seq: int, head_hash: str) -> None:
        try:
            with exclusive_lock(self.path.with_name(self.path.name + ".lock")):
                current = self.read()
                if current is not None and current.seq >= seq:
                    return  # another writer already recorded this entry or a later one
                doc = {"format": FORMAT, "seq": seq, "hash": head_hash, "mac": self._mac(seq, head_hash)}
                write_atomic(self.path, (json.dumps(doc, sort_keys=True) + "\n").encode("utf-8"), mode=0o600)
        except (OSError, ConfigError) as exc:
            why = exc.strerror if isinstance(exc, OSError) else str(exc)
            raise ConfigError(f"the {self.name} {self.path} cannot be written ({why}): the audit entry "
                              f"{seq} is recorded but not anchored; fix the path and retry.") from None


class HostAnchor:
    """An anchor the host application keeps (a KMS monotonic counter, a secure element, a
    remote append-only service): any object with ``read_anchor() -> (seq, hash) | None`` and
    ``advance_anchor(seq, hash)``, as a `HostKeyring` may offer (`anchor_provider`)."""

    required = True

    def __init__(self, provider: Any, name: str = "host anchor") -> None:
        self._provider = provider
        self.name = name

    def read(self) -> Optional[Anchor]:
        got = self._provider.read_anchor()
        if got is None:
            return None
        seq, h = got
        return Anchor(int(seq), str(h))

    def advance(self, seq: int, head_hash: str) -> None:
        self._provider.advance_anchor(seq, head_hash)


def missing_anchor(anchor: AnchorStore) -> IntegrityError:
    return IntegrityError(f"the {anchor.name} is missing ({_where(anchor)}): it was deleted. Restore it from a "
                          "backup taken with the audit log.")


def check_anchor(anchor: AnchorStore, value: Optional[Anchor], log_end: int, hash_at: Any) -> None:
    """Raise IntegrityError unless `value` (read from `anchor`) is consistent with a log ending
    at `log_end`; `hash_at(seq)` gives the log's hash at a seq (None if absent)."""
    if value is None:
        if anchor.required and log_end > 0:
            raise missing_anchor(anchor)
        return
    if value.seq > log_end:
        raise IntegrityError(f"the audit log was rolled back or cut: it ends at entry {log_end} but the "
                             f"{anchor.name} ({_where(anchor)}) records entry {value.seq}. An older copy of "
                             "the audit log (audit.db, or its tables in PostgreSQL) was restored, or its last entries "
                             "were deleted.")
    if value.seq > 0 and not hmac.compare_digest(str(hash_at(value.seq) or ""), value.hash):
        raise IntegrityError(f"the audit log was replaced: its entry {value.seq} differs from the one the "
                             f"{anchor.name} ({_where(anchor)}) records. The log was rewritten or swapped for "
                             "another copy.")


def _where(anchor: AnchorStore) -> str:
    return str(getattr(anchor, "path", anchor.name))
