"""Biometric performance metrics in plain NumPy (ISO/IEC 19795-1 terms, NIST FRTE conventions).

Scores are similarities: higher means more alike, and a comparison is a match when its score is
at or above the threshold. "Mated" comparisons are of the same person, "non-mated" of two people.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from statistics import NormalDist
from typing import Callable, Optional, Sequence

import numpy as np

Z95 = 1.959963984540054


@dataclass(frozen=True)
class Curve:
    """Operating points, one per threshold (descending): FMR and FNMR at each."""

    thresholds: np.ndarray
    fmr: np.ndarray
    fnmr: np.ndarray

    @property
    def tmr(self) -> np.ndarray:
        return 1.0 - self.fnmr


@dataclass(frozen=True)
class Interval:
    value: float
    low: float
    high: float

    def to_dict(self) -> dict[str, float]:
        return {"value": self.value, "low": self.low, "high": self.high}


@dataclass(frozen=True)
class OperatingPoint:
    """The point where FMR (or FPIR) first meets a target: the threshold, the rate reached, and
    the other error (TMR = 1 - FNMR) with its 95% interval. `supported` is False when too few
    non-mated comparisons exist to observe the target rate (fewer than 1 / target)."""

    target: float
    threshold: float
    fmr: float
    tmr: Interval
    supported: bool

    def to_dict(self) -> dict[str, object]:
        return {"target": self.target, "threshold": self.threshold, "fmr": self.fmr,
                "tar": self.tmr.to_dict(), "supported": self.supported}


def _arr(x: Sequence[float] | np.ndarray) -> np.ndarray:
    a = np.asarray(x, dtype=np.float64).reshape(-1)
    if a.size and not np.isfinite(a).all():
        raise ValueError("scores must be finite numbers.")
    return a


def fmr_fnmr(mated: Sequence[float] | np.ndarray, nonmated: Sequence[float] | np.ndarray,
             threshold: float) -> tuple[float, float]:
    """(FMR, FNMR) at one threshold: non-mated scores >= t, mated scores < t."""
    g, i = _arr(mated), _arr(nonmated)
    fmr = float(np.mean(i >= threshold)) if i.size else float("nan")
    fnmr = float(np.mean(g < threshold)) if g.size else float("nan")
    return fmr, fnmr


def roc(mated: Sequence[float] | np.ndarray, nonmated: Sequence[float] | np.ndarray) -> Curve:
    """FMR and FNMR at every distinct score used as threshold, plus +inf (accept nothing)."""
    g, i = np.sort(_arr(mated)), np.sort(_arr(nonmated))
    if not g.size or not i.size:
        raise ValueError("need at least one mated and one non-mated score.")
    t = np.unique(np.concatenate([g, i]))[::-1]
    t = np.concatenate([[np.inf], t])
    fmr = (i.size - np.searchsorted(i, t, side="left")) / i.size
    fnmr = np.searchsorted(g, t, side="left") / g.size
    return Curve(t, fmr, fnmr)


def eer(mated: Sequence[float] | np.ndarray, nonmated: Sequence[float] | np.ndarray) -> tuple[float, float]:
    """Equal error rate and its threshold: where the FMR and FNMR curves cross, linearly
    interpolated between the two operating points that bracket the crossing."""
    c = roc(mated, nonmated)
    d = c.fnmr - c.fmr  # starts at 1 (accept nothing), falls to -1 or so
    k = int(np.argmax(d <= 0)) if (d <= 0).any() else len(d) - 1
    if k == 0 or d[k] == 0:
        return float((c.fmr[k] + c.fnmr[k]) / 2), float(c.thresholds[k])
    j = k - 1
    # crossing of the segment (fmr_j, fnmr_j)->(fmr_k, fnmr_k) with fmr == fnmr
    w = d[j] / (d[j] - d[k])
    rate = float(c.fmr[j] + w * (c.fmr[k] - c.fmr[j]))
    t_j = c.thresholds[j] if np.isfinite(c.thresholds[j]) else c.thresholds[k]
    thr = float(t_j + w * (c.thresholds[k] - t_j))
    return rate, thr


def threshold_at_rate(nonmated: Sequence[float] | np.ndarray, target: float) -> float:
    """The lowest threshold at which the share of non-mated scores >= threshold is <= target:
    just above the (k+1)-th highest non-mated score, k = floor(target * n)."""
    i = np.sort(_arr(nonmated))[::-1]
    if not i.size:
        raise ValueError("need non-mated scores.")
    k = int(math.floor(target * i.size + 1e-9))
    if k >= i.size:
        return float("-inf")
    return float(np.nextafter(i[k], np.inf))


def tar_at_far(mated: Sequence[float] | np.ndarray, nonmated: Sequence[float] | np.ndarray,
               far: float) -> OperatingPoint:
    """True accept rate (1 - FNMR) at the threshold where FMR first falls to `far` or below."""
    g, i = _arr(mated), _arr(nonmated)
    t = threshold_at_rate(i, far)
    fmr, fnmr = fmr_fnmr(g, i, t)
    accepted = int(round((1 - fnmr) * g.size))
    return OperatingPoint(far, t, fmr, wilson(accepted, g.size), supported=i.size * far >= 1)


def wilson(successes: int, n: int, z: float = Z95) -> Interval:
    """A proportion with its Wilson score interval (good near 0 and 1, unlike the normal one)."""
    if n <= 0:
        return Interval(float("nan"), float("nan"), float("nan"))
    p = successes / n
    denom = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    low = 0.0 if successes == 0 else max(0.0, centre - half)
    high = 1.0 if successes == n else min(1.0, centre + half)
    return Interval(p, low, high)


def bootstrap(stat: Callable[[np.ndarray, np.ndarray], float], mated: Sequence[float] | np.ndarray,
              nonmated: Sequence[float] | np.ndarray, n: int = 1000, seed: int = 0,
              level: float = 0.95) -> Interval:
    """Percentile bootstrap interval of a statistic of (mated, nonmated), each resampled."""
    g, i = _arr(mated), _arr(nonmated)
    rng = np.random.default_rng(seed)
    vals = np.array([stat(g[rng.integers(0, g.size, g.size)], i[rng.integers(0, i.size, i.size)])
                     for _ in range(n)])
    a = (1 - level) / 2
    return Interval(float(stat(g, i)), float(np.quantile(vals, a)), float(np.quantile(vals, 1 - a)))


# -- accuracy (the LFW protocol) -------------------------------------------------------------

def best_threshold(scores: np.ndarray, same: np.ndarray) -> tuple[float, float]:
    """(threshold, accuracy) maximising accuracy; candidates are midpoints between consecutive
    distinct scores and the two ends; ties go to the lowest threshold."""
    s = _arr(scores)
    y = np.asarray(same, dtype=bool).reshape(-1)
    u = np.unique(s)
    cands = np.concatenate([[u[0] - 1.0], (u[:-1] + u[1:]) / 2, [u[-1] + 1.0]])
    order = np.argsort(s)
    ss, yy = s[order], y[order]
    # accuracy at t: mated >= t plus non-mated < t
    below = np.searchsorted(ss, cands, side="left")
    mated_below = np.concatenate([[0], np.cumsum(yy)])[below]
    nonmated_below = below - mated_below
    correct = (y.sum() - mated_below) + nonmated_below
    k = int(np.argmax(correct))
    return float(cands[k]), float(correct[k] / s.size)


@dataclass(frozen=True)
class KFold:
    mean: float
    std: float
    fold_accuracy: tuple[float, ...]
    thresholds: tuple[float, ...]

    def to_dict(self) -> dict[str, object]:
        return {"mean": self.mean, "std": self.std, "folds": list(self.fold_accuracy),
                "thresholds": list(self.thresholds)}


def kfold_accuracy(scores: Sequence[float] | np.ndarray, same: Sequence[bool] | np.ndarray,
                   folds: Sequence[int] | np.ndarray) -> KFold:
    """LFW's protocol: for each fold, the threshold that is best on the other folds decides the
    pairs of this fold. Mean and standard deviation over folds (LFW reports both)."""
    s, y, f = _arr(scores), np.asarray(same, dtype=bool), np.asarray(folds)
    accs, thrs = [], []
    for k in np.unique(f):
        test = f == k
        if test.all():
            raise ValueError("k-fold accuracy needs at least two folds.")
        t, _ = best_threshold(s[~test], y[~test])
        accs.append(float(np.mean((s[test] >= t) == y[test])))
        thrs.append(t)
    a = np.array(accs)
    return KFold(float(a.mean()), float(a.std()), tuple(accs), tuple(thrs))


# -- identification (1:N) ---------------------------------------------------------------------

def mate_ranks(similarity: np.ndarray, mate_index: Sequence[int] | np.ndarray) -> np.ndarray:
    """Rank (1 = best) of each mated probe's true gallery entry; ties count against it."""
    sim = np.asarray(similarity, dtype=np.float64)
    idx = np.asarray(mate_index, dtype=np.int64)
    true = sim[np.arange(len(idx)), idx]
    ranks: np.ndarray = (sim >= true[:, None]).sum(axis=1)
    return ranks


