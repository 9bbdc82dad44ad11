"""A workspace database replaced under a running service's open handles: each call is a typed 409
naming no path, and /v1/ready says the process must be restarted instead of calling it ready."""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
from service_support import keyed_client  # noqa: E402


def _swap_for_copy(path: Path) -> None:
    shutil.copy(path, path.with_name(path.name + ".copy"))
    path.with_name(path.name + ".copy").replace(path)


@pytest.mark.parametrize("name", ["apikeys.db", "audit.db", "policy.db", "gallery.db"])
def test_a_database_replaced_under_the_service_takes_it_out_of_ready(tmp_path: Path, name: str) -> None:
    """A copy renamed over a database: every call was 409 for good (the handles never reopen),
    while /v1/ready kept answering 200, so a balancer kept the process in rotation."""
    client, ws, (op,) = keyed_client(tmp_path, "operator", rate=1000)
    with client:
        assert client.post("/v1/erase", headers={"X-API-Key": op}, json={"subject": "alice"}).status_code == 200
        _swap_for_copy(ws.root / name)
        refused = client.post("/v1/erase", headers={"X-API-Key": op}, json={"subject": "alice"})
        ready = client.get("/v1/ready")
    assert refused.status_code == 409 and refused.json()["error"] == "ReplacedFile", refused.text[:300]
    assert refused.json()["reference"] and str(tmp_path) not in refused.text
    assert ready.status_code == 503 and "restart" in ready.json()["reason"], ready.text[:300]
    assert str(tmp_path) not in ready.text
