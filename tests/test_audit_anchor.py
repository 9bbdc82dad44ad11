"""The audit log cannot be rolled back or cut unseen (CN-10): its head is anchored outside the
file (keys/audit-anchor.json, MACed with a keyring key), optionally in a witness on another
volume, and in signed checkpoints an assessor keeps. Entry times come from the log, never go
backwards, and every field has a length limit.

Each test is an attack: a file restored from an older copy, a tail cut and an old head put back,
two processes racing, a clock set back, a purpose of any length.

What the anchor alone cannot stop, and a test below states: whoever holds the passphrase can
restore audit.db AND keys/audit-anchor.json from the same older backup; only a witness they
cannot roll back, or a checkpoint kept by someone else, detects that.
"""

from __future__ import annotations

import datetime as dt
import inspect
import json
import multiprocessing as mp
import shutil
import sqlite3
import sys
import time
from pathlib import Path
from typing import Any

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
from policy_support import edit_config  # noqa: E402
from policy_support import last_call  # noqa: E402

from safeface.cli import main  # noqa: E402
from safeface.errors import IntegrityError  # noqa: E402
from safeface.sdk import SafeFace  # noqa: E402
from safeface.workspace import audit as audit_module  # noqa: E402
from safeface.workspace.admin import audit_checkpoint, audit_verify  # noqa: E402
from safeface.workspace.anchor import FileAnchor  # noqa: E402
from safeface.workspace.audit import LIMITS, MAX_SUBJECTS, AuditLog  # noqa: E402
from safeface.workspace.init import init_workspace  # noqa: E402
from safeface.workspace.keys import ANCHOR_MAC, derived_key  # noqa: E402
from safeface.workspace.paths import WorkspacePaths  # noqa: E402
from safeface.workspace.session import opened  # noqa: E402


def workspace(tmp_path: Path, name: str = "ws", witness: Path | None = None) -> WorkspacePaths:
    paths = init_workspace(tmp_path / name, demo=True)  # the demo passphrase is stored in it
    if witness is not None:
        edit_config(paths, lambda raw: raw.__setitem__("audit", {"witness": str(witness)}))
    return paths


def append(paths: WorkspacePaths, n: int, tag: str = "e") -> None:
    with opened(paths) as r:
        for i in range(n):
            r.audit.append("verify", "allowed", purpose="demo", note=f"{tag}{i}")


def copy_log(paths: WorkspacePaths, dest: Path) -> None:
    """A backup of audit.db as an operator would take it (every connection closed, so the
    write-ahead log is folded in)."""
    shutil.copy2(paths.audit, dest)


def restore_log(paths: WorkspacePaths, backup: Path) -> None:
    for suffix in ("-wal", "-shm"):
        Path(str(paths.audit) + suffix).unlink(missing_ok=True)
    shutil.copy2(backup, paths.audit)


def head(paths: WorkspacePaths) -> int:
    with opened(paths) as r:
        return r.audit.verify().entries


def cli(*args: Any) -> int:
    try:
        return main([str(a) for a in args])
    except SystemExit as exc:
        return int(exc.code or 0)


# -- rollback and truncation ------------------------------------------------------------------
def test_anchor_follows_every_append(tmp_path: Path) -> None:
    paths = workspace(tmp_path)
    append(paths, 3)
    doc = json.loads(paths.anchor.read_text())
    with opened(paths) as r:
        report = r.audit.verify()
    assert doc["seq"] == report.entries and doc["hash"] == report.head_hash
    assert "keyring's audit anchor" in report.anchors


