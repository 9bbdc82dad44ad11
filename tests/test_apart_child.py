"""Reads of workspace files run in a child process (safeface.apart): the child imports this
process's safeface with the standard library alone, whatever folder safeface was installed in."""

from __future__ import annotations

from pathlib import Path

import pytest

import safeface
from safeface import apart


def test_a_module_beside_safeface_named_like_the_standard_librarys_is_not_imported_by_the_child(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """safeface is installed in a folder that also holds an old backport named like a standard
    module (PyPI's `pathlib` or `typing`, which no longer import on this Python, in
    site-packages): the child put that folder ahead of the standard library, imported the
    backport, and died. A disk failing reads was then judged as damage, and `audit verify` of a
    read-only workspace was refused."""
    installed = tmp_path / "site-packages"
    installed.mkdir()
    (installed / "safeface").symlink_to(Path(safeface.__file__).parent)
    (installed / "pathlib.py").write_text("raise ImportError('an old backport of pathlib')\n")
    monkeypatch.setattr(apart, "_PACKAGE_PARENT", str(installed))
    readable = tmp_path / "gallery.db"
    readable.write_bytes(b"x" * 100)
    assert apart.run_apart("safeface.diskread:_child", [str(readable)]) == [-1, 0, ""]
