"""Evaluation figures on small hand-checked score sets: thresholds, 10-fold accuracy, TMR counts."""

from __future__ import annotations

import numpy as np
import pytest

from safeface.evaluate import metrics as m
from safeface.evaluate.masked import calibrated_masked_threshold


def test_a_mated_score_at_the_threshold_is_not_a_false_non_match() -> None:
    """FNMR counts only mated scores below the threshold: a score at it is a match."""
    assert m.fmr_fnmr([0.5, 0.7], [0.1], 0.5) == (0.0, 0.0)


def test_best_threshold_may_accept_every_pair() -> None:
    """When every pair is mated, the best split accepts all of them (accuracy 1)."""
    t, acc = m.best_threshold(np.array([0.1, 0.2, 0.3]), np.array([True, True, True]))
    assert acc == 1.0 and t < 0.1


def test_tenfold_threshold_is_chosen_without_the_fold_it_decides() -> None:
    """Each fold is decided by the threshold learnt on the other folds only (no test-fold leak)."""
    k = m.kfold_accuracy([0.1, 0.3, 0.5, 0.7], [False, True, False, True], [0, 0, 1, 1])
    assert k.thresholds == (pytest.approx(0.6), pytest.approx(0.2))
    assert k.fold_accuracy == (0.5, 0.5) and k.mean == 0.5


def test_tenfold_counts_a_test_score_at_the_threshold_as_a_match() -> None:
    """A test-fold mated score equal to the learnt threshold is accepted, as the SDK decides."""
    k = m.kfold_accuracy([0.25, 0.75, 0.5, 0.3], [False, True, True, False], [0, 0, 1, 1])
    assert k.thresholds[1] == 0.5 and k.fold_accuracy[1] == 1.0


def test_tmr_at_fmr_counts_accepted_mated_pairs_exactly() -> None:
    """TMR at a fixed FMR is the exact share of mated pairs accepted (1 of 5 is 0.2, not 0)."""
    p = m.tar_at_far([0.0, 0.0, 0.0, 0.0, 1.0], [0.5] * 10, 0.0)
    assert p.fmr == 0.0 and p.tmr.value == pytest.approx(0.2)


def test_masked_threshold_reaches_the_bare_fmr_exactly() -> None:
    """The calibrated masked threshold gives the masked impostors the bare FMR at the deployed
    threshold (a bare score at the threshold counting as a match), with no float rounding loss."""
    bare = np.array([0.5] + [0.9] * 28 + [0.1] * 71)  # 29 of 100 at or above 0.5
    masked = np.linspace(0.0, 0.99, 100)
    t = calibrated_masked_threshold(bare, masked, 0.5)
    assert float(np.mean(masked >= t)) == pytest.approx(0.29)


def test_masked_threshold_never_finer_than_one_impostor() -> None:
    """With no bare impostor accepted, the masked threshold still sits at one masked impostor in
    n."""
    masked = np.linspace(0.0, 0.9, 10)
    t = calibrated_masked_threshold(np.array([0.1, 0.2]), masked, 0.5)
    assert float(np.mean(masked >= t)) == pytest.approx(0.1)


def test_no_bare_impostor_pair_gives_no_masked_threshold() -> None:
    """With no bare-path impostor pair there is no rate to match: no masked threshold, not one
    taken from an undefined rate."""
    assert calibrated_masked_threshold(np.array([]), np.array([0.1, 0.2, 0.3]), 0.5) is None
    assert calibrated_masked_threshold(np.array([0.1, 0.2]), np.array([]), 0.5) is None