def test_restoring_an_older_audit_db_is_detected(tmp_path: Path, capsys: Any) -> None:
    paths = workspace(tmp_path)
    append(paths, 2)
    copy_log(paths, tmp_path / "old.db")
    append(paths, 3, "later")  # e.g. the refusals an operator would like to hide
    restore_log(paths, tmp_path / "old.db")
    with pytest.raises(IntegrityError, match="rolled back or cut"):
        audit_verify(paths.root)
    with pytest.raises(IntegrityError, match="rolled back or cut"):
        SafeFace.open(paths.root)  # nothing is processed on a rolled-back log
    assert cli("audit", "verify", paths.root) == 4
    assert "rolled back" in json.loads(capsys.readouterr().err)["message"]


def test_cutting_the_tail_and_putting_back_an_earlier_head_row_is_detected(tmp_path: Path) -> None:
    paths = workspace(tmp_path)
    append(paths, 2)
    db = sqlite3.connect(str(paths.audit))
    saved = db.execute("SELECT seq, hash, mac, marks FROM head").fetchone()  # a genuinely signed old head
    db.close()
    append(paths, 4, "later")
    db = sqlite3.connect(str(paths.audit))
    db.execute("DELETE FROM entries WHERE seq > ?", (saved[0],))
    db.execute("UPDATE head SET seq = ?, hash = ?, mac = ?, marks = ?", saved)
    db.commit()
    db.close()
    # The log checked only against itself is consistent: this is what the anchor adds.
    with AuditLog(paths.audit, keyring_of(paths).key("audit")) as bare:
        assert bare.verify().entries == saved[0]
    with pytest.raises(IntegrityError, match=f"ends at entry {saved[0]}"):
        audit_verify(paths.root)


def keyring_of(paths: WorkspacePaths) -> Any:
    from safeface.workspace.passphrase import open_keyring

    return open_keyring(paths)


def test_a_log_swapped_for_another_at_the_same_length_is_detected(tmp_path: Path) -> None:
    """Same number of entries, different history (e.g. an older copy padded with harmless
    entries up to the anchored length): the anchored hash differs."""
    paths = workspace(tmp_path)
    copy_log(paths, tmp_path / "old.db")
    append(paths, 3, "real")
    restore_log(paths, tmp_path / "old.db")
    anchor_doc = paths.anchor.read_text()
    paths.anchor.write_text(json.dumps({"format": "x"}))  # the anchor cannot be hidden either...
    with pytest.raises(IntegrityError, match="corrupt"):
        audit_verify(paths.root)
    paths.anchor.write_text(anchor_doc)
    # ...so pad the restored log to the anchored length through the real code path.
    with AuditLog(paths.audit, keyring_of(paths).key("audit")) as bare:  # no anchors: the attacker's own code
        for i in range(3):
            bare.append("verify", "allowed", note=f"padding{i}")
    with pytest.raises(IntegrityError, match="differs from the one"):
        audit_verify(paths.root)


def test_a_deleted_or_forged_anchor_is_detected(tmp_path: Path) -> None:
    paths = workspace(tmp_path)
    append(paths, 2)
    doc = json.loads(paths.anchor.read_text())
    doc["seq"] = 1
    paths.anchor.write_text(json.dumps(doc))  # moved back by hand, MAC kept
    with pytest.raises(IntegrityError, match="MAC"):
        audit_verify(paths.root)
    paths.anchor.unlink()
    with pytest.raises(IntegrityError, match="missing"):
        audit_verify(paths.root)
    with pytest.raises(IntegrityError, match="missing"):
        SafeFace.open(paths.root)


def test_an_anchor_from_another_workspace_is_refused(tmp_path: Path) -> None:
    a, b = workspace(tmp_path, "a"), workspace(tmp_path, "b")
    shutil.copy2(b.anchor, a.anchor)
    with pytest.raises(IntegrityError, match="another workspace"):
        audit_verify(a.root)


