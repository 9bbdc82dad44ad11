"""A `safeface serve` worker process whose own first open of the workspace fails in the window
after the command's check (a witness volume gone for a moment, a database busy): uvicorn printed
the factory's traceback and the worker process exited. It must start in the typed "starting"
state instead, refusing calls with 503 and Retry-After, and open once the cause is gone."""

from __future__ import annotations

import shutil
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from policy_support import make_workspace, open_sf  # noqa: E402
from service_support import in_process_app  # noqa: E402


def test_a_worker_whose_first_open_fails_starts_as_starting_and_opens_later(tmp_path: Path) -> None:
    """The witness is missing when a worker's app is made: no traceback, /v1/ready says
    "starting" with a log reference, a call is a 503 to retry; once the witness is back, both
    work."""
    from fastapi.testclient import TestClient

    (tmp_path / "volume").mkdir()
    witness = tmp_path / "volume" / "ws-anchor.json"
    ws = make_workspace(tmp_path / "ws", edit=lambda raw: raw.__setitem__("audit", {"witness": str(witness)}))
    with open_sf(ws) as sf:
        _, op = sf.issue_api_key("operator", label="operator", rate=1000)
    shutil.move(witness, tmp_path / "kept.json")
    app = in_process_app(ws.root, tmp_path)  # the worker's factory: its main handle opens here
    with TestClient(app, base_url="https://testserver", raise_server_exceptions=False) as client:
        waiting = client.get("/v1/ready")
        refused = client.post("/v1/erase", headers={"X-API-Key": op}, json={"subject": "alice"})
        shutil.move(tmp_path / "kept.json", witness)
        for _ in range(300):
            ready = client.get("/v1/ready")
            if ready.status_code == 200:
                break
            time.sleep(0.1)
        after = client.post("/v1/erase", headers={"X-API-Key": op}, json={"subject": "alice"})
    assert waiting.status_code == 503 and waiting.json()["status"] == "starting", waiting.text[:300]
    assert "reference" in waiting.json()["reason"] and str(tmp_path) not in waiting.text, waiting.text[:300]
    assert refused.status_code == 503 and int(refused.headers["retry-after"]) >= 1, refused.text[:300]
    assert str(tmp_path) not in refused.text
    assert ready.status_code == 200 and after.status_code == 200, (ready.text[:300], after.text[:300])
