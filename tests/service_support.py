"""A real `safeface serve` on 127.0.0.1 (a free port) for the service tests."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Optional, Sequence

import pytest

from child_process import child_env
from face_fixtures import jpeg_640  # noqa: F401 (re-exported for the service tests)
from policy_support import PASSPHRASE

httpx = pytest.importorskip("httpx", reason="the service tests need httpx: pip install '.[test]'")
pytest.importorskip("fastapi", reason="the service tests need fastapi: pip install '.[test]'")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Server:
    """`safeface serve WS` in a child process; `url`, `kill9()`, `stop()`."""

    def __init__(self, workspace: Path, log: Path, args: Sequence[str] = (), port: Optional[int] = None,
                 launcher: Sequence[str] = ("-m", "safeface.cli")) -> None:
        """`launcher`: what Python runs with the command line after it (a `-c` script that sets
        a hook at a boundary, then calls safeface.cli.main)."""
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = log
        cmd = [sys.executable, *launcher, "serve", str(workspace), "--port", str(self.port), *args]
        self._log = open(log, "ab")
        self.proc = subprocess.Popen(cmd, env=child_env(SAFEFACE_PASSPHRASE=PASSPHRASE), cwd=str(log.parent), stdout=self._log,
                                     stderr=subprocess.STDOUT, start_new_session=True)

    def wait_ready(self, timeout: float = 240.0) -> "Server":
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"the server exited ({self.proc.returncode}): {self.log()}")
            try:
                if httpx.get(self.url + "/v1/ready", timeout=2).status_code == 200:
                    return self
            except httpx.HTTPError:
                pass
            time.sleep(0.3)
        self.stop()
        raise RuntimeError(f"the server was not ready in {timeout:.0f}s: {self.log()}")

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")[-3000:]

    def kill9(self) -> None:
        os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait(timeout=30)
        self._log.close()

    def stop(self) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(timeout=20)
        self._log.close()


def key_header(key: str) -> dict[str, str]:
    return {"X-API-Key": key}


def post_image(url: str, path: str, key: str, image: bytes, **fields: Any) -> Any:
    return httpx.post(url + path, headers=key_header(key), files={"image": ("face.jpg", image, "image/jpeg")},
                      data={k: str(v) for k, v in fields.items()}, timeout=120)


def in_process_app(workspace: Path, tmp_path: Path, **config: Any) -> Any:
    """The service's ASGI app in this process (one worker thread, a queue of 2, other settings
    from `config`), for tests that drive it call by call: a held-back body, a spy on the
    process's temporary files."""
    from safeface.service.app import create_app
    from safeface.service.runtime import ServiceConfig

    pf = tmp_path / "pass"
    pf.write_text(PASSPHRASE)
    pf.chmod(0o600)  # passphrase files must be private
    return create_app(ServiceConfig(workspace=workspace, passphrase_file=pf, **{"threads": 1, "queue": 2, **config}))


def csrf_of(page: str) -> str:
    """The CSRF token of a console page's form."""
    return page.split("name='csrf' value='")[1].split("'")[0]


def console_login(client: Any, key: str) -> Any:
    """Log in to the console of an in-process app (a TestClient) with `key`; the response."""
    return client.post("/login", data={"csrf": csrf_of(client.get("/login").text), "api_key": key},
                       follow_redirects=False)


def console_report(client: Any) -> Any:
    """Generate the compliance report from the console's report page (its form, a POST); the
    response, not followed."""
    return client.post("/report", data={"csrf": csrf_of(client.get("/report").text)}, follow_redirects=False)


def self_signed_certificate(folder: Path) -> tuple[Path, Path]:
    """A certificate for 127.0.0.1, its own authority, and its key: cert.pem and key.pem (0600) in `folder`."""
    import datetime as dt
    import ipaddress

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = dt.datetime.now(dt.timezone.utc)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now - dt.timedelta(minutes=5))
            .not_valid_after(now + dt.timedelta(days=1))
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), False)
            .sign(key, hashes.SHA256()))
    c, k = folder / "cert.pem", folder / "key.pem"
    c.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    k.touch(mode=0o600)  # `serve` refuses a key its group or others may read
    k.chmod(0o600)
    k.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                    serialization.NoEncryption()))
    return c, k


def keyed_client(tmp_path: Path, *roles: str, **key: Any) -> tuple[Any, Any, list[str]]:
    """An in-process app (a TestClient on https://testserver, server errors answered as 500s) on
    a new workspace, with one API key per role in `roles` (issued with `key`'s settings):
    (client, workspace, keys)."""
    from fastapi.testclient import TestClient

    from policy_support import make_workspace, open_sf

    ws = make_workspace(tmp_path / "ws")
    with open_sf(ws) as sf:
        keys = [sf.issue_api_key(role, label=role, **key)[1] for role in roles]
    client = TestClient(in_process_app(ws.root, tmp_path), base_url="https://testserver",
                        raise_server_exceptions=False)
    return client, ws, keys


def edited_audit_entry(tmp_path: Path, role: str) -> tuple[Any, str, str]:
    """A new workspace with an API key for `role`, then its audit entry 2 edited by hand (no key
    needed): (workspace, key, the cause `audit_verify` gives, which callers must not be shown)."""
    import sqlite3

    from policy_support import make_workspace, open_sf

    from safeface.errors import IntegrityError

    ws = make_workspace(tmp_path / "ws")
    with open_sf(ws) as sf:
        _, key = sf.issue_api_key(role, label=role)
    with sqlite3.connect(ws.audit) as db:
        db.execute("UPDATE entries SET note = 'edited' WHERE seq = 2")
    db.close()
    with open_sf(ws) as sf, pytest.raises(IntegrityError) as failed:
        sf.audit_verify()
    return ws, key, str(failed.value)
