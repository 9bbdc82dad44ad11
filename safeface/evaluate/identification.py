"""1:N identification on a folder-per-identity set (NIST FRTE's open-set measures).

Enrolled people: those with two or more images, except one in `holdout` of them; each enrolled
person's first image (by name) is the gallery entry and the others are mated probes. Held-out
people and people with a single image are never enrolled: their images are non-mated probes."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Mapping, Optional, Sequence

import numpy as np

from ..errors import ConfigError
from . import metrics
from .embedcache import Record

FPIR_TARGETS = (1e-2, 1e-3)
MAX_RANK = 20


@dataclass(frozen=True)
class SearchSet:
    gallery: list[tuple[str, Path]]
    mated: list[tuple[str, Path]]
    nonmated: list[tuple[str, Path]]

    def paths(self) -> list[Path]:
        return [p for _, p in self.gallery + self.mated + self.nonmated]


def split(people: Mapping[str, Sequence[Path]], holdout: int = 5, limit: int | None = None) -> SearchSet:
    names = sorted(people)
    if limit is not None:
        names = names[:limit]
    gallery, mated, nonmated = [], [], []
    multi = [n for n in names if len(people[n]) >= 2]
    held = {n for k, n in enumerate(multi) if holdout > 0 and k % holdout == holdout - 1}
    for n in names:
        imgs = list(people[n])
        if len(imgs) >= 2 and n not in held:
            gallery.append((n, imgs[0]))
            mated += [(n, p) for p in imgs[1:]]
        else:
            nonmated += [(n, p) for p in imgs]
    return SearchSet(gallery, mated, nonmated)


@dataclass(frozen=True)
class SearchScores:
    mate_scores: np.ndarray  # mated probes: score of their mate (-inf when not searchable)
    mate_ranks: np.ndarray  # mated probes: rank of their mate (gallery size + 1 when not found)
    nonmated_top: np.ndarray  # non-mated probes with a face: best score in the gallery
    gallery_size: int
    failed_to_enrol: int
    mated_without_face: int
    nonmated_without_face: int


def search(ss: SearchSet, records: Mapping[Path, Record],
           offsets: Optional[Mapping[Path, float]] = None) -> SearchScores:
    """Scores of every search. `offsets`: added to the scores of each gallery image's template
    (a path's threshold moved onto the deployed one, so that templates matched with different
    thresholds rank by their margin, as the SDK ranks them)."""
    enrolled: list[tuple[str, np.ndarray]] = []
    shift: list[float] = []
    for n, p in ss.gallery:
        e = records[p].embedding
        if e is not None:
            enrolled.append((n, e))
            shift.append(0.0 if offsets is None else float(offsets[p]))
    fte = len(ss.gallery) - len(enrolled)
    if not enrolled:
        raise ConfigError("no gallery image gave a face; nothing to search (check --root and --limit).")
    names = [n for n, _ in enrolled]
    index = {n: k for k, n in enumerate(names)}
    g = np.stack([e for _, e in enrolled]).astype(np.float32)
    g /= np.linalg.norm(g, axis=1, keepdims=True)
    off = np.asarray(shift, dtype=np.float32)
    mate_scores, mate_ranks, no_face_m = [], [], 0
    for n, p in ss.mated:
        e = records[p].embedding
        if n not in index:
            continue  # the person failed to enrol: counted in FTE, not as a search
        if e is None:
            no_face_m += 1
            mate_scores.append(-np.inf)
            mate_ranks.append(len(g) + 1)
            continue
        s = g @ (e / np.linalg.norm(e)) + off
        mate_scores.append(float(s[index[n]]))
        mate_ranks.append(int(metrics.mate_ranks(s[None, :], [index[n]])[0]))
    top, no_face_n = [], 0
    for n, p in ss.nonmated:
        e = records[p].embedding
        if e is None:
            no_face_n += 1
            continue
        top.append(float(np.max(g @ (e / np.linalg.norm(e)) + off)))
    return SearchScores(np.array(mate_scores), np.array(mate_ranks, dtype=np.int64), np.array(top),
                        len(g), fte, no_face_m, no_face_n)


def identification_metrics(sc: SearchScores) -> dict[str, object]:
    ranks = sc.mate_ranks
    n = len(ranks)
    curve = metrics.cmc(ranks, min(MAX_RANK, max(1, sc.gallery_size)))
    out: dict[str, object] = {
        "gallery_size": sc.gallery_size,
        "mated_searches": n,
        "nonmated_searches": int(len(sc.nonmated_top)),
        "failed_to_enrol": sc.failed_to_enrol,
        "mated_probes_without_face": sc.mated_without_face,
        "nonmated_probes_without_face": sc.nonmated_without_face,
        "rank1": metrics.wilson(int(np.sum(ranks <= 1)), n).to_dict(),
        "rank5": metrics.wilson(int(np.sum(ranks <= 5)), n).to_dict(),
        "cmc": [float(v) for v in curve],
    }
    if len(sc.nonmated_top):
        fnir = {}
        for t in FPIR_TARGETS:
            # a mated probe without a face scores below any threshold: a miss
            mated = np.where(np.isfinite(sc.mate_scores), sc.mate_scores, -2.0)
            op = metrics.fnir_at_fpir(mated, ranks, sc.nonmated_top, t)
            fnir[f"{t:g}"] = {"fpir": op.fmr, "threshold": op.threshold, "fnir": 1 - op.tmr.value,
                              "fnir_low": 1 - op.tmr.high, "fnir_high": 1 - op.tmr.low, "supported": op.supported}
        out["fnir_at_fpir"] = fnir
    return out
