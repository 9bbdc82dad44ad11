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
MAX_PASSPHRASE_BYTES = 1024  # the longest passphrase OpenSSL's load_cert_chain takes


@dataclass(frozen=True)
class CheckedTls:
    """The PEM text of a certificate chain and its key, as read and checked, and the key's
    passphrase when one was given. Never shown: the key and the passphrase must stay out of logs
    and tracebacks."""

    cert: bytes = field(repr=False)
    key: bytes = field(repr=False)
    passphrase: Optional[bytes] = field(default=None, repr=False)

    @classmethod
    def read(cls, cert: Path, key: Path, passphrase_file: Optional[Path] = None) -> "CheckedTls":
        """Both files read once, each a regular file of at most MAX_TLS_FILE_BYTES of UTF-8
        (ConfigError naming the path otherwise), the key and its passphrase file private to this
        account (as ssh asks of a private key), then loaded once here, so that a certificate or
        key the TLS library refuses is a ConfigError naming the files, not a bare ssl.SSLError."""
        # A certificate file may hold the key too (one PEM for both): then it is a secret as well.
        pem = read_text(Path(cert), f"the TLS file {cert}", MAX_TLS_FILE_BYTES, private=_holds_a_key)
        secret = read_text(Path(key), f"the TLS file {key}", MAX_TLS_FILE_BYTES, private=True)
        passphrase = None if passphrase_file is None else _read_passphrase(Path(passphrase_file))
        checked = cls(pem.encode("utf-8") + b"\n", secret.encode("utf-8") + b"\n", passphrase)
        try:
            checked.context()
        except _Encrypted:
            raise ConfigError(f"the TLS key {key} is encrypted with a passphrase: give it with "
                              "--tls-key-passphrase-file FILE (a file only the service's account can read), or "
                              "give the key unencrypted (openssl pkey -in KEY -out KEY.plain).") from None
        except ssl.SSLError as exc:
            if passphrase is not None and _encrypted(checked):
                # OpenSSL says only "PEM lib"; the passphrase itself is never shown.
                raise ConfigError(f"the TLS key {key} did not decrypt with the passphrase in {passphrase_file}: "
                                  "give the key's own passphrase.") from None
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
            ctx.load_cert_chain(cert, key, password=_no_passphrase if self.passphrase is None else self.passphrase)
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


def _holds_a_key(pem: bytes) -> bool:
    """Whether PEM text holds a private key ("PRIVATE KEY", "RSA PRIVATE KEY", "EC PRIVATE KEY", ...)."""
    return b"PRIVATE KEY-----" in pem


def _encrypted(checked: CheckedTls) -> bool:
    """Whether the key asks for a passphrase (so a failure with one given was that passphrase)."""
    try:
        CheckedTls(checked.cert, checked.key).context()
    except _Encrypted:
        return True
    except ssl.SSLError:
        return False
    return False


def _read_passphrase(path: Path) -> bytes:
    """The TLS key's passphrase from `path`: a private regular file of one line of UTF-8, stripped
    as the keyring's passphrase file is (an editor's final newline is no part of it). OpenSSL
    takes at most MAX_PASSPHRASE_BYTES (a bare ValueError past them)."""
    label = f"the TLS key's passphrase file {path}"
    text = read_text(path, label, MAX_PASSPHRASE_BYTES + 2, private=True)
    passphrase = text.encode("utf-8")
    if not passphrase:
        raise ConfigError(f"{label} is empty.")
    if len(passphrase) > MAX_PASSPHRASE_BYTES:
        raise ConfigError(f"{label}: the passphrase is longer than the {MAX_PASSPHRASE_BYTES} bytes OpenSSL takes.")
    return passphrase


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
