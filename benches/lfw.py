"""LFW dev pairs: the pairs file and image paths, shared by the benchmarks."""

from __future__ import annotations

import os
from pathlib import Path

Pair = tuple[Path, Path, bool]


def datasets_root() -> Path:
    env = os.environ.get("SAFEFACE_DATASETS")
    return Path(env) if env else Path(__file__).resolve().parents[1].parent / "shared" / "datasets"


def lfw_pairs(limit: int | None = None) -> list[Pair]:
    root = datasets_root() / "lfw-dev"
    lines = (root / "pairsDevTest.txt").read_text().split("\n")
    n = int(lines[0].split()[0])

    def img(name: str, i: str) -> Path:
        return root / "images" / name / f"{name}_{int(i):04d}.jpg"

    pairs: list[Pair] = []
    for line in lines[1 : 1 + 2 * n]:
        p = line.split()
        if len(p) == 3:
            pairs.append((img(p[0], p[1]), img(p[0], p[2]), True))
        elif len(p) == 4:
            pairs.append((img(p[0], p[1]), img(p[2], p[3]), False))
    if limit:
        half = limit // 2
        pairs = pairs[:half] + pairs[n : n + half]
    return pairs


def best_accuracy(scores: list[float], same: list[bool]) -> tuple[float, float]:
    """(accuracy, threshold) of the best single threshold over all pairs (higher score = same)."""
    best = (0.0, 0.0)
    for t in sorted(set(scores)):
        acc = sum((s >= t) == y for s, y in zip(scores, same)) / len(same)
        if acc > best[0]:
            best = (acc, t)
    return best
