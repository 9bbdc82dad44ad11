"""The workspace's disk fills up in the instant after an enrolment's store commit and before its
commit mark is written to the audit log: the row and its "enroll allowed" entry are both durable.
The caller was told the call failed (a 503 to retry), and a retry stored a second template of the
same person, both on record. The call must tell the truth (its enrolment, the mark pending) and
the log must verify once space is back, the mark settled.

The disk is a small tmpfs mounted in a mount namespace of the test's own (root and unshare(1)
needed); the moment it fills is chosen by wrapping the store's write, which the disk's own
timing cannot be made to hit."""

from __future__ import annotations

import json
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
from disk_support import run_on_small_disk  # noqa: E402

_CHILD = textwrap.dedent("""
    import json, sys
    from pathlib import Path
    sys.path.insert(0, TESTS)
    import disk_support
    from policy_support import consent, images, make_workspace, open_sf

    disk = Path(DISK)
    ws = make_workspace(disk / "ws", edit=lambda r: r["filing"].__setitem__("threshold", 1))
    out = {}
    sf = open_sf(ws)
    token = consent(ws, "bob")
    if WHEN == "store":  # the disk fills once the store has committed
        undo = disk_support.fill_after(type(sf._gallery), "add_many", disk, ws.root / "audit.db")
    else:  # once the commit mark is written
        undo = disk_support.fill_after(type(sf), "_append", disk, ws.root / "audit.db",
                                       lambda operation, *a, **k: operation == "enroll-committed")
    try:
        got = sf.enroll(images() / "biden.jpg", subject="bob", purpose="demo", consent=token)
        out["enroll"] = ["ok", got.row_id, got.commit_mark]
    except Exception as exc:
        out["enroll"] = [type(exc).__name__, str(exc)[:300]]
    undo()
    out["rows while full"] = len(sf.records("bob"))
    (disk / "filler").unlink()
    if out["enroll"][0] != "ok":  # told to retry: the caller retries
        try:
            sf.enroll(images() / "biden.jpg", subject="bob", purpose="demo", consent=token)
        except Exception as exc:
            out["retry"] = type(exc).__name__
    sf.close()
    with open_sf(ws) as sf:
        out["rows"] = len(sf.records("bob"))
        try:
            out["verify"] = sf.audit_verify().entries
        except Exception as exc:
            out["verify"] = type(exc).__name__ + ": " + str(exc)[:400]
        out["log"] = [[e.operation, e.decision, e.note or ""] for e in sf.audit_entries()][-6:]
        out["crossings"] = sum(e.operation == "filing-threshold" for e in sf.audit_entries())
    print("RESULT " + json.dumps(out))
""")


_SERVICE_CHILD = textwrap.dedent("""
    import json, sys, time
    from pathlib import Path
    sys.path.insert(0, TESTS)
    import disk_support
    from policy_support import open_sf
    from safeface.storage.gallery import Gallery

    disk, scratch = Path(DISK), Path(SCRATCH)
    ws, op, token, photo = disk_support.operator_workspace(disk / "ws")
    out = {}
    with disk_support.started_service(ws.root, scratch) as client:
        undo = disk_support.fill_after(Gallery, "add_many", disk, ws.root / "audit.db")
        r = client.post("/v1/enroll", headers={"X-API-Key": op}, files={"image": ("f.jpg", photo, "image/jpeg")},
                        data={"subject": "bob", "purpose": "demo", "consent": token})
        undo()
        out["enroll"] = [r.status_code, r.text[:400]]
        out["ready while full"] = client.get("/v1/ready").status_code
        (disk / "filler").unlink()
        for _ in range(100):
            if client.get("/v1/ready").status_code == 200:
                break
            time.sleep(0.1)
        out["ready after"] = client.get("/v1/ready").status_code
    with open_sf(ws) as sf:
        out["rows"] = len(sf.records("bob"))
        out["verify"] = sf.audit_verify().entries
    print("RESULT " + json.dumps(out))
""")


def _in_namespace(tmp_path: Path, child: str = _CHILD, when: str = "store") -> dict[str, Any]:
    (tmp_path / "scratch").mkdir()
    return run_on_small_disk(tmp_path, child, SCRATCH=str(tmp_path / "scratch"), WHEN=when)


