"""The one atomic file write: a temporary file beside the target, flushed to disk, then renamed
over it. A reader sees the old file or the new one, never half of either, and a writer that
fails or dies before the rename leaves the old file untouched (and, when it fails rather than
dies, no temporary file either)."""

from __future__ import annotations

import contextlib
import errno
import os
import secrets
import stat
import struct
import tempfile
import threading
import zlib
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Callable, Iterator, Optional, Union

from .errors import ConfigError, ImageError, IntegrityError, WorkspaceBusy, WorkspaceUnwritable
from .regularfile import folder_below, read_no_link

PathLike = Union[str, "os.PathLike[str]"]
# A write the disk refused, as the operating system says it: full, over quota, read-only.
DISK_REFUSED = (errno.ENOSPC, errno.EDQUOT, errno.EROFS)
DISK_FAILED = (errno.EIO, errno.ENXIO)  # the device failed (bad sectors, detached): sqlite_store.disk_failed


def _umask() -> int:
    """The process umask, read without setting it (setting it would race with other threads)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    return 0o022


def new_file_mode() -> int:
    """The permissions any new file would get (mkstemp's are 0600), less group and other write
    whatever the host's umask: a host running under umask 000 left deployment.json writable by
    every local account."""
    return 0o666 & ~(_umask() | 0o022)


def make_dirs(path: PathLike, mode: int = 0o755) -> None:
    """`path` and any missing folder above it, none writable by group or others whatever the
    host's umask (mkdir's `parents` gives those above the umask's mode: 0777 under umask 000)."""
    target = Path(path)
    missing = []
    while not target.exists():
        missing.append(target)
        if target.parent == target:
            break
        target = target.parent
    for folder in reversed(missing):
        try:
            folder.mkdir(mode=mode & ~0o022)
        except FileExistsError:  # made meanwhile by another process
            pass


def _fsync_dir(directory: Path) -> None:
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:  # not every platform opens directories
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _replaceable(target: Path) -> None:
    """Refuse a target that exists and is no regular file: renaming over /dev/null, a FIFO or a
    link to /dev/stdout would put a file in its place for every other program (as root), and
    the output would reach no one."""
    try:
        st = os.stat(target)
    except FileNotFoundError:
        return
    except OSError as exc:  # a link loop, a component that is no folder
        raise ConfigError(f"{target}: cannot be written ({exc.strerror}); choose another path.") from None
    if not stat.S_ISREG(st.st_mode):
        raise ConfigError(f"{target} exists and is not a regular file (a folder, a device, a pipe or a link to one); "
                          "choose a file path.")


def trusted_path(path: PathLike) -> Path:
    """`path` with every link on the way resolved (OSError if it leads nowhere), refused
    (ConfigError naming the name) where a user other than this one or root chose where it leads
    or can move it elsewhere before it is written: a link such a user made, or a folder on the
    way (to a link or to the end) such a user owns or may write, unless sticky and the entry in
    it is ours. What is written there is then written where it was judged: by path, a folder
    swapped for a link between the check and the rename made root write over /etc."""
    trusted = {0, os.geteuid()}
    # Each `..` taken where the walk reaches it, after the link before it (abspath took `link/..`
    # off the text, and judged another path than the system follows).
    todo = list(reversed(Path(path).absolute().parts[1:]))
    here, hops = Path("/"), 0
    while todo:
        name = todo.pop()
        if name == "..":
            here = here.parent
            continue
        st = os.lstat(here / name)
        if not stat.S_ISLNK(st.st_mode):
            here = here / name
            continue
        hops += 1
        if hops > 40:
            raise OSError(errno.ELOOP, os.strerror(errno.ELOOP), str(path))
        _refuse_changeable(here / name, st, trusted)
        dest = Path(os.readlink(here / name))
        if dest.is_absolute():
            here = Path("/")
        todo += reversed(dest.parts[1:] if dest.is_absolute() else dest.parts)
    _refuse_changeable(here, os.lstat(here), trusted)
    return here


def refuse_foreign_link(path: PathLike) -> None:
    """ConfigError where the database name `path` is a link that a user other than this one or
    root made, or that leads through a folder such a user may change (trusted_path): SQLite
    would follow it, with this process's rights, into another program's database. Nothing for a
    file, or for a link that leads nowhere (sqlite_store.create_file refuses that)."""
    if not os.path.islink(path):
        return
    try:
        trusted_path(path)
    except OSError:
        return
    except ConfigError as exc:
        raise ConfigError(f"{path} is a link, and {exc} Nothing was opened.") from None


def _refuse_changeable(path: Path, st: os.stat_result, trusted: set[int]) -> None:
    """ConfigError unless every name from / to the real path `path` (lstat `st`) was made by and
    stays with this user or root (see trusted_path). A group of this process's is trusted as it
    is (a user's private group)."""
    parts = path.parts
    for i in range(1, len(parts)):
        folder = Path(*parts[:i])
        fst = os.lstat(folder)
        est = st if i == len(parts) - 1 else os.lstat(Path(*parts[:i + 1]))
        shared = fst.st_mode & 0o002 or (fst.st_mode & 0o020 and fst.st_gid != os.getegid())
        if fst.st_uid not in trusted or (shared and not (fst.st_mode & stat.S_ISVTX and est.st_uid in trusted)):
            where = folder
        elif stat.S_ISLNK(est.st_mode) and est.st_uid not in trusted:
            where = Path(*parts[:i + 1])
        else:
            continue
        raise ConfigError(f"{path} can be changed by another user through {where} (owned or writable by a user "
                          "other than this one or root), who could send what is written there elsewhere; use a "
                          "path only you (or root) can change, or make a shared folder on the way sticky "
                          "(chmod +t).")


def _temporary_beside(target: Path, suffix: str = "") -> tuple[int, str]:
    """A new temporary file in `target`'s folder; ConfigError naming the path when none can be
    made there (a folder that does not exist, one not writable, /proc)."""
    try:
        return tempfile.mkstemp(prefix=f".{target.name}.tmp-", suffix=suffix, dir=target.parent)
    except OSError as exc:
        raise ConfigError(f"{target}: cannot be written in {target.parent} ({exc.strerror}); choose a folder that "
                          "exists and that you may write.") from None


@contextmanager
def atomic_path(path: PathLike, mode: Optional[int] = None, durable: bool = True) -> Iterator[Path]:
    """A fresh temporary path beside `path` for a writer that needs a file name (an encoder, a
    library); renamed onto `path` only when the block succeeds. `mode`: the file's permissions
    (default: as any new file; pass 0o600 for secrets). `durable`: fsync file and folder."""
    target = Path(path)
    _replaceable(target)
    # The target's suffix is kept: some writers choose a format by it.
    fd, tmp = _temporary_beside(target, suffix=target.suffix)
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        os.chmod(tmp_path, new_file_mode() if mode is None else mode)
        if durable:
            with open(tmp_path, "rb+") as fh:
                os.fsync(fh.fileno())
        try:
            os.replace(tmp_path, target)
        except OSError as exc:  # a folder in its place, or a read-only mount
            raise ConfigError(f"{target}: could not be replaced ({exc.strerror}); choose another path.") from None
    except BaseException:
        tmp_path.unlink(missing_ok=True)
        raise
    if durable:
        _fsync_dir(target.parent)


@contextmanager
def atomic_writer(path: PathLike, mode: Optional[int] = None, durable: bool = True) -> Iterator[IO[bytes]]:
    """A binary file object whose content replaces `path` when the block succeeds."""
    with atomic_path(path, mode=mode, durable=durable) as tmp:
        with open(tmp, "wb") as fh:
            yield fh


def write_atomic(path: PathLike, data: Union[bytes, str], mode: Optional[int] = None, durable: bool = True,
                 within: Optional[Path] = None) -> None:
    """Replace `path` by `data` (str is written as UTF-8) atomically. `within`: a folder above
    `path` below which no link is followed (see _write_below)."""
    raw = data.encode("utf-8") if isinstance(data, str) else data
    if within is not None:
        _write_below(Path(within), Path(path), raw, new_file_mode() if mode is None else mode, durable)
        return
    with atomic_writer(path, mode=mode, durable=durable) as fh:
        fh.write(raw)


def _write_below(within: Path, target: Path, data: bytes, mode: int, durable: bool) -> None:
    """write_atomic into a folder below `within` (made if missing, none of it writable by others)
    reached one name at a time, no link followed, and the temporary file made and renamed by name
    in that folder's descriptor. By path, a folder there that was a link (made by whoever may
    write `within`) sent the console's report and receipts wherever it pointed; one checked and
    then swapped for a link before the rename was followed too. A link in the target's own place
    is replaced, never followed. ConfigError naming the link."""
    make_dirs(within)
    try:
        folder = folder_below(within, target.parent, create=True)
    except (ImageError, FileNotFoundError) as exc:
        raise ConfigError(f"{target} is not written: {exc} Nothing is written through a link below {within}; remove "
                          "what is in the way (safeface makes the folders itself).") from None
    tmp = f".{target.name}.tmp-{secrets.token_hex(8)}"
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | getattr(os, "O_CLOEXEC", 0), 0o600,
                     dir_fd=folder)
        try:
            with os.fdopen(fd, "wb") as fh:
                fh.write(data)
                fh.flush()
                os.fchmod(fh.fileno(), mode)
                if durable:
                    os.fsync(fh.fileno())
            try:
                os.replace(tmp, target.name, src_dir_fd=folder, dst_dir_fd=folder)
            except OSError as exc:  # a folder in its place, or a read-only mount
                raise ConfigError(f"{target}: could not be replaced ({exc.strerror}); remove what is in its "
                                  "place.") from None
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(tmp, dir_fd=folder)
            raise
        if durable:
            with contextlib.suppress(OSError):
                os.fsync(folder)
    finally:
        os.close(folder)


