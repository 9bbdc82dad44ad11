"""Opening an input file that must be a regular file, judged on the descriptor that is read.

A check by path and an open by path are two looks at a name: a link flipped in between to a
FIFO or a device (/dev/zero) made a photo's open wait for ever on the FIFO, or a video's hash
read /dev/zero for ever. The open never blocks (O_NONBLOCK, which a regular file ignores), and
the descriptor itself must be a regular file. `SizedReader` reads no further than the size a
file had when it was judged."""

from __future__ import annotations

import errno
import io
import os
import stat
from pathlib import Path
from typing import BinaryIO, Callable, Iterator, Optional, Union

from .errors import ConfigError, ImageError, IntegrityError


def open_regular(path: Path, label: str) -> BinaryIO:
    """`path` opened for reading, refused with ImageError unless it is a regular file."""
    fh = _open_if_present(path, label)
    if fh is None:
        raise ImageError(f"{label}: no such file; check the path.")
    return fh


class _OpenFailed(ImageError):
    """An open the system refused, with its errno: EIO is the device failing, not the file."""

    def __init__(self, message: str, errno: Optional[int]) -> None:
        super().__init__(message)
        self.errno = errno


def _open_if_present(path: Path, label: str, follow: bool = True, within: Optional[Path] = None) -> Optional[BinaryIO]:
    nofollow = 0 if follow else getattr(os, "O_NOFOLLOW", 0)
    folder: Optional[int] = None
    try:
        if within is not None:
            folder = folder_below(within, path.parent)
        fd = os.open(path.name if folder is not None else path,
                     os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0) | nofollow, dir_fd=folder)
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise _OpenFailed(f"{label}: could not be opened ({exc.strerror}).", exc.errno) from None
    except ValueError:
        check_path_text(path)
        raise
    finally:
        if folder is not None:
            os.close(folder)
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise ImageError(f"{label}: not a regular file.")
        return os.fdopen(fd, "rb")
    except BaseException:
        os.close(fd)
        raise


def folder_below(within: Path, folder: Path, create: bool = False) -> int:
    """A descriptor of `folder`, opened from `within` one name at a time, none of them followed
    if it is a link: a check of each name and then an open by the whole path let a folder be
    swapped for a link in between (ImageError for a link, FileNotFoundError for none). `within`
    itself must be no link, and it and each folder below it this user's or root's and writable by
    no one else (as
    atomicfile.trusted_path judges): whoever may write `within` could otherwise put a real folder
    of their own there, and rewrite what is written into it before it is read back. `create`: a
    missing folder is made (0755 at most, whatever the umask) where it is missing, by name in the
    folder above it, so nothing on the way is followed either."""
    parts = folder.parts[len(within.parts):]
    if folder.parts[:len(within.parts)] != within.parts or any(p in (".", "..") for p in parts):
        raise ImageError(f"{folder}: not a folder below {within}.")
    # `within` itself is judged as the folders below it: whoever may write the folder above it
    # (the workspace's root) made it a link, and everything below was read and written there.
    try:
        fd = os.open(within, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | getattr(os, "O_CLOEXEC", 0))
    except OSError as exc:
        if isinstance(exc, FileNotFoundError):
            raise
        raise ImageError(f"{within} is a link or no folder ({exc.strerror}): make it a folder of this user's "
                         "(safeface makes it when it is missing).") from None
    try:
        _refuse_shared(fd, within, within.name)
        for part in parts:
            if create:
                try:
                    os.mkdir(part, 0o755, dir_fd=fd)
                except FileExistsError:  # there already (a link there is refused below)
                    pass
            try:
                below = os.open(part, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | getattr(os, "O_CLOEXEC", 0),
                                dir_fd=fd)
            except OSError as exc:
                if isinstance(exc, FileNotFoundError):
                    raise
                raise ImageError(f"{folder}: {part} is a link or no folder ({exc.strerror}).") from None
            os.close(fd)
            fd = below
            _refuse_shared(fd, folder, part)
    except BaseException:
        os.close(fd)
        raise
    return fd


def _refuse_shared(fd: int, folder: Path, part: str) -> None:
    """ImageError unless the folder open as `fd` (`part` of `folder`) is this user's or root's and
    writable by no one else (a group of this process's is trusted: a user's private group)."""
    st = os.fstat(fd)
    if st.st_uid not in (0, os.geteuid()) or st.st_mode & 0o002 or (
            st.st_mode & 0o020 and st.st_gid != os.getegid()):
        raise ImageError(f"{folder}: {part} is owned or writable by another user, who could change what is "
                         "written there (chown it to this user and chmod go-w it, or remove it: safeface makes it).")


