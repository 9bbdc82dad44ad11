"""How many threads image work (decoding, detection, alignment) runs on."""

from __future__ import annotations

import os

# dlib's detector and ONNX Runtime release the GIL, so image work scales with cores; past a few
# threads the batch waits on memory and the embedding step instead.
MAX_DEFAULT_WORKERS = 4


def worker_count(threads: int) -> int:
    """`threads` when set (at least 1), else one per core, at most MAX_DEFAULT_WORKERS."""
    return max(1, threads) if threads else max(1, min(MAX_DEFAULT_WORKERS, os.cpu_count() or 1))