# Far above any plot or report file safeface writes (a few hundred KB): a sparse file of 3 GiB
# among the plots was read whole into memory and written whole into the report.
MAX_COPY_BYTES = 64 << 20


def copy_atomic(source: PathLike, target: PathLike, durable: bool = True, within: Optional[Path] = None) -> None:
    """Copy the regular file `source` (regularfile.read_no_link, up to MAX_COPY_BYTES) onto
    `target` as write_atomic does. Neither end's link is followed: shutil's copy wrote a plot
    through a link planted at the target (over the workspace's deployment.json), and copied
    whatever a link planted among the plots named (a key file) into the report an assessor is
    given. `within`: as for write_atomic."""
    write_atomic(target, read_no_link(Path(source), MAX_COPY_BYTES), durable=durable, within=within)


def write_new(path: PathLike, data: bytes, mode: int = 0o600, durable: bool = True) -> None:
    """Create `path` holding `data` only if nothing is there (FileExistsError otherwise): never
    overwrites, and since the file appears whole (hard-linked from a finished temporary file), a
    process racing to create or read it never sees it empty or half-written."""
    target = Path(path)
    fd, tmp = _temporary_beside(target)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            if durable:
                os.fsync(fh.fileno())
        os.chmod(tmp, mode)
        os.link(tmp, target)
    finally:
        os.unlink(tmp)
    if durable:
        _fsync_dir(target.parent)


