"""FaissIndex over faiss-cpu: same contract as ExactIndex, deletions never come back."""

from __future__ import annotations

from pathlib import Path
from typing import Iterator

import faiss
import numpy as np
import pytest

from safeface.errors import IntegrityError
from safeface.hazmat.index import ExactIndex, FaissIndex, make_index

KINDS = ["flat", "hnsw", "ivf-flat", "ivf-pq"]


@pytest.fixture(autouse=True, scope="module")
def one_faiss_thread() -> Iterator[None]:
    """FAISS's OpenMP threads spin badly on a shared, oversubscribed machine; tests need one."""
    before = faiss.omp_get_max_threads()
    faiss.omp_set_num_threads(1)
    yield
    faiss.omp_set_num_threads(before)


def unit(rng: np.random.Generator, n: int, d: int) -> np.ndarray:
    x = rng.standard_normal((n, d)).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


@pytest.fixture(scope="module")
def data() -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    return np.arange(5000, 7000, dtype=np.int64), unit(rng, 2000, 32)


def build(kind: str, ids: np.ndarray, x: np.ndarray) -> FaissIndex:
    index = FaissIndex(32, kind, nlist=16, nprobe=16, pq_m=8)
    index.add(ids, x)
    return index


@pytest.mark.parametrize("kind", KINDS)
def test_finds_itself_and_pads(kind: str, data: tuple) -> None:
    ids, x = data
    index = build(kind, ids, x)
    assert len(index) == 2000
    s, i = index.search(x[:20], 3)
    assert s.shape == (20, 3) and i.dtype == np.int64
    hits = (i[:, 0] == ids[:20]).mean()
    assert hits >= (0.6 if kind == "ivf-pq" else 0.95)
    assert np.all(np.diff(s, axis=1) <= 1e-6)
    small = FaissIndex(32, kind, nlist=4)
    small.add([1, 2], x[:2]) if kind != "ivf-pq" else small.add(ids[:400], x[:400])
    s, i = small.search(x[:1], 500)
    assert np.all(i[0, len(small):] == -1) and np.all(np.isneginf(s[0, len(small):]))


@pytest.mark.parametrize("kind", KINDS)
def test_deleted_ids_never_returned(kind: str, data: tuple) -> None:
    ids, x = data
    index = build(kind, ids, x)
    gone = ids[:1500:2]
    assert index.remove(gone) == gone.size
    assert len(index) == 2000 - gone.size
    s, i = index.search(x[:1500:2], 10)  # the deleted rows' own vectors as queries
    assert not np.isin(i, gone).any()
    assert (i[:, 0] >= 0).all()
    assert not np.isin(index.ids(), gone).any()


