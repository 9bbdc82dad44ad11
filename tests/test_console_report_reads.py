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
