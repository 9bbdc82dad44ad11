"""Exact inner-product search over the C core."""

from __future__ import annotations

from typing import Iterable, Optional, Union

import numpy as np

from .. import _core  # type: ignore[attr-defined,unused-ignore]

Allowed = Union[np.ndarray, Iterable[int], None]


class ExactIndex:
    """Exact top-k inner-product search. Rows are identified by caller-chosen int64 ids."""

    def __init__(self, dim: int, dtype: str = "float32") -> None:
        if dim <= 0 or dim % 4 or dim > 2048:
            raise ValueError(f"dim must be a positive multiple of 4 up to 2048, got {dim}.")
        if dtype != "float32":
            raise ValueError(f"dtype {dtype!r} is not supported; use 'float32'.")
        self.dim = dim
        self.dtype = dtype
        self._vecs = np.zeros((0, dim), dtype=np.float32)
        self._ids = np.zeros(0, dtype=np.int64)

    def __len__(self) -> int:
        return int(self._ids.shape[0])

    def add(self, ids: np.ndarray, vectors: np.ndarray) -> None:
        ids = np.asarray(ids, dtype=np.int64).reshape(-1)
        vectors = np.ascontiguousarray(vectors, dtype=np.float32).reshape(-1, self.dim)
        if len(ids) != len(vectors):
            raise ValueError("ids and vectors differ in length.")
        self.remove(ids)
        self._ids = np.concatenate([self._ids, ids])
        self._vecs = np.ascontiguousarray(np.concatenate([self._vecs, vectors]))

    def remove(self, ids: Iterable[int]) -> int:
        drop = np.isin(self._ids, np.asarray(list(ids), dtype=np.int64))
        n = int(drop.sum())
        if n:
            self._ids = self._ids[~drop]
            self._vecs = np.ascontiguousarray(self._vecs[~drop])
        return n

    def search(self, queries: np.ndarray, k: int, threshold: Optional[float] = None,
               allowed: Allowed = None) -> tuple[np.ndarray, np.ndarray]:
        q = np.ascontiguousarray(queries, dtype=np.float32).reshape(-1, self.dim)
        rows, ids = self._vecs, self._ids
        if allowed is not None:
            mask = _allowed_mask(allowed, ids)
            rows, ids = np.ascontiguousarray(rows[mask]), ids[mask]
        scores, idx = _core.topk_ip_f32(rows, q, k)
        out_ids = np.where(idx >= 0, ids[np.clip(idx, 0, None)] if len(ids) else -1, -1)
        if threshold is not None:
            below = scores < threshold
            scores = np.where(below, -np.inf, scores)
            out_ids = np.where(below, -1, out_ids)
        return scores, out_ids.astype(np.int64)


def _allowed_mask(allowed: Allowed, ids: np.ndarray) -> np.ndarray:
    if isinstance(allowed, np.ndarray) and allowed.dtype == bool:
        if allowed.shape != ids.shape:
            raise ValueError("a boolean allowed mask must have one entry per row.")
        return allowed
    return np.isin(ids, np.fromiter(allowed, dtype=np.int64))  # type: ignore[arg-type]
