"""Masked enrolments through the SDK: an enrolment image the mask detector calls masked is
flagged inside its row's seal, and a masked probe meets that row's visible-region template with
the both-masked threshold (two masked strangers look more alike than a masked stranger and a
bare face); the path with the widest margin decides and the result and the audit say which; a
hand edit that would move the row to the lower masked threshold fails the seal; erasure takes
the row off the masked-enrolment path."""

from __future__ import annotations

import sqlite3
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
from policy_support import CachedPipeline, consent, datasets, edit_config, images, last_call, make_workspace  # noqa: E402
from array_pipeline import ArrayCachedPipeline, open_sf  # noqa: E402
from policy_support import masked_image  # noqa: E402


def masked(path: Path, kind: str = "surgical", seed: int = 1) -> np.ndarray:
    """policy_support.masked_image at half size (faces still 130-170 px wide): the pipeline runs every
    detection step on a masked image, a quarter of the pixels a quarter of the time."""
    return np.ascontiguousarray(masked_image(path, kind, seed)[::2, ::2])

from safeface.errors import ConfigError, IntegrityError  # noqa: E402
from safeface.hazmat.vision import DEFAULT_BOTH_MASKED_THRESHOLD, DEFAULT_MASKED_THRESHOLD  # noqa: E402
from safeface.sdk.facade import SafeFace  # noqa: E402


@pytest.fixture(scope="module")
def imgs() -> Path:
    return images()


@pytest.fixture(scope="module")
def probe(imgs: Path) -> np.ndarray:
    return masked(imgs / "obama2.jpg", "surgical", 1)


def _thresholds(ws: Any, masked_t: float, both_t: float) -> None:
    edit_config(ws, lambda c: c["matching"].update(masked_threshold=round(masked_t, 4),
                                                   both_masked_threshold=round(both_t, 4)))


def _note(sf: SafeFace) -> str:
    return last_call(sf).note or ""


def test_a_masked_probe_meets_a_masked_enrolment_with_the_both_masked_threshold(tmp_path: Path, imgs: Path,
                                                                                 probe: np.ndarray) -> None:
    ws = make_workspace(tmp_path / "ws")
    with open_sf(ws) as sf:
        assert sf.both_masked_threshold == DEFAULT_BOTH_MASKED_THRESHOLD >= DEFAULT_MASKED_THRESHOLD
        t = consent(ws, "alice")
        sf.enroll(masked(imgs / "obama.jpg", "cloth", 3), "alice", "demo", t)
        assert "visible-region template (masked enrolment)" in _note(sf)
        sf.enroll(imgs / "biden.jpg", "joe", "demo", consent(ws, "joe"))
        assert [(r.pseudonym, r.masked_template, r.masked_enrolment) for r in sf.records()] == [
            (sf.pseudonym("alice"), True, True), (sf.pseudonym("joe"), True, False)]
        v = sf.verify(probe, "alice", "demo", t)
        assert v.masked and v.masked_enrolment and v.threshold == sf.both_masked_threshold
        assert v.to_dict()["path"] == "masked-enrolment" and v.score is not None
        assert "masked path, masked enrolment (mask" in _note(sf)
        score = v.score
        assert 0.05 < score < 0.99
        # Between the two thresholds: the masked one would let the probe in, the both-masked one,
        # which is the one that applies to this row, does not.
        _thresholds(ws, score - 0.01, score + 0.01)
        v = sf.verify(probe, "alice", "demo", t)
        assert not v.match and v.threshold == pytest.approx(score + 0.01, abs=1e-3) and v.path == "masked-enrolment"
        assert v.score == pytest.approx(score, abs=1e-5)
        _thresholds(ws, score + 0.01, score - 0.01)
        v = sf.verify(probe, "alice", "demo", t)
        assert v.match and v.threshold == pytest.approx(score - 0.01, abs=1e-3)
        found = sf.identify(probe, "demo", consent(ws, "walk-in"))
        assert [(c.subject, c.path) for c in found] == [(sf.pseudonym("alice"), "masked-enrolment")]
        assert found[0].masked and found[0].masked_enrolment
        assert "masked path, 1 by masked enrolment" in _note(sf)
        _thresholds(ws, score - 0.01, score + 0.01)
        assert sf.identify(probe, "demo", consent(ws, "walk-in")) == []