def test_restoring_both_log_and_anchor_is_not_detected_without_a_witness(tmp_path: Path) -> None:
    """The stated limit: an operator holding the passphrase who restores audit.db and
    keys/audit-anchor.json from the same older backup passes `audit verify`, unless a witness
    or a checkpoint they cannot roll back says otherwise (next tests)."""
    paths = workspace(tmp_path)
    append(paths, 2)
    copy_log(paths, tmp_path / "old.db")
    shutil.copy2(paths.anchor, tmp_path / "old-anchor.json")
    append(paths, 3, "later")
    restore_log(paths, tmp_path / "old.db")
    shutil.copy2(tmp_path / "old-anchor.json", paths.anchor)
    assert audit_verify(paths.root).report.entries == head(paths)  # NOT detected


def test_a_witness_detects_restoring_both_log_and_anchor(tmp_path: Path) -> None:
    other_volume = tmp_path / "witness-volume"
    other_volume.mkdir()
    witness = other_volume / "ws-anchor.json"
    paths = workspace(tmp_path, witness=witness)
    append(paths, 2)  # the first append writes the witness
    assert json.loads(witness.read_text())["seq"] == head(paths)
    copy_log(paths, tmp_path / "old.db")
    shutil.copy2(paths.anchor, tmp_path / "old-anchor.json")
    append(paths, 3, "later")
    restore_log(paths, tmp_path / "old.db")
    shutil.copy2(tmp_path / "old-anchor.json", paths.anchor)
    with pytest.raises(IntegrityError, match="audit witness"):
        audit_verify(paths.root)
    with pytest.raises(IntegrityError, match="audit witness"):
        SafeFace.open(paths.root)
    # Dropping the witness from deployment.json does not help when the assessor names it.
    edit_config(paths, lambda raw: raw.pop("audit"), reassess=False)  # the log cannot be opened to assess
    with pytest.raises(IntegrityError, match="audit witness"):
        audit_verify(paths.root, witnesses=[witness])
    # A witness that was deleted is reported, not silently restarted, by `audit verify`.
    witness.unlink()
    with pytest.raises(IntegrityError, match="missing"):
        audit_verify(paths.root, witnesses=[witness])


def test_a_checkpoint_detects_restoring_both_log_and_anchor(tmp_path: Path, capsys: Any) -> None:
    paths = workspace(tmp_path)
    copy_log(paths, tmp_path / "old.db")
    shutil.copy2(paths.anchor, tmp_path / "old-anchor.json")
    append(paths, 3)
    cp = tmp_path / "cp.json"
    doc = audit_checkpoint(paths.root, cp)
    assert doc["seq"] == head(paths) - 1  # the checkpoint's own issue is audited after it
    assert audit_verify(paths.root, checkpoints=[cp]).checkpoints[0]["seq"] == doc["seq"]
    assert cli("audit", "verify", paths.root, "--checkpoint", cp) == 0
    restore_log(paths, tmp_path / "old.db")
    shutil.copy2(tmp_path / "old-anchor.json", paths.anchor)
    with pytest.raises(IntegrityError, match="checkpoint"):
        audit_verify(paths.root, checkpoints=[cp])
    assert cli("audit", "verify", paths.root, "--checkpoint", cp) == 4


def test_a_forged_or_foreign_checkpoint_is_refused(tmp_path: Path) -> None:
    a, b = workspace(tmp_path, "a"), workspace(tmp_path, "b")
    cp = tmp_path / "cp.json"
    audit_checkpoint(b.root, cp)
    with pytest.raises(IntegrityError, match="signature"):
        audit_verify(a.root, checkpoints=[cp])  # signed by another workspace's key
    own = tmp_path / "own.json"
    doc = audit_checkpoint(a.root, own)
    head_, payload, sig = doc["jws"].split(".")
    body = json.loads(_b64d(payload))
    body["seq"] = 1
    doc["jws"] = ".".join([head_, _b64e(json.dumps(body).encode()), sig])
    own.write_text(json.dumps(doc))
    with pytest.raises(IntegrityError, match="signature"):
        audit_verify(a.root, checkpoints=[own])


NESTED = "[" * 5000 + "]" * 5000  # fits any of these files' size limits


