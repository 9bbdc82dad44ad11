"""A stored row's dates (created_at, last_interaction), which no seal binds since they only
describe the row, edited by hand in the database into something that is no date."""

from __future__ import annotations

import sqlite3
import sys
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
from policy_support import PASSPHRASE, consent, images, make_workspace, open_sf  # noqa: E402
from server_support import PG_PASSWORD, PgCluster, server_modules  # noqa: E402

from safeface.cli import main  # noqa: E402
from safeface.errors import IntegrityError  # noqa: E402
from safeface.hazmat.templates import PassphraseKeyring, ScryptParams  # noqa: E402
from safeface.storage.gallery import Gallery  # noqa: E402


@pytest.mark.parametrize("column", ["created_at", "last_interaction"])
def test_a_row_date_edited_into_garbage_in_postgresql_is_named_by_audit_verify(pg: PgCluster, tmp_path: Path,
                                                                               monkeypatch: Any, capsys: Any,
                                                                               column: str) -> None:
    """An operator with the app's database role writes "garbage" into a row's date: the records,
    the store check and `audit verify` crashed with a bare ValueError; now they name the row
    (IntegrityError, exit 4)."""
    import psycopg

    server_modules()
    ws = make_workspace(tmp_path / "ws")
    dsn = pg.new_database()
    with open_sf(ws) as sf:
        sf.migrate_storage({"records": dsn, "vectors": "milvus-lite:vectors.db"})
    with open_sf(ws) as sf:
        sf.enroll(images() / "obama.jpg", "alice", "demo", consent(ws, "alice"))
    with psycopg.connect(dsn, password=PG_PASSWORD, autocommit=True) as c:
        c.execute(f"UPDATE safeface.rows SET {column} = 'garbage'")
    with open_sf(ws) as sf:
        for read in (sf.records, sf.verify_store):
            with pytest.raises(IntegrityError, match=f"row 1 .*{column}"):
                read()
    monkeypatch.setenv("SAFEFACE_PASSPHRASE", PASSPHRASE)
    capsys.readouterr()
    assert main(["audit", "verify", str(ws.root)]) == 4
    assert f"{column} column is not a date" in capsys.readouterr().err


@pytest.mark.parametrize("value", ["garbage", 17])
def test_a_row_date_edited_into_garbage_in_the_local_gallery_is_named(tmp_path: Path, value: Any) -> None:
    """Someone who can write gallery.db, without a key, sets a row's created_at to something that is
    no date: reading the records raised a bare ValueError; now IntegrityError naming the row."""
    kr = PassphraseKeyring.create(tmp_path / "keys.json", "pw", ScryptParams(n=2**10, r=8, p=1))
    v = np.random.default_rng(1).standard_normal(128).astype(np.float32)
    with Gallery.open(tmp_path / "gallery.db", kr, 128) as g:
        g.add("alice", v, ["demo"], "t-1", datetime.now(timezone.utc) + timedelta(days=30))
    with sqlite3.connect(tmp_path / "gallery.db") as db:
        db.execute("UPDATE rows SET created_at = ?", (value,))
    db.close()
    with Gallery.open(tmp_path / "gallery.db", kr, 128) as g:
        with pytest.raises(IntegrityError, match="created_at column is not a date"):
            g.rows()
