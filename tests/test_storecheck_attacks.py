"""The store check names what the log alone shows and what a key holder's re-sealed row hides.

Without keys, someone who can write gallery.db deletes a row (or restores an older copy) and
sets the row id counter back: the next honest enrolment takes the lost row's id, and the log's
two enrolments naming one id are all that is left of the loss. An open handle that missed an
erasure goes on finding the erased person: only the log's identify entries show it. With the
keys, a host re-seals a row with purposes its consent never gave, another pseudonym, or an
expiry decades out: the seal verifies, so only the token and the log can say it is wrong. Each
attack must be named by `verify_store()` and `audit_verify()`; the legitimate paths (an
interaction moving the expiry under us-bipa, a re-key, bulk and legal-basis enrolments, an
identification judged before an erasure and recorded after it, a re-enrolment after an
erasure) must not be.
"""

from __future__ import annotations

import datetime as dt
import json
import shutil
import sqlite3
import sys
from pathlib import Path
from typing import Any, Optional

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
from policy_support import (PASSPHRASE, Clock, consent, images, legal_basis, make_workspace, open_sf,  # noqa: E402
                            past_the_skew)

from safeface import IntegrityError  # noqa: E402
from safeface.storage.gallery import Gallery  # noqa: E402
from safeface.storage.rows import ROW_COLS, seal_row, to_us, unseal_row  # noqa: E402
from safeface.workspace.passphrase import open_keyring  # noqa: E402
from safeface.workspace.paths import WorkspacePaths  # noqa: E402

IMG = images()


def _named(paths: WorkspacePaths, phrase: str, clock: Optional[Clock] = None) -> list[str]:
    """The store check's problems holding `phrase`; audit_verify must refuse the workspace too."""
    with open_sf(paths, clock) as sf:
        problems = [p for p in sf.verify_store().problems if phrase in p]
        with pytest.raises(IntegrityError):
            sf.audit_verify()
    return problems


def _clean(sf: Any) -> None:
    report = sf.verify_store()
    assert report.ok, report.problems
    sf.audit_verify()


def _reseal(paths: WorkspacePaths, row_id: int, *, purposes: Optional[list[str]] = None,
            expires: Optional[dt.datetime] = None, pseudonym: Optional[str] = None,
            token_ref: Optional[str] = None) -> None:
    """Re-seal a row in place with the keys (what a host using hazmat can do): the seal verifies."""
    keyring = open_keyring(paths, PASSPHRASE)
    g = Gallery.open(paths.gallery, keyring, 128)
    keys = g._require_keys()
    g.close()
    db = sqlite3.connect(str(paths.gallery))
    r = db.execute(f"SELECT {ROW_COLS} FROM rows WHERE row_id = ?", (row_id,)).fetchone()
    entry, template, token = unseal_row(keys, r, 128)
    (rid, pseud, old_purposes, token_id, prov, exp_us, *_rest) = r
    new_purposes = sorted(purposes) if purposes is not None else json.loads(old_purposes)
    new_exp = to_us(expires, "expires") if expires is not None else exp_us
    new_pseud = pseudonym or pseud
    new_ref = token_ref or token_id
    looks = db.execute("SELECT look, look_small FROM rows WHERE row_id = ?", (row_id,)).fetchone()
    sealed = seal_row(keys, rid, new_pseud, new_purposes, new_ref, prov, new_exp, template, token,
                      visible=entry.visible, masked_enrolment=entry.masked_enrolment, looks=tuple(looks))
    db.execute("UPDATE rows SET sealed = ?, purposes = ?, expires_us = ?, pseudonym = ?, token_id = ? WHERE row_id = ?",
               (sealed, json.dumps(new_purposes), new_exp, new_pseud, new_ref, rid))
    db.execute("INSERT INTO changes (row_id, op) VALUES (?, 'upsert')", (rid,))
    db.commit()
    db.close()


# --- a row id handed out twice -----------------------------------------------------------------

