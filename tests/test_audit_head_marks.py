"""The entries the SDK decides by at open and at every call (the last trust change, the last
assessment) are read through the audit log's signed head, which names each operation's newest
entry with its hash. Each test is an edit of audit.db by someone who can write the workspace
but does not hold the audit key: before, such an edit was used at open and named only by a
full `safeface audit verify`."""

from __future__ import annotations

import datetime as dt
import json
import re
import shutil
import sqlite3
import sys
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

sys.path.insert(0, str(Path(__file__).resolve().parent))
from policy_support import PASSPHRASE, CachedPipeline, consent, edit_config, images, make_workspace  # noqa: E402

from safeface.errors import IntegrityError, PolicyViolation  # noqa: E402
from safeface.policy.deployment import Deployment  # noqa: E402
from safeface.policy.issuer import issue_consent  # noqa: E402
from safeface.sdk import SafeFace  # noqa: E402
from safeface.workspace.admin import audit_verify, keys_list, keys_new, keys_remove  # noqa: E402
from safeface.workspace.audit import AuditLog  # noqa: E402
from safeface.workspace.init import init_workspace  # noqa: E402
from safeface.workspace.keys import read_signing_key  # noqa: E402
from safeface.workspace.paths import WorkspacePaths  # noqa: E402
from safeface.workspace.session import opened  # noqa: E402
from safeface.workspace import trust  # noqa: E402

TOMORROW = dt.datetime.now(dt.timezone.utc).date() + dt.timedelta(days=1)


def _sql(paths: WorkspacePaths, *statements: str, args: tuple[Any, ...] = ()) -> None:
    with sqlite3.connect(paths.audit) as db:
        for s in statements:
            db.execute(s, args)


def _last_seq(paths: WorkspacePaths, operation: str) -> int:
    with sqlite3.connect(paths.audit) as db:
        return int(db.execute("SELECT MAX(seq) FROM entries WHERE operation = ?", (operation,)).fetchone()[0])


def _removed_issuer(tmp_path: Path) -> tuple[WorkspacePaths, Path]:
    """A demo workspace whose consent issuer was removed (say, its key leaked), and a backup of
    the trust store from before the removal."""
    paths = init_workspace(tmp_path / "ws", demo=True)
    backup = tmp_path / "trust.bak"
    shutil.copy2(paths.trust, backup)
    issuer = next(k for k in keys_list(paths.root) if k["kind"] == "consent-issuer")
    keys_remove(paths.root, "consent-issuer", issuer["thumbprint"])
    return paths, backup


def test_a_renamed_trust_removal_with_the_older_trust_store_is_refused_at_open(tmp_path: Path) -> None:
    """The removed issuer trusted again: the backup put back, and the removal's entry renamed so
    that the log's last trust change looks like the one the backup names. Before, the open
    accepted it and the leaked key signed consent again."""
    paths, backup = _removed_issuer(tmp_path)
    seq = _last_seq(paths, "trust-remove")
    _sql(paths, f"UPDATE entries SET operation = 'trust-note' WHERE seq = {seq}")
    shutil.copy2(backup, paths.trust)
    with pytest.raises(IntegrityError, match=f"audit entry {seq}, the last trust-add/trust-remove entry"):
        SafeFace.open(paths.root, pipeline=CachedPipeline())
    with pytest.raises(IntegrityError):
        audit_verify(paths.root)


def test_a_change_made_while_a_trust_removal_was_renamed_does_not_trust_the_removed_key_again(tmp_path: Path) -> None:
    """The backup put back and the removal's entry renamed, then an honest `safeface keys new`:
    the change read the log without its signed head, saw no removal, and wrote the backup forward
    under a genuine entry. The entry renamed back, the open and `audit verify` passed with the
    leaked issuer trusted again. A store is refused wherever it is read while it trusts a key the
    log last records as removed."""
    paths, backup = _removed_issuer(tmp_path)
    leaked = next(k["thumbprint"] for k in keys_list(paths.root) if k["kind"] == "consent-issuer")
    seq = _last_seq(paths, "trust-remove")
    _sql(paths, f"UPDATE entries SET operation = 'trust-note' WHERE seq = {seq}")
    shutil.copy2(backup, paths.trust)
    written = _last_seq(paths, "trust-add")
    with pytest.raises(IntegrityError, match=f"audit entry {seq} was altered"):
        keys_new(paths.root, "consent-issuer", tmp_path / "new.pem")
    assert _last_seq(paths, "trust-add") == written  # refused before it wrote an entry
    # As an earlier safeface's change wrote the backup forward (it read no chain):
    with opened(paths) as r:
        store = trust.TrustStore.load(paths, r.keyring)
        pk = Ed25519PrivateKey.generate().public_key()
        store.keys += (trust.TrustedKey("authority", trust.thumbprint(pk), pk, "x", "2026-12-06T00:00:00+00:00"),)
        store._write(r.keyring, trust._record(r.audit, "trust-add", store.keys[-1], store.digest))
    _sql(paths, f"UPDATE entries SET operation = 'trust-remove' WHERE seq = {seq}")
    with pytest.raises(IntegrityError, match=f"{leaked}, which audit entry {seq} records as removed"):
        SafeFace.open(paths.root, pipeline=CachedPipeline())
    with pytest.raises(IntegrityError, match="records as removed"):
        audit_verify(paths.root)
    keys_remove(paths.root, "consent-issuer", leaked)  # the removal repeated mends it
    with SafeFace.open(paths.root, pipeline=CachedPipeline()) as sf:
        sf.close()
    audit_verify(paths.root)