def open_lock_file(lock_path: PathLike) -> int:
    """A descriptor on the lock file `lock_path`, created 0600. A link is never followed: one
    planted in its place (a shared witness folder) made safeface create files where it pointed."""
    try:
        fd = os.open(lock_path, os.O_RDWR | os.O_CREAT | getattr(os, "O_NOFOLLOW", 0), 0o600)
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise ConfigError(f"the lock file {lock_path} is a symbolic link; remove the link (safeface makes the "
                              "file itself).") from None
        if exc.errno in (errno.EISDIR, errno.ENXIO, errno.ENOTDIR):  # a folder or a device in its place
            raise ConfigError(f"the lock file {lock_path} cannot be opened ({exc.strerror}); remove what is in its "
                              "place (safeface makes the file itself).") from None
        if exc.errno in (errno.EACCES, errno.EPERM):
            raise ConfigError(f"the lock file {lock_path} cannot be made or opened ({exc.strerror}); safeface needs "
                              "to write in the workspace's folder, even to read it.") from None
        if exc.errno in DISK_REFUSED:  # a disk full or gone read-only: the same call works once it is back
            raise WorkspaceUnwritable(f"the lock file {lock_path} cannot be made or opened ({exc.strerror}); safeface "
                                      "needs to write in the workspace's folder, even to read it. Free space or "
                                      "remount its disk read-write, then try again.") from None
        raise
    # A second name for one lock file (a hard link from another lock's name) made two locks one:
    # `keys remove`, holding the store's lock, then waited on itself for the trust lock, for ever.
    if os.fstat(fd).st_nlink > 1:
        os.close(fd)
        raise ConfigError(f"the lock file {lock_path} has another name (a hard link), so two locks could be one "
                          "file; remove it (safeface makes the file itself).")
    return fd


def check_disk_takes_writes(folder: PathLike, size: int = 64 * 1024) -> None:
    """WorkspaceUnwritable unless `size` bytes can be written and synced on `folder`'s disk now:
    whether a disk that refused a write (full, read-only) takes writes again. The file never has
    a name there (or loses it at once), so nothing is left behind, even by a crash."""
    try:
        with tempfile.TemporaryFile(dir=folder) as f:
            f.write(bytes(size))
            f.flush()
            os.fsync(f.fileno())
    except OSError as exc:
        raise WorkspaceUnwritable(f"{folder} cannot be written ({exc.strerror}): its disk is full or read-only. Free "
                                  "space or remount it read-write.") from None


def same_lock_file(fd: int, lock_path: PathLike) -> bool:
    """Whether the lock file open at `fd` is still the one named `lock_path`. A lock file deleted
    or replaced (by anyone who can write its folder) while held or waited on let a second process
    make a new one and lock it too: two writers at once."""
    return _names_file(lock_path, fd, follow_symlinks=False)


def _names_file(path: PathLike, fd: int, follow_symlinks: bool) -> bool:
    """Whether the name `path` still reaches the file open at `fd`."""
    try:
        here, held = os.stat(path, follow_symlinks=follow_symlinks), os.fstat(fd)
    except OSError:
        return False
    return (here.st_dev, here.st_ino) == (held.st_dev, held.st_ino)


