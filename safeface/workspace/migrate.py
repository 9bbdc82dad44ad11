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
import stat
from pathlib import Path
from typing import Any, Callable, Mapping, Optional

from ..errors import ConfigError, IntegrityError, ReplacedFile
from ..hazmat.templates.keyring import Keyring
from ..policy.deployment import Deployment
from ..storage.factory import StorageConfig, open_store, secret_from_env
from ..storage.sqltables import PgTables, create_and_fill
from .apikeys import ApiKeys
from .audit import AuditLog
from .paths import WorkspacePaths
from .state import PolicyState
from .storage_seal import check_storage_seal

BATCH = 5000
_SAME = ("schema", "dim", "transform_version", "transform_key_id", "seal_version", "seal_key_id",
         "pseudonym_version", "pseudonym_key_id")


def copy_to_server(old: Any, section: Mapping[str, Any], root: Path, keyring: Keyring, dim: int,
                   ours: Callable[[int, str], bool] = lambda seq, h: False) -> tuple[Any, int]:
    """Copy every sealed row of the local gallery `old` into the server store `section` names,
    and check the copy. Returns the opened server store and the row count. The caller holds
    the old store's write lock; `ours(seq, hash)`: whether the local audit log holds that entry."""
    cfg = StorageConfig.from_section(section)
    if not cfg.server:
        raise ConfigError("storage migrate --to server needs a postgresql:// record store and a Milvus target.")
    target = open_store(cfg, root, root / "unused", keyring, dim)
    try:
        mine, end = old.meta(), target.workspace_log_end()
        if len(target) != 0 or end is not None:
            if any(mine.get(k) != target.meta().get(k) for k in _SAME) or (end is not None and not ours(*end)):
                raise ConfigError(f"{target.where} already holds rows or another workspace's audit log; migrate "
                                  "into an empty database or namespace.")
            # Rows under these keys, and no log or one that ends at an entry of this log (every
            # open appends one: no workspace ran there): the copy of a migration of this workspace
            # that stopped part way (killed, or Milvus gone). Copied again from the start: kept, it
            # would hold every row erased here since, and refuse the rerun.
            target.discard_copy()
            target.close()
            target = open_store(cfg, root, root / "unused", keyring, dim)
        if len(target) != 0:
            raise ConfigError(f"{target.where} already holds rows; migrate into an empty database or namespace.")
        theirs = target.meta()
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
    committed = False
    try:
        with audit.frozen() as (entries, head), state.frozen():
            rest = {**state.dump(), **apikeys.dump()}
            create_and_fill(cfg.records, password, cfg.namespace, entries, head, rest)
            try:
                for part, what in (("audit", "audit log"), ("state", "policy state"), ("service", "API key store")):
                    opened.append(PgTables.open(cfg.records, password, cfg.namespace, part, what))
                log_t, state_t, keys_t = opened
                copy = AuditLog(log_t, key, audit.anchors).verify()
                if (copy.head_seq, copy.head_hash) != (int(head[0]), str(head[1])):
                    raise IntegrityError(f"{log_t.where} does not end where the local audit log does; the local "
                                         "files are kept. Drop the copy and migrate again.")
                if _canon({**PolicyState(state_t).dump(), **ApiKeys(keys_t, b"").dump()}) != _canon(rest):
                    raise IntegrityError(f"{state_t.where} differs from the local policy state or API keys; the "
                                         "local files are kept. Drop the copy and migrate again.")
                commit()
                committed = True
            except BaseException:
                for t in opened:
                    t.close()
                raise
    except ReplacedFile:
        # `commit` renamed the local files aside under these locks (retire_local_files): the
        # frozen transactions, which wrote nothing, end finding their names gone.
        if not committed:
            raise
    audit.move_to(log_t)
    state.move_to(state_t)
    apikeys.move_to(keys_t)
    return int(head[0]), str(head[1])


def _canon(tables: Mapping[str, Any]) -> dict[str, list[str]]:
    """Rows comparable across engines, whatever order each returns them in."""
    return {name: sorted(repr(tuple(r)) for r in rows) for name, rows in tables.items()}


RETIRED = ".moved"  # a local file renamed aside by a migration, until it is erased


def local_files(paths: WorkspacePaths) -> list[Path]:
    """The local databases a migration moves (with their -wal and -shm), by their own names."""
    return paths.database_files()


def check_local_names(paths: WorkspacePaths) -> None:
    """Refuse a migration that could not retire and erase the local files by their names. A
    database name that is a link, or a file with another name (a hard link): the name alone was
    erased, and the file, with every template, stayed whole and unnamed. Anything at a name
    `retire_local_files` renames to: a folder there failed the rename after deployment.json
    named the servers, and a handle queued behind the locks then erased into the local files
    (a receipt for a row the servers kept, and an anchor ahead of the servers' log, so the
    workspace no longer opened)."""
    linked = [p.name for p in local_files(paths) if os.path.islink(p) or (p.is_file() and p.stat().st_nlink > 1)]
    if linked:
        raise ConfigError(f"{', '.join(linked)} in {paths.root} is a link, or a file with another name elsewhere, "
                          "which the migration could not erase; put the file itself in its place, with no other "
                          "name, then migrate again.")
    taken = [p.name + RETIRED for p in local_files(paths) if os.path.lexists(p.with_name(p.name + RETIRED))]
    if taken:
        raise ConfigError(f"{', '.join(taken)} in {paths.root} stand where the migration renames the local files "
                          "aside; move them elsewhere (they may be a copy someone kept), then migrate again.")


