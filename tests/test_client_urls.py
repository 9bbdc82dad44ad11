"""The client against a hostile configuration or network: plain http only to this machine, no
result from an answer that is not the service's, and errors that name no secret. The name resolver (the network
boundary) is stood in for where a name must resolve; the servers are real sockets on 127.0.0.1."""

from __future__ import annotations

import json
import socket
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Iterator

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
pytest.importorskip("httpx", reason="the client needs httpx")

from safeface.client import Client  # noqa: E402
from safeface.errors import BackendError, ConfigError, SafeFaceError  # noqa: E402

KEY = "sfk_0123456789ab_" + "S" * 43


class _Spy(BaseHTTPRequestHandler):
    seen: list[dict[str, str]] = []
    body = b"{}"

    def _reply(self) -> None:
        n = int(self.headers.get("content-length") or 0)
        if n:
            self.rfile.read(n)
        type(self).seen.append(dict(self.headers))
        self.send_response(200)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(type(self).body)))
        self.end_headers()
        self.wfile.write(type(self).body)

    do_GET = do_POST = _reply

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture()
def spy() -> Iterator[tuple[int, type[_Spy]]]:
    handler = type("Spy", (_Spy,), {"seen": [], "body": b"{}"})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    t = threading.Thread(target=server.serve_forever, daemon=True)
    t.start()
    try:
        yield server.server_address[1], handler
    finally:
        server.shutdown()
        server.server_close()


@pytest.mark.parametrize("host", ["127.0.0.1%25.evil.example", "127.0.0.1 .evil.example"])
def test_a_dns_name_that_starts_like_a_loopback_address_gets_no_plain_http(
        host: str, spy: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    """A config edited by an attacker points the client at http://127.0.0.1%25.evil.example (or
    "127.0.0.1 .evil.example"): a DNS name under the attacker's domain, which the loopback check
    reads as 127.0.0.1 (it drops a "zone index" after % from any host, and inet_aton stops at a
    space). The name resolves to the attacker's machine (here a spy on 127.0.0.1, the resolver
    stood in for). The client must refuse plain http before the key and photo go out in clear."""
    port, handler = spy
    real = socket.getaddrinfo

    def attackers_dns(name: Any, *a: Any, **k: Any) -> Any:
        if isinstance(name, (str, bytes)) and (name.decode() if isinstance(name, bytes) else name).endswith(
                ".evil.example"):
            return real("127.0.0.1", *a, **k)  # the attacker's host
        return real(name, *a, **k)

    monkeypatch.setattr(socket, "getaddrinfo", attackers_dns)
    try:
        c = Client(f"http://{host}:{port}", KEY, timeout=5)
    except ConfigError:
        return
    try:
        c.audit_verify()
    except SafeFaceError:
        pass
    finally:
        c.close()
    sent = [h.get("X-API-Key") or h.get("x-api-key") for h in handler.seen]
    pytest.fail(f"plain http to the DNS name {host!r} was allowed; the attacker's host received keys {sent!r}")


def test_a_password_in_the_service_url_is_not_repeated_in_errors_or_repr() -> None:
    """The app's URL carries a proxy's credentials (https://ops:hunter2@host). A BackendError
    (logged by the app) and repr(client) must not show the password."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    c = Client(f"http://ops:hunter2@127.0.0.1:{port}", KEY, timeout=2)
    try:
        with pytest.raises(BackendError) as got:
            c.audit_verify()
        shown = str(got.value) + " " + repr(c)
    finally:
        c.close()
    assert "hunter2" not in shown, shown


@pytest.mark.parametrize("call", ["liveness_challenge", "purge"])
def test_an_empty_object_from_something_else_is_no_result(call: str, spy: Any) -> None:
    """Something other than the service (a misrouted proxy) answers 200 `{}`. A liveness challenge
    without a challenge, or a purge "that removed nothing" with no count, is a result built from a
    non-service answer: BackendError, as verify/identify/enroll do."""
    port, _ = spy
    with Client(f"http://127.0.0.1:{port}", KEY, timeout=5) as c:
        try:
            out = getattr(c, call)()
        except BackendError:
            return
    pytest.fail(f"{call} built a result from a 200 '{{}}': {out!r}")


@pytest.mark.parametrize("host", ["[::ffff:192.0.2.1]", "[::]", "0.0.0.0", "localhost.evil.example",
                                  "127.0.0.1.evil.example", "127.0.0.1@192.0.2.1", "[::1]@192.0.2.1",
                                  "[64:ff9b::7f00:1]", "[::127.0.0.1]"])
def test_other_machines_in_loopback_clothing_get_no_plain_http(host: str) -> None:
    """Addresses and names that look local but are not this machine's loopback (an IPv4-mapped
    IPv6 of another host, the unspecified address, a name under another domain, userinfo before
    another host, a NAT64 or IPv4-compatible form): plain http is refused at construction."""
    with pytest.raises(ConfigError):
        Client(f"http://{host}:8080", KEY, timeout=1)
