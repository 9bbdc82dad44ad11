"""Kernel-set and thread controls of the C core."""

from __future__ import annotations

from . import _core


def available_isas() -> list[str]:
    """Kernel sets this CPU can run, narrowest first: some of "scalar", "avx2", "avx512"."""
    return list(_core.available_isas())


def get_isa() -> str:
    """The kernel set in use (the widest available unless forced)."""
    return str(_core.get_isa())


def set_isa(name: str) -> None:
    """Force a kernel set ("scalar", "avx2", "avx512"), or "auto" for the widest this CPU runs.

    Raises ValueError for a set this CPU cannot run. Process-wide; meant for tests and benchmarks.
    """
    _core.set_isa(name)


def get_num_threads() -> int:
    return int(_core.get_num_threads())


def set_num_threads(n: int) -> None:
    """Default number of search threads (0: one per hardware thread)."""
    if n < 0:
        raise ValueError(f"the thread count must be 0 or more, got {n}.")
    _core.set_num_threads(int(n))
