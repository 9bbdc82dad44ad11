"""Rows put back after an erasure: someone holding the app's PostgreSQL role, or a DBA restoring
the rows table from last night's dump, brings an erased person's sealed row back under its own
id. Row ids are never given again, and each erasure notes the ids it deleted under the seal key,
so the store knows such a row for one put back: it must not be matched, whatever path its
vector takes back into Milvus (a pending note, `index rebuild`, a scan of the records)."""

from __future__ import annotations

import sys
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
from policy_support import consent, images, legal_basis, open_sf, past_the_skew  # noqa: E402
from server_support import PgCluster  # noqa: E402
from test_server_store_attacks import _server_ws, _sql  # noqa: E402


@pytest.mark.parametrize("notes_too", [False, True], ids=["rows", "rows and erasure notes"])
@pytest.mark.parametrize("back", ["pending note", "index rebuild"])
def test_an_erased_row_put_back_from_an_older_dump_is_not_matched(pg: PgCluster, tmp_path: Path, back: str,
                                                                  notes_too: bool) -> None:
    """A DBA restores alice's row from last night's dump, taken before her erasure; with the
    `erased` table restored too, no note says her row was erased, so it was identified again
    (and verified against under a consent she gave after) until `audit verify` named it. The
    audit log, anchored outside the database, records her erasure: its word decides."""
    ws, dsn = _server_ws(pg, tmp_path)
    img = images()
    with open_sf(ws) as sf:
        alice = sf.enroll(img / "obama.jpg", "alice", "demo", consent(ws, "alice"))
        bob = sf.enroll(img / "biden.jpg", "bob", "demo", consent(ws, "bob"))
        _sql(dsn, "CREATE TABLE public.dump AS SELECT * FROM safeface.rows")
        _sql(dsn, "CREATE TABLE public.dump_erased AS SELECT * FROM safeface.erased")
        sf.erase("alice")
        if notes_too:
            _sql(dsn, "DELETE FROM safeface.erased; INSERT INTO safeface.erased SELECT * FROM public.dump_erased")
        _sql(dsn, f"INSERT INTO safeface.rows SELECT * FROM public.dump WHERE row_id = {alice.row_id}")
        if back == "pending note":
            _sql(dsn, f"INSERT INTO safeface.pending (row_id, op) VALUES ({alice.row_id}, 'upsert')")
            sf.enroll(img / "biden.jpg", "bob", "demo", consent(ws, "bob"))  # any write carries out the note
        else:
            sf.rebuild_index()
        basis = legal_basis(ws)
        assert [c.subject for c in sf.identify(img / "obama2.jpg", "demo", legal_basis=basis)] == []
        assert [c.subject for c in sf.identify(img / "biden.jpg", "demo", legal_basis=basis)] == [bob.pseudonym]
        assert not sf.verify(img / "obama2.jpg", "alice", "demo", consent(ws, "alice", now=past_the_skew())).match
        assert sf.export("alice", "demo", "Acme HR", legal_basis=legal_basis(ws, operations=["transmit"])).records == []
        assert not sf.verify_store().ok  # and the store check still names it
    with open_sf(ws) as sf:  # a handle opened after the restore too
        assert [c.subject for c in sf.identify(img / "obama2.jpg", "demo", legal_basis=legal_basis(ws))] == []


def test_a_new_row_at_the_id_of_an_erased_one_is_matched(pg: PgCluster, tmp_path: Path) -> None:
    """A DBA restores the rows table from a dump taken before alice enrolled: its sequence goes
    back with it, and the next enrolment is given her erased row's id. The note of her erasure
    is about her sealed bytes, not every row that ever holds that id: carol is matched."""
    ws, dsn = _server_ws(pg, tmp_path)
    img = images()
    with open_sf(ws) as sf:
        sf.enroll(img / "biden.jpg", "bob", "demo", consent(ws, "bob"))
        seq = _sql(dsn, "SELECT last_value FROM safeface.rows_row_id_seq")[0][0]
        alice = sf.enroll(img / "obama.jpg", "alice", "demo", consent(ws, "alice"))
        sf.erase("alice")
        _sql(dsn, f"SELECT setval('safeface.rows_row_id_seq', {seq})")  # the dump's sequence, put back
        carol = sf.enroll(img / "obama.jpg", "carol", "demo", consent(ws, "carol"))
        assert carol.row_id == alice.row_id
        basis = legal_basis(ws)
        assert [c.subject for c in sf.identify(img / "obama2.jpg", "demo", legal_basis=basis)] == [carol.pseudonym]


