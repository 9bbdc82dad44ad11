"""Someone holding the app's PostgreSQL role, but no key, edits one row of a person who has
nothing to do with an erasure or a revocation (say, moves dave's expiry). That row fails its
check, which `audit verify` names; it must not stop another person's erasure or a revocation,
which before were refused, for ever, with "restore the store from a backup"."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
from policy_support import consent, images, legal_basis, open_sf  # noqa: E402
from server_support import PgCluster  # noqa: E402
from safeface.errors import IntegrityError  # noqa: E402
from test_server_store_attacks import _server_ws, _sql  # noqa: E402


def _edit(dsn: str, row_id: int) -> None:
    _sql(dsn, f"UPDATE safeface.rows SET expires_us = expires_us + 1 WHERE row_id = {row_id}")


def test_a_legal_basis_revoked_after_an_erasure_is_not_held_up_by_another_persons_edited_row(
        pg: PgCluster, tmp_path: Path) -> None:
    """Alice and bob are enrolled under a legal basis, alice is erased, dave's row is edited by
    hand: the basis's revocation must remove bob's row, not read alice's as moved and refuse."""
    ws, dsn = _server_ws(pg, tmp_path)
    img = images()
    basis = legal_basis(ws, operations=["enroll"])
    with open_sf(ws) as sf:
        alice = sf.enroll(img / "obama.jpg", "alice", "demo", legal_basis=basis)
        bob = sf.enroll(img / "biden.jpg", "bob", "demo", legal_basis=basis)
        dave = sf.enroll(img / "obama2.jpg", "dave", "demo", consent(ws, "dave"))
        sf.erase("alice")
        _edit(dsn, dave.row_id)
        receipt = sf.revoke(token_id=alice.token_id)
        assert receipt.rows == (bob.row_id,) and receipt.vectors == "removed"
        assert _sql(dsn, "SELECT row_id FROM safeface.rows") == [(dave.row_id,)]


def test_an_erasure_after_a_legal_basis_revocation_is_not_held_up_by_another_persons_edited_row(
        pg: PgCluster, tmp_path: Path) -> None:
    """A legal basis covering alice and bob is revoked; bob enrols again under his own consent,
    dave's row is edited by hand: bob's erasure must remove his new row (the log's revocation
    entry names his old one, under no subject), not refuse or call the old one lost."""
    ws, dsn = _server_ws(pg, tmp_path)
    img = images()
    basis = legal_basis(ws, operations=["enroll"])
    with open_sf(ws) as sf:
        alice = sf.enroll(img / "obama.jpg", "alice", "demo", legal_basis=basis)
        sf.enroll(img / "biden.jpg", "bob", "demo", legal_basis=basis)
        sf.revoke(token_id=alice.token_id)
        again = sf.enroll(img / "biden.jpg", "bob", "demo", consent(ws, "bob"))
        dave = sf.enroll(img / "obama2.jpg", "dave", "demo", consent(ws, "dave"))
        _edit(dsn, dave.row_id)
        receipt = sf.erase("bob")
        assert receipt.rows == (again.row_id,) and receipt.vectors == "removed"
        assert "already gone" not in sf.audit_entries()[-1].note
        assert _sql(dsn, "SELECT row_id FROM safeface.rows") == [(dave.row_id,)]


def test_a_rebuild_noted_by_hand_with_another_persons_edited_row_does_not_stop_erasure(
        pg: PgCluster, tmp_path: Path) -> None:
    """Dave's row is edited and a Milvus rebuild noted in the pending table (as a kill -9 in a
    rebuild leaves it): every erasure and every open failed on dave's row. Alice's must go on."""
    from safeface.storage.server import REBUILD

    ws, dsn = _server_ws(pg, tmp_path)
    img = images()
    with open_sf(ws) as sf:
        alice = sf.enroll(img / "obama.jpg", "alice", "demo", consent(ws, "alice"))
        dave = sf.enroll(img / "biden.jpg", "dave", "demo", consent(ws, "dave"))
        _edit(dsn, dave.row_id)
        _sql(dsn, f"INSERT INTO safeface.pending (row_id, op) VALUES ({REBUILD}, 'rebuild')")
        receipt = sf.erase("alice")
        assert receipt.rows == (alice.row_id,)
        assert _sql(dsn, "SELECT row_id FROM safeface.rows") == [(dave.row_id,)]
    with open_sf(ws) as sf:
        assert sf.erase("bob").templates_removed == 0


def test_an_erasure_killed_before_its_entry_is_not_held_up_by_another_persons_edited_row(
        pg: PgCluster, tmp_path: Path) -> None:
    """An erasure of alice is killed after the store's commit and before its entry; then dave's
    row is edited by hand. The retry was refused ("restore the store from a backup"), since
    alice's row, gone, could have been dave's row moved with more columns edited. The store
    records, under its keys and in the delete's transaction, which rows an erasure took, so the
    retry settles alice's row as already gone, and dave's row stays named."""
    from child_process import erase_killed

    ws, dsn = _server_ws(pg, tmp_path)
    img = images()
    with open_sf(ws) as sf:
        alice = sf.enroll(img / "obama.jpg", "alice", "demo", consent(ws, "alice"))
        dave = sf.enroll(img / "biden.jpg", "dave", "demo", consent(ws, "dave"))
    erase_killed(ws.root, tmp_path, "safeface.storage.server:ServerStore")
    _edit(dsn, dave.row_id)
    with open_sf(ws) as sf:
        receipt = sf.erase("alice")
        assert receipt.templates_removed == 1 and receipt.rows == (alice.row_id,)
        assert "already gone" in str(sf.audit_entries()[-1].note)
        assert _sql(dsn, "SELECT row_id FROM safeface.rows") == [(dave.row_id,)]
        with pytest.raises(IntegrityError, match=f"gallery row {dave.row_id} failed its integrity check"):
            sf.verify_store()


def test_an_erased_row_put_back_edited_goes_with_the_retried_erasure(pg: PgCluster, tmp_path: Path) -> None:
    """Someone with the app's role keeps a copy of alice's row; her erasure is killed before its
    entry; the copy is put back under another id with more columns edited, so no seal opens as
    hers. Its sealed bytes are the ones the killed erasure noted: the retry must take it too,
    not sign a receipt beside it."""
    from child_process import erase_killed

    ws, dsn = _server_ws(pg, tmp_path)
    img = images()
    with open_sf(ws) as sf:
        alice = sf.enroll(img / "obama.jpg", "alice", "demo", consent(ws, "alice"))
        dave = sf.enroll(img / "biden.jpg", "dave", "demo", consent(ws, "dave"))
    _sql(dsn, "CREATE TABLE public.kept AS SELECT * FROM safeface.rows")
    erase_killed(ws.root, tmp_path, "safeface.storage.server:ServerStore")
    _sql(dsn, f"INSERT INTO safeface.rows SELECT * FROM public.kept WHERE row_id = {alice.row_id}")
    _sql(dsn, f"UPDATE safeface.rows SET row_id = 9999, pseudonym = '{'0' * 64}', expires_us = expires_us + 1 "
              f"WHERE row_id = {alice.row_id}")
    _sql(dsn, "DROP TABLE public.kept")
    with open_sf(ws) as sf:
        receipt = sf.erase("alice")
        assert receipt.rows == (alice.row_id,)
        assert _sql(dsn, "SELECT row_id FROM safeface.rows") == [(dave.row_id,)]
        assert sf.verify_store().ok
