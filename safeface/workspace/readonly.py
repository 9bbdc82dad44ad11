"""Verifying a workspace this process may not write: a read-only copy given to an auditor, a
read-only mount, a folder without write permission.

SQLite writes a -wal and a -shm file beside each database even to read it, and the workspace's
locks are files beside what they guard, so such a workspace did not open at all. Reading it in
place (SQLite's `immutable=1`) is safe only while nobody writes the files, which a read-only
mount does not prove (the folder may be writable through another path), and would need a
second, lock-free way through the audit log, the trust store and both stores. So `audit verify`
copies the workspace's files into a private folder (0700, removed afterwards) and runs the
same check on the copy: every check the writable path makes, on the same bytes. The copy is
taken under the store's write lock and the trust store's lock where their files can be opened
for reading, and taken again (up to three times) if any file changed while it was copied, so an
honest write in flight is not read as tampering. The copy is taken by a child process (apart.py:
closing a descriptor of a database this process may have open would drop its connections'
locks). Copying costs about 0.1 s per 400 MiB from the page cache, and a child process start;
`safeface report` records itself in the audit log and so still needs a writable workspace."""

from __future__ import annotations

import errno
import fcntl
import json
import os
import shutil
import stat
import tempfile
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Iterator

from .. import atomicfile
from ..apart import run_apart
from ..atomicfile import flock_within, lock_busy, refuse_foreign_link, trusted_path
from ..errors import ConfigError, PolicyViolation, SafeFaceError, WorkspaceBusy
from ..regularfile import data_extents
from .paths import WorkspacePaths

_TRIES = 3


def is_writable(paths: WorkspacePaths) -> bool:
    """Whether this process may write the workspace's folder, its keys, its databases and its lock
    files (a read-only mount refuses root too)."""
    names = [paths.root, paths.keys, *paths.database_files(locks=True)]
    names += [paths.trust_lock, paths.config_lock, Path(f"{paths.anchor}.lock"), Path(f"{paths.keyring}.lock"),
              paths.owed_marks]
    return all(os.access(p, os.W_OK) for p in names if os.path.lexists(p))


@contextmanager
def verifiable(paths: WorkspacePaths) -> Iterator[WorkspacePaths]:
    """`paths` where this process may write the workspace; otherwise the paths of a private copy
    of it (see the module's notes), removed when the block ends. Errors raised in the block name
    the workspace, not the copy."""
    if is_writable(paths):
        yield paths
        return
    home = Path(os.path.abspath(paths.root))
    holder = _private_folder()  # 0700, this user's alone
    try:
        # The copy keeps the folder's name: a deployment without a name is named after its folder
        # in receipts and checkpoints.
        copy = WorkspacePaths(holder / home.name, origin=home)
        # Copied from the folder the system finds at the name, a link followed before the `..`
        # after it, as every other open reads it: abspath takes `link/..` off the text, and
        # `x/link/../ws` was copied from `x/ws`, another folder, the one then found intact.
        _copy_apart(Path(paths.root).absolute(), copy.root)
        try:
            yield copy
        except SafeFaceError as exc:
            _name_the_workspace(exc, str(copy.root), str(home))
            raise
    finally:
        shutil.rmtree(holder, ignore_errors=True)


def _private_folder() -> Path:
    """A new folder (0700) in $TMPDIR, refused, and removed, where another user could move it: a
    TMPDIR they own or may write (not sticky) let them rename the copy away and put a folder of
    theirs at its name, whose files the check then judged (a forged workspace found intact), or
    into which the sealed templates were copied."""
    holder = tempfile.mkdtemp(prefix="safeface-verify-")
    try:
        return trusted_path(holder)
    except (OSError, ConfigError) as exc:
        shutil.rmtree(holder, ignore_errors=True)
        raise ConfigError(f"the private copy to verify cannot be kept safely in {tempfile.gettempdir()}: {exc} Set "
                          "TMPDIR to a folder only you (or root) can write, or a sticky one such as /tmp. Nothing "
                          "was verified.") from None


def _copy_apart(home: Path, copy: Path) -> None:
    """_copy_workspace run in a child process (apart.py): the copy reads the databases by name,
    and this process may hold connections on them (an app checking a read-only view of the
    workspace it has open), whose locks closing a descriptor of its own would drop."""
    try:
        # This process's bound on waiting for a lock holds in the child too.
        done = run_apart("safeface.workspace.readonly:_copy_child",
                         [str(home), str(copy), repr(atomicfile.LOCK_WAIT_S)])
    except (OSError, ValueError) as exc:
        raise ConfigError(f"the workspace {home} could not be copied to a private folder to be verified ({exc}). "
                          "Nothing was verified.") from None
    if not isinstance(done, list) or len(done) != 2 or done[0] is None:
        return
    kind, message = str(done[0]), str(done[1])
    raise (WorkspaceBusy if kind == "WorkspaceBusy" else ConfigError)(message)


def _copy_child(home: str, copy: str, lock_wait: str) -> None:
    """In the child: copy, then print [None, ""], or [the error's type, its message]."""
    atomicfile.LOCK_WAIT_S = float(lock_wait)
    try:
        _copy_workspace(WorkspacePaths(Path(home)), WorkspacePaths(Path(copy)))
    except ConfigError as exc:
        print(json.dumps([type(exc).__name__, str(exc)]))
        return
    print(json.dumps([None, ""]))