def refuse_lost_lock(fd: int, lock_path: PathLike, guard_fd: Optional[int] = None,
                     guard: Optional[PathLike] = None) -> None:
    """Called by a holder just before it commits: IntegrityError if the lock file it holds at `fd`
    is no longer the one named `lock_path` (see same_lock_file), unless it holds a guard (`guard_fd`,
    take_guard) that is still the file named `guard`: every other holder must lock that first."""
    if not same_lock_file(fd, lock_path) and not (guard_fd is not None and guard is not None
                                                  and _same_guard(guard_fd, guard)):
        raise IntegrityError(f"the lock file {lock_path} was deleted or replaced while this process held it, so "
                             "another process may have been writing at the same time; this change stopped before "
                             "it was committed. Find out who can write the workspace's folder, then try again.")


def take_lock_file(lock_path: PathLike, take: Callable[[int], None]) -> int:
    """A descriptor on the lock file named `lock_path` once `take(fd)` has locked it (flock, or a
    bounded wait for it). One deleted or replaced while it was waited on is let go and the file
    that has the name now is taken instead (see same_lock_file). POSIX only."""
    import fcntl

    while True:
        fd = open_lock_file(lock_path)
        try:
            take(fd)
        except BaseException:
            os.close(fd)
            raise
        if same_lock_file(fd, lock_path):
            return fd
        fcntl.flock(fd, fcntl.LOCK_UN)
        os.close(fd)


# A lock file's name can be deleted while it is held, and a second process then makes and locks a
# new file beside the holder. So each lock is also taken as an OFD byte-range lock on a "guard": a
# file that lives as long as the workspace (the database a lock protects, or the keyring), one byte
# per lock name, above SQLite's lock bytes (0x40000000-0x400001FF). A guard replaced as well lets a
# second holder past it, whom the first one's mark on the folder refuses (mark_folder). Byte-range locks
# are advisory: SQLite's reads and writes there are not affected. Closing any descriptor of a file
# drops the classic POSIX locks SQLite holds on it in this process, so a guard's descriptors are
# not closed while this process has the database open (hold_database): each is kept for the next
# lock. Otherwise (a keyring, a database no handle has open) they are closed when let go: kept for
# every workspace a process ever opened, they ran it out of descriptors.
_GUARD_BASE = 0x40001000
_guard_pool: dict[tuple[int, int], list[int]] = {}
_guard_users: dict[tuple[int, int], int] = {}  # file -> this process's open database handles on it
_guard_pool_lock = threading.Lock()
_guard_pool_pid = [os.getpid()]
try:
    import fcntl as _fcntl

    # Linux 3.15 and later. Tests set it False to run the locks as a system without them would.
    _OFD_LOCKS = hasattr(_fcntl, "F_OFD_SETLKW")
except ImportError:  # pragma: no cover - not POSIX
    _OFD_LOCKS = False


def guard_offset(lock_path: PathLike) -> int:
    """The byte of a guard that stands for the lock file `lock_path` (by its name: one guard
    serves several locks, each on its own byte)."""
    return _GUARD_BASE + (zlib.crc32(Path(lock_path).name.encode("utf-8", "surrogatepass")) & 0xFFFFF)


def _same_guard(fd: int, guard: PathLike) -> bool:
    return _names_file(guard, fd, follow_symlinks=True)  # a link to the guard is taken as it (_guard_fd)


_FLOCK = "hhqqi4x"  # struct flock: type, whence, start, length, pid (Linux's layout on 64-bit hosts)


def _one_byte(lock_type: int, offset: int, length: int = 1) -> bytes:
    """A struct flock for byte `offset` (`length` 0: from there to the end of the file)."""
    return struct.pack(_FLOCK, lock_type, os.SEEK_SET, offset, length, 0)


def _guard_fd(guard: PathLike) -> Optional[int]:
    """A descriptor (read and write) on the regular file `guard`, from this process's pool, or None
    where there is none to lock (not made yet, or a read-only copy, whose writes fail anyway). A
    link is followed: a link to the same file in its place would otherwise let a holder in unguarded."""
    try:
        st = os.stat(guard)
    except OSError:
        return None
    if not stat.S_ISREG(st.st_mode):
        return None
    with _guard_pool_lock:
        _this_process()
        free = _guard_pool.get((st.st_dev, st.st_ino))
        if free:
            return free.pop()
    try:
        fd = os.open(guard, os.O_RDWR | os.O_NONBLOCK | os.O_NOCTTY)
    except OSError:
        return None
    if not stat.S_ISREG(os.fstat(fd).st_mode):  # swapped for a pipe meanwhile: no database, safe to close
        os.close(fd)
        return None
    if not _ofd_works(fd):
        _guard_back(fd)  # kept or closed as any guard descriptor: SQLite may hold locks on this file
        return None
    return fd


