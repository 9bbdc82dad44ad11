"""Running safeface in a child Python process, as the crash and concurrency tests do.

The child must import the same safeface as the tests: the installed package in CI, or a
checkout's in-place build in development. It runs with the package's parent folder on
PYTHONPATH and its working directory outside the checkout (pass ``cwd=``), so the source tree,
which holds no compiled core, can never shadow the package."""

from __future__ import annotations

import os
from pathlib import Path

import safeface


def child_env(**extra: str) -> dict[str, str]:
    root = str(Path(safeface.__file__).resolve().parents[1])
    return {**os.environ, "PYTHONPATH": root, "OPENBLAS_NUM_THREADS": "1", **extra}