def _without_counter_raise(sf: Any) -> Any:
    """The handle as a writer that never compares the store's id counter with the log (an earlier
    release, or another program writing gallery.db): the set-back counter hands out a lost id."""
    sf._gallery.never_committed = lambda ids: []
    return sf


def test_a_row_deleted_by_hand_with_its_id_counter_set_back_stays_named_after_the_next_enrolment(
        tmp_path: Path) -> None:
    """Attack: bob's row is deleted from gallery.db and sqlite_sequence lowered, so the next
    enrolment (carol, by a writer that does not raise the counter first) takes bob's id and the
    log's "rows=" of both enrolments are satisfied by carol's row. Result: named, with both
    enrolment entries, as an id handed out twice."""
    paths = make_workspace(tmp_path / "ws")
    with open_sf(paths) as sf:
        sf.enroll(IMG / "obama.jpg", "alice", "demo", consent(paths, "alice"))
        bob = sf.enroll(IMG / "biden.jpg", "bob", "demo", consent(paths, "bob"))
        _clean(sf)
    db = sqlite3.connect(str(paths.gallery))
    db.execute("DELETE FROM rows WHERE row_id = ?", (bob.row_id,))
    db.execute("UPDATE sqlite_sequence SET seq = ? WHERE name = 'rows'", (bob.row_id - 1,))
    db.commit()
    db.close()
    with _without_counter_raise(open_sf(paths)) as sf:
        carol = sf.enroll(IMG / "obama.jpg", "carol", "demo", consent(paths, "carol"))
        assert carol.row_id == bob.row_id and not sf.records("bob")
        seqs = [e.seq for e in sf.audit_entries() if e.operation == "enroll" and e.decision == "allowed"
                and f"rows={bob.row_id};" in (e.note or "")]
    assert len(seqs) == 2
    named = _named(paths, "handed out its id twice")
    assert len(named) == 1 and f"row {bob.row_id} " in named[0]
    assert f"entries {seqs[0]} and {seqs[1]}" in named[0]


def test_a_gallery_restored_from_an_older_copy_stays_named_after_the_next_enrolment(tmp_path: Path) -> None:
    """Attack: gallery.db is put back from a copy taken before bob enrolled (no hand edit at all);
    the restored counter hands bob's id to carol (enrolled by a writer that does not raise the
    counter first). Result: named as an id handed out twice."""
    paths = make_workspace(tmp_path / "ws")
    with open_sf(paths) as sf:
        sf.enroll(IMG / "obama.jpg", "alice", "demo", consent(paths, "alice"))
    con = sqlite3.connect(str(paths.gallery))
    con.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    con.close()
    backup = tmp_path / "gallery-backup.db"
    shutil.copyfile(paths.gallery, backup)
    with open_sf(paths) as sf:
        bob = sf.enroll(IMG / "biden.jpg", "bob", "demo", consent(paths, "bob"))
    for suffix in ("-wal", "-shm"):
        Path(str(paths.gallery) + suffix).unlink(missing_ok=True)
    shutil.copyfile(backup, paths.gallery)
    with _without_counter_raise(open_sf(paths)) as sf:
        carol = sf.enroll(IMG / "obama.jpg", "carol", "demo", consent(paths, "carol"))
    assert carol.row_id == bob.row_id
    named = _named(paths, "handed out its id twice")
    assert len(named) == 1 and f"row {bob.row_id} " in named[0]


# --- an erased subject still found -------------------------------------------------------------

def _stale_worker(paths: WorkspacePaths) -> tuple[Any, str, str]:
    """alice and bob enrolled; a worker's handle whose index stops following the store (what a
    deleted change-log row in gallery.db led to): its searches answer as they did before alice
    was erased elsewhere."""
    bob_consent = consent(paths, "bob", operations=["enroll", "verify", "identify"])
    with open_sf(paths) as admin:
        admin.enroll(IMG / "obama.jpg", "alice", "demo", consent(paths, "alice"))
        admin.enroll(IMG / "biden.jpg", "bob", "demo", bob_consent)
    worker = open_sf(paths)
    search = worker._gallery.search
    seen: dict[Any, Any] = {}

    def remembered(*a: Any, **kw: Any) -> Any:
        return seen.setdefault(kw.get("path"), search(*a, **kw))

    worker._gallery.search = remembered
    alice = worker.pseudonym("alice")
    assert any(c.subject == alice for c in worker.identify(IMG / "obama2.jpg", "demo", bob_consent))
    with open_sf(paths) as admin:
        admin.erase("alice")
    return worker, alice, bob_consent