def test_a_running_handle_never_takes_a_removed_issuer_from_a_change_made_while_its_removal_was_renamed(
        tmp_path: Path) -> None:
    """The same edit under a running service: the change wrote the backup forward, the service's
    next call took that store (its removal hidden) and enrolled with the leaked issuer's consent,
    and kept trusting it after the entry was named back. The change is refused instead."""
    paths = init_workspace(tmp_path / "ws", demo=True)
    backup = tmp_path / "trust.bak"
    shutil.copy2(paths.trust, backup)
    leaked = read_signing_key(paths.demo_issuer)
    bob = issue_consent(leaked, Deployment.load(paths.config), "bob", ["demo"])[0]
    with SafeFace.open(paths.root, pipeline=CachedPipeline()) as sf:
        issuer = next(k for k in keys_list(paths.root) if k["kind"] == "consent-issuer")
        keys_remove(paths.root, "consent-issuer", issuer["thumbprint"])
        seq = _last_seq(paths, "trust-remove")
        _sql(paths, f"UPDATE entries SET operation = 'trust-note' WHERE seq = {seq}")
        shutil.copy2(backup, paths.trust)
        with pytest.raises(IntegrityError):
            keys_new(paths.root, "consent-issuer", tmp_path / "new.pem")
        with pytest.raises((IntegrityError, PolicyViolation)):
            sf.enroll(images() / "biden.jpg", "bob", "demo", bob)
        _sql(paths, f"UPDATE entries SET operation = 'trust-remove' WHERE seq = {seq}")
        with pytest.raises((IntegrityError, PolicyViolation)):
            sf.enroll(images() / "biden.jpg", "bob", "demo", bob)
        assert sf.records() == []


def test_a_renamed_trust_removal_reaches_a_running_handle_as_a_refusal(tmp_path: Path) -> None:
    """A running service checks the last trust change at every call: the same edit made while
    it runs stops its calls."""
    paths = init_workspace(tmp_path / "ws", demo=True)
    backup = tmp_path / "trust.bak"
    shutil.copy2(paths.trust, backup)
    with SafeFace.open(paths.root, pipeline=CachedPipeline()) as sf:
        issuer = next(k for k in keys_list(paths.root) if k["kind"] == "consent-issuer")
        keys_remove(paths.root, "consent-issuer", issuer["thumbprint"])
        _sql(paths, f"UPDATE entries SET operation = 'trust-note' WHERE seq = {_last_seq(paths, 'trust-remove')}")
        shutil.copy2(backup, paths.trust)
        with pytest.raises(IntegrityError, match="edited or renamed by hand"):
            sf.verify(images() / "obama.jpg", "alice", "demo", "not a token")


def test_a_trust_removal_whose_note_was_edited_is_refused(tmp_path: Path) -> None:
    """The removal's note carries the digest of the store it made: pointing it at the backup's
    digest (with the backup's entry number in the file) is an edit of the entry."""
    paths, backup = _removed_issuer(tmp_path)
    seq = _last_seq(paths, "trust-remove")
    with sqlite3.connect(paths.audit) as db:
        note = str(db.execute("SELECT note FROM entries WHERE seq = ?", (seq,)).fetchone()[0])
    _sql(paths, "UPDATE entries SET note = ? WHERE seq = ?", args=(note + " edited", seq))
    with pytest.raises(IntegrityError, match="was altered after it was written"):
        SafeFace.open(paths.root, pipeline=CachedPipeline())


