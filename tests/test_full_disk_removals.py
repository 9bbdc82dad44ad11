"""The audit log's disk fills up while a purge or a revocation removes templates (the gallery's
and the policy state's write-ahead logs still have room, and another worker reading the gallery
keeps its log from being cut): the rows are deleted and the removal's entry cannot be written.
Once space is back, the records must verify: a later purge found nothing to remove, and a retried
revocation removed nothing, so nothing recorded the rows, and the store check named them deleted
behind the guard for good.

The disk is a small tmpfs mounted in a mount namespace of the test's own (root and unshare(1)
needed), with the workspace in that child process."""

from __future__ import annotations

import sys
import textwrap
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from disk_support import run_on_small_disk  # noqa: E402

_CHILD = textwrap.dedent("""
    import datetime as dt, json, os, sqlite3, sys
    from pathlib import Path
    sys.path.insert(0, TESTS)
    import disk_support
    from policy_support import consent, images, make_workspace, open_sf

    disk = Path(DISK)
    ws = make_workspace(disk / "ws")
    now = [dt.datetime.now(dt.timezone.utc)]
    out = {}
    sf = open_sf(ws, clock=lambda: now[0])
    token = consent(ws, "bob")
    sf.enroll(images() / "biden.jpg", subject="bob", purpose="demo", consent=token)
    ref = sf.records("bob")[0].token_ref

    # The gallery's and the policy state's write-ahead logs keep room; the audit log's is cut to nothing.
    for name in ("gallery.db", "policy.db"):
        db = sqlite3.connect(ws.root / name, isolation_level=None)
        db.execute("CREATE TABLE pad (x)")
        db.execute("INSERT INTO pad SELECT randomblob(400000) FROM (SELECT 1 UNION SELECT 2 UNION SELECT 3)")
        db.execute("DROP TABLE pad")
        db.execute("PRAGMA wal_checkpoint(RESTART)")
        db.close()
    # Another worker mid-search: the purge cannot cut the gallery's write-ahead log meanwhile.
    reader = sqlite3.connect(ws.root / "gallery.db", isolation_level=None)
    reader.execute("BEGIN")
    reader.execute("SELECT COUNT(*) FROM rows").fetchone()
    db = sqlite3.connect(ws.root / "audit.db", isolation_level=None)
    db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    db.close()
    disk_support.fill(disk)

    if HOW == "purge":
        now[0] += dt.timedelta(days=365 * 20)  # bob's template has expired
    remove = sf.purge_expired if HOW == "purge" else lambda: sf.revoke(token_ref=ref)
    try:
        out["full"] = repr(remove())[:300]
    except Exception as exc:
        out["full"] = type(exc).__name__
    reader.rollback()
    reader.close()
    (disk / "filler").unlink()
    try:
        remove()
        out["verify"] = [sf.audit_verify().entries, ""]
    except Exception as exc:
        out["verify"] = [type(exc).__name__, str(exc)[:600]]
    out["rows"] = len(sf.records("bob"))
    sf.close()
    print("RESULT " + json.dumps(out))
""")


def _in_namespace(tmp_path: Path, how: str) -> dict[str, Any]:
    return run_on_small_disk(tmp_path, _CHILD, HOW=how)


def test_a_purge_whose_entry_the_full_disk_refused_leaves_records_that_verify(tmp_path: Path) -> None:
    """The log's disk fills up during a purge: refused to retry; once space is back the next
    purge records the rows the refused one removed, and audit verify passes (it named them
    deleted behind the guard)."""
    out = _in_namespace(tmp_path, "purge")
    assert out["full"] == "WorkspaceUnwritable", out
    assert out["rows"] == 0 and isinstance(out["verify"][0], int), out


def test_a_revocation_whose_entry_the_full_disk_refused_is_recorded_when_retried(tmp_path: Path) -> None:
    """The log's disk fills up while a consent is revoked by its reference: refused to retry;
    the retry records the rows the refused one removed, and audit verify passes (it named them
    deleted behind the guard)."""
    out = _in_namespace(tmp_path, "revoke")
    assert out["full"] == "WorkspaceUnwritable", out
    assert out["rows"] == 0 and isinstance(out["verify"][0], int), out