class _EveryRow(set[int]):
    """What a handle of a release before the settled answer (SafeFace._held_now) took as held:
    every row it had read."""

    def __contains__(self, _: object) -> bool:
        return True

    def __bool__(self) -> bool:
        return True


_EVERY_ROW = _EveryRow()


def test_an_erased_subject_found_by_a_stale_handle_is_named(tmp_path: Path) -> None:
    """Attack: an open handle missed alice's erasure and identifies her after it. Result: the
    identify leaves her row out (the log records its removal: SafeFace._not_removed); and where
    a handle did return her (one of a release before that check, as here with it taken out), the
    identify entry naming her, judged after her erasure entry with no enrolment of her since, is
    named."""
    paths = make_workspace(tmp_path / "ws")
    worker, alice, bob_consent = _stale_worker(paths)
    try:
        assert not any(c.subject == alice for c in worker.identify(IMG / "obama2.jpg", "demo", bob_consent))
        worker._not_removed = lambda found, *_: found  # type: ignore[method-assign]
        worker._held_now = lambda _: _EVERY_ROW  # type: ignore[method-assign]  # nor the settled answer
        found = worker.identify(IMG / "obama2.jpg", "demo", bob_consent)
        assert any(c.subject == alice for c in found)
    finally:
        worker.close()
    named = _named(paths, "still held an erased subject's template")
    assert len(named) == 1 and alice[:14] in named[0]


def _put_back(paths: WorkspacePaths, dump: list[Any]) -> None:
    """Rows dumped from gallery.db before an erasure, inserted again by hand (no key needed)."""
    con = sqlite3.connect(str(paths.gallery))
    con.executemany(f"INSERT INTO rows VALUES ({', '.join('?' * len(dump[0]))})", dump)
    con.commit()
    con.close()


def test_rows_put_back_after_an_erasure_take_no_place_in_a_small_top_k(tmp_path: Path) -> None:
    """Attack: someone who can write gallery.db puts back, from a copy, the rows of two people
    erased since (enrolled from the very photo later shown), one of whom enrolled again from
    another photo. The log leaves them out, but it did so after the store's top-k: with
    top_k=1 the put-back rows took the only place and the identify found no one, and the
    re-enrolled person's put-back row stood as her best and hid her genuine one. Result: they
    are left out before ranking; her genuine row is found."""
    paths = make_workspace(tmp_path / "ws")
    with open_sf(paths) as sf:
        for name in ("alice", "dan"):
            sf.enroll(IMG / "obama2.jpg", name, "demo", consent(paths, name))
        con = sqlite3.connect(str(paths.gallery))
        dump = con.execute("SELECT * FROM rows").fetchall()
        con.close()
        sf.erase("alice")
        sf.erase("dan")
        alice = sf.enroll(IMG / "obama.jpg", "alice", "demo", consent(paths, "alice", now=past_the_skew()))
    _put_back(paths, dump)
    with open_sf(paths) as sf:
        basis = legal_basis(paths)
        for k in (1, 5):
            assert [c.subject for c in sf.identify(IMG / "obama2.jpg", "demo", legal_basis=basis, top_k=k)] \
                == [alice.pseudonym]