def test_an_assessment_entry_stripped_of_its_purpose_ends_is_refused_at_open(tmp_path: Path) -> None:
    """The assessment's entry records when each purpose's templates go; cutting that from the
    note (and taking the end date out of deployment.json) kept the templates past the end."""
    ws = make_workspace(tmp_path / "ws")
    with SafeFace.open(ws.root, PASSPHRASE, pipeline=CachedPipeline()) as sf:
        sf.enroll(images() / "obama.jpg", "alice", "demo", consent(ws, "alice"))
    edit_config(ws, lambda raw: raw["purposes"]["demo"].__setitem__("end_date", TOMORROW.isoformat()))
    seq = _last_seq(ws, "assessment")
    with sqlite3.connect(ws.audit) as db:
        note = str(db.execute("SELECT note FROM entries WHERE seq = ?", (seq,)).fetchone()[0])
    stripped = re.sub(r"; purposes end \{[^}]*\}", "", note)
    assert stripped != note
    _sql(ws, "UPDATE entries SET note = ? WHERE seq = ?", args=(stripped, seq))
    after_end = dt.datetime.combine(TOMORROW + dt.timedelta(days=2), dt.time(), tzinfo=dt.timezone.utc)
    with pytest.raises(IntegrityError, match=f"audit entry {seq}, the last assessment/init entry"):
        SafeFace.open(ws.root, PASSPHRASE, pipeline=CachedPipeline(), clock=lambda: after_end)


def test_the_signed_marks_cannot_be_edited(tmp_path: Path) -> None:
    """Pointing the head's marks at the older trust change needs the audit key."""
    paths, backup = _removed_issuer(tmp_path)
    with sqlite3.connect(paths.audit) as db:
        marks = json.loads(db.execute("SELECT marks FROM head").fetchone()[0])
        older = db.execute("SELECT seq, hash FROM entries WHERE operation = 'trust-add' ORDER BY seq DESC LIMIT 1").fetchone()
    marks["trust-remove"] = [int(older[0]), str(older[1])]
    _sql(paths, "UPDATE head SET marks = ?", args=(json.dumps(marks, sort_keys=True, separators=(",", ":")),))
    shutil.copy2(backup, paths.trust)
    with pytest.raises(IntegrityError, match="signed head"):
        SafeFace.open(paths.root, pipeline=CachedPipeline())
    # Nor can the marks be dropped: a head without them is signed by another message.
    _sql(paths, "UPDATE head SET marks = NULL")
    with pytest.raises(IntegrityError, match="signed head"):
        SafeFace.open(paths.root, pipeline=CachedPipeline())


def _as_written_before_marks(paths: WorkspacePaths) -> None:
    """Turn the head into one an earlier safeface wrote: no marks, signed the old way (the test
    holds the audit key)."""
    with opened(paths) as r:
        key = r.audit._key
    with sqlite3.connect(paths.audit) as db:
        seq, h = db.execute("SELECT seq, hash FROM head").fetchone()
        log = AuditLog.__new__(AuditLog)
        log._key = key
        db.execute("UPDATE head SET marks = NULL, mac = ?", (log._mac(int(seq), str(h), None),))


def test_a_log_from_before_marks_gains_them_at_its_next_append(tmp_path: Path) -> None:
    """A log an earlier safeface wrote opens as before; its next append checks the chain whole
    and signs marks, after which a renamed trust change is refused at open."""
    paths, backup = _removed_issuer(tmp_path)
    _as_written_before_marks(paths)
    with sqlite3.connect(paths.audit) as db:
        assert db.execute("SELECT marks FROM head").fetchone()[0] is None
    with SafeFace.open(paths.root, pipeline=CachedPipeline()) as sf:
        sf.audit_verify()
    with sqlite3.connect(paths.audit) as db:
        marks = json.loads(db.execute("SELECT marks FROM head").fetchone()[0])
        newest = dict(db.execute("SELECT operation, MAX(seq) FROM entries GROUP BY operation").fetchall())
    assert {op: v[0] for op, v in marks.items()} == newest
    _sql(paths, f"UPDATE entries SET operation = 'trust-note' WHERE seq = {_last_seq(paths, 'trust-remove')}")
    shutil.copy2(backup, paths.trust)
    with pytest.raises(IntegrityError, match="edited or renamed by hand"):
        SafeFace.open(paths.root, pipeline=CachedPipeline())