def data_extents(fd: int, size: int) -> Iterator[tuple[int, int]]:
    """The (start, end) byte ranges of the open file `fd`, up to `size`, that hold data: its holes
    skipped (a hole has no blocks on the disk to read, fail or copy), or the whole file where the
    file system cannot tell. A sparse file of terabytes, which SQLite reads only the header of,
    was read or copied whole."""
    at = 0
    while at < size:
        try:
            start = os.lseek(fd, at, os.SEEK_DATA)
            end = os.lseek(fd, start, os.SEEK_HOLE)
        except OSError as exc:
            if exc.errno == errno.ENXIO:  # nothing but a hole from `at` on
                return
            if exc.errno not in (errno.EINVAL, errno.EOPNOTSUPP):
                raise
            start, end = at, size  # a file system that cannot tell holes: every byte
        yield start, min(end, size)
        at = end


def check_path_text(path: Path) -> None:
    """ImageError for a path no file can have: a NUL inside, or a lone surrogate the file system's
    encoding cannot write, which the system refuses with a bare ValueError. Shown escaped, so the
    message prints."""
    try:
        if b"\x00" not in os.fsencode(path):
            return
    except UnicodeEncodeError:
        pass
    raise ImageError(f"{str(path)!a}: not a path a file can have (a NUL or a lone surrogate in it); check the path.")


def read_regular(path: Path, label: str, limit: int) -> bytes:
    """At most `limit` + 1 bytes of the regular file `path` (one over is enough for the caller
    to refuse it: a file grown after a size check is never read whole); ImageError when it is
    not a regular file or cannot be read."""
    with open_regular(path, label) as fh:
        return _read(fh, label, limit)


def read_workspace_file(path: Path, label: str, limit: int, *, follow: bool = True) -> Optional[bytes]:
    """The bytes of a small file safeface writes into a workspace (an anchor, the trust store), or
    None when nothing is at `path` (not written yet). IntegrityError when something else stands
    there: no regular file (a FIFO put in its place made every open wait on it for ever), one
    that cannot be read, or one larger than `limit`; without `follow`, also a link."""
    # The device failed (EIO), not the file: it was called altered, every call a 409 and the
    # operator told to restore it from a backup. At the open only EIO counts: ENXIO there is a
    # socket put in the file's place.
    from .atomicfile import DISK_FAILED  # (both import this module)
    from .sqlite_store import disk_failed

    try:
        try:
            fh = _open_if_present(path, label, follow)
        except _OpenFailed as exc:
            if exc.errno == errno.EIO:
                raise disk_failed(label, os.strerror(errno.EIO), path) from None
            raise
        if fh is None:
            return None
        with fh:
            try:
                data = fh.read(limit + 1)
            except OSError as exc:
                if exc.errno in DISK_FAILED:
                    raise disk_failed(label, exc.strerror or "I/O error", path) from None
                raise ImageError(f"{label}: could not be read ({exc.strerror}).") from None
    except ImageError as exc:
        raise IntegrityError(f"{exc} It must be the workspace's own file: restore it from a backup.") from None
    if len(data) > limit:
        raise IntegrityError(f"{label}: larger than {limit} bytes, so not the workspace's own file: restore it "
                             "from a backup.")
    return data


def _read(fh: BinaryIO, label: str, limit: int) -> bytes:
    try:
        return fh.read(limit + 1)
    except OSError as exc:
        raise ImageError(f"{label}: could not be read ({exc.strerror}).") from None


def read_no_link(path: Path, limit: int, within: Optional[Path] = None, one_name: bool = True) -> bytes:
    """The bytes of the regular file `path`, at most `limit` of them, a link never followed (where
    read_regular follows one, as a photo's path may); ConfigError naming it for a link, anything
    that is no regular file, or a larger file, judged by its size before any byte is read (a
    sparse file of gigabytes). A file with a second name is refused too: a hard link planted by
    whoever may write its folder (to deployment.json or a passphrase file) is the other file.
    `within`: a folder above `path`, below which no folder is followed if it is a link.
    `one_name` False: a second name is no reason to refuse, for a file whose MAC vouches for it
    (refused, a record of something ended, such as a logout, was lost to a hard link)."""
    label = str(path)
    try:
        fh = _open_if_present(path, label, follow=False, within=within)
        if fh is None:
            raise ImageError(f"{label}: no such file.")
        with fh:
            st = os.fstat(fh.fileno())
            if one_name and st.st_nlink > 1:
                raise ImageError(f"{label}: has another name (a hard link).")
            size = st.st_size
            data = b"" if size > limit else _read(fh, label, limit)
    except ImageError as exc:
        raise ConfigError(f"{exc} It must be a regular file, not a link: remove it or write it again.") from None
    if size > limit or len(data) > limit:  # it may grow while read
        raise ConfigError(f"{label}: larger than {limit >> 20} MiB, so it is not copied; remove it or write it "
                          "again.")
    return data


