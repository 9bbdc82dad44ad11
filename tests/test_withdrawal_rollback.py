"""A withdrawn consent stays withdrawn when the policy state forgets it. Someone who can write
the workspace but holds no key puts back a copy of policy.db taken before a revocation or an
erasure, or deletes the file; the anchored audit log still records the withdrawal, so the
withdrawn token is refused, while a consent given after an erasure still works."""

from __future__ import annotations

import shutil
import sys
import time
from pathlib import Path
from typing import Any

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
from policy_support import PASSPHRASE, CachedPipeline, images, issued_consent, make_workspace, past_the_skew  # noqa: E402

from safeface import PolicyViolation  # noqa: E402
from safeface.sdk import SafeFace  # noqa: E402


def _open(ws: object) -> SafeFace:
    return SafeFace.open(ws.root, PASSPHRASE, pipeline=CachedPipeline())  # type: ignore[attr-defined]


def _withdrawn(tmp_path: Path, withdrawal: str, before: Any) -> tuple[Any, str, Path]:
    """A workspace where alice enrolled (and `before(ws, sf, her token)` ran), then her consent was withdrawn;
    returns it, her token and a copy of policy.db taken before the withdrawal."""
    ws = make_workspace(tmp_path / "ws")
    token, tok = issued_consent(ws, "alice")
    with _open(ws) as sf:
        sf.enroll(images() / "obama.jpg", "alice", "demo", token)
        before(ws, sf, token)
    backup = tmp_path / "policy-before.db"
    shutil.copyfile(ws.policy, backup)
    with _open(ws) as sf:
        if withdrawal == "revoke-token":
            sf.revoke(token_id=tok.token_id)
        elif withdrawal == "revoke-subject":
            sf.revoke(subject="alice")
        elif withdrawal == "erase-usual-spelling":  # the source system's full-width spelling
            sf.erase("\uff41lice")
        else:
            sf.erase("alice")
    return ws, token, backup


@pytest.mark.parametrize("withdrawal", ["revoke-token", "revoke-subject", "erase-subject", "erase-usual-spelling"])
@pytest.mark.parametrize("how", ["restore-older-copy", "delete"])
def test_a_withdrawn_consent_stays_withdrawn_when_policy_db_is_rolled_back(tmp_path: Path, how: str,
                                                                            withdrawal: str) -> None:
    img = images()
    bob: list[str] = []

    def enrol_bob(ws: Any, sf: SafeFace, _alices: str) -> None:
        bob.append(issued_consent(ws, "bob")[0])
        sf.enroll(img / "biden.jpg", "bob", "demo", bob[0])

    ws, token, backup = _withdrawn(tmp_path, withdrawal, enrol_bob)
    other = bob[0]
    if how == "delete":
        ws.policy.unlink()
    else:
        shutil.copyfile(backup, ws.policy)
    with _open(ws) as sf:
        for call in (lambda: sf.enroll(img / "obama.jpg", "alice", "demo", token),
                     lambda: sf.verify(img / "obama2.jpg", "alice", "demo", token)):
            with pytest.raises(PolicyViolation, match="withdrawn|revoked"):
                call()
        assert not sf.records("alice")
        # Only the withdrawn consent: bob's still works, and so does one alice gives afterwards.
        assert sf.verify(img / "biden.jpg", "bob", "demo", other).match
        time.sleep(1.1)  # issued in a later second than the withdrawal, dated past the skew after it
        again, _ = issued_consent(ws, "alice", now=past_the_skew())
        if withdrawal != "revoke-token":
            assert sf.enroll(img / "obama.jpg", "alice", "demo", again).row_id > 0
            assert len(sf.records("alice")) == 1


def _sql(db: Path, query: str, args: tuple[object, ...] = ()) -> None:
    import sqlite3

    con = sqlite3.connect(str(db))
    con.execute(query, args)
    con.commit()
    con.close()


@pytest.mark.parametrize("edit", ["respaced-subjects", "decision-edited-and-put-back", "token-edited-and-put-back"])
def test_a_withdrawal_hidden_in_the_log_is_found_by_the_audit(tmp_path: Path, edit: str) -> None:
    """The policy state restored, and the log's withdrawal entry hidden from the guard's lookup:
    its subjects re-spaced (the chain hashes them parsed), or a field changed for the length of
    one call and put back. The call may get in meanwhile (the chain is checked whole only by the
    audit), but the audit then fails: on the altered entry, or on the call let in under the
    withdrawn consent."""
    from safeface import IntegrityError
    from safeface.workspace.admin import audit_verify

    img = images()
    ws, token, backup = _withdrawn(tmp_path, "revoke-token" if edit == "token-edited-and-put-back" else "erase",
                                   lambda ws, sf, t: sf.verify(img / "obama2.jpg", "alice", "demo", t))
    with _open(ws) as sf:
        seq = [e for e in sf.audit_entries() if e.operation in ("erase", "revoke")][-1].seq
    shutil.copyfile(backup, ws.policy)
    if edit == "respaced-subjects":
        _sql(ws.audit, "UPDATE entries SET subjects = replace(subjects, '[\"', '[ \"') WHERE seq = ?", (seq,))
    elif edit == "decision-edited-and-put-back":
        _sql(ws.audit, "UPDATE entries SET decision = 'allowed ' WHERE seq = ?", (seq,))
    else:
        _sql(ws.audit, "UPDATE entries SET token_id = token_id || 'x' WHERE seq = ?", (seq,))
    with _open(ws) as sf:
        try:
            sf.verify(img / "obama2.jpg", "alice", "demo", token)
        except PolicyViolation:
            pass
    if edit == "decision-edited-and-put-back":
        _sql(ws.audit, "UPDATE entries SET decision = 'allowed' WHERE seq = ?", (seq,))
    elif edit == "token-edited-and-put-back":
        _sql(ws.audit, "UPDATE entries SET token_id = substr(token_id, 1, length(token_id) - 1) WHERE seq = ?", (seq,))
    with pytest.raises(IntegrityError, match="altered|withdrawal was hidden"):
        audit_verify(ws.root, passphrase_file=_passphrase_file(tmp_path))
    with _open(ws) as sf:
        with pytest.raises(IntegrityError, match="altered|withdrawal was hidden"):
            sf.audit_verify()


