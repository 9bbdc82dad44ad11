"""The workspace's disk fills up in the instant after an erasure's (or a revocation's) store commit
and before its audit entry: the person's rows are gone, the call refused to retry (503). The
retried call recorded the rows as already gone, but its signed receipt, the only one the person
gets, said 0 templates removed and named no row (a retried purge's receipt names them). The
receipt must name the rows the request removed, as the log's entry does.

The disk is a small tmpfs mounted in a mount namespace of the test's own (root and unshare(1)
needed); the moment it fills is chosen by wrapping the store's delete, which the disk's own
timing cannot be made to hit."""

from __future__ import annotations

import sys
import textwrap
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from disk_support import run_on_small_disk  # noqa: E402

_CHILD = textwrap.dedent("""
    import json, sqlite3, sys
    from pathlib import Path
    sys.path.insert(0, TESTS)
    import disk_support
    from policy_support import consent, images, make_workspace, open_sf

    disk = Path(DISK)
    ws = make_workspace(disk / "ws")
    out = {}
    sf = open_sf(ws)
    row = sf.enroll(images() / "biden.jpg", subject="bob", purpose="demo", consent=consent(ws, "bob")).row_id
    ref = sf.records("bob")[0].token_ref
    gallery = type(sf._gallery)
    name = "erase_pseudonym" if HOW == "erase" else "remove_token"
    delete = getattr(gallery, name)

    def delete_then_fill(self, *a, **k):
        got = delete(self, *a, **k)  # the store's commit is done
        for db_name in ("audit.db", "policy.db"):
            db = sqlite3.connect(ws.root / db_name, isolation_level=None)
            db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
            db.close()
        disk_support.fill(disk)
        return got

    call = (lambda: sf.erase("bob")) if HOW == "erase" else (lambda: sf.revoke(token_ref=ref))
    setattr(gallery, name, delete_then_fill)
    try:
        out["full"] = repr(call())[:300]
    except Exception as exc:
        out["full"] = type(exc).__name__
    setattr(gallery, name, delete)
    (disk / "filler").unlink()
    receipt = call()  # told to retry: the caller retries
    out["receipt"] = [receipt.templates_removed, list(receipt.rows)]
    out["row"] = row
    out["rows"] = len(sf.records("bob"))
    out["verify"] = sf.audit_verify().entries
    sf.close()
    print("RESULT " + json.dumps(out))
""")


def _in_namespace(tmp_path: Path, how: str) -> dict[str, Any]:
    return run_on_small_disk(tmp_path, _CHILD, HOW=how)


def test_an_erasure_retried_after_a_full_disk_refused_its_entry_gets_a_receipt_naming_the_rows(
        tmp_path: Path) -> None:
    """The disk fills between an erasure's store commit and its entry: refused to retry; the
    retry's signed receipt names the row the refused call removed (it said 0 removed), and the
    records verify."""
    out = _in_namespace(tmp_path, "erase")
    assert out["full"] == "WorkspaceUnwritable" and out["rows"] == 0, out
    assert out["receipt"] == [1, [out["row"]]] and isinstance(out["verify"], int), out


def test_a_revocation_retried_after_a_full_disk_refused_its_entry_gets_a_receipt_naming_the_rows(
        tmp_path: Path) -> None:
    """The same for a consent revoked by its reference: the retry's receipt names the row the
    refused revocation removed (it said 0 removed), and the records verify."""
    out = _in_namespace(tmp_path, "revoke")
    assert out["full"] == "WorkspaceUnwritable" and out["rows"] == 0, out
    assert out["receipt"] == [1, [out["row"]]] and isinstance(out["verify"], int), out
