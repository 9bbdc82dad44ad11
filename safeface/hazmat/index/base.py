"""The interface both indexes share, and input checks common to both."""

from __future__ import annotations

from typing import Iterable, Optional, Protocol, Union

import numpy as np

#: Rows a search may return: a boolean mask indexed by position in ``index.ids()`` order, or any
#: iterable (set, list, array) of ids. Ids not in the index are ignored.
Allowed = Union[np.ndarray, Iterable[int], None]


class VectorIndex(Protocol):
    dim: int

    def __len__(self) -> int: ...

    def add(self, ids: Iterable[int] | np.ndarray, vectors: np.ndarray) -> None: ...

    def remove(self, ids: Iterable[int] | np.ndarray) -> int: ...

    def search(self, queries: np.ndarray, k: int, threshold: Optional[float] = None,
               allowed: Allowed = None) -> tuple[np.ndarray, np.ndarray]: ...

    def ids(self) -> np.ndarray: ...

    def save(self, path: str, key: Optional[bytes] = None) -> None: ...


def check_dim(dim: int) -> int:
    if isinstance(dim, bool) or not isinstance(dim, (int, np.integer)):
        raise ValueError(f"dim must be an integer, got {dim!r}.")
    if dim <= 0 or dim % 4 or dim > 2048:
        raise ValueError(f"dim must be a positive multiple of 4 up to 2048, got {dim}.")
    return int(dim)


def as_ids(ids: Iterable[int] | np.ndarray) -> np.ndarray:
    arr = np.asarray(ids if isinstance(ids, np.ndarray) else list(ids))
    if arr.size == 0:
        return np.zeros(0, dtype=np.int64)
    if arr.dtype.kind not in "iu":
        raise ValueError(f"ids must be integers, got an array of {arr.dtype}.")
    return np.ascontiguousarray(arr.reshape(-1), dtype=np.int64)


def as_new_ids(ids: Iterable[int] | np.ndarray) -> np.ndarray:
    """Ids for add(): -1 is refused, as it marks a missing result in search output."""
    arr = as_ids(ids)
    if (arr == -1).any():
        raise ValueError("id -1 is reserved: search results use it to mark a missing row.")
    return arr


def as_vectors(vectors: np.ndarray, dim: int, what: str = "vectors",
               check_finite: bool = True) -> np.ndarray:
    arr = np.asarray(vectors)
    if arr.dtype.kind not in "fiu":
        raise ValueError(f"{what} must be numbers, got an array of {arr.dtype}.")
    if arr.ndim == 1:
        arr = arr.reshape(1, -1)
    if arr.ndim != 2:
        raise ValueError(f"{what} must be a 2-D array (count, {dim}), got shape {arr.shape}.")
    if arr.shape[1] != dim:
        raise ValueError(f"{what} have dimension {arr.shape[1]} but the index has dimension {dim}.")
    arr = np.ascontiguousarray(arr, dtype=np.float32)
    # The C core checks finiteness itself while it reads; FAISS callers ask for the check here.
    if check_finite and not np.isfinite(arr).all():
        raise ValueError(f"{what} contain NaN or infinity; every value must be finite.")
    return arr


def check_k(k: int) -> int:
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k <= 0:
        raise ValueError(f"k must be a positive integer, got {k!r}.")
    return int(k)


def check_threshold(threshold: Optional[float]) -> Optional[float]:
    if threshold is None:
        return None
    t = float(threshold)
    if np.isnan(t):
        raise ValueError("threshold must be a number, got NaN.")
    return t


def allowed_mask(allowed: Allowed, ids: np.ndarray) -> np.ndarray:
    """The ``allowed`` argument as a boolean mask over positions in ``ids`` order."""
    if isinstance(allowed, np.ndarray) and allowed.dtype == np.bool_:
        if allowed.shape != ids.shape:
            raise ValueError(
                f"a boolean allowed mask needs one entry per indexed row in ids() order "
                f"({ids.shape[0]}), got shape {allowed.shape}.")
        return allowed
    return np.isin(ids, as_ids(allowed))  # type: ignore[arg-type]
