"""The service's TLS certificate and key, served as the bytes `safeface serve` checked.

The files are judged (regular file, bounded size, UTF-8) and read once; the TLS context is made
from those bytes, never from the names: a file swapped between the check and the TLS library's
own open by name (a FIFO that hung the start, or another certificate) was used unchecked. Each
worker process builds its context from the same bytes (`CheckedTls` crosses to a worker as data)."""

from __future__ import annotations

import contextlib
import os
import ssl
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator, Optional

from ..errors import ConfigError
from ..regularfile import read_text

MAX_TLS_FILE_BYTES = 1024 * 1024  # a PEM certificate chain or key: a few kilobytes


@dataclass(frozen=True)
class CheckedTls:
    """The PEM text of a certificate chain and its key, as read and checked. Never shown: the
    key must stay out of logs and tracebacks."""

    cert: bytes = field(repr=False)
    key: bytes = field(repr=False)

    @classmethod
    def read(cls, cert: Path, key: Path) -> "CheckedTls":
        """Both files read once, each a regular file of at most MAX_TLS_FILE_BYTES of UTF-8
        (ConfigError naming the path otherwise), then loaded once here, so that a certificate or
        key the TLS library refuses is a ConfigError naming the files, not a bare ssl.SSLError."""
        checked = cls(*(read_text(Path(p), f"the TLS file {p}", MAX_TLS_FILE_BYTES).encode("utf-8") + b"\n"
                        for p in (cert, key)))
        try:
            checked.context()
        except _Encrypted:
            raise ConfigError(f"the TLS key {key} is encrypted with a passphrase, which `safeface serve` does not "
                              "ask for: give the key unencrypted (openssl pkey -in KEY -out KEY.plain), in a file "
                              "only the service's account can read.") from None
        except ssl.SSLError as exc:
            raise ConfigError(f"the TLS certificate {cert} and key {key} could not be loaded "
                              f"({exc.reason or exc.strerror or 'not a PEM certificate chain and its key'}): "
                              "give a PEM certificate chain and the private key that matches it.") from None
        return checked

    def context(self, alpn: Optional[list[str]] = None) -> ssl.SSLContext:
        """A server TLS context holding exactly these bytes."""
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        with _in_memory(self.cert, "cert") as cert, _in_memory(self.key, "key") as key:
            # Without a passphrase callback OpenSSL asks for an encrypted key's on the terminal:
            # `serve` from a shell waited there (each worker again), and without one, OSError.
            ctx.load_cert_chain(cert, key, password=_no_passphrase)
        if alpn:
            ctx.set_alpn_protocols(alpn)
        return ctx

    def __call__(self, config: Any, default: Callable[[], ssl.SSLContext]) -> ssl.SSLContext:
        """uvicorn's `ssl_context_factory`: the context from the checked bytes (`default` would
        open the files by name again)."""
        return self.context(getattr(getattr(config, "http_protocol_class", None), "alpn_protocols", None))


class _Encrypted(Exception):
    """The key asked for a passphrase."""


def _no_passphrase() -> bytes:
    raise _Encrypted()


@contextlib.contextmanager
def _in_memory(data: bytes, name: str) -> Iterator[str]:
    """A path the TLS library can open that reads `data` and nothing else: an anonymous memory
    file no other name reaches (Linux), else a file in a private folder removed at once."""
    if hasattr(os, "memfd_create") and os.path.isdir("/proc/self/fd"):
        fd = os.memfd_create(f"safeface-tls-{name}", getattr(os, "MFD_CLOEXEC", 0))
        try:
            _write_rest(fd, data)
            yield f"/proc/self/fd/{fd}"
        finally:
            os.close(fd)
        return
    with tempfile.TemporaryDirectory(prefix="safeface-tls-") as folder:  # 0700
        path = Path(folder) / name
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            _write_rest(fd, data)
        finally:
            os.close(fd)
        yield str(path)


def _write_rest(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]
