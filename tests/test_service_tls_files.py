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
def read_then_swap(path, label, limit, **how):
    text = real(path, label, limit, **how)
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
    key.touch(mode=0o600)
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


def _private_file(path: Path, data: bytes, mode: int = 0o600) -> Path:
    path.touch(mode=0o600)
    path.write_bytes(data)
    path.chmod(mode)
    return path


def _encrypted_key(folder: Path, passphrase: bytes) -> tuple[Path, Path]:
    """A certificate and its key encrypted under `passphrase` (0600)."""
    from cryptography.hazmat.primitives import serialization

    cert, plain = self_signed_certificate(folder)
    secret = serialization.load_pem_private_key(plain.read_bytes(), None)
    return cert, _private_file(folder / "encrypted.pem", secret.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
        serialization.BestAvailableEncryption(passphrase)))


def _serve_rc(capsys: Any, tmp_path: Path, *tls: Any) -> tuple[int, str]:
    """`serve` on a folder that is no workspace: the TLS files are judged before the workspace, so
    "is this a safeface workspace" means they were accepted."""
    from safeface.cli import main

    rc = main(["serve", str(tmp_path / "no-workspace"), *[str(a) for a in tls], "--port", "1"])
    return rc, capsys.readouterr().err


@pytest.mark.parametrize("mode", ["644", "640", "604", "620", "602"])
def test_a_key_file_its_group_or_others_may_read_or_write_is_refused(tmp_path: Path, capsys: Any, mode: str) -> None:
    """`serve` took a TLS key any user of the host could read (or replace): like ssh with a
    private key, it refuses one whose group or others have any access, naming the file and the
    `chmod 600` that mends it; the key is never shown. The same key made private is taken."""
    cert, key = self_signed_certificate(tmp_path)
    key.chmod(int(mode, 8))
    rc, err = _serve_rc(capsys, tmp_path, "--tls-cert", cert, "--tls-key", key)
    assert rc == 1 and f"chmod 600 {key}" in err and "Traceback" not in err, (rc, err)
    assert "PRIVATE KEY" not in err and key.read_text().splitlines()[1] not in err
    key.chmod(0o600)
    rc, err = _serve_rc(capsys, tmp_path, "--tls-cert", cert, "--tls-key", key)
    assert rc == 1 and "is this a safeface workspace" in err, (rc, err)


def test_an_encrypted_key_is_served_with_its_passphrase_file(tmp_path: Path, capsys: Any) -> None:
    """`--tls-key-passphrase-file`: an encrypted key is loaded with the passphrase read from a
    private file (its final newline no part of it), held in memory and never shown; without
    it the key is still refused as encrypted."""
    from safeface.service.tls import CheckedTls

    cert, key = _encrypted_key(tmp_path, b"correct horse")
    secret = _private_file(tmp_path / "tls-passphrase", b"correct horse\n")
    checked = CheckedTls.read(cert, key, secret)
    assert checked.passphrase == b"correct horse" and "correct horse" not in repr(checked)
    assert isinstance(checked.context(["http/1.1"]), ssl.SSLContext)
    rc, err = _serve_rc(capsys, tmp_path, "--tls-cert", cert, "--tls-key", key, "--tls-key-passphrase-file", secret)
    assert rc == 1 and "is this a safeface workspace" in err, (rc, err)
    rc, err = _serve_rc(capsys, tmp_path, "--tls-cert", cert, "--tls-key", key)
    assert rc == 1 and "encrypted" in err and "--tls-key-passphrase-file" in err, (rc, err)


def test_a_wrong_or_exposed_passphrase_is_refused_without_showing_it(tmp_path: Path, capsys: Any) -> None:
    """A wrong passphrase is a ConfigError naming the key and the passphrase file, never the
    passphrase (OpenSSL says only "PEM lib"); a passphrase file others may read is refused as
    the key is; an empty one, one longer than OpenSSL takes, and one given without a key too."""
    cert, key = _encrypted_key(tmp_path, b"correct horse")
    wrong = _private_file(tmp_path / "wrong", b"battery staple\n")
    rc, err = _serve_rc(capsys, tmp_path, "--tls-cert", cert, "--tls-key", key, "--tls-key-passphrase-file", wrong)
    assert rc == 1 and str(key) in err and str(wrong) in err and "did not decrypt" in err, (rc, err)
    assert "battery" not in err and "Traceback" not in err
    exposed = _private_file(tmp_path / "exposed", b"correct horse\n", 0o644)
    rc, err = _serve_rc(capsys, tmp_path, "--tls-cert", cert, "--tls-key", key, "--tls-key-passphrase-file", exposed)
    assert rc == 1 and f"chmod 600 {exposed}" in err and "correct" not in err, (rc, err)
    for name, data, says in (("empty", b"\n", "is empty"), ("long", b"x" * 1025, "longer than")):
        rc, err = _serve_rc(capsys, tmp_path, "--tls-cert", cert, "--tls-key", key, "--tls-key-passphrase-file",
                            _private_file(tmp_path / name, data))
        assert rc == 1 and says in err and "Traceback" not in err and "xxxx" not in err, (rc, err)
    rc, err = _serve_rc(capsys, tmp_path, "--tls-key-passphrase-file", wrong)
    assert rc == 1 and "--tls-key-passphrase-file" in err, (rc, err)


