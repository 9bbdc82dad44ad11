"""Demographic differentials, as NIST FRTE reports them: per-group FMR and FNMR at one global
threshold, and how far the worst group is from the others (max / geometric mean, max / min).

Group labels come only from a CSV the operator supplies with the test set; nothing here infers
a group from a face. Mated pairs belong to their subject's group; non-mated pairs count for a
group's FMR only when both people are in that group (NIST's same-group impostors); pairs across
groups are summed under "(across groups)"."""

from __future__ import annotations

import math
from typing import Mapping, Sequence

import numpy as np

from . import metrics
from .datasets import Pair

ACROSS = "(across groups)"
UNLABELLED = "(unlabelled)"


def _ratios(rates: Mapping[str, tuple[int, int]]) -> dict[str, object]:
    """max/geomean and max/min of per-group rates. A group with no error would make both
    undefined, so its rate is floored at half an error (0.5 / n) and `floored` says so."""
    vals, floored = [], False
    for errors, n in rates.values():
        if n == 0:
            continue
        if errors == 0:
            floored = True
            vals.append(0.5 / n)
        else:
            vals.append(errors / n)
    if len(vals) < 2:
        return {"max_over_geomean": None, "max_over_min": None, "floored": floored}
    a = np.array(vals)
    geo = float(math.exp(np.mean(np.log(a))))
    return {"max_over_geomean": float(a.max() / geo), "max_over_min": float(a.max() / a.min()), "floored": floored}


def differentials(pairs: Sequence[Pair], scores: np.ndarray, groups: Mapping[str, str],
                  threshold: float) -> dict[str, object]:
    """Per-group FMR/FNMR (with Wilson intervals) of one attribute, and the ratios."""
    fnmr_counts: dict[str, tuple[int, int]] = {}
    fmr_counts: dict[str, tuple[int, int]] = {}
    for p, s in zip(pairs, scores):
        g1, g2 = groups.get(p.subject1, UNLABELLED), groups.get(p.subject2, UNLABELLED)
        if p.same:
            e, n = fnmr_counts.get(g1, (0, 0))
            fnmr_counts[g1] = (e + int(s < threshold), n + 1)
        else:
            key = g1 if g1 == g2 else ACROSS
            e, n = fmr_counts.get(key, (0, 0))
            fmr_counts[key] = (e + int(s >= threshold), n + 1)
    per_group: dict[str, dict[str, object]] = {}
    for g in sorted(set(fnmr_counts) | set(fmr_counts)):
        row: dict[str, object] = {}
        if g in fnmr_counts:
            e, n = fnmr_counts[g]
            row["fnmr"] = {**metrics.wilson(e, n).to_dict(), "errors": e, "pairs": n}
        if g in fmr_counts:
            e, n = fmr_counts[g]
            row["fmr"] = {**metrics.wilson(e, n).to_dict(), "errors": e, "pairs": n}
        per_group[g] = row

    def real(d: Mapping[str, tuple[int, int]]) -> dict[str, tuple[int, int]]:
        return {k: v for k, v in d.items() if k not in (ACROSS, UNLABELLED)}

    return {"threshold": threshold, "groups": per_group,
            "fnmr_ratios": _ratios(real(fnmr_counts)), "fmr_ratios": _ratios(real(fmr_counts))}
