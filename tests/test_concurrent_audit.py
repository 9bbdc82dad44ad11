"""The audit under honest concurrency: threads sharing one handle, other handles and processes
appending while a call is judged or the log is verified, enrolments and erasures landing while
the store is checked against the log. None of it may read as tampering."""

from __future__ import annotations

import sys
import threading
from pathlib import Path
from typing import Any

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
from policy_support import consent, images, legal_basis, make_workspace, open_sf, past_the_skew  # noqa: E402

from safeface.errors import IntegrityError  # noqa: E402


# -- F1: check_head at every verify/identify/export: false alarms for threads on one SafeFace ------
def test_threads_on_one_safeface_never_see_a_false_head_mismatch(tmp_path: Path) -> None:
    """Threads sharing one SafeFace (or its views) share one SQLite connection: one thread's append
    writes the entry and then the head, in one transaction on it. Another thread's call, judged
    meanwhile, waits for that connection's turn, never reading the entry without its head. The writer
    is paused between its two statements here; a busy machine does that at random."""
    ws = make_workspace(tmp_path / "ws")
    with open_sf(ws) as sf:
        lb = legal_basis(ws, operations=["transmit"])
        sf.export("alice", "demo", "acme", legal_basis=lb)
        t = sf._audit._t  # the audit log's tables (one connection for the object and its views)
        real_run = t.run
        inserted, checked = threading.Event(), threading.Event()
        writer: list[Any] = []

        def slow_run(sql: str, args: Any = ()) -> int:
            n = real_run(sql, args)
            if "INSERT INTO {t}entries" in sql and threading.current_thread() in writer:
                inserted.set()
                checked.wait(2)  # the scheduler runs the other thread here
            return n

        t.run = slow_run  # type: ignore[method-assign]
        errors: list[BaseException] = []

        def first() -> None:
            try:
                sf.acting_as("operator", "clerk-1").export("alice", "demo", "acme", legal_basis=lb)
            except BaseException as exc:  # noqa: BLE001
                errors.append(exc)

        th = threading.Thread(target=first)
        writer.append(th)
        th.start()
        assert inserted.wait(30)
        try:
            sf.acting_as("operator", "clerk-2").export("alice", "demo", "acme", legal_basis=lb)
        except IntegrityError as exc:
            errors.append(exc)
        finally:
            checked.set()
            th.join()
            t.run = real_run  # type: ignore[method-assign]
        assert not errors, f"an honest export was refused as tampering: {errors[0]!r}"
        assert sf.audit_verify().entries > 0


# -- F7: audit verify on a busy log: false "truncation" -------------------------------------------
def test_audit_verify_while_another_handle_appends_is_not_a_truncation_alarm(tmp_path: Path) -> None:
    """`AuditLog.verify` reads the signed head first and the chain up to it: another handle (a
    service thread, another worker, the CLI) appending while the chain is read is the next
    check's, not a truncation."""
    from safeface.workspace.audit import AuditLog

    key = b"k" * 32
    writer, checker = AuditLog(tmp_path / "audit.db", key), AuditLog(tmp_path / "audit.db", key)
    for i in range(5):
        writer.append("report", "allowed", note=f"entry {i}")
    real_q = checker._t.q

    def q(sql: str, args: Any = ()) -> Any:
        out = real_q(sql, args)
        if "FROM {t}entries" in sql and "ORDER BY seq LIMIT" in sql:
            writer.append("report", "allowed", note="another handle's call ends now")  # while the chain is read
        return out

    checker._t.q = q  # type: ignore[method-assign]
    try:
        assert checker.verify().entries >= 5
    finally:
        writer.close()
        checker.close()


