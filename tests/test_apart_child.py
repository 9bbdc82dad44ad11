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


_EMBEDDED = """
import sys
from safeface.apart import run_apart
print("RESULT", run_apart("safeface.diskread:_child", [sys.argv[1]]))
"""


def test_a_process_whose_executable_is_no_python_starts_its_installations_interpreter(tmp_path: Path) -> None:
    """safeface runs inside a server that embeds Python (uWSGI, mod_wsgi: sys.executable is the
    server's binary, here a link named `uwsgi`). No child was started: a disk failing reads was
    judged as damage to restore from a backup, and `audit verify` of a read-only workspace was
    refused. The child is the interpreter of the same installation (its python3.X)."""
    import subprocess
    import sys

    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from child_process import child_env

    server = tmp_path / "bin" / "uwsgi"
    server.parent.mkdir()
    server.symlink_to(sys.executable)
    readable = tmp_path / "gallery.db"
    readable.write_bytes(b"x" * 100)
    done = subprocess.run([str(server), "-c", _EMBEDDED, str(readable)], capture_output=True, text=True,
                          timeout=60, env=child_env(), cwd=str(tmp_path))
    assert "RESULT [-1, 0, '']" in done.stdout, done.stdout + done.stderr[-2000:]