def cmc(ranks: Sequence[int] | np.ndarray, max_rank: int) -> np.ndarray:
    """Cumulative match characteristic: share of mated probes with their mate at rank <= r,
    for r = 1..max_rank."""
    r = np.asarray(ranks)
    out: np.ndarray = np.array([float(np.mean(r <= k)) for k in range(1, max_rank + 1)])
    return out


def fnir_at_fpir(mated_mate_scores: Sequence[float] | np.ndarray, mated_ranks: Sequence[int] | np.ndarray,
                 nonmated_top_scores: Sequence[float] | np.ndarray, fpir: float,
                 rank: int = 1) -> OperatingPoint:
    """NIST's open-set measure: the threshold at which FPIR (non-mated searches whose top score
    reaches it) falls to `fpir`, and FNIR there (mated searches whose mate is not returned at
    rank <= `rank` with a score at or above the threshold). `tmr` holds 1 - FNIR."""
    m = _arr(mated_mate_scores)
    r = np.asarray(mated_ranks)
    t = threshold_at_rate(nonmated_top_scores, fpir)
    hits = int(np.sum((m >= t) & (r <= rank)))
    reached = float(np.mean(_arr(nonmated_top_scores) >= t))
    return OperatingPoint(fpir, t, reached, wilson(hits, m.size), supported=len(nonmated_top_scores) * fpir >= 1)