def test_a_disk_filling_before_the_commit_mark_neither_fails_a_stored_enrolment_nor_stores_it_twice(
        tmp_path: Path) -> None:
    """The disk fills between an enrolment's store commit and its commit mark: the call returns
    its enrolment (the row is stored and on record), no retry stores a second template, and once
    space is back the log verifies, the row settled as committed, and the crossing of a filing
    threshold of 1 the enrolment made is on record (enrolments past it are refused, so none
    would record it)."""
    out = _in_namespace(tmp_path)
    assert out["enroll"][0] == "ok" and out["enroll"][2] == "pending", out
    assert out["rows"] == 1 and isinstance(out["verify"], int), out
    assert any(op == "enroll-committed" and f"rows={out['enroll'][1]}" in note for op, _, note in out["log"]), out
    assert out["crossings"] == 1, out


def test_the_service_answers_a_stored_enrolment_whose_mark_the_full_disk_refused_with_its_row(
        tmp_path: Path) -> None:
    """The same through the service: the enrolment is a 200 naming its row, its mark pending (it
    was a 503, and a retry stored a second template), and /v1/ready is a 503 until the disk has
    room again."""
    out = _in_namespace(tmp_path, _SERVICE_CHILD)
    status, text = out["enroll"]
    assert status == 200 and json.loads(text)["commit_mark"] == "pending", out
    assert out["ready while full"] == 503 and out["ready after"] == 200, out
    assert out["rows"] == 1 and isinstance(out["verify"], int), out


def test_a_disk_filling_after_the_commit_mark_does_not_lose_the_filing_thresholds_crossing(tmp_path: Path) -> None:
    """The disk fills right after an enrolment's commit mark, before the entry recording the
    crossing of a filing threshold of 1 the enrolment made: the crossing is on record once space is
    back (it was lost for good: enrolments past the threshold are refused, so none records it)."""
    out = _in_namespace(tmp_path, when="mark")
    assert out["enroll"][0] == "ok" and out["enroll"][2] in ("written", "pending"), out
    assert out["crossings"] == 1, out


_DELETED_CHILD = textwrap.dedent("""
    import json, sqlite3, sys
    from pathlib import Path
    sys.path.insert(0, TESTS)
    import disk_support
    from policy_support import consent, images, make_workspace, open_sf
    from safeface.storage.gallery import Gallery

    disk = Path(DISK)
    ws = make_workspace(disk / "ws")
    out = {}
    holder = open_sf(ws)  # the handle whose mark the disk refused stays open (a running service)
    undo = disk_support.fill_after(Gallery, "add_many", disk, ws.root / "audit.db")
    got = holder.enroll(images() / "biden.jpg", subject="bob", purpose="demo", consent=consent(ws, "bob"))
    undo()
    out["enroll"] = [got.row_id, got.commit_mark]
    (disk / "filler").unlink()
    with sqlite3.connect(ws.gallery) as db:  # by hand: the row deleted, the counter set back
        db.execute("DELETE FROM rows WHERE row_id = ?", (got.row_id,))
        db.execute("UPDATE sqlite_sequence SET seq = ? WHERE name = 'rows'", (got.row_id - 1,))
    if WHEN == "closed":  # the process that stored it stops (a service restarted)
        holder.close()
    with open_sf(ws) as sf:  # another handle opens, and settles the pending mark
        out["settled"] = [[e.operation, e.note or ""] for e in sf.audit_entries()
                          if e.operation in ("enroll-committed", "uncommitted")]
        out["problems"] = list(sf.verify_store().problems)
    holder.close()
    print("RESULT " + json.dumps(out))
""")


@pytest.mark.parametrize("when", ["open", "closed"])
def test_a_row_deleted_by_hand_while_its_mark_is_pending_is_not_settled_as_never_committed(
        tmp_path: Path, when: str) -> None:
    """The disk fills after an enrolment's store commit, its mark pending; meanwhile the row is
    deleted by hand and SQLite's id counter set back. Another handle opening then settled the
    row as never committed ("uncommitted"), and the deletion went unnoticed. The handle that
    stored it owes the mark: while it is open, the row is settled as stored; closed once the
    disk has room, it writes the mark first. The store check names the row missing."""
    out = _in_namespace(tmp_path, _DELETED_CHILD, when)
    row, mark = out["enroll"]
    assert mark == "pending", out
    assert not any(op == "uncommitted" for op, _ in out["settled"]), out
    assert any(op == "enroll-committed" and f"rows={row}" in note for op, note in out["settled"]), out
    assert any(f"row {row} was enrolled (audit) but is missing" in p for p in out["problems"]), out
