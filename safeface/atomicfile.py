"""The one atomic file write: a temporary file beside the target, flushed to disk, then renamed
over it. A reader sees the old file or the new one, never half of either, and a writer that
fails or dies before the rename leaves the old file untouched (and, when it fails rather than
dies, no temporary file either)."""

from __future__ import annotations

import errno
import os
import stat
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Callable, Iterator, Optional, Union

from .errors import ConfigError, IntegrityError
from .regularfile import read_no_link

PathLike = Union[str, "os.PathLike[str]"]


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


def write_atomic(path: PathLike, data: Union[bytes, str], mode: Optional[int] = None, durable: bool = True) -> None:
    """Replace `path` by `data` (str is written as UTF-8) atomically."""
    with atomic_writer(path, mode=mode, durable=durable) as fh:
        fh.write(data.encode("utf-8") if isinstance(data, str) else data)


# Far above any plot or report file safeface writes (a few hundred KB): a sparse file of 3 GiB
# among the plots was read whole into memory and written whole into the report.
MAX_COPY_BYTES = 64 << 20


def copy_atomic(source: PathLike, target: PathLike, durable: bool = True) -> None:
    """Copy the regular file `source` (regularfile.read_no_link, up to MAX_COPY_BYTES) onto
    `target` as write_atomic does. Neither end's link is followed: shutil's copy wrote a plot
    through a link planted at the target (over the workspace's deployment.json), and copied
    whatever a link planted among the plots named (a key file) into the report an assessor is
    given."""
    write_atomic(target, read_no_link(Path(source), MAX_COPY_BYTES), durable=durable)


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
        return os.open(lock_path, os.O_RDWR | os.O_CREAT | getattr(os, "O_NOFOLLOW", 0), 0o600)
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise ConfigError(f"the lock file {lock_path} is a symbolic link; remove the link (safeface makes the "
                              "file itself).") from None
        if exc.errno in (errno.EISDIR, errno.ENXIO, errno.ENOTDIR):  # a folder or a device in its place
            raise ConfigError(f"the lock file {lock_path} cannot be opened ({exc.strerror}); remove what is in its "
                              "place (safeface makes the file itself).") from None
        if exc.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
            raise ConfigError(f"the lock file {lock_path} cannot be made or opened ({exc.strerror}); safeface needs "
                              "to write in the workspace's folder, even to read it.") from None
        raise


def same_lock_file(fd: int, lock_path: PathLike) -> bool:
    """Whether the lock file open at `fd` is still the one named `lock_path`. A lock file deleted
    or replaced (by anyone who can write its folder) while held or waited on let a second process
    make a new one and lock it too: two writers at once."""
    try:
        here = os.stat(lock_path, follow_symlinks=False)
    except OSError:
        return False
    held = os.fstat(fd)
    return (here.st_dev, here.st_ino) == (held.st_dev, held.st_ino)


def refuse_lost_lock(fd: int, lock_path: PathLike) -> None:
    """Called by a holder just before it commits: IntegrityError if the lock file it holds at `fd`
    is no longer the one named `lock_path` (see same_lock_file)."""
    if not same_lock_file(fd, lock_path):
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


@contextmanager
def shared_lock(lock_path: PathLike) -> Iterator[None]:
    """Hold an advisory shared lock on `lock_path` while reading what a writer changes in two
    steps under `exclusive_lock` (a file and its audit entry): the reader sees both or neither.
    (A workspace that cannot hold its lock files, a read-only copy, does not open at all: its
    SQLite logs need files beside them too.)"""
    with _held(lock_path, "LOCK_SH"):
        yield


@contextmanager
def exclusive_lock(lock_path: PathLike) -> Iterator[Callable[[], None]]:
    """Hold an advisory exclusive lock on `lock_path` (created 0600) for a read-modify-write, so
    two processes updating one file cannot lose each other's changes. Without fcntl (not POSIX)
    there is no lock; the atomic rename still keeps the file whole. Yields the check to call
    just before the write (refuse_lost_lock)."""
    with _held(lock_path, "LOCK_EX") as still_held:
        yield still_held


@contextmanager
def _held(lock_path: PathLike, mode: str) -> Iterator[Callable[[], None]]:
    """flock the file at `lock_path` in `mode` ("LOCK_SH" or "LOCK_EX") for the block, then close
    it; yields the check a holder calls before it commits."""
    try:
        import fcntl
    except ImportError:  # pragma: no cover - not POSIX
        yield lambda: None
        return
    fd = take_lock_file(lock_path, lambda fd: fcntl.flock(fd, getattr(fcntl, mode)))
    try:
        yield lambda: refuse_lost_lock(fd, lock_path)
    finally:
        os.close(fd)