def test_the_store_check_while_another_handle_enrols_and_erases_never_alarms(tmp_path: Path) -> None:
    """`audit verify` reads the rows and the log under the store's write lock, which enrolment,
    erasure and purge hold around their entries and rows: one landing between the two reads
    would look like a row deleted behind the guard, or restored after its erasure."""
    ws = make_workspace(tmp_path / "ws")
    img = images()
    people = [f"p{i}" for i in range(6)]
    tokens = {p: consent(ws, p) for p in people}
    errors: list[BaseException] = []
    done = threading.Event()

    def writer() -> None:
        try:
            with open_sf(ws) as w:
                for n, p in enumerate(people):
                    w.enroll(img / ("obama.jpg" if n % 2 else "biden.jpg"), p, "demo", tokens[p])
                    if n % 2:
                        w.erase(people[n - 1])
        except BaseException as exc:  # noqa: BLE001
            errors.append(exc)
        finally:
            done.set()

    with open_sf(ws) as auditor:
        th = threading.Thread(target=writer)
        th.start()
        checks = 0
        while not done.is_set() or checks == 0:
            auditor.audit_verify()
            checks += 1
        th.join()
        assert not errors, errors
        assert auditor.audit_verify().entries > 0 and len(auditor.records()) == 3


def test_an_entry_chained_past_the_signed_head_without_the_key_fails_the_audit(tmp_path: Path) -> None:
    """The chain's hash needs no key, so someone who can write audit.db can append an entry that
    links correctly (an "enroll allowed" naming a row put in behind the guard, say) without moving
    the signed head. No append chains onto it (the next one would sign over it), no open accepts
    it, and `audit verify` names it: the head must name the last entry."""
    import json
    import sqlite3

    from safeface.workspace.audit import AuditEntry, _chain

    ws = make_workspace(tmp_path / "ws")
    running = open_sf(ws)  # a process that opened before the entry was added
    running.export("alice", "demo", "acme", legal_basis=legal_basis(ws, operations=["transmit"]))
    con = sqlite3.connect(str(ws.audit))
    seq, h = con.execute("SELECT seq, hash FROM entries ORDER BY seq DESC LIMIT 1").fetchone()
    forged = AuditEntry(seq + 1, "2099-01-01T00:00:00+00:00", "enroll", "demo", None, None, (), "allowed", None,
                        "rows=99; expires 2100-01-01", None)
    con.execute("INSERT INTO entries (seq, time, operation, purpose, token_id, basis, subjects, decision, rule, note, "
                "actor, prev, hash) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?)",
                (forged.seq, forged.time, forged.operation, forged.purpose, None, None, json.dumps([]),
                 forged.decision, None, forged.note, None, h, _chain(h, forged)))
    con.commit()
    con.close()
    # Its next append would sign over the added entry: it refuses to chain onto it instead.
    with pytest.raises(IntegrityError, match="signed head"):
        running.erase("bob")
    running.close()
    with pytest.raises(IntegrityError, match="signed head"):
        open_sf(ws)
    from safeface.workspace.admin import audit_verify

    pf = tmp_path / "pass"
    from policy_support import PASSPHRASE

    pf.write_text(PASSPHRASE)
    pf.chmod(0o600)  # passphrase files must be private
    with pytest.raises(IntegrityError, match="signed head"):
        audit_verify(ws.root, passphrase_file=pf)


def test_threads_writing_through_one_sqlite_handle_take_turns(tmp_path: Path) -> None:
    """A service runs requests on a pool of threads over one handle, so one SQLite connection: a
    transaction belongs to the connection, so without turns a second thread's BEGIN fails inside
    the first's ("cannot start a transaction within a transaction"), and one thread's COMMIT or
    ROLLBACK ends another's work half-done. Logouts and audit appends race here with no lock
    of the caller's; none may fail, and every write must land whole."""
    import datetime as dt

    from safeface.workspace.apikeys import ApiKeys
    from safeface.workspace.audit import AuditLog

    now = dt.datetime(2026, 12, 1, 9, 0, tzinfo=dt.timezone.utc)
    keys = ApiKeys(tmp_path / "apikeys.db", b"k" * 32)
    log = AuditLog(tmp_path / "audit.db", b"a" * 32)
    _, key = keys.issue("operator", "console", None, None, now)
    cookies = [keys.open_session(key, now + dt.timedelta(seconds=i))[1] for i in range(40)]
    errors: list[BaseException] = []
    ended: list[bool] = []

    def work(n: int) -> None:
        try:
            for i in range(n, len(cookies), 4):
                ended.append(keys.end_session(cookies[i], now + dt.timedelta(minutes=1)))
                log.append("report", "allowed", note=f"thread {n} call {i}")
        except BaseException as exc:  # noqa: BLE001
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(n,)) for n in range(4)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    try:
        assert not errors, f"an honest write failed: {errors[0]!r}"
        assert ended == [True] * len(cookies)
        assert log.verify().entries == len(cookies)
        from safeface.errors import AuthenticationError

        for c in cookies:
            with pytest.raises(AuthenticationError):
                keys.session(c, now + dt.timedelta(minutes=2))
    finally:
        keys.close()
        log.close()


