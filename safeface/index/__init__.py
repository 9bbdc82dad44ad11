"""Matching: exact search in the C core, approximate search with FAISS. Knows nothing of faces."""

from .exact import ExactIndex

__all__ = ["ExactIndex"]