def test_a_log_from_before_marks_edited_by_hand_gets_no_marks(tmp_path: Path) -> None:
    """The first append after the upgrade checks the chain before it signs marks: an entry
    already renamed then is refused there, rather than signed into the marks."""
    paths, backup = _removed_issuer(tmp_path)
    _as_written_before_marks(paths)
    _sql(paths, f"UPDATE entries SET operation = 'trust-note' WHERE seq = {_last_seq(paths, 'trust-remove')}")
    with opened(paths) as r:
        with pytest.raises(IntegrityError, match="was altered"):
            r.audit.append("test-append", "allowed")
    with sqlite3.connect(paths.audit) as db:
        assert db.execute("SELECT marks FROM head").fetchone()[0] is None


def test_verify_holds_the_marks_to_the_chain(tmp_path: Path) -> None:
    """`audit verify` checks that the marks name each operation's newest entry: marks that
    skip the newest trust change fail it even when signed (here with the audit key, as a bug
    in the writer would)."""
    paths, _ = _removed_issuer(tmp_path)
    audit_verify(paths.root)
    with opened(paths) as r:
        key = r.audit._key
    with sqlite3.connect(paths.audit) as db:
        seq, h, marks = db.execute("SELECT seq, hash, marks FROM head").fetchone()
        rows = {int(s): str(x) for s, x in db.execute("SELECT seq, hash FROM entries")}
        parsed = json.loads(marks)
        assert all(rows[s] == x for s, x in parsed.values())
        older = db.execute("SELECT seq, hash FROM entries WHERE operation = 'trust-add' ORDER BY seq DESC LIMIT 1").fetchone()
        parsed["trust-remove"] = [int(older[0]), str(older[1])]
        text = json.dumps(parsed, sort_keys=True, separators=(",", ":"))
        log = AuditLog.__new__(AuditLog)
        log._key = key
        db.execute("UPDATE head SET marks = ?, mac = ?", (text, log._mac(int(seq), str(h), text)))
    with pytest.raises(IntegrityError, match="does not name each operation's newest entry"):
        audit_verify(paths.root)


def test_a_replaced_assessment_copied_back_under_a_running_handle_is_refused(tmp_path: Path) -> None:
    """No edit of audit.db at all: a worker's handle opened under v1, the controller narrowed
    the kiosk role and recorded the assessment, and an operator without the passphrase put v1's
    bytes back before the handle's next call. The handle judged again only when the file's
    bytes differed from those it had read, so it kept v1 and the kiosk identified."""
    ws = make_workspace(tmp_path / "ws")
    token = consent(ws, "alice", operations=["enroll", "verify", "identify"])
    with SafeFace.open(ws.root, PASSPHRASE, pipeline=CachedPipeline()) as sf:
        sf.enroll(images() / "obama.jpg", "alice", "demo", token)
    v1 = ws.config.read_bytes()
    with SafeFace.open(ws.root, PASSPHRASE, pipeline=CachedPipeline(), role="kiosk") as kiosk:
        edit_config(ws, lambda raw: raw["roles"].__setitem__("kiosk", ["verify"]))
        ws.config.write_bytes(v1)
        with pytest.raises(PolicyViolation) as refused:
            kiosk.identify(images() / "obama2.jpg", "demo", token)
        assert refused.value.rule == "CN-16"  # judged by the roles the last assessment recorded
        problems = [f.message for f in kiosk.findings(dt.date.today()) if not f.ok]
        assert any("not the one this workspace's audit log names last" in p for p in problems)


class _HeadRestoringPipeline(CachedPipeline):
    """The real pipeline; while it embeds, a second process puts audit.db back as it was."""

    def __init__(self) -> None:
        super().__init__()
        self.restore: Any = None

    def embed(self, image: Any, **kw: Any) -> Any:
        if self.restore is not None:
            self.restore()
            self.restore = None
        return super().embed(image, **kw)


def _refused_while_swapped(sf: SafeFace, pipeline: _HeadRestoringPipeline, restore: Any, token: str) -> None:
    """One enrolment with the files swapped in; `restore` puts them back while the face is
    embedded (as a second process would): the call is refused and nothing is stored."""
    pipeline.restore = restore
    with pytest.raises(IntegrityError, match="signed head"):
        sf.enroll(images() / "obama2.jpg", "mallory", "demo", token)
    if pipeline.restore is not None:
        restore()
    assert sf.records() == []


