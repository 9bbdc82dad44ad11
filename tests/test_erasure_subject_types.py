"""An app hands erase() a subject id that is no string (bytes from a web framework, a list): it
was written as text ("b'alice'"), erased no one, and got a signed receipt."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
from policy_support import consent, images, make_workspace, open_sf  # noqa: E402

from safeface.errors import InvalidArgument  # noqa: E402


def test_an_erasure_of_a_subject_id_that_is_no_string_is_refused_on_record(tmp_path: Path) -> None:
    """erase(b"alice"), erase(["alice"]) and erase(True): each refused (InvalidArgument), recorded as
    a failed erasure, never a receipt; alice's template stays until she is erased by her id."""
    ws = make_workspace(tmp_path / "ws")
    with open_sf(ws) as sf:
        sf.enroll(images() / "obama.jpg", "alice", "demo", consent(ws, "alice"))
        bad: list[Any] = [b"alice", ["alice"], True]
        for subject in bad:
            with pytest.raises(InvalidArgument, match="must be a string"):
                sf.erase(subject)
        assert [e.decision for e in sf.audit_entries() if e.operation == "erase"] == ["failed"] * 3
        assert sf.erase("alice").templates_removed == 1
