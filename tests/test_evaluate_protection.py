"""ISO/IEC 30136 measures with the real keyed transform, on synthetic embeddings whose answer is
known: protected scores equal raw ones, and templates under two keys cannot be linked."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from safeface.evaluate.datasets import Pair
from safeface.evaluate.embedcache import Record
from safeface.evaluate.protection import protection_metrics


def _synthetic(n: int = 300, dim: int = 128, noise: float = 0.35) -> tuple[list[Pair], dict[Path, Record]]:
    rng = np.random.default_rng(7)
    ids = rng.normal(size=(n, dim))
    recs: dict[Path, Record] = {}
    pairs = []
    for k in range(n):
        a, b = Path(f"s{k}/a"), Path(f"s{k}/b")
        for p in (a, b):
            v = ids[k] / np.linalg.norm(ids[k]) + noise * rng.normal(size=dim) / np.sqrt(dim)
            recs[p] = Record((v / np.linalg.norm(v)).astype(np.float32), 1, "hog")
        pairs.append(Pair(a, b, f"s{k}", f"s{k}", True, k % 10))
        other = Path(f"s{(k + 1) % n}/a")
        pairs.append(Pair(a, other, f"s{k}", f"s{(k + 1) % n}", False, k % 10))
    return pairs, recs


def test_protected_scores_equal_raw_and_keys_are_unlinkable() -> None:
    pairs, recs = _synthetic()
    fig, unl, scores = protection_metrics(pairs, recs, 128, keys=(b"k" * 32, b"m" * 32))
    assert fig["scores_agree"] is True and fig["max_score_difference"] < 1e-5
    assert fig["accuracy_raw"] == fig["accuracy_protected"] == 1.0
    assert fig["dsys_raw_baseline"] > 0.95  # same-key (unprotected) templates link perfectly
    assert fig["dsys_across_keys"] < 0.1  # two keys: close to chance (sampling noise of 300 pairs)
    assert unl["protected"].dsys == fig["dsys_across_keys"]
    assert len(scores["cross_mated"]) == 300


def test_one_key_for_both_systems_is_fully_linkable() -> None:
    pairs, recs = _synthetic()
    fig, _, _ = protection_metrics(pairs, recs, 128, keys=(b"k" * 32, b"k" * 32))
    assert fig["dsys_across_keys"] > 0.95
