"""Attacks on the one door: races with erasure and the filing threshold, rows written behind the
guard, stores restored from older copies, a hand-built SafeFace, a backdating clock, a backend
error inside an authorised call, a deployment edited while open, token ids in the files."""

from __future__ import annotations

import json
import shutil
import sqlite3
import sys
import threading
import datetime as dt
from pathlib import Path
from typing import Any

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
from policy_support import PASSPHRASE, CachedPipeline, consent, edit_config, foreign_consent, images, legal_basis, make_workspace, open_sf  # noqa: E402
from policy_support import last_call  # noqa: E402

from safeface import BackendError, ConfigError, IntegrityError, PolicyViolation, SafeFace  # noqa: E402
from safeface.hazmat.templates import PassphraseKeyring  # noqa: E402
from safeface.policy.tokens import decode_consent  # noqa: E402
from safeface.storage.gallery import Gallery  # noqa: E402
from safeface.workspace.init import init_workspace  # noqa: E402
from safeface.workspace.session import opened  # noqa: E402
from safeface.workspace.trust import load_trust  # noqa: E402


def _trusted(ws: Any) -> Any:
    with opened(ws, PASSPHRASE) as r:
        return load_trust(ws, r.keyring, r.audit).for_guard()


@pytest.fixture()
def imgs() -> Path:
    return images()


class GatedPipeline(CachedPipeline):
    """The real pipeline, held at the embedding step until the test opens the gate: the moment
    between the guard's decision and the store's write that an attacker would race."""

    def __init__(self) -> None:
        super().__init__()
        self.entered = threading.Event()
        self.gate = threading.Event()

    def embed(self, image: Any, **kw: Any) -> Any:
        out = super().embed(image, **kw)
        self.entered.set()
        if not self.gate.wait(30):
            raise TimeoutError("the test never opened the gate")
        return out


def _open(ws: Any, pipeline: Any) -> SafeFace:
    return SafeFace.open(ws.root, PASSPHRASE, pipeline=pipeline)


def _in_thread(fn: Any) -> tuple[threading.Thread, dict[str, Any]]:
    box: dict[str, Any] = {}

    def run() -> None:
        try:
            box["result"] = fn()
        except BaseException as exc:  # handed to the test thread
            box["error"] = exc

    t = threading.Thread(target=run)
    t.start()
    return t, box


@pytest.mark.parametrize("how", ["erase", "revoke-subject", "revoke-token"])
def test_no_row_appears_after_an_erasure_receipt(tmp_path: Path, imgs: Path, how: str) -> None:
    ws = make_workspace(tmp_path / "ws")
    gated = GatedPipeline()
    t = consent(ws, "alice")
    with _open(ws, gated) as sf, open_sf(ws) as other:
        thread, box = _in_thread(lambda: sf.enroll(imgs / "obama.jpg", "alice", "demo", t))
        assert gated.entered.wait(30)  # the guard has let the enrolment through; it is embedding
        if how == "erase":
            receipt = other.erase("alice")
        elif how == "revoke-subject":
            receipt = other.revoke(subject="alice")
        else:
            receipt = other.revoke(token_id=decode_consent(t, _trusted(ws)["consent_issuers"]).token_id)
        assert receipt.templates_removed == 0
        gated.gate.set()
        thread.join(30)
        err = box.get("error")
        assert isinstance(err, PolicyViolation) and err.rule == "CN-05", box
        assert other.records() == [] and sf.records() == []
        last = last_call(other)
        assert (last.operation, last.decision, last.rule) == ("enroll", "refused", "CN-05")
        assert other.identify(imgs / "obama2.jpg", "demo", consent(ws, "bob")) == []
        other.audit_verify()


