"""A tracking run's purpose is judged and recorded in a workspace, or not accepted at all."""

from __future__ import annotations

from pathlib import Path

import pytest

from safeface.cli import main
from tests.video_fixtures import synthetic_video


def test_a_purpose_given_without_a_workspace_is_refused_not_ignored(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """An operator runs `safeface track ... --purpose P` with no --workspace: the purpose, declared
    or not, was ignored and the run went unrecorded; refused now, before anything is written."""
    src = synthetic_video(tmp_path / "in.mp4", 160, 120, frames=4)
    out = tmp_path / "out.mp4"
    assert main(["track", str(src), str(out), "--purpose", "no-such-purpose"]) != 0
    assert "--workspace" in capsys.readouterr().err
    assert not out.exists()
    assert main(["track", "search", str(src), "--describe", "red top", "--purpose", "demo"]) != 0
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.mp4"]
