"""Caller text the audit log cannot store as it is (a NUL) is written escaped, and never so that
two different texts log alike: the log must still say which text each caller sent."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from safeface.errors import SafeFaceError
from safeface.sdk import SafeFace
from safeface.workspace.admin import audit_verify
from safeface.workspace.init import init_workspace


def test_a_purpose_with_a_nul_and_one_spelling_its_escape_are_logged_apart(tmp_path: Path) -> None:
    """One app asks for purpose "demo" + NUL, another for the text "demo\\x00": each refusal must
    name its own purpose, not one the other call could also have written."""
    paths = init_workspace(tmp_path / "ws", demo=True)
    with SafeFace.open(paths.root) as sf:
        for purpose in ("demo\x00", "demo\\x00"):
            with pytest.raises(SafeFaceError):
                sf.identify(np.zeros((64, 64, 3), np.uint8), purpose=purpose)
        entries = sf.audit_entries()
    assert [(e.operation, e.decision) for e in entries[-2:]] == [("identify", "refused")] * 2
    assert entries[-2].purpose != entries[-1].purpose
    audit_verify(paths.root)