@pytest.mark.parametrize("third", ["verify", "enroll"])
def test_a_new_consent_used_while_its_subjects_erasure_commits_is_no_alarm(tmp_path: Path, third: str) -> None:
    """alice is being erased (the erasure waits for the store, held by another writer) when she
    consents again; an identify under the new consent is judged before the erasure's entry and
    still working when a verify (or an enrolment) under it is judged after. The guard rightly let
    the second in: the first's use was not in the log yet. The store check must judge each call
    by the uses recorded by its judging point, not by one written later: no tampering is named."""
    import time

    from policy_support import CachedPipeline

    from safeface.sdk import SafeFace

    class SlowPipe(CachedPipeline):
        gates = {n: (threading.Event(), threading.Event()) for n in ("identify", "third")}  # (entered, go)

        def embed(self, image: Any, *, count_all: bool = False) -> Any:
            gate = SlowPipe.gates.get(threading.current_thread().name)
            if gate is not None:
                gate[0].set()
                gate[1].wait(30)  # judged, and still working
            return super().embed(image, count_all=count_all)

    ws = make_workspace(tmp_path / "ws")
    img = images()
    from policy_support import PASSPHRASE

    sf = SafeFace.open(ws.root, PASSPHRASE, pipeline=SlowPipe())
    try:
        sf.enroll(img / "obama.jpg", "alice", "demo", consent(ws, "alice"))
        out: dict[str, Any] = {}
        errors: list[BaseException] = []

        def run(name: str, fn: Any) -> threading.Thread:
            def body() -> None:
                try:
                    out[name] = fn()
                except BaseException as exc:  # noqa: BLE001
                    errors.append(exc)
            th = threading.Thread(target=body, name=name)
            th.start()
            return th

        store = sf._gallery.locked()
        store.__enter__()  # another writer holds the store
        eraser = run("erase", lambda: sf.erase("alice"))
        time.sleep(1.2)  # the erasure's time is taken; a consent issued now is a second later
        new = consent(ws, "alice", now=past_the_skew())  # dated past the skew after it
        ident = run("identify", lambda: sf.identify(img / "biden.jpg", "demo", new))
        assert SlowPipe.gates["identify"][0].wait(30)
        store.__exit__(None, None, None)
        eraser.join(30)
        fn = ((lambda: sf.enroll(img / "obama2.jpg", "alice", "demo", new)) if third == "enroll"
              else (lambda: sf.verify(img / "obama2.jpg", "alice", "demo", new)))
        last = run("third", fn)
        assert SlowPipe.gates["third"][0].wait(30)
        order = (last, ident) if third == "enroll" else (ident, last)  # which call's entry is written first
        for th in order:
            SlowPipe.gates["identify" if th is ident else "third"][1].set()
            th.join(30)
        assert not errors, errors
        ops = [(e.operation, e.decision) for e in sf.audit_entries()]
        assert ("erase", "allowed") in ops and ops.count(("identify", "allowed")) == 1
        assert sf.audit_verify().entries > 0
        assert not sf.verify_store().problems
    finally:
        sf.close()


