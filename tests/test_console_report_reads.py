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