@pytest.mark.parametrize("where", ["anchor", "checkpoint", "an entry's subjects", "trust.json"])
def test_a_file_or_entry_nested_past_the_parsers_stack_is_tampering_not_a_crash(tmp_path: Path, capsys: Any,
                                                                                 where: str) -> None:
    """Brackets nested thousands deep written over the anchor, a checkpoint, trust.json or an
    entry's subjects column made every open and `audit verify` raise a bare RecursionError (a
    traceback on the command line, not exit 4): each is read with its depth counted first."""
    paths = workspace(tmp_path)
    append(paths, 2)
    cp: list[Path] = []
    if where == "anchor":
        paths.anchor.write_text(NESTED)
    elif where == "trust.json":
        paths.trust.write_text(NESTED)
    elif where == "checkpoint":
        cp.append(tmp_path / "cp.json")
        cp[0].write_text(NESTED)
    else:
        con = sqlite3.connect(str(paths.audit))
        con.execute("UPDATE entries SET subjects = ? WHERE seq = 1", (NESTED,))
        con.commit()
        con.close()
    with pytest.raises(IntegrityError):
        audit_verify(paths.root, checkpoints=cp)
    assert cli("audit", "verify", paths.root, *(["--checkpoint", cp[0]] if cp else [])) == 4
    assert "message" in json.loads(capsys.readouterr().err)
    if not cp:
        with pytest.raises(IntegrityError):
            SafeFace.open(paths.root)


def _b64d(s: str) -> bytes:
    import base64

    return base64.urlsafe_b64decode(s + "=" * (-len(s) % 4))


def _b64e(b: bytes) -> str:
    import base64

    return base64.urlsafe_b64encode(b).rstrip(b"=").decode()


# -- concurrency --------------------------------------------------------------------------------
def _writer(root: str, n: int, tag: str) -> None:
    append(WorkspacePaths(Path(root)), n, tag)


def test_two_processes_appending_keep_the_chain_valid_and_the_anchor_monotonic(tmp_path: Path) -> None:
    paths = workspace(tmp_path)
    start = head(paths)
    ctx = mp.get_context("fork")
    procs = [ctx.Process(target=_writer, args=(str(paths.root), 40, tag)) for tag in ("a", "b")]
    for p in procs:
        p.start()
    with opened(paths) as r:
        key = derived_key(r.keyring, ANCHOR_MAC)
    anchor = FileAnchor(paths.anchor, key, name="anchor", required=True)
    seen = []
    while any(p.is_alive() for p in procs):
        seen.append(anchor.read().seq)  # type: ignore[union-attr]
        time.sleep(0.01)
    for p in procs:
        p.join(120)
        assert p.exitcode == 0
    seen.append(anchor.read().seq)  # type: ignore[union-attr]
    assert seen == sorted(seen), "the anchor moved backwards"
    status = audit_verify(paths.root)
    assert status.report.entries == start + 80 == seen[-1]


def test_an_anchor_never_moves_backwards(tmp_path: Path) -> None:
    anchor = FileAnchor(tmp_path / "a.json", b"k" * 32, name="anchor", required=True)
    anchor.advance(5, "h5")
    anchor.advance(3, "h3")  # a slower writer's older entry
    assert anchor.read() is not None and anchor.read().seq == 5  # type: ignore[union-attr]


# -- time ---------------------------------------------------------------------------------------
def test_append_takes_no_time_from_the_caller(tmp_path: Path) -> None:
    assert "now" not in inspect.signature(AuditLog.append).parameters
    paths = workspace(tmp_path)
    from policy_support import CachedPipeline, Clock

    backdated = Clock(dt.datetime.now(dt.timezone.utc) - dt.timedelta(days=30))
    with SafeFace.open(paths.root, pipeline=CachedPipeline(), clock=backdated) as sf:
        with pytest.raises(Exception):
            sf.analyze("/nonexistent.jpg", ["race"])  # refused and audited
        last = last_call(sf)
    assert last.operation == "analyze" and last.decision == "refused"
    written = dt.datetime.fromisoformat(last.time)
    assert abs(written - dt.datetime.now(dt.timezone.utc)) < dt.timedelta(minutes=5)