def _erased_then_hidden_for(tmp_path: Path, ws: Any, call: Any) -> None:
    """Erase alice; then, as someone who can write the folder, put back the policy state from
    before, change the erasure's entry for the length of `call(sf)` and put it back."""
    shutil.copyfile(ws.policy, tmp_path / "policy-before.db")
    with _open(ws) as sf:
        sf.erase("alice")
        seq = sf.audit_entries()[-1].seq
    shutil.copyfile(tmp_path / "policy-before.db", ws.policy)
    _sql(ws.audit, "UPDATE entries SET decision = 'allowed ' WHERE seq = ?", (seq,))
    with _open(ws) as sf:
        call(sf)
    _sql(ws.audit, "UPDATE entries SET decision = 'allowed' WHERE seq = ?", (seq,))


def _passphrase_file(tmp_path: Path) -> Path:
    f = tmp_path / "passphrase.txt"
    f.write_text(PASSPHRASE)
    f.chmod(0o600)  # passphrase files must be private
    return f


def test_a_token_reference_is_taken_only_as_written(tmp_path: Path) -> None:
    """A revocation by a reference that differs from the stored one (upper case, a trailing
    newline) would get a signed receipt and withdraw nothing: refused instead."""
    from safeface import InvalidArgument

    ws = make_workspace(tmp_path / "ws")
    token, tok = issued_consent(ws, "alice")
    with _open(ws) as sf:
        sf.enroll(images() / "obama.jpg", "alice", "demo", token)
        ref = sf.token_ref(tok.token_id)
        for bad in ("t-" + ref[2:].upper(), ref + "\n", ref[:-1], " " + ref):
            with pytest.raises(InvalidArgument, match="32 lowercase hex"):
                sf.revoke(token_ref=bad)
        assert sf.records("alice")
        sf.revoke(token_ref=ref)
        assert not sf.records("alice")
        with pytest.raises(PolicyViolation):
            sf.verify(images() / "obama2.jpg", "alice", "demo", token)


def test_honest_identify_calls_never_fail_the_audit(tmp_path: Path) -> None:
    """An identify entry's subjects are its candidates, not the person whose consent let it in:
    bob identifies under his own consent before and after alice's erasure and new consent, with
    alice among the candidates, and the audit stays clean."""
    img = images()
    ws = make_workspace(tmp_path / "ws")
    a1, _ = issued_consent(ws, "alice")
    b, _ = issued_consent(ws, "bob")
    with _open(ws) as sf:
        sf.enroll(img / "obama.jpg", "alice", "demo", a1)
        sf.enroll(img / "biden.jpg", "bob", "demo", b)
        sf.identify(img / "obama2.jpg", "demo", b)
        sf.erase("alice")
    time.sleep(1.1)
    a2, _ = issued_consent(ws, "alice", now=past_the_skew())
    with _open(ws) as sf:
        sf.enroll(img / "obama.jpg", "alice", "demo", a2)
        found = sf.identify(img / "obama2.jpg", "demo", b)
        assert found and found[0].subject == sf.pseudonym("alice")
        assert f"consent of {sf.pseudonym('bob')}" in (sf.audit_entries()[-1].note or "")
        sf.audit_verify()


@pytest.mark.parametrize("used_before", ["enrolled", "identify-only"])
def test_an_identify_under_a_withdrawn_consent_is_named_by_the_audit(tmp_path: Path, used_before: str) -> None:
    """The same hidden withdrawal as above, the late call an identify: its entry names its
    candidates (none: alice's rows are gone), so the audit judges it by whose consent it was,
    learned from the token's other calls or named in the identify entry itself."""
    from safeface import IntegrityError

    img = images()
    ws = make_workspace(tmp_path / "ws")
    token, _ = issued_consent(ws, "alice")
    with _open(ws) as sf:
        if used_before == "enrolled":
            sf.enroll(img / "obama.jpg", "alice", "demo", token)
        sf.identify(img / "obama2.jpg", "demo", token)

    def late(sf: SafeFace) -> None:
        sf.identify(img / "obama2.jpg", "demo", token)
        assert sf.audit_entries()[-1].operation == "identify" and sf.audit_entries()[-1].decision == "allowed"

    _erased_then_hidden_for(tmp_path, ws, late)
    with _open(ws) as sf:
        with pytest.raises(IntegrityError, match="withdrawal was hidden"):
            sf.audit_verify()


_ALL_OPS = ("enroll", "verify", "identify", "transmit")


def _enrolled_with_a_spare_consent(tmp_path: Path) -> tuple[Any, str]:
    """Alice enrolled under one consent, a second one she gave at the same time kept unused."""
    ws = make_workspace(tmp_path / "ws")
    first, _ = issued_consent(ws, "alice", operations=_ALL_OPS)
    unused, _ = issued_consent(ws, "alice", operations=_ALL_OPS)
    with _open(ws) as sf:
        sf.enroll(images() / "obama.jpg", "alice", "demo", first)
    return ws, unused