def test_a_person_enrolled_both_ways_is_decided_by_the_widest_margin(tmp_path: Path, imgs: Path,
                                                                     probe: np.ndarray) -> None:
    ws = make_workspace(tmp_path / "ws")
    bare_img, masked_img = imgs / "obama.jpg", masked(imgs / "obama.jpg", "cloth", 3)
    with open_sf(ws) as sf:
        tb, tm, t = consent(ws, "bare-only"), consent(ws, "masked-only"), consent(ws, "alice")
        sf.enroll(bare_img, "bare-only", "demo", tb)
        sf.enroll(masked_img, "masked-only", "demo", tm)
        s_bare = sf.verify(probe, "bare-only", "demo", tb).score
        s_masked = sf.verify(probe, "masked-only", "demo", tm).score
        assert s_bare is not None and s_masked is not None
        sf.enroll(bare_img, "alice", "demo", t)
        sf.enroll(masked_img, "alice", "demo", t)
        assert [r.masked_enrolment for r in sf.records("alice")] == [False, True]
        # The bare enrolment's visible-region template clears its threshold by more: it decides.
        # (Room for thresholds 0.02 above either score, under 1.)
        assert max(s_bare, s_masked) < 0.975
        _thresholds(ws, s_bare - 0.02, s_masked + 0.01)
        v = sf.verify(probe, "alice", "demo", t)
        assert v.match and v.path == "masked" and v.score == pytest.approx(s_bare, abs=1e-4)
        assert "masked path (mask" in _note(sf)
        # Now the masked enrolment's does.
        _thresholds(ws, s_bare + 0.01, s_masked - 0.02)
        v = sf.verify(probe, "alice", "demo", t)
        assert v.match and v.path == "masked-enrolment" and v.score == pytest.approx(s_masked, abs=1e-4)
        # Neither clears: the smaller miss is reported, with its own threshold.
        _thresholds(ws, s_bare + 0.02, s_masked + 0.01)
        v = sf.verify(probe, "alice", "demo", t)
        assert not v.match and v.path == "masked-enrolment"
        assert v.threshold == pytest.approx(s_masked + 0.01, abs=1e-3)
        # A bare probe still takes the plain path against both rows.
        bare = sf.verify(imgs / "obama3.jpg", "alice", "demo", t)
        assert bare.path == "plain" and bare.threshold == sf.threshold


def test_the_both_masked_threshold_comes_from_the_deployment_and_a_wrong_one_is_refused(tmp_path: Path) -> None:
    ws = make_workspace(tmp_path / "ws")
    edit_config(ws, lambda c: c["matching"].update(both_masked_threshold=0.97))
    with open_sf(ws) as sf:
        assert sf.both_masked_threshold == 0.97
    for wrong in (-1, 0, 1.5, True, "0.97"):
        edit_config(ws, lambda c: c["matching"].update(both_masked_threshold=wrong))
        with pytest.raises(ConfigError, match="both_masked_threshold"):
            with open_sf(ws) as sf:
                sf.both_masked_threshold