@pytest.mark.parametrize("resealed_by", ["rekey", "touch"])
def test_an_erased_row_put_back_stays_unmatched_once_sealed_again(pg: PgCluster, tmp_path: Path,
                                                                  resealed_by: str) -> None:
    """A re-key seals every stored row again, and an interaction that moves the expiry seals the
    subject's rows again, a row put back after its erasure too: its note follows it to its new
    sealed bytes, so it is not matched once they change."""
    ws, dsn = _server_ws(pg, tmp_path)
    img = images()
    with open_sf(ws) as sf:
        alice = sf.enroll(img / "obama.jpg", "alice", "demo", consent(ws, "alice"))
        sf.enroll(img / "biden.jpg", "bob", "demo", consent(ws, "bob"))
        _sql(dsn, "CREATE TABLE public.dump AS SELECT * FROM safeface.rows")
        sf.erase("alice")
        _sql(dsn, f"INSERT INTO safeface.rows SELECT * FROM public.dump WHERE row_id = {alice.row_id}")
        if resealed_by == "rekey":
            sf.rekey()
        else:
            sf._gallery.touch("alice", new_expiry=datetime.now(timezone.utc) + timedelta(days=30), purpose="demo")
        basis = legal_basis(ws)
        assert [c.subject for c in sf.identify(img / "obama2.jpg", "demo", legal_basis=basis)] == []


@pytest.mark.parametrize("back", ["pending notes", "index rebuild"])
def test_rows_put_back_with_their_notes_take_no_place_in_a_small_top_k(pg: PgCluster, tmp_path: Path,
                                                                       back: str) -> None:
    """A DBA restores the rows and erasure notes of two people erased since (enrolled from the
    very photo later shown), one of whom enrolled again from another photo. The log's word left
    them out after the store's top-k: with top_k=1 they took the only place and no one was
    found, and her put-back row, her best, hid her genuine one. Now they are left out before
    ranking, whether Milvus proposes them or they are scored from the records."""
    ws, dsn = _server_ws(pg, tmp_path)
    img = images()
    with open_sf(ws) as sf:
        for name in ("alice", "dan"):
            sf.enroll(img / "obama2.jpg", name, "demo", consent(ws, name))
        _sql(dsn, "CREATE TABLE public.dump AS SELECT * FROM safeface.rows")
        _sql(dsn, "CREATE TABLE public.dump_erased AS SELECT * FROM safeface.erased")
        sf.erase("alice")
        sf.erase("dan")
        alice = sf.enroll(img / "obama.jpg", "alice", "demo", consent(ws, "alice", now=past_the_skew()))
        _sql(dsn, "DELETE FROM safeface.erased; INSERT INTO safeface.erased SELECT * FROM public.dump_erased")
        _sql(dsn, "INSERT INTO safeface.rows SELECT * FROM public.dump")
        if back == "pending notes":  # lagging rows, scored from the records beside Milvus's proposals
            _sql(dsn, "INSERT INTO safeface.pending (row_id, op) SELECT row_id, 'upsert' FROM public.dump")
        else:
            sf.rebuild_index()
        basis = legal_basis(ws)
        for k in (1, 5):
            assert [c.subject for c in sf.identify(img / "obama2.jpg", "demo", legal_basis=basis, top_k=k)] \
                == [alice.pseudonym]