@pytest.mark.parametrize("call", ["identify", "verify", "export"])
def test_a_consent_issued_before_a_hidden_erasure_and_first_used_after_it_is_named(tmp_path: Path, call: str) -> None:
    """A second consent alice gave before her erasure, never used before it: the guard refuses it
    afterwards (issued at or before the withdrawal). With the erasure hidden from the guard (policy
    state rolled back, the entry changed for one call and put back) the call gets in, and the
    audit names it by the issue time its entry records."""
    from safeface import IntegrityError

    img = images()
    ws, unused = _enrolled_with_a_spare_consent(tmp_path)

    def late(sf: SafeFace) -> None:
        if call == "identify":
            sf.identify(img / "obama2.jpg", "demo", unused)
        elif call == "verify":
            sf.verify(img / "obama2.jpg", "alice", "demo", unused)
        else:
            sf.export("alice", "demo", "auditor", unused)
        assert sf.audit_entries()[-1].decision == "allowed"

    _erased_then_hidden_for(tmp_path, ws, late)
    with _open(ws) as sf:
        with pytest.raises(IntegrityError, match="issued or used before its subject's withdrawal"):
            sf.audit_verify()


def test_a_consent_given_after_an_erasure_never_fails_the_audit(tmp_path: Path) -> None:
    """The honest counterpart: alice erased, then a consent she gives afterwards (a later second)
    used for every kind of call; the audit stays clean, and the unused consent from before the
    erasure is refused live."""
    img = images()
    ws, unused = _enrolled_with_a_spare_consent(tmp_path)
    with _open(ws) as sf:
        sf.erase("alice")
        with pytest.raises(PolicyViolation, match="withdrawn|revoked"):
            sf.identify(img / "obama2.jpg", "demo", unused)
        time.sleep(1.1)
        again, _ = issued_consent(ws, "alice", operations=_ALL_OPS, now=past_the_skew())
        sf.enroll(img / "obama.jpg", "alice", "demo", again)
        assert sf.verify(img / "obama2.jpg", "alice", "demo", again).match
        sf.identify(img / "obama2.jpg", "demo", again)
        sf.export("alice", "demo", "auditor", again)
        assert sf.audit_verify().entries > 0  # raises IntegrityError on any problem


class _HookPipeline(CachedPipeline):
    """The real pipeline; `hook` runs once while a probe is embedded: where a second caller's
    withdrawal lands while this call's image is processed."""

    def __init__(self) -> None:
        super().__init__()
        self.hook: Any = None

    def embed(self, image: Any, *, count_all: bool = False) -> Any:
        hook, self.hook = self.hook, None
        if hook is not None:
            hook()
        return super().embed(image, count_all=count_all)


# The service's views share one workspace: its erasure case stands for the three.
@pytest.mark.parametrize("where, withdrawal", [("two-processes", "erase"), ("two-processes", "revoke-subject"),
                                               ("two-processes", "revoke-token"), ("one-service-process", "erase")])
@pytest.mark.parametrize("call", ["verify", "identify", "export"])
def test_a_call_judged_before_a_withdrawal_and_recorded_after_it_is_honest(tmp_path: Path, call: str,
                                                                           withdrawal: str, where: str) -> None:
    """A verify, identify or export judged before another caller's withdrawal, whose entry lands
    after the withdrawal's: honest use, so the audit stays clean (each such entry names where it
    was judged)."""
    img = images()
    ws = make_workspace(tmp_path / "ws")
    token, tok = issued_consent(ws, "alice", operations=("enroll", "verify", "identify", "transmit"))
    pipe = _HookPipeline()
    with SafeFace.open(ws.root, PASSPHRASE, pipeline=pipe) as sf, _open(ws) as second:
        sf.enroll(img / "obama.jpg", "alice", "demo", token)
        other = second if where == "two-processes" else sf.acting_as("operator", "key-2")

        def withdraw() -> None:
            if withdrawal == "erase":
                other.erase("alice")
            elif withdrawal == "revoke-subject":
                other.revoke(subject="alice")
            else:
                other.revoke(token_id=tok.token_id)

        if call == "export":  # no image: the withdrawal lands while it reads the store
            read = sf._gallery.rows_for

            def rows_for(subject: str) -> Any:
                withdraw()
                return read(subject)

            sf._gallery.rows_for = rows_for  # type: ignore[method-assign]
            sf.export("alice", "demo", "auditor", token)
        else:
            pipe.hook = withdraw
            getattr(sf, call)(*((img / "obama2.jpg", "alice") if call == "verify" else (img / "obama2.jpg",)),
                              "demo", token)
        last, before = sf.audit_entries()[-1], sf.audit_entries()[-2]
        assert (last.operation, before.operation) == (call, "revoke" if "revoke" in withdrawal else "erase")
        sf.audit_verify()


def test_a_consent_from_an_issuer_whose_clock_runs_ahead_is_still_withdrawn(tmp_path: Path) -> None:
    """The consent service's clock runs 60 s ahead (within the tolerated skew): its token's
    issue time falls after the erasure, yet it was used before it, so it was given before it."""
    import datetime as dt

    img = images()
    ws = make_workspace(tmp_path / "ws")
    token, _ = issued_consent(ws, "alice", now=dt.datetime.now(dt.timezone.utc) + dt.timedelta(seconds=60))
    with _open(ws) as sf:
        sf.enroll(img / "obama.jpg", "alice", "demo", token)
        sf.erase("alice")
        with pytest.raises(PolicyViolation, match="withdrawn"):
            sf.verify(img / "obama2.jpg", "alice", "demo", token)
        assert sf.verify_store().ok