def test_a_hand_edit_moving_a_masked_enrolment_to_the_lower_threshold_is_caught(tmp_path: Path, imgs: Path,
                                                                                probe: np.ndarray) -> None:
    """The attacker's aim: a masked stranger passes as alice because her masked enrolment is
    matched with the lower masked threshold. He swaps the sealed column of her masked-enrolment
    row with that of her bare one (same subject, same consent): the seal binds the row id, so
    the workspace refuses to open until the rows are restored; erasure then takes the row off
    the masked-enrolment path."""
    ws = make_workspace(tmp_path / "ws")
    with open_sf(ws) as sf:
        t = consent(ws, "alice")
        sf.enroll(imgs / "obama.jpg", "alice", "demo", t)
        sf.enroll(masked(imgs / "obama.jpg", "cloth", 3), "alice", "demo", t)
        sf.enroll(imgs / "biden.jpg", "joe", "demo", consent(ws, "joe"))
        gallery_file = Path(sf._gallery.path)
    with sqlite3.connect(gallery_file) as db:
        (bare_blob,), (masked_blob,), _ = db.execute("SELECT sealed FROM rows ORDER BY row_id").fetchall()
        db.execute("UPDATE rows SET sealed = ? WHERE row_id = 1", (masked_blob,))
        db.execute("UPDATE rows SET sealed = ? WHERE row_id = 2", (bare_blob,))
    with pytest.raises(IntegrityError, match="row"):
        open_sf(ws)
    with sqlite3.connect(gallery_file) as db:
        db.execute("UPDATE rows SET sealed = ? WHERE row_id = 1", (bare_blob,))
        db.execute("UPDATE rows SET sealed = ? WHERE row_id = 2", (masked_blob,))
    with open_sf(ws) as sf:
        assert [r.masked_enrolment for r in sf.records("alice")] == [False, True]
        assert sf.erase("alice").templates_removed == 2
        found = sf.identify(probe, "demo", consent(ws, "walk-in"))
        assert sf.pseudonym("alice") not in [c.subject for c in found]
        assert [(r.pseudonym, r.masked_enrolment) for r in sf.records()] == [(sf.pseudonym("joe"), False)]
        assert sf.audit_verify().entries > 0


def test_a_masked_enrolment_on_postgresql_and_milvus_lite(pg: Any, tmp_path: Path, imgs: Path,
                                                          probe: np.ndarray) -> None:
    """The server store holds the flag in the same sealed row and keeps the masked-enrolment
    path apart: the same decision, threshold and path as the SQLite gallery."""
    from server_support import server_modules

    server_modules()
    ws = make_workspace(tmp_path / "ws")
    with open_sf(ws) as sf:
        sf.migrate_storage({"records": pg.new_database(), "vectors": "milvus-lite:vectors.db"})
    with open_sf(ws) as sf:
        t = consent(ws, "alice")
        sf.enroll(masked(imgs / "obama.jpg", "cloth", 3), "alice", "demo", t)
        sf.enroll(imgs / "biden.jpg", "joe", "demo", consent(ws, "joe"))
        assert [r.masked_enrolment for r in sf.records()] == [True, False]
        bare = sf.verify(imgs / "obama2.jpg", "alice", "demo", t)  # met by its visible region, never whole
        assert bare.match and bare.path == "masked-enrolment-bare-probe" and bare.threshold == sf.masked_threshold
        found = sf.identify(imgs / "obama2.jpg", "demo", consent(ws, "walk-in"))
        assert [(c.subject, c.path) for c in found] == [(sf.pseudonym("alice"), "masked-enrolment-bare-probe")]
        v = sf.verify(probe, "alice", "demo", t)
        assert v.path == "masked-enrolment" and v.threshold == sf.both_masked_threshold and v.score is not None
        _thresholds(ws, v.score + 0.01, v.score - 0.01)
        found = sf.identify(probe, "demo", consent(ws, "walk-in"))
        assert [(c.subject, c.path) for c in found] == [(sf.pseudonym("alice"), "masked-enrolment")]
        assert sf.erase("alice").templates_removed == 1
        assert sf.identify(probe, "demo", consent(ws, "walk-in")) == []


