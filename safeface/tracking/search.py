"""What a search of a run's tracks reads, and what records it. The clothing shares a search ranks
by are held here, not on each `Person`: a result exposes colour names (what a person reads in
a hit), and a result built again from its people has nothing to rank by. The hook that records
each search is bound here once: every copy of a result (`dataclasses.replace`, `copy.copy`)
shares it, and it cannot be cleared or replaced. Code in the same process can still reach into
private attributes and rank the shares itself; nothing in Python stops that."""

from __future__ import annotations

from typing import Callable, Optional, Sequence

import numpy as np

from ..errors import InvalidArgument
from .describe import Query, score, shrink


class Looks:
    """Each track's median colour shares of its top and its bottom, the frames they were measured
    on, and its height relative to the scene's typical person; one entry a track, in the order
    the result lists its people."""

    __slots__ = ("_upper", "_lower", "_seen", "_heights", "_record")

    def __init__(self, upper: Sequence[np.ndarray], lower: Sequence[np.ndarray], seen: Sequence[int],
                 heights: Sequence[float]) -> None:
        if not len(upper) == len(lower) == len(seen) == len(heights):
            raise InvalidArgument("each track needs its top and bottom colours, the frames they were measured on, "
                                  "and its relative height.")
        self._upper = tuple(np.array(u, np.float32) for u in upper)
        self._lower = tuple(np.array(v, np.float32) for v in lower)
        self._seen = tuple(int(n) for n in seen)
        self._heights = tuple(float(h) for h in heights)
        self._record: Optional[Callable[[str], None]] = None

    def __len__(self) -> int:
        return len(self._seen)

    def __setattr__(self, name: str, value: object) -> None:
        # Set in __init__ only (and the hook by bind): a search's inputs and its record are not
        # changed after the run, in place, by a plain assignment.
        if hasattr(self, "_record") and not (name == "_record" and self._record is None):
            raise AttributeError(f"a run's search data cannot be changed ({name}).")
        object.__setattr__(self, name, value)

    def __delattr__(self, name: str) -> None:
        # `del looks._record` then a fresh assignment let searches go unrecorded.
        raise AttributeError(f"a run's search data cannot be changed ({name}).")

    def bind(self, record: Callable[[str], None]) -> None:
        """Record each later search with `record` before it is made. Bound once: a result a
        workspace returned cannot have its record hook replaced or removed."""
        if self._record is not None:
            raise InvalidArgument("this result's searches are already recorded by the workspace that made it; "
                                  "its record hook cannot be replaced.")
        if not callable(record):
            raise InvalidArgument("a search record hook must be callable.")
        self._record = record

    def rank(self, q: Query) -> list[tuple[float, int]]:
        """(score, track index) best first, after the search is recorded (a search that cannot
        be recorded raises and is not made)."""
        if not isinstance(q, Query):
            raise InvalidArgument("a search ranks by a Query (safeface.tracking.parse makes one from a description).")
        if self._record is not None:
            self._record(q.text)
        if not self._seen:
            return []
        up = np.mean(self._upper, axis=0)
        lo = np.mean(self._lower, axis=0)
        scored = [(score(q, shrink(u, n, up), shrink(v, n, lo), h), i)
                  for i, (u, v, n, h) in enumerate(zip(self._upper, self._lower, self._seen, self._heights))]
        return sorted(scored, key=lambda si: -si[0])