def test_a_consent_dated_after_an_erasure_by_an_issuer_running_ahead_does_not_enrol_again(tmp_path: Path) -> None:
    """The consent service's clock runs 100 s ahead (tolerated): a consent alice gave before her
    erasure, never used before it, is dated after it, and enrolled her again. Dated within the
    skew after her erasure, it counts as withdrawn; nothing is stored, the refusal is recorded."""
    import datetime as dt

    img = images()
    ws = make_workspace(tmp_path / "ws")
    first, _ = issued_consent(ws, "alice")
    spare, _ = issued_consent(ws, "alice", now=dt.datetime.now(dt.timezone.utc) + dt.timedelta(seconds=100))
    with _open(ws) as sf:
        sf.enroll(img / "obama.jpg", "alice", "demo", first)
        sf.erase("alice")
        with pytest.raises(PolicyViolation, match="less than 120 s after") as info:
            sf.enroll(img / "obama.jpg", "alice", "demo", spare)
        assert info.value.rule == "CN-05"
        assert not sf.records("alice")
        last = [e for e in sf.audit_entries() if e.operation == "enroll"][-1]
        assert (last.decision, last.rule) == ("refused", "CN-05")


@pytest.mark.parametrize("authority_clock", ["right", "60 s ahead"])
def test_a_reenrolment_under_a_legal_basis_issued_before_a_hidden_erasure_is_named(tmp_path: Path,
                                                                                   authority_clock: str) -> None:
    """The guard refuses to enrol an erased person again under a legal basis issued before the
    erasure, or used before it (an authority whose clock runs ahead dates it after); with the
    erasure hidden from it (the policy state rolled back, the entry changed for one call and put
    back), the row that got in is named by the audit."""
    import datetime as dt

    from safeface import IntegrityError
    from policy_support import issued_legal_basis

    img = images()
    ws = make_workspace(tmp_path / "ws")
    ahead = dt.timedelta(seconds=60 if authority_clock == "60 s ahead" else 0)
    lb, _ = issued_legal_basis(ws, operations=["enroll", "identify"], now=dt.datetime.now(dt.timezone.utc) + ahead)
    with _open(ws) as sf:
        sf.enroll(img / "obama.jpg", "alice", "demo", legal_basis=lb)
    shutil.copyfile(ws.policy, tmp_path / "policy-before.db")
    with _open(ws) as sf:
        sf.erase("alice")
        with pytest.raises(PolicyViolation):
            sf.enroll(img / "obama.jpg", "alice", "demo", legal_basis=lb)
        seq = [e for e in sf.audit_entries() if e.operation == "erase"][-1].seq
    shutil.copyfile(tmp_path / "policy-before.db", ws.policy)
    _sql(ws.audit, "UPDATE entries SET decision = 'allowed ' WHERE seq = ?", (seq,))
    with _open(ws) as sf:
        sf.enroll(img / "obama.jpg", "alice", "demo", legal_basis=lb)
    _sql(ws.audit, "UPDATE entries SET decision = 'allowed' WHERE seq = ?", (seq,))
    with _open(ws) as sf:
        assert sf.records("alice")
        with pytest.raises(IntegrityError, match="issued or used before its subject's withdrawal"):
            sf.audit_verify()


def test_entries_an_earlier_safeface_wrote_are_judged_by_the_rules_of_their_day() -> None:
    """An upgraded workspace's log holds entries that name no judging point, written when the
    guard read only the policy state (it let in, say, a consent issued by a clock running ahead
    after its subject's erasure). They are not judged by the new rules, which would fail the
    audit for good on an append-only log; the same history written now is named."""
    from safeface.workspace.audit import AuditEntry
    from safeface.workspace.storecheck import read_log

    ref, alice = "t-" + "a" * 32, "b" * 64

    def entries(marked: bool) -> list[AuditEntry]:
        judged = (lambda n: f"; judged after entry {n}") if marked else (lambda n: "")
        return [AuditEntry(1, "2026-12-01T00:00:00+00:00", "enroll", "demo", ref, "consent", (alice,), "allowed",
                           None, "rows=1; expires 2027-01-01" + judged(0), None),
                AuditEntry(2, "2026-12-01T00:00:01+00:00", "erase", None, None, None, (alice,), "allowed", "CN-05",
                           "1 template(s) removed; rows=1; receipt r", None),
                AuditEntry(3, "2026-12-01T00:00:02+00:00", "enroll", "demo", ref, "consent", (alice,), "allowed",
                           None, "rows=2; expires 2027-01-01" + judged(2), None),
                AuditEntry(4, "2026-12-01T00:00:03+00:00", "verify", "demo", ref, "consent", (alice,), "allowed",
                           None, "match" + judged(3), None)]

    assert read_log(entries(False)).late == [] and read_log(entries(False)).enrolled_at == {}
    late = read_log(entries(True)).late
    assert [x.split(" ")[1] for x in late] == ["3", "4"]