def test_concurrent_enrolments_never_pass_the_filing_threshold(tmp_path: Path, imgs: Path) -> None:
    ws = make_workspace(tmp_path / "ws", edit=lambda r: r["filing"].__setitem__("threshold", 1))
    g1, g2 = GatedPipeline(), GatedPipeline()
    with _open(ws, g1) as a, _open(ws, g2) as b:
        ta, ra = _in_thread(lambda: a.enroll(imgs / "obama.jpg", "alice", "demo", consent(ws, "alice")))
        tb, rb = _in_thread(lambda: b.enroll(imgs / "biden.jpg", "joe", "demo", consent(ws, "joe")))
        assert g1.entered.wait(30) and g2.entered.wait(30)  # both passed the guard with 0 people stored
        g1.gate.set()
        g2.gate.set()
        ta.join(30)
        tb.join(30)
        outcomes = [r.get("error") for r in (ra, rb)]
        refused = [e for e in outcomes if e is not None]
        assert len(refused) == 1 and isinstance(refused[0], PolicyViolation) and refused[0].rule == "CN-17", outcomes
        assert len({r.pseudonym for r in a.records()}) == 1
        a.audit_verify()


def _behind_the_guard(ws: Any, imgs: Path) -> None:
    """What an app developer with the passphrase can do: open the store directly and add a row."""
    import numpy as np

    kr = PassphraseKeyring.open(ws.keyring, PASSPHRASE)
    with Gallery.open(ws.gallery, kr, 128) as g:
        v = np.random.default_rng(1).standard_normal(128).astype(np.float32)
        g.add("mallory", v, ["demo"], "t-made-up", dt.datetime.now(dt.timezone.utc) + dt.timedelta(days=30))


def test_a_row_added_behind_the_guard_is_named(tmp_path: Path, imgs: Path) -> None:
    ws = make_workspace(tmp_path / "ws")
    with open_sf(ws) as sf:
        sf.enroll(imgs / "obama.jpg", "alice", "demo", consent(ws, "alice"))
        sf.audit_verify()
        assert sf.verify_store().ok
    _behind_the_guard(ws, imgs)
    with open_sf(ws) as sf:
        report = sf.verify_store()
        assert not report.ok
        assert any("behind the guard" in p for p in report.problems)
        assert any("no signed token" in p for p in report.problems)
        with pytest.raises(IntegrityError, match="behind the guard"):
            sf.audit_verify()


def _with_copy(tmp_path: Path, imgs: Path, subject: str) -> tuple[Any, Any]:
    """A workspace with `subject` enrolled (row 1), and a copy of it (`cp -r`: the same keys)."""
    ws = make_workspace(tmp_path / "ws")
    with open_sf(ws) as sf:
        sf.enroll(imgs / "obama.jpg", subject, "demo", consent(ws, subject))
    shutil.copytree(ws.root, tmp_path / "copy")
    return ws, type(ws)(tmp_path / "copy")


def _answered_nowhere(ws: Any, sf: SafeFace, image: Path, subject: str, asker: str) -> None:
    """`subject` (in `image`) is not verified, not identified (under `asker`'s consent) and has
    no record disclosed."""
    assert not sf.verify(image, subject, "demo", consent(ws, subject)).match
    assert sf.identify(image, "demo", consent=consent(ws, asker)) == []
    assert sf.export(subject, "demo", "acme", legal_basis=legal_basis(ws, operations=["transmit"])).records == []


def _copy_rows(src_ws: Any, dst_ws: Any, ids: list[int]) -> None:
    """The rows at `ids` of `src_ws`'s gallery written over (or beside) `dst_ws`'s, as they are:
    no key is needed."""
    src, dst = sqlite3.connect(src_ws.gallery), sqlite3.connect(dst_ws.gallery)
    rows = src.execute(f"SELECT * FROM rows WHERE row_id IN ({', '.join('?' * len(ids))})", ids).fetchall()
    assert len(rows) == len(ids)
    dst.executemany("DELETE FROM rows WHERE row_id = ?", [(r[0],) for r in rows])
    dst.executemany(f"INSERT INTO rows VALUES ({', '.join('?' * len(rows[0]))})", rows)
    dst.commit()
    src.close()
    dst.close()


