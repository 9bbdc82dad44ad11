"""Attacks on `safeface.Client`, the safe namespace's HTTP client ("the same calls and errors as
SafeFace"): a service that cannot be reached, something other than the service answering
(a captive portal, a proxy's error page, a hostile server), and a face sent over plain HTTP to
another machine. Only the network boundary is stood in for, by a real local HTTP server."""

from __future__ import annotations

import socket
import sys
import threading
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path
from typing import Any, Iterator

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
from policy_support import images  # noqa: E402

pytest.importorskip("httpx")

from safeface import Client, SafeFaceError  # noqa: E402


def _free_port() -> int:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = int(s.getsockname()[1])
    s.close()
    return port


class _NotTheService(BaseHTTPRequestHandler):
    """Answers 200 to everything, with whatever body the test sets."""

    body = b"<html>Please log in to the hotel Wi-Fi</html>"
    ctype = "text/html"
    received = 0

    def _answer(self) -> None:
        n = int(self.headers.get("content-length") or 0)
        type(self).received += len(self.rfile.read(n)) if n else 0
        self.send_response(200)
        self.send_header("content-type", self.ctype)
        self.send_header("content-length", str(len(self.body)))
        self.end_headers()
        self.wfile.write(self.body)

    do_GET = do_POST = _answer

    def log_message(self, *a: Any) -> None:
        pass


@pytest.fixture()
def not_the_service() -> Iterator[tuple[str, type[_NotTheService]]]:
    handler = type("Handler", (_NotTheService,), {})
    srv = HTTPServer(("127.0.0.1", 0), handler)
    t = threading.Thread(target=srv.serve_forever, daemon=True)
    t.start()
    yield f"http://127.0.0.1:{srv.server_address[1]}", handler  # type: ignore[misc]
    srv.shutdown()
    srv.server_close()


def test_a_service_that_cannot_be_reached_is_a_safeface_error() -> None:
    """The app's client points at a service that is down (connection refused). The call must
    raise a SafeFaceError the app already handles (as SafeFace's calls do), not an httpx
    exception the README's error table never names."""
    with Client(f"http://127.0.0.1:{_free_port()}", "sfk_x", timeout=5) as c:
        with pytest.raises(SafeFaceError):
            c.verify((images() / "obama.jpg").read_bytes(), "alice", "demo", "tok")


@pytest.mark.parametrize("body,ctype", [
    (b"<html>Please log in to the hotel Wi-Fi</html>", "text/html"),
    (b"{}", "application/json"),
    (b'{"match": "yes", "score": "high", "threshold": "x", "subject": 5}', "application/json"),
    (b"[1, 2, 3]", "application/json"),
])
def test_an_answer_that_is_not_the_services_is_a_safeface_error(not_the_service: Any, body: bytes,
                                                                 ctype: str) -> None:
    """Something other than the service answers 200 (a captive portal's page, an empty or
    mistyped JSON object from a hostile or misconfigured server). verify, identify and enroll
    must raise a SafeFaceError, never a bare KeyError, TypeError or JSONDecodeError, and never
    hand back a result built from garbage (a 'match' that is the string "yes")."""
    url, handler = not_the_service
    handler.body, handler.ctype = body, ctype
    img = (images() / "obama.jpg").read_bytes()
    with Client(url, "sfk_x", timeout=5) as c:
        for call in (lambda: c.verify(img, "alice", "demo", "tok"), lambda: c.identify(img, "demo", "tok"),
                     lambda: c.enroll(img, "alice", "demo", "tok")):
            try:
                out = call()
            except SafeFaceError:
                continue
            pytest.fail(f"a non-service answer {body[:30]!r} became a result: {out!r}")


def test_a_face_is_not_sent_over_plain_http_to_another_machine() -> None:
    """`safeface serve` refuses to listen beyond loopback without TLS, so that "faces, keys and
    consent tokens never cross a network in the clear by default" (README). The app (or a
    config file an attacker edited from https to http) points the client at another machine
    over plain HTTP. The client must refuse before sending the photo, the consent token and
    the API key in the clear (an explicit opt-in may allow it); here the address is TEST-NET-1,
    which no packet reaches."""
    from safeface import ConfigError, InvalidArgument

    img = (images() / "obama.jpg").read_bytes()
    with pytest.raises((ConfigError, InvalidArgument)):
        with Client("http://192.0.2.1:8080", "sfk_secret", timeout=1) as c:
            c.verify(img, "alice", "demo", "tok")