def _ofd_works(fd: int) -> bool:
    """Whether OFD locks can be asked about on `fd`'s file: a kernel or file system without them
    (an old kernel, some sandboxes and network file systems) answers EINVAL or the like, and the
    lock then goes on without a guard, as before guards existed, rather than failing every write."""
    import fcntl

    try:
        fcntl.fcntl(fd, fcntl.F_OFD_GETLK, _one_byte(fcntl.F_WRLCK, _GUARD_BASE))
    except OSError as exc:
        if exc.errno in (errno.EINVAL, errno.ENOSYS, errno.EOPNOTSUPP, errno.ENOLCK):
            return False
        raise
    return True


def _this_process() -> None:
    """Called holding _guard_pool_lock: in a forked child, forget the parent's pool and handles
    (its descriptors share the parent's locks, and its SQLite locks are not the child's)."""
    if _guard_pool_pid[0] != os.getpid():
        _guard_pool.clear()
        _guard_users.clear()
        _guard_pool_pid[0] = os.getpid()


def hold_database(path: PathLike) -> Optional[tuple[int, int, int]]:
    """Called before this process opens the SQLite database at `path` (which exists): until
    let_database_go(the key returned), guard descriptors on it are kept, not closed."""
    try:
        st = os.stat(path)
    except OSError:
        return None
    key = (st.st_dev, st.st_ino)
    with _guard_pool_lock:
        _this_process()
        _guard_users[key] = _guard_users.get(key, 0) + 1
    return (os.getpid(), *key)


def let_database_go(held: Optional[tuple[int, int, int]]) -> None:
    """Called once a handle counted by hold_database has closed its connection: the last one
    closes the guard descriptors kept for it (SQLite holds no lock on the file here any more).
    A handle a forked child inherited was not counted there, and is not let go there."""
    if held is None or held[0] != os.getpid():
        return
    key = held[1:]
    with _guard_pool_lock:
        _this_process()
        left = _guard_users.get(key, 0) - 1
        if left > 0:
            _guard_users[key] = left
            return
        _guard_users.pop(key, None)
        for fd in _guard_pool.pop(key, []):
            os.close(fd)


def _guard_back(fd: int) -> None:
    """Keep `fd` for the next lock while a database handle of this process is open on its file,
    else close it; and close those on files no name reaches any more: a keyring a rotation
    replaced (its retired keys are not kept alive), a database removed or replaced, whose open
    handles all refuse to go on."""
    with _guard_pool_lock:
        _this_process()
        st = os.fstat(fd)
        key = (st.st_dev, st.st_ino)
        if not _guard_users.get(key):
            os.close(fd)  # no handle of this process has the file open: no SQLite lock to drop
        else:
            _guard_pool.setdefault(key, []).append(fd)
        for key, fds in list(_guard_pool.items()):
            if fds and os.fstat(fds[0]).st_nlink == 0:
                for gone in _guard_pool.pop(key):
                    os.close(gone)


def guard_lock(fd: int, offset: int, kind: str, wait: bool) -> bool:
    """Set (`kind` "w" or "r") or clear ("u") the OFD lock on byte `offset` of the guard open at
    `fd`; with `wait`, block until it is free. False: not free (without `wait`)."""
    import fcntl

    lock_type = {"w": fcntl.F_WRLCK, "r": fcntl.F_RDLCK, "u": fcntl.F_UNLCK}[kind]
    try:
        fcntl.fcntl(fd, fcntl.F_OFD_SETLKW if wait else fcntl.F_OFD_SETLK, _one_byte(lock_type, offset))
    except OSError as exc:
        if exc.errno in (errno.EAGAIN, errno.EACCES):
            return False
        raise
    return True


def take_guard(guard: Optional[PathLike], lock_path: PathLike, take: Callable[[int, int], None]) -> Optional[int]:
    """A guard descriptor once `take(fd, offset)` has locked the guard's byte for `lock_path` (see
    guard_lock); None where there is no guard (no OFD locks, no file). Where `take` raises, the
    descriptor is left to it (a waiter may still hold it) and never reused. A guard replaced
    while it was waited on is let go and the file that has the name now is taken."""
    if guard is None or not _OFD_LOCKS:
        return None
    offset = guard_offset(lock_path)
    while True:
        fd = _guard_fd(guard)
        if fd is None:
            return None
        take(fd, offset)
        if _same_guard(fd, guard):
            return fd
        release_guard(fd, lock_path)


