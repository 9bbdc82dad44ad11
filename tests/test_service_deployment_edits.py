"""deployment.json edited by hand under a running service: every worker judges the file as it is
now, including a worker whose handle was opening when the edit landed."""

from __future__ import annotations

import json
import sys
import threading
from pathlib import Path
from typing import Any

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
from policy_support import consent, images, make_workspace, open_sf  # noqa: E402
from service_support import in_process_app  # noqa: E402


def test_an_edit_landing_while_a_worker_opens_is_judged_by_that_worker(tmp_path: Path,
                                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    """The operator ends a purpose while a worker's handle derives its keys (a second of its open,
    between its two reads of the file): that handle judged by the old file for good, verify 200."""
    import safeface.sdk.facade as facade
    from fastapi.testclient import TestClient

    imgs = images()
    ws = make_workspace(tmp_path / "ws")
    with open_sf(ws) as sf:
        t = consent(ws, "alice")
        sf.enroll(imgs / "obama.jpg", "alice", "demo", t)
        op = sf.issue_api_key("operator", label="op", rate=1000)[1]
    raw = json.loads(ws.config.read_text())
    raw["purposes"]["demo"]["end_date"] = "2020-01-01"  # the operator ends the purpose by hand
    real = facade.open_keyring

    def open_keyring_then_edit(*args: Any, **kwargs: Any) -> Any:
        keyring = real(*args, **kwargs)
        if threading.current_thread().name.startswith("safeface-call"):  # a worker's open
            ws.config.write_text(json.dumps(raw, indent=2))
        return keyring

    monkeypatch.setattr(facade, "open_keyring", open_keyring_then_edit)
    with TestClient(in_process_app(ws.root, tmp_path), base_url="https://testserver",
                    raise_server_exceptions=False) as client:
        r = client.post("/v1/verify", headers={"X-API-Key": op},
                        files={"image": ("f.jpg", (imgs / "obama2.jpg").read_bytes(), "image/jpeg")},
                        data={"subject": "alice", "purpose": "demo", "consent": t})
    assert r.status_code == 403 and r.json()["error"] == "PolicyViolation", r.text[:300]
