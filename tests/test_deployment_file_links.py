"""deployment.json kept as a link (a configuration tool's file elsewhere): `safeface assess` and
`storage confirm` write through to the file it points to, never replacing the link by a plain
file the tool no longer reaches; a link to one of the workspace's own files, or to a file of
another user, is refused and left as it was. Real files and keys."""

from __future__ import annotations

import json
import os
import stat
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
from policy_support import PASSPHRASE, edit_config, make_workspace, open_sf  # noqa: E402

from safeface import ConfigError  # noqa: E402
from safeface.workspace.admin import record_assessment  # noqa: E402
from safeface.workspace.paths import WorkspacePaths  # noqa: E402


def _managed(tmp_path: Path) -> tuple[WorkspacePaths, Path]:
    """A workspace whose deployment.json links to a file a configuration tool keeps elsewhere."""
    ws = make_workspace(tmp_path / "ws")
    managed = tmp_path / "etc" / "deployment.json"
    managed.parent.mkdir()
    managed.write_bytes(ws.config.read_bytes())
    ws.config.unlink()
    ws.config.symlink_to(managed)
    return ws, managed


def _assess(ws: WorkspacePaths) -> None:
    a = json.loads(ws.config.read_text())["assessment"]
    record_assessment(ws.root, a["reference"], a["date"], passphrase=PASSPHRASE,
                      reviewed=a.get("reviewed"), accept_changes=True)


def test_an_assessment_writes_through_a_deployment_link_to_the_managed_file(tmp_path: Path) -> None:
    """The operator links deployment.json to a managed file and assesses: the link stays, and the
    managed file holds the sealed assessment the workspace then processes under."""
    ws, managed = _managed(tmp_path)
    edit_config(ws, lambda raw: raw["assessment"].__setitem__("reference", "DPIA-2"))
    assert ws.config.is_symlink() and os.readlink(ws.config) == str(managed)
    assert json.loads(managed.read_text())["assessment"]["reference"] == "DPIA-2"
    with open_sf(ws) as sf:
        assert sf.records() == []


def test_a_deployment_link_to_a_key_file_or_another_users_file_is_refused_and_kept(tmp_path: Path) -> None:
    """deployment.json linked to a copy of it in WS/keys, or to a file of another user: the
    assessment is refused, naming the link, and neither the link nor its target is written."""
    ws, managed = _managed(tmp_path)
    inside_keys = ws.keys / "deployment.json"
    inside_keys.write_bytes(managed.read_bytes())
    ws.config.unlink()
    ws.config.symlink_to(inside_keys)
    before = inside_keys.read_bytes()
    with pytest.raises(ConfigError, match="workspace's own files"):
        _assess(ws)
    assert ws.config.is_symlink() and inside_keys.read_bytes() == before
    if os.geteuid() != 0:
        pytest.skip("only root can give the managed file to another user here")
    os.chown(managed, 65534, 65534)
    ws.config.unlink()
    ws.config.symlink_to(managed)
    before = managed.read_bytes()
    with pytest.raises(ConfigError, match="no regular file of this user"):
        _assess(ws)
    assert ws.config.is_symlink() and managed.read_bytes() == before


def test_the_managed_file_written_through_keeps_no_special_or_shared_write_bits(tmp_path: Path) -> None:
    """The managed file is setuid and group/world writable (0o4777): after `assess` writes through,
    it is 0o755, no setuid JSON file left by a root `assess`, no one else able to edit it."""
    ws, managed = _managed(tmp_path)
    os.chmod(managed, 0o4777)
    _assess(ws)
    assert ws.config.is_symlink() and stat.S_IMODE(os.stat(managed).st_mode) == 0o755
