"""APCER, BPCER, ACER and the PAD DET curve from hand-made outcomes (ISO/IEC 30107-3)."""

from __future__ import annotations

import pytest

from safeface.evaluate.pad import Outcome, det_curve, pad_metrics


def _o(kind: str, decision: str, score: float, acquired: bool = True) -> Outcome:
    return Outcome(f"{kind}/{score}", kind, decision, score, 0.1, acquired)


def test_failures_to_acquire_are_kept_out_of_the_error_rates() -> None:
    """A clip with no face followed is reported as FTA, not as a bona fide error or an attack
    miss."""
    r = pad_metrics([_o("live", "live", 0.9), _o("live", "inconclusive", 0.0, acquired=False),
                     _o("print", "attack", 0.1), _o("print", "live", 0.8, acquired=False)])
    assert r["bpcer"] == 0.0 and r["apcer"] == {"print": 0.0}
    assert r["rates"]["live"]["fta"] == 0.5 and r["rates"]["print"]["fta"] == 0.5


def test_acer_takes_the_worst_attack_type() -> None:
    """ACER = (max APCER over attack types + BPCER) / 2."""
    r = pad_metrics([_o("live", "live", 0.9), _o("print", "attack", 0.1), _o("screen", "live", 0.7)])
    assert r["apcer"] == {"print": 0.0, "screen": 1.0} and r["acer"] == pytest.approx(0.5)


def test_det_curve_bpcer_comes_from_acquired_live_clips() -> None:
    """BPCER on the DET curve: acquired live clips scoring below the threshold (at it is
    accepted)."""
    c = det_curve([_o("live", "live", 0.9), _o("live", "live", 0.2), _o("live", "x", 0.0, acquired=False),
                   _o("print", "attack", 0.1)])
    at = {float(t): (float(a), float(b)) for t, a, b in zip(c.thresholds, c.fmr, c.fnmr)}
    assert at[0.2] == (0.0, 0.0)
    assert at[0.9] == (0.0, 0.5)
    assert at[0.1] == (1.0, 0.0)


def test_an_attack_type_with_no_clip_acquired_has_no_apcer() -> None:
    """Every print clip failed to acquire: its APCER is unknown (None), not a claim that 0% of
    print attacks were accepted, and the ACER rests on the types that were measured."""
    r = pad_metrics([_o("live", "live", 0.9), _o("print", "live", 0.8, acquired=False), _o("screen", "attack", 0.1)])
    assert r["apcer"] == {"print": None, "screen": 0.0} and r["acer"] == pytest.approx(0.0)
    assert r["rates"]["print"]["fta"] == 1.0
    alone = pad_metrics([_o("live", "live", 0.9), _o("print", "live", 0.8, acquired=False)])
    assert alone["apcer"] == {"print": None} and alone["acer"] is None


def test_an_inconclusive_live_clip_counts_against_bpcer() -> None:
    """A live clip left inconclusive is a bona fide user not passed: BPCER counts it, the
    attack-only rate does not."""
    m = pad_metrics([_o("live", "live", 0.9), _o("live", "inconclusive", 0.5), _o("live", "attack", 0.1),
                     _o("live", "live", 0.8), _o("print", "attack", 0.1)])
    assert m["bpcer"] == 0.5 and m["bpcer_attack_only"] == 0.25
    assert m["acer"] == (0.0 + 0.5) / 2
