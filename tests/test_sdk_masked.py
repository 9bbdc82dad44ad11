"""Masked faces through the SDK: enrolment stores a visible-region template sealed into the same
row as the main one (same consent, seal, expiry, erasure); a probe the mask detector calls masked
is matched against it with the masked threshold, and the result and the audit say so; rows made
before masked matching get one at the next enrolment; nothing raw reaches the disk."""

from __future__ import annotations

import sqlite3
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
from policy_support import PASSPHRASE, CachedPipeline, consent, edit_config, images, make_workspace  # noqa: E402
from array_pipeline import ArrayCachedPipeline, open_sf  # noqa: E402
from policy_support import last_call, masked_image  # noqa: E402


def masked(path: Path, kind: str = "surgical", seed: int = 1) -> np.ndarray:
    """policy_support.masked_image at half size (faces still 130-170 px wide): the pipeline runs every
    detection step on a masked image, a quarter of the pixels a quarter of the time."""
    return np.ascontiguousarray(masked_image(path, kind, seed)[::2, ::2])

from safeface.errors import ConfigError, IntegrityError  # noqa: E402
from safeface.sdk.facade import SafeFace  # noqa: E402


@pytest.fixture(scope="module")
def imgs() -> Path:
    return images()


class PlainPipeline(ArrayCachedPipeline):
    """A pipeline from before masked matching: no mask check, no visible-region template."""

    mask_check = None  # type: ignore[assignment]
    visible_embedding = None  # type: ignore[assignment]


def _note(sf: SafeFace) -> str:
    return last_call(sf).note or ""


def test_a_masked_probe_takes_the_masked_path_and_the_result_and_audit_say_so(tmp_path: Path, imgs: Path) -> None:
    ws = make_workspace(tmp_path / "ws")
    with open_sf(ws) as sf:
        t = consent(ws, "alice")
        sf.enroll(imgs / "obama.jpg", "alice", "demo", t)
        assert sf.records("alice")[0].masked_template
        assert "visible-region template" in _note(sf)
        # A bare probe: the plain path, the plain threshold, nothing said about masks.
        bare = sf.verify(imgs / "obama3.jpg", "alice", "demo", t)
        assert bare.match and not bare.masked and bare.threshold == sf.threshold
        assert bare.to_dict()["path"] == "plain" and "mask" not in _note(sf)
        for kind in ("surgical", "n95"):
            v = sf.verify(masked(imgs / "obama2.jpg", kind), "alice", "demo", t)
            assert v.masked and v.match, (kind, v)
            assert v.threshold == sf.masked_threshold != sf.threshold
            assert v.mask_confidence is not None and v.mask_confidence >= 0.5
            assert v.to_dict()["path"] == "masked"
            entry = last_call(sf)
            assert entry.operation == "verify" and entry.decision == "allowed" and "masked path" in (entry.note or "")
        # A masked stranger does not pass on the masked path.
        other = sf.verify(masked(imgs / "biden.jpg"), "alice", "demo", t)
        assert other.masked and not other.match
        found = sf.identify(masked(imgs / "obama2.jpg"), "demo", consent(ws, "walk-in"))
        assert [c.subject for c in found] == [sf.pseudonym("alice")] and found[0].masked
        assert "masked path" in _note(sf)
    # The audit chain, with the masked entries in it, still verifies.
    with open_sf(ws) as sf:
        assert sf.audit_verify().entries > 0


def test_the_masked_threshold_comes_from_the_deployment_and_a_wrong_one_is_refused(tmp_path: Path) -> None:
    ws = make_workspace(tmp_path / "ws")
    edit_config(ws, lambda c: c["matching"].update(masked_threshold=0.95))
    with open_sf(ws) as sf:
        assert sf.masked_threshold == 0.95
    edit_config(ws, lambda c: c["matching"].update(masked_threshold=-1))
    with pytest.raises(ConfigError, match="masked_threshold"):
        with open_sf(ws) as sf:
            sf.masked_threshold