@pytest.mark.parametrize("how", ["marks cleared", "head deleted"])
def test_a_head_stripped_for_one_call_lets_no_removed_issuer_in(tmp_path: Path, how: str) -> None:
    """The head's marks cleared (or the head row deleted) and the trust removal renamed, with
    the older trust.json back, for the length of one enrolment: the last trust change was then
    read from the table unchecked, the removed issuer's consent let in, and audit.db put back
    while the face was embedded, so the enrolment committed."""
    paths, backup = _removed_issuer(tmp_path)
    leaked = consent(paths, "mallory")  # signed by the removed (leaked) issuer key
    pipeline = _HeadRestoringPipeline()
    with SafeFace.open(paths.root, pipeline=pipeline) as sf:
        with pytest.raises(PolicyViolation):
            sf.enroll(images() / "obama.jpg", "mallory", "demo", leaked)
        current = paths.trust.read_bytes()
        seq = _last_seq(paths, "trust-remove")
        head = _head(paths)
        strip = "UPDATE head SET marks = NULL" if how == "marks cleared" else "DELETE FROM head"
        _sql(paths, strip, f"UPDATE entries SET operation = 'trust-note' WHERE seq = {seq}")
        shutil.copy2(backup, paths.trust)

        def restore() -> None:
            _sql(paths, f"UPDATE entries SET operation = 'trust-remove' WHERE seq = {seq}")
            _put_head(paths, head)
            paths.trust.write_bytes(current)

        _refused_while_swapped(sf, pipeline, restore, leaked)


def _head(paths: WorkspacePaths) -> Any:
    with sqlite3.connect(paths.audit) as db:
        return db.execute("SELECT id, seq, hash, mac, marks FROM head").fetchone()


def _put_head(paths: WorkspacePaths, head: Any) -> None:
    _sql(paths, "DELETE FROM head")
    _sql(paths, "INSERT INTO head (id, seq, hash, mac, marks) VALUES (?, ?, ?, ?, ?)", args=head)


def test_an_older_genuine_head_put_back_for_one_call_lets_no_removed_issuer_in(tmp_path: Path) -> None:
    """No entry edited and no key: the head row copied before the issuer's removal (genuinely
    signed, its marks naming the older trust change) and the older trust.json put back for the
    length of one enrolment. The marks were read under a head checked for its signature only,
    so the removed issuer's consent enrolled a person; now the head must also name the last
    entry and agree with the anchors, as where any call is judged."""
    paths = init_workspace(tmp_path / "ws", demo=True)
    backup, old_head = tmp_path / "trust.bak", _head(paths)
    shutil.copy2(paths.trust, backup)
    leaked = consent(paths, "mallory")
    pipeline = _HeadRestoringPipeline()
    with SafeFace.open(paths.root, pipeline=pipeline) as sf:
        issuer = next(k for k in keys_list(paths.root) if k["kind"] == "consent-issuer")
        keys_remove(paths.root, "consent-issuer", issuer["thumbprint"])
        with pytest.raises(PolicyViolation):
            sf.enroll(images() / "obama.jpg", "mallory", "demo", leaked)
        current, head_now = paths.trust.read_bytes(), _head(paths)
        _put_head(paths, old_head)
        shutil.copy2(backup, paths.trust)

        def restore() -> None:
            _put_head(paths, head_now)
            paths.trust.write_bytes(current)

        _refused_while_swapped(sf, pipeline, restore, leaked)


def test_an_older_genuine_head_and_deployment_put_back_for_one_call_enrol_no_one(tmp_path: Path) -> None:
    """The same with the assessment: enrolment taken from the operator role and recorded, then
    the older deployment.json and the head of its time put back for one call. The enrolment
    committed and `audit verify` named nothing afterwards."""
    ws = make_workspace(tmp_path / "ws")
    token = consent(ws, "mallory")
    v1, head_v1 = ws.config.read_bytes(), _head(ws)
    edit_config(ws, lambda raw: raw["roles"].__setitem__("operator", [o for o in raw["roles"]["operator"]
                                                                      if o != "enroll"]))
    pipeline = _HeadRestoringPipeline()
    with SafeFace.open(ws.root, PASSPHRASE, pipeline=pipeline, role="operator") as sf:
        with pytest.raises(PolicyViolation):
            sf.enroll(images() / "obama.jpg", "mallory", "demo", token)
        v2, head_now = ws.config.read_bytes(), _head(ws)
        _put_head(ws, head_v1)
        ws.config.write_bytes(v1)

        def restore() -> None:
            _put_head(ws, head_now)
            ws.config.write_bytes(v2)

        _refused_while_swapped(sf, pipeline, restore, token)
