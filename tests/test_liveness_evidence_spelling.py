"""Hostile tests of liveness evidence and the clip reader (PA-01): an honest token re-spelled by
its holder, a list of frames decoded before it is counted, odd frame lists, evidence a key
holder signs for a refused check's nonce, and one challenge answered from two threads."""

from __future__ import annotations

import datetime as dt
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
from policy_support import Clock, consent, images, open_sf  # noqa: E402
from test_liveness import _hamilton, _liveness_ws  # noqa: E402

from safeface.capture.clip import read_clip  # noqa: E402
from safeface.errors import ImageError, IntegrityError, InvalidArgument, PolicyViolation  # noqa: E402


def _respelled(token: str) -> str:
    """The same signed evidence written another way: its signature part padded with "==" (the
    signed text before the last dot is unchanged, and base64 decodes the same bytes)."""
    return token + "=="


@pytest.mark.slow
def test_honest_evidence_respelled_by_its_holder_is_refused_or_audited_clean(tmp_path: Path) -> None:
    """An app (or a service client) takes evidence from an honest, passed liveness check and
    inserts a character base64 skips into its signature before spending it. The token still
    verifies, but its digest differs from the one the check's entry recorded, so `audit verify`
    accuses the workspace's key holder of signing other evidence for the checked challenge.
    Either the guard must refuse a non-canonical token as not genuine, or the audit must not
    call the honest call tampering."""
    ws = _liveness_ws(tmp_path)
    frames = _hamilton(84)
    with open_sf(ws) as sf:
        ch = sf.liveness_challenge(steps=("right",))
        result = sf.liveness_check(frames, ch.nonce, fps=29.97)
        assert result.live and result.evidence, result.checks
        t = consent(ws, "lin")
        odd = _respelled(result.evidence)
        assert odd != result.evidence
        try:
            sf.enroll(frames[4], "lin", "demo", t, liveness=odd)
        except PolicyViolation as exc:
            assert exc.rule == "PA-01" and "not genuine" in exc.message
            return
        report = sf.verify_store()
        assert not report.problems, report.problems


def test_the_evidence_reader_refuses_a_respelled_token() -> None:
    """The same at the reader: a token is one spelling of one signed evidence, so the digest the
    log pairs a check and its spending by names it."""
    from safeface.capture.evidence import EvidenceKeys

    keys = EvidenceKeys(b"k" * 32)
    tok = keys.issue(nonce="n1", clip_sha256="ab" * 32, now=1000.0, decision="live", score=0.8,
                     challenge=("left",), embedding=np.ones(128, np.float32))
    head, _, sig = tok.rpartition(".")
    for odd in (_respelled(tok), head + "." + sig[:10] + "!!!!" + sig[10:], tok + " ==",
                head + "." + sig.replace("-", "+").replace("_", "/") if ("-" in sig or "_" in sig) else tok + "=="):
        with pytest.raises(IntegrityError):
            keys.read(odd)


def test_a_list_of_frames_is_bounded_before_its_frames_are_decoded(tmp_path: Path) -> None:
    """An app passes a list of 10,000 paths (each could be a 200 KB PNG of 50 megapixels) as a
    liveness clip. A folder of frames is counted before any frame is read, and a video stops at
    1,200 decoded frames; a list must be counted first too, or every frame is decoded (and kept,
    1.8 MB each once reduced) before the refusal. Shown here by a list whose last item is not an
    image: counted first, the refusal is the clip's length (InvalidArgument), not that item."""
    import cv2

    frame = tmp_path / "f.png"
    cv2.imwrite(str(frame), np.zeros((24, 32, 3), np.uint8))
    items: list[Any] = [str(frame)] * 400 + [b"not an image"]
    with pytest.raises(InvalidArgument, match="longer than"):
        read_clip(items, fps=60)