def test_the_visible_template_is_protected_sealed_and_erased_with_its_person(tmp_path: Path, imgs: Path) -> None:
    ws = make_workspace(tmp_path / "ws")
    with open_sf(ws) as sf:
        t = consent(ws, "alice")
        sf.enroll(imgs / "obama.jpg", "alice", "demo", t)
        sf.enroll(imgs / "biden.jpg", "joe", "demo", consent(ws, "joe"))
        gallery_file = Path(sf._gallery.path)
    # Neither the raw visible-region embedding nor any 16-byte window of it is on disk.
    pipe = CachedPipeline()
    vis = pipe.visible_embedding(imgs / "obama.jpg", pipe.embed(imgs / "obama.jpg").face)
    blobs = b"".join(p.read_bytes() for p in ws.root.rglob("*") if p.is_file())
    b = np.asarray(vis, dtype="<f4").tobytes()
    assert len(b) == 512 and not [i for i in range(0, len(b) - 15, 4) if b[i:i + 16] in blobs]
    # A thief who moves joe's sealed blob (and with it joe's visible-region template) into
    # alice's row, so that a masked joe passes as alice, is caught when the workspace opens.
    with sqlite3.connect(gallery_file) as db:
        (alice_blob,), (joe_blob,) = db.execute("SELECT sealed FROM rows ORDER BY row_id").fetchall()
        db.execute("UPDATE rows SET sealed = ? WHERE row_id = (SELECT MIN(row_id) FROM rows)", (joe_blob,))
    with pytest.raises(IntegrityError):
        open_sf(ws)
    with sqlite3.connect(gallery_file) as db:
        db.execute("UPDATE rows SET sealed = ? WHERE row_id = (SELECT MIN(row_id) FROM rows)", (alice_blob,))
    with open_sf(ws) as sf:
        assert sf.verify(masked(imgs / "obama2.jpg"), "alice", "demo", t).masked
        receipt = sf.erase("alice")
        assert receipt.templates_removed == 1
        # Gone from the masked path too: a masked alice finds nobody, and joe's row is all that is left.
        found = sf.identify(masked(imgs / "obama2.jpg"), "demo", consent(ws, "walk-in"))
        assert sf.pseudonym("alice") not in [c.subject for c in found]
        assert [(r.pseudonym, r.masked_template) for r in sf.records()] == [(sf.pseudonym("joe"), True)]
    with sqlite3.connect(gallery_file) as db:
        assert db.execute("SELECT COUNT(*) FROM rows").fetchone()[0] == 1


def test_older_rows_get_a_visible_template_at_the_next_enrolment(tmp_path: Path, imgs: Path) -> None:
    ws = make_workspace(tmp_path / "ws")
    t = consent(ws, "alice")
    with SafeFace.open(ws.root, PASSPHRASE, pipeline=PlainPipeline()) as sf:
        sf.enroll(imgs / "obama.jpg", "alice", "demo", t)
        assert not sf.records("alice")[0].masked_template
    with open_sf(ws) as sf:
        probe = masked(imgs / "obama2.jpg")
        v = sf.verify(probe, "alice", "demo", t)
        # No visible-region template yet (no image was kept to make one): the plain path, said so.
        assert not v.masked and v.threshold == sf.threshold and v.mask_confidence is not None
        assert "no visible-region template" in _note(sf)
        assert v.match  # 0.914 whole
        # Identify says the same of its candidate: found whole, not by a visible region.
        found = sf.identify(probe, "demo", consent(ws, "walk-in"))
        assert [(c.subject, c.path) for c in found] == [(sf.pseudonym("alice"), "plain")]
        assert "1 whole on the plain path (no visible-region template)" in _note(sf)
        sf.enroll(imgs / "obama3.jpg", "alice", "demo", t)
        assert [r.masked_template for r in sf.records("alice")] == [False, True]
        v = sf.verify(probe, "alice", "demo", t)
        assert v.masked and v.match and v.threshold == sf.masked_threshold


def test_a_pipeline_without_a_mask_detector_keeps_the_plain_path(tmp_path: Path, imgs: Path) -> None:
    ws = make_workspace(tmp_path / "ws")
    t = consent(ws, "alice")
    with SafeFace.open(ws.root, PASSPHRASE, pipeline=PlainPipeline()) as sf:
        sf.enroll(imgs / "obama.jpg", "alice", "demo", t)
        v: Any = sf.verify(masked(imgs / "obama2.jpg"), "alice", "demo", t)
        assert not v.masked and v.mask_confidence is None and v.threshold == sf.threshold
        assert "mask" not in _note(sf)


def test_an_identify_over_mixed_rows_takes_each_row_by_its_own_path(tmp_path: Path, imgs: Path) -> None:
    """A masked probe against a gallery that mixes a row from before masked matching (no
    visible-region template), a bare enrolment and a masked one: each person is met by their own
    row's path (plain, masked, both masked), and a masked stranger reaches no one through
    another person's path."""
    ws = make_workspace(tmp_path / "ws")
    with SafeFace.open(ws.root, PASSPHRASE, pipeline=PlainPipeline()) as sf:
        sf.enroll(imgs / "biden.jpg", "bob", "demo", consent(ws, "bob"))  # before masked matching
    with open_sf(ws) as sf:
        sf.enroll(masked(imgs / "obama.jpg", "n95"), "alice", "demo", consent(ws, "alice"))
        assert [(r.pseudonym, r.masked_template, r.masked_enrolment) for r in sf.records()] == [
            (sf.pseudonym("bob"), False, False), (sf.pseudonym("alice"), True, True)]
        walk_in = consent(ws, "walk-in")
        found = sf.identify(masked(imgs / "obama2.jpg", "surgical"), "demo", walk_in)
        assert [(c.subject, c.masked, c.masked_enrolment) for c in found] == [(sf.pseudonym("alice"), True, True)]
        assert "1 by masked enrolment" in _note(sf)
        found = sf.identify(masked(imgs / "biden.jpg", "cloth", 2), "demo", walk_in)
        assert [(c.subject, c.masked) for c in found] == [(sf.pseudonym("bob"), False)]
