"""A workspace database another process holds past SQLite's busy timeout (a rekey, a large
erasure) while the service calls: nothing was done and the same call succeeds later, so the
caller must be told to retry (503 with Retry-After), not that the server failed (500)."""

from __future__ import annotations

import sqlite3
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
from service_support import keyed_client  # noqa: E402

import safeface.sqlite_store  # noqa: E402


def test_a_busy_audit_log_is_a_503_to_retry_naming_no_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Another process holds audit.db's write lock past the busy timeout (0.3 s here) during an
    erasure: 503 with Retry-After and a log reference, no path; once it lets go, the call works."""
    client, ws, (op,) = keyed_client(tmp_path, "operator", rate=1000)
    monkeypatch.setattr(safeface.sqlite_store, "BUSY_TIMEOUT_MS", 300)
    with client:
        writer = sqlite3.connect(ws.audit, isolation_level=None)
        writer.execute("BEGIN IMMEDIATE")
        try:
            busy = client.post("/v1/erase", headers={"X-API-Key": op}, json={"subject": "alice"})
        finally:
            writer.execute("ROLLBACK")
            writer.close()
        after = client.post("/v1/erase", headers={"X-API-Key": op}, json={"subject": "alice"})
    assert busy.status_code == 503 and int(busy.headers["retry-after"]) >= 1, busy.text[:300]
    assert busy.json()["error"] == "WorkspaceBusy" and busy.json()["reference"], busy.text[:300]
    assert "retry" in busy.json()["message"].lower() and str(tmp_path) not in busy.text
    assert after.status_code == 200, after.text[:300]
