"""A workspace opened by a relative path, in an app that later changes its working folder (a
daemon's chdir("/"), a tool that works in another folder).

The handle's checks that its SQLite files are still the ones it opened looked the relative name
up again in the new folder: every call was refused as if the audit log had been replaced."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
from policy_support import PASSPHRASE, CachedPipeline, consent, images, make_workspace  # noqa: E402

from safeface import SafeFace  # noqa: E402


def test_a_workspace_opened_by_a_relative_path_keeps_working_after_the_app_changes_folder(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """An app opens "ws" from its folder, enrols alice, then changes folder: verify, a second
    enrolment and the erasure must still work on that workspace, making no lock file elsewhere."""
    img = images()
    ws = make_workspace(tmp_path / "ws")
    alice, bob = consent(ws, "alice"), consent(ws, "bob")
    elsewhere = tmp_path / "elsewhere"
    (elsewhere / "ws").mkdir(parents=True)
    monkeypatch.chdir(tmp_path)
    with SafeFace.open("ws", PASSPHRASE, pipeline=CachedPipeline()) as sf:
        sf.enroll(img / "obama.jpg", "alice", "demo", alice)
        monkeypatch.chdir(elsewhere)
        assert sf.verify(img / "obama2.jpg", "alice", "demo", alice).match
        sf.enroll(img / "biden.jpg", "bob", "demo", bob)
        assert sf.erase("alice").templates_removed == 1
    assert not any((elsewhere / "ws").iterdir())


def test_a_gallery_opened_by_a_relative_path_keeps_working_after_the_app_changes_folder(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A vendor app opens the storage layer's "gallery.db" from its folder, then changes folder:
    its searches, enrolments and erasures must still reach that gallery and take its lock file."""
    from test_gallery_open_handles import DIM, EXP, _fresh, _unit

    from safeface.storage.gallery import Gallery

    _, keyring, _ = _fresh(tmp_path)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(tmp_path)
    with Gallery.open("gallery.db", keyring, DIM) as g:
        g.add("alice", _unit(1), ["demo"], "tok-a", EXP)
        monkeypatch.chdir(elsewhere)
        assert g.search(_unit(1), "demo", k=1)[0].score == pytest.approx(1.0, abs=1e-4)
        g.add("bob", _unit(2), ["demo"], "tok-b", EXP)
        assert g.erase_subject("alice").count == 1
    assert not any(elsewhere.iterdir())
