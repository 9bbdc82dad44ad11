"""A witness moved to another volume as the README says (copy the file there, name the new path in
audit.witness, `safeface assess`) while a handle is open: a running service or app must follow
the assessed section, not stop every call over the old path or leave the new witness behind."""

from __future__ import annotations

import json
import shutil
import sqlite3
import sys
import time
from pathlib import Path
from typing import Any, Callable

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
from policy_support import PASSPHRASE, consent, edit_config, images, make_workspace, open_sf  # noqa: E402

from safeface.workspace.admin import audit_verify  # noqa: E402

IMG = images()


def _witness_at(path: Path) -> Callable[[dict[str, Any]], None]:
    return lambda raw: raw.__setitem__("audit", {"witness": str(path)})


def _anchor_seq(path: Path) -> int:
    return int(json.loads(path.read_text())["seq"])


def test_an_open_handle_follows_a_witness_moved_on_record(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """An operator moves the witness to a new volume and unmounts the old one while a service runs:
    its calls go on, the new witness keeps up with the log, and `audit verify` is clean."""
    old, new = tmp_path / "vol-a" / "ws.anchor", tmp_path / "vol-b" / "ws.anchor"
    old.parent.mkdir()
    new.parent.mkdir()
    paths = make_workspace(tmp_path / "ws", edit=_witness_at(old))
    token = consent(paths, "alice")
    with open_sf(paths) as sf:
        sf.enroll(IMG / "obama.jpg", subject="alice", purpose="demo", consent=token)
        shutil.copy2(old, new)
        edit_config(paths, _witness_at(new))  # `safeface assess` records the move
        old.unlink()  # the old volume goes away
        assert sf.verify(IMG / "obama.jpg", "alice", "demo", token).match
        assert sf.verify(IMG / "obama.jpg", "alice", "demo", token).match
    assert not old.exists(), "the old witness was written again"
    with sqlite3.connect(paths.audit) as db:
        last = db.execute("SELECT MAX(seq) FROM entries").fetchone()[0]
    assert _anchor_seq(new) == last  # the new witness names the log's last entry
    monkeypatch.setenv("SAFEFACE_PASSPHRASE", PASSPHRASE)
    audit_verify(paths.root)


def test_a_service_stays_ready_through_a_witness_moved_on_record(tmp_path: Path) -> None:
    """An operator moves the witness on record and unmounts the old volume under a running service:
    /v1/ready stays 200 (a 503 made a balancer send it nothing) and its calls are answered."""
    from fastapi.testclient import TestClient

    from service_support import in_process_app

    old, new = tmp_path / "vol-a" / "ws.anchor", tmp_path / "vol-b" / "ws.anchor"
    old.parent.mkdir()
    new.parent.mkdir()
    paths = make_workspace(tmp_path / "ws", edit=_witness_at(old))
    with open_sf(paths) as sf:
        _, key = sf.issue_api_key("operator", label="operator", rate=1000)
    client = TestClient(in_process_app(paths.root, tmp_path), base_url="https://testserver",
                        raise_server_exceptions=False)
    with client:
        for _ in range(600):
            if client.get("/v1/ready").json().get("status") != "starting":
                break
            time.sleep(0.1)
        shutil.copy2(old, new)
        edit_config(paths, _witness_at(new))
        old.unlink()
        ready = client.get("/v1/ready")
        erased = client.post("/v1/erase", headers={"X-API-Key": key}, json={"subject": "alice"})
    assert ready.status_code == 200, ready.text[:300]
    assert erased.status_code == 200, erased.text[:300]
