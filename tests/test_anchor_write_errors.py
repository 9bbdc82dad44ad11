"""An anchor that cannot be written says the audit entry is recorded but not anchored, whatever
kind of error the write met."""
from __future__ import annotations

import os
from pathlib import Path

import pytest

from safeface.errors import ConfigError
from safeface.workspace.anchor import FileAnchor


def test_an_anchor_that_is_no_regular_file_says_the_entry_is_not_anchored(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    target = tmp_path / "a.json"
    target.symlink_to("/dev/null")  # e.g. a witness path mistyped as a device
    anchor = FileAnchor(target, b"k" * 32, name="anchor", required=True)
    monkeypatch.setattr(anchor, "read", lambda: None)  # no anchor recorded yet
    with pytest.raises(ConfigError, match="recorded but not anchored"):
        anchor.advance(1, "0" * 64)
    assert os.path.islink(target)
