"""Report and plot files written where someone planted a symbolic link: the link is replaced,
never written through, and a link among the plots is not copied into the report. Nor are report
folders left open for another account to plant one, or to swap the figures."""

from __future__ import annotations

import os
import stat
import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
from policy_support import make_workspace, open_sf  # noqa: E402

from safeface.errors import ConfigError


def _evaluation(ws_root: Path) -> Path:
    ev = ws_root / "reports" / "evaluation"
    ev.mkdir(parents=True, exist_ok=True)
    (ev / "latest.json").write_text('{"kind": "verify", "metrics": {"eer": 0.01}}')
    return ev


def test_a_link_in_the_report_folder_is_replaced_not_written_through(tmp_path: Path) -> None:
    """A link at OUT/assessment/roc.png to another file: the report's plot copy leaves that file alone."""
    ws = make_workspace(tmp_path / "ws")
    (_evaluation(ws.root) / "roc.png").write_bytes(b"\x89PNG\r\n\x1a\nplot")
    victim = tmp_path / "victim.txt"
    victim.write_text("someone else's file")
    out = tmp_path / "report"
    (out / "assessment").mkdir(parents=True)
    os.symlink(victim, out / "assessment" / "roc.png")
    with open_sf(ws) as sf:
        sf.report(out)
    assert victim.read_text() == "someone else's file"
    copy = out / "assessment" / "roc.png"
    assert not copy.is_symlink() and copy.read_bytes() == b"\x89PNG\r\n\x1a\nplot"


def test_a_link_among_the_plots_is_not_copied_into_the_report(tmp_path: Path) -> None:
    """reports/evaluation/roc.png links to a key file: refused, the key is not put in the report folder."""
    ws = make_workspace(tmp_path / "ws")
    secret = tmp_path / "secret.key"
    secret.write_text("SECRET KEY")
    os.symlink(secret, _evaluation(ws.root) / "roc.png")
    out = tmp_path / "report"
    with open_sf(ws) as sf, pytest.raises(ConfigError, match="link"):
        sf.report(out)
    assert not any("SECRET" in p.read_text(errors="replace") for p in out.rglob("*") if p.is_file())


def test_an_evaluation_copy_into_the_workspace_does_not_write_through_a_link(tmp_path: Path) -> None:
    """A link at WS/reports/evaluation/roc.png to deployment.json: `eval --workspace` leaves it intact."""
    from safeface.evaluate import report

    ws = make_workspace(tmp_path / "ws")
    before = ws.config.read_bytes()
    os.symlink(ws.config, _evaluation(ws.root) / "roc.png")
    out = tmp_path / "out"
    out.mkdir()
    plot = out / "roc.png"
    plot.write_bytes(b"\x89PNG\r\n\x1a\nplot")
    doc = report.summary("verify", {"pairs": 1}, "dlib", {}, {"eer": 0.1}, {"roc": plot}, out)
    report.write_report(out, doc, {"roc": plot}, ws.root)
    assert ws.config.read_bytes() == before
    assert (ws.root / "reports" / "evaluation" / "roc.png").read_bytes() == plot.read_bytes()


def test_a_plot_does_not_write_through_a_link_at_its_path(tmp_path: Path) -> None:
    """A link at OUT/verify-roc.png to another file: the plot replaces the link, the file is untouched."""
    from safeface.evaluate import metrics, plots

    victim = tmp_path / "victim.txt"
    victim.write_text("someone else's file")
    target = tmp_path / "verify-roc.png"
    os.symlink(victim, target)
    curve = metrics.Curve(np.array([0.9, 0.5]), np.array([0.01, 0.1]), np.array([0.3, 0.1]))
    plots.roc_plot({"dlib": curve}, target)
    assert victim.read_text() == "someone else's file"
    assert not target.is_symlink() and target.read_bytes().startswith(b"\x89PNG")


def test_evaluation_report_folders_are_not_writable_by_others(tmp_path: Path) -> None:
    """`safeface eval --out` under umask 000: no folder it makes lets another account swap a file."""
    from safeface.evaluate import report

    plot = tmp_path / "roc.png"
    plot.write_bytes(b"\x89PNG\r\n\x1a\nplot")
    out = tmp_path / "eval" / "run1"
    old = os.umask(0)
    try:
        doc = report.summary("verify", {"pairs": 1}, "dlib", {}, {"eer": 0.1}, {"roc": plot}, out)
        report.write_report(out, doc, {"roc": plot})
    finally:
        os.umask(old)
    for folder in (tmp_path / "eval", out):
        assert stat.S_IMODE(folder.stat().st_mode) & 0o022 == 0, (folder, oct(folder.stat().st_mode))
