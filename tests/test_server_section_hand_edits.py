"""A storage section naming the servers written into deployment.json by hand (no keys) while the
workspace is local and open: each local audit append asked whether a migration had moved the
workspace, read the file, and refused every call, erasures included, as if it had (ReplacedFile,
and the service then reports itself not ready). Only a section the workspace sealed (what a
migration writes) says the workspace moved. Real files and keys."""

from __future__ import annotations

import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from policy_support import consent, images, make_workspace, open_sf  # noqa: E402

SERVERS = {"records": "postgresql://db.example/safeface", "vectors": "milvus:db.example:19530"}


def test_a_server_section_written_by_hand_does_not_stop_an_open_workspaces_erasure(tmp_path: Path) -> None:
    """Someone who can write deployment.json, without the keys, points its storage at servers:
    the open workspace still erases alice (a receipt for her template, on the local log)."""
    ws = make_workspace(tmp_path / "ws")
    with open_sf(ws) as sf:
        sf.enroll(images() / "obama.jpg", "alice", "demo", consent(ws, "alice"))
        raw = json.loads(ws.config.read_text())
        raw["storage"] = dict(SERVERS)
        ws.config.write_text(json.dumps(raw, indent=2))
        assert sf.erase("alice").templates_removed == 1
        assert sf.records() == []
        assert [e.operation for e in sf.audit_entries()][-1] == "erase"
