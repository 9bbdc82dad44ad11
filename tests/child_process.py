"""Running safeface in a child Python process, as the crash and concurrency tests do.

The child must import the same safeface as the tests: the installed package in CI, or a
checkout's in-place build in development. It runs with the package's parent folder on
PYTHONPATH and its working directory outside the checkout (pass ``cwd=``), so the source tree,
which holds no compiled core, can never shadow the package."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import safeface


def child_env(**extra: str) -> dict[str, str]:
    root = str(Path(safeface.__file__).resolve().parents[1])
    return {**os.environ, "PYTHONPATH": root, "OPENBLAS_NUM_THREADS": "1", **extra}


_ERASE_KILLED = r"""
import importlib, os, sys
sys.path.insert(0, sys.argv[1])
from policy_support import open_sf
from safeface.workspace.paths import WorkspacePaths
module, name = sys.argv[3].split(":")
store = getattr(importlib.import_module(module), name)
original = store.erase_pseudonym
def erase_pseudonym(self, p, **kw):
    original(self, p, **kw)
    os._exit(137)  # killed after the store's commit, before the erasure's entry
store.erase_pseudonym = erase_pseudonym
open_sf(WorkspacePaths(sys.argv[2])).erase("alice")
"""


def erase_killed(root: Path, cwd: Path, store: str = "safeface.storage.gallery:Gallery") -> None:
    """Erase alice from the workspace at `root` in a child process killed after `store`'s
    commit and before the erasure's audit entry (a kill -9, a power cut)."""
    tests = str(Path(__file__).resolve().parent)
    child = subprocess.run([sys.executable, "-c", _ERASE_KILLED, tests, str(root), store], env=child_env(), cwd=cwd,
                           capture_output=True, text=True, timeout=300)
    assert child.returncode == 137, child.stderr[-500:]