def test_a_demo_clock_and_the_log_agree_on_when_a_withdrawal_was(tmp_path: Path) -> None:
    """A demo whose clock runs a day behind the host: a consent given an hour after the erasure,
    in the workspace's own time, is a new consent for the guard and for the audit alike (the
    erasure's entry names the time the policy state withdrew at)."""
    import datetime as dt

    from policy_support import Clock

    img = images()
    ws = make_workspace(tmp_path / "ws", today=(dt.datetime.now(dt.timezone.utc) - dt.timedelta(days=3)).date())
    clock = Clock(dt.datetime.now(dt.timezone.utc) - dt.timedelta(days=1))
    first, _ = issued_consent(ws, "alice", now=clock.now)
    with SafeFace.open(ws.root, PASSPHRASE, pipeline=CachedPipeline(), clock=clock) as sf:
        sf.enroll(img / "obama.jpg", "alice", "demo", first)
        sf.erase("alice")
        assert "withdrawn at" in (sf.audit_entries()[-1].note or "")
        clock.advance(hours=1)
        again, _ = issued_consent(ws, "alice", now=clock.now)
        assert sf.enroll(img / "obama.jpg", "alice", "demo", again).row_id > 0
        with pytest.raises(PolicyViolation, match="withdrawn"):
            sf.verify(img / "obama2.jpg", "alice", "demo", first)
        sf.audit_verify()


@pytest.mark.parametrize("recipient", ["auditor", "auditor; judged after entry 0"])
def test_an_export_recipient_cannot_say_where_the_export_was_judged(tmp_path: Path, recipient: str) -> None:
    """The recipient is the caller's text, written into the export's note before the SDK names
    the judging point: a recipient naming one does not hide a late export from the audit."""
    from safeface import IntegrityError

    ws = make_workspace(tmp_path / "ws")
    token, _ = issued_consent(ws, "alice", operations=("enroll", "verify", "identify", "transmit"))
    with _open(ws) as sf:
        sf.enroll(images() / "obama.jpg", "alice", "demo", token)
    _erased_then_hidden_for(tmp_path, ws, lambda sf: sf.export("alice", "demo", recipient, token))
    with _open(ws) as sf:
        with pytest.raises(IntegrityError, match="withdrawal was hidden"):
            sf.audit_verify()


def test_an_honest_export_to_a_recipient_named_like_a_judging_point_stays_clean(tmp_path: Path) -> None:
    img = images()
    ws = make_workspace(tmp_path / "ws")
    token, _ = issued_consent(ws, "alice", operations=("enroll", "verify", "identify", "transmit"))
    with _open(ws) as sf, _open(ws) as second:
        sf.enroll(img / "obama.jpg", "alice", "demo", token)
        read = sf._gallery.rows_for

        def rows_for(subject: str) -> Any:
            second.erase("alice")
            return read(subject)

        sf._gallery.rows_for = rows_for  # type: ignore[method-assign]
        sf.export("alice", "demo", "records office (judged after entry 99999)", token)
        sf.audit_verify()


@pytest.mark.parametrize("withdrawal", ["erase-subject", "revoke-token"])
def test_a_withdrawal_of_many_rows_is_recorded_in_parts_the_audit_reads_whole(tmp_path: Path, monkeypatch: Any,
                                                                             withdrawal: str) -> None:
    """A subject with very many rows (some 9,000 would overflow one note, whose row list the log
    would cut): the removal is recorded in parts, each naming its rows and the time the policy
    state withdrew at, so the audit finds every row removed and the withdrawal whole."""
    from safeface.sdk import facade
    from safeface.workspace.audit import withdrawal_time

    ws = make_workspace(tmp_path / "ws")
    token, tok = issued_consent(ws, "alice")
    monkeypatch.setattr(facade, "PURGE_ENTRY_ROWS", 5)  # as if each part held 5 of alice's 12,000 rows
    with _open(ws) as sf:
        for _ in range(12):
            sf.enroll(images() / "obama.jpg", "alice", "demo", token)
        receipt = sf.erase("alice") if withdrawal == "erase-subject" else sf.revoke(token_id=tok.token_id)
        parts = [e for e in sf.audit_entries() if e.operation in ("erase", "revoke")]
        assert [e.note.split("; ")[1] for e in parts] == [f"{n} template(s) removed (part {i} of 3)"
                                                          for i, n in ((1, 5), (2, 5), (3, 2))]
        assert len({withdrawal_time(e.note, e.time) for e in parts}) == 1 and receipt.templates_removed == 12
        assert not sf.records("alice")
        with pytest.raises(PolicyViolation, match="withdrawn"):
            sf.verify(images() / "obama2.jpg", "alice", "demo", token)
        sf.audit_verify()
    assert withdrawal_time("1 template(s) removed; withdrawn at 5;", "1970-01-01T00:01:40+00:00") == 100


def _script(db: Path, script: str) -> None:
    import sqlite3

    con = sqlite3.connect(str(db))
    con.executescript(script)
    con.commit()
    con.close()


