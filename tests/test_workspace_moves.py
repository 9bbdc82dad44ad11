"""Honest moves of a workspace and of what it writes outside itself: the folder renamed or moved
to another path, a deployment given its name after some months, a witness file moved to another
volume. None may look like tampering; a witness linked from elsewhere is refused, never replaced."""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
from policy_support import edit_config  # noqa: E402

from safeface.errors import IntegrityError  # noqa: E402
from safeface.workspace.admin import audit_checkpoint, audit_verify  # noqa: E402
from safeface.workspace.anchor import FileAnchor  # noqa: E402
from safeface.workspace.init import init_workspace  # noqa: E402
from safeface.workspace.keys import ANCHOR_MAC, derived_key  # noqa: E402
from safeface.workspace.passphrase import open_keyring  # noqa: E402
from safeface.workspace.paths import WorkspacePaths  # noqa: E402
from safeface.workspace.session import opened  # noqa: E402


def _unnamed(root: Path) -> WorkspacePaths:
    """A workspace whose deployment.json sets no "name", as `safeface init` leaves a real one."""
    paths = init_workspace(root, demo=True)
    edit_config(paths, lambda raw: raw.__setitem__("name", ""))
    return paths


def _append(paths: WorkspacePaths, n: int) -> None:
    with opened(paths) as r:
        for i in range(n):
            r.audit.append("verify", "allowed", purpose="demo", note=f"e{i}")


def test_a_checkpoint_still_holds_after_the_workspace_folder_is_moved(tmp_path: Path) -> None:
    """An assessor keeps a checkpoint; the operator moves the workspace to another folder name:
    `audit verify --checkpoint` called it another deployment's, exit 4, as if forged."""
    paths = _unnamed(tmp_path / "ws")
    audit_checkpoint(paths.root, tmp_path / "cp.json")
    _append(paths, 2)
    (tmp_path / "srv").mkdir()
    os.rename(paths.root, tmp_path / "srv" / "ws-prod")
    status = audit_verify(tmp_path / "srv" / "ws-prod", checkpoints=[tmp_path / "cp.json"])
    assert len(status.checkpoints) == 1


def test_a_checkpoint_still_holds_after_the_deployment_is_given_its_name(tmp_path: Path) -> None:
    """The operator fills in deployment.json's "name" after checkpoints were signed (and records
    the assessment): the checkpoints an assessor holds must still verify."""
    paths = _unnamed(tmp_path / "ws")
    audit_checkpoint(paths.root, tmp_path / "cp.json")
    edit_config(paths, lambda raw: raw.__setitem__("name", "Acme front door"))
    assert len(audit_verify(paths.root, checkpoints=[tmp_path / "cp.json"]).checkpoints) == 1


def _witnessed(tmp_path: Path) -> tuple[WorkspacePaths, Path]:
    witness = tmp_path / "etc" / "ws.anchor"
    witness.parent.mkdir()
    paths = init_workspace(tmp_path / "ws", demo=True)
    edit_config(paths, lambda raw: raw.__setitem__("audit", {"witness": str(witness)}))
    return paths, witness


def _head(paths: WorkspacePaths, witness: Path) -> int:
    anchor = FileAnchor(witness, derived_key(open_keyring(paths), ANCHOR_MAC), name="witness", required=True)
    got = anchor.read()
    assert got is not None
    return got.seq


def test_a_witness_moved_to_another_volume_and_linked_is_refused_not_replaced(tmp_path: Path) -> None:
    """The operator moves the witness onto another volume and links it from the path
    deployment.json names: each append replaced the link by a plain file beside it, and the
    volume kept an old head unseen. The link is refused, named, and left as it was."""
    paths, witness = _witnessed(tmp_path)
    _append(paths, 1)
    volume = tmp_path / "worm" / "ws.anchor"
    volume.parent.mkdir()
    shutil.move(str(witness), volume)
    witness.symlink_to(volume)
    before = _head(paths, volume)
    with pytest.raises(IntegrityError, match="is a link"):
        _append(paths, 3)
    assert witness.is_symlink() and _head(paths, volume) == before


def test_a_witness_link_to_nothing_is_refused_not_followed(tmp_path: Path) -> None:
    """Someone who can write a shared witness folder plants a link to a file that does not exist:
    the append must not create that file, and must say why."""
    paths, witness = _witnessed(tmp_path)
    _append(paths, 1)
    witness.unlink()
    planted = tmp_path / "elsewhere" / "created-by-safeface"
    planted.parent.mkdir()
    witness.symlink_to(planted)
    with pytest.raises(IntegrityError, match="is a link"):
        _append(paths, 1)
    assert not planted.exists() and witness.is_symlink()


def test_a_witness_on_a_volume_not_mounted_says_so(tmp_path: Path) -> None:
    """The witness's volume is not mounted when the auditor runs `audit verify` (a share down):
    the finding must say to mount it, not only that the witness was deleted and to restore it."""
    paths, witness = _witnessed(tmp_path)
    _append(paths, 1)
    os.rename(witness.parent, tmp_path / "unmounted")
    witness.parent.mkdir()  # the empty mount point
    with pytest.raises(IntegrityError, match="not mounted here"):
        audit_verify(paths.root)
