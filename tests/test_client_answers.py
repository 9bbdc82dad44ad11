"""safeface.client against small stand-in servers on 127.0.0.1 (real sockets, real TLS): the
errors it raises for the service's answers, and where it sends the API key."""

from __future__ import annotations

import json
import socket
import ssl
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Iterator

import pytest

pytest.importorskip("httpx", reason="the client needs httpx")

from safeface.client import Client  # noqa: E402
from service_support import self_signed_certificate  # noqa: E402
from safeface.errors import (AuthenticationError, IndexUnavailable, InvalidArgument, PolicyViolation,  # noqa: E402
                             SafeFaceError, ServiceBusy)

KEY = "sfk_0123456789ab_" + "S" * 43


class _Answers(BaseHTTPRequestHandler):
    answer: tuple[int, dict[str, str], bytes] = (200, {}, b"{}")
    seen: list[dict[str, Any]] = []

    def _reply(self) -> None:
        n = int(self.headers.get("content-length") or 0)
        body = self.rfile.read(n) if n else b""
        type(self).seen.append({"path": self.path, "headers": dict(self.headers), "body": body})
        status, headers, out = type(self).answer
        self.send_response(status)
        for k, v in {"content-type": "application/json", **headers}.items():
            self.send_header(k, v)
        self.send_header("content-length", str(len(out)))
        self.end_headers()
        self.wfile.write(out)

    do_GET = do_POST = _reply

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture()
def stand_in() -> Iterator[tuple[str, type[_Answers]]]:
    handler = type("Handler", (_Answers,), {"seen": []})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    t = threading.Thread(target=server.serve_forever, daemon=True)
    t.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", handler
    finally:
        server.shutdown()
        server.server_close()


def _answer(handler: type[_Answers], status: int, body: dict[str, Any], **headers: str) -> None:
    handler.answer = (status, headers, json.dumps(body).encode())


def test_a_full_queue_is_service_busy_with_the_services_retry_after(stand_in: Any) -> None:
    """A 503 from a full work queue raises ServiceBusy carrying the Retry-After the service sent."""
    url, h = stand_in
    _answer(h, 503, {"error": "ServiceBusy", "message": "the service is at capacity"}, **{"Retry-After": "7"})
    with Client(url, KEY) as c, pytest.raises(ServiceBusy) as busy:
        c.purge()
    assert not isinstance(busy.value, IndexUnavailable) and busy.value.retry_after == 7.0


def test_an_index_that_cannot_be_asked_is_index_unavailable_with_retry_after(stand_in: Any) -> None:
    """A 503 for a vector index that cannot be asked raises IndexUnavailable with retry_after, as
    in-process."""
    url, h = stand_in
    _answer(h, 503, {"error": "IndexUnavailable", "message": "Milvus did not answer"}, **{"Retry-After": "30"})
    with Client(url, KEY) as c, pytest.raises(IndexUnavailable) as down:
        c.erase("alice")
    assert down.value.retry_after == 30.0


def test_a_body_over_the_services_limit_is_invalid_argument(stand_in: Any) -> None:
    """The service's 413 (PayloadTooLarge) reaches the caller as InvalidArgument, never a bare
    SafeFaceError."""
    url, h = stand_in
    _answer(h, 413, {"error": "PayloadTooLarge", "message": "the request body is over 400000 bytes."})
    with Client(url, KEY) as c, pytest.raises(InvalidArgument, match="over 400000"):
        c.verify(b"\xff\xd8" + b"\0" * 100, "alice", "demo", "token")


def test_a_refusal_keeps_its_rule_and_a_401_without_json_is_an_authentication_error(stand_in: Any) -> None:
    """A 403 names its rule in PolicyViolation; a 401 from a proxy (no JSON) is still
    AuthenticationError."""
    url, h = stand_in
    _answer(h, 403, {"error": "PolicyViolation", "rule": "CN-16", "message": "the role kiosk may not erase"})
    with Client(url, KEY) as c:
        with pytest.raises(PolicyViolation) as refused:
            c.erase("alice")
        assert refused.value.rule == "CN-16"
        h.answer = (401, {"content-type": "text/plain"}, b"unauthorized")
        with pytest.raises(AuthenticationError):
            c.purge()


