"""Moving a local workspace's templates (SQLite) to the server backends (PostgreSQL and Milvus).

The sealed rows are copied as they are, with their row ids, so their seals still open and no
template is unsealed on the way to PostgreSQL; Milvus receives the protected templates, opened
from the copied records. Nothing raw exists at any step: no image, no raw embedding. The copy is
checked (every row's description, token and seal equal on both sides; every vector present in
Milvus) before the local files are overwritten and removed.

The audit chain, the policy state and the service's API keys move with them (`move_policy_records`): while both are
frozen (their write locks held, so nothing is appended meanwhile) the chain is checked whole,
copied verbatim (every entry with its hashes, and the signed head) into PostgreSQL in one
transaction with the state, the copy is checked against the same anchors, deployment.json is
pointed at the servers, and only then is the lock released. The chain continues in PostgreSQL:
the migration's own entry there links to the local log's last hash."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Callable, Mapping

from ..errors import ConfigError, IntegrityError
from ..hazmat.templates.keyring import Keyring
from ..storage.factory import StorageConfig, open_store, secret_from_env
from ..storage.sqltables import PgTables, create_and_fill
from .apikeys import ApiKeys
from .audit import AuditLog
from .state import PolicyState

BATCH = 5000
_SAME = ("schema", "dim", "transform_version", "transform_key_id", "seal_version", "seal_key_id",
         "pseudonym_version", "pseudonym_key_id")


def copy_to_server(old: Any, section: Mapping[str, Any], root: Path, keyring: Keyring, dim: int) -> tuple[Any, int]:
    """Copy every sealed row of the local gallery `old` into the server store `section` names,
    and check the copy. Returns the opened server store and the row count. The caller holds
    the old store's write lock."""
    cfg = StorageConfig.from_section(section)
    if not cfg.server:
        raise ConfigError("storage migrate --to server needs a postgresql:// record store and a Milvus target.")
    target = open_store(cfg, root, root / "unused", keyring, dim)
    try:
        if len(target) != 0:
            raise ConfigError(f"{target.where} already holds rows; migrate into an empty database or namespace.")
        mine, theirs = old.meta(), target.meta()
        differ = [k for k in _SAME if mine.get(k) != theirs.get(k)]
        if differ:
            raise ConfigError(f"{target.where} is under other keys or another schema ({', '.join(differ)}); migrate "
                              "into an empty database or namespace.")
        after, n = -1, 0
        while True:
            rows = old.sealed_rows(after, BATCH)
            if not rows:
                break
            target.import_sealed(rows)
            n += len(rows)
            after = int(rows[-1][0])
        target.import_sealed([], ceiling=old.id_ceiling())  # ids erased or never stored stay used
        if old.rows() != target.rows() or _looks(old) != _looks(target):
            raise IntegrityError(f"the copy in {target.where} differs from the local gallery; the local files are "
                                 "kept. Drop the copy and migrate again.")
        ids = [r.row_id for r in target.rows()]
        if target.pending() or len(target.vectors.present(ids)) != len(ids):
            raise IntegrityError(f"{target.vectors.where} does not hold every vector of the copy; the local files "
                                 "are kept. Run the migration again once Milvus is reachable.")
        return target, n
    except BaseException:
        target.close()
        raise


def _looks(store: Any) -> list[tuple[int, str, str]]:
    """Each row's look digests (a row stored before them has none: "")."""
    out, after = [], -1
    while rows := store.sealed_rows(after, BATCH):
        out += [(int(r[0]), r[11] or "", r[12] or "") for r in rows]
        after = int(rows[-1][0])
    return out


def move_policy_records(audit: AuditLog, state: PolicyState, apikeys: ApiKeys, key: bytes,
                        section: Mapping[str, Any], commit: Callable[[], None]) -> tuple[int, str]:
    """Copy the audit chain, the policy state and the service's API keys into the record store
    `section` names, check the copy, run `commit` (which points deployment.json at it) while
    nothing can be appended, then continue all three there. Returns the chain's (seq, hash) at
    the move."""
    cfg = StorageConfig.from_section(section)
    password = secret_from_env("SAFEFACE_PG_PASSWORD")
    opened: list[PgTables] = []
    with audit.frozen() as (entries, head), state.frozen():
        rest = {**state.dump(), **apikeys.dump()}
        create_and_fill(cfg.records, password, cfg.namespace, entries, head, rest)
        try:
            for part, what in (("audit", "audit log"), ("state", "policy state"), ("service", "API key store")):
                opened.append(PgTables.open(cfg.records, password, cfg.namespace, part, what))
            log_t, state_t, keys_t = opened
            copy = AuditLog(log_t, key, audit.anchors).verify()
            if (copy.head_seq, copy.head_hash) != (int(head[0]), str(head[1])):
                raise IntegrityError(f"{log_t.where} does not end where the local audit log does; the local files "
                                     "are kept. Drop the copy and migrate again.")
            if _canon({**PolicyState(state_t).dump(), **ApiKeys(keys_t, b"").dump()}) != _canon(rest):
                raise IntegrityError(f"{state_t.where} differs from the local policy state or API keys; the local "
                                     "files are kept. Drop the copy and migrate again.")
            commit()
        except BaseException:
            for t in opened:
                t.close()
            raise
    audit.move_to(log_t)
    state.move_to(state_t)
    apikeys.move_to(keys_t)
    return int(head[0]), str(head[1])


def _canon(tables: Mapping[str, Any]) -> dict[str, list[str]]:
    """Rows comparable across engines, whatever order each returns them in."""
    return {name: sorted(repr(tuple(r)) for r in rows) for name, rows in tables.items()}


def erase_file(path: Path) -> bool:
    """Overwrite a file with zeros, flush it, then remove it (best effort on flash and
    copy-on-write file systems, which may keep old blocks; the rows were sealed anyway)."""
    if not path.exists():
        return False
    size = path.stat().st_size
    with open(path, "r+b") as f:
        left = size
        while left > 0:
            step = min(left, 1 << 20)
            f.write(b"\0" * step)
            left -= step
        f.flush()
        os.fsync(f.fileno())
    path.unlink()
    return True
