"""What the service does with an uploaded face: it stays in memory. The SDK never writes an
image to disk, and a web framework's habit of moving a large upload to a temporary file would
put the face there in the clear (unlinked at once, but its blocks stay on the disk)."""

from __future__ import annotations

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