@pytest.mark.parametrize("case", ["33 uses recorded first", "enrolment re-decided meanwhile"])
def test_the_guard_and_the_store_check_see_the_same_uses_of_a_new_consent(tmp_path: Path, case: str) -> None:
    """As above, an identify under alice's new consent is judged before her erasure's entry and
    records its own late. Meanwhile (a) 33 verifies under it are judged after the erasure, or (b)
    an enrolment under it is re-decided under the store's lock, and the identify's entry lands
    before that enrolment's entry. The guard must see every use recorded by a call's judging
    point (not the first 32), and an enrolment's judging point is read before the guard decides
    again: the two then agree, and no honest call is named as let in past a hidden withdrawal."""
    import time

    from policy_support import PASSPHRASE, CachedPipeline

    from safeface.errors import PolicyViolation
    from safeface.sdk import SafeFace

    paused, go = threading.Event(), threading.Event()
    ws = make_workspace(tmp_path / "ws")
    img = images()
    sf = SafeFace.open(ws.root, PASSPHRASE, pipeline=CachedPipeline())
    real_record = sf._record

    def record(*a: Any, **k: Any) -> None:  # the identify has searched; its entry waits
        if threading.current_thread().name == "identify":
            paused.set()
            go.wait(60)
        real_record(*a, **k)

    sf._record = record  # type: ignore[method-assign]
    try:
        sf.enroll(img / "obama.jpg", "alice", "demo", consent(ws, "alice"))
        store = sf._gallery.locked()
        store.__enter__()  # another writer holds the store
        eraser = threading.Thread(target=lambda: sf.erase("alice"))
        eraser.start()
        time.sleep(1.2)  # the erasure's time is taken; a consent issued now is a second later
        new = consent(ws, "alice", now=past_the_skew())  # dated past the skew after it
        ident = threading.Thread(target=lambda: sf.identify(img / "biden.jpg", "demo", new), name="identify")
        ident.start()
        assert paused.wait(60)
        store.__exit__(None, None, None)
        eraser.join(60)
        if case == "33 uses recorded first":
            for _ in range(33):
                sf.verify(img / "obama2.jpg", "alice", "demo", new)
            go.set()
            ident.join(60)
            # Used (by the identify) before the withdrawal: the guard now sees it, however late.
            with pytest.raises(PolicyViolation):
                sf.verify(img / "obama2.jpg", "alice", "demo", new)
        else:
            real = sf._guard.recheck_at_write
            decided, resume = threading.Event(), threading.Event()

            def recheck(*a: Any, **k: Any) -> None:
                real(*a, **k)
                if threading.current_thread().name == "enrol":
                    decided.set()
                    resume.wait(60)

            sf._guard.recheck_at_write = recheck  # type: ignore[method-assign]
            enrol = threading.Thread(target=lambda: sf.enroll(img / "obama2.jpg", "alice", "demo", new), name="enrol")
            enrol.start()
            assert decided.wait(60)  # the guard has decided again; the store's transaction is open
            go.set()
            ident.join(60)  # the identify's entry lands now, before the enrolment's
            resume.set()
            enrol.join(60)
            assert len(sf.records("alice")) == 1
        assert sf.audit_verify().entries > 0
        assert not sf.verify_store().problems
    finally:
        go.set()
        sf.close()


def test_verify_refuses_a_judged_end_the_chain_does_not_hold(tmp_path: Path) -> None:
    """A store check judged against one log end is covered only by a chain holding that very
    entry."""
    ws = make_workspace(tmp_path / "ws")
    with open_sf(ws) as sf:
        seq, h = sf._audit.signed_end()
        assert sf._audit.verify(through=(seq, h)).entries >= seq
        other = ("0" if h[0] != "0" else "1") + h[1:]
        with pytest.raises(IntegrityError, match="changed while the log was checked"):
            sf._audit.verify(through=(seq, other))


def test_safeface_audit_verify_reads_the_log_to_its_snapshot_of_the_store(tmp_path: Path, monkeypatch: Any) -> None:
    """An honest enrolment landing just after the command's snapshot of the store is no alarm
    (the SDK's own check was tested so; the command's was not)."""
    import safeface.workspace.admin as admin
    from policy_support import PASSPHRASE

    ws = make_workspace(tmp_path / "ws")
    with open_sf(ws) as sf:
        sf.enroll(images() / "obama.jpg", "alice", "demo", consent(ws, "alice"))
    snapshot = admin._store_rows

    def snapshot_then_enrol(paths: Any, r: Any) -> Any:
        out = snapshot(paths, r)
        with open_sf(ws) as other:
            other.enroll(images() / "biden.jpg", "bob", "demo", consent(ws, "bob"))
        return out

    monkeypatch.setattr(admin, "_store_rows", snapshot_then_enrol)
    pf = tmp_path / "pass.txt"
    pf.write_text(PASSPHRASE)
    pf.chmod(0o600)  # passphrase files must be private
    assert not admin.audit_verify(ws.root, passphrase_file=pf).store.problems
