"""Caller text holding a NUL reaches the audit log written as its escape: PostgreSQL refuses a
NUL in text, so such a purpose made the append fail, the call go unrecorded, and the error tell
the operator that the log's tables were altered and to restore them from a backup."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
from server_support import PgCluster, server_modules  # noqa: E402

from safeface.errors import IntegrityError, SafeFaceError  # noqa: E402
from safeface.sdk import SafeFace  # noqa: E402
from safeface.workspace.admin import audit_verify  # noqa: E402
from safeface.workspace.init import init_workspace  # noqa: E402


def test_a_purpose_holding_a_nul_is_refused_on_record_on_postgresql(pg: PgCluster, tmp_path: Path) -> None:
    """An app calls identify with the purpose "demo\\x00" on a PostgreSQL workspace: the refusal
    must be recorded (the NUL escaped), not fail as an audit log to restore from a backup."""
    server_modules()
    paths = init_workspace(tmp_path / "ws", demo=True)
    dsn = pg.new_database()
    with SafeFace.open(paths.root) as sf:
        sf.migrate_storage({"records": dsn, "vectors": "milvus-lite:vectors.db"})
    with SafeFace.open(paths.root) as sf:
        before = len(sf.audit_entries())
        with pytest.raises(SafeFaceError) as err:
            sf.identify(np.zeros((64, 64, 3), np.uint8), purpose="demo\x00")
        assert not isinstance(err.value, IntegrityError), err.value
        entries = sf.audit_entries()
    assert len(entries) == before + 1
    assert (entries[-1].operation, entries[-1].decision, entries[-1].purpose) == ("identify", "refused", "demo\\x00")
    audit_verify(paths.root)
