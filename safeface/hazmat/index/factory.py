"""Choosing an index for an expected gallery size."""

from __future__ import annotations

from typing import Any, Union

from .exact import ExactIndex
from .faiss_index import FaissIndex

#: Above this many rows make_index switches to approximate search by default. Exact search in
#: the C core scans a million 128-d float32 rows in tens of milliseconds, so exact stays the
#: default well into the millions.
DEFAULT_APPROX_ABOVE = 2_000_000


def make_index(dim: int, size_hint: int = 0, approx_above: int = DEFAULT_APPROX_ABOVE,
               dtype: str = "float32", kind: str = "hnsw",
               **faiss_options: Any) -> Union[ExactIndex, FaissIndex]:
    """Exact search (ExactIndex with ``dtype``) unless ``size_hint`` exceeds ``approx_above``;
    then a FaissIndex of ``kind`` built with ``faiss_options``."""
    if size_hint < 0 or approx_above < 0:
        raise ValueError("size_hint and approx_above must not be negative.")
    if size_hint > approx_above:
        return FaissIndex(dim, kind, **faiss_options)
    return ExactIndex(dim, dtype=dtype)
