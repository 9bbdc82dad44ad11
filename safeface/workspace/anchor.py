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

A witness's first write is recorded in the log ("witness started", `WitnessAnchor.start`),
so a witness the log knows of that is missing is refused instead of being written again from
whatever head the log has now (a rolled-back one), until it is restored or restarted on record
(`safeface audit restart-witness WS PATH`). To move a witness to another volume, copy the file
there, name the new path in audit.witness and record that with `safeface assess`, which starts
it on record (the copy keeps the head it held).
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import threading
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, ContextManager, Optional, Protocol, runtime_checkable

from ..errors import ConfigError, IntegrityError, WorkspaceDiskFailed, WorkspaceUnwritable
from ..hashing import same_digest
from ..jsondepth import loads
from ..regularfile import read_workspace_file
from ..atomicfile import DISK_REFUSED, exclusive_lock, write_atomic

FORMAT = "safeface-audit-anchor/1"
# An anchor is one short JSON line; anything longer was not written by safeface.
MAX_ANCHOR_BYTES = 64 * 1024
# What to do with an anchor file that was cut, edited or swapped.
_RESTORE = "Restore it from the backup taken with the audit log, then run `safeface audit verify`."
# An anchor is one flat object; a file nested deeper is no anchor, from whatever depth it is read.
MAX_ANCHOR_DEPTH = 4


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

    follow = True  # whether a link at `path` is read through

    def read(self) -> Optional[Anchor]:
        data = read_workspace_file(self.path, f"the {self.name} {self.path}", MAX_ANCHOR_BYTES, follow=self.follow)
        if data is None:
            return None
        try:
            doc = loads(data, MAX_ANCHOR_DEPTH)
            seq, h, mac = int(doc["seq"]), str(doc["hash"]), str(doc["mac"])
            if doc.get("format") != FORMAT:
                raise ValueError
        except (ValueError, KeyError, TypeError):
            raise IntegrityError(f"the {self.name} {self.path} is corrupt: it was altered or cut short. {_RESTORE}") \
                from None
        if not same_digest(self._mac(seq, h), mac):
            raise IntegrityError(f"the {self.name} {self.path} does not carry this workspace's MAC: it was "
                                 f"altered, forged or copied from another workspace. {_RESTORE}")
        return Anchor(seq, h)

    def _lock(self) -> ContextManager[Any]:
        return exclusive_lock(self.path.with_name(self.path.name + ".lock"))

    def _first_write(self, seq: int) -> None:
        """Called, under the lock, before entry `seq` is written where nothing was: a hook."""

    def advance(self, seq: int, head_hash: str) -> None:
        try:
            with self._lock():
                current = self.read()
                if current is not None and current.seq >= seq:
                    return  # another writer already recorded this entry or a later one
                if current is None:
                    self._first_write(seq)
                doc = {"format": FORMAT, "seq": seq, "hash": head_hash, "mac": self._mac(seq, head_hash)}
                write_atomic(self.path, (json.dumps(doc, sort_keys=True) + "\n").encode("utf-8"), mode=0o600)
        except WorkspaceDiskFailed:
            raise  # the anchor read failed (EIO): a disk to see to, and the file to read again
        except (OSError, ConfigError) as exc:
            why = exc.strerror if isinstance(exc, OSError) else str(exc)
            # A full or read-only disk (the log's own write-ahead log may still have room): the
            # same call works once it takes writes again, as for the log itself.
            full = isinstance(exc, WorkspaceUnwritable) or (isinstance(exc, OSError) and exc.errno in DISK_REFUSED)
            text = (f"the {self.name} {self.path} cannot be written ({why}): the audit entry {seq} is recorded but "
                    "not anchored; fix the path and retry.")
            # The folder goes with it: a witness on a volume of its own that filled up left the
            # service's readiness probe writing to the workspace's disk only, which took writes.
            raise (WorkspaceUnwritable(text, folder=str(self.path.parent)) if full else ConfigError(text)) from None


