"""`safeface serve --tls-cert/--tls-key`: the TLS files are checked (a regular file, bounded,
UTF-8) and then served as the bytes that were checked. The TLS library opened them again by
name as the server started, so a file swapped in between was used unchecked: a FIFO hung the
start for ever, another certificate was served. The swap is made by a hook on the reader,
right after the check returns."""

from __future__ import annotations

import os
import ssl
import stat
import sys
from pathlib import Path
from typing import Any

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
from policy_support import make_workspace  # noqa: E402
from service_support import Server, httpx, self_signed_certificate  # noqa: E402

# Runs `safeface ...` with the TLS reader wrapped: once the certificate is read and checked,
# the file at its path is replaced (by `other`, or by a FIFO when `other` is empty).
_SWAP_AFTER_CHECK = r"""
import os, sys
import safeface.service.tls as tls
checked, other = {cert!r}, {other!r}
real = tls.read_text
def read_then_swap(path, label, limit):
    text = real(path, label, limit)
    if str(path) == checked:
        os.unlink(checked)
        os.rename(other, checked) if other else os.mkfifo(checked)
    return text
tls.read_text = read_then_swap
from safeface.cli import main
sys.exit(main(sys.argv[1:]))
"""


@pytest.mark.parametrize("swap", ["another certificate", "a FIFO"])
def test_a_tls_file_swapped_after_its_check_is_not_what_the_server_uses(tmp_path: Path, swap: str) -> None:
    """The certificate is replaced right after `serve` checked it: by another certificate (with
    two workers, each building its own TLS context) or by a FIFO. The server must come up
    serving the certificate that was checked."""
    paths = make_workspace(tmp_path / "ws")
    (tmp_path / "checked").mkdir()
    (tmp_path / "other").mkdir()
    cert, key = self_signed_certificate(tmp_path / "checked")
    other = self_signed_certificate(tmp_path / "other")[0] if swap == "another certificate" else ""
    checked_pem = cert.read_bytes()
    script = _SWAP_AFTER_CHECK.format(cert=str(cert), other=str(other))
    workers = ["--workers", "2"] if swap == "another certificate" else []
    server = Server(paths.root, tmp_path / "server.log", ["--tls-cert", str(cert), "--tls-key", str(key), *workers],
                    launcher=("-c", script))
    try:
        server.url = server.url.replace("http://", "https://")
        verify = ssl.create_default_context(cadata=checked_pem.decode())
        ready = _wait_https(server, verify)
        assert ready, server.log()
        swapped = os.stat(cert).st_mode
        assert stat.S_ISFIFO(swapped) if swap == "a FIFO" else cert.read_bytes() != checked_pem
        served = ssl.get_server_certificate(("127.0.0.1", server.port), timeout=10)
        assert ssl.PEM_cert_to_DER_cert(served) == ssl.PEM_cert_to_DER_cert(checked_pem.decode())
    finally:
        server.stop()


def _wait_https(server: Server, verify: ssl.SSLContext, timeout: float = 90.0) -> bool:
    """Whether the server answered /v1/ready over TLS, trusting only the checked certificate,
    within `timeout` seconds (False once it exits or the time is up)."""
    import time

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if server.proc.poll() is not None:
            return False
        try:
            if httpx.get(server.url + "/v1/ready", verify=verify, timeout=2).status_code == 200:
                return True
        except httpx.HTTPError:
            pass
        time.sleep(0.3)
    return False


def test_a_key_that_is_not_the_certificates_is_refused_naming_the_files(tmp_path: Path, capsys: Any) -> None:
    """A certificate with another certificate's key (or a text file that is no PEM) ended
    `serve` in a bare ssl.SSLError as the server started: the pair is loaded once when read, and
    refused (exit 1) naming both files, before anything is served; the key is never shown."""
    from safeface.cli import main

    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    cert = self_signed_certificate(tmp_path / "a")[0]
    key = self_signed_certificate(tmp_path / "b")[1]
    notes = tmp_path / "notes.txt"
    notes.write_text("not a certificate\n")
    for c, k in ((cert, key), (notes, key)):
        rc = main(["serve", str(tmp_path / "no-workspace"), "--tls-cert", str(c), "--tls-key", str(k), "--port", "1"])
        err = capsys.readouterr().err
        assert rc == 1 and str(c) in err and str(k) in err and "Traceback" not in err, (rc, err)
        assert "PRIVATE KEY" not in err and key.read_text().splitlines()[1] not in err


def test_an_encrypted_key_is_refused_not_asked_for_on_the_terminal(tmp_path: Path) -> None:
    """A key encrypted with a passphrase: OpenSSL asked for it on the terminal, so `serve` run
    from a shell waited there (and each worker would ask again), and without a terminal it
    ended in a bare OSError. It is refused (exit 1) saying the key is encrypted; nothing is
    asked, and the key is never shown. Run under a pseudo-terminal, as from a shell."""
    import pty
    import select
    import signal
    import time

    from cryptography.hazmat.primitives import serialization

    cert, plain = self_signed_certificate(tmp_path)
    secret = serialization.load_pem_private_key(plain.read_bytes(), None)
    key = tmp_path / "encrypted.pem"
    key.write_bytes(secret.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                         serialization.BestAvailableEncryption(b"passphrase")))
    pid, fd = pty.fork()
    if pid == 0:  # the child: `serve` with a terminal of its own
        from safeface.cli import main

        sys.stdout = sys.stderr = open(1, "w", closefd=False)  # the terminal, not pytest's capture
        try:
            os._exit(main(["serve", str(tmp_path / "no-workspace"), "--tls-cert", str(cert), "--tls-key", str(key),
                           "--port", "1"]))
        except BaseException as exc:  # noqa: BLE001  (what escaped main, for the parent to read)
            os.write(2, f"escaped: {type(exc).__name__}: {exc}\n".encode())
            os._exit(3)
    out, deadline, status = b"", time.monotonic() + 15, None
    try:
        while time.monotonic() < deadline:
            if select.select([fd], [], [], 0.2)[0]:
                try:
                    chunk = os.read(fd, 4096)
                except OSError:
                    chunk = b""
                out += chunk
            done, status = os.waitpid(pid, os.WNOHANG)
            if done:
                break
            status = None
    finally:
        if status is None:
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
        os.close(fd)
    text = out.decode(errors="replace")
    assert status is not None, f"serve waited on the terminal: {text!r}"
    assert os.waitstatus_to_exitcode(status) == 1 and "encrypted" in text and str(key) in text, text
    assert "pass phrase" not in text.lower() and "PRIVATE KEY" not in text