def late_guard(guard: Optional[PathLike], lock_path: PathLike) -> Optional[int]:
    """For a holder about to commit that found no guard when it took the lock (none made yet, or
    one moved away in that instant and put back): the guard, taken now without waiting, or None
    where there is still none. IntegrityError if another process holds it: that one holds the lock
    too, through a lock file deleted since."""

    def take_now(fd: int, offset: int) -> None:
        if not guard_lock(fd, offset, "w", False):
            _guard_back(fd)
            raise IntegrityError(f"the lock file {lock_path} was deleted or replaced while another process held "
                                 "it, and this process took a new one beside it; this change stopped before it was "
                                 "committed. Find out who can write the workspace's folder, then try again.")

    return take_guard(guard, lock_path, take_now)


def release_guard(fd: Optional[int], lock_path: PathLike) -> None:
    """Let go of a guard taken by take_guard for `lock_path`; the descriptor goes back to the pool."""
    if fd is not None:
        guard_lock(fd, guard_offset(lock_path), "u", False)
        _guard_back(fd)


# A guard replaced along with its lock file (a copy of keyring.json renamed over it) let a second
# holder in beside the first. So each holder also marks the lock file's folder, which no rename
# inside that folder can swap: an OFD read lock (all that a folder opened for reading can take) on
# a byte of the lock's own, holders' and shared readers' apart. A holder that finds another's mark
# there holds the lock beside it, through a lock file deleted or replaced: it lets go and is
# refused before it writes anything. Honest holders never meet: the lock file orders them, and a
# mark is taken after it and let go before it.
_MARK_BASE = 1 << 40


def _mark_offset(lock_path: PathLike, shared: bool) -> int:
    return _MARK_BASE + 2 * zlib.crc32(Path(lock_path).name.encode("utf-8", "surrogatepass")) + int(shared)


def _marked(fd: int, offset: int) -> bool:
    """Whether another open file than `fd`'s holds a lock on byte `offset` of `fd`'s file."""
    import fcntl

    found = fcntl.fcntl(fd, fcntl.F_OFD_GETLK, _one_byte(fcntl.F_WRLCK, offset))
    return int(struct.unpack(_FLOCK, found)[0]) != fcntl.F_UNLCK


def mark_folder(lock_path: PathLike, shared: bool, guard: Optional[PathLike] = None) -> Optional[int]:
    """A descriptor on `lock_path`'s folder, marked as holding the lock (`shared`: as a reader), or
    None where the folder takes no OFD locks. IntegrityError, unmarked, if another process holds
    the lock too (a holder; for a holder, a reader as well)."""
    if not _OFD_LOCKS:
        return None
    import fcntl

    try:
        fd = os.open(Path(lock_path).parent, os.O_RDONLY | os.O_DIRECTORY)
    except OSError:
        return None
    try:
        fcntl.fcntl(fd, fcntl.F_OFD_SETLK, _one_byte(fcntl.F_RDLCK, _mark_offset(lock_path, shared)))
        beside = [_mark_offset(lock_path, False)] + ([] if shared else [_mark_offset(lock_path, True)])
        found = any(_marked(fd, offset) for offset in beside)
    except OSError:  # a file system without OFD locks: as without a guard (see _ofd_works)
        os.close(fd)
        return None
    if found:
        unmark_folder(fd)
        also = f" (and its guard {guard} replaced or moved away too)" if guard is not None else ""
        marks = f"byte {_mark_offset(lock_path, False)} or {_mark_offset(lock_path, True)}"
        raise IntegrityError(f"another process holds the lock {lock_path} (it marks {marks} of its folder, which "
                             "lslocks or /proc/locks shows), through a lock file deleted or replaced since it took "
                             f"it{also}, so this process would write beside it; nothing was changed. Find out who can "
                             "write (or read) the workspace's folder, then try again.")
    return fd


def unmark_folder(fd: Optional[int]) -> None:
    """Let go of mark_folder's mark and close its descriptor. Unlocked first: a child this process
    forked meanwhile shares the descriptor's lock, and closing alone would leave it marked."""
    if fd is not None:
        import fcntl

        try:
            fcntl.fcntl(fd, fcntl.F_OFD_SETLK, _one_byte(fcntl.F_UNLCK, 0, length=0))
        finally:
            os.close(fd)


LOCK_WAIT_S = 30.0  # how long a lock is waited for: one held for ever (stuck or hostile) froze its callers


def lock_busy(what: str, timeout: Optional[float] = None) -> WorkspaceBusy:
    """What a bounded wait for one of the workspace's locks says when it gives up (`timeout` None:
    LOCK_WAIT_S)."""
    within = LOCK_WAIT_S if timeout is None else timeout
    return WorkspaceBusy(f"the lock {what} was not free within {within:g} s: another process holds it (a trust "
                         "change, an assessment, a key rotation, an audit entry, a model install) or is stuck; "
                         "nothing was changed. Let it finish or stop it, then try again.")


