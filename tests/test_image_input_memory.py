"""What an image given in memory may cost before it is checked: a view of a few bytes that
NumPy or the buffer protocol presents as hundreds of megabytes (a broadcast array, a view of a
mapped file). Each is hashed, checked and converted a band of rows at a time, or refused by its
size before it is copied (measured with tracemalloc, which sees NumPy's and bytes' allocations)."""

from __future__ import annotations

import hashlib
import tracemalloc

import numpy as np
import pytest

from safeface.errors import ImageError
from safeface.imageio import load_image, load_image_hashed

MIB = 1 << 20


def _peak(fn: object) -> int:
    tracemalloc.start()
    try:
        tracemalloc.reset_peak()
        fn()  # type: ignore[operator]
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def test_a_broadcast_float_view_is_hashed_and_checked_in_bands() -> None:
    """An app passes an 8-byte float broadcast to 4000x4000x4 (a 512 MB contiguous copy, made whole
    to hash it, and a bool copy to look for NaN): the call stays near its output's size, and the
    hash of an array is the one it was."""
    view = np.broadcast_to(np.float64(0.5), (4000, 4000, 4))
    peak = _peak(lambda: load_image_hashed(view))
    assert peak < 256 * MIB, f"{peak // MIB} MiB"
    nan = np.broadcast_to(np.float32(np.nan), (4000, 4000, 3))
    with pytest.raises(ImageError, match="NaN"):
        load_image(nan)
    arr = np.arange(700 * 9 * 3, dtype=np.uint16).reshape(700, 9, 3)[:, ::-1]  # strided, several bands
    whole = hashlib.sha256(f"{arr.dtype.str}{arr.shape}".encode())
    whole.update(np.ascontiguousarray(arr).data)
    assert load_image_hashed(arr)[0] == whole.hexdigest()  # the report names the same bytes as before


def test_a_memoryview_larger_than_any_image_is_refused_before_it_is_copied() -> None:
    """An app passes a 300 MB memoryview (of a broadcast array, as of a mapped file): refused by
    its size, without the 300 MB copy that came before the size check."""
    view = memoryview(np.broadcast_to(np.uint8(0), (300_000_000,)))
    caught: list[ImageError] = []

    def call() -> None:
        try:
            load_image(view)
        except ImageError as exc:
            caught.append(exc)

    peak = _peak(call)
    assert caught and "limit" in str(caught[0])
    assert peak < 16 * MIB, f"{peak // MIB} MiB"
