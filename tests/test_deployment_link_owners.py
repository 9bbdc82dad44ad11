"""deployment.json kept as a link, written through by `safeface assess` run as root: the link,
and every folder on the way to the file it reaches, must be root's (or this user's). A link
planted by another user (aimed at a root file once `assess` has read through it), one in a chain
through a shared sticky folder, and a folder another user swaps between the check and the write
each sent root's write over a file of their choosing (/etc/passwd); a bind mount of WS/keys
reached a file in the keys folder that a link there may not. Real files, keys and mounts; root
only (another user's files need chown); the other user's race is won by wrapping a step."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
from child_process import child_env  # noqa: E402
from policy_support import PASSPHRASE, make_workspace  # noqa: E402

from safeface import ConfigError  # noqa: E402
from safeface.workspace import admin, session  # noqa: E402
from safeface.workspace.admin import record_assessment  # noqa: E402
from safeface.workspace.paths import WorkspacePaths  # noqa: E402

OTHER = 65534  # nobody

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="giving files to another user needs root")


def _assess(ws: WorkspacePaths) -> None:
    a = json.loads(ws.config.read_text())["assessment"]
    record_assessment(ws.root, a["reference"], a["date"], passphrase=PASSPHRASE,
                      reviewed=a.get("reviewed"), accept_changes=True)


def _system_file(tmp_path: Path) -> Path:
    """A root file outside the workspace, as /etc/passwd."""
    etc = tmp_path / "etc"
    etc.mkdir(exist_ok=True)
    passwd = etc / "passwd"
    passwd.write_text("root:x:0:0:root:/root:/bin/bash\n")
    return passwd


def _link_config(ws: WorkspacePaths, to: Path) -> None:
    ws.config.unlink()
    ws.config.symlink_to(to)


def _relink_before_the_write(monkeypatch: pytest.MonkeyPatch, link: Path, to: Path) -> None:
    """The other user wins the race: `link` is pointed at `to` after `assess` read deployment.json
    through it, just before it writes (the step before the write, wrapped)."""
    start = admin.start_witnesses

    def relinked_after(*args: Any, **kw: Any) -> None:
        start(*args, **kw)
        link.unlink()
        link.symlink_to(to)
        os.lchown(link, OTHER, OTHER)

    monkeypatch.setattr(admin, "start_witnesses", relinked_after)


def test_a_link_planted_in_another_users_workspace_cannot_aim_roots_assess_at_a_root_file(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The service user owning WS links deployment.json to a file of theirs, and to /etc/passwd
    once root's `assess` has read it: refused (ConfigError naming WS), the root file unchanged."""
    ws = make_workspace(tmp_path / "ws")
    passwd = _system_file(tmp_path)
    before = passwd.read_bytes()
    theirs = ws.root / "mine.json"
    theirs.write_bytes(ws.config.read_bytes())
    os.chown(theirs, OTHER, OTHER)
    os.chown(ws.root, OTHER, OTHER)
    _link_config(ws, theirs)
    os.lchown(ws.config, OTHER, OTHER)
    _relink_before_the_write(monkeypatch, ws.config, passwd)
    with pytest.raises(ConfigError, match="another user"):
        _assess(ws)
    assert passwd.read_bytes() == before


def test_a_link_chain_through_a_shared_sticky_folder_cannot_reach_a_root_file(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Root links deployment.json to /tmp/shared/deployment.json; another user puts a link of
    theirs there, to a file of theirs and then to a root file: refused, the root file unchanged."""
    ws = make_workspace(tmp_path / "ws")
    passwd = _system_file(tmp_path)
    before = passwd.read_bytes()
    shared = tmp_path / "shared"
    shared.mkdir()
    os.chmod(shared, 0o1777)
    theirs = shared / "theirs.json"
    theirs.write_bytes(ws.config.read_bytes())
    os.chown(theirs, OTHER, OTHER)
    planted = shared / "deployment.json"
    planted.symlink_to(theirs)
    os.lchown(planted, OTHER, OTHER)
    _link_config(ws, planted)
    _relink_before_the_write(monkeypatch, planted, passwd)
    with pytest.raises(ConfigError, match="another user"):
        _assess(ws)
    assert passwd.read_bytes() == before


def test_a_folder_swapped_between_the_check_and_the_write_cannot_redirect_it(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """deployment.json links to conf/passwd in a folder another user owns; they swap conf for a
    link to etc/ just before the write (the step wrapped): refused first, etc/passwd unchanged."""
    ws = make_workspace(tmp_path / "ws")
    passwd = _system_file(tmp_path)
    before = passwd.read_bytes()
    conf = tmp_path / "conf"
    conf.mkdir()
    (conf / "passwd").write_bytes(ws.config.read_bytes())
    os.chown(conf, OTHER, OTHER)
    # conf/passwd stays root's: a file of this user, in a folder of the other user's
    _link_config(ws, conf / "passwd")
    write = session.write_atomic

    def swapped_first(path: Any, *args: Any, **kw: Any) -> None:
        conf.rename(tmp_path / "conf-away")
        conf.symlink_to(passwd.parent)
        write(path, *args, **kw)

    monkeypatch.setattr(session, "write_atomic", swapped_first)
    with pytest.raises(ConfigError, match="another user"):
        _assess(ws)
    assert passwd.read_bytes() == before


def test_a_link_through_a_bind_mount_of_the_keys_is_refused_as_the_keys_folder(tmp_path: Path) -> None:
    """WS/keys is also mounted elsewhere, and deployment.json links to a copy of it in keys/ seen
    there (a path realpath() never leads back to WS/keys): refused as in WS/keys, nothing written."""
    if shutil.which("unshare") is None:
        pytest.skip("a bind mount needs unshare(1)")
    ws = make_workspace(tmp_path / "ws")
    copy = ws.keys / "deployment.json"
    copy.write_bytes(ws.config.read_bytes())
    before = copy.read_bytes()
    mnt = tmp_path / "mnt"
    mnt.mkdir()
    _link_config(ws, mnt / "deployment.json")
    code = ("import sys; sys.path.insert(0, sys.argv[1]); from pathlib import Path\n"
            "from test_deployment_link_owners import _assess\n"
            "from safeface import ConfigError\n"
            "from safeface.workspace.paths import WorkspacePaths\n"
            "try:\n"
            "    _assess(WorkspacePaths(Path(sys.argv[2])))\n"
            "except ConfigError as exc:\n"
            "    print('REFUSED', exc)\n")
    script = f"mount --bind '{ws.keys}' '{mnt}' && '{sys.executable}' -c \"$0\" '{Path(__file__).parent}' '{ws.root}'"
    done = subprocess.run(["unshare", "-m", "sh", "-c", script, code], capture_output=True, text=True,
                          timeout=120, env=child_env(), cwd=str(tmp_path))
    if done.stderr.startswith(("mount:", "unshare:")):
        pytest.skip(f"this host cannot make a bind mount: {done.stderr.strip()[:200]}")
    assert "REFUSED" in done.stdout and "own files" in done.stdout, done.stdout + done.stderr
    assert copy.read_bytes() == before