def test_a_certificate_file_that_holds_the_key_is_judged_as_the_key(tmp_path: Path, capsys: Any) -> None:
    """One PEM holding the certificate and its key, given as --tls-cert (and --tls-key): only
    the key file's permissions were checked, so a combined file any user could read was served
    from. A certificate file holding a private key must be private too; one without a key needs
    not be."""
    cert, key = self_signed_certificate(tmp_path)
    both = _private_file(tmp_path / "both.pem", cert.read_bytes() + key.read_bytes(), 0o644)
    for given in (["--tls-cert", both, "--tls-key", both], ["--tls-cert", both, "--tls-key", key]):
        rc, err = _serve_rc(capsys, tmp_path, *given)
        assert rc == 1 and f"chmod 600 {both}" in err and "PRIVATE KEY" not in err, (rc, err)
    both.chmod(0o600)
    rc, err = _serve_rc(capsys, tmp_path, "--tls-cert", both, "--tls-key", both)
    assert rc == 1 and "is this a safeface workspace" in err, (rc, err)
    cert.chmod(0o644)  # the certificate alone, readable by all, is taken
    rc, err = _serve_rc(capsys, tmp_path, "--tls-cert", cert, "--tls-key", key)
    assert rc == 1 and "is this a safeface workspace" in err, (rc, err)


_ROOT = pytest.mark.skipif(os.name != "posix" or os.geteuid() != 0, reason="needs root to give files to other accounts")
_NOBODY = 65534


@_ROOT
def test_a_key_or_passphrase_file_another_account_owns_is_refused(tmp_path: Path, capsys: Any) -> None:
    """A key (or passphrase file) of mode 0600 owned by another account passed the mode check,
    though that account may read it and replace it: it must be this account's (or root's)."""
    cert, key = _encrypted_key(tmp_path, b"correct horse")
    secret = _private_file(tmp_path / "tls-passphrase", b"correct horse\n")
    for theirs in (key, secret):
        os.chown(theirs, _NOBODY, _NOBODY)
        rc, err = _serve_rc(capsys, tmp_path, "--tls-cert", cert, "--tls-key", key, "--tls-key-passphrase-file", secret)
        assert rc == 1 and f"uid {_NOBODY}" in err and str(theirs) in err and "correct" not in err, (rc, err)
        os.chown(theirs, 0, 0)
    rc, err = _serve_rc(capsys, tmp_path, "--tls-cert", cert, "--tls-key", key, "--tls-key-passphrase-file", secret)
    assert rc == 1 and "is this a safeface workspace" in err, (rc, err)


@_ROOT
@pytest.mark.parametrize("mode, taken", [(0o640, True), (0o600, True), (0o660, False), (0o644, False)],
                         ids=["0640", "0600", "0660", "0644"])
def test_a_service_account_may_read_a_key_root_lends_its_group(tmp_path: Path, mode: int, taken: bool) -> None:
    """Debian's keys (/etc/ssl/private, ssl-cert-snakeoil.key) are root's, 0640, lent to the
    ssl-cert group the service's account is in: refused as "group may read". A key root owns may
    grant its group reading (as PostgreSQL allows) to an account that is not root; writing, or
    others reading, is refused still, and so is a group-readable key the service's own account owns."""
    from safeface.errors import ConfigError
    from safeface.regularfile import refuse_shared_secret

    key = _private_file(tmp_path / "key.pem", b"secret", mode)
    fd = os.open(key, os.O_RDONLY)
    try:
        os.seteuid(_NOBODY)  # the service's account; fstat judges the descriptor root opened
        try:
            if taken:
                refuse_shared_secret(fd, key, "the key")
            else:
                with pytest.raises(ConfigError, match="chmod 600"):
                    refuse_shared_secret(fd, key, "the key")
        finally:
            os.seteuid(0)
        os.fchown(fd, _NOBODY, -1)  # the service's own key, group-readable: refused
        os.seteuid(_NOBODY)
        try:
            if mode & 0o077:
                with pytest.raises(ConfigError, match="chmod 600"):
                    refuse_shared_secret(fd, key, "the key")
        finally:
            os.seteuid(0)
    finally:
        os.close(fd)
