"""A JPEG whose scan is followed by tens of thousands of empty segments before its end: the scan
count walked each one in Python (1.7 s of CPU, holding the interpreter, for an 8 MiB upload;
libjpeg skips them in C). It is refused, at the service a typed 422 on record."""

from __future__ import annotations

import sqlite3
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
from policy_support import images  # noqa: E402
from service_support import keyed_client  # noqa: E402

from safeface.errors import ImageError  # noqa: E402
from safeface.imageio import load_image  # noqa: E402

MANY = 70_000  # more segments than any photograph holds (imageio.MAX_HEADER_PIECES)


def _comments_after_scan(n: int) -> bytes:
    jpg = (images() / "obama.jpg").read_bytes()
    assert jpg[-2:] == b"\xff\xd9"
    return jpg[:-2] + b"\xff\xfe\x00\x02" * n + b"\xff\xd9"


def test_a_jpeg_of_many_segments_after_its_scan_is_refused() -> None:
    with pytest.raises(ImageError, match="segments"):
        load_image(_comments_after_scan(MANY))
    assert load_image(_comments_after_scan(100)).shape[2] == 3  # a few comments still load


def test_the_service_answers_it_with_a_typed_422_on_record(tmp_path: Path) -> None:
    client, ws, (op,) = keyed_client(tmp_path, "operator", rate=1000)
    body = _comments_after_scan(MANY)
    with client:
        r = client.post("/v1/analyze", headers={"X-API-Key": op}, files={"image": ("f.jpg", body, "image/jpeg")})
    assert r.status_code == 422 and r.json()["error"] == "ImageError", r.text[:300]
    assert len(r.content) < 1000  # no image bytes echoed
    with sqlite3.connect(str(ws.audit)) as db:
        last = db.execute("SELECT operation, decision, note FROM entries ORDER BY seq DESC LIMIT 1").fetchone()
    assert tuple(last) == ("analyze", "failed", "ImageError")