# -- unlinkability (ISO/IEC 30136; Gomez-Barrero et al., 2018) --------------------------------

@dataclass(frozen=True)
class Unlinkability:
    """Global D_sys in [0, 1] (0: fully unlinkable) and the local D(s) per score bin."""

    dsys: float
    bin_edges: np.ndarray
    local: np.ndarray
    mated_density: np.ndarray
    nonmated_density: np.ndarray


def unlinkability(mated: Sequence[float] | np.ndarray, nonmated: Sequence[float] | np.ndarray,
                  bins: Optional[int] = None, omega: float = 1.0) -> Unlinkability:
    """D_sys of Gomez-Barrero et al. (2018) from linkage scores between two systems' templates.

    "Mated" scores compare templates of one subject under the two keys, "non-mated" of two
    subjects. With LR(s) = p(s|mated) / p(s|non-mated) and omega the prior ratio of mated to
    non-mated, the local measure is D(s) = 2 omega LR(s) / (1 + omega LR(s)) - 1 where
    omega LR(s) > 1 and 0 elsewhere: the excess of the posterior of "mated" over "non-mated".
    D_sys is D(s) averaged over the mated score distribution. Densities are histograms on
    common bins; a bin with mated but no non-mated scores counts as fully linkable (D = 1).
    Sparse bins make the histogram ratio noisy and D_sys biased upward, so by default the bin
    count follows Sturges' rule on the smaller sample (about 10 bins for 500 scores)."""
    g, i = _arr(mated), _arr(nonmated)
    if not g.size or not i.size:
        raise ValueError("need mated and non-mated linkage scores.")
    if bins is None:
        bins = max(5, int(math.ceil(math.log2(min(g.size, i.size)))) + 1)
    lo, hi = float(min(g.min(), i.min())), float(max(g.max(), i.max()))
    if hi <= lo:
        hi = lo + 1e-9
    edges = np.linspace(lo, hi, bins + 1)
    pm = np.histogram(g, edges)[0] / g.size
    pn = np.histogram(i, edges)[0] / i.size
    with np.errstate(divide="ignore", invalid="ignore"):
        lr = np.where(pn > 0, pm / np.where(pn > 0, pn, 1), np.where(pm > 0, np.inf, 0.0))
    olr = omega * lr
    local = np.where(olr > 1, np.where(np.isinf(olr), 1.0, 2 * olr / (1 + np.where(np.isinf(olr), 0, olr)) - 1), 0.0)
    return Unlinkability(float(np.sum(pm * local)), edges, local, pm, pn)


# -- DET axes ---------------------------------------------------------------------------------

def probit(p: Sequence[float] | np.ndarray, clip: float = 1e-6) -> np.ndarray:
    """Normal deviates of rates, the DET plot's axes (ISO/IEC 19795-1)."""
    nd = NormalDist()
    a = np.clip(np.asarray(p, dtype=np.float64), clip, 1 - clip)
    out: np.ndarray = np.vectorize(nd.inv_cdf)(a)
    return out


def rate_or_none(x: Optional[float]) -> Optional[float]:
    return None if x is None or not math.isfinite(x) else float(x)
