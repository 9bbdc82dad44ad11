"""A worker thread of the service whose first open fails (a witness missing for a moment, a
database busy) while the process starts: the process must not stay "starting" for good."""

from __future__ import annotations

import shutil
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from policy_support import make_workspace  # noqa: E402
from service_support import in_process_app  # noqa: E402


def _ready_or_refused(client: Any) -> Any:
    """/v1/ready once it says something else than a plain "starting" (or after 30 s)."""
    got = client.get("/v1/ready")
    for _ in range(300):
        if got.json() != {"status": "starting"}:
            break
        time.sleep(0.1)
        got = client.get("/v1/ready")
    return got


def test_a_witness_missing_while_the_workers_open_is_retried_until_it_is_back(tmp_path: Path) -> None:
    """The witness volume goes away between the service's first open and its worker threads':
    /v1/ready says why (by log reference, no path), and once it is back the service is ready."""
    from fastapi.testclient import TestClient

    (tmp_path / "volume").mkdir()
    witness = tmp_path / "volume" / "ws-anchor.json"
    ws = make_workspace(tmp_path / "ws", edit=lambda raw: raw.__setitem__("audit", {"witness": str(witness)}))
    app = in_process_app(ws.root, tmp_path)  # the main handle opens here
    shutil.move(witness, tmp_path / "kept.json")
    with TestClient(app, base_url="https://testserver", raise_server_exceptions=False) as client:
        waiting = _ready_or_refused(client)
        shutil.move(tmp_path / "kept.json", witness)
        for _ in range(300):
            ready = client.get("/v1/ready")
            if ready.status_code == 200:
                break
            time.sleep(0.1)
    assert waiting.status_code == 503 and "reference" in waiting.json()["reason"], waiting.text[:300]
    assert str(tmp_path) not in waiting.text
    assert ready.status_code == 200, ready.text[:300]
