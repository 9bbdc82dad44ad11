"""The witness named in deployment.json (audit.witness) catches audit.db and the keyring's anchor
restored together from an older copy; the line naming it is covered by the sealed assessment."""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
from policy_support import edit_config  # noqa: E402

from safeface.errors import IntegrityError  # noqa: E402
from safeface.workspace.admin import audit_verify  # noqa: E402
from safeface.workspace.init import init_workspace  # noqa: E402
from safeface.workspace.paths import WorkspacePaths  # noqa: E402
from safeface.workspace.session import opened  # noqa: E402


def _append(paths: WorkspacePaths, n: int, tag: str) -> None:
    with opened(paths) as r:
        for i in range(n):
            r.audit.append("verify", "allowed", purpose="demo", note=f"{tag}{i}")


@pytest.mark.parametrize("how", ["witness-line-removed", "witness-pointed-at-a-copy-of-the-old-anchor"])
def test_a_witness_line_changed_by_hand_does_not_make_a_rolled_back_log_pass(tmp_path: Path, how: str) -> None:
    """Operator restores audit.db and the anchor from a backup, then drops the assessed witness line
    or points it at a copy of the old anchor; `audit verify` must still refuse the log."""
    paths = _rolled_back_under_a_witness(tmp_path)
    with pytest.raises(IntegrityError):
        audit_verify(paths.root)  # the witness catches it
    if how == "witness-line-removed":
        edit_config(paths, lambda raw: raw.pop("audit"), reassess=False)
    else:
        fake = tmp_path / "fake-volume" / "ws-anchor.json"
        fake.parent.mkdir()
        shutil.copy2(paths.anchor, fake)
        edit_config(paths, lambda raw: raw.__setitem__("audit", {"witness": str(fake)}), reassess=False)
    with pytest.raises(IntegrityError, match="audit section"):
        audit_verify(paths.root)


def _rolled_back_under_a_witness(tmp_path: Path) -> WorkspacePaths:
    """A demo workspace whose assessed audit section names a witness, with audit.db and its
    anchor put back to a copy taken one entry earlier (the witness holds the newer head)."""
    volume = tmp_path / "witness-volume"
    volume.mkdir()
    paths = init_workspace(tmp_path / "ws", demo=True)
    edit_config(paths, lambda raw: raw.__setitem__("audit", {"witness": str(volume / "ws-anchor.json")}))
    _append(paths, 2, "e")
    audit_verify(paths.root)
    shutil.copy2(paths.audit, tmp_path / "old.db")
    shutil.copy2(paths.anchor, tmp_path / "old-anchor.json")
    _append(paths, 3, "later")
    for suffix in ("-wal", "-shm"):
        Path(str(paths.audit) + suffix).unlink(missing_ok=True)
    shutil.copy2(tmp_path / "old.db", paths.audit)
    shutil.copy2(tmp_path / "old-anchor.json", paths.anchor)
    return paths


def test_the_sdks_audit_verify_also_refuses_a_witness_line_removed_by_hand(tmp_path: Path) -> None:
    """Operator rolls audit.db and its anchor back and drops the assessed witness line by hand; an
    app's `SafeFace.audit_verify()` (behind /v1 and the console) must refuse it as the CLI does."""
    from safeface.sdk import SafeFace

    paths = _rolled_back_under_a_witness(tmp_path)
    edit_config(paths, lambda raw: raw.pop("audit"), reassess=False)
    with pytest.raises(IntegrityError, match="audit section"):
        with SafeFace.open(paths.root) as sf:
            sf.audit_verify()
