"""Masked-face figures (safeface/evaluate/masked.py) on synthetic records: what a masked probe is
compared with, failures to acquire, mask-detection rates, the calibration's impostor set."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from safeface.evaluate.datasets import Pair
from safeface.evaluate.embedcache import Record
from safeface.evaluate.masked import (MaskedRecord, calibrate_on_trained_half, fta_figures,
                                      mask_detection_figures, scenario)
from safeface.evaluate.verification import NO_FACE_SCORE
from safeface.hazmat.vision.mask_detect import mask_threshold

T, TM = 0.91, 0.95


def _unit(seed: int) -> np.ndarray:
    x = np.random.default_rng(seed).standard_normal(64)
    return (x / np.linalg.norm(x)).astype(np.float32)


def _cos(a: np.ndarray, b: np.ndarray) -> float:
    return float(a @ b / (np.linalg.norm(a) * np.linalg.norm(b)))


def _probe_case(probe_conf: float) -> tuple[Pair, dict[Path, Record], dict[Path, MaskedRecord]]:
    a, b = Path("a/a_1.jpg"), Path("b/b_1.jpg")
    masked = {a: MaskedRecord(True, _unit(1), "hog", 0.0, 0.0, _unit(2), _unit(3)),
              b: MaskedRecord(True, _unit(4), "hog", probe_conf, 0.0, _unit(5), _unit(6))}
    bare = {a: Record(_unit(7), 1, "hog"), b: Record(_unit(8), 1, "hog")}
    return Pair(a, b, "a", "b", True, 0), bare, masked


def test_a_masked_probe_is_scored_by_its_masked_images_visible_region() -> None:
    """A probe called masked meets the enrolment's visible-region template with the masked image's
    visible-region embedding, never the bare image's."""
    pair, bare, masked = _probe_case(0.99)
    sc = scenario([pair], bare, masked, "probe", T, TM)
    want = _cos(masked[pair.image1].visible, masked[pair.image2].masked_visible) - TM + T
    assert sc.masked_path[0] and sc.scores.scores[0] == pytest.approx(want, abs=1e-6)


def test_a_probe_not_called_masked_is_scored_whole_from_the_masked_image() -> None:
    """A masked probe the detector missed is compared whole, by the masked image's embedding."""
    pair, bare, masked = _probe_case(0.0)
    sc = scenario([pair], bare, masked, "probe", T, TM)
    want = _cos(bare[pair.image1].embedding, masked[pair.image2].masked)
    assert not sc.masked_path[0] and sc.scores.scores[0] == pytest.approx(want, abs=1e-6)


def test_a_probe_with_no_face_is_a_rejection_and_a_failure_to_acquire() -> None:
    """A masked probe where no face was found scores as a rejection and is marked not acquired."""
    pair, bare, masked = _probe_case(0.0)
    masked[pair.image2] = MaskedRecord(True, None, "", float("nan"), 0.0, _unit(5), None)
    sc = scenario([pair], bare, masked, "probe", T, TM)
    assert sc.scores.scores[0] == NO_FACE_SCORE and not sc.scores.acquired[0]


def test_a_confidence_at_the_mask_threshold_is_called_masked() -> None:
    """The evaluation calls a face masked at and above the detector's threshold, as the SDK does."""
    assert MaskedRecord(True, _unit(1), "hog", mask_threshold(), 0.0, None).detected_masked


def test_fta_and_false_mask_rate_count_only_images_with_a_bare_face() -> None:
    """Images with no bare face (no mask drawn) are outside the masked FTA and the
    bare-called-masked rate."""
    recs = {Path("a/1.jpg"): MaskedRecord(True, _unit(1), "hog", 0.99, 0.99, _unit(2)),
            Path("b/1.jpg"): MaskedRecord(False, None, "", float("nan"), float("nan"), None)}
    f = fta_figures(recs)
    assert f["no_face"] == 0 and f["masked_images"] == 1 and f["images_without_bare_face"] == 1
    assert mask_detection_figures(recs)["bare_called_masked"]["value"] == 1.0


def test_calibration_impostors_exclude_same_person_pairs() -> None:
    """The masked threshold is set on different-person pairs only (two images of one person are not
    impostors)."""
    # Fay and Gus are on the mask detector's trained half.
    paths = [Path("Fay/Fay_1.jpg"), Path("Fay/Fay_2.jpg"), Path("Gus/Gus_1.jpg")]
    masked = {p: MaskedRecord(True, _unit(10 + k), "hog", 0.99, 0.0, _unit(20 + k), _unit(30 + k))
              for k, p in enumerate(paths)}
    bare = {p: Record(_unit(40 + k), 1, "hog") for k, p in enumerate(paths)}
    c = calibrate_on_trained_half(bare, masked, T)
    assert c["images"] == 3 and c["bare_impostor_pairs"] == 2
    assert c["masked_impostor_pairs"] == 4 and c["both_masked_impostor_pairs"] == 2


@pytest.mark.parametrize("called_masked", [(0.0, 0.0), (0.99, 0.0)], ids=["none-masked", "one-masked"])
def test_a_calibration_without_masked_impostors_gives_no_threshold_rather_than_failing(
        called_masked: tuple[float, float]) -> None:
    """A small run (a --limit, or few faces called masked) has no masked impostor pair on the
    trained half: the calibration says it has no threshold, where it ended the whole evaluation
    with "need non-mated scores"."""
    paths = [Path("Fay/Fay_1.jpg"), Path("Gus/Gus_1.jpg")]  # both on the trained half
    masked = {p: MaskedRecord(True, _unit(10 + k), "hog", called_masked[k], 0.0, _unit(20 + k), _unit(30 + k))
              for k, p in enumerate(paths)}
    bare = {p: Record(_unit(40 + k), 1, "hog") for k, p in enumerate(paths)}
    c = calibrate_on_trained_half(bare, masked, T)
    assert c["bare_impostor_pairs"] == 1 and c["both_masked_impostor_pairs"] == 0
    assert c["both_masked_threshold"] is None
    assert (c["masked_threshold"] is None) == (c["masked_impostor_pairs"] == 0)


def test_a_calibration_on_one_persons_images_gives_no_threshold() -> None:
    """Every trained-half image of one person: no impostor pair at all, so no rate and no
    threshold."""
    paths = [Path("Fay/Fay_1.jpg"), Path("Fay/Fay_2.jpg")]
    masked = {p: MaskedRecord(True, _unit(10 + k), "hog", 0.99, 0.0, _unit(20 + k), _unit(30 + k))
              for k, p in enumerate(paths)}
    bare = {p: Record(_unit(40 + k), 1, "hog") for k, p in enumerate(paths)}
    c = calibrate_on_trained_half(bare, masked, T)
    assert c["bare_impostor_pairs"] == 0 and c["bare_fmr_at_threshold"] is None
    assert c["masked_threshold"] is None and c["both_masked_threshold"] is None