def test_an_identification_judged_before_an_erasure_and_recorded_after_it_is_not_named(tmp_path: Path) -> None:
    """No false alarm: alice is found by a search that ran before her erasure (in another handle)
    was written, but the identify entry lands after the erasure entry; its judging point is before
    it, so nothing is named."""
    paths = make_workspace(tmp_path / "ws")
    bob_consent = consent(paths, "bob", operations=["enroll", "verify", "identify"])
    with open_sf(paths) as sf:
        sf.enroll(IMG / "obama.jpg", "alice", "demo", consent(paths, "alice"))
        sf.enroll(IMG / "biden.jpg", "bob", "demo", bob_consent)
    with open_sf(paths) as worker:
        search = worker._gallery.search

        def search_then_erase(*a: Any, **kw: Any) -> Any:
            out = search(*a, **kw)
            if not erased:
                with open_sf(paths) as admin:
                    admin.erase("alice")
                erased.append(True)
            return out

        erased: list[bool] = []
        worker._gallery.search = search_then_erase
        # (Its answer now leaves out a row erased before it returns, SafeFace._not_removed; a
        # handle that returned her, as one of a release before that check did, is no alarm.)
        worker._not_removed = lambda found, *_: found  # type: ignore[method-assign]
        worker._held_now = lambda _: _EVERY_ROW  # type: ignore[method-assign]  # nor the settled answer
        alice = worker.pseudonym("alice")
        assert any(c.subject == alice for c in worker.identify(IMG / "obama2.jpg", "demo", bob_consent))
        worker._gallery.search = search
        entries = worker.audit_entries()
        erase = max(e.seq for e in entries if e.operation == "erase")
        ident = [e for e in entries if e.operation == "identify" and e.decision == "allowed"][-1]
        assert ident.seq > erase and alice in ident.subjects
        _clean(worker)


def test_an_erased_subject_enrolled_again_and_found_is_not_named(tmp_path: Path) -> None:
    """No false alarm: alice is erased, enrols again under a new consent and is found: the
    enrolment between the erasure and the identification explains it."""
    clock = Clock(dt.datetime.now(dt.timezone.utc) - dt.timedelta(minutes=3))  # the erasure, 3 minutes ago
    paths = make_workspace(tmp_path / "ws", today=clock.now.date())
    bob_consent = consent(paths, "bob", operations=["enroll", "verify", "identify"], now=clock.now)
    with open_sf(paths, clock) as sf:
        sf.enroll(IMG / "obama.jpg", "alice", "demo", consent(paths, "alice", now=clock.now))
        sf.enroll(IMG / "biden.jpg", "bob", "demo", bob_consent)
        sf.erase("alice")
        alice = sf.pseudonym("alice")
        assert not any(c.subject == alice for c in sf.identify(IMG / "obama2.jpg", "demo", bob_consent))
        clock.now = dt.datetime.now(dt.timezone.utc)  # a consent given afresh, past the skew after the erasure
        sf.enroll(IMG / "obama.jpg", "alice", "demo", consent(paths, "alice", now=clock.now))
        assert any(c.subject == alice for c in sf.identify(IMG / "obama2.jpg", "demo", bob_consent))
        _clean(sf)


# --- a row re-sealed with the keys -------------------------------------------------------------

def _enrolled(paths: WorkspacePaths) -> int:
    with open_sf(paths) as sf:
        row = sf.enroll(IMG / "obama.jpg", "alice", "demo", consent(paths, "alice"))
        _clean(sf)
    return int(row.row_id)


def test_purposes_widened_by_a_key_holder_are_named(tmp_path: Path) -> None:
    """Attack: alice's row re-sealed with the keys for "demo" and "surveillance" (she consented to
    demo only). Result: named against her consent and against her enrolment entry."""
    paths = make_workspace(tmp_path / "ws")
    rid = _enrolled(paths)
    _reseal(paths, rid, purposes=["demo", "surveillance"])
    named = _named(paths, "widened behind the guard")
    assert len(named) == 2 and all(f"row {rid} " in p and "surveillance" in p for p in named)


