"""ExactIndex behaviour: ids, replacement, removal, filters, threshold, persistence, bad input."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from safeface.errors import IntegrityError
from safeface.hazmat.index import ExactIndex

DTYPES = ["float32", "float16", "int8"]


def unit(rng: np.random.Generator, n: int, d: int) -> np.ndarray:
    x = rng.standard_normal((n, d)).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


@pytest.fixture
def data() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    x = unit(rng, 1200, 64)
    ids = rng.permutation(100_000)[:1200].astype(np.int64) - 50_000  # negative ids are fine too
    return ids, x, unit(rng, 6, 64)


@pytest.mark.parametrize("dtype", DTYPES)
def test_topk_order_and_padding(dtype: str) -> None:
    rng = np.random.default_rng(1)
    x = unit(rng, 3, 16)
    index = ExactIndex(16, dtype)
    index.add([10, 20, 30], x)
    s, i = index.search(x[1], 5)
    assert s.shape == (1, 5) and s.dtype == np.float32 and i.dtype == np.int64
    assert i[0, 0] == 20 and abs(s[0, 0] - 1.0) < 1e-5
    assert set(i[0, :3].tolist()) == {10, 20, 30}
    assert np.all(np.diff(s[0, :3]) <= 0)
    assert i[0, 3:].tolist() == [-1, -1] and np.all(np.isneginf(s[0, 3:]))


@pytest.mark.parametrize("dtype", DTYPES)
def test_threshold_keeps_exactly_the_rows_above(dtype: str, data: tuple) -> None:
    ids, x, q = data
    index = ExactIndex(64, dtype)
    index.add(ids, x)
    ref = q.astype(np.float64) @ x.T.astype(np.float64)
    thr = 0.2
    s, i = index.search(q, 300, threshold=thr)
    for qi in range(q.shape[0]):
        expected = set(ids[ref[qi] >= thr + 1e-4].tolist())
        got = set(i[qi][~np.isneginf(s[qi])].tolist())
        assert expected <= got
        assert got <= set(ids[ref[qi] >= thr - 1e-4].tolist())
        assert np.all(s[qi][~np.isneginf(s[qi])] >= thr)
        assert np.all(i[qi][np.isneginf(s[qi])] == -1)


@pytest.mark.parametrize("dtype", DTYPES)
def test_allowed_filter_never_returns_a_disallowed_row(dtype: str, data: tuple) -> None:
    ids, x, q = data
    index = ExactIndex(64, dtype)
    index.add(ids, x)
    rng = np.random.default_rng(2)
    for density in (0.005, 0.1, 0.6):
        mask = rng.random(len(index)) < density
        order = index.ids()
        allowed_ids = set(order[mask].tolist())
        for allowed in (mask, allowed_ids, list(allowed_ids) + [999_999_999]):
            s, i = index.search(q, 20, allowed=allowed)
            got = i[~np.isneginf(s)]
            assert set(got.tolist()) <= allowed_ids
            # and the filtered search is the best of the allowed rows
            rows = np.isin(ids, list(allowed_ids))
            ref = q.astype(np.float64) @ x[rows].T.astype(np.float64)
            want = np.sort(ref, axis=1)[:, ::-1][:, : min(20, rows.sum())]
            np.testing.assert_allclose(s[:, : want.shape[1]], want, atol=1e-5)
    s, i = index.search(q, 5, allowed=np.zeros(len(index), dtype=bool))
    assert np.all(i == -1)


def test_readding_an_id_replaces_it_and_remove_forgets_it(data: tuple) -> None:
    ids, x, q = data
    index = ExactIndex(64, "int8")
    index.add(ids, x)
    n = len(index)
    index.add(ids[:1], q[:1])
    assert len(index) == n
    s, i = index.search(q[:1], 1)
    assert i[0, 0] == ids[0] and abs(s[0, 0] - 1.0) < 1e-5
    # within one call the last vector wins
    index.add([ids[1], ids[1]], np.stack([x[5], q[1]]))
    assert len(index) == n
    assert index.search(q[1], 1)[1][0, 0] == ids[1]

    gone = ids[::3]
    assert index.remove(gone) == gone.size
    assert index.remove(gone) == 0
    assert len(index) == n - gone.size
    assert not np.isin(index.ids(), gone).any()
    s, i = index.search(np.concatenate([q, x[::3][:50]]), 30)
    assert not np.isin(i, gone).any()
    index.remove(index.ids())
    assert len(index) == 0
    assert np.all(index.search(q, 3)[1] == -1)


@pytest.mark.parametrize("dtype", DTYPES)
def test_save_load_round_trip(dtype: str, data: tuple, tmp_path: Path) -> None:
    ids, x, q = data
    index = ExactIndex(64, dtype)
    index.add(ids, x)
    index.remove(ids[:100])
    path = tmp_path / "gallery.sfx"
    index.save(path, plaintext=True)
    back = ExactIndex.load(path)
    assert (back.dim, back.dtype, back.rerank, len(back)) == (64, dtype, index.rerank, len(index))
    np.testing.assert_array_equal(back.ids(), index.ids())
    for a, b in zip(index.search(q, 10), back.search(q, 10)):
        np.testing.assert_array_equal(a, b)
    back.add([123_456_789], q[:1])  # a loaded index stays writable
    assert back.search(q[:1], 1)[1][0, 0] == 123_456_789


def test_damaged_file_is_refused(data: tuple, tmp_path: Path) -> None:
    ids, x, _ = data
    index = ExactIndex(64)
    index.add(ids, x)
    path = tmp_path / "g.sfx"
    index.save(path, plaintext=True)
    raw = bytearray(path.read_bytes())
    raw[len(raw) // 2] ^= 0x40
    path.write_bytes(bytes(raw))
    with pytest.raises(IntegrityError, match="checksum"):
        ExactIndex.load(path)
    path.write_bytes(b"not an index at all")
    with pytest.raises(IntegrityError, match="magic"):
        ExactIndex.load(path)
    index.save(path, plaintext=True)
    good = path.read_bytes()
    path.write_bytes(good[:-100])
    with pytest.raises(IntegrityError, match="truncated"):
        ExactIndex.load(path)
    path.write_bytes(good + b"x")
    with pytest.raises(IntegrityError, match="trailing"):
        ExactIndex.load(path)
    # a header that claims far more rows than the file holds is refused before allocating
    hlen = int.from_bytes(good[8:12], "little")
    header = good[12: 12 + hlen].replace(b'"n": 1200', b'"n": 9999999')
    path.write_bytes(good[:8] + len(header).to_bytes(4, "little") + header + good[12 + hlen:])
    with pytest.raises(IntegrityError):
        ExactIndex.load(path)
    from safeface.hazmat.index import FaissIndex
    with pytest.raises(IntegrityError, match="not 'safeface.faiss'"):
        index.save(path, plaintext=True)
        FaissIndex.load(path)


@pytest.mark.parametrize("dtype", ["float32", "int8"])
def test_sealed_save_round_trip_and_refusals(dtype: str, data: tuple, tmp_path: Path,
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    import os

    from safeface.errors import ConfigError
    from safeface.hazmat.index import container

    ids, x, q = data
    index = ExactIndex(64, dtype)
    index.add(ids, x)
    key = os.urandom(32)
    # Small chunks so that the file holds many sealed chunks, as a large gallery would.
    monkeypatch.setattr(container, "SEAL_CHUNK", 4096)
    path = tmp_path / "sealed.sfx"
    index.save(path, key=key)
    blob = path.read_bytes()
    # What an unsealed file shows in the clear (ids, a run of panel bytes) is not in the sealed one.
    index.save(tmp_path / "plain.sfx", plaintext=True)
    plain = (tmp_path / "plain.sfx").read_bytes()
    shown = [ids.tobytes()[:64], plain[len(plain) // 2: len(plain) // 2 + 64]]
    assert all(w in plain for w in shown) and not any(w in blob for w in shown)
    back = ExactIndex.load(path, key=key)
    np.testing.assert_array_equal(back.ids(), index.ids())
    for a, b in zip(index.search(q, 10), back.search(q, 10)):
        np.testing.assert_array_equal(a, b)
    with pytest.raises(IntegrityError, match="pass the key"):
        ExactIndex.load(path)
    with pytest.raises(IntegrityError, match="cannot be unsealed"):
        ExactIndex.load(path, key=os.urandom(32))
    # An altered byte, two swapped chunks, a dropped last chunk: each is refused.
    raw = bytearray(blob)
    raw[len(raw) // 2] ^= 0x01
    path.write_bytes(bytes(raw))
    with pytest.raises(IntegrityError, match="cannot be unsealed"):
        ExactIndex.load(path, key=key)
    hlen = int.from_bytes(blob[8:12], "little")
    start = 12 + hlen + (-(12 + hlen)) % 64
    c = 4096 + 16
    swapped = blob[:start] + blob[start + c: start + 2 * c] + blob[start: start + c] + blob[start + 2 * c:]
    path.write_bytes(swapped)
    with pytest.raises(IntegrityError, match="cannot be unsealed"):
        ExactIndex.load(path, key=key)
    # A file saved without a key is not accepted where a sealed one is expected.
    index.save(path, plaintext=True)
    with pytest.raises(IntegrityError, match="not sealed"):
        ExactIndex.load(path, key=key)
    with pytest.raises(ConfigError, match="32 random bytes") as err:
        index.save(path, key=b"short key 123")
    assert "short key" not in str(err.value)
    # An empty sealed index still authenticates its header.
    empty = ExactIndex(64, dtype)
    empty.save(path, key=key)
    assert len(ExactIndex.load(path, key=key)) == 0
    with pytest.raises(IntegrityError, match="cannot be unsealed"):
        ExactIndex.load(path, key=os.urandom(32))


def test_bad_input_raises_clear_value_errors() -> None:
    with pytest.raises(ValueError, match="multiple of 4"):
        ExactIndex(130)
    with pytest.raises(ValueError, match="multiple of 4"):
        ExactIndex(4096)
    with pytest.raises(ValueError, match="dtype"):
        ExactIndex(128, "int4")
    index = ExactIndex(8)
    good = np.ones((2, 8), dtype=np.float32)
    with pytest.raises(ValueError, match="dimension 6 but the index has dimension 8"):
        index.add([1, 2], np.ones((2, 6)))
    with pytest.raises(ValueError, match="2 ids for 3 vectors"):
        index.add([1, 2], np.ones((3, 8)))
    bad = good.copy()
    bad[1, 3] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        index.add([1, 2], bad)
    assert len(index) == 0  # nothing half-added
    with pytest.raises(ValueError, match="reserved"):
        index.add([1, -1], good)
    with pytest.raises(ValueError, match="ids must be integers"):
        index.add([1.5, 2.5], good)
    index.add([1, 2], good)
    with pytest.raises(ValueError, match="NaN"):
        index.search(bad, 1)
    with pytest.raises(ValueError, match="dimension 4 but the index has dimension 8"):
        index.search(np.ones(4), 1)
    with pytest.raises(ValueError, match="k must be a positive integer"):
        index.search(good, 0)
    with pytest.raises(ValueError, match="threshold"):
        index.search(good, 1, threshold=float("nan"))
    with pytest.raises(ValueError, match="one entry per indexed row"):
        index.search(good, 1, allowed=np.ones(5, dtype=bool))


def test_random_adds_and_removes_match_a_model() -> None:
    """Many interleaved adds, replacements and removals keep ids, rows and lookups consistent."""
    rng = np.random.default_rng(9)
    index = ExactIndex(8)
    model: dict[int, np.ndarray] = {}
    for _ in range(40):
        new = rng.integers(-300, 300, size=int(rng.integers(1, 60)))
        vecs = rng.standard_normal((new.size, 8)).astype(np.float32)
        index.add(new, vecs)
        for i, v in zip(new.tolist(), vecs):
            model[i] = v
        drop = rng.integers(-300, 300, size=int(rng.integers(0, 40)))
        assert index.remove(drop) == len(set(drop.tolist()) & set(model))
        for i in drop.tolist():
            model.pop(i, None)
        assert sorted(index.ids().tolist()) == sorted(model)
    keys = np.array(sorted(model), dtype=np.int64)
    vecs = np.stack([model[k] for k in keys.tolist()])
    s, i = index.search(vecs, len(index))
    pos = {int(v): j for j, v in enumerate(keys)}
    for qi in range(keys.size):
        want = vecs @ vecs[qi]
        np.testing.assert_allclose(s[qi], want[[pos[int(v)] for v in i[qi]]], rtol=1e-5, atol=1e-5)
    assert index.search(vecs, 1, allowed=keys[:1])[1][:, 0].tolist() == [keys[0]] * keys.size


@pytest.mark.parametrize("dtype", DTYPES)
def test_removed_vectors_do_not_reach_a_saved_file(dtype: str, tmp_path: Path) -> None:
    rng = np.random.default_rng(12)
    x = unit(rng, 40, 16)  # 40 rows: the last panel is partly padding
    index = ExactIndex(16, dtype)
    index.add(np.arange(40), x)
    index.remove(np.arange(30, 40))  # the tail rows: their slots become padding
    index.remove([3])                # a middle row: the last row moves into its hole
    path = tmp_path / "g.sfx"
    index.save(path, plaintext=True)
    blob = path.read_bytes()
    encodings = {"float32": lambda v: v.astype(np.float32),
                 "float16": lambda v: v.astype(np.float16),
                 "int8": lambda v: v.astype(np.float32)}
    for row in [3] + list(range(30, 39)):  # row 39 moved to position 3 and stays
        assert encodings[dtype](x[row])[:4].tobytes() not in blob
    np.testing.assert_array_equal(ExactIndex.load(path).ids(), index.ids())


@pytest.mark.parametrize("kind", ["exact", "faiss"])
def test_an_unsealed_save_needs_consent_to_plaintext(tmp_path: Path, kind: str) -> None:
    """An unsealed file gives raw vectors back exactly: one search per basis vector recovers
    every row. Saving one is refused unless the caller asks for plaintext."""
    from safeface.errors import InvalidArgument
    from safeface.hazmat.index import FaissIndex

    x = np.random.default_rng(3).standard_normal((5, 16)).astype(np.float32)
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    index = ExactIndex(16) if kind == "exact" else FaissIndex(16, kind="flat")
    index.add(np.arange(5, dtype=np.int64), x)
    with pytest.raises(InvalidArgument, match="in the clear"):
        index.save(tmp_path / "raw.sfx")
    assert not (tmp_path / "raw.sfx").exists()
    # What the refusal prevents: with the plaintext file, basis-vector searches give rows back.
    index.save(tmp_path / "raw.sfx", plaintext=True)
    back = type(index).load(tmp_path / "raw.sfx")
    scores, ids = back.search(np.eye(16, dtype=np.float32), k=5)
    recovered = np.zeros((5, 16), np.float32)
    for dim in range(16):
        for s, i in zip(scores[dim], ids[dim]):
            recovered[i, dim] = s
    assert np.allclose(recovered, x, atol=1e-5)
