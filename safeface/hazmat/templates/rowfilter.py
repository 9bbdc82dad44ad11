"""Which gallery rows a search may see: purpose and expiry per row, kept as arrays that are updated
in place on every add and removal, so the allowed-id set for a search costs a few vector operations
instead of a pass over every row in Python."""

from __future__ import annotations

from typing import Iterable

import numpy as np

# Removed rows leave holes; the arrays are compacted once holes outnumber live rows (and a minimum).
_COMPACT_MIN = 1024


class RowFilter:
    def __init__(self, capacity: int = 64) -> None:
        cap = max(16, int(capacity))
        self._ids = np.zeros(cap, dtype=np.int64)
        self._exp = np.zeros(cap, dtype=np.int64)
        self._live = np.zeros(cap, dtype=bool)
        self._purposes: list[frozenset[str]] = []
        self._masks: dict[str, np.ndarray] = {}
        self._pos: dict[int, int] = {}
        self._n = 0
        self._dead = 0

    @classmethod
    def build(cls, rows: Iterable[tuple[int, frozenset[str], int]]) -> "RowFilter":
        rows = list(rows)
        f = cls(capacity=2 * len(rows))
        n = len(rows)
        f._ids[:n] = np.fromiter((r for r, _, _ in rows), dtype=np.int64, count=n)
        f._exp[:n] = np.fromiter((e for _, _, e in rows), dtype=np.int64, count=n)
        f._live[:n] = True
        f._purposes = [p for _, p, _ in rows]
        f._pos = {r: i for i, (r, _, _) in enumerate(rows)}
        f._n = n
        return f

    def __len__(self) -> int:
        return self._n - self._dead

    def _grow(self) -> None:
        cap = 2 * len(self._ids)
        self._ids = np.resize(self._ids, cap)
        self._exp = np.resize(self._exp, cap)
        live = np.zeros(cap, dtype=bool)
        live[:self._n] = self._live[:self._n]
        self._live = live
        for p, m in list(self._masks.items()):
            grown = np.zeros(cap, dtype=bool)
            grown[:self._n] = m[:self._n]
            self._masks[p] = grown

    def upsert(self, row_id: int, purposes: frozenset[str], expires_us: int) -> None:
        i = self._pos.get(row_id)
        if i is None:
            if self._n == len(self._ids):
                self._grow()
            i = self._n
            self._n += 1
            self._pos[row_id] = i
            self._ids[i] = row_id
            self._purposes.append(purposes)
        else:
            self._purposes[i] = purposes
        self._exp[i] = expires_us
        self._live[i] = True
        for p, m in self._masks.items():
            m[i] = p in purposes

    def remove(self, row_id: int) -> None:
        i = self._pos.pop(row_id, None)
        if i is None:
            return
        self._live[i] = False
        self._purposes[i] = frozenset()
        for m in self._masks.values():
            m[i] = False
        self._dead += 1
        if self._dead > _COMPACT_MIN and self._dead > self._n - self._dead:
            self._compact()

    def _compact(self) -> None:
        n = self._n
        keep = np.flatnonzero(self._live[:n])
        rows = [(int(self._ids[i]), self._purposes[i], int(self._exp[i])) for i in keep]
        fresh = RowFilter.build(rows)
        self.__dict__.update(fresh.__dict__)

    def allowed(self, purpose: str, now_us: int) -> np.ndarray:
        """Ids of live rows whose purposes include `purpose` and whose expiry is after `now_us`."""
        n = self._n
        m = self._masks.get(purpose)
        if m is None:
            m = np.zeros(len(self._ids), dtype=bool)
            m[:n] = np.fromiter((purpose in ps for ps in self._purposes), dtype=bool, count=n)
            self._masks[purpose] = m
        out: np.ndarray = self._ids[:n][m[:n] & self._live[:n] & (self._exp[:n] > now_us)]
        return out
