"""What the service does with request bodies. An uploaded face stays in memory: the SDK never
writes an image to disk, and a web framework's habit of moving a large upload to a temporary
file would put the face there in the clear (unlinked at once, but its blocks stay on the disk).
And memory stays bounded: bodies still arriving are counted too."""

from __future__ import annotations

import asyncio
import base64
import io
import sys
import tempfile
from pathlib import Path
from typing import Any

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
from policy_support import consent, images, make_workspace, open_sf  # noqa: E402


def phone_photo(path: Path) -> bytes:
    """The photo as a phone takes it: 2,600 pixels wide, JPEG quality 97 (well over 1 MiB)."""
    from PIL import Image

    im = Image.open(path).convert("RGB")
    im = im.resize((2600, int(2600 * im.height / im.width)))
    buf = io.BytesIO()
    im.save(buf, "JPEG", quality=97)
    return buf.getvalue()


def test_an_uploaded_photo_over_a_mebibyte_never_reaches_a_temporary_file(tmp_path: Path,
                                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    from service_support import in_process_app

    from fastapi.testclient import TestClient

    ws = make_workspace(tmp_path / "ws")
    with open_sf(ws) as sf:
        _, key = sf.issue_api_key("operator", label="gate")
    photo = phone_photo(images() / "obama.jpg")
    assert 1024 * 1024 < len(photo) < 8 * 1024 * 1024
    opened: list[str] = []
    for name in ("TemporaryFile", "NamedTemporaryFile", "SpooledTemporaryFile"):
        real = getattr(tempfile, name)

        def spy(*a: Any, _real: Any = real, _name: str = name, **k: Any) -> Any:
            opened.append(_name)
            return _real(*a, **k)

        monkeypatch.setattr(tempfile, name, spy)
    with TestClient(in_process_app(ws.root, tmp_path)) as client:
        before = list(opened)
        r = client.post("/v1/enroll", headers={"X-API-Key": key}, files={"image": ("me.jpg", photo, "image/jpeg")},
                        data={"subject": "alice", "purpose": "demo", "consent": consent(ws, "alice")})
        assert r.status_code == 200, r.text
        r = client.post("/v1/verify", headers={"X-API-Key": key}, files={"image": ("me.jpg", photo, "image/jpeg")},
                        data={"subject": "alice", "purpose": "demo", "consent": consent(ws, "alice")})
        assert r.status_code == 200 and r.json()["match"] is True, r.text
        assert opened == before, f"the upload went through a temporary file ({opened[len(before):]})"


def test_bodies_held_back_by_many_clients_are_bounded_and_idle_connections_block_no_one(tmp_path: Path) -> None:
    """Calls are admitted (threads + queue) once their bodies are in. Clients that hold back the
    last bytes of many bodies kept each one in memory, none refused: 40 connections held 320 MB.
    The bytes that bodies hold together in a worker are bounded (full bodies for twice the calls
    that can be admitted, and four more): past that, a body is refused with 503. Connections that
    send nothing hold nothing, so they keep no one else out."""
    from service_support import in_process_app

    ws = make_workspace(tmp_path / "ws")
    with open_sf(ws) as sf:
        _, key = sf.issue_api_key("operator", label="gate", rate=1000)  # the burst is not rate-limited
    limit = 100_000  # 1 thread, a queue of 2: bodies may hold 10 x 100 kB together
    app = in_process_app(ws.root, tmp_path, max_body=limit)
    small = b'{"subject": "alice"}'

    async def request(first: bytes, release: asyncio.Event, events: list[str]) -> int:
        sent: list[dict[str, Any]] = []
        parts = [first]

        async def receive() -> dict[str, Any]:
            if parts:
                events.append("read")
                return {"type": "http.request", "body": parts.pop(), "more_body": True}
            await release.wait()
            return {"type": "http.request", "body": b"", "more_body": False}

        async def send(msg: dict[str, Any]) -> None:
            sent.append(msg)

        scope = {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "POST",
                 "scheme": "http", "path": "/v1/erase", "raw_path": b"/v1/erase", "root_path": "",
                 "query_string": b"", "headers": [(b"host", b"svc"), (b"content-type", b"application/json"),
                                                  (b"x-api-key", key.encode())],
                 "client": ("127.0.0.1", 40000), "server": ("svc", 80)}
        await app(scope, receive, send)
        return int(next(m["status"] for m in sent if m["type"] == "http.response.start"))

    async def main() -> tuple[int, int, list[int]]:
        async with app.router.lifespan_context(app):
            held, go = asyncio.Event(), asyncio.Event()
            go.set()
            idle = [asyncio.create_task(request(b"", held, [])) for _ in range(30)]
            honest = await asyncio.wait_for(request(small, go, []), 60)  # 30 idle connections open
            reads: list[str] = []
            big = [asyncio.create_task(request(b" " * 90_000, held, reads)) for _ in range(11)]
            for _ in range(3000):
                if len(reads) == 11:
                    break
                await asyncio.sleep(0.01)
            late = await asyncio.wait_for(request(b" " * 90_000, go, []), 60)
            held.set()
            return honest, late, list(await asyncio.gather(*big, *idle))

    honest, late, others = asyncio.run(main())
    assert honest == 200, f"thirty connections that sent nothing kept an honest call out ({honest})"
    assert late == 503, "a twelfth body was taken while eleven held 990 kB of a 1 MB bound"
    assert set(others) <= {200, 422, 503}  # released at once, past the admitted calls: 503 from the queue


def test_a_malformed_multipart_body_is_a_422_not_a_server_error(tmp_path: Path) -> None:
    """Too many fields, two files, a part over its limit, no boundary: the caller's mistake, told
    as one (422 InvalidArgument), never an unhandled error with a traceback in the log."""
    from fastapi.testclient import TestClient
    from service_support import in_process_app

    ws = make_workspace(tmp_path / "ws")
    with open_sf(ws) as sf:
        _, key = sf.issue_api_key("operator", label="gate")
    h = {"X-API-Key": key}
    with TestClient(in_process_app(ws.root, tmp_path), raise_server_exceptions=False) as client:
        answers = [
            client.post("/v1/verify", headers=h, files={"image": ("a.jpg", b"1")}, data={f"f{i}": "x" for i in range(17)}),
            client.post("/v1/verify", headers=h, files=[("image", ("a.jpg", b"1")), ("image", ("b.jpg", b"2"))]),
            client.post("/v1/verify", headers=h, files={"image": ("a.jpg", b"1")}, data={"subject": "x" * 1_100_000}),
            client.post("/v1/verify", headers={**h, "content-type": "multipart/form-data"}, content=b"--x\r\n"),
        ]
    assert [r.status_code for r in answers] == [422] * 4, [r.text[:80] for r in answers]
    assert all(r.json()["error"] == "InvalidArgument" for r in answers)


def test_a_body_in_another_charset_a_lone_surrogate_or_many_containers_is_a_422_before_parsing(
        tmp_path: Path, capfd: Any) -> None:
    """A multipart body whose charset is punycode: each field was decoded in it on the event
    loop, in time growing with the square of its size (320 KB held a worker 7 s, no key needed
    at /login), and a field it could not decode was a 500 with a traceback. A JSON "\\ud800" in a
    field: the refusal could not be written to the audit log, and the call was a 500. A JSON
    list of empty objects took 24 times its bytes in memory. Each is now refused before the
    parser runs, as the caller's mistake."""
    from fastapi.testclient import TestClient
    from service_support import in_process_app

    ws = make_workspace(tmp_path / "ws")
    with open_sf(ws) as sf:
        _, key = sf.issue_api_key("operator", label="gate")
    h = {"X-API-Key": key}
    body = b'--x\r\nContent-Disposition: form-data; name="subject"\r\n\r\n\\\r\n--x--\r\n'
    with TestClient(in_process_app(ws.root, tmp_path), raise_server_exceptions=False) as client:
        for charset in ("punycode", "utf-7", '"PUNYCODE"', "no-such-codec"):
            ctype = f"multipart/form-data; boundary=x; charset={charset}"
            r = client.post("/v1/verify", headers={**h, "content-type": ctype}, content=body)
            assert r.status_code == 422 and "UTF-8" in r.json()["message"], (charset, r.text[:120])
            # The console's login reads only what its form sends: anything else is an empty form.
            r = client.post("/login", headers={"content-type": ctype}, content=body, follow_redirects=False)
            assert r.status_code in (303, 422), (charset, r.status_code)
        ok = client.post("/v1/verify", headers={**h, "content-type": "multipart/form-data; boundary=x; charset=UTF-8"},
                         content=body)
        assert ok.status_code == 422 and "image is required" in ok.json()["message"]
        r = client.post("/v1/verify", headers={**h, "content-type": "application/json"},
                        content=b'{"purpose": "de\\ud800mo", "subject": "a", "consent": "x", "image_base64": "'
                        + base64.b64encode((images() / "obama.jpg").read_bytes()) + b'"}')
        assert r.status_code == 422 and "surrogate" in r.json()["message"]
        r = client.post("/v1/erase", headers={**h, "content-type": "application/json"},
                        content=b'{"subject": "a", "x": [' + b"{}," * 200 + b"{}]}")
        assert r.status_code == 422 and "objects and lists" in r.json()["message"]
        # JSON is read as UTF-8 whatever charset a client names: not refused for one.
        r = client.post("/v1/erase", headers={**h, "content-type": "application/json; charset=ISO-8859-1"},
                        content=b'{"subject": "nobody"}')
        assert r.status_code == 200, r.text
    assert "Traceback" not in capfd.readouterr().err


def test_a_storage_failure_tells_the_caller_a_reference_and_the_operator_the_cause(
        tmp_path: Path, caplog: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    """A 500 or 409 from the service's storage carried its message to any key holder: the record
    store's host, user and database, and what was found in it. The caller now gets the kind and a
    reference; the cause is in the operator's log under it."""
    from fastapi.testclient import TestClient
    from service_support import console_login, csrf_of, in_process_app

    from safeface.errors import BackendError
    from safeface.sdk import SafeFace

    ws = make_workspace(tmp_path / "ws")
    with open_sf(ws) as sf:
        _, key = sf.issue_api_key("operator", label="gate")

    def down(*args: Any, **kw: Any) -> Any:
        raise BackendError("the PostgreSQL record store postgresql://svc@db.internal:5432/faces failed")

    with TestClient(in_process_app(ws.root, tmp_path), base_url="https://testserver",
                    raise_server_exceptions=False) as client:
        monkeypatch.setattr(SafeFace, "erase", down)  # the store failing mid-call
        monkeypatch.setattr(SafeFace, "end_session", down)
        r = client.post("/v1/erase", headers={"X-API-Key": key}, json={"subject": "alice"})
        # The console's logout page names the failure to the browser by reference only (and, as
        # nothing ended, the browser keeps its cookie to log out again).
        assert console_login(client, key).status_code == 303
        out = client.post("/logout", data={"csrf": csrf_of(client.get("/audit").text)}, follow_redirects=False)
        assert out.status_code == 503 and "db.internal" not in out.text and "reference" in out.text
    body = r.json()
    assert r.status_code == 500 and body["error"] == "BackendError"
    assert "db.internal" not in r.text and "svc" not in r.text and body["reference"] in body["message"]
    assert any(body["reference"] in m and "db.internal" in m for m in caplog.messages)


def test_the_bytes_of_finished_requests_are_given_back() -> None:
    """Each worker counts the bytes its bodies hold; a finished request's must be given back,
    or ordinary traffic alone would fill the count and every later request get 503."""
    from safeface.service.app import Edge
    from safeface.service.metrics import Metrics

    async def app(scope: Any, receive: Any, send: Any) -> None:
        while (await receive()).get("more_body"):
            pass
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"{}"})

    def one(edge: Edge) -> int:
        sent: list[dict[str, Any]] = []
        parts = [b"x" * 100]

        async def receive() -> dict[str, Any]:
            return {"type": "http.request", "body": parts.pop() if parts else b"", "more_body": bool(parts)}

        async def send(msg: dict[str, Any]) -> None:
            sent.append(msg)

        asyncio.run(edge({"type": "http", "method": "POST", "path": "/v1/x", "headers": []}, receive, send))
        return int(next(m["status"] for m in sent if m["type"] == "http.response.start"))

    edge = Edge(app, limit=1000, metrics=Metrics(), held_bytes=1000)
    assert [one(edge) for _ in range(30)] == [200] * 30
    assert edge._held == 0
