"""An erasure whose process was killed after the store's commit and before its audit entry (a
kill -9, a power cut): `audit verify` names the row as missing from the store, and the operator
must learn from that finding how to settle it (erase the person again), not only that the row
may have been deleted behind the guard."""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from child_process import erase_killed  # noqa: E402
from policy_support import consent, images, make_workspace, open_sf  # noqa: E402


def test_the_finding_for_an_interrupted_erasure_says_to_erase_again(tmp_path: Path) -> None:
    """alice's erasure is killed between its two commits; the store check's finding tells the
    operator to erase her again, and doing so settles it."""
    ws = make_workspace(tmp_path / "ws")
    with open_sf(ws) as sf:
        sf.enroll(images() / "obama.jpg", "alice", "demo", consent(ws, "alice"))
    erase_killed(ws.root, tmp_path)
    with open_sf(ws) as sf:
        (problem,) = sf.verify_store().problems
        assert "erase them again" in problem
        sf.erase("alice")
        assert sf.verify_store().ok