def test_hnsw_after_many_deletes_and_rebuilds(data: tuple) -> None:
    ids, x = data
    index = FaissIndex(32, "hnsw", rebuild_fraction=0.3)
    index.add(ids, x)
    rng = np.random.default_rng(4)
    gone: set[int] = set()
    live = list(ids.tolist())
    for _ in range(6):  # delete 90% in rounds; tombstones trigger rebuilds along the way
        drop = rng.choice(live, size=len(live) * 4 // 10, replace=False)
        index.remove(drop)
        gone |= set(drop.tolist())
        live = [v for v in live if v not in gone]
        s, i = index.search(x, 10)
        assert not set(i[i >= 0].tolist()) & gone
        assert len(index) == len(live)
    assert index._dead <= 0.3 * index._n_labels  # rebuilt: tombstones stay bounded
    # re-adding a deleted id brings back only the new vector
    back = int(next(iter(gone)))
    index.add([back], x[:1])
    s, i = index.search(x[:1], 1)
    assert i[0, 0] == back and s[0, 0] > 0.999
    assert sorted(index.ids().tolist()) == sorted(live + [back])


@pytest.mark.parametrize("kind", KINDS)
def test_allowed_filter_and_threshold(kind: str, data: tuple) -> None:
    ids, x = data
    index = build(kind, ids, x)
    index.remove(ids[:100])
    rng = np.random.default_rng(5)
    order = index.ids()
    mask = rng.random(order.size) < 0.1
    allowed_ids = set(order[mask].tolist())
    for allowed in (mask, allowed_ids):
        s, i = index.search(x[100:140], 10, allowed=allowed)
        assert set(i[i >= 0].tolist()) <= allowed_ids
    s, i = index.search(x[100:140], 10, allowed=mask)
    own = np.isin(ids[100:140], list(allowed_ids))
    if kind != "ivf-pq":
        assert (i[own, 0] == ids[100:140][own]).mean() >= 0.9
    s, i = index.search(x[:30], 50, threshold=0.3)
    assert np.all(s[i >= 0] >= 0.3) and np.all(i[np.isneginf(s)] == -1)


@pytest.mark.parametrize("kind", KINDS)
def test_save_load_round_trip(kind: str, data: tuple, tmp_path: Path) -> None:
    ids, x = data
    index = build(kind, ids, x)
    index.remove(ids[:300])
    path = tmp_path / f"{kind}.sfx"
    index.save(path, plaintext=True)
    back = FaissIndex.load(path)
    assert back.kind == kind and len(back) == len(index)
    np.testing.assert_array_equal(back.ids(), index.ids())
    for a, b in zip(index.search(x[:50], 5), back.search(x[:50], 5)):
        np.testing.assert_array_equal(a, b)
    raw = bytearray(path.read_bytes())
    raw[100] ^= 1
    path.write_bytes(bytes(raw))
    with pytest.raises(IntegrityError):
        FaissIndex.load(path)


def test_sealed_save_round_trip(data: tuple, tmp_path: Path) -> None:
    import os

    ids, x = data
    index = build("hnsw", ids, x)
    key = os.urandom(32)
    path = tmp_path / "sealed.sfx"
    index.save(path, key=key)
    index.save(tmp_path / "plain.sfx", plaintext=True)
    assert x[5].tobytes()[:32] in (tmp_path / "plain.sfx").read_bytes()
    assert x[5].tobytes()[:32] not in path.read_bytes()
    back = FaissIndex.load(path, key=key)
    for a, b in zip(index.search(x[:20], 5), back.search(x[:20], 5)):
        np.testing.assert_array_equal(a, b)
    with pytest.raises(IntegrityError, match="cannot be unsealed"):
        FaissIndex.load(path, key=os.urandom(32))
    with pytest.raises(IntegrityError, match="pass the key"):
        FaissIndex.load(path)


def test_readd_replaces(data: tuple) -> None:
    ids, x = data
    for kind in ("flat", "ivf-flat"):
        index = build(kind, ids, x)
        index.add(ids[:1], x[1:2])
        assert len(index) == 2000
        s, i = index.search(x[1:2], 2)
        assert set(i[0].tolist()) == {ids[0], ids[1]}


def test_bad_input(data: tuple) -> None:
    ids, x = data
    with pytest.raises(ValueError, match="kind"):
        FaissIndex(32, "lsh")
    with pytest.raises(ValueError, match="multiple of 4"):
        FaissIndex(30)
    with pytest.raises(ValueError, match="at least 16 vectors"):
        FaissIndex(32, "ivf-pq").add([1, 2], x[:2])
    index = FaissIndex(32, "flat")
    with pytest.raises(ValueError, match="dimension 16 but the index has dimension 32"):
        index.add([1], np.ones((1, 16)))
    bad = x[:2].copy()
    bad[0, 0] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        index.add([1, 2], bad)
    index.add(ids, x)
    with pytest.raises(ValueError, match="NaN"):
        index.search(bad, 1)
    with pytest.raises(ValueError, match="one entry per indexed row"):
        index.search(x[:1], 1, allowed=np.ones(3, dtype=bool))


def test_make_index_picks_exact_then_approximate() -> None:
    assert isinstance(make_index(128, 10_000), ExactIndex)
    big = make_index(128, 5_000_000)
    assert isinstance(big, FaissIndex) and big.kind == "hnsw"
    small_limit = make_index(128, 10_000, approx_above=1_000, kind="ivf-flat", nlist=64)
    assert isinstance(small_limit, FaissIndex) and small_limit.kind == "ivf-flat"
    assert make_index(512, 100, dtype="int8").dtype == "int8"
