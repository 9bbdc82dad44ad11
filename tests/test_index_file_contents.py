"""Saved index files whose arrays disagree with themselves or with what add() accepts, written by
anyone who can write an unsealed file (the checksum is no secret) or by a key holder re-sealing one.

FaissIndex: an id listed under two labels came back in searches after its remove(), which the
index's own promise ("deleted rows can never come back") rules out; FAISS rows beyond the labels
crashed every search with a bare IndexError. ExactIndex: NaN or infinity, which add() refuses, was
read straight into the core's buffers, and a NaN row came first in every search without a
threshold. Each such file must be refused at load with IntegrityError."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Callable, Optional

import numpy as np
import pytest

from safeface.errors import IntegrityError
from safeface.hazmat.index import ExactIndex, FaissIndex
from safeface.hazmat.index.container import read_container, write_container

FMT = "safeface.faiss"
KEY = os.urandom(32)


def _saved(path: Path, kind: str, key: Optional[bytes]) -> np.ndarray:
    v = np.random.default_rng(0).standard_normal((60, 8)).astype(np.float32)
    index = FaissIndex(8, kind)
    index.add(np.arange(100, 160), v)
    index.remove([159])
    if key is None:
        index.save(path, plaintext=True)
    else:
        index.save(path, key=key)
    return v


def _edit(path: Path, key: Optional[bytes], change: Callable[[dict[str, Any], dict[str, np.ndarray]], None]) -> None:
    meta, arrays = read_container(path, FMT, key=key)
    out = {k: np.array(a) for k, a in arrays.items()}
    change(meta, out)
    write_container(path, FMT, meta, out, key)


def _repeat_an_id(meta: dict[str, Any], arrays: dict[str, np.ndarray]) -> None:
    arrays["label_id"][1] = arrays["label_id"][0]


def _cut_the_labels(meta: dict[str, Any], arrays: dict[str, np.ndarray]) -> None:
    arrays["label_id"] = arrays["label_id"][:10].copy()
    meta["n_labels"] = 10


@pytest.mark.parametrize("key", [None, KEY], ids=["unsealed", "sealed"])
@pytest.mark.parametrize("kind", ["flat", "hnsw", "ivf-flat"])
def test_an_id_listed_twice_is_refused_so_it_cannot_outlive_its_removal(tmp_path: Path, kind: str,
                                                                        key: Optional[bytes]) -> None:
    """Id 100 written under a second label: the load must refuse the file, not return 100 after
    remove(100)."""
    path = tmp_path / "index.bin"
    v = _saved(path, kind, key)
    _edit(path, key, _repeat_an_id)
    try:
        index = FaissIndex.load(path, key=key)
    except IntegrityError:
        return
    index.remove([100])
    _, ids = index.search(v[:2], 5)
    assert 100 not in ids, "a removed id came back"
    pytest.fail("a file listing one id twice was loaded")


@pytest.mark.parametrize("kind", ["flat", "ivf-flat"])
def test_faiss_rows_beyond_the_labels_are_refused_at_load(tmp_path: Path, kind: str) -> None:
    """The labels cut to 10 of 60 rows (count edited to match): refused at load with
    IntegrityError, never a bare IndexError at the first search."""
    path = tmp_path / "index.bin"
    _saved(path, kind, None)
    _edit(path, None, _cut_the_labels)
    with pytest.raises(IntegrityError, match="not a consistent FAISS index"):
        FaissIndex.load(path)



@pytest.mark.parametrize("key", [None, KEY], ids=["unsealed", "sealed"])
@pytest.mark.parametrize("dtype,array", [("float32", "panels"), ("float16", "f32"), ("int8", "scales"),
                                         ("float16", "panels")])
def test_an_exact_index_holding_nan_or_infinity_is_refused_at_load(tmp_path: Path, dtype: str, array: str,
                                                                  key: Optional[bytes]) -> None:
    """One stored number set to NaN (or a float16 panel to infinity): refused at load, never a
    NaN candidate ahead of every honest row."""
    path = tmp_path / "exact.bin"
    v = np.random.default_rng(0).standard_normal((40, 8)).astype(np.float32)
    index = ExactIndex(8, dtype=dtype)
    index.add(np.arange(40), v)
    if key is None:
        index.save(path, plaintext=True)
    else:
        index.save(path, key=key)
    meta, arrays = read_container(path, "safeface.exact", key=key)
    out = {k: np.array(a) for k, a in arrays.items()}
    if array == "panels":
        out[array].view(np.float32 if dtype == "float32" else np.float16)[3] = np.nan if dtype == "float32" else np.inf
    else:
        out[array][3] = np.nan
    write_container(path, "safeface.exact", meta, out, key)
    with pytest.raises(IntegrityError, match="NaN or infinity"):
        ExactIndex.load(path, key=key)
