"""The C core's kernels, on every kernel set this CPU runs, against NumPy references."""

from __future__ import annotations

from typing import Iterator

import numpy as np
import pytest

from safeface.hazmat.index import _core
from safeface.hazmat.index import ExactIndex, available_isas, get_isa, set_isa

ISAS = available_isas()


@pytest.fixture(params=ISAS)
def isa(request: pytest.FixtureRequest) -> Iterator[str]:
    set_isa(request.param)
    assert get_isa() == request.param
    yield request.param
    set_isa("auto")


def unit(rng: np.random.Generator, n: int, d: int) -> np.ndarray:
    x = rng.standard_normal((n, d)).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def quantize(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The core's int8 quantization: per-vector scale max|x|/127, round half to even."""
    mx = np.abs(x).max(axis=1)
    scale = np.where(mx > 0, mx / np.float32(127), np.float32(1)).astype(np.float32)
    q = np.clip(np.rint(x * (np.float32(1) / scale)[:, None]), -127, 127).astype(np.int32)
    return q, scale


def all_scores(index: ExactIndex, q: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Every row's score, via k = len(index), as (m, n) arrays sorted by the index."""
    return index.search(q, len(index))


def check_against(scores: np.ndarray, ids: np.ndarray, ref: np.ndarray, tol: np.ndarray | float,
                  row_ids: np.ndarray) -> None:
    pos = {int(v): i for i, v in enumerate(row_ids)}
    for qi in range(scores.shape[0]):
        assert sorted(ids[qi].tolist()) == sorted(row_ids.tolist())
        assert np.all(np.diff(scores[qi]) <= 0), "scores must come best first"
        cols = np.array([pos[int(v)] for v in ids[qi]])
        t = tol if np.isscalar(tol) else np.asarray(tol)[qi, cols]
        np.testing.assert_array_less(np.abs(scores[qi] - ref[qi, cols]), t + 1e-12)


@pytest.mark.parametrize("d,n,m", [(4, 5, 1), (12, 37, 3), (128, 300, 13), (512, 70, 2), (36, 600, 30)])
def test_float32_equals_numpy(isa: str, d: int, n: int, m: int) -> None:
    rng = np.random.default_rng(d * 1000 + n)
    x, q = unit(rng, n, d), unit(rng, m, d)
    index = ExactIndex(d)
    row_ids = rng.permutation(10 * n)[:n].astype(np.int64)
    index.add(row_ids, x)
    s, i = all_scores(index, q)
    check_against(s, i, q.astype(np.float64) @ x.T.astype(np.float64), 1e-5, row_ids)


@pytest.mark.parametrize("d,n,m", [(8, 21, 1), (128, 300, 14), (516, 40, 3)])
def test_float16_within_half_precision(isa: str, d: int, n: int, m: int) -> None:
    rng = np.random.default_rng(d + n)
    x, q = unit(rng, n, d), unit(rng, m, d)
    index = ExactIndex(d, "float16", rerank=False)
    index.add(np.arange(n), x)
    s, i = all_scores(index, q)
    # Exact against the float16-rounded rows; the rounding itself moves a score by at most
    # sum|q||x| * 2^-11.
    rounded = x.astype(np.float16).astype(np.float64)
    check_against(s, i, q.astype(np.float64) @ rounded.T, 1e-5, np.arange(n))
    bound = np.abs(q).astype(np.float64) @ np.abs(x).T.astype(np.float64) * 2.0 ** -11
    check_against(s, i, q.astype(np.float64) @ x.T.astype(np.float64), bound + 1e-6, np.arange(n))


@pytest.mark.parametrize("d,n,m", [(4, 3, 1), (128, 300, 14), (512, 50, 4), (20, 1000, 7)])
def test_int8_equals_quantized_reference(isa: str, d: int, n: int, m: int) -> None:
    rng = np.random.default_rng(7 * d + n)
    x, q = unit(rng, n, d), unit(rng, m, d)
    index = ExactIndex(d, "int8", rerank=False)
    index.add(np.arange(n), x)
    s, i = all_scores(index, q)
    qx, sx = quantize(x)
    qq, sq = quantize(q)
    ref = (qq.astype(np.int64) @ qx.T.astype(np.int64)) * (sq[:, None].astype(np.float64) * sx[None, :])
    check_against(s, i, ref, 1e-5, np.arange(n))
    # And the quantization error stays within its bound:
    # |q.x - q'.x'| <= |q| |x - x'| + |x'| |q - q'|, each difference at most scale/2 per component.
    bound = np.sqrt(d) / 2 * (sx[None, :] * 1.0 + sq[:, None] * (1.0 + np.sqrt(d) * sx[None, :] / 2))
    check_against(s, i, q.astype(np.float64) @ x.T.astype(np.float64), bound, np.arange(n))


@pytest.mark.parametrize("dtype", ["float16", "int8"])
def test_rerank_gives_exact_float32_scores(isa: str, dtype: str) -> None:
    rng = np.random.default_rng(3)
    x, q = unit(rng, 2000, 64), unit(rng, 9, 64)
    index = ExactIndex(64, dtype, rerank=True)
    index.add(np.arange(2000), x)
    s, i = index.search(q, 5)
    ref = q.astype(np.float64) @ x.T.astype(np.float64)
    best = np.argsort(-ref, axis=1)[:, :5]
    np.testing.assert_array_equal(i, best)
    np.testing.assert_allclose(s, np.take_along_axis(ref, best, 1), atol=1e-5)


def test_kernel_sets_agree_on_many_queries_and_threads() -> None:
    """More queries than one batch chunk (256), and more than one thread."""
    rng = np.random.default_rng(11)
    x, q = unit(rng, 1500, 32), unit(rng, 300, 32)
    results = []
    for name in ISAS:
        set_isa(name)
        for threads in (1, 2):
            index = ExactIndex(32, threads=threads)
            index.add(np.arange(1500), x)
            results.append(index.search(q, 7))
    set_isa("auto")
    ref = q.astype(np.float64) @ x.T.astype(np.float64)
    best = np.argsort(-ref, axis=1)[:, :7]
    for s, i in results:
        np.testing.assert_array_equal(i, best)
        np.testing.assert_allclose(s, np.take_along_axis(ref, best, 1), atol=1e-5)


def test_set_isa_rejects_unknown_name() -> None:
    with pytest.raises(ValueError, match="unknown kernel set"):
        set_isa("sse9")
    assert get_isa() == ISAS[-1]


def test_streaming_checksum_equals_one_shot() -> None:
    data = np.random.default_rng(8).integers(0, 256, 1000, dtype=np.uint8)
    for step in (1, 7, 32, 37, 1000):
        c = _core.Checksum64()
        for s in range(0, data.size, step):
            c.update(data[s: s + step])
        assert c.digest() == _core.checksum64(data)
    flipped = data.copy()
    flipped[500] ^= 1
    assert _core.checksum64(flipped) != _core.checksum64(data)


@pytest.mark.parametrize("dtype", ["float32", "float16", "int8"])
def test_single_query_with_sparse_filter(isa: str, dtype: str) -> None:
    """One query takes its own kernel path; a filter makes it skip panels."""
    rng = np.random.default_rng(13)
    x, q = unit(rng, 3000, 36), unit(rng, 1, 36)
    index = ExactIndex(36, dtype)
    index.add(np.arange(3000), x)
    ref = (q.astype(np.float64) @ x.T.astype(np.float64))[0]
    for density in (0.004, 0.1, 1.0):
        mask = rng.random(3000) < density
        s, i = index.search(q, 8, allowed=mask)
        want = np.flatnonzero(mask)[np.argsort(-ref[mask])][:8]
        np.testing.assert_array_equal(i[0, : want.size], want)
        np.testing.assert_allclose(s[0, : want.size], ref[want], atol=1e-5)