def _copy_workspace(source: WorkspacePaths, copy: WorkspacePaths) -> None:
    for _ in range(_TRIES):
        shutil.rmtree(copy.root, ignore_errors=True)
        copy.keys.mkdir(mode=0o700, parents=True)
        with ExitStack() as locks:
            # The locks a writer holds while its rows and its entries disagree (an enrolment, an
            # erasure, a trust change), taken in the order `keys remove` takes them.
            for lock in (source.root / f"{source.gallery.name}.lock", source.trust_lock):
                locks.enter_context(_read_lock(lock))
            before = _listing(source)
            _check_room(source, copy, before)
            # In _files' order: the keys (the anchor, the trust store) before the log, since an
            # anchor never runs ahead of the log it signs, so a write between the two is not read
            # as a rolled-back log.
            for name in before:
                _copy_entry(source.root / name, copy.root / name)
            if _listing(source) == before:
                return
    raise ConfigError(f"the workspace {source.root} changed each time it was copied to be verified (it is read-only "
                      "here but written elsewhere); verify it again when it is idle, or on a copy.")


def _files(paths: WorkspacePaths) -> list[Path]:
    """What the check reads, relative to the workspace: its keys and configuration, then each
    database with its -wal (not its -shm: SQLite builds that index again from the -wal). Nothing
    else is copied: a file of many gigabytes left beside them would fill the private folder."""
    keys = [paths.keyring, paths.trust, paths.anchor, paths.receipt_public, paths.demo_issuer, paths.demo_authority,
            paths.demo_passphrase, paths.demo_mark, paths.config]
    dbs = [Path(f"{db}{part}") for db in (paths.gallery, paths.policy, paths.apikeys, paths.audit)
           for part in ("", "-wal")]
    return [p.relative_to(paths.root) for p in keys + dbs]


def _listing(paths: WorkspacePaths) -> dict[Path, tuple[int, ...]]:
    """Each file to copy that exists, with what a write changes."""
    out: dict[Path, tuple[int, ...]] = {}
    for name in _files(paths):
        try:
            st = os.lstat(paths.root / name)
        except FileNotFoundError:
            continue
        except OSError as exc:
            raise ConfigError(f"{paths.root / name} cannot be read ({exc.strerror}); nothing was verified.") from None
        out[name] = (st.st_mode, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_blocks)
    return out


def _check_room(source: WorkspacePaths, copy: WorkspacePaths, listing: dict[Path, tuple[int, ...]]) -> None:
    """Refuse before copying what the private folder cannot hold: a copy that filled TMPDIR would
    fail the host's other writers too. Counted by the blocks each file holds (holes stay holes)."""
    need = sum(entry[5] * 512 for entry in listing.values())
    st = os.statvfs(copy.root)
    if need > st.f_bavail * st.f_frsize:
        raise ConfigError(f"the workspace {source.root} needs {need >> 20} MiB to be verified on a private copy, "
                          f"more than is free in {copy.root.parent.parent}; set TMPDIR to a folder with room.")


def _copy_entry(source: Path, target: Path) -> None:
    """A regular file copied 0600; a link copied as a link to the same place (the check then sees
    what it would see in the workspace: a database link is refused, a file link followed)."""
    try:
        st = os.lstat(source)
        if stat.S_ISLNK(st.st_mode):
            if source.suffix == ".db":  # made again as this user's: judged by whose it is here
                refuse_foreign_link(source)
            os.symlink(os.path.join(source.parent, os.readlink(source)), target)
            return
        if not stat.S_ISREG(st.st_mode):
            raise ConfigError(f"{source} is not a regular file (a pipe, socket or device in its place); remove it. "
                              "Nothing was verified.")
        fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
        try:
            _copy_data(source, fd)
        finally:
            os.close(fd)
    except FileNotFoundError:
        return  # gone meanwhile (a -wal checkpointed away): the listing then differs, and all is copied again
    except OSError as exc:
        raise ConfigError(f"{source} could not be copied to a private folder to be verified ({exc.strerror}); "
                          "set TMPDIR to a folder with room for the workspace.") from None


def _copy_data(source: Path, target: int) -> None:
    """The bytes of `source` written to the descriptor `target`, holes skipped: a sparse file of
    100 GB at a copied name (a -wal SQLite reads only the header of) was written out whole,
    filling TMPDIR, where the writable path reads a few bytes of it."""
    chunk = 1 << 20
    src = os.open(source, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    try:
        size = os.fstat(src).st_size
        for start, end in data_extents(src, size):
            while start < end:
                data = os.pread(src, min(chunk, end - start), start)
                if not data:
                    break
                os.pwrite(target, data, start)
                start += len(data)
        os.ftruncate(target, size)
    finally:
        os.close(src)


@contextmanager
def _read_lock(lock: Path) -> Iterator[None]:
    """flock (exclusive: no writer meanwhile) on the lock file `lock` opened for reading, which a
    read-only folder allows; nothing where it cannot be opened (then the copy is taken again if a
    file changed meanwhile)."""
    try:
        fd = os.open(lock, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    except OSError:
        yield
        return
    try:
        if stat.S_ISREG(os.fstat(fd).st_mode):
            try:
                # Bounded: a writer of the live workspace stuck (or hostile) holding it for ever
                # froze the auditor's `audit verify`.
                if not flock_within(fd, fcntl.LOCK_EX):
                    raise lock_busy(str(lock))
            except OSError as exc:
                if exc.errno not in (errno.ENOLCK, errno.EBADF, errno.EINVAL):
                    raise
        yield
    finally:
        os.close(fd)


def _name_the_workspace(exc: SafeFaceError, copy: str, home: str) -> None:
    """An error names the workspace's files, not the copy removed with the block."""
    exc.args = tuple(a.replace(copy, home) if isinstance(a, str) else a for a in exc.args)
    if isinstance(exc, PolicyViolation):
        exc.message = exc.message.replace(copy, home)