def test_a_liveness_check_of_odd_frame_lists_is_refused_typed_and_recorded(tmp_path: Path) -> None:
    """Odd clips sent to a workspace's liveness check: no frame, one frame, tiny 1x1 frames, a
    single photo repeated, NaN frames. Each is a typed refusal or a non-live result, the check is
    recorded, and no evidence is issued."""
    ws = _liveness_ws(tmp_path)
    import cv2

    photo = cv2.cvtColor(cv2.imread(str(images() / "obama.jpg")), cv2.COLOR_BGR2RGB)
    cases: list[Any] = [[], [photo], [np.zeros((1, 1, 3), np.uint8)] * 20, [photo] * 30,
                        [np.full((32, 32, 3), np.nan, np.float32)] * 10]
    with open_sf(ws) as sf:
        for frames in cases:
            ch = sf.liveness_challenge(steps=("left", "right"))
            before = len(sf.audit_entries())
            try:
                r = sf.liveness_check(frames, ch.nonce)
            except (InvalidArgument, ImageError):
                pass
            else:
                assert not r.live and r.evidence is None, r.checks
            after = [e for e in sf.audit_entries()[before:] if e.operation == "liveness"]
            assert after and after[-1].decision in ("failed", "refused")


def _workspace_keys(ws: Any) -> Any:
    from policy_support import PASSPHRASE

    from safeface.capture.evidence import EvidenceKeys
    from safeface.hazmat.templates.keyring import PassphraseKeyring

    return EvidenceKeys(PassphraseKeyring.open(ws.keyring, PASSPHRASE).key("pseudonym"))


def test_evidence_signed_for_a_refused_checks_nonce_is_named_by_the_audit(tmp_path: Path) -> None:
    """A host holding the passphrase asks for a challenge, answers it with a clip that fails
    (no face: the check is refused and issues nothing, but its entry names the nonce), then
    signs evidence for that nonce itself, carrying the face of a photo, and enrols the photo.
    No liveness check in the log issued that evidence, so `audit verify` must name the spending
    (as it does for evidence signed with no check at all)."""
    from policy_support import CachedPipeline

    ws = _liveness_ws(tmp_path)
    clock = Clock()
    with open_sf(ws, clock=clock) as sf:
        t = consent(ws, "alice", now=clock.now - dt.timedelta(minutes=1))
        ch = sf.liveness_challenge()
        r = sf.liveness_check([np.zeros((48, 64, 3), np.uint8)] * 10, ch.nonce)
        assert not r.live and r.evidence is None
        vec = CachedPipeline().embed(images() / "obama.jpg").embedding
        forged = _workspace_keys(ws).issue(nonce=ch.nonce, clip_sha256="00" * 32, now=clock.now.timestamp(),
                                           decision="live", score=0.9, challenge=tuple(ch.steps), embedding=vec)
        sf.enroll(images() / "obama.jpg", "alice", "demo", t, liveness=forged)
        report = sf.verify_store()
        assert any("liveness evidence" in p for p in report.problems), report.problems


def test_two_threads_answering_one_challenge_at_once_get_one_check(tmp_path: Path) -> None:
    """An app answers one challenge from two threads (two handles of one process) at the same
    moment, hoping for two checks, so two evidences, of one challenge. Exactly one check runs;
    the other is refused as already answered, and both are recorded."""
    import threading

    ws = _liveness_ws(tmp_path)
    with open_sf(ws) as sf:
        ch = sf.liveness_challenge()
    frames = [np.zeros((48, 64, 3), np.uint8)] * 10
    start = threading.Barrier(2)
    outcomes: list[str] = []

    def answer() -> None:
        with open_sf(ws) as h:
            start.wait(10)
            try:
                h.liveness_check(frames, ch.nonce)
                outcomes.append("checked")
            except PolicyViolation as exc:
                outcomes.append("answered" if "already answered" in exc.message else exc.message)

    threads = [threading.Thread(target=answer) for _ in range(2)]
    for th in threads:
        th.start()
    for th in threads:
        th.join(60)
    assert sorted(outcomes) == ["answered", "checked"], outcomes
    with open_sf(ws) as sf:
        checks = [e for e in sf.audit_entries() if e.operation == "liveness"]
        assert len(checks) == 2 and sorted(e.decision for e in checks) == ["refused", "refused"]
