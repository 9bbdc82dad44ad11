"""SHA-256 of files, streamed so that large models and videos never sit whole in memory: the
one file hash, a cached form for model files, and the checks built on it."""

from __future__ import annotations

import hashlib
import hmac
import threading
from pathlib import Path
from typing import IO, Optional

from .errors import ModelError

CHUNK = 1 << 20

_CACHE: dict[tuple[str, int, int], str] = {}
_CACHE_LOCK = threading.Lock()


def sha256_file(path: Path) -> str:
    with open(path, "rb") as fh:
        return sha256_open_file(fh)


def sha256_open_file(fh: IO[bytes]) -> str:
    """The SHA-256 of an open file's whole content, read from its start; the position is left
    at the end. Hashing the descriptor a reader uses names the file it read, even if the path
    is pointed at another file meanwhile."""
    fh.seek(0)
    h = hashlib.sha256()
    for block in iter(lambda: fh.read(CHUNK), b""):
        h.update(block)
    return h.hexdigest()


def sha256_file_cached(path: Path) -> str:
    """The file's SHA-256, remembered per (path, size, mtime) so a model is hashed once per
    process. A check that guards a load must hash the bytes it loads (see `read_verified`)."""
    st = Path(path).stat()
    key = (str(Path(path).resolve()), st.st_size, st.st_mtime_ns)
    with _CACHE_LOCK:
        cached = _CACHE.get(key)
    if cached is not None:
        return cached
    digest = sha256_file(path)
    with _CACHE_LOCK:
        _CACHE[key] = digest
    return digest


def forget_cached_hashes() -> None:
    """Drop every remembered hash: what a check that must read the files as they are now (an
    operator's `models verify`) does first, since a file changed in place with its size and
    time put back keeps its remembered hash."""
    with _CACHE_LOCK:
        _CACHE.clear()


def read_hashed(path: Path) -> tuple[str, bytes]:
    """(SHA-256, bytes) of a small file that is wanted whole anyway."""
    data = Path(path).read_bytes()
    return hashlib.sha256(data).hexdigest(), data


def same_digest(a: object, b: object) -> bool:
    """Constant-time equality of two MACs or digests, whatever characters they hold: a MAC read
    back from a file or a table is compared as its UTF-8 bytes. hmac.compare_digest refuses a str
    holding a character beyond ASCII (TypeError), so a MAC edited by hand into "é..." made the
    check raise a bare TypeError (a traceback, exit 1) where the edit was to be reported as such
    (IntegrityError, `audit verify`'s exit 4). Anything neither text nor bytes is unequal."""
    if isinstance(a, str):
        a = a.encode("utf-8", "surrogatepass")
    if isinstance(b, str):
        b = b.encode("utf-8", "surrogatepass")
    if not isinstance(a, bytes) or not isinstance(b, bytes):
        return False
    return hmac.compare_digest(a, b)


def read_verified(path: Path, expected: str, changed: str) -> bytes:
    """The file's bytes, after checking that these very bytes have SHA-256 `expected`: a file
    swapped between an earlier check and this read cannot slip through. ModelError(`changed`)
    otherwise."""
    digest, data = read_hashed(path)
    if not same_digest(digest, expected):
        raise ModelError(changed)
    return data


class TooLarge(Exception):
    """Raised by `copy_hashed` when the source holds more than its limit."""


def copy_hashed(src: IO[bytes], dst: IO[bytes], limit: Optional[int] = None) -> tuple[str, int]:
    """Copy `src` to `dst` in chunks, hashing as it goes; (SHA-256, bytes). Raises TooLarge as
    soon as more than `limit` bytes arrive."""
    h = hashlib.sha256()
    n = 0
    for block in iter(lambda: src.read(CHUNK), b""):
        n += len(block)
        if limit is not None and n > limit:
            raise TooLarge(n)
        h.update(block)
        dst.write(block)
    return h.hexdigest(), n
