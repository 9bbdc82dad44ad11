"""The console's report page reads the report it just wrote under reports/console as the copies
are read (no link followed): a folder swapped for a link there cannot put another report on it."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Any

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
from service_support import console_login, console_report, keyed_client  # noqa: E402

FAKE = {"can_process": True, "records_verified": True, "deployment": "FAKE-DEPLOYMENT", "profiles": [],
        "generated": "now", "rules": [], "counts": {}}


def test_a_report_folder_linked_elsewhere_cannot_show_a_fake_report(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Someone who may write reports/ links reports/console to their own folder and rewrites each
    compliance.json written there at once (inotify): the console's report page never shows it."""
    client, ws, (aud,) = keyed_client(tmp_path, "auditor")
    theirs = tmp_path / "theirs"
    theirs.mkdir()
    (ws.root / "reports").mkdir(exist_ok=True)
    (ws.root / "reports" / "console").symlink_to(theirs)
    real_replace = os.replace

    def rewritten(src: Any, dst: Any, *args: Any, **kw: Any) -> None:
        real_replace(src, dst, *args, **kw)
        if Path(dst).name == "compliance.json":  # the other process, as soon as the file appears
            (theirs / "compliance.json").write_text(json.dumps(FAKE))

    with client:
        assert console_login(client, aud).status_code == 303
        monkeypatch.setattr(os, "replace", rewritten)
        generated = console_report(client)
        monkeypatch.undo()
        page = client.get("/report")
    # Nothing is written through the link any more (test_console_writes.py), so nothing to rewrite.
    assert not (theirs / "compliance.json").exists()
    assert generated.status_code != 303 and "FAKE-DEPLOYMENT" not in page.text, page.text[:300]


def test_a_report_written_into_reports_console_by_hand_is_not_shown_as_generated(tmp_path: Path) -> None:
    """Whoever may write reports/ (as the service's user) replaces reports/console/compliance.json
    with a report of their own ("may process"): the page showed it as the last report generated
    there, and /report/compliance.json served it. Only a report whose SHA-256 the log names is."""
    client, ws, (aud,) = keyed_client(tmp_path, "auditor")
    with client:
        assert console_login(client, aud).status_code == 303
        assert console_report(client).status_code == 303
        saved = ws.root / "reports" / "console" / "compliance.json"
        real = json.loads(saved.read_text())
        before = client.get("/report")
        assert real["deployment"] in before.text and "not one this workspace wrote" not in before.text
        assert client.get("/report/compliance.json").status_code == 200
        saved.write_text(json.dumps({**real, "deployment": "FAKE-DEPLOYMENT"}))
        page = client.get("/report")
        served = client.get("/report/compliance.json")
    assert "FAKE-DEPLOYMENT" not in page.text and "not one this workspace wrote" in page.text, page.text[:300]
    assert served.status_code == 409 and "FAKE-DEPLOYMENT" not in served.text


def _evaluation_with_plot(ws: Any, data: bytes) -> None:
    """A summary in reports/evaluation/ naming one plot by its SHA-256, as `eval --workspace` writes."""
    import hashlib

    ev = ws.root / "reports" / "evaluation"
    ev.mkdir(parents=True, exist_ok=True)
    (ev / "verify-roc.png").write_bytes(data)
    run = {"kind": "verify", "options": {"threshold": 0.91}, "plots": {"roc": "verify-roc.png"},
           "plot_sha256": {"verify-roc.png": hashlib.sha256(data).hexdigest()}}
    (ev / "latest.json").write_text(json.dumps({**run, "runs": {"verify": run}}))


def test_a_plot_swapped_among_the_consoles_copies_is_not_served(tmp_path: Path) -> None:
    """The report copies the summary's plots into reports/console/assessment/ once their SHA-256
    is checked; whoever may write reports/ then replaces the copy (another deployment's ROC): the
    console served it as the report's plot. Now a copy whose SHA-256 is not the one the report on
    record lists is refused."""
    client, ws, (aud,) = keyed_client(tmp_path, "auditor")
    _evaluation_with_plot(ws, b"\x89PNG\r\n\x1a\nmeasured")
    with client:
        assert console_login(client, aud).status_code == 303
        assert console_report(client).status_code == 303
        assert "assessment/verify-roc.png" in client.get("/report").text
        first = client.get("/report/assessment/verify-roc.png")
        assert first.status_code == 200 and first.content.endswith(b"measured")
        copy = ws.root / "reports" / "console" / "assessment" / "verify-roc.png"
        copy.write_bytes(b"\x89PNG\r\n\x1a\nanother deployment")
        (copy.parent / "verify-det.png").write_bytes(b"\x89PNG\r\n\x1a\nplanted plot")
        swapped = client.get("/report/assessment/verify-roc.png")
        added = client.get("/report/assessment/verify-det.png")
    assert swapped.status_code == 409 and b"another deployment" not in swapped.content
    assert added.status_code == 409 and b"planted plot" not in added.content


def test_an_older_report_on_record_put_back_is_not_shown_as_the_last_one(tmp_path: Path) -> None:
    """Whoever may write reports/ keeps a report from a day the deployment could process and copies
    it back over a newer one that says it cannot: both are on record, and the page showed the old
    one as the last report generated. Now it says a newer report has been written since."""
    client, ws, (aud,) = keyed_client(tmp_path, "auditor")
    saved = ws.root / "reports" / "console" / "compliance.json"
    with client:
        assert console_login(client, aud).status_code == 303
        assert console_report(client).status_code == 303
        old = saved.read_bytes()
        fresh = client.get("/report")
        assert "NOT THE LAST REPORT" not in fresh.text
        assert console_report(client).status_code == 303
        assert saved.read_bytes() != old
        saved.write_bytes(old)
        page = client.get("/report")
        served = client.get("/report/compliance.json")
    assert "NOT THE LAST REPORT" in page.text, page.text[:400]
    assert served.status_code == 409