def test_a_row_copied_from_a_copy_of_the_workspace_is_never_matched(tmp_path: Path, imgs: Path) -> None:
    """A copy of the workspace shares its keys, so a row sealed there opens here: copied into
    `gallery.db` without any key, bob (enrolled in the copy only) was identified, verified and
    exported here until `audit verify` named the row. No enrolment here names it: no call uses
    it, and the check still names it."""
    ws, copy = _with_copy(tmp_path, imgs, "alice")
    with open_sf(copy) as sf:
        sf.enroll(imgs / "biden.jpg", "bob", "demo", consent(copy, "bob"))
        # alice enrolled again there too: a row of a subject this workspace did enrol, under
        # an id none of her enrolments here names.
        sf.enroll(imgs / "obama2.jpg", "alice", "demo", consent(copy, "alice"))
    _copy_rows(copy, ws, [2, 3])
    with open_sf(ws) as sf:
        _answered_nowhere(ws, sf, imgs / "biden.jpg", "bob", "carol")
        # Her own row still matches; the copied one is not disclosed beside it.
        assert sf.verify(imgs / "obama2.jpg", "alice", "demo", consent(ws, "alice")).match
        assert len(sf.export("alice", "demo", "acme", legal_basis=legal_basis(ws, operations=["transmit"])).records) == 1
        problems = " ".join(sf.verify_store().problems)
        assert "row 2 has no" in problems and "row 3 has no" in problems


def test_a_copied_row_at_an_id_this_log_names_for_the_same_person_is_never_matched(tmp_path: Path,
                                                                                    imgs: Path) -> None:
    """Both histories enrolled alice after the copy, each at row 2: the copy's row 2 (biden's
    face, under the copy's consent) written over this workspace's opened here, at an id alice's
    enrolment here names, and verified biden as alice with `audit verify` clean. A row is
    explained only under the token its enrolment entry was let in under."""
    ws, copy = _with_copy(tmp_path, imgs, "carol")
    with open_sf(copy) as sf:
        assert sf.enroll(imgs / "biden.jpg", "alice", "demo", consent(copy, "alice")).row_id == 2
    with open_sf(ws) as sf:
        assert sf.enroll(imgs / "obama2.jpg", "alice", "demo", consent(ws, "alice")).row_id == 2
    _copy_rows(copy, ws, [2])
    with open_sf(ws) as sf:
        _answered_nowhere(ws, sf, imgs / "biden.jpg", "alice", "carol")
        assert "row 2 is filed under another token than its enrolment" in " ".join(sf.verify_store().problems)


