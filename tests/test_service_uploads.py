"""What the service does with request bodies. An uploaded face stays in memory: the SDK never
writes an image to disk, and a web framework's habit of moving a large upload to a temporary
file would put the face there in the clear (unlinked at once, but its blocks stay on the disk).
And memory stays bounded: bodies still arriving are counted too."""

from __future__ import annotations

import asyncio
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


def test_bodies_held_back_by_many_clients_are_bounded_before_they_are_read(tmp_path: Path) -> None:
    """Calls are admitted (threads + queue) once their bodies are in. Clients that hold back the
    last bytes of many bodies kept each one in memory, none refused: 40 connections held 320 MB.
    Past twice the admitted calls and four more, a request with a body is refused at once (503),
    before any of it is read."""
    from service_support import in_process_app

    ws = make_workspace(tmp_path / "ws")
    with open_sf(ws) as sf:
        _, key = sf.issue_api_key("operator", label="gate")
    app = in_process_app(ws.root, tmp_path)  # 1 thread, a queue of 2: 10 bodies may be open
    body = b'{"subject": "alice", "purpose": "demo"}'

    async def request(release: asyncio.Event, read: list[int]) -> int:
        sent: list[dict[str, Any]] = []

        async def receive() -> dict[str, Any]:
            read.append(1)
            await release.wait()
            return {"type": "http.request", "body": body, "more_body": False}

        async def send(msg: dict[str, Any]) -> None:
            sent.append(msg)

        scope = {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "POST",
                 "scheme": "http", "path": "/v1/verify", "raw_path": b"/v1/verify", "root_path": "",
                 "query_string": b"", "headers": [(b"host", b"svc"), (b"content-type", b"application/json"),
                                                  (b"content-length", str(len(body)).encode()),
                                                  (b"x-api-key", key.encode())],
                 "client": ("127.0.0.1", 40000), "server": ("svc", 80)}
        await app(scope, receive, send)
        return int(next(m["status"] for m in sent if m["type"] == "http.response.start"))

    async def main() -> tuple[list[int], int, list[int]]:
        async with app.router.lifespan_context(app):
            held, late = asyncio.Event(), asyncio.Event()
            reads: list[int] = []
            tasks = [asyncio.create_task(request(held, reads)) for _ in range(10)]
            while len(reads) < 10:  # every held request is waiting for its body
                await asyncio.sleep(0.01)
            late.set()
            late_reads: list[int] = []
            status = await asyncio.wait_for(request(late, late_reads), 30)
            held.set()
            return list(await asyncio.gather(*tasks)), status, late_reads

    held_statuses, status, late_reads = asyncio.run(main())
    assert status == 503 and not late_reads, "an eleventh body was read while ten were held back"
    assert 503 not in held_statuses