# Waits given up on go on in their threads, each with a descriptor, until the lock is free: behind a
# holder stuck for hours, every refused call of a service left one, and the process ran out of
# descriptors for all its calls. Past this many at once, a wait polls instead (a stuck lock is no
# stream of short writes to be starved by).
MAX_WAITER_THREADS = 64
_waiters = [0]  # this process's waiter threads still running
_waiters_lock = threading.Lock()


def _in_forked_child() -> None:
    """A child has none of its parent's threads: one forked while another thread held one of these
    locks inherited it held for ever, and its first lock of any workspace waited with no end."""
    global _guard_pool_lock, _waiters_lock
    _guard_pool_lock, _waiters_lock = threading.Lock(), threading.Lock()
    _waiters[0] = 0


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_in_forked_child)


def _poll(try_lock: Callable[[], bool], timeout: float) -> bool:
    import time

    deadline = time.monotonic() + timeout
    while not try_lock():
        left = deadline - time.monotonic()
        if left <= 0:
            return False
        time.sleep(min(0.05, left))
    return True


def bounded_wait(lock: Callable[[], object], unlock: Callable[[], None], done: Callable[[], None],
                 timeout: Optional[float], try_lock: Optional[Callable[[], bool]] = None) -> bool:
    """Whether `lock()` (a blocking wait) returned within `timeout` seconds (None: waits for it).
    A wait given up on goes on in its thread, which calls `unlock` once it gets the lock; `done`
    runs when that thread ends. With MAX_WAITER_THREADS running, `try_lock()` (without waiting)
    is polled instead, and `unlock` and `done` run when the poll gives up."""
    if timeout is None:
        try:
            lock()
        finally:
            done()
        return True
    if try_lock is not None:
        with _waiters_lock:
            polling = _waiters[0] >= MAX_WAITER_THREADS
            if not polling:
                _waiters[0] += 1
        if polling:
            try:
                if _poll(try_lock, timeout):
                    return True
            except BaseException:
                unlock()
                raise
            finally:
                done()
            unlock()
            return False
    # A blocking wait, in a thread of its own, rather than polling: a poller is overtaken by every
    # writer already blocked on the lock, and a steady stream of short writes starves it.
    decided = threading.Lock()  # the waiter's taking and the caller's giving up, one after the other
    got, abandoned = threading.Event(), threading.Event()
    failed: list[BaseException] = []

    def take() -> None:
        try:
            try:
                lock()
            except BaseException as exc:  # the caller's to raise (ENOLCK on a network file system)
                failed.append(exc)
                got.set()
                return
            with decided:
                if abandoned.is_set():
                    unlock()
                else:
                    got.set()
        finally:
            done()
            if try_lock is not None:
                with _waiters_lock:
                    _waiters[0] -= 1

    try:
        try:
            threading.Thread(target=take, name="safeface-lock-wait", daemon=True).start()
        except RuntimeError:  # no thread to be had: nothing waits, nothing is counted
            if try_lock is not None:
                with _waiters_lock:
                    _waiters[0] -= 1
            done()
            raise
        got.wait(timeout)
    except BaseException:
        # Interrupted (KeyboardInterrupt, a signal handler's exception): the waiter must not take
        # the lock for no one. A guard byte taken so stayed held for the process's life, and every
        # writer of every process then ended busy.
        with decided:
            abandoned.set()
            if got.is_set() and not failed:
                unlock()
        raise
    with decided:
        if failed:
            raise failed[0]
        if got.is_set():
            return True
        abandoned.set()
    return False


def flock_within(fd: int, how: int, timeout: Optional[float] = None) -> bool:
    """Whether flock(`fd`, `how`) was taken within `timeout` seconds (None: LOCK_WAIT_S; see
    bounded_wait)."""
    import fcntl

    timeout = LOCK_WAIT_S if timeout is None else timeout
    try:  # a lock that is free is taken here, without a thread
        fcntl.flock(fd, how | fcntl.LOCK_NB)
        return True
    except BlockingIOError:
        pass
    waiter = os.dup(fd)  # the same open file: the lock it takes is this descriptor's
    closing = threading.Lock()
    closed = [False]

    def unlock() -> None:
        with closing:  # once closed, its number may be another file's: fd's closing lets the lock go
            if not closed[0]:
                fcntl.flock(waiter, fcntl.LOCK_UN)

    def done() -> None:
        with closing:
            closed[0] = True
            os.close(waiter)

    def try_flock() -> bool:
        try:
            fcntl.flock(waiter, how | fcntl.LOCK_NB)
        except BlockingIOError:
            return False
        return True

    return bounded_wait(lambda: fcntl.flock(waiter, how), unlock, done, timeout, try_flock)


HeldLock = tuple[int, Optional[int], Optional[int]]  # the lock file's, the guard's and the mark's descriptors


