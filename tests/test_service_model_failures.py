"""What a caller is told when the server's models fail: the message names the server's files."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
from policy_support import images, make_workspace, open_sf  # noqa: E402

pytest.importorskip("fastapi")


def test_a_model_failure_tells_the_caller_a_reference_not_the_servers_paths(
        tmp_path: Path, caplog: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    """A model that fails to load on the server (a file replaced, ONNX Runtime missing) answered
    the key holder with its message: the model file's path on the server. The caller now gets
    the kind and a reference; the operator finds the cause in the log under it."""
    from fastapi.testclient import TestClient
    from service_support import in_process_app

    from safeface.errors import ModelError
    from safeface.sdk import SafeFace

    ws = make_workspace(tmp_path / "ws")
    with open_sf(ws) as sf:
        _, key = sf.issue_api_key("operator", label="gate")

    def broken(*args: Any, **kw: Any) -> Any:
        raise ModelError("ONNX Runtime cannot load /srv/safeface/models/dlib_face_recognition.onnx (bad file).")

    with TestClient(in_process_app(ws.root, tmp_path), raise_server_exceptions=False) as client:
        monkeypatch.setattr(SafeFace, "verify", broken)  # the model failing mid-call
        r = client.post("/v1/verify", headers={"X-API-Key": key},
                        files={"image": ("p.jpg", (images() / "obama.jpg").read_bytes(), "image/jpeg")},
                        data={"subject": "alice", "purpose": "demo", "consent": "x"})
    body = r.json()
    assert body["error"] == "ModelError" and "/srv/safeface" not in r.text, r.text
    assert body.get("reference") and body["reference"] in body["message"]
    assert any(body["reference"] in m and "/srv/safeface" in m for m in caplog.messages)