def test_a_copied_row_at_an_id_whose_enrolment_never_committed_is_never_matched(
        tmp_path: Path, imgs: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """bob's enrolment here failed after its entry (the store's commit refused), settled as
    `uncommitted`; the copy enrolled bob under the same consent at the same id. Its row, copied
    in, was identified and verified here: the log names the id for bob, under that token, and
    nothing of this workspace was ever stored there."""
    ws, copy = _with_copy(tmp_path, imgs, "carol")
    token = consent(ws, "bob")
    add_many = Gallery.add_many

    def failing(self: Gallery, items: Any, *, decide: Any = None, before_commit: Any = None) -> Any:
        def then_fail(rows: Any) -> None:
            before_commit(rows)
            raise OSError("the store's commit was refused")
        return add_many(self, items, decide=decide, before_commit=then_fail)

    with monkeypatch.context() as m:
        m.setattr(Gallery, "add_many", failing)
        with open_sf(ws) as sf:
            with pytest.raises(BackendError):
                sf.enroll(imgs / "obama2.jpg", "bob", "demo", token)
            assert any(e.operation == "uncommitted" and "rows=2;" in (e.note or "") for e in sf.audit_entries())
    with open_sf(copy) as sf:
        assert sf.enroll(imgs / "biden.jpg", "bob", "demo", token).row_id == 2
    _copy_rows(copy, ws, [2])
    with open_sf(ws) as sf:
        _answered_nowhere(ws, sf, imgs / "biden.jpg", "bob", "carol")
        assert "row 2 was removed" in " ".join(sf.verify_store().problems)


def test_many_copied_rows_of_one_person_cost_identify_one_more_search_not_one_each(
        tmp_path: Path, imgs: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The search answers one row a subject, so bob's rows copied in from a copy of the
    workspace were dropped one a round: 12 rows, 13 searches (41 for 40). Each subject proposed
    has all its rows that no enrolment of it names left out at once."""
    ws, copy = _with_copy(tmp_path, imgs, "carol")
    with open_sf(copy) as sf:
        sf.enroll_many([(imgs / "biden.jpg", "bob", consent(copy, "bob"))] * 12, "demo")
    _copy_rows(copy, ws, list(range(2, 14)))
    searches: list[int] = []
    search = Gallery.search

    def counted(self: Gallery, *a: Any, **kw: Any) -> Any:
        searches.append(1)
        return search(self, *a, **kw)

    monkeypatch.setattr(Gallery, "search", counted)
    with open_sf(ws) as sf:
        assert sf.identify(imgs / "biden.jpg", "demo", consent=consent(ws, "carol")) == []
        assert len(searches) <= 2
        searches.clear()
        assert [c.subject for c in sf.identify(imgs / "obama2.jpg", "demo", consent=consent(ws, "carol"))] == [
            sf.pseudonym("carol")]


def test_a_deleted_row_and_a_restored_older_store_are_named(tmp_path: Path, imgs: Path) -> None:
    ws = make_workspace(tmp_path / "ws")
    with open_sf(ws) as sf:
        sf.enroll(imgs / "obama.jpg", "alice", "demo", consent(ws, "alice"))
        digest_before = sf.verify_store().digest
    backup = tmp_path / "gallery-backup.db"
    _copy_db(ws.gallery, backup)
    with open_sf(ws) as sf:
        sf.enroll(imgs / "biden.jpg", "joe", "demo", consent(ws, "joe"))
        sf.erase("alice")
        assert sf.verify_store().ok and sf.verify_store().digest != digest_before
    _restore_db(backup, ws.gallery)  # alice is back, joe is gone
    with open_sf(ws) as sf:
        problems = " ".join(sf.verify_store().problems)
        assert "removed (erasure" in problems and "missing from the store" in problems
    # A row deleted by hand from the current store is missing too.
    with open_sf(ws) as sf:
        sf.enroll(imgs / "biden.jpg", "ann", "demo", consent(ws, "ann"))
    con = sqlite3.connect(ws.gallery)
    con.execute("DELETE FROM rows WHERE row_id = (SELECT MAX(row_id) FROM rows)")
    con.commit()
    con.close()
    with open_sf(ws) as sf:
        assert any("missing from the store" in p for p in sf.verify_store().problems)


def _copy_db(src: Path, dst: Path) -> None:
    con = sqlite3.connect(src)
    con.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    con.close()
    shutil.copyfile(src, dst)


def _restore_db(src: Path, dst: Path) -> None:
    for suffix in ("-wal", "-shm"):
        Path(str(dst) + suffix).unlink(missing_ok=True)
    shutil.copyfile(src, dst)


def test_a_safeface_is_built_only_by_open(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="only by SafeFace.open"):
        SafeFace(object(), None, None, None, None, None, None, None, {}, "operator", lambda: None, None)  # type: ignore[arg-type]


def test_a_real_workspace_refuses_a_clock(tmp_path: Path) -> None:
    ws = init_workspace(tmp_path / "real", demo=False, passphrase=PASSPHRASE)
    with pytest.raises(ConfigError, match="clock"):
        SafeFace.open(ws.root, PASSPHRASE, clock=lambda: dt.datetime(2020, 1, 1, tzinfo=dt.timezone.utc))


class BrokenPipeline(CachedPipeline):
    def embed(self, image: Any, **kw: Any) -> Any:
        raise RuntimeError("the inference backend fell over")


def test_a_backend_error_inside_an_authorised_call_is_audited(tmp_path: Path) -> None:
    ws = make_workspace(tmp_path / "ws")
    with _open(ws, BrokenPipeline()) as sf:
        with pytest.raises(BackendError, match="nothing was stored"):
            sf.enroll(b"not used", "alice", "demo", consent(ws, "alice"))
        last = last_call(sf)
        assert (last.operation, last.decision) == ("enroll", "failed") and "RuntimeError" in (last.note or "")
        assert sf.records() == []
        # The host pipeline's use is on the record.
        assert any(e.operation == "open" and "host pipeline" in (e.note or "") for e in sf.audit_entries())


def test_a_changed_deployment_is_read_again_by_an_open_workspace(tmp_path: Path, imgs: Path) -> None:
    ws = make_workspace(tmp_path / "ws")
    with open_sf(ws) as sf:
        t = consent(ws, "alice")
        sf.enroll(imgs / "obama.jpg", "alice", "demo", t)
        edit_config(ws, lambda r: r["controller"].__setitem__("name", ""))
        with pytest.raises(PolicyViolation) as info:
            sf.verify(imgs / "obama2.jpg", "alice", "demo", t)
        assert info.value.rule == "CN-01"
        edit_config(ws, lambda r: r["controller"].__setitem__("name", "Demo Operator Ltd."))
        assert sf.verify(imgs / "obama2.jpg", "alice", "demo", t).match


def test_token_ids_never_reach_the_files(tmp_path: Path, imgs: Path) -> None:
    ws = make_workspace(tmp_path / "ws")
    t = consent(ws, "alice")
    raw_id = decode_consent(t, _trusted(ws)["consent_issuers"]).token_id
    with open_sf(ws) as sf:
        sf.enroll(imgs / "obama.jpg", "alice", "demo", t)
        sf.verify(imgs / "obama2.jpg", "alice", "demo", t)
        sf.revoke(token_id=raw_id)
    blob = b"".join(p.read_bytes() for p in ws.root.rglob("*.db*"))
    assert raw_id.encode() not in blob


class SyntheticPipeline:
    """A host pipeline (hazmat) that sees one face in every image and embeds it at random: for
    store-scale tests where the face itself does not matter."""

    def __init__(self) -> None:
        import numpy as np

        self._rng = np.random.default_rng(0)

    def embed(self, image: Any, **kw: Any) -> Any:
        from types import SimpleNamespace

        face = object()
        return SimpleNamespace(embedding=self._rng.standard_normal(128).astype("float32"), face=face, faces=[face])


def test_a_large_purge_is_recorded_so_the_store_check_still_holds(tmp_path: Path) -> None:
    """Hundreds of people expiring at once: every removed row stays named in the log, within its
    field limits, so the store check still holds after the purge."""
    ws = make_workspace(tmp_path / "ws")
    start = dt.datetime.now(dt.timezone.utc)
    with SafeFace.open(ws.root, PASSPHRASE, pipeline=SyntheticPipeline(), clock=lambda: start) as sf:
        sf.enroll_many([(b"", f"p{i}", consent(ws, f"p{i}")) for i in range(250)], "demo")
        assert len(sf.records()) == 250 and sf.verify_store().ok
    later = start + dt.timedelta(days=400)
    with SafeFace.open(ws.root, PASSPHRASE, pipeline=SyntheticPipeline(), clock=lambda: later) as sf:
        assert sf.records() == []
        purges = [e for e in sf.audit_entries() if e.operation == "purge"]
        assert len(purges) >= 3 and all(len(e.subjects) <= 90 for e in purges)
        assert sf.verify_store().ok


def test_a_signed_token_the_guard_cannot_use_is_refused_on_record(tmp_path: Path, imgs: Path) -> None:
    """A consent signed by a trusted issuer whose subject no enrolment would take (300
    characters, a NUL) or whose expiry no calendar holds (year 0) made the guard raise
    InvalidArgument or a bare ValueError while judging: identify, verify and export left no
    audit entry at all (the service answered 500). Each is now a refusal (CN-04, or CN-07 for
    the export's transmit consent) on record."""
    from policy_support import issued_consent, resigned

    ws = make_workspace(tmp_path / "ws")
    with open_sf(ws) as sf:
        _, tok = issued_consent(ws, "placeholder", operations=["verify", "identify", "transmit"])
        for change in ({"subject": "u" * 300}, {"subject": "alice\x00"},
                       {"subject": "alice", "issued_at": -10**12, "expires_at": -62135596801}):
            wire = resigned(ws, tok, **change)
            for call in (lambda: sf.identify(imgs / "obama.jpg", "demo", wire),
                         lambda: sf.verify(imgs / "obama.jpg", "alice", "demo", wire),
                         lambda: sf.export("alice", "demo", "x.example", wire)):
                before = len(sf.audit_entries())
                with pytest.raises(PolicyViolation) as refused:
                    call()
                assert refused.value.rule in ("CN-04", "CN-07")  # CN-07: export's transmit consent
                assert len(sf.audit_entries()) == before + 1 and last_call(sf).decision == "refused"


def test_an_id_refused_as_a_look_alike_is_on_record(tmp_path: Path, imgs: Path) -> None:
    """Enrolment refused an id that prints like another ("al\\u200bice", a Cyrillic "а", a
    full-width "ａ") before its audited call began: the refusal left no entry. It is now made
    inside the call, and recorded as failed (InvalidArgument), in a batch too."""
    from safeface import InvalidArgument

    ws = make_workspace(tmp_path / "ws")
    with open_sf(ws) as sf:
        for odd in ("al\u200bice", "\u0430lice", "\uff41lice"):
            before = len(sf.audit_entries())
            with pytest.raises(InvalidArgument):
                sf.enroll(imgs / "obama.jpg", odd, "demo", foreign_consent(ws, odd))
            e = last_call(sf)
            assert len(sf.audit_entries()) == before + 1 and (e.operation, e.decision) == ("enroll", "failed")
        before = len(sf.audit_entries())
        with pytest.raises(InvalidArgument):
            sf.enroll_many([(imgs / "obama.jpg", "\u0430lice", foreign_consent(ws, "\u0430lice"))], "demo")
        assert len(sf.audit_entries()) == before + 1 and not sf.records()


def test_a_purpose_ended_early_identifies_exports_and_keeps_no_one(tmp_path: Path, imgs: Path) -> None:
    """The operator ended a purpose (an end date of yesterday, assessed): verification was
    refused, but identification still found the people enrolled before, export still disclosed
    them, and the purge kept their templates, which carried the expiry of their enrolment. An
    ended purpose now identifies and exports no one (CN-08), and the purge at open removes its
    templates."""
    ws = make_workspace(tmp_path / "ws")
    with open_sf(ws) as sf:
        tok = consent(ws, "alice", operations=["enroll", "verify", "identify", "transmit"])
        sf.enroll(imgs / "obama.jpg", "alice", "demo", tok)
        sf.enroll(imgs / "biden.jpg", "bob", "demo", consent(ws, "bob"))
        assert sf.identify(imgs / "obama2.jpg", "demo", tok)
    yesterday = (dt.datetime.now(dt.timezone.utc).date() - dt.timedelta(days=1)).isoformat()
    edit_config(ws, lambda raw: raw["purposes"]["demo"].__setitem__("end_date", yesterday))
    with open_sf(ws) as sf:  # the open purges
        assert not sf.records()
        purge = [e for e in sf.audit_entries() if e.operation == "purge"][-1]
        assert "2 expired template(s) removed" in str(purge.note)
        for call in (lambda: sf.identify(imgs / "obama2.jpg", "demo", tok),
                     lambda: sf.export("alice", "demo", "third-party.example", tok),
                     lambda: sf.verify(imgs / "obama2.jpg", "alice", "demo", tok)):
            with pytest.raises(PolicyViolation) as refused:
                call()
            assert refused.value.rule == "CN-08"
        assert sf.audit_verify().entries > 0


def test_an_erasure_hidden_from_the_change_log_still_reaches_an_open_handle(tmp_path: Path, imgs: Path) -> None:
    """Another process's erasure reaches an open handle (a service worker) through the store's
    change log. Deleting the erasure's rows from that log (and setting its counter back) kept the
    erased person's template in the handle's memory: it went on identifying her after further
    honest enrolments and erasures. A match is now confirmed against the store's rows; one that
    is gone makes the handle read the store whole."""
    ws = make_workspace(tmp_path / "ws")
    bob = consent(ws, "bob", operations=["enroll", "identify"])
    with open_sf(ws) as admin:
        admin.enroll(imgs / "obama.jpg", "alice", "demo", consent(ws, "alice"))
        admin.enroll(imgs / "biden.jpg", "bob", "demo", bob)
    with open_sf(ws) as service:
        alice = service.pseudonym("alice")
        assert alice in {c.subject for c in service.identify(imgs / "obama2.jpg", "demo", bob)}
        with open_sf(ws) as admin:
            admin.erase("alice")
        with sqlite3.connect(ws.gallery) as db:
            db.execute("DELETE FROM changes WHERE op = 'delete'")
            db.execute("UPDATE sqlite_sequence SET seq = (SELECT MAX(seq) FROM changes) WHERE name = 'changes'")
        with open_sf(ws) as admin:  # honest traffic: the handle sees new changes, none of the erasure
            admin.enroll(imgs / "obama.jpg", "carol", "demo", consent(ws, "carol"))
            admin.erase("carol")
        assert alice not in {c.subject for c in service.identify(imgs / "obama2.jpg", "demo", bob)}


@pytest.mark.parametrize("how", ["deleted, counter set back", "older copy restored"])
def test_a_lost_row_stays_named_after_the_next_enrolment(tmp_path: Path, imgs: Path, how: str) -> None:
    """The store's row counter is a table anyone with the file can edit, and an older copy of
    the store carries an older one: the next honest enrolment took the lost row's id, and the
    log's two entries naming that id explained the one row, so the check passed. The counter is
    now raised past every id the log named before an enrolment (recorded), and the lost row
    stays named."""
    ws = make_workspace(tmp_path / "ws")
    with open_sf(ws) as sf:
        sf.enroll(imgs / "obama.jpg", "alice", "demo", consent(ws, "alice"))
        if how == "older copy restored":
            sf.close()
            _copy_db(ws.gallery, tmp_path / "older.db")
            sf = open_sf(ws)
        bob = sf.enroll(imgs / "biden.jpg", "bob", "demo", consent(ws, "bob"))
        sf.close()
    if how == "older copy restored":
        _restore_db(tmp_path / "older.db", ws.gallery)
    else:
        with sqlite3.connect(ws.gallery) as db:
            db.execute("DELETE FROM rows WHERE row_id = ?", (bob.row_id,))
            db.execute("UPDATE sqlite_sequence SET seq = ? WHERE name = 'rows'", (bob.row_id - 1,))
    with open_sf(ws) as sf:
        carol = sf.enroll(imgs / "obama2.jpg", "carol", "demo", consent(ws, "carol"))
        assert carol.row_id > bob.row_id
        assert any(e.operation == "store-counter" for e in sf.audit_entries())
        report = sf.verify_store()
        assert any(f"row {bob.row_id} was enrolled (audit) but is missing" in p for p in report.problems)


def test_the_public_deployment_is_a_copy_the_guard_does_not_judge_by(tmp_path: Path, imgs: Path) -> None:
    """`SafeFace.deployment` handed out the object the guard judged by: an app lowered its
    matching threshold to 0.05 and added a purpose of 100 years in memory (its assessment's
    digest set to match), and a stranger verified as alice while alice was enrolled for a
    purpose no assessment covered. Changing what the property gives changes nothing judged."""
    import dataclasses

    ws = make_workspace(tmp_path / "ws")
    with open_sf(ws) as sf:
        t = consent(ws, "alice")
        sf.enroll(imgs / "obama.jpg", "alice", "demo", t)
        dep = sf.deployment
        dep.raw.setdefault("matching", {})["threshold"] = 0.05
        dep.purposes["marketing"] = dataclasses.replace(dep.purposes["demo"], name="marketing", retention_days=36500)
        dep.raw["assessment"]["covers"] = dep.config_digest()
        assert not sf.verify(imgs / "biden.jpg", "alice", "demo", t).match
        with pytest.raises(PolicyViolation):
            sf.enroll(imgs / "obama2.jpg", "alice", "marketing", foreign_consent(ws, "alice", ["marketing"]))
        assert "marketing" not in sf.deployment.purposes


@pytest.mark.parametrize("edit", ["a setting written twice", "nested too deep to parse"])
def test_a_deployment_that_no_longer_loads_stops_processing_but_not_erasure(tmp_path: Path, imgs: Path,
                                                                           edit: str) -> None:
    """Erasure and withdrawal work even when the deployment may not process; but a
    deployment.json that no longer loaded (a setting written twice, broken JSON) failed every
    call, erasure included: whoever could write the file kept people from their erasure. An
    erasure or revocation goes on under the last reading that loaded; processing stays refused.
    (Brackets nested thousands deep raised RecursionError, not ConfigError, and still did.)"""
    ws = make_workspace(tmp_path / "ws")
    with open_sf(ws) as sf:
        t = consent(ws, "alice")
        sf.enroll(imgs / "obama.jpg", "alice", "demo", t)
        sf.enroll(imgs / "biden.jpg", "bob", "demo", consent(ws, "bob"))
        good = ws.config.read_text()
        extra = ('"profiles": ["cn-2025"], "profiles": ["us-bipa"]' if edit == "a setting written twice"
                 else '"notes": ' + "[" * 5000 + "]" * 5000)
        ws.config.write_text(good.rstrip()[:-1] + f", {extra}}}\n")
        with pytest.raises(ConfigError):
            sf.verify(imgs / "obama2.jpg", "alice", "demo", t)
        assert sf.erase("alice").templates_removed == 1
        assert sf.revoke(subject="bob").templates_removed == 1
        assert not sf.records()
        ws.config.write_text(good)
        assert sf.audit_verify().entries > 0


def test_a_purposes_column_respelled_by_hand_fails_the_rows_check(tmp_path: Path, imgs: Path) -> None:
    """The integrity check parsed the purposes column, so '["\\u0064emo"]' (the same JSON, spelled
    otherwise) opened as "demo", while the purge of an ended purpose, matching the column's text,
    passed the row by. The column must read exactly as written."""
    ws = make_workspace(tmp_path / "ws")
    with open_sf(ws) as sf:
        sf.enroll(imgs / "obama.jpg", "alice", "demo", consent(ws, "alice"))
    with sqlite3.connect(ws.gallery) as db:
        db.execute("UPDATE rows SET purposes = ?", ('["\\u0064emo"]',))
    with pytest.raises(IntegrityError, match="purposes column is not as written"):
        open_sf(ws)


def test_a_retention_past_the_calendar_on_a_dated_purpose_does_not_stop_erasure(tmp_path: Path, imgs: Path) -> None:
    """retention_days of 10**12 on a purpose with an end date made the purge at open overflow
    the calendar, so no process could open the workspace, not even to erase. The purpose simply
    never ends by that date; processing is refused by validation; erasure works."""
    ws = make_workspace(tmp_path / "ws")
    with open_sf(ws) as sf:
        sf.enroll(imgs / "obama.jpg", "alice", "demo", consent(ws, "alice"))
    raw = json.loads(ws.config.read_text())
    raw["purposes"]["demo"]["retention_days"] = 10**12
    raw["purposes"]["demo"]["end_date"] = "2030-01-01"
    ws.config.write_text(json.dumps(raw))
    with open_sf(ws) as sf:
        assert sf.erase("alice").templates_removed == 1