@pytest.mark.parametrize("moved", ["entries", "entries-and-head"])
@pytest.mark.parametrize("call", ["verify", "identify", "export"])
def test_a_log_tail_moved_aside_for_one_call_stops_the_call(tmp_path: Path, call: str, moved: str) -> None:
    """The policy state rolled back and, for the length of one call, the erasure entry and what
    follows moved out of the log (and the signed head row put back as it was before them), to be
    put back unchanged once the call is judged: the call's judging point would move back with
    them and the audit would take it for an honest call in flight. The head check where a call is
    judged refuses it: the log no longer matches its signed head, or the head no longer matches
    the anchor outside the log."""
    from safeface import IntegrityError

    img = images()
    ws = make_workspace(tmp_path / "ws")
    token, _ = issued_consent(ws, "alice", operations=_ALL_OPS)
    with _open(ws) as sf:
        sf.enroll(img / "obama.jpg", "alice", "demo", token)
    shutil.copyfile(ws.policy, tmp_path / "policy-before.db")
    _script(ws.audit, "CREATE TABLE head_before AS SELECT * FROM head;")
    with _open(ws) as sf:
        sf.erase("alice")
        seq = [e for e in sf.audit_entries() if e.operation == "erase"][-1].seq
    shutil.copyfile(tmp_path / "policy-before.db", ws.policy)
    with _open(ws) as sf:
        n = len(sf.audit_entries())
        head = "DELETE FROM head; INSERT INTO head SELECT * FROM head_before;" if moved == "entries-and-head" else ""
        _script(ws.audit, f"CREATE TABLE stash AS SELECT * FROM entries WHERE seq >= {seq}; "
                f"DELETE FROM entries WHERE seq >= {seq}; CREATE TABLE head_now AS SELECT * FROM head; {head}")
        with pytest.raises(IntegrityError, match="signed head|anchor"):
            if call == "verify":
                sf.verify(img / "obama2.jpg", "alice", "demo", token)
            elif call == "identify":
                sf.identify(img / "obama2.jpg", "demo", token)
            else:
                sf.export("alice", "demo", "auditor", token)
        _script(ws.audit, "INSERT INTO entries SELECT * FROM stash; DELETE FROM head; "
                "INSERT INTO head SELECT * FROM head_now; DROP TABLE stash; DROP TABLE head_now; DROP TABLE head_before;")
        assert len(sf.audit_entries()) == n  # nothing was let in, nothing recorded
        with pytest.raises(PolicyViolation, match="withdrawn|erased"):
            sf.verify(img / "obama2.jpg", "alice", "demo", token)


def test_a_consent_in_use_when_its_subject_is_erased_stays_withdrawn_though_its_issuer_runs_ahead(
        tmp_path: Path) -> None:
    """No tampering: the consent service's clock runs 60 s ahead (tolerated), so alice's consent
    looks issued after her erasure. A verify under it is judged before the erasure, which another
    process makes while the probe is embedded; its entry lands after the erasure's. The consent
    was in use before the erasure, so it is withdrawn: a use counts where it was judged, for the
    guard and the audit alike."""
    import datetime as dt

    img = images()
    ws = make_workspace(tmp_path / "ws")
    token, _ = issued_consent(ws, "alice", operations=_ALL_OPS,
                              now=dt.datetime.now(dt.timezone.utc) + dt.timedelta(seconds=60))
    pipe = _HookPipeline()
    with SafeFace.open(ws.root, PASSPHRASE, pipeline=pipe) as sf, _open(ws) as second:
        pipe.hook = lambda: second.erase("alice")
        sf.verify(img / "obama2.jpg", "alice", "demo", token)
        entries = sf.audit_entries()
        assert (entries[-1].operation, entries[-2].operation) == ("verify", "erase")
        with pytest.raises(PolicyViolation, match="withdrawn|erased"):
            sf.verify(img / "obama2.jpg", "alice", "demo", token)
        assert sf.audit_verify().entries > 0  # the honest history stays clean


def test_a_consent_dated_before_1970_is_judged_by_its_issue_time(tmp_path: Path) -> None:
    """An issuer clock before 1970 gives a negative issue time, which the entry records as such;
    with the erasure hidden from the guard for one call, the audit still reads it."""
    import datetime as dt

    from safeface import IntegrityError

    img = images()
    ws = make_workspace(tmp_path / "ws")
    first, _ = issued_consent(ws, "alice", operations=_ALL_OPS)
    old, tok = issued_consent(ws, "alice", operations=_ALL_OPS,
                              now=dt.datetime(1969, 12, 31, 23, 59, tzinfo=dt.timezone.utc), days=365 * 80)
    assert tok.issued_at < 0
    with _open(ws) as sf:
        sf.enroll(img / "obama.jpg", "alice", "demo", first)
    _erased_then_hidden_for(tmp_path, ws, lambda sf: sf.verify(img / "obama2.jpg", "alice", "demo", old))
    with _open(ws) as sf:
        with pytest.raises(IntegrityError, match="issued or used before its subject's withdrawal"):
            sf.audit_verify()


def test_a_legal_basis_reenrolment_past_a_hidden_erasure_stays_named_after_its_row_is_gone(tmp_path: Path) -> None:
    """The row enrolled under a legal basis issued before a hidden erasure is named while it is
    stored (above); its entry is named too, so the evidence outlives the row (here removed by
    revoking the legal basis)."""
    from safeface import IntegrityError
    from policy_support import issued_legal_basis

    img = images()
    ws = make_workspace(tmp_path / "ws")
    lb, lbt = issued_legal_basis(ws, operations=["enroll", "identify"])
    with _open(ws) as sf:
        sf.enroll(img / "obama.jpg", "alice", "demo", legal_basis=lb)
    _erased_then_hidden_for(tmp_path, ws, lambda sf: sf.enroll(img / "obama.jpg", "alice", "demo", legal_basis=lb))
    with _open(ws) as sf:
        sf.revoke(token_id=lbt.token_id)
        assert not sf.records("alice")
        with pytest.raises(IntegrityError, match="withdrawal was hidden"):
            sf.audit_verify()


