"""Metrics against values worked out by hand on small score sets."""

from __future__ import annotations

import math

import numpy as np
import pytest

from safeface.evaluate import metrics as m


def test_roc_counts_scores_at_threshold_as_matches() -> None:
    c = m.roc([0.9, 0.8, 0.7, 0.4], [0.6, 0.5, 0.3, 0.2])
    assert c.thresholds[0] == math.inf and c.fmr[0] == 0 and c.fnmr[0] == 1
    i = list(c.thresholds).index(0.6)
    assert c.fmr[i] == 0.25 and c.fnmr[i] == 0.25
    assert c.fmr[-1] == 1.0 and c.fnmr[-1] == 0.0
    assert m.fmr_fnmr([0.9, 0.8, 0.7, 0.4], [0.6, 0.5, 0.3, 0.2], 0.5) == (0.5, 0.25)


def test_eer_at_an_operating_point() -> None:
    rate, thr = m.eer([0.9, 0.8, 0.7, 0.4], [0.6, 0.5, 0.3, 0.2])
    assert rate == pytest.approx(0.25) and thr == pytest.approx(0.6)


def test_eer_interpolated_between_operating_points() -> None:
    # At 0.6: FMR 0, FNMR 1/3; at 0.5: FMR 1/2, FNMR 1/3: the curves cross at 1/3, 2/3 of the way.
    rate, thr = m.eer([0.8, 0.6, 0.4], [0.5, 0.3])
    assert rate == pytest.approx(1 / 3)
    assert thr == pytest.approx(0.6 - (2 / 3) * 0.1)


def test_tar_at_far() -> None:
    nonmated = [i / 10 for i in range(10)]
    mated = [0.95, 0.85, 0.75, 0.5]
    p = m.tar_at_far(mated, nonmated, 0.1)
    assert p.fmr == pytest.approx(0.1) and p.tmr.value == pytest.approx(0.5) and p.supported
    assert 0.8 < p.threshold <= 0.85
    p0 = m.tar_at_far(mated, nonmated, 0.0)
    assert p0.fmr == 0 and p0.tmr.value == pytest.approx(0.25)
    assert not m.tar_at_far(mated, nonmated, 0.01).supported


def test_wilson_interval() -> None:
    w = m.wilson(8, 10)
    assert w.value == 0.8
    assert w.low == pytest.approx(0.4902, abs=1e-4) and w.high == pytest.approx(0.9433, abs=1e-4)
    assert m.wilson(0, 50).low == 0.0 and m.wilson(50, 50).high == 1.0


def test_bootstrap_brackets_the_statistic() -> None:
    rng = np.random.default_rng(1)
    g, i = rng.normal(2, 1, 300), rng.normal(0, 1, 300)
    iv = m.bootstrap(lambda a, b: m.eer(a, b)[0], g, i, n=200)
    assert iv.low < iv.value < iv.high
    assert 0.1 < iv.value < 0.22  # two unit normals 2 apart: EER = Phi(-1) = 0.159


def test_best_threshold_and_tenfold_protocol() -> None:
    # Fold 1 alone is best split at 0.55 (2/3; ties go low); fold 0 alone at 0.55 (1.0).
    scores = [0.9, 0.2, 0.6, 0.5, 0.7]
    same = [True, False, True, False, False]
    folds = [0, 0, 1, 1, 1]
    assert m.best_threshold(np.array(scores[2:]), np.array(same[2:])) == (pytest.approx(0.55), pytest.approx(2 / 3))
    k = m.kfold_accuracy(scores, same, folds)
    assert k.fold_accuracy == (pytest.approx(1.0), pytest.approx(2 / 3))
    assert k.mean == pytest.approx(5 / 6) and k.std == pytest.approx(1 / 6)
    with pytest.raises(ValueError):
        m.kfold_accuracy(scores, same, [0] * 5)


def test_cmc_and_ranks_count_ties_against_the_mate() -> None:
    sim = np.array([[0.9, 0.1, 0.2], [0.8, 0.7, 0.1], [0.5, 0.6, 0.4]])
    ranks = m.mate_ranks(sim, [0, 1, 2])
    assert list(ranks) == [1, 2, 3]
    assert list(m.cmc(ranks, 3)) == pytest.approx([1 / 3, 2 / 3, 1.0])
    assert list(m.mate_ranks(np.array([[0.5, 0.5]]), [0])) == [2]


def test_fnir_at_fpir() -> None:
    nonmated_top = [i / 10 for i in range(10)]
    p = m.fnir_at_fpir([0.95, 0.85, 0.7], [1, 2, 1], nonmated_top, 0.1)
    assert p.fmr == pytest.approx(0.1)
    assert 1 - p.tmr.value == pytest.approx(2 / 3)


def test_unlinkability_hand_computed() -> None:
    # Two bins: mated 1/2, 1/2; non-mated 1/4, 3/4. LR = 2 then 2/3; D = 1/3 then 0.
    u = m.unlinkability([0.0, 0.0, 1.0, 1.0], [0.0, 1.0, 1.0, 1.0], bins=2)
    assert list(u.local) == pytest.approx([1 / 3, 0.0])
    assert u.dsys == pytest.approx(1 / 6)


def test_unlinkability_extremes() -> None:
    rng = np.random.default_rng(0)
    same = rng.normal(0, 1, 5000)
    assert m.unlinkability(same, same).dsys == 0.0
    assert m.unlinkability(rng.normal(0, 1, 50_000), rng.normal(0, 1, 50_000)).dsys < 0.05
    assert m.unlinkability(rng.normal(5, 0.1, 1000), rng.normal(0, 0.1, 1000)).dsys == pytest.approx(1.0)
    # Partly separated: strictly between.
    mid = m.unlinkability(rng.normal(1, 1, 20_000), rng.normal(0, 1, 20_000)).dsys
    assert 0.2 < mid < 0.6


def test_probit_axes() -> None:
    assert m.probit([0.5])[0] == pytest.approx(0.0)
    assert m.probit([0.975])[0] == pytest.approx(1.96, abs=1e-3)
