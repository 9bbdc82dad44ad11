"""The keyed orthogonal template transform: scores survive, keys differ, templates of two keys do
not link (measured on real LFW embeddings), and pseudonyms."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from datasets_path import datasets

from safeface.errors import ConfigError, InvalidArgument
from safeface.hazmat.templates import TemplateTransform, pseudonymize, same_pseudonym

K1, K2 = bytes(range(32)), bytes(range(1, 33))


def unit(x: np.ndarray) -> np.ndarray:
    return (x / np.linalg.norm(x, axis=-1, keepdims=True)).astype(np.float32)


@pytest.mark.parametrize("dim", [128, 512])
def test_transform_keeps_scores_and_inverts(dim: int) -> None:
    x = unit(np.random.default_rng(0).standard_normal((64, dim)))
    t = TemplateTransform.from_key(K1, dim)
    y = t.apply(x)
    assert y.dtype == np.float32 and y.shape == x.shape
    np.testing.assert_allclose(y @ y.T, x @ x.T, atol=1e-5)
    np.testing.assert_allclose(np.linalg.norm(y, axis=1), 1.0, atol=1e-5)
    np.testing.assert_allclose(t.invert(y), x, atol=1e-5)
    assert np.abs(y - x).max() > 0.1  # it does move the vectors
    np.testing.assert_allclose(t.apply(x[0]), y[0], atol=1e-6)  # 1-D input works too
    # The matrix is orthogonal to double precision.
    m = t.invert(np.eye(dim, dtype=np.float32))
    np.testing.assert_allclose(m @ m.T, np.eye(dim), atol=1e-5)


@pytest.mark.slow
def test_transform_is_deterministic_per_key_and_differs_across_keys() -> None:
    x = unit(np.random.default_rng(1).standard_normal((4, 128)))
    a1, a2 = TemplateTransform.from_key(K1, 128), TemplateTransform.from_key(K1, 128)
    b = TemplateTransform.from_key(K2, 128)
    assert np.array_equal(a1.apply(x), a2.apply(x))
    assert a1.key_id == a2.key_id != b.key_id
    assert np.abs(a1.apply(x) - b.apply(x)).max() > 0.1
    assert "key_id" in repr(a1) and K1.hex() not in repr(a1)


def test_rekey_moves_templates_between_keys() -> None:
    x = unit(np.random.default_rng(2).standard_normal((16, 128)))
    old, new = TemplateTransform.from_key(K1, 128), TemplateTransform.from_key(K2, 128)
    stored = old.apply(x)
    moved = old.rekey_to(new, stored)
    np.testing.assert_allclose(moved, new.apply(x), atol=1e-5)
    np.testing.assert_allclose(new.apply(old.invert(stored)), moved, atol=1e-5)
    np.testing.assert_allclose(moved @ new.apply(x).T, x @ x.T, atol=1e-5)


def test_transform_input_checks() -> None:
    with pytest.raises(ConfigError, match="at least 32 bytes"):
        TemplateTransform.from_key(b"short", 128)
    t = TemplateTransform.from_key(K1, 128)
    with pytest.raises(ConfigError, match="dimension 64"):
        t.apply(np.zeros(64, np.float32))


def test_pseudonyms() -> None:
    p = pseudonymize(K1, "alice@example.org")
    assert len(p) == 64 and int(p, 16) >= 0
    assert p == pseudonymize(K1, "alice@example.org") != pseudonymize(K2, "alice@example.org")
    assert p == pseudonymize(K1, " alice@example.org ")  # ids are trimmed (test_bounded_input.py)
    assert "alice" not in p
    assert same_pseudonym(p, pseudonymize(K1, "alice@example.org"))
    assert not same_pseudonym(p, pseudonymize(K1, "bob"))
    with pytest.raises(InvalidArgument):
        pseudonymize(K1, "")


# ---------------------------------------------------------------- unlinkability on LFW


def _auc(pos: np.ndarray, neg: np.ndarray) -> float:
    """Probability that a random genuine score exceeds a random impostor score (ties count half)."""
    gt = (pos[:, None] > neg[None, :]).mean()
    eq = (pos[:, None] == neg[None, :]).mean()
    return float(gt + 0.5 * eq)


@pytest.fixture(scope="module")
def lfw_pairs() -> tuple[np.ndarray, np.ndarray]:
    """Embeddings of 20 same-person LFW pairs (40 images, 20 different people), held in memory."""
    lfw = datasets() / "lfw-dev"
    if not (lfw / "pairsDevTest.txt").is_file():
        pytest.skip(f"LFW dev images not found at {lfw} (set SAFEFACE_DATASETS to the shared datasets folder)")
    from safeface.hazmat.vision import Pipeline, get_engine

    lines = (lfw / "pairsDevTest.txt").read_text().splitlines()[1:501]
    chosen, names = [], set()
    for line in lines[::12]:
        name, i, j = line.split("\t")
        if name not in names:
            names.add(name)
            chosen.append((name, int(i), int(j)))
    chosen = chosen[:20]
    paths = [lfw / "images" / n / f"{n}_{k:04d}.jpg" for n, i, j in chosen for k in (i, j)]
    # dlib's networks on ONNX Runtime: dlib's descriptors (test_onnx_engine.py) at a third of the time.
    embs = Pipeline(get_engine("onnx")).embed_many(paths)
    keep = [a.embedding is not None and b.embedding is not None for a, b in zip(embs[::2], embs[1::2])]
    a = np.stack([e.embedding for e, ok in zip(embs[::2], keep) if ok])  # type: ignore[misc]
    b = np.stack([e.embedding for e, ok in zip(embs[1::2], keep) if ok])  # type: ignore[misc]
    assert len(a) >= 15
    return a, b


@pytest.mark.slow
def test_cross_key_templates_do_not_link_on_lfw(lfw_pairs: tuple[np.ndarray, np.ndarray]) -> None:
    a, b = lfw_pairs
    n = len(a)
    off = ~np.eye(n, dtype=bool)
    same_key = a @ b.T
    gen_plain, imp_plain = np.diag(same_key), same_key[off]
    # Under one key, scores are those of the raw embeddings (within 1e-5) and separate people.
    t1 = TemplateTransform.from_key(K1, a.shape[1])
    np.testing.assert_allclose(t1.apply(a) @ t1.apply(b).T, same_key, atol=1e-5)
    assert gen_plain.mean() > imp_plain.mean() + 0.05
    assert _auc(gen_plain, imp_plain) > 0.95
    # Across keys (ten pairs of deployments), the same person's templates score like strangers'.
    gen_x, imp_x = [], []
    for r in range(10):
        ta = TemplateTransform.from_key(bytes([r]) * 32, a.shape[1])
        tb = TemplateTransform.from_key(bytes([100 + r]) * 32, a.shape[1])
        cross = ta.apply(a) @ tb.apply(b).T
        gen_x.append(np.diag(cross))
        imp_x.append(cross[off])
    gen, imp = np.concatenate(gen_x), np.concatenate(imp_x)
    auc = _auc(gen, imp)
    print(f"\nLFW {n} pairs, dlib 128-d: same-key genuine {gen_plain.mean():.3f}+-{gen_plain.std():.3f}, "
          f"impostor {imp_plain.mean():.3f}+-{imp_plain.std():.3f}, AUC {_auc(gen_plain, imp_plain):.3f}; "
          f"cross-key genuine {gen.mean():.4f}+-{gen.std():.4f} (max {gen.max():.3f}), "
          f"impostor {imp.mean():.4f}+-{imp.std():.4f} (max {imp.max():.3f}), AUC {auc:.3f}")
    assert abs(auc - 0.5) < 0.1
    # Both sit near zero and move together: dlib descriptors share a mean direction, so each pair
    # of keys shifts genuine and impostor scores alike; what matters is that they coincide.
    assert abs(gen.mean() - imp.mean()) < 0.03
    assert 0.7 < gen.std() / imp.std() < 1.4
    assert gen.max() < 0.6  # far below the match threshold (0.91)