def test_a_clock_set_back_is_refused(tmp_path: Path, monkeypatch: Any) -> None:
    log = AuditLog(tmp_path / "a.db", b"k" * 32)
    first = log.append("init", "allowed")
    real = audit_module._utc_now
    monkeypatch.setattr(audit_module, "_utc_now", lambda: real() - dt.timedelta(hours=1))  # the host's clock
    with pytest.raises(IntegrityError, match="the clock went back"):
        log.append("verify", "allowed", note="backdated")
    assert [e.seq for e in log.entries()] == [first.seq]  # nothing written
    # A step back within the tolerance (NTP) is accepted and kept in order.
    just_before = dt.datetime.fromisoformat(first.time) - dt.timedelta(seconds=1)
    monkeypatch.setattr(audit_module, "_utc_now", lambda: just_before)
    e = log.append("verify", "allowed")
    assert e.time == first.time
    assert log.verify().entries == 2


# -- field limits -------------------------------------------------------------------------------
def test_a_purpose_of_100k_chars_is_logged_cut(tmp_path: Path) -> None:
    paths = workspace(tmp_path)
    from policy_support import CachedPipeline

    purpose = "p" * 100_000
    with SafeFace.open(paths.root, pipeline=CachedPipeline()) as sf:
        with pytest.raises(Exception):
            sf.verify("/nonexistent.jpg", "alice", purpose, None)  # refused: undeclared purpose
        last = last_call(sf)
        assert sf.audit_verify().entries >= last.seq
    assert last.decision == "refused" and last.purpose is not None
    assert len(last.purpose) <= LIMITS["purpose"] and "[cut 100000:" in last.purpose
    assert last.purpose.startswith("p" * 40)
    assert paths.audit.stat().st_size < 100_000


def test_every_field_and_the_subject_list_are_bounded(tmp_path: Path) -> None:
    log = AuditLog(tmp_path / "a.db", b"k" * 32)
    big = "x" * 100_000
    e = log.append(big, "refused", purpose=big, token_id=big, basis=big, rule=big, note=big,
                   subjects=[big] + [f"s{i}" for i in range(5000)])
    for field in ("operation", "purpose", "token_id", "basis", "rule", "note"):
        assert len(getattr(e, field)) <= LIMITS[field], field
    assert len(e.subjects) == MAX_SUBJECTS and len(e.subjects[0]) <= LIMITS["subject"]
    assert "[+4902 more:" in e.subjects[-1]
    # Two different long values stay distinguishable.
    a = log.append("verify", "refused", purpose="q" * 500 + "a")
    b = log.append("verify", "refused", purpose="q" * 500 + "b")
    assert a.purpose != b.purpose
    assert log.verify().entries == 3


# -- a host keyring's own anchor ----------------------------------------------------------------
class MonotonicCounter:
    """What a host would back with a KMS monotonic counter or a secure element (the true
    boundary): it keeps the larger seq only."""

    def __init__(self) -> None:
        self.value: tuple[int, str] | None = None

    def read_anchor(self) -> tuple[int, str] | None:
        return self.value

    def advance_anchor(self, seq: int, head_hash: str) -> None:
        if self.value is None or seq > self.value[0]:
            self.value = (seq, head_hash)


