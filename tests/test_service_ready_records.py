"""/v1/ready while the workspace's records fail the check every call makes (a witness the log
records as started deleted under a running service): every call is refused, so the process must
not be called ready; once the witness is back, it is ready again."""

from __future__ import annotations

import shutil
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from policy_support import make_workspace, open_sf  # noqa: E402
from service_support import in_process_app  # noqa: E402


def _warmed(client: Any) -> Any:
    """/v1/ready once the worker threads have opened the workspace (not "starting")."""
    for _ in range(600):
        got = client.get("/v1/ready")
        if got.json().get("status") != "starting":
            return got
        time.sleep(0.1)
    raise AssertionError("the service never finished starting")


def test_a_witness_deleted_under_the_service_takes_it_out_of_ready(tmp_path: Path) -> None:
    """Operator deletes the witness (or its volume goes away) under a running service: each call
    is a 409, and /v1/ready answers 503 naming no path until the witness is put back."""
    from fastapi.testclient import TestClient

    (tmp_path / "volume").mkdir()
    witness = tmp_path / "volume" / "ws-anchor.json"
    ws = make_workspace(tmp_path / "ws", edit=lambda raw: raw.__setitem__("audit", {"witness": str(witness)}))
    with open_sf(ws) as sf:
        _, op = sf.issue_api_key("operator", label="operator", rate=1000)
    client = TestClient(in_process_app(ws.root, tmp_path), base_url="https://testserver",
                        raise_server_exceptions=False)
    with client:
        assert _warmed(client).status_code == 200
        shutil.move(witness, tmp_path / "kept.json")
        refused = client.post("/v1/erase", headers={"X-API-Key": op}, json={"subject": "alice"})
        ready = client.get("/v1/ready")
        shutil.move(tmp_path / "kept.json", witness)
        back = client.get("/v1/ready")
        after = client.post("/v1/erase", headers={"X-API-Key": op}, json={"subject": "alice"})
    assert refused.status_code == 409, refused.text[:300]
    assert ready.status_code == 503 and ready.json()["status"] == "refusing", ready.text[:300]
    assert "reference" in ready.json()["reason"] and str(tmp_path) not in ready.text
    assert back.status_code == 200 and after.status_code == 200, (back.text[:300], after.text[:300])