def read_text(path: Path, label: str, limit: int, *, private: Union[bool, Callable[[bytes], bool]] = False) -> str:
    """The UTF-8 text of the small regular file `path` (a token, a passphrase), stripped;
    ConfigError when it is no regular file (`@/dev/zero` was read until memory ran out), holds
    more than `limit` bytes, or is not UTF-8 (a photo passed by mistake). `private`: a secret
    (a TLS key or its passphrase), or a test of what was read for one, also refused when its
    group or others may read or write it, judged on the descriptor that was read, as ssh judges
    a private key."""
    try:
        with open_regular(path, label) as fh:
            data = _read(fh, label, limit)
            if len(data) > limit:  # the wrong file (a photo, a sparse file): said before its mode
                raise ConfigError(f"{label}: larger than {limit} bytes; check the path.")
            if private is True or (callable(private) and private(data)):
                refuse_shared_secret(fh.fileno(), path, label)
                _refuse_changeable_name(os.fstat(fh.fileno()), path, label)
    except ImageError as exc:
        raise ConfigError(str(exc)) from None
    try:
        return data.decode("utf-8").strip()
    except UnicodeDecodeError:
        raise ConfigError(f"{label}: not UTF-8 text; check the path.") from None


def refuse_shared_secret(fd: int, path: Path, label: str) -> None:
    """ConfigError when the open file `fd` (`path`) is not this account's alone: owned by another
    account (which may read it, and write it, whatever its mode), or granting its group or others
    any access. A secret anyone else on the host may read is no secret, and one they may write is
    theirs to choose. As PostgreSQL does, a file root owns may grant its group reading (0640, as
    Debian's /etc/ssl/private gives keys to the ssl-cert group) to an account that is not root:
    only root could have given that. Not judged where the system has no such permission bits
    (Windows)."""
    if os.name != "posix":
        return
    st = os.fstat(fd)
    me, mode = os.geteuid(), stat.S_IMODE(st.st_mode)
    if st.st_uid not in (me, 0):
        raise ConfigError(f"{label}: it belongs to another account (uid {st.st_uid}), which may read or replace it; "
                          f"give it to the service's account (chown) and make it private to it: chmod 600 {path}")
    shared = mode & 0o077
    if shared and not (st.st_uid == 0 != me and shared == 0o040):
        raise ConfigError(f"{label}: its group or other users may read or write it (mode "
                          f"{mode:04o}); make it private to this account: chmod 600 {path}")


def _refuse_changeable_name(st: os.stat_result, path: Path, label: str) -> None:
    """ConfigError where the secret file read (`st`, its descriptor's) was reached through a name
    another user may change: a link they made, or a folder on the way they own or may write
    (atomicfile.trusted_path). They put a link there to another private file of this account's
    (a private key), whose text was taken as the passphrase or sent to a server as the password.
    The name must still lead to the file read. A name that leads nowhere now is this process's
    own descriptor (/dev/stdin, /proc/self/fd/N of a deleted file) or was changed meanwhile."""
    from .atomicfile import trusted_path  # (it imports this module)

    if os.name != "posix":  # no owners to judge (refuse_shared_secret's reason)
        return
    try:
        now = os.stat(trusted_path(path))
    except ConfigError as exc:
        raise ConfigError(f"{label}: {exc}") from None
    except OSError:
        if os.path.abspath(path).startswith(("/proc/", "/dev/")):
            return
        now = None
    if now is None or (now.st_dev, now.st_ino) != (st.st_dev, st.st_ino):
        raise ConfigError(f"{label}: its name led to another file while it was read (a link or a folder on the way "
                          f"changed); check {path} and try again.")


class SizedReader(io.RawIOBase):
    """The first `size` bytes of an open file, as a file of that size: whatever lies past them
    reads as its end. A size checked against a limit then bounds what is read, however the file
    grows meanwhile (a sparse terabyte appended by another writer), and a regular file that
    reads more than its size says (/proc/self/pagemap: size 0, 256 GiB of reads) reads as that
    size. The caller compares the file's state at the end to catch the change itself."""

    def __init__(self, fh: BinaryIO, size: int) -> None:
        super().__init__()
        self._fh = fh
        self._size = int(size)
        self._pos = 0

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self._pos

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        base = {io.SEEK_SET: 0, io.SEEK_CUR: self._pos, io.SEEK_END: self._size}.get(whence)
        if base is None or base + offset < 0:
            raise OSError(errno.EINVAL, "invalid seek")
        self._pos = base + offset
        return self._pos

    def readinto(self, buffer: "bytearray | memoryview") -> int:  # type: ignore[override]
        n = max(0, min(len(buffer), self._size - self._pos))
        if n == 0:
            return 0
        self._fh.seek(self._pos)
        got = self._fh.readinto(memoryview(buffer)[:n])  # type: ignore[attr-defined]
        self._pos += got or 0
        return got or 0
