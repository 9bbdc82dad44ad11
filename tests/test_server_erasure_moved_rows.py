"""Someone holding the app's PostgreSQL role, but no key, edits the row id and pseudonym columns
of a person's row so that neither the erasure's WHERE nor the rows the audit log names find it
(or so that they find another person's row in its place). Each row's seal binds its id and
pseudonym, so the erasure can tell; before, it signed a receipt that was not true."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
from policy_support import consent, images, legal_basis, open_sf  # noqa: E402
from server_support import PgCluster  # noqa: E402
from test_server_store_attacks import _server_ws, _sql  # noqa: E402

from safeface.errors import IntegrityError  # noqa: E402

HIDDEN = "0" * 64


@pytest.mark.parametrize("how", ["erase", "revoke"])
def test_a_row_moved_to_another_id_and_pseudonym_is_still_erased(pg: PgCluster, tmp_path: Path, how: str) -> None:
    """Alice's row is given row id 9999 and a pseudonym (or token reference) no one has: her
    erasure (or her consent's revocation) signed a receipt for 0 templates, calling her row gone,
    while her sealed template and Milvus vector stayed. It must take the row (its seal says it is
    alice's row 1) and her vector."""
    from safeface.storage.vectors import MilvusVectors

    ws, dsn = _server_ws(pg, tmp_path)
    img = images()
    with open_sf(ws) as sf:
        alice = sf.enroll(img / "obama.jpg", "alice", "demo", consent(ws, "alice"))
        bob = sf.enroll(img / "biden.jpg", "bob", "demo", consent(ws, "bob"))
        column, value = ("pseudonym", HIDDEN) if how == "erase" else ("token_id", "t-" + "0" * 32)
        _sql(dsn, f"UPDATE safeface.rows SET row_id = 9999, {column} = '{value}' WHERE row_id = {alice.row_id}")
        receipt = sf.erase("alice") if how == "erase" else sf.revoke(token_id=alice.token_id)
        assert receipt.templates_removed == 1 and receipt.rows == (alice.row_id,)
        assert _sql(dsn, "SELECT row_id FROM safeface.rows") == [(bob.row_id,)]
        direct = MilvusVectors.connect("milvus-lite:vectors.db", ws.root, "safeface_templates", 128)
        assert direct.present([alice.row_id, 9999]) == []
        direct.close()
        assert sf.identify(img / "obama2.jpg", "demo", legal_basis=legal_basis(ws)) == []
        assert sf.audit_verify().entries > 0


def test_two_rows_whose_ids_and_pseudonyms_were_swapped_still_erase_hers(pg: PgCluster, tmp_path: Path) -> None:
    """Alice's and bob's rows swap row ids and pseudonyms: erasing alice deleted bob's sealed
    template under a receipt for 1 template and kept hers. Her erasure must find hers by its
    seal and take it. Bob's row, put under her name, goes with it (the role that put it there
    could delete it too); the store check names it as deleted behind the guard."""
    ws, dsn = _server_ws(pg, tmp_path)
    img = images()
    with open_sf(ws) as sf:
        alice = sf.enroll(img / "obama.jpg", "alice", "demo", consent(ws, "alice"))
        bob = sf.enroll(img / "biden.jpg", "bob", "demo", consent(ws, "bob"))
        a, b = alice.row_id, bob.row_id
        _sql(dsn, f"UPDATE safeface.rows SET row_id = -1, pseudonym = '{bob.pseudonym}' WHERE row_id = {a}")
        _sql(dsn, f"UPDATE safeface.rows SET row_id = {a}, pseudonym = '{alice.pseudonym}' WHERE row_id = {b}")
        _sql(dsn, f"UPDATE safeface.rows SET row_id = {b} WHERE row_id = -1")
        receipt = sf.erase("alice")
        assert receipt.rows == (a,) and receipt.templates_removed == 1
        assert _sql(dsn, "SELECT row_id FROM safeface.rows") == []
        assert sf.identify(img / "obama2.jpg", "demo", legal_basis=legal_basis(ws)) == []
        problems = sf.verify_store().problems
        assert any(f"row {b} " in p for p in problems) and not any(f"row {a} " in p for p in problems)


def _recorded_not_found(sf: Any, dsn: str, receipt: Any, rid: int) -> None:
    """The erasure went on, did not call row `rid` gone, and its entry says it was not found and
    that row 9999 (kept) may be it."""
    assert rid not in receipt.rows
    assert (9999,) in _sql(dsn, "SELECT row_id FROM safeface.rows")
    last = [e for e in sf.audit_entries() if e.operation == "erase"][-1]
    assert last.decision == "allowed" and f"rows {rid} not found" in last.note and "rows 9999 fail" in last.note, last


def test_a_moved_row_whose_other_columns_were_edited_too_does_not_stop_her_erasure(pg: PgCluster,
                                                                                  tmp_path: Path) -> None:
    """Alice's row is moved to row id 9999 and its pseudonym and expiry edited, so no seal opens
    as hers. Her receipt must not call it gone; but her erasure was refused whole, her other
    row and her consents kept. It must remove every row of hers it finds, withdraw her consent,
    and record the row it could not find (the audit names it until it is erased after a
    restore)."""
    from safeface.errors import PolicyViolation

    ws, dsn = _server_ws(pg, tmp_path)
    img = images()
    with open_sf(ws) as sf:
        token = consent(ws, "alice")
        alice = sf.enroll(img / "obama.jpg", "alice", "demo", token)
        also = sf.enroll(img / "obama2.jpg", "alice", "demo", token)
        bob = sf.enroll(img / "biden.jpg", "bob", "demo", consent(ws, "bob"))
        _sql(dsn, f"UPDATE safeface.rows SET row_id = 9999, pseudonym = '{HIDDEN}', expires_us = expires_us + 1 "
                  f"WHERE row_id = {alice.row_id}")
        receipt = sf.erase("alice")
        assert receipt.rows == (also.row_id,) and receipt.templates_removed == 1
        _recorded_not_found(sf, dsn, receipt, alice.row_id)
        assert sorted(_sql(dsn, "SELECT row_id FROM safeface.rows")) == [(bob.row_id,), (9999,)]
        with pytest.raises(PolicyViolation):
            sf.verify(img / "obama2.jpg", "alice", "demo", token)
        with pytest.raises(IntegrityError, match="row 9999 failed"):  # the row kept is named
            sf.verify_store()


def test_a_note_of_an_erasure_copied_to_a_moved_row_does_not_excuse_it(pg: PgCluster, tmp_path: Path) -> None:
    """The store notes each row an erasure deleted (so that a retry after a kill can tell it from
    a moved row). Carol is erased; her genuine note is copied to alice's row id, and alice's row
    moved with more columns edited: the note, made for another row, must not let alice's
    erasure call her row gone (it is recorded as not found)."""
    ws, dsn = _server_ws(pg, tmp_path)
    img = images()
    with open_sf(ws) as sf:
        alice = sf.enroll(img / "obama.jpg", "alice", "demo", consent(ws, "alice"))
        sf.enroll(img / "biden.jpg", "bob", "demo", consent(ws, "bob"))
        carol = sf.enroll(img / "obama2.jpg", "carol", "demo", consent(ws, "carol"))
        sf.erase("carol")
        _sql(dsn, f"INSERT INTO safeface.erased SELECT {alice.row_id}, sealed_sha256, seal_version, mac "
                  f"FROM safeface.erased WHERE row_id = {carol.row_id}")
        _sql(dsn, f"UPDATE safeface.rows SET row_id = 9999, pseudonym = '{HIDDEN}', expires_us = expires_us + 1 "
                  f"WHERE row_id = {alice.row_id}")
        _recorded_not_found(sf, dsn, sf.erase("alice"), alice.row_id)


@pytest.mark.parametrize("how", ["erase", "revoke", "revoke, pseudonym edited"])
def test_a_persons_own_row_edited_by_hand_does_not_block_her_erasure(pg: PgCluster, tmp_path: Path,
                                                                     how: str) -> None:
    """Alice's row, left at its id and under her name, has its expiry edited by hand (no key
    needed): her erasure (or her consent's revocation) was refused for good, "restore the store
    from a backup". It is her row: it must go, on her receipt, which names her (as the log
    does, whatever its pseudonym column was edited to)."""
    ws, dsn = _server_ws(pg, tmp_path)
    img = images()
    with open_sf(ws) as sf:
        alice = sf.enroll(img / "obama.jpg", "alice", "demo", consent(ws, "alice"))
        bob = sf.enroll(img / "biden.jpg", "bob", "demo", consent(ws, "bob"))
        also = f", pseudonym = '{bob.pseudonym}'" if "pseudonym" in how else ""
        _sql(dsn, f"UPDATE safeface.rows SET expires_us = expires_us + 1{also} WHERE row_id = {alice.row_id}")
        receipt = sf.erase("alice") if how == "erase" else sf.revoke(token_id=alice.token_id)
        assert receipt.templates_removed == 1 and receipt.rows == (alice.row_id,)
        assert receipt.subjects == (alice.pseudonym,)
        assert _sql(dsn, "SELECT row_id FROM safeface.rows") == [(bob.row_id,)]
        assert sf.verify_store().ok


def test_a_row_planted_under_a_persons_pseudonym_does_not_block_his_erasure(pg: PgCluster, tmp_path: Path) -> None:
    """A copy of alice's row is inserted by hand under bob's pseudonym (his pseudonym is in the
    clear in the table): bob's erasure was refused for good. It must take his row and the
    planted copy, and leave alice's row as it was."""
    ws, dsn = _server_ws(pg, tmp_path)
    img = images()
    with open_sf(ws) as sf:
        alice = sf.enroll(img / "obama.jpg", "alice", "demo", consent(ws, "alice"))
        bob = sf.enroll(img / "biden.jpg", "bob", "demo", consent(ws, "bob"))
        _sql(dsn, f"INSERT INTO safeface.rows SELECT 9999, '{bob.pseudonym}', purposes, token_id, provenance, "
                  "expires_us, created_at, last_interaction, transform_version, seal_version, sealed, look, look_small "
                  f"FROM safeface.rows WHERE row_id = {alice.row_id}")
        receipt = sf.erase("bob")
        assert receipt.templates_removed == 1 and receipt.rows == (bob.row_id,)
        assert _sql(dsn, "SELECT row_id FROM safeface.rows") == [(alice.row_id,)]
        assert sf.verify_store().ok
        assert [c.subject for c in sf.identify(img / "obama2.jpg", "demo", legal_basis=legal_basis(ws))] == [
            alice.pseudonym]



@pytest.mark.parametrize("bound_to", ["tenant_b", None])
def test_a_note_of_an_erasure_from_another_namespace_does_not_excuse_a_moved_row(
        pg: PgCluster, tmp_path: Path, bound_to: str) -> None:
    """Two namespaces of one database sharing a keyring (a workspace copied, then each copy moved
    to the servers under its own `storage.namespace`) number their rows alike: a note of the
    other's erasure of its row 1, copied here (or one an earlier release wrote, bound to no
    namespace), excused alice's row 1 moved with more columns edited, and her erasure signed a
    receipt while her row stayed. Only a note bound to this namespace excuses a missing row: the
    erasure must record it as not found, naming the row that may be it."""
    from safeface.storage.rows import erased_mark

    ws, dsn = _server_ws(pg, tmp_path)
    img = images()
    with open_sf(ws) as sf:
        alice = sf.enroll(img / "obama.jpg", "alice", "demo", consent(ws, "alice"))
        sf.enroll(img / "biden.jpg", "bob", "demo", consent(ws, "bob"))
        sv, digest = 1, "ab" * 32  # the other namespace's erased row: its own sealed bytes
        note = erased_mark(sf._gallery._keyring, sv, alice.row_id, digest, bound_to)
        _sql(dsn, f"INSERT INTO safeface.erased VALUES ({alice.row_id}, '{digest}', {sv}, '{note}')")
        _sql(dsn, f"UPDATE safeface.rows SET row_id = 9999, pseudonym = '{HIDDEN}', expires_us = expires_us + 1 "
                  f"WHERE row_id = {alice.row_id}")
        _recorded_not_found(sf, dsn, sf.erase("alice"), alice.row_id)


def test_an_erasure_past_a_moved_row_reads_the_erasure_notes_once(pg: PgCluster, tmp_path: Path) -> None:
    """A row the log names is missing (moved by hand): the erasure reads the store's notes of
    earlier erasures to tell the moved row from one an erasure took, once (it read them twice:
    once for what they deleted, once for the notes bound to this namespace)."""
    ws, dsn = _server_ws(pg, tmp_path)
    img = images()
    with open_sf(ws) as sf:
        alice = sf.enroll(img / "obama.jpg", "alice", "demo", consent(ws, "alice"))
        _sql(dsn, f"UPDATE safeface.rows SET row_id = 9999, pseudonym = '{HIDDEN}' WHERE row_id = {alice.row_id}")
        store = sf._gallery
        run = store._sql
        notes_read: list[str] = []

        def counted(query: str, *args: object) -> object:
            if "{ns}.erased e" in query:
                notes_read.append(query)
            return run(query, *args)

        store._sql = counted
        try:
            assert sf.erase("alice").rows == (alice.row_id,)
        finally:
            store._sql = run
        assert len(notes_read) == 1



def test_a_row_hidden_through_her_erasure_and_put_back_is_not_matched_again(pg: PgCluster, tmp_path: Path) -> None:
    """Someone with the app's role (no key) moves alice's row and edits it so that no seal opens
    as hers, lets her erasure go by (recorded as not found, her receipt for 0 templates), then
    puts the row back as it was: its seal held, so after an index rebuild she was identified
    again, as no erased row put back is. It is not matched now, and her next erasure takes it."""
    ws, dsn = _server_ws(pg, tmp_path)
    img = images()
    with open_sf(ws) as sf:
        alice = sf.enroll(img / "obama.jpg", "alice", "demo", consent(ws, "alice"))
        sf.enroll(img / "biden.jpg", "bob", "demo", consent(ws, "bob"))
        a = alice.row_id
        (pseudonym, expires), = _sql(dsn, f"SELECT pseudonym, expires_us FROM safeface.rows WHERE row_id = {a}")
        _sql(dsn, f"UPDATE safeface.rows SET row_id = 9999, pseudonym = '{HIDDEN}', expires_us = expires_us + 1 "
                  f"WHERE row_id = {a}")
        _recorded_not_found(sf, dsn, sf.erase("alice"), a)
        _sql(dsn, f"UPDATE safeface.rows SET row_id = {a}, pseudonym = '{pseudonym}', expires_us = {expires} "
                  "WHERE row_id = 9999")
        sf.rebuild_index()
        assert sf.identify(img / "obama2.jpg", "demo", legal_basis=legal_basis(ws)) == []
        again = sf.erase("alice")
        assert again.rows == (a,) and again.templates_removed == 1
        assert _sql(dsn, f"SELECT row_id FROM safeface.rows WHERE row_id = {a}") == []




def test_a_failing_row_at_her_rows_id_beside_another_failing_row_goes_on_her_receipt(pg: PgCluster,
                                                                                     tmp_path: Path) -> None:
    """A row failing its check at the id of alice's row (hers edited in place, or a decoy put
    there) is taken as hers when no other row opens as it; but with another failing row anywhere
    in the table, her erasure deleted it, left it off her receipt (0 templates) and recorded her
    row "not found, kept", so the store check would name it as deleted behind the guard. It goes
    on her receipt now, the other row named in the entry, kept; and as that one may be hers
    (moved, the decoy left in its place), her row put back under its id later is not matched."""
    ws, dsn = _server_ws(pg, tmp_path)
    img = images()
    with open_sf(ws) as sf:
        alice = sf.enroll(img / "obama.jpg", "alice", "demo", consent(ws, "alice"))
        bob = sf.enroll(img / "biden.jpg", "bob", "demo", consent(ws, "bob"))
        a = alice.row_id
        _sql(dsn, f"CREATE TABLE public.kept AS SELECT * FROM safeface.rows WHERE row_id = {a}")
        _sql(dsn, f"UPDATE safeface.rows SET row_id = 9999, pseudonym = '{HIDDEN}', expires_us = expires_us + 1 "
                  f"WHERE row_id = {a}")
        _sql(dsn, f"INSERT INTO safeface.rows SELECT {a}, pseudonym, purposes, token_id, provenance, expires_us + 1, "
                  "created_at, last_interaction, transform_version, seal_version, sealed, look, look_small "
                  f"FROM safeface.rows WHERE row_id = {bob.row_id}")
        receipt = sf.erase("alice")
        assert receipt.templates_removed == 1 and receipt.rows == (a,)
        last = [e for e in sf.audit_entries() if e.operation == "erase"][-1]
        assert "not found" not in last.note and "rows 9999 fail their integrity" in last.note, last.note
        _sql(dsn, "DELETE FROM safeface.rows WHERE row_id = 9999")
        _sql(dsn, "INSERT INTO safeface.rows SELECT * FROM public.kept")
        sf.rebuild_index()
        assert [c.subject for c in sf.identify(img / "obama2.jpg", "demo", legal_basis=legal_basis(ws))] == []