def test_one_legal_basis_for_many_people_never_fails_the_audit_when_one_is_erased(tmp_path: Path) -> None:
    """The honest counterpart: a legal basis enrols alice and bob; alice is erased; bob's next
    enrolment and identify under the same legal basis go on, and the audit stays clean."""
    from policy_support import issued_legal_basis

    img = images()
    ws = make_workspace(tmp_path / "ws")
    lb, _ = issued_legal_basis(ws, operations=["enroll", "identify"])
    with _open(ws) as sf:
        sf.enroll(img / "obama.jpg", "alice", "demo", legal_basis=lb)
        sf.enroll(img / "biden.jpg", "bob", "demo", legal_basis=lb)
        sf.erase("alice")
        sf.enroll(img / "biden.jpg", "bob", "demo", legal_basis=lb)
        sf.identify(img / "obama2.jpg", "demo", legal_basis=lb)
        assert sf.audit_verify().entries > 0


def test_a_consent_issued_in_the_second_of_a_logged_erasure_is_refused(tmp_path: Path) -> None:
    """With the policy state restored from before an erasure, the log's copy of the withdrawal
    decides; a consent issued in the erasure's own second counts as withdrawn there too."""
    import datetime as dt

    from policy_support import Clock, consent, open_sf

    clock = Clock(dt.datetime.now(dt.timezone.utc).replace(microsecond=0) - dt.timedelta(minutes=5))
    # Assessed on the clock's day: five minutes back may be yesterday, when the assessment of a
    # workspace made today would lie in the future (CN-09).
    ws = make_workspace(tmp_path / "ws", today=clock.now.date())
    with open_sf(ws, clock=clock) as sf:
        sf.enroll(images() / "obama.jpg", "alice", "demo", consent(ws, "alice", now=clock.now - dt.timedelta(minutes=1)))
    shutil.copyfile(ws.policy, tmp_path / "policy-before.db")
    clock.advance(minutes=1)
    erased_at = clock.now
    with open_sf(ws, clock=clock) as sf:
        sf.erase("alice")
    shutil.copyfile(tmp_path / "policy-before.db", ws.policy)
    same_second = consent(ws, "alice", now=erased_at)
    clock.advance(seconds=30)
    with open_sf(ws, clock=clock) as sf:
        with pytest.raises(PolicyViolation) as refused:
            sf.enroll(images() / "obama.jpg", "alice", "demo", same_second)
        assert refused.value.rule == "CN-05", refused.value


def test_an_erasure_entry_with_respaced_subjects_fails_the_audit_with_no_call_made(tmp_path: Path) -> None:
    """The chain hashes an entry's subjects parsed, so a re-spaced subjects column still chains;
    the check of how they are written names it, with no call made after the edit."""
    import sqlite3

    from policy_support import consent, open_sf

    from safeface.errors import IntegrityError

    ws = make_workspace(tmp_path / "ws")
    with open_sf(ws) as sf:
        sf.enroll(images() / "obama.jpg", "alice", "demo", consent(ws, "alice"))
        sf.erase("alice")
        seq = [e for e in sf.audit_entries() if e.operation == "erase"][-1].seq
        assert sf.audit_verify().entries > 0
    con = sqlite3.connect(str(ws.audit))
    con.execute("UPDATE entries SET subjects = replace(subjects, '[\"', '[ \"') WHERE seq = ?", (seq,))
    con.commit()
    con.close()
    with open_sf(ws) as sf:
        with pytest.raises(IntegrityError, match="altered"):
            sf.audit_verify()


@pytest.mark.parametrize("withdrawal", ["revoke-token", "erase-subject"])
def test_the_policy_state_alone_refuses_a_withdrawn_consent(tmp_path: Path, withdrawal: str) -> None:
    """A withdrawal is read from the policy state and from the audit log: with the log's entry
    hidden from the lookups for one call, the policy state alone refuses the consent."""
    import sqlite3

    def mark(seq: int, decision: str) -> None:
        with sqlite3.connect(str(ws.audit)) as con:
            con.execute("UPDATE entries SET decision = ? WHERE seq = ?", (decision, seq))

    ws = make_workspace(tmp_path / "ws")
    token, tok = issued_consent(ws, "alice")
    with SafeFace.open(ws.root, PASSPHRASE, pipeline=CachedPipeline()) as sf:
        sf.enroll(images() / "obama.jpg", "alice", "demo", token)
        if withdrawal == "revoke-token":
            sf.revoke(token_id=tok.token_id)
        else:
            sf.erase("alice")
        seq = [e for e in sf.audit_entries() if e.operation in ("erase", "revoke")][-1].seq
    mark(seq, "allowed ")  # the entry no longer reads as a withdrawal
    try:
        with SafeFace.open(ws.root, PASSPHRASE, pipeline=CachedPipeline()) as sf:
            with pytest.raises(PolicyViolation, match="withdrawn|revoked"):
                sf.enroll(images() / "obama.jpg", "alice", "demo", token)
            assert not sf.records("alice")
    finally:
        mark(seq, "allowed")


