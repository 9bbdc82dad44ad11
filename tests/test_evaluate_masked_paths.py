"""How the masked-face evaluation scores a pair (safeface/evaluate/masked.py) must be how the SDK
decides it: a masked enrolment is met by visible regions only, whatever the probe, so a probe the
mask detector missed meets it at the masked threshold and is never compared whole. Synthetic
records, so the routing itself is what is checked."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from safeface.evaluate.datasets import Pair
from safeface.evaluate.embedcache import Record
from safeface.evaluate.masked import MaskedRecord, scenario

T, TM, TB = 0.91, 0.95, 0.96


def _unit(seed: int) -> np.ndarray:
    x = np.random.default_rng(seed).standard_normal(128)
    return (x / np.linalg.norm(x)).astype(np.float32)


def _near(v: np.ndarray, cos: float, seed: int) -> np.ndarray:
    """A unit vector at cosine `cos` from `v`."""
    o = _unit(seed)
    o = o - float(o @ v) * v
    o /= np.linalg.norm(o)
    return (cos * v + np.sqrt(1 - cos * cos) * o).astype(np.float32)


def _records(enrol_masked: bool, probe_masked: bool) -> tuple[Pair, dict[Path, Record], dict[Path, MaskedRecord]]:
    a, b = Path("a/a_1.jpg"), Path("b/b_1.jpg")
    base = _unit(1)
    whole = _near(base, 0.95, 2)  # two masked strangers compared whole: above the plain threshold
    region = _near(base, 0.93, 3)  # by visible regions: below the masked one
    conf = {True: 0.99, False: 0.01}
    masked = {a: MaskedRecord(True, base, "hog", conf[enrol_masked], 0.0, _unit(4), base),
              b: MaskedRecord(True, whole, "hog", conf[probe_masked], 0.0, _unit(5), region)}
    bare = {a: Record(_unit(6), 1, "hog"), b: Record(_unit(7), 1, "hog")}
    return Pair(a, b, "a", "b", False, 0), bare, masked


def test_a_missed_probe_meets_a_masked_enrolment_by_visible_regions() -> None:
    pair, bare, masked = _records(enrol_masked=True, probe_masked=False)
    sc = scenario([pair], bare, masked, "both", T, TM, both_masked_threshold=TB)
    assert sc.masked_path[0]
    # Shifted by its path's threshold (the masked one: the probe was not called masked).
    assert abs(sc.scores.scores[0] - (0.93 - TM + T)) < 1e-5
    assert sc.scores.scores[0] < T  # a non-match, where comparing whole (0.95) was a match
    plain = scenario([pair], bare, masked, "both", T, TM, aware=False)
    assert not plain.masked_path[0] and abs(plain.scores.scores[0] - 0.95) < 1e-5


def test_a_masked_probe_meets_a_masked_enrolment_at_the_both_masked_threshold() -> None:
    pair, bare, masked = _records(enrol_masked=True, probe_masked=True)
    sc = scenario([pair], bare, masked, "both", T, TM, both_masked_threshold=TB)
    assert sc.masked_path[0] and abs(sc.scores.scores[0] - (0.93 - TB + T)) < 1e-5


def test_an_enrolment_the_detector_called_bare_is_compared_whole_with_a_missed_probe() -> None:
    pair, bare, masked = _records(enrol_masked=False, probe_masked=False)
    sc = scenario([pair], bare, masked, "both", T, TM, both_masked_threshold=TB)
    assert not sc.masked_path[0] and abs(sc.scores.scores[0] - 0.95) < 1e-5


def test_a_bare_probe_meets_a_masked_enrolment_by_its_own_visible_region() -> None:
    pair, bare, masked = _records(enrol_masked=True, probe_masked=False)
    want = float(masked[pair.image1].masked_visible @ masked[pair.image2].visible)
    sc = scenario([pair], bare, masked, "enrolment", T, TM)
    assert sc.masked_path[0] and abs(sc.scores.scores[0] - (want - TM + T)) < 1e-5
    whole = float(masked[pair.image1].masked @ bare[pair.image2].embedding)
    plain = scenario([pair], bare, masked, "enrolment", T, TM, aware=False)
    assert not plain.masked_path[0] and abs(plain.scores.scores[0] - whole) < 1e-5