def _lfw_masked(name: str) -> np.ndarray:
    """An LFW dev image with the mask `safeface eval verify --mask-probe random` draws on it (seed
    0): the face found in the bare image, its own seeded mask."""
    from safeface.evaluate.masked import image_seed
    from safeface.hashing import read_hashed
    from safeface.hazmat.vision import pick_subject
    from safeface.hazmat.vision.masks import draw_mask
    from safeface.imageio import load_image

    path = datasets() / "lfw-dev" / "images" / name.rsplit("_", 1)[0] / f"{name}.jpg"
    if not path.is_file():
        pytest.skip(f"the LFW dev images are absent ({path}); set SAFEFACE_DATASETS to the shared datasets")
    key, data = read_hashed(path)
    img = load_image(data)
    face = CachedPipeline().embed(path).face
    assert face is not None
    return draw_mask(img, face.landmarks, face.box, "random", image_seed(key, 0))


def test_a_masked_stranger_the_detector_misses_does_not_pass_as_a_masked_enrolment(tmp_path: Path) -> None:
    """The attack: Carlos was enrolled from a masked image. A stranger wears a covering the mask
    detector does not call masked (here the evaluation's own mask on an LFW face, confidence
    about 0.001), so his probe is not sent down the masked path. Compared whole, two masked
    faces look alike: this pair scores above the plain threshold, and the old plain path let
    him in. A masked enrolment is now met only by visible regions, at the masked threshold."""
    enrol, stranger = _lfw_masked("Carlos_Beltran_0001"), _lfw_masked("Sofyan_Dawood_0001")
    ws = make_workspace(tmp_path / "ws")
    with open_sf(ws) as sf:
        t = consent(ws, "carlos")
        sf.enroll(enrol, "carlos", "demo", t)
        assert [r.masked_enrolment for r in sf.records()] == [True]
        whole = float(np.dot(*(ArrayCachedPipeline().embed(x).embedding for x in (enrol, stranger))))
        assert whole >= sf.threshold  # what the plain path scored: a false match
        v = sf.verify(stranger, "carlos", "demo", t)
        assert v.mask_confidence is not None and v.mask_confidence < 0.5 and not v.match
        assert v.path == "masked-enrolment-bare-probe" and v.threshold == sf.masked_threshold
        assert v.score is not None and v.score < sf.masked_threshold and abs(v.score - whole) > 1e-3
        assert "bare probe by its visible region, masked enrolment (mask" in _note(sf)
        assert sf.identify(stranger, "demo", consent(ws, "walk-in")) == []


def test_a_bare_probe_meets_a_masked_enrolment_by_its_visible_region(tmp_path: Path, imgs: Path) -> None:
    """The genuine side: a bare photo of the person enrolled masked still matches, by its own
    visible-region embedding at the masked threshold; a store with no masked enrolment never
    makes that embedding (may_hold), and the bare enrolment is met whole as before."""
    ws = make_workspace(tmp_path / "ws")
    with open_sf(ws) as sf:
        t = consent(ws, "alice")
        sf.enroll(masked(imgs / "obama.jpg", "cloth", 3), "alice", "demo", t)
        sf.enroll(imgs / "biden.jpg", "joe", "demo", consent(ws, "joe"))
        assert not sf._gallery.may_hold("visible-masked", "demo", subject_id="joe")
        assert sf._gallery.may_hold("visible-masked", "demo", subject_id="alice")
        v = sf.verify(imgs / "obama2.jpg", "alice", "demo", t)
        assert v.match and v.path == "masked-enrolment-bare-probe" and v.threshold == sf.masked_threshold
        assert v.to_dict()["path"] == "masked-enrolment-bare-probe"
        found = sf.identify(imgs / "obama2.jpg", "demo", consent(ws, "walk-in"))
        assert [(c.subject, c.path) for c in found] == [(sf.pseudonym("alice"), "masked-enrolment-bare-probe")]
        assert "bare probe by its visible region, 1 by masked enrolment" in _note(sf)
        v = sf.verify(imgs / "biden.jpg", "joe", "demo", consent(ws, "joe"))
        assert v.match and v.path == "plain" and v.threshold == sf.threshold
        assert sf.verify(imgs / "biden.jpg", "alice", "demo", t).match is False