def take_locks(lock_path: PathLike, guard: Optional[PathLike], shared: bool, timeout: Optional[float],
               busy: Callable[[str, Optional[float]], Exception] = lock_busy) -> HeldLock:
    """The lock file named `lock_path` flocked (`shared`: LOCK_SH, else LOCK_EX; take_lock_file),
    its guard's byte (take_guard) and its folder's mark (mark_folder), waited for at most
    `timeout` seconds in all (None: LOCK_WAIT_S, read now); `busy(what, timeout)` is raised when
    that runs out. Let go with let_locks_go. POSIX only."""
    import fcntl
    import time

    timeout = LOCK_WAIT_S if timeout is None else timeout
    deadline = time.monotonic() + timeout  # one deadline across retries
    how = fcntl.LOCK_SH if shared else fcntl.LOCK_EX

    def left() -> float:
        return max(0.0, deadline - time.monotonic())

    def take(fd: int) -> None:
        if not flock_within(fd, how, left()):
            raise busy(str(lock_path), timeout)

    def take_guarded(fd: int, offset: int) -> None:
        # No dup here: closing any descriptor of the database drops SQLite's locks in this process.
        kind = "r" if shared else "w"
        if not guard_lock(fd, offset, kind, False) and not bounded_wait(
                lambda: guard_lock(fd, offset, kind, True), lambda: release_guard(fd, lock_path), lambda: None,
                left(), lambda: guard_lock(fd, offset, kind, False)):
            # Named: a process holding this byte is invisible to fuser or lsof on the lock file.
            raise busy(f"{lock_path}, held also as byte {offset} of {guard}, which lslocks or /proc/locks shows "
                       "with the process holding it", timeout)

    fd = take_lock_file(lock_path, take)
    guard_fd: Optional[int] = None
    try:
        guard_fd = take_guard(guard, lock_path, take_guarded)
        return fd, guard_fd, mark_folder(lock_path, shared, guard)
    except BaseException:
        release_guard(guard_fd, lock_path)
        fcntl.flock(fd, fcntl.LOCK_UN)
        os.close(fd)
        raise


def let_locks_go(held: HeldLock, lock_path: PathLike) -> None:
    """Let go of what take_locks took, the mark first and the lock file last (the order that keeps
    the next holder from meeting this one's mark)."""
    import fcntl

    fd, guard_fd, mark_fd = held
    try:
        try:
            unmark_folder(mark_fd)
        finally:
            release_guard(guard_fd, lock_path)
    finally:
        fcntl.flock(fd, fcntl.LOCK_UN)
        os.close(fd)


@contextmanager
def shared_lock(lock_path: PathLike, guard: Optional[PathLike] = None,
                timeout: Optional[float] = None) -> Iterator[None]:
    """Hold an advisory shared lock on `lock_path` while reading what a writer changes in two
    steps under `exclusive_lock` (a file and its audit entry): the reader sees both or neither.
    (A workspace that cannot hold its lock files, a read-only copy, does not open at all: its
    SQLite logs need files beside them too.) `timeout`: as exclusive_lock's."""
    with _held(lock_path, "LOCK_SH", guard, timeout):
        yield


@contextmanager
def exclusive_lock(lock_path: PathLike, guard: Optional[PathLike] = None,
                   timeout: Optional[float] = None) -> Iterator[Callable[[], None]]:
    """Hold an advisory exclusive lock on `lock_path` (created 0600) for a read-modify-write, so
    two processes updating one file cannot lose each other's changes. Without fcntl (not POSIX)
    there is no lock; the atomic rename still keeps the file whole. Yields the check to call
    just before the write (refuse_lost_lock). `guard`: a file kept as long as the workspace (its
    keyring), also locked, so that a lock file deleted while held lets no second
    holder in (see take_guard). `timeout`: seconds to wait for another holder before WorkspaceBusy
    (None: LOCK_WAIT_S)."""
    with _held(lock_path, "LOCK_EX", guard, timeout) as still_held:
        yield still_held


@contextmanager
def _held(lock_path: PathLike, mode: str, guard: Optional[PathLike],
          timeout: Optional[float]) -> Iterator[Callable[[], None]]:
    """Take the lock on `lock_path` in `mode` ("LOCK_SH" or "LOCK_EX") for the block (take_locks),
    then let it go; yields the check a holder calls before it commits."""
    try:
        import fcntl  # noqa: F401
    except ImportError:  # pragma: no cover - not POSIX
        yield lambda: None
        return
    held = take_locks(lock_path, guard, mode == "LOCK_SH", timeout)
    guard_fd = [held[1]]

    def still_held() -> None:
        if guard_fd[0] is None and mode == "LOCK_EX":
            guard_fd[0] = late_guard(guard, lock_path)
        refuse_lost_lock(held[0], lock_path, guard_fd[0], guard)

    try:
        yield still_held
    finally:
        let_locks_go((held[0], guard_fd[0], held[2]), lock_path)
