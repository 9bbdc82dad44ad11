"""What the console writes under reports/ (its report's copy, erasure receipts) goes through no
link, as its reads do: a folder there linked elsewhere gets nothing written into its target."""

from __future__ import annotations

import os
import stat
import sys
import textwrap
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
from disk_support import run_on_small_disk  # noqa: E402
from service_support import console_login, console_report, csrf_of, keyed_client  # noqa: E402

PSEUDONYM = "ab" * 32  # no subject has it: the erasure removes nothing, and still gives a receipt


def test_a_receipts_folder_linked_elsewhere_gets_no_receipt_and_the_receipt_is_not_lost(tmp_path: Path) -> None:
    """Someone who may write reports/ links reports/receipts to another folder: an erasure from the
    console wrote its receipt there. Now nothing is written there, and the page shows the signed
    receipt once, so the operator keeps it."""
    client, ws, (op,) = keyed_client(tmp_path, "operator")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (ws.root / "reports").mkdir(exist_ok=True)
    (ws.root / "reports" / "receipts").symlink_to(elsewhere)
    with client:
        assert console_login(client, op).status_code == 303
        page = client.get("/subjects")
        r = client.post("/subjects/erase", data={"csrf": csrf_of(page.text), "pseudonym": PSEUDONYM},
                        follow_redirects=False)
    assert os.listdir(elsewhere) == []
    assert r.status_code == 500 and "id='not-saved'" in r.text and "templates_removed" in r.text, r.text[:300]
    assert str(elsewhere) not in r.text  # the path is the operator's, in the service's log


def test_a_report_folder_linked_elsewhere_gets_no_report_written(tmp_path: Path) -> None:
    """reports/console is a link to another folder: the console's report page wrote compliance.json
    and compliance.html there (over whatever files of those names it held)."""
    client, ws, (aud,) = keyed_client(tmp_path, "auditor")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (elsewhere / "compliance.html").write_text("someone else's file")
    (ws.root / "reports").mkdir(exist_ok=True)
    (ws.root / "reports" / "console").symlink_to(elsewhere)
    with client:
        assert console_login(client, aud).status_code == 303
        r = console_report(client)
    assert sorted(os.listdir(elsewhere)) == ["compliance.html"], os.listdir(elsewhere)
    assert (elsewhere / "compliance.html").read_text() == "someone else's file"
    assert r.status_code == 500, r.status_code


def test_the_receipts_folder_is_writable_by_no_one_else_whatever_the_umask(tmp_path: Path) -> None:
    """A service run under umask 000 made reports/receipts writable by every local account, who
    could then put a receipt of their own (or a link) among the real ones."""
    client, ws, (op,) = keyed_client(tmp_path, "operator")
    old = os.umask(0)
    try:
        with client:
            assert console_login(client, op).status_code == 303
            page = client.get("/subjects")
            r = client.post("/subjects/erase", data={"csrf": csrf_of(page.text), "pseudonym": PSEUDONYM},
                            follow_redirects=False)
    finally:
        os.umask(old)
    assert r.status_code == 303, r.text[:300]
    for folder in (ws.root / "reports", ws.root / "reports" / "receipts"):
        assert not stat.S_IMODE(os.stat(folder).st_mode) & 0o022, oct(os.stat(folder).st_mode)


@pytest.mark.parametrize("planted", ["owned by another user", "writable by everyone"])
def test_a_report_folder_another_user_controls_gets_no_report(tmp_path: Path, planted: str) -> None:
    """Someone who may write reports/ moves reports/console away and makes a real folder of their
    own in its place (no link): the console wrote its report into it and read it back from it, where
    its owner can rewrite the file between the two (and so show "may process" on the console's
    page). Folders below reports/ must be this user's (or root's) and writable by no one else."""
    client, ws, (aud,) = keyed_client(tmp_path, "auditor")
    theirs = ws.root / "reports" / "console"
    theirs.mkdir(parents=True)
    if planted == "owned by another user":
        if os.geteuid() != 0:
            pytest.skip("giving a folder to another user needs root")
        os.chown(theirs, 65534, 65534)
    else:
        os.chmod(theirs, 0o777)
    with client:
        assert console_login(client, aud).status_code == 303
        r = console_report(client)
    assert os.listdir(theirs) == [], os.listdir(theirs)
    assert r.status_code == 500, r.status_code


@pytest.mark.parametrize("planted", ["a link", "writable by everyone"])
def test_a_reports_folder_that_is_a_link_or_open_to_all_gets_nothing_and_serves_nothing(
        tmp_path: Path, planted: str) -> None:
    """Someone who may write the workspace's root makes reports/ itself a link to a folder of
    theirs (or opens it to everyone): the folders below it were refused, reports/ was followed, so
    the console wrote receipts into, and served them from, wherever it pointed. Now reports/ is
    judged as the folders below it: nothing written, nothing read, and the page says what to fix."""
    client, ws, (op,) = keyed_client(tmp_path, "operator")
    reports = ws.root / "reports"
    if reports.exists():
        reports.rmdir()
    theirs = tmp_path / "theirs"
    (theirs / "receipts").mkdir(parents=True)
    if planted == "a link":
        reports.symlink_to(theirs)
    else:
        theirs.rename(reports)
        theirs = reports
        os.chmod(reports, 0o777)
    with client:
        assert console_login(client, op).status_code == 303
        page = client.get("/subjects")
        r = client.post("/subjects/erase", data={"csrf": csrf_of(page.text), "pseudonym": PSEUDONYM},
                        follow_redirects=False)
        shown = client.get("/receipts/aaaaaaaaaaaa")
    assert os.listdir(theirs / "receipts") == [], os.listdir(theirs / "receipts")
    assert r.status_code == 500 and "id='not-saved'" in r.text, r.text[:300]
    assert shown.status_code == 409 and "reports folder" in shown.text, shown.text[:300]


_FULL_DISK_CHILD = textwrap.dedent("""
    import json, sys
    from pathlib import Path
    sys.path.insert(0, TESTS)
    import disk_support
    from service_support import console_login, csrf_of
    from safeface.sdk import SafeFace

    disk = Path(DISK)
    ws, op, _, _ = disk_support.operator_workspace(disk / "ws")
    with disk_support.started_service(ws.root, Path(SCRATCH)) as client:
        console_login(client, op)
        page = client.get("/subjects")
        disk_support.fill_after(SafeFace, "erase", disk, ws.audit)
        r = client.post("/subjects/erase", data={"csrf": csrf_of(page.text), "pseudonym": "ab" * 32},
                        follow_redirects=False)
    print("RESULT " + json.dumps({"status": r.status_code, "text": r.text}))
""")


def test_a_receipt_the_full_disk_refuses_is_shown_once_not_lost(tmp_path: Path) -> None:
    """The disk fills between an erasure (done, on the log) and the console saving its receipt:
    the page was a 500 with a traceback in the log, and the signed receipt, the only one the
    person gets, was lost. It is shown once, as for a receipt a link keeps from being saved."""
    (tmp_path / "scratch").mkdir()
    out = run_on_small_disk(tmp_path, _FULL_DISK_CHILD, SCRATCH=str(tmp_path / "scratch"))
    assert out["status"] == 500 and "id='not-saved'" in out["text"], out["text"][:300]
    assert "templates_removed" in out["text"] and "signature" in out["text"]