def test_the_key_travels_in_its_header_only_and_unset_fields_are_not_sent(stand_in: Any) -> None:
    """The API key goes in the X-API-Key header, never the body; fields the caller left out are not
    sent."""
    url, h = stand_in
    _answer(h, 200, {"receipt_id": "r" * 16, "time": "2026-01-01T00:00:00+00:00", "reason": "erase", "subjects": [],
                     "token_id": None, "templates_removed": 0, "rows": [], "deployment": "d", "kid": "k",
                     "signature": "s"})
    with Client(url, KEY) as c:
        assert c.erase(pseudonym="p" * 64).templates_removed == 0
    (req,) = h.seen
    assert req["path"] == "/v1/erase" and req["headers"].get("X-API-Key") == KEY
    assert KEY.encode() not in req["body"] and json.loads(req["body"]) == {"pseudonym": "p" * 64}


def test_analyze_with_one_attribute_name_as_a_string_sends_that_name(stand_in: Any) -> None:
    """analyze(image, "race") asks for the attribute "race" (so the guard refuses it by name), not
    its letters."""
    url, h = stand_in
    _answer(h, 200, {"faces": 1})
    with Client(url, KEY) as c:
        c.analyze(b"image bytes", "race")
    body = h.seen[0]["body"]
    assert b'name="attributes"\r\n\r\nrace\r\n' in body, body


def test_a_redirect_is_not_followed_and_the_key_goes_nowhere_else(stand_in: Any) -> None:
    """A service that answers with a redirect to another host gets an error; the key is never sent
    to that host."""
    url, h = stand_in
    other = ThreadingHTTPServer(("127.0.0.1", 0), type("Elsewhere", (_Answers,), {"seen": []}))
    threading.Thread(target=other.serve_forever, daemon=True).start()
    try:
        elsewhere = f"http://127.0.0.1:{other.server_address[1]}/v1/purge"
        h.answer = (307, {"Location": elsewhere}, b"")
        with Client(url, KEY) as c, pytest.raises(SafeFaceError, match="307"):
            c.purge()
        assert len(h.seen) == 1 and other.RequestHandlerClass.seen == []  # type: ignore[attr-defined]
    finally:
        other.shutdown()
        other.server_close()


# -- TLS: the key is sent only to a server whose certificate verifies --------------------------
def test_the_key_is_never_sent_to_a_server_whose_certificate_does_not_verify(tmp_path: Path) -> None:
    """By default the client verifies the service's TLS certificate: a self-signed server gets no
    request and no key."""
    cert, key = self_signed_certificate(tmp_path)
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(cert, key)
    listener = socket.create_server(("127.0.0.1", 0))
    port = listener.getsockname()[1]
    received: list[bytes] = []

    def serve() -> None:
        for _ in range(2):
            conn, _ = listener.accept()
            try:
                with ctx.wrap_socket(conn, server_side=True) as tls:
                    tls.settimeout(5)
                    data = tls.recv(65536)
                    received.append(data)
                    body = b'{"status": "ok"}'
                    tls.sendall(b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: "
                                + str(len(body)).encode() + b"\r\nconnection: close\r\n\r\n" + body)
            except (ssl.SSLError, OSError):
                pass

    t = threading.Thread(target=serve, daemon=True)
    t.start()
    try:
        with Client(f"https://127.0.0.1:{port}", KEY, timeout=10) as c, pytest.raises(Exception) as failed:
            c.health()
        assert "certificate" in str(failed.value).lower() or "ssl" in type(failed.value).__name__.lower(), failed.value
        assert not any(KEY.encode() in r for r in received)
        with Client(f"https://127.0.0.1:{port}", KEY, timeout=10, verify_tls=str(cert)) as c:
            assert c.health()  # the same server, its certificate given: the call goes through
        assert any(KEY.encode() in r for r in received)
    finally:
        listener.close()
