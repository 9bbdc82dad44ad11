"""Plot files a report copies or the console serves: only regular files of a plot's size are
read, so a huge file among the plots, or a link planted beside the console's copies, gives
no one its bytes (a key file) and takes no memory or disk in proportion to it."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
from policy_support import make_workspace, open_sf  # noqa: E402
from test_report_output_links import _evaluation  # noqa: E402

from safeface.errors import ConfigError


def test_a_huge_file_among_the_plots_is_refused_unread(tmp_path: Path) -> None:
    """A sparse 256 MiB roc.png was read whole into memory and written whole into the report."""
    ws = make_workspace(tmp_path / "ws")
    with open(_evaluation(ws.root) / "roc.png", "wb") as fh:
        fh.truncate(256 << 20)
    out = tmp_path / "report"
    with open_sf(ws) as sf, pytest.raises(ConfigError, match="roc.png"):
        sf.report(out)
    assert sum(p.stat().st_size for p in out.rglob("*") if p.is_file()) < 1 << 20


def test_the_console_does_not_serve_a_link_planted_among_its_report_plots(tmp_path: Path) -> None:
    """reports/console/assessment/roc.png linking to deployment.json was served as the plot."""
    from fastapi.testclient import TestClient
    from service_support import console_login, console_report, in_process_app

    ws = make_workspace(tmp_path / "ws")
    with open_sf(ws) as sf:
        _, key = sf.issue_api_key("auditor", label="auditor console")
    # A real plot: one the console's report copied there (and lists with its SHA-256).
    (_evaluation(ws.root) / "pr.png").write_bytes(b"\x89PNG\r\n\x1a\nplot")
    plots = ws.root / "reports" / "console" / "assessment"
    with TestClient(in_process_app(ws.root, tmp_path), base_url="https://testserver") as c:
        console_login(c, key)
        assert console_report(c).status_code == 303
        assert (plots / "pr.png").is_file()
        os.symlink(ws.config, plots / "roc.png")
        r = c.get("/report/assessment/roc.png")
        assert r.status_code == 404 and b"controller" not in r.content
        assert c.get("/report/assessment/pr.png").content == b"\x89PNG\r\n\x1a\nplot"  # a real plot still is
