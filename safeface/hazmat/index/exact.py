"""Exact inner-product search over the C core."""

from __future__ import annotations

import os
import threading
from typing import Any, Iterable, Optional

import numpy as np

from . import _core
from ...errors import IntegrityError
from .base import Allowed, as_ids, as_new_ids, as_vectors, check_dim, check_k, check_threshold
from .container import read_container, require_seal_or_consent, write_container

_FORMAT = "safeface.exact"
_DTYPES = ("float32", "float16", "int8")


class ExactIndex:
    """Exact top-k inner-product search; rows are identified by caller-chosen int64 ids.

    ``dtype`` sets the storage: "float32" (exact), "float16" (half the memory) or "int8" (a quarter,
    one scale per vector). With ``rerank=True`` a float16/int8 index also keeps a float32 copy and
    re-scores its best candidates exactly, so returned scores are exact float32 inner products.
    Searches run on ``threads`` threads (None: the process default, one per hardware thread).
    """

    def __init__(self, dim: int, dtype: str = "float32", rerank: bool = True,
                 threads: Optional[int] = None) -> None:
        self.dim = check_dim(dim)
        if dtype not in _DTYPES:
            raise ValueError(f"dtype must be one of {', '.join(_DTYPES)}; got {dtype!r}.")
        self.dtype = dtype
        self.rerank = bool(rerank) and dtype != "float32"
        self.threads = 0 if threads is None else int(threads)
        self._store = _core.Store(self.dim, dtype, self.rerank)
        # Searches may run concurrently with each other (the core takes a shared lock); saving
        # reads raw views of the store, so it must not overlap a mutation.
        self._write_lock = threading.Lock()

    def __len__(self) -> int:
        return len(self._store)

    def __repr__(self) -> str:
        return f"ExactIndex(dim={self.dim}, dtype={self.dtype!r}, rerank={self.rerank}, n={len(self)})"

    def add(self, ids: Iterable[int] | np.ndarray, vectors: np.ndarray) -> None:
        """Add rows. Re-adding an id replaces its vector (within one call, the last one wins).
        Any int64 id but -1 (reserved for missing results)."""
        id_arr = as_new_ids(ids)
        vecs = as_vectors(vectors, self.dim, check_finite=False)
        if id_arr.shape[0] != vecs.shape[0]:
            raise ValueError(f"got {id_arr.shape[0]} ids for {vecs.shape[0]} vectors.")
        with self._write_lock:
            self._store.add(id_arr, vecs)

    def remove(self, ids: Iterable[int] | np.ndarray) -> int:
        """Remove the given ids; ids not present are ignored. Returns how many were removed.

        Removal moves the last row into the hole, so positions in ``ids()`` change.
        """
        with self._write_lock:
            return int(self._store.remove(as_ids(ids)))

    def ids(self) -> np.ndarray:
        """The ids, in row-position order (the order a boolean ``allowed`` mask follows)."""
        return np.asarray(self._store.ids())

    def search(self, queries: np.ndarray, k: int, threshold: Optional[float] = None,
               allowed: Allowed = None, candidates: Optional[int] = None
               ) -> tuple[np.ndarray, np.ndarray]:
        """Best ``k`` rows per query by inner product, best first.

        Returns ``(scores, ids)`` of shapes (m, k), float32 and int64; missing results (fewer rows
        than k, or below ``threshold``) have score -inf and id -1. Only rows scoring at least
        ``threshold`` are returned. ``allowed`` restricts the rows: either a boolean array with
        one entry per row in ``ids()`` order, or an iterable of ids (unknown ids are ignored). The
        filter is applied inside the scan. ``candidates`` sets the re-rank pool per query of a
        quantized index (default max(4k, 40)).
        """
        kk = check_k(k)
        q = as_vectors(queries, self.dim, "queries", check_finite=False)
        thr = check_threshold(threshold)
        flags = None if allowed is None else self._allowed_mask(allowed)
        scores, out_ids = self._store.search(q, kk, thr, flags, self.rerank,
                                             0 if candidates is None else int(candidates),
                                             self.threads)
        return scores, out_ids

    def _allowed_mask(self, allowed: Allowed) -> np.ndarray:
        n = len(self._store)
        if isinstance(allowed, np.ndarray) and allowed.dtype == np.bool_:
            if allowed.shape != (n,):
                raise ValueError(
                    f"a boolean allowed mask needs one entry per indexed row in ids() order "
                    f"({n}), got shape {allowed.shape}.")
            return np.ascontiguousarray(allowed)
        return self._store.mask_of_ids(as_ids(allowed))  # type: ignore[arg-type]

    def save(self, path: str | os.PathLike[str], key: Optional[bytes] = None, *, plaintext: bool = False) -> None:
        """Write the index to ``path`` (own binary format with a checksum; see container.py).
        With ``key`` (32 random bytes, kept apart from the file) ids and vectors are sealed with
        AES-256-GCM; without it they are stored as they are, which needs ``plaintext=True``."""
        require_seal_or_consent(key, plaintext)
        with self._write_lock:
            raw = self._store.raw()
            meta = {"dim": self.dim, "dtype": self.dtype, "rerank": self.rerank, "n": len(self)}
            write_container(path, _FORMAT, meta, {k: np.asarray(v) for k, v in raw.items()}, key)

    @classmethod
    def load(cls, path: str | os.PathLike[str], threads: Optional[int] = None,
             key: Optional[bytes] = None) -> "ExactIndex":
        """Open an index written by :meth:`save` (with the same ``key`` if it was sealed).
        Raises IntegrityError if the file is damaged, altered or opened with the wrong key.

        The rows are read straight into the index's own buffers: no second copy in memory.
        """
        made: list[ExactIndex] = []

        def allocate(meta: dict[str, Any], layout: dict[str, tuple[str, tuple[int, ...]]]
                     ) -> dict[str, Optional[np.ndarray]]:
            try:
                index = cls(int(meta["dim"]), str(meta["dtype"]), bool(meta["rerank"]), threads)
                n = int(meta["n"])
            except (KeyError, TypeError, ValueError) as exc:
                raise IntegrityError(f"{path} is not a consistent exact index: {exc}") from exc
            if layout.get("ids") != ("int64", (n,)):
                raise IntegrityError(f"{path} declares {n} rows but not {n} ids.")
            made.append(index)
            views = index._store.begin_load(n)
            return {"ids": None, **views}

        _, arrays = read_container(path, _FORMAT, allocate, key)
        if not made:
            raise IntegrityError(f"{path} is not a consistent exact index.")
        index = made[0]
        try:
            index._store.finish_load(arrays["ids"])
        except ValueError as exc:
            raise IntegrityError(f"{path} is not a consistent exact index: {exc}") from exc
        if not index._finite():
            raise IntegrityError(f"{path} is not a consistent exact index: it holds NaN or infinity, which add() "
                                 "refuses (a NaN row scored NaN and came first in every search without a threshold).")
        return index

    def _finite(self) -> bool:
        """Whether every stored number is finite, as add() requires: a file is read straight into
        the buffers, past that check. In slices, so no copy of a large gallery is made."""
        raw = self._store.raw()
        floats = [np.asarray(raw["f32"]).reshape(-1), np.asarray(raw["scales"]).reshape(-1)]
        if self.dtype != "int8":  # the panels hold the vectors themselves, as float32 or float16
            floats.append(np.asarray(raw["panels"]).reshape(-1).view(np.float32 if self.dtype == "float32"
                                                                      else np.float16))
        step = 1 << 22
        return all(bool(np.isfinite(a[i:i + step]).all()) for a in floats for i in range(0, a.size, step))