def test_a_host_keyrings_anchor_catches_a_restored_log(tmp_path: Path) -> None:
    from safeface.hazmat.templates import HostKeyring, StaticKeyProvider
    from safeface.policy.deployment import Deployment
    from safeface.workspace.session import workspace_anchors

    paths = WorkspacePaths(tmp_path)
    paths.keys.mkdir()
    counter = MonotonicCounter()
    keyring = HostKeyring(StaticKeyProvider.generate(), anchor=counter)
    dep = Deployment.from_dict({})
    anchors = workspace_anchors(paths, keyring, dep)
    assert [a.name for a in anchors] == ["keyring's audit anchor", "host anchor"]
    with AuditLog(paths.audit, keyring.key("audit"), anchors) as log:
        log.append("init", "allowed")
    shutil.copy2(paths.audit, tmp_path / "old.db")
    with AuditLog(paths.audit, keyring.key("audit"), anchors) as log:
        log.append("verify", "allowed")
    assert counter.value is not None and counter.value[0] == 2
    restore_log(paths, tmp_path / "old.db")
    paths.anchor.unlink()  # even with the file anchor gone, and only the host's left...
    with AuditLog(paths.audit, keyring.key("audit"), anchors[1:]) as log, \
            pytest.raises(IntegrityError, match="host anchor"):
        log.check_head()


def test_audit_verify_on_the_command_line_checks_the_template_store(tmp_path: Path, capsys: Any) -> None:
    """A row written straight into the store (hazmat, no guard, no audit entry) is named by
    `safeface audit verify`, not only by SafeFace.audit_verify()."""
    import numpy as np

    from safeface.storage.gallery import Gallery

    paths = workspace(tmp_path)
    assert audit_verify(paths.root).store.rows == 0
    with Gallery.open(paths.gallery, keyring_of(paths), 128) as g:
        v = np.random.default_rng(0).standard_normal(128).astype(np.float32)
        g.add("mallory", v / np.linalg.norm(v), ["demo"], "t-made-up",
              dt.datetime.now(dt.timezone.utc) + dt.timedelta(days=30))
    assert cli("audit", "verify", paths.root) == 4
    assert "behind the guard" in json.loads(capsys.readouterr().err)["message"]


def test_a_log_one_entry_behind_its_anchor_is_called_rolled_back(tmp_path: Path) -> None:
    from safeface.workspace.anchor import Anchor, check_anchor

    paths = workspace(tmp_path)
    append(paths, 2)
    copy_log(paths, tmp_path / "old.db")
    append(paths, 1, "refusal")  # exactly one entry to hide
    restore_log(paths, tmp_path / "old.db")
    with pytest.raises(IntegrityError, match="rolled back or cut"):
        audit_verify(paths.root)

    class Named:
        name, required = "test anchor", True

    with pytest.raises(IntegrityError, match="rolled back or cut: it ends at entry 4"):
        check_anchor(Named(), Anchor(5, "ab" * 32), 4, lambda seq: "ab" * 32)


def _append_many(root: str, tag: str, n: int, q: Any) -> None:
    try:
        with opened(WorkspacePaths(Path(root))) as r:
            for i in range(n):
                r.audit.append("verify", "allowed", purpose="demo", note=f"{tag}{i}")
        q.put("ok")
    except BaseException as exc:  # noqa: BLE001 - the parent reads it
        q.put(f"{type(exc).__name__}: {exc}")


def test_two_processes_appending_to_one_audit_log_take_turns(tmp_path: Path) -> None:
    """Two service workers write the one log: each write holds the file's lock from its first
    read to its commit, so both wait their turn and leave one whole chain. A write that took
    the lock only at its first write failed one worker with "database is locked"."""
    paths = workspace(tmp_path)
    with opened(paths) as r:
        start = r.audit.verify().entries
    ctx = mp.get_context("fork")
    q = ctx.Queue()
    procs = [ctx.Process(target=_append_many, args=(str(paths.root), t, 150, q)) for t in ("a", "b")]
    for p in procs:
        p.start()
    got = [q.get(timeout=300) for _ in procs]
    for p in procs:
        p.join(60)
    assert got == ["ok", "ok"], got
    with opened(paths) as r:
        assert r.audit.verify().entries == start + 300
