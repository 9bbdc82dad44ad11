"""1:1 verification on a pairs file: the LFW protocol with ISO/IEC 19795-1 error rates."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Mapping, Sequence

import numpy as np

from . import metrics
from .datasets import Pair
from .embedcache import Record

FAR_TARGETS = (1e-2, 1e-3, 1e-4)
# A pair with an image where no face was found cannot match: it gets the lowest cosine score,
# so it counts as a rejection (a false non-match when mated), and the failure to acquire is
# reported on its own as well.
NO_FACE_SCORE = -1.0


@dataclass(frozen=True)
class PairScores:
    scores: np.ndarray
    same: np.ndarray
    folds: np.ndarray
    acquired: np.ndarray  # both images gave a face


def score_pairs(pairs: Sequence[Pair], records: Mapping[Path, Record]) -> PairScores:
    scores, acquired = [], []
    for p in pairs:
        a, b = records[p.image1].embedding, records[p.image2].embedding
        if a is None or b is None:
            scores.append(NO_FACE_SCORE)
            acquired.append(False)
        else:
            scores.append(float(np.dot(a, b) / (np.linalg.norm(a) * np.linalg.norm(b))))
            acquired.append(True)
    return PairScores(np.array(scores), np.array([p.same for p in pairs]), np.array([p.fold for p in pairs]),
                      np.array(acquired, dtype=bool))


def verification_metrics(ps: PairScores, records: Mapping[Path, Record], threshold: float,
                         bootstrap_rounds: int = 500) -> dict[str, object]:
    """Every figure of the verification report, JSON-ready."""
    g, i = ps.scores[ps.same], ps.scores[~ps.same]
    images = len(records)
    no_face = sum(1 for r in records.values() if r.embedding is None)
    several = sum(1 for r in records.values() if r.faces > 1)
    detectors: dict[str, int] = {}
    for r in records.values():
        if r.embedding is not None:
            detectors[r.detector] = detectors.get(r.detector, 0) + 1
    out: dict[str, object] = {
        "pairs": int(len(ps.scores)),
        "mated_pairs": int(g.size),
        "nonmated_pairs": int(i.size),
        "images": images,
        "fta": {"rate": no_face / images if images else 0.0, "images_without_face": no_face,
                "pairs_affected": int((~ps.acquired).sum()),
                "interval": metrics.wilson(no_face, images).to_dict()},
        "images_with_several_faces": several,
        "faces_found_by": detectors,
    }
    folds = np.unique(ps.folds)
    if len(folds) >= 2:
        out["accuracy_10fold"] = metrics.kfold_accuracy(ps.scores, ps.same, ps.folds).to_dict()
    thr_best, acc_best = metrics.best_threshold(ps.scores, ps.same)
    out["accuracy_best_threshold"] = {"accuracy": acc_best, "threshold": thr_best}
    correct = int(np.sum((ps.scores >= threshold) == ps.same))
    fmr, fnmr = metrics.fmr_fnmr(g, i, threshold)
    out["at_default_threshold"] = {"threshold": threshold,
                                   "accuracy": metrics.wilson(correct, len(ps.scores)).to_dict(),
                                   "fmr": metrics.wilson(int(round(fmr * i.size)), i.size).to_dict(),
                                   "fnmr": metrics.wilson(int(round(fnmr * g.size)), g.size).to_dict()}
    rate, thr = metrics.eer(g, i)
    eer_iv = metrics.bootstrap(lambda a, b: metrics.eer(a, b)[0], g, i, n=bootstrap_rounds)
    out["eer"] = {"value": rate, "low": eer_iv.low, "high": eer_iv.high, "threshold": thr}
    out["tar_at_far"] = {f"{far:g}": metrics.tar_at_far(g, i, far).to_dict() for far in FAR_TARGETS}
    return out