def retire_local_files(paths: WorkspacePaths) -> None:
    """Rename the local databases aside, while the migration still holds their locks: a call of
    another handle queued behind those locks (an erasure) then finds its file's name gone and is
    refused (ReplacedFile), where it wrote into a file about to be erased and was answered (a
    receipt for a row the servers kept). Erased by `erase_local_files` once closed. A rename
    that fails puts back those made, so the caller can name the local files again (ConfigError)."""
    check_local_names(paths)  # again: something may have been planted since the migration began
    done: list[Path] = []
    try:
        for path in local_files(paths):
            if path.exists():
                os.replace(path, path.with_name(path.name + RETIRED))
                done.append(path)
    except OSError as exc:
        for path in reversed(done):
            os.replace(path.with_name(path.name + RETIRED), path)
        raise ConfigError(f"{exc.filename} could not be renamed aside ({exc.strerror}); the local files stay this "
                          "workspace's and nothing was moved. Fix that, then migrate again.") from None


def refuse_if_moved(paths: WorkspacePaths, keyring: Any) -> None:
    """ReplacedFile when deployment.json names the servers under this workspace's seal: run inside
    each append to the local audit log (session.open_audit). A migration killed between pointing
    the file at the servers and renaming the local files aside left them under their names, and a
    handle opened before it erased a person there: a signed receipt while the servers kept her,
    and an anchor moved past the servers' log, so the workspace no longer opened."""
    try:
        raw = Deployment.parse(Deployment.read_file(paths.config), paths.config)
        section = raw.get("storage") if isinstance(raw, dict) else None
        moved = isinstance(section, Mapping) and StorageConfig.from_section(section).server
        if moved and isinstance(section, Mapping):
            # Only a migration (which has the keys) seals it: a server section written by hand
            # turned every local append, erasures included, into a refusal, and no one could
            # open the workspace again to erase.
            check_storage_seal(keyring, section)
    except (OSError, ValueError, ConfigError):
        return  # a file that no longer loads is judged by the call (it stops processing, not an erasure)
    if moved:
        raise ReplacedFile(f"{paths.config} names the server backends now (a migration moved this workspace "
                           "there): the local files this handle opened are no longer the workspace's, and the "
                           "call was refused. Open the workspace again.")


def leftover_problem(paths: WorkspacePaths, section: Mapping[str, Any]) -> Optional[str]:
    """What `audit verify` says of local databases beside a deployment on the servers (`section`,
    its storage section): a migration killed after deployment.json named the servers left them,
    with every template it copied (of people erased since, too). None when there are none."""
    if not StorageConfig.from_section(section).server:
        return None
    # Looked for where the workspace lives: a read-only workspace is verified on a private copy
    # of the files the check reads (readonly.py), which holds no aside names or -shm files.
    left = [q.name for p in local_files(WorkspacePaths(paths.home)) for q in (p, p.with_name(p.name + RETIRED))
            if os.path.lexists(q)]
    if not left:
        return None
    return (f"a migration to the servers stopped before it erased the local files ({', '.join(left)}), which still "
            "hold the templates it copied: run `safeface storage migrate` again to erase them.")


def erase_local_files(paths: WorkspacePaths) -> list[str]:
    """Erase what a migration left of the local databases: renamed aside, or under their own
    names (a migration killed after deployment.json named the servers), and their lock files.
    The names erased."""
    gone, stuck = [], []
    for path in local_files(paths) + [Path(f"{base}.lock") for base in paths.databases]:
        for name in (path, path.with_name(path.name + RETIRED)):
            try:
                if erase_file(name):
                    gone.append(path.name)
            except FileNotFoundError:  # erased by another process's rerun meanwhile
                pass
            except OSError:  # a folder planted at the name: the others are erased all the same
                stuck.append(name.name)
    if stuck:
        raise ConfigError(f"{', '.join(stuck)} in {paths.root} could not be erased (a folder, or no permission), "
                          "the other local files were; remove it by hand (`audit verify` names any database left).")
    return sorted(set(gone), key=gone.index)


def erase_file(path: Path) -> bool:
    """Overwrite a file with zeros, flush it, then remove it (best effort on flash and
    copy-on-write file systems, which may keep old blocks; the rows were sealed anyway). A link
    or anything else that is no file of its own here is only removed: a link planted at one of
    these names (a lock file safeface never made) had the file it pointed to zeroed."""
    try:
        os.lstat(path)
    except FileNotFoundError:
        return False
    try:
        fd = os.open(path, os.O_WRONLY | os.O_NONBLOCK | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_CLOEXEC", 0))
    except OSError:  # a link (ELOOP), a FIFO without a reader, a folder: nothing of ours to zero
        fd = -1
    if fd >= 0:
        with open(fd, "wb") as f:  # by descriptor: nothing is truncated
            st = os.fstat(f.fileno())
            if stat.S_ISREG(st.st_mode) and st.st_nlink == 1:  # a hard link's other name keeps it anyway
                left = st.st_size
                while left > 0:
                    step = min(left, 1 << 20)
                    f.write(b"\0" * step)
                    left -= step
                f.flush()
                os.fsync(f.fileno())
    path.unlink()
    return True