class WitnessAnchor(FileAnchor):
    """A witness named in deployment.json (or on `audit verify`'s command line). Never read
    through a link: one pointing back into the workspace (at its own anchor) made the witness
    the file a rollback restores with the log. Once the log records its start (`started`, bound
    by the log's opener), a missing witness is refused rather than written again from the head
    the log has now: someone holding the passphrase who restored audit.db and its anchor from a
    backup and deleted the witness had the next call write it afresh, and every later check
    agreed with the rolled-back log."""

    follow = False

    def __init__(self, path: Path, key: bytes, *, required: bool, rule: str) -> None:
        super().__init__(Path(os.path.abspath(path)), key, name="audit witness", required=required)
        self.rule = rule
        self.started: Callable[[], bool] = lambda: False  # whether the log records this witness's start
        self.on_record = False  # `start` found it on record (or put it there): from then on it must exist
        self._starter: Optional[int] = None  # the thread inside `start`, which holds the lock

    def read(self) -> Optional[Anchor]:
        if os.path.islink(self.path):  # named plainly; the no-follow open below closes the race
            raise IntegrityError(f"[{self.rule}] the audit witness {self.path} is a link: a witness must be a "
                                 "file of its own (a link can make it the workspace's own anchor, which a "
                                 "rollback restores with the log). Put the witness file itself at that path.")
        return super().read()

    def _lock(self) -> ContextManager[Any]:
        # `start` holds the lock while its entry is appended, and that append advances this witness.
        return nullcontext() if self._starter == threading.get_ident() else super()._lock()

    def _first_write(self, seq: int) -> None:
        if self._starter != threading.get_ident() and self.started():
            raise IntegrityError(f"{self.deleted()} (Audit entry {seq} is recorded, but not in the witness.)")

    def deleted(self, started: bool = True) -> IntegrityError:
        why = "though the audit log records its start" if started else "and the audit log records no start for it"
        return IntegrityError(f"[{self.rule}] the audit witness {self.path} is missing, {why}: it was deleted "
                              "(perhaps with the log rolled back), or its volume is not mounted. Mount or restore it "
                              "from the witness volume's backup; if it is truly lost, restart it on record with "
                              f"`safeface audit restart-witness WS {self.path}`.")

    def start(self, record: Callable[[bool], None], unassessed: Callable[[], Optional[str]], *,
              restart: bool = False, first: bool = False) -> None:
        """Make sure the log records this witness: `record(restart)` appends the entry, whose anchoring
        writes a missing witness (its first write). Nothing is appended for a witness the log
        already records and that is present; a recorded one that is missing is refused unless
        `restart` (`safeface audit restart-witness`). A first write needs the audit section the
        last assessment covers (`unassessed()` says why not): a witness line pointed by hand at
        another spelling of a deleted witness's path would otherwise write it afresh; and it needs
        `first` (init, `safeface assess`) or `restart`. Under the witness's lock, so of two
        processes starting it at once the second finds it written."""
        if not self.path.parent.is_dir():
            raise ConfigError(f"the audit witness {self.path} cannot be reached: its folder {self.path.parent} does "
                              "not exist (is its volume mounted?). Mount it and try again.")
        try:
            with self._lock():
                present = self.read() is not None
                if self.started():
                    if present and restart:
                        raise ConfigError(f"the audit witness {self.path} is present and agrees with the log: "
                                          "there is nothing to restart.")
                    if present:
                        self.on_record = self.required = True
                        return
                    if not restart:
                        raise self.deleted()
                elif not present and (problem := unassessed()) is not None:
                    raise IntegrityError(f"[{self.rule}] the audit witness {self.path} is not written yet, and a "
                                         f"witness is first written only under the assessed audit section: {problem}")
                elif not present and not (first or restart):
                    # A log restored from before the start (one an earlier safeface wrote, under an
                    # assessment that already named this witness) would otherwise have it written
                    # afresh from its rolled-back head, the witness deleted, without a key.
                    raise self.deleted(started=False)
                self._starter = threading.get_ident()
                try:
                    record(restart)
                finally:
                    self._starter = None
                # Missing from now on, it stops each call where the call is judged (check_anchor),
                # before anything is done, not only at the append after it.
                self.on_record = self.required = True
        except OSError as exc:
            raise ConfigError(f"the audit witness {self.path} cannot be written ({exc.strerror}); fix the path "
                              "and retry.") from None


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
    if isinstance(anchor, WitnessAnchor) and anchor.on_record:
        return anchor.deleted()
    # A witness on another volume is also missing while that volume is not mounted (a share
    # down, a copy on another machine): told only to restore, an operator put back an old log.
    return IntegrityError(f"the {anchor.name} is missing ({_where(anchor)}): it was deleted, or the volume that "
                          "holds it is not mounted here. Mount that volume, or restore the file from a backup taken "
                          "with the audit log.")


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
                             "were deleted (its -wal file removed, the file cut short). Restore the newest backup of "
                             "the log, then run `safeface audit verify`.")
    if value.seq > 0 and not same_digest(str(hash_at(value.seq) or ""), value.hash):
        raise IntegrityError(f"the audit log was replaced: its entry {value.seq} differs from the one the "
                             f"{anchor.name} ({_where(anchor)}) records. The log was rewritten or swapped for "
                             "another copy.")


def _where(anchor: AnchorStore) -> str:
    return str(getattr(anchor, "path", anchor.name))
