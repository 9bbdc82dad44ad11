"""Someone who can write gallery.db, without a key, edits one column of a person's row (its
pseudonym, token reference or expiry) while the service runs: the row no longer answers the
erasure's, revocation's or purge's WHERE clause, although its seal still says whose it is."""

from __future__ import annotations

import sqlite3
import sys
from datetime import datetime, timedelta, timezone
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
from policy_support import consent, images, legal_basis, make_workspace, open_sf  # noqa: E402

from safeface.errors import IntegrityError  # noqa: E402
from server_support import PgCluster  # noqa: E402
from test_server_store_attacks import _server_ws, _sql  # noqa: E402
from safeface.hazmat.templates import PassphraseKeyring, ScryptParams  # noqa: E402
from safeface.storage.gallery import Gallery  # noqa: E402

T0 = datetime(2026, 1, 1, tzinfo=timezone.utc)


def _stored(db: Path) -> int:
    with sqlite3.connect(db) as c:
        return int(c.execute("SELECT COUNT(*) FROM rows").fetchone()[0])


@pytest.mark.parametrize("column", ["pseudonym", "token_id"])
def test_a_row_whose_column_was_edited_by_hand_is_still_erased(tmp_path: Path, column: str) -> None:
    """Alice's pseudonym (or token reference) column is rewritten by hand in a running service's
    store, then she is erased (or her consent revoked): her row must go, not stay identifiable."""
    ws = make_workspace(tmp_path / "ws")
    imgs = images()
    with open_sf(ws) as sf:  # a service worker, open all along
        alice = sf.enroll(imgs / "obama.jpg", "alice", "demo", consent(ws, "alice"))
        sf.enroll(imgs / "biden.jpg", "bob", "demo", consent(ws, "bob"))
        with sqlite3.connect(ws.gallery) as db:
            db.execute(f"UPDATE rows SET {column} = ? WHERE row_id = ?",
                       ("0" * 64 if column == "pseudonym" else "t-" + "0" * 32, alice.row_id))
        if column == "pseudonym":
            receipt = sf.erase("alice")
        else:
            receipt = sf.revoke(token_id=alice.token_id)
        assert receipt.templates_removed == 1
        assert not sf.identify(imgs / "obama2.jpg", "demo", legal_basis=legal_basis(ws))
    assert _stored(ws.gallery) == 1


@pytest.mark.parametrize("column", ["pseudonym", "token_id"])
def test_a_row_whose_column_was_edited_in_postgresql_is_still_erased(pg: PgCluster, tmp_path: Path,
                                                                    column: str) -> None:
    """The same with the app's PostgreSQL role: the receipt said 0 removed while the row and its
    Milvus vector stayed; the rows the log names as alice's (or her consent's) go too."""
    ws, dsn = _server_ws(pg, tmp_path)
    imgs = images()
    with open_sf(ws) as sf:
        alice = sf.enroll(imgs / "obama.jpg", "alice", "demo", consent(ws, "alice"))
        sf.enroll(imgs / "biden.jpg", "bob", "demo", consent(ws, "bob"))
        value = "0" * 64 if column == "pseudonym" else "t-" + "0" * 32
        _sql(dsn, f"UPDATE safeface.rows SET {column} = '{value}' WHERE row_id = {alice.row_id}")
        receipt = sf.erase("alice") if column == "pseudonym" else sf.revoke(token_id=alice.token_id)
        assert receipt.templates_removed == 1
        assert not sf.identify(imgs / "obama2.jpg", "demo", legal_basis=legal_basis(ws))
        assert sf.audit_verify().entries > 0
    assert _sql(dsn, "SELECT COUNT(*) FROM safeface.rows") == [(1,)]


def test_the_records_of_a_person_whose_row_was_edited_by_hand_are_not_silently_empty(tmp_path: Path) -> None:
    """Alice's pseudonym column is rewritten by hand: reading her records (an access request, an
    export) must fail its integrity check, not answer that nothing is stored about her."""
    ws = make_workspace(tmp_path / "ws")
    imgs = images()
    with open_sf(ws) as sf:
        alice = sf.enroll(imgs / "obama.jpg", "alice", "demo", consent(ws, "alice"))
        with sqlite3.connect(ws.gallery) as db:
            db.execute("UPDATE rows SET pseudonym = ? WHERE row_id = ?", ("0" * 64, alice.row_id))
        with pytest.raises(IntegrityError, match=f"row {alice.row_id} "):
            sf.records("alice")


def test_an_expired_row_whose_expiry_column_was_moved_by_hand_is_still_purged(tmp_path: Path) -> None:
    """A row's expiry column is moved years ahead by hand in an open store: the purge past the
    expiry its seal binds must remove it (and name it in its result), not leave it on disk."""
    keyring = PassphraseKeyring.create(tmp_path / "keys.json", "pass phrase", ScryptParams(n=2**10, r=8, p=1))
    x = np.random.default_rng(3).standard_normal((2, 128)).astype(np.float32)
    with Gallery.open(tmp_path / "ws" / "gallery.db", keyring, 128) as g:
        old = g.add("alice", x[0], ["access"], "tok-a", T0 + timedelta(days=30))
        g.add("bob", x[1], ["access"], "tok-b", T0 + timedelta(days=3000))
        with sqlite3.connect(g.path) as db:
            db.execute("UPDATE rows SET expires_us = expires_us + 10 * 365 * 86400000000 WHERE row_id = ?",
                       (old.row_id,))
        gone = g.purge_expired(T0 + timedelta(days=60))
        assert [r for res in gone for r in res.row_ids] == [old.row_id]
        assert _stored(g.path) == 1