@pytest.mark.parametrize("call", ["verify", "identify", "enroll"])
def test_a_consent_dated_within_the_skew_after_a_hidden_erasure_is_named(tmp_path: Path, call: str) -> None:
    """The guard counts a consent dated less than 120 s after its subject's erasure as withdrawn
    (an issuer running ahead dates one given before it after it). With the erasure hidden from the
    guard (the policy state rolled back, the entry changed for one call and put back) such a
    consent, dated 60 s after it and never used before, got in, and `audit verify` found nothing:
    it judged by the issue time alone. Entries of this release say the guard applied the skew,
    so the audit names the call."""
    import datetime as dt

    from safeface import IntegrityError

    img = images()
    ws = make_workspace(tmp_path / "ws")
    first, _ = issued_consent(ws, "alice", operations=_ALL_OPS)
    with _open(ws) as sf:
        sf.enroll(img / "obama.jpg", "alice", "demo", first)

    def late(sf: SafeFace) -> None:
        erased = [e for e in sf.audit_entries() if e.operation == "erase"][-1]
        ahead, _ = issued_consent(ws, "alice", operations=_ALL_OPS,
                                  now=dt.datetime.fromisoformat(erased.time) + dt.timedelta(seconds=60))
        if call == "verify":
            sf.verify(img / "obama2.jpg", "alice", "demo", ahead)
        elif call == "identify":
            sf.identify(img / "obama2.jpg", "demo", ahead)
        else:
            sf.enroll(img / "obama.jpg", "alice", "demo", ahead)
        assert [e for e in sf.audit_entries() if e.operation == call][-1].decision == "allowed"

    _erased_then_hidden_for(tmp_path, ws, late)
    with _open(ws) as sf:
        with pytest.raises(IntegrityError, match="withdrawal was hidden"):
            sf.audit_verify()


def test_a_consent_dated_within_the_skew_after_an_erasure_by_an_earlier_safeface_is_not_named() -> None:
    """An earlier safeface let in a consent dated less than 120 s after its subject's erasure (the
    rule is newer than the log): its entry, which does not say the guard applied the skew, is not
    judged by it, while the same history written now is named."""
    import dataclasses

    from safeface.policy.guard import CLOCK_SKEW_S
    from safeface.workspace.audit import AuditEntry
    from safeface.workspace.storecheck import TOKEN_ISSUED, WITHDRAWAL_SKEW, read_log

    ref, alice, erased = "t-" + "a" * 32, "b" * 64, 1_796_000_000

    def entries(skew: str) -> list[AuditEntry]:
        return [AuditEntry(1, "2026-12-01T00:00:00+00:00", "enroll", "demo", "t-" + "c" * 32, "consent", (alice,),
                           "allowed", None, f"rows=1; expires 2027-01-01; {TOKEN_ISSUED} {erased - 600}; judged "
                           "after entry 0", None),
                AuditEntry(2, "2026-12-01T00:00:01+00:00", "erase", None, None, None, (alice,), "allowed", "CN-05",
                           f"withdrawn at {erased}; 1 template(s) removed; rows=1; receipt r", None),
                AuditEntry(3, "2026-12-01T00:00:02+00:00", "verify", "demo", ref, "consent", (alice,), "allowed",
                           None, f"match; {TOKEN_ISSUED} {erased + 60}{skew}; judged after entry 2", None)]

    assert read_log(entries("")).late == []
    # Caller text naming the skew before the SDK's own mark (an export's recipient) counts for nothing.
    forged = entries("")
    forged[2] = dataclasses.replace(forged[2], note=f"to {TOKEN_ISSUED} 1; {WITHDRAWAL_SKEW} {CLOCK_SKEW_S} s; "
                                    f"{TOKEN_ISSUED} {erased + 60}; judged after entry 2")
    assert read_log(forged).late == []
    late = read_log(entries(f"; {WITHDRAWAL_SKEW} {CLOCK_SKEW_S} s")).late
    assert [x.split(" ")[1] for x in late] == ["3"]
    # Dated past the skew: a new consent, for this release too.
    past = entries(f"; {WITHDRAWAL_SKEW} {CLOCK_SKEW_S} s")
    past[2] = dataclasses.replace(past[2], note=f"match; {TOKEN_ISSUED} {erased + CLOCK_SKEW_S + 1}; "
                                  f"{WITHDRAWAL_SKEW} {CLOCK_SKEW_S} s; judged after entry 2")
    assert read_log(past).late == []


def test_a_withdrawal_is_never_dated_before_an_entry_the_log_already_holds(tmp_path: Path,
                                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    """A host whose clock runs a little behind the one that wrote the log's last entry (within the
    log's tolerance, so its entries are taken) dated an erasure before that entry: the 120 s after
    a withdrawal then ended before 120 s after an entry already recorded, and a consent dated in
    between counted as new. The withdrawal is dated by the log's order too (never before its last
    entry), so the consent counts as withdrawn."""
    import datetime as dt

    from safeface.sdk import facade
    from safeface.workspace.audit import withdrawal_time

    img = images()
    ws = make_workspace(tmp_path / "ws")
    first, _ = issued_consent(ws, "alice", operations=_ALL_OPS)
    with _open(ws) as sf:
        sf.enroll(img / "obama.jpg", "alice", "demo", first)
    real = facade.utc_now
    monkeypatch.setattr(facade, "utc_now", lambda: real() - dt.timedelta(seconds=1.9))
    with _open(ws) as sf:  # its "open" entry is written by the log's clock, which is right
        before = sf.audit_entries()[-1]
        sf.erase("alice")
        erased = sf.audit_entries()[-1]
    monkeypatch.setattr(facade, "utc_now", real)
    assert erased.operation == "erase"
    recorded = int(dt.datetime.fromisoformat(before.time).timestamp())
    assert withdrawal_time(erased.note, erased.time) >= recorded
    spare, _ = issued_consent(ws, "alice", operations=_ALL_OPS,
                              now=dt.datetime.fromtimestamp(recorded + 120, dt.timezone.utc))
    with _open(ws) as sf:
        with pytest.raises(PolicyViolation, match="less than 120 s after"):
            sf.verify(img / "obama2.jpg", "alice", "demo", spare)
        sf.audit_verify()