def test_a_purpose_the_consent_gave_but_the_enrolment_did_not_is_named(tmp_path: Path) -> None:
    """Attack: alice consented to "demo" and "marketing" but was enrolled for "demo"; her row is
    re-sealed for both. Result: named against the enrolment entry's purpose."""
    def add_marketing(raw: dict[str, Any]) -> None:
        raw["purposes"]["marketing"] = dict(raw["purposes"]["demo"], description="offers to known customers")

    paths = make_workspace(tmp_path / "ws", edit=add_marketing)
    with open_sf(paths) as sf:
        rid = sf.enroll(IMG / "obama.jpg", "alice", "demo", consent(paths, "alice", ["demo", "marketing"])).row_id
        _clean(sf)
    _reseal(paths, rid, purposes=["demo", "marketing"])
    named = _named(paths, "widened behind the guard")
    assert len(named) == 1 and "was enrolled for 'demo'" in named[0]


@pytest.mark.parametrize("how", ["resealed", "touched"])
def test_an_expiry_moved_out_by_a_key_holder_is_named(tmp_path: Path, how: str) -> None:
    """Attack: alice's row (30 days' retention) re-sealed to expire in 2099, or moved 100 years out
    through the storage module's Gallery.touch; purge would never remove it. Result: named as a
    retention extended behind the guard."""
    paths = make_workspace(tmp_path / "ws")
    rid = _enrolled(paths)
    far = dt.datetime.now(dt.timezone.utc) + dt.timedelta(days=36500)
    if how == "resealed":
        _reseal(paths, rid, expires=far)
    else:
        g = Gallery.open(paths.gallery, open_keyring(paths, PASSPHRASE), 128)
        try:
            assert g.touch("alice", new_expiry=far, purpose="demo") == 1
        finally:
            g.close()
    named = _named(paths, "retention was extended behind the guard")
    assert len(named) == 1 and f"row {rid} " in named[0] and far.date().isoformat() in named[0]


def test_a_row_refiled_under_another_pseudonym_by_a_key_holder_is_named(tmp_path: Path) -> None:
    """Attack: alice's row re-sealed under bob's pseudonym, so bob verifies with alice's face.
    Result: named against alice's consent and against her enrolment entry."""
    paths = make_workspace(tmp_path / "ws")
    rid = _enrolled(paths)
    with open_sf(paths) as sf:
        bob = sf.pseudonym("bob")
    _reseal(paths, rid, pseudonym=bob)
    named = _named(paths, "re-filed behind the guard")
    assert len(named) == 2 and all(f"row {rid} " in p for p in named)


# --- legitimate paths --------------------------------------------------------------------------

def test_an_interaction_that_moves_the_expiry_is_not_named(tmp_path: Path) -> None:
    """No false alarm: under us-bipa a match moves the row's expiry to three years after the
    interaction, later than its enrolment recorded; the log's match entry allows it."""
    clock = Clock(dt.datetime.now(dt.timezone.utc) - dt.timedelta(days=200))
    paths = make_workspace(tmp_path / "ws", profiles=("us-bipa",), today=clock.now.date(),
                           edit=lambda r: r["purposes"]["demo"].__setitem__("retention_days", 5000))
    with open_sf(paths, clock) as sf:
        t = consent(paths, "alice", days=5000, now=clock.now)
        enrolled = sf.enroll(IMG / "obama.jpg", "alice", "demo", t)
        clock.advance(days=200)
        assert sf.verify(IMG / "obama2.jpg", "alice", "demo", t).match
        row = sf.records("alice")[0]
        assert row.expires_at.date() > enrolled.expires_at.date()
        _clean(sf)


def test_rekey_bulk_and_legal_basis_enrolments_are_not_named(tmp_path: Path) -> None:
    """No false alarm: a bulk enrolment, a legal-basis enrolment, matches and a re-key (which
    re-seals every row) leave nothing for the store check to name."""
    paths = make_workspace(tmp_path / "ws")
    with open_sf(paths) as sf:
        sf.enroll_many([(IMG / "obama.jpg", "alice", consent(paths, "alice")),
                        (IMG / "biden.jpg", "bob", consent(paths, "bob"))], "demo")
        sf.enroll(IMG / "obama2.jpg", "carol", "demo", legal_basis=legal_basis(paths, operations=["enroll"]))
        t = consent(paths, "alice")
        assert sf.verify(IMG / "obama2.jpg", "alice", "demo", t).match
        _clean(sf)
        sf.rekey()
        _clean(sf)
    with open_sf(paths) as sf:
        _clean(sf)



