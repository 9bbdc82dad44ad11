"""A MAC or digest edited by hand into characters beyond ASCII ("é" x 64): hmac.compare_digest
refuses such a str with a TypeError, so the check that was to report the edit raised a bare
TypeError instead (a traceback, exit 1 from `safeface audit verify`, where a tampered file is
exit 4). Each is reported as the edit it is now (real workspaces, files and tables)."""

from __future__ import annotations

import json
import shutil
import sqlite3
from pathlib import Path
from typing import Callable

import pytest

from policy_support import make_workspace, open_sf
from safeface.cli import main
from safeface.cli.common import EXIT_INTEGRITY
from safeface.errors import AuthenticationError, IntegrityError
from safeface.workspace.paths import WorkspacePaths

FORGED = "é" * 64


@pytest.fixture(scope="module")
def opened_once(tmp_path_factory: pytest.TempPathFactory) -> WorkspacePaths:
    """A demo workspace opened once (its anchor written), copied by each test."""
    paths = make_workspace(tmp_path_factory.mktemp("ws") / "ws")
    with open_sf(paths):
        pass
    return paths


def _copy(paths: WorkspacePaths, tmp_path: Path) -> WorkspacePaths:
    root = tmp_path / "ws"
    shutil.copytree(paths.root, root, symlinks=True)
    return WorkspacePaths(root)


def _edit_json(path: Path, edit: Callable[[dict], None]) -> None:  # type: ignore[type-arg]
    doc = json.loads(path.read_text())
    edit(doc)
    path.write_text(json.dumps(doc))


EDITS: dict[str, Callable[[WorkspacePaths], None]] = {
    "assessment seal": lambda p: _edit_json(p.config, lambda d: d["assessment"].__setitem__("seal", FORGED)),
    "trust store MAC": lambda p: _edit_json(p.trust, lambda d: d.__setitem__("mac", FORGED)),
    "audit anchor MAC": lambda p: _edit_json(p.anchor, lambda d: d.__setitem__("mac", FORGED)),
}


@pytest.mark.parametrize("what", sorted(EDITS))
def test_a_workspace_mac_edited_beyond_ascii_is_an_integrity_error(opened_once: WorkspacePaths, tmp_path: Path,
                                                                  what: str) -> None:
    paths = _copy(opened_once, tmp_path)
    EDITS[what](paths)
    with pytest.raises(IntegrityError, match="(?i)seal|MAC"):
        with open_sf(paths) as sf:
            sf.audit_verify()


def test_audit_verify_exits_4_on_an_anchor_mac_edited_beyond_ascii(opened_once: WorkspacePaths, tmp_path: Path,
                                                                   monkeypatch: pytest.MonkeyPatch,
                                                                   capsys: pytest.CaptureFixture[str]) -> None:
    from policy_support import PASSPHRASE

    paths = _copy(opened_once, tmp_path)
    EDITS["audit anchor MAC"](paths)
    monkeypatch.setenv("SAFEFACE_PASSPHRASE", PASSPHRASE)
    assert main(["audit", "verify", str(paths.root)]) == EXIT_INTEGRITY
    assert "audit-anchor.json" in capsys.readouterr().err


def test_the_audit_logs_head_mac_edited_beyond_ascii_is_an_integrity_error(opened_once: WorkspacePaths,
                                                                          tmp_path: Path) -> None:
    paths = _copy(opened_once, tmp_path)
    with sqlite3.connect(paths.audit) as c:
        assert c.execute("UPDATE head SET mac = ?", (FORGED,)).rowcount == 1
    c.close()
    with pytest.raises(IntegrityError):
        with open_sf(paths) as sf:
            sf.audit_verify()


def test_an_api_keys_stored_digest_edited_beyond_ascii_refuses_the_key(opened_once: WorkspacePaths,
                                                                       tmp_path: Path) -> None:
    paths = _copy(opened_once, tmp_path)
    with open_sf(paths) as sf:
        info, key = sf.issue_api_key("operator")
        assert sf.authenticate(key).key_id == info.key_id
    with sqlite3.connect(paths.apikeys) as c:
        assert c.execute("UPDATE apikeys SET digest = ? WHERE key_id = ?", (FORGED, info.key_id)).rowcount == 1
    c.close()
    with open_sf(paths) as sf:
        with pytest.raises(AuthenticationError):
            sf.authenticate(key)


def test_same_digest_compares_any_text_in_constant_time_form() -> None:
    from safeface.hashing import same_digest

    assert same_digest("ab12", "ab12") and same_digest(b"ab12", "ab12")
    assert not same_digest("ab12", "ab13") and not same_digest("ab12", FORGED) and not same_digest(FORGED[:2], "é?")
    assert same_digest(FORGED, FORGED)  # equal is equal, whatever it holds
    assert not same_digest(None, "ab12") and not same_digest("ab12", 12) and not same_digest("\ud800", "?")
