"""Pairs files (View 1 and View 2), folder-per-identity trees, group CSVs, the embedding cache."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from safeface.errors import ConfigError
from safeface.evaluate.datasets import identities, read_groups, read_pairs
from safeface.evaluate.embedcache import EmbeddingCache, Record, check_cache_location


def _tree(root: Path, people: dict[str, int]) -> None:
    for name, n in people.items():
        (root / name).mkdir(parents=True)
        for i in range(1, n + 1):
            (root / name / f"{name}_{i:04d}.jpg").write_bytes(b"x")


def test_view1_is_split_into_ten_balanced_folds(tmp_path: Path) -> None:
    _tree(tmp_path / "images", {"Ann": 3, "Bob": 2})
    lines = ["10"] + ["Ann\t1\t2"] * 10 + ["Ann\t3\tBob\t1"] * 10
    (tmp_path / "pairs.txt").write_text("\n".join(lines) + "\n")
    pairs = read_pairs(tmp_path / "pairs.txt", tmp_path)
    assert len(pairs) == 20 and sum(p.same for p in pairs) == 10
    assert sorted({p.fold for p in pairs}) == list(range(10))
    assert all(sum(1 for p in pairs if p.fold == k and p.same) == 1 for k in range(10))
    assert pairs[0].image1 == tmp_path / "images" / "Ann" / "Ann_0001.jpg"
    assert pairs[-1].subject2 == "Bob" and not pairs[-1].same
    sub = read_pairs(tmp_path / "pairs.txt", tmp_path, limit=4)
    assert len(sub) == 4 and sum(p.same for p in sub) == 2


def test_view2_keeps_its_folds(tmp_path: Path) -> None:
    _tree(tmp_path, {"Ann": 2, "Bob": 1})
    block = ["Ann 1 2", "Ann 2 1", "Ann 1 Bob 1", "Bob 1 Ann 2"]
    (tmp_path / "pairs.txt").write_text("3 2\n" + "\n".join(block * 3) + "\n")
    pairs = read_pairs(tmp_path / "pairs.txt", tmp_path)
    assert [p.fold for p in pairs] == [0] * 4 + [1] * 4 + [2] * 4
    assert [p.same for p in pairs[:4]] == [True, True, False, False]


def test_pairs_file_errors_say_what_is_wrong(tmp_path: Path) -> None:
    _tree(tmp_path, {"Ann": 2})
    (tmp_path / "p.txt").write_text("1\nAnn 1 2\nAnn 1 2\n")
    with pytest.raises(ConfigError, match="line 3"):
        read_pairs(tmp_path / "p.txt", tmp_path)
    (tmp_path / "q.txt").write_text("2\nAnn 1 2\n")
    with pytest.raises(ConfigError, match="promises"):
        read_pairs(tmp_path / "q.txt", tmp_path)
    (tmp_path / "r.txt").write_text("1\nAnn 1 9\nAnn 1 Ann 2\n")
    with pytest.raises(ConfigError, match="not found"):
        read_pairs(tmp_path / "r.txt", tmp_path)


def test_identities_and_groups(tmp_path: Path) -> None:
    _tree(tmp_path, {"Ann": 3, "Bob": 1})
    people = identities(tmp_path)
    assert list(people) == ["Ann", "Bob"] and len(people["Ann"]) == 3
    assert list(identities(tmp_path, min_images=2)) == ["Ann"]
    (tmp_path / "g.csv").write_text("subject,band\nAnn,x\nBob,y\n")
    assert read_groups(tmp_path / "g.csv") == {"band": {"Ann": "x", "Bob": "y"}}
    (tmp_path / "bad.csv").write_text("name,band\nAnn,x\n")
    with pytest.raises(ConfigError, match="subject"):
        read_groups(tmp_path / "bad.csv")


def test_cache_round_trip_without_pickle(tmp_path: Path) -> None:
    fp = {"engine": "t", "dim": 4, "flip": True}
    c = EmbeddingCache(tmp_path, fp)
    v = np.array([0.5, 0.5, 0.5, 0.5], dtype=np.float32)
    c.put_many([("a" * 64, Record(v, 2, "hog")), ("b" * 64, Record(None, 0, ""))])
    again = EmbeddingCache(tmp_path, fp)
    a, b = again.get("a" * 64), again.get("b" * 64)
    assert a is not None and b is not None
    assert np.array_equal(a.embedding, v) and a.faces == 2 and a.detector == "hog"
    assert b.embedding is None
    # a different configuration never sees those embeddings
    assert EmbeddingCache(tmp_path, {**fp, "flip": False}).get("a" * 64) is None
    shard = next(again.dir.glob("shard-*.sealed"))
    assert (shard.stat().st_mode & 0o077) == 0
    # sealed: neither the embedding's bytes nor a readable archive are on disk
    assert v.tobytes() not in shard.read_bytes()
    with pytest.raises((ValueError, OSError)):
        np.load(shard, allow_pickle=False)


def test_cache_may_not_live_in_a_workspace(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="workspace"):
        check_cache_location(tmp_path / "ws" / "cache", tmp_path / "ws")
    check_cache_location(tmp_path / "out" / "cache", tmp_path / "ws")