def test_a_host_that_sets_the_sdks_clock_back_or_patches_the_subject_check_is_named(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The host process (no keys, no hazmat) set its handle's clock back, so a consent that had
    expired enrolled carol, and patched the guard's subject comparison, so bob's face was
    enrolled under alice's consent; the log's entries carried their true times and `audit
    verify` found nothing. The entry's own time is held to the token's validity, and the row's
    pseudonym to its consent's subject."""
    import safeface.policy.guard as guard_mod

    ws = make_workspace(tmp_path / "ws", today=dt.date.today() - dt.timedelta(days=60))
    imgs = images()
    now = dt.datetime.now(dt.timezone.utc)
    with open_sf(ws) as sf:
        expired = consent(ws, "carol", now=now - dt.timedelta(days=40), days=30)
        sf._clock = lambda: now - dt.timedelta(days=20)
        sf.enroll(imgs / "obama.jpg", "carol", "demo", expired)
        sf._clock = lambda: dt.datetime.now(dt.timezone.utc)
        monkeypatch.setattr(guard_mod, "same_subject", lambda a, b: True)
        sf.enroll(imgs / "biden.jpg", "bob", "demo", consent(ws, "alice"))
        monkeypatch.undo()
        problems = sf.verify_store().problems
    assert any("outside its consent's validity" in p for p in problems), problems
    assert any("another pseudonym than its consent's subject" in p for p in problems), problems


def test_an_honest_match_does_not_license_a_longer_retention(tmp_path: Path) -> None:
    """A match entry that recorded no expiry was read as one that may have moved it by up to the
    interaction's 3 years: after one honest match outside us-bipa, a key holder's `touch` kept
    alice's row to 2029 unseen, and each later match added 3 more. A match that moves nothing
    now says so ("expiry kept"), and holds the row to its enrolment's date."""
    paths = make_workspace(tmp_path / "ws")
    with open_sf(paths) as sf:
        t = consent(paths, "alice")
        sf.enroll(IMG / "obama.jpg", "alice", "demo", t)
        assert sf.verify(IMG / "obama2.jpg", "alice", "demo", t).match
        entry = [e for e in sf.audit_entries() if e.operation == "verify"][-1]
        assert "expiry kept" in str(entry.note)
    keyring = open_keyring(paths, PASSPHRASE)
    with Gallery.open(paths.gallery, keyring, 128) as g:
        g.touch("alice", new_expiry=dt.datetime.now(dt.timezone.utc) + dt.timedelta(days=1093), purpose="demo")
    assert _named(paths, "retention was extended behind the guard")


def test_a_row_refiled_under_another_token_is_named_before_and_after_its_withdrawal(tmp_path: Path) -> None:
    """A host holding the keys seals alice's row again under a decoy token reference: the store
    check names it. Her withdrawal of the consent found no row to remove, and the row stayed
    matchable; it takes the rows the log enrolled under the consent now, whatever they say."""
    from policy_support import issued_consent

    paths = make_workspace(tmp_path / "ws")
    with open_sf(paths) as sf:
        wire, tok = issued_consent(paths, "alice")
        row = sf.enroll(images() / "obama.jpg", "alice", "demo", wire)
        decoy = sf.token_ref("decoy-token-id")
        assert sf.verify_store().ok
    _reseal(paths, row.row_id, token_ref=decoy)
    with open_sf(paths) as sf:
        assert any("filed under another token" in p for p in sf.verify_store().problems)
        assert sf.revoke(token_id=tok.token_id).templates_removed == 1
        assert not sf.records()
        problems = sf.verify_store().problems
    assert not problems, problems


def test_a_match_under_one_purpose_never_extends_a_row_of_several_purposes() -> None:
    """A match extends the retention of a row of that one purpose only; a row enrolled for
    several keeps the allowance its enrolment entry gave."""
    import dataclasses

    from safeface.workspace.audit import AuditEntry
    from safeface.workspace.storecheck import read_log

    @dataclasses.dataclass(frozen=True)
    class Row:
        row_id: int
        pseudonym: str
        purposes: tuple[str, ...]

    p = "a" * 64
    enrol = AuditEntry(1, "2026-01-01T00:00:00+00:00", "enroll", None, "t-" + "0" * 32, "consent", (p,), "allowed",
                       None, "rows=5 expires 2026-02-01")
    match = AuditEntry(2, "2026-01-10T00:00:00+00:00", "verify", "access", "t-" + "0" * 32, "consent", (p,),
                       "allowed", None, "match expires 2029-01-10")
    log = read_log([enrol, match])
    enrolled = log.enrolment[5]
    assert log.kept_until(Row(5, p, ("access",)), enrolled) == dt.date(2029, 1, 10)
    assert log.kept_until(Row(5, p, ("access", "payroll")), enrolled) == dt.date(2026, 2, 1)


@pytest.mark.parametrize("change", [
    {"row_id": 8}, {"pseudonym": "q" * 64}, {"token_id": "u" * 64}, {"purposes": ("access", "payroll")},
    {"expires_at": dt.datetime(2030, 1, 1, tzinfo=dt.timezone.utc)}])
def test_the_store_digest_follows_every_field_it_describes(change: dict[str, Any]) -> None:
    """Two checks are compared by their digest: a retention extended, a purpose added or a row
    filed elsewhere between them must change it; so must another key."""
    import dataclasses

    from safeface.workspace.storecheck import rows_digest

    @dataclasses.dataclass(frozen=True)
    class Row:
        row_id: int
        pseudonym: str
        token_id: str
        purposes: tuple[str, ...]
        expires_at: dt.datetime

    base = Row(7, "p" * 64, "t" * 64, ("access",), dt.datetime(2027, 1, 1, tzinfo=dt.timezone.utc))
    key = b"k" * 32
    assert rows_digest(key, [base]) != rows_digest(key, [dataclasses.replace(base, **change)])
    assert rows_digest(key, [base]) != rows_digest(b"j" * 32, [base])


def test_many_rows_of_one_subject_put_back_are_left_out_in_one_round(tmp_path: Path, monkeypatch: Any) -> None:
    """Attack: someone who can write gallery.db puts back many erased rows of one person, all
    nearer the probe than her genuine row. The search answers one row a subject (its best), so
    identify left out one put-back row a round: as many full searches and log reads as rows put
    back. Result: every row the log records removed for a subject it proposed is left out at
    once; the search runs in two rounds and her genuine row is found."""
    paths = make_workspace(tmp_path / "ws")
    with open_sf(paths) as sf:
        sf.enroll_many([(IMG / "obama2.jpg", "alice", consent(paths, "alice"))] * 6, "demo")
        con = sqlite3.connect(str(paths.gallery))
        dump = con.execute("SELECT * FROM rows").fetchall()
        con.close()
        sf.erase("alice")
        alice = sf.enroll(IMG / "obama.jpg", "alice", "demo", consent(paths, "alice", now=past_the_skew()))
    _put_back(paths, dump)
    with open_sf(paths) as sf:
        rounds: set[frozenset[int]] = set()
        search = sf._gallery.search

        def counted(*args: Any, **kwargs: Any) -> Any:
            rounds.add(frozenset(kwargs.get("exclude", ())))
            return search(*args, **kwargs)

        monkeypatch.setattr(sf._gallery, "search", counted)
        got = sf.identify(IMG / "obama2.jpg", "demo", legal_basis=legal_basis(paths), top_k=1)
        assert [c.subject for c in got] == [alice.pseudonym]
        assert len(rounds) <= 2, f"{len(rounds)} rounds for 6 rows put back"
