"""What a /v1 request body may carry: each name once, and images the decoders can be trusted with."""

from __future__ import annotations

import base64
import io
import struct
import sys
import zlib
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from policy_support import consent, images, open_sf  # noqa: E402
from service_support import keyed_client  # noqa: E402


def test_a_request_naming_its_subject_twice_is_refused(tmp_path: Path) -> None:
    """An erasure names "subject" twice (JSON or form), alice then bob: 422, nobody erased."""
    client, ws, (op,) = keyed_client(tmp_path, "operator", rate=1000)
    with open_sf(ws) as sf:
        sf.enroll(images() / "obama.jpg", "alice", "demo", consent(ws, "alice"))
        sf.enroll(images() / "biden.jpg", "bob", "demo", consent(ws, "bob"))
    with client:
        as_json = client.post("/v1/erase", headers={"X-API-Key": op, "content-type": "application/json"},
                              content=b'{"subject": "alice", "subject": "bob"}')
        nested = client.post("/v1/erase", headers={"X-API-Key": op, "content-type": "application/json"},
                             content=b'{"subject": "bob", "extra": {"a": 1, "a": 2}}')
        as_form = client.post("/v1/erase", headers={"X-API-Key": op},
                              files=[("subject", (None, "alice")), ("subject", (None, "bob"))])
    for r in (as_json, nested, as_form):
        assert r.status_code == 422 and r.json()["error"] == "InvalidArgument", r.text[:200]
    assert "twice" in as_json.json()["message"] and "twice" in as_form.json()["message"]
    with open_sf(ws) as sf:
        assert {r.pseudonym for r in sf.records()} == {sf.pseudonym("alice"), sf.pseudonym("bob")}


def _png_header_only(w: int, h: int) -> bytes:
    """A 70-byte PNG whose header claims w x h pixels."""
    def chunk(t: bytes, d: bytes) -> bytes:
        return struct.pack(">I", len(d)) + t + d + struct.pack(">I", zlib.crc32(t + d) & 0xFFFFFFFF)

    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0))
            + chunk(b"IDAT", zlib.compress(b"\0" * 64)) + chunk(b"IEND", b""))


def _png(w: int, h: int) -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.new("L", (w, h), 128).save(buf, "PNG")
    return buf.getvalue()


_BOMBS = {
    "header of 30000x30000": lambda: _png_header_only(30000, 30000),
    "header of 65535x1": lambda: _png_header_only(65535, 1),
    "1x1": lambda: _png(1, 1),
    "1x40000": lambda: _png(1, 40000),
    "svg": lambda: b"<svg xmlns='http://www.w3.org/2000/svg' width='30000' height='30000'/>",
    "postscript": lambda: b"%!PS-Adobe-3.0 EPSF-3.0\n%%BoundingBox: 0 0 30000 30000\nshowpage\n",
}


def test_image_bombs_and_slivers_posted_for_enrolment_are_typed_refusals_on_record(tmp_path: Path) -> None:
    """A key holder posts a 900-Mpx PNG, a sliver, SVG or PostScript: 422, on record, none kept."""
    client, ws, (op,) = keyed_client(tmp_path, "operator", rate=1000)
    token = consent(ws, "alice")
    answers = []
    with client:
        for name, make in _BOMBS.items():
            data = make()
            answers.append((name, client.post(
                "/v1/enroll", headers={"X-API-Key": op}, files={"image": ("x.png", data, "image/png")},
                data={"subject": "alice", "purpose": "demo", "consent": token})))
            answers.append((name, client.post(
                "/v1/enroll", headers={"X-API-Key": op},
                json={"image_base64": base64.b64encode(data).decode(), "subject": "alice", "purpose": "demo",
                      "consent": token})))
    for name, r in answers:
        assert r.status_code == 422 and r.json()["error"] == "ImageError", (name, r.status_code, r.text[:200])
    with open_sf(ws) as sf:
        assert sf.records() == []
        failed = [e for e in sf.audit_entries() if e.operation == "enroll" and e.decision == "failed"]
        assert len(failed) == len(answers)
