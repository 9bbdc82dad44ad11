"""Matching: exact search in the C core, approximate search with FAISS. Knows nothing of faces.

Both indexes share one interface (see :class:`VectorIndex`): caller-chosen int64 ids, inner-product
scores, top-k with an optional score threshold and an optional ``allowed`` filter.
"""

from .base import VectorIndex
from .cpu import available_isas, get_isa, get_num_threads, set_isa, set_num_threads
from .exact import ExactIndex
from .factory import make_index
from .faiss_index import FaissIndex

__all__ = [
    "VectorIndex",
    "ExactIndex",
    "FaissIndex",
    "make_index",
    "available_isas",
    "get_isa",
    "set_isa",
    "get_num_threads",
    "set_num_threads",
]
