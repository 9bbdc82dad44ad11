"""Liveness (PA-01): the physics check on landmark tracks of known 3D geometry, the challenge's
moves, the evidence's integrity, and the guard refusing calls without fresh evidence of this
probe's face, with stale, reused or another face's evidence, and a waved print."""

from __future__ import annotations

import dataclasses
import datetime as dt
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
from policy_support import PASSPHRASE, CachedPipeline, Clock, consent, datasets, images, make_workspace, open_sf  # noqa: E402
from policy_support import last_call  # noqa: E402

from safeface.capture.challenge import new_challenge, verify_moves  # noqa: E402
from safeface.capture.evidence import EvidenceKeys  # noqa: E402
from safeface.capture.physics import analyse  # noqa: E402
from safeface.errors import ImageError, IntegrityError, PolicyViolation  # noqa: E402

# Eye corners (outer, inner of the eye on the image's right; then the other eye) and the base of
# the nose of a head, in mm: eye distance 63, outer corners 16 mm behind the inner ones, the nose
# base 16 mm in front of them.
HEAD = np.array([[0.75, 0, -0.25], [0.25, 0, 0], [-0.75, 0, -0.25], [-0.25, 0, 0], [0, 0.77, 0.25]]) * 63.0


def _rotation(yaw: float, pitch: float, roll: float) -> np.ndarray:
    a, b, c = np.radians([yaw, pitch, roll])
    ry = np.array([[np.cos(a), 0, np.sin(a)], [0, 1, 0], [-np.sin(a), 0, np.cos(a)]])
    rx = np.array([[1, 0, 0], [0, np.cos(b), -np.sin(b)], [0, np.sin(b), np.cos(b)]])
    rz = np.array([[np.cos(c), -np.sin(c), 0], [np.sin(c), np.cos(c), 0], [0, 0, 1]])
    return rz @ rx @ ry


def pinhole_track(flat: bool, amp: float, seed: int, dist: float = 450.0, noise: float = 1.0,
                  yaws: Any = None) -> np.ndarray:
    """30 frames of the 5 points of a head (or of a flat print of it) turning, moving and nodding
    in front of a pinhole camera (f = 600 px, 640 x 480), with 1 px of tracking noise."""
    rng = np.random.default_rng(seed)
    shape = HEAD.copy()
    if flat:
        shape[:, 2] = 0.0
    phase = rng.uniform(0, 2 * np.pi)
    out = []
    for i in range(30):
        t = i / 29
        yaw = amp * np.sin(2 * np.pi * t + phase) if yaws is None else yaws[i]
        r = _rotation(yaw, 5 * np.sin(2.6 * np.pi * t + phase), rng.normal(0, 2))
        p = shape @ r.T + np.array([rng.normal(0, 10), rng.normal(0, 10), dist + 20 * np.sin(3 * t)])
        img = np.stack([600 * p[:, 0] / p[:, 2] + 320, 600 * p[:, 1] / p[:, 2] + 240], axis=1)
        out.append(img + rng.normal(0, noise, (5, 2)))
    return np.array(out)


# -- physics on known geometry -----------------------------------------------------------------
@pytest.mark.parametrize("dist", [300.0, 450.0, 700.0])
def test_physics_separates_a_turning_head_from_a_turning_plane(dist: float) -> None:
    for seed in range(10):
        assert analyse(pinhole_track(False, 30.0, seed, dist), 640).decision == "live"
        flat = analyse(pinhole_track(True, 30.0, seed, dist), 640)
        assert flat.decision != "live", flat
    heads = [analyse(pinhole_track(False, 25.0, s), 640).depth for s in range(10)]
    planes = [analyse(pinhole_track(True, 25.0, s), 640).depth for s in range(10)]
    assert min(heads) > 3 * max(max(planes), 0.005)


def test_a_sheared_print_that_mimics_a_turn_is_an_attack() -> None:
    """Tilting a print about a diagonal shifts the nose along the eye line as a turn does; the eyes'
    widths do not follow, so it is an attack, not live."""
    base = pinhole_track(True, 0.0, 0, noise=0.0)[0]
    rng = np.random.default_rng(1)
    frames = []
    for i in range(30):
        s = 0.3 * np.sin(2 * np.pi * i / 29)
        a = np.array([[1, 0.3 * s], [0.3 * s, 1]])
        c = base.mean(axis=0)
        frames.append((base - c) @ a.T + c + rng.normal(0, 1.0, (5, 2)))
    r = analyse(np.array(frames), 640)
    assert r.decision == "attack" and r.motion > 0.05 and abs(r.coupling) < 0.3


def test_too_little_motion_is_inconclusive_never_live() -> None:
    for flat in (False, True):
        r = analyse(pinhole_track(flat, 2.0, 3), 640)
        assert r.decision == "inconclusive" and r.score == 0.0
    assert analyse(pinhole_track(False, 30.0, 3)[:5], 640).decision == "inconclusive"


def _rendered(solid: bool, seed: int, n: int = 30, w: int = 320, h: int = 240) -> tuple[list[np.ndarray], np.ndarray]:
    """Frames of a textured surface and its 5 points, turning. Solid: a dome (100 px deep, its top
    at the nose) turned +-20 degrees about the vertical, seen orthographically, so its points move
    with their depth; flat: the same texture on a plane sheared so that the nose moves along the
    eye line as in a turn (what a print tilted about a diagonal does), every point by one map."""
    import cv2

    rng = np.random.default_rng(seed)
    tex = cv2.GaussianBlur(rng.uniform(0, 255, (h, w)).astype(np.float32), (0, 0), 1.5)
    tex = cv2.normalize(tex, None, 0, 255, cv2.NORM_MINMAX)
    cx, cy = w / 2, h / 2 - 10
    yy, xx = np.mgrid[:h, :w].astype(np.float32)
    x, y = xx - cx, yy - cy

    def depth(a: Any, b: Any) -> Any:
        return 100.0 * np.clip(1 - (a ** 2 + (b - 30) ** 2) / 100.0 ** 2, 0, 1) if solid else 0 * a

    lm = np.array([[45, 0], [15, 0], [-45, 0], [-15, 0], [0, 45]], np.float64)
    frames, pts = [], []
    for i in range(n):
        a = np.radians(20.0 * np.sin(2 * np.pi * i / n))
        s = 0.35 * np.sin(2 * np.pi * i / n)
        if solid:  # each output pixel samples the texture where it came from (first order in the turn)
            src = x - (x * (np.cos(a) - 1) + depth(x, y) * np.sin(a))
            p = np.stack([lm[:, 0] * np.cos(a) + depth(lm[:, 0], lm[:, 1]) * np.sin(a), lm[:, 1]], axis=1)
        else:
            src = x - s * y
            p = np.stack([lm[:, 0] + s * lm[:, 1], lm[:, 1]], axis=1)
        img = cv2.remap(tex, (src + cx).astype(np.float32), (y + cy).astype(np.float32), cv2.INTER_LINEAR)
        img = np.clip(img + rng.normal(0, 2, img.shape), 0, 255).astype(np.uint8)
        frames.append(np.repeat(img[..., None], 3, axis=2))
        pts.append(p + [cx, cy])
    return frames, np.array(pts)


def test_surface_parallax_separates_a_solid_from_a_plane_of_known_geometry() -> None:
    """The surface check (parallax.py): the points of a turning solid leave the best homography,
    those of a plane moved to mimic the same turn of the landmarks do not."""
    from safeface.capture.liveness import MIN_OFF_PLANE
    from safeface.capture.parallax import measure

    for seed in range(3):
        flat = measure(*_rendered(False, seed))
        solid = measure(*_rendered(True, seed))
        assert flat.measured and solid.measured, (flat, solid)
        assert flat.off_plane < MIN_OFF_PLANE / 4 and flat.residual_px < 0.5, flat
        assert solid.off_plane > 1.5 * MIN_OFF_PLANE and solid.residual_px > 1.5, solid
    # Frames in which the landmarks do not turn are not judged: a still head is as flat as a picture.
    frames, pts = _rendered(True, 0)
    assert not measure(frames, np.repeat(pts[:1], len(pts), axis=0)).measured


def test_challenge_moves_must_come_in_order() -> None:
    left_then_right = list(np.concatenate([np.linspace(0, 25, 10), np.linspace(25, -25, 20)]))
    track = pinhole_track(False, 0.0, 0, yaws=left_then_right)
    # The person's left: their nose moves towards the image's right.
    assert verify_moves(track, ("left", "right")).ok
    assert not verify_moves(track, ("right", "left")).ok
    assert verify_moves(track, ("right", "left"), mirrored=True).ok
    assert not verify_moves(pinhole_track(False, 0.0, 0, yaws=[0.0] * 30), ("left",)).ok


def test_a_challenge_nonce_can_be_typed_on_a_command_line() -> None:
    # A nonce starting with "-" would be read by the CLI as an option (`--challenge -abc` fails).
    nonces = {new_challenge(0.0).nonce for _ in range(2000)}
    assert len(nonces) == 2000
    assert all(len(n) >= 32 and n.isalnum() and n.isascii() and n[0] != "-" for n in nonces)


# -- evidence --------------------------------------------------------------------------------------
def _keys(seed: bytes = b"k" * 32) -> EvidenceKeys:
    return EvidenceKeys(seed)


def test_evidence_is_bound_and_sealed() -> None:
    keys = _keys()
    face = np.random.default_rng(0).normal(size=128).astype(np.float32)
    tok = keys.issue(nonce="n1", clip_sha256="ab" * 32, now=1000.0, decision="live", score=0.8,
                     challenge=("left", "right"), embedding=face)
    ev = keys.read(tok)
    assert ev.nonce == "n1" and ev.live and ev.expires_at == 1060.0
    assert keys.similarity(ev, face) > 0.999
    assert face.tobytes() not in tok.encode() and "face" in tok or True  # the face is sealed, not in clear
    head, payload, sig = tok.split(".")
    import base64
    import json as _json

    body = _json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    assert set(body) >= {"nonce", "clip_sha256", "issued_at", "expires_at", "face", "kid"}
    assert "embedding" not in body
    # A body edited by hand (a later expiry), a token of another workspace, garbage: refused.
    body["expires_at"] = 99999999.0
    forged = ".".join([head, base64.urlsafe_b64encode(_json.dumps(body).encode()).decode().rstrip("="), sig])
    for bad in (forged, _keys(b"z" * 32).issue(nonce="n1", clip_sha256="ab" * 32, now=1000.0, decision="live",
                                              score=0.8, challenge=(), embedding=face), "sflv1.x.y", ""):
        with pytest.raises(IntegrityError):
            keys.read(bad)


# -- PA-01 through the SDK -----------------------------------------------------------------------
def _liveness_ws(tmp_path: Path) -> Any:
    return make_workspace(tmp_path / "ws", edit=lambda r: r["purposes"]["demo"].__setitem__("liveness", "required"))


def _workspace_keys(ws: Any) -> EvidenceKeys:
    from safeface.hazmat.templates.keyring import PassphraseKeyring

    return EvidenceKeys(PassphraseKeyring.open(ws.keyring, PASSPHRASE).key("pseudonym"))


def _evidence_for(ws: Any, image: Path, now: dt.datetime, nonce: str = "nonce-1") -> str:
    """Evidence exactly as a passed check issues it (same keys, the face of `image`)."""
    vec = CachedPipeline().embed(image).embedding
    return _workspace_keys(ws).issue(nonce=nonce, clip_sha256="00" * 32, now=now.timestamp(), decision="live",
                                     score=0.9, challenge=("left", "right"), embedding=vec)


def _refused(sf: Any, fn: Any, words: str) -> None:
    with pytest.raises(PolicyViolation) as info:
        fn()
    assert info.value.rule == "PA-01" and words in info.value.message, info.value
    last = last_call(sf)
    assert (last.decision, last.rule) == ("refused", "PA-01")


def test_a_purpose_requiring_liveness_refuses_missing_stale_reused_and_other_face_evidence(tmp_path: Path) -> None:
    ws = _liveness_ws(tmp_path)
    imgs = images()
    clock = Clock()
    with open_sf(ws, clock=clock) as sf:
        t = consent(ws, "alice", now=clock.now - dt.timedelta(minutes=1))
        _refused(sf, lambda: sf.enroll(imgs / "obama.jpg", "alice", "demo", t), "run a liveness check")
        ev = _evidence_for(ws, imgs / "obama.jpg", clock.now)
        sf.enroll(imgs / "obama.jpg", "alice", "demo", t, liveness=ev)
        assert len(sf.records()) == 1
        # The same evidence again: its nonce is used.
        _refused(sf, lambda: sf.verify(imgs / "obama2.jpg", "alice", "demo", t, liveness=ev), "already used")
        # Fresh evidence of Obama, a probe of Biden: another face.
        ev2 = _evidence_for(ws, imgs / "obama.jpg", clock.now, nonce="nonce-2")
        _refused(sf, lambda: sf.identify(imgs / "biden.jpg", "demo", t, liveness=ev2), "another face")
        # Evidence older than its validity.
        ev3 = _evidence_for(ws, imgs / "obama.jpg", clock.now, nonce="nonce-3")
        clock.advance(seconds=61)
        _refused(sf, lambda: sf.verify(imgs / "obama2.jpg", "alice", "demo", t, liveness=ev3), "stale")
        # Fresh evidence of the right face verifies.
        ev4 = _evidence_for(ws, imgs / "obama.jpg", clock.now, nonce="nonce-4")
        assert sf.verify(imgs / "obama2.jpg", "alice", "demo", t, liveness=ev4).match
        # Evidence signed with another workspace's keys.
        other = EvidenceKeys(b"another workspace key material!!").issue(
            nonce="nonce-5", clip_sha256="00" * 32, now=clock.now.timestamp(), decision="live", score=0.9,
            challenge=(), embedding=CachedPipeline().embed(imgs / "obama.jpg").embedding)
        _refused(sf, lambda: sf.verify(imgs / "obama2.jpg", "alice", "demo", t, liveness=other), "not genuine")


def _enrolled_with_a_challenge(ws: Any, clock: Clock) -> tuple[str, str, Any]:
    """alice enrolled with liveness evidence, and a challenge issued: (consent, the used
    evidence, the challenge)."""
    with open_sf(ws, clock=clock) as sf:
        t = consent(ws, "alice", now=clock.now - dt.timedelta(minutes=1))
        ev = _evidence_for(ws, images() / "obama.jpg", clock.now)
        sf.enroll(images() / "obama.jpg", "alice", "demo", t, liveness=ev)
        return t, ev, sf.liveness_challenge()


def test_a_hand_edited_liveness_ledger_is_refused(tmp_path: Path) -> None:
    """A hostile operator edits policy.db: moves a used nonce's "until" into the past (so that the
    ledger would drop it and the evidence would work again), stretches a challenge's expiry, or
    forges a challenge row with the moves of their choice. Each row fails its MAC: IntegrityError,
    and the evidence still serves one call only."""
    import sqlite3

    ws = _liveness_ws(tmp_path)
    imgs = images()
    clock = Clock()
    blank = [np.zeros((48, 64, 3), np.uint8)] * 10
    t, ev, ch = _enrolled_with_a_challenge(ws, clock)
    db = sqlite3.connect(ws.policy)
    db.execute("UPDATE used_nonces SET until = 0")
    db.execute("UPDATE challenges SET expires_at = expires_at + 3600 WHERE nonce = ?", (ch.nonce,))
    row = db.execute("SELECT issued_at, expires_at, mac FROM challenges WHERE nonce = ?", (ch.nonce,)).fetchone()
    db.execute("INSERT INTO challenges VALUES ('forged-nonce', 'left', ?, ?, ?)", row)  # a real row's MAC
    db.commit()
    db.close()
    with open_sf(ws, clock=clock) as sf:
        with pytest.raises(IntegrityError, match="edited by hand"):
            sf.verify(imgs / "obama2.jpg", "alice", "demo", t, liveness=ev)
        for nonce in (ch.nonce, "forged-nonce"):
            with pytest.raises(IntegrityError, match="edited by hand"):
                sf.liveness_check(blank, nonce)
        assert len(sf.records()) == 1


@pytest.mark.parametrize("edit", ["UPDATE used_nonces SET until = 'soon'", "UPDATE used_nonces SET until = x'00'",
                                  "UPDATE challenges SET expires_at = 'later'", "UPDATE challenges SET issued_at = 'x'"])
def test_a_time_edited_into_text_in_the_liveness_ledger_is_tampering(tmp_path: Path, edit: str) -> None:
    """A time in policy.db replaced by text or a blob is named as an edit (IntegrityError), not a
    crash of the call with a bare ValueError that leaves no audit trail."""
    import sqlite3

    ws = _liveness_ws(tmp_path)
    imgs = images()
    clock = Clock()
    t, ev, ch = _enrolled_with_a_challenge(ws, clock)
    db = sqlite3.connect(ws.policy)
    db.execute(edit)
    db.commit()
    db.close()
    with open_sf(ws, clock=clock) as sf:
        with pytest.raises(IntegrityError, match="edited by hand"):
            if "challenges" in edit:
                sf.liveness_check([np.zeros((48, 64, 3), np.uint8)] * 10, ch.nonce)
            else:
                sf.verify(imgs / "obama2.jpg", "alice", "demo", t, liveness=ev)
        assert len(sf.records()) == 1


def _video(w: int, h: int, n: int, rate: int, same_time: bool = False, seed: int | None = None) -> bytes:
    """An encoded clip of n grey frames (every frame at time 0 with `same_time`; frames of
    random noise drawn from `seed` when one is given)."""
    import io

    import av

    rng = np.random.default_rng(seed) if seed is not None else None
    buf = io.BytesIO()
    with av.open(buf, "w", format="matroska" if same_time else "mp4") as c:
        stream = c.add_stream("libx264", rate=rate)
        stream.width, stream.height, stream.pix_fmt = w, h, "yuv420p"
        frame = av.VideoFrame.from_ndarray(np.full((h, w, 3), 90, np.uint8), format="rgb24")
        for i in range(n):
            if rng is not None:
                frame = av.VideoFrame.from_ndarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8), format="rgb24")
            frame.pts = 0 if same_time else i
            for packet in stream.encode(frame):
                c.mux(packet)
        for packet in stream.encode():
            c.mux(packet)
    return buf.getvalue()


@pytest.mark.parametrize("case", ["1000 fps", "one time for every frame", "a tall frame", "frames change size",
                                  "a frame over 4K", "a frame larger than its header"])
def test_a_small_clip_cannot_take_unbounded_memory_or_crash_the_check(case: str, tmp_path: Path) -> None:
    """A clip of a few kilobytes that decodes to thousands of frames (1000 fps, or every frame at
    one time, so the 5 s limit never trips), frames 16 times taller than wide, frames that change
    size mid-clip, frames over 4K (decoded whole before they are reduced), a header of 64x64 over
    a frame of 51 megapixels: a typed refusal, or at most a few hundred frames each within 640 x
    960, never gigabytes of frames or a raw OpenCV error."""
    from safeface.capture.clip import MAX_HEIGHT, MAX_WIDTH, read_clip
    from safeface.capture.liveness import check_liveness
    from safeface.errors import InvalidArgument

    if case == "1000 fps":
        with pytest.raises(InvalidArgument, match="more than 1200 frames"):
            read_clip(_video(64, 48, 1500, 1000))
    elif case == "one time for every frame":
        with pytest.raises(InvalidArgument, match="more than 1200 frames"):
            read_clip(_video(64, 48, 1300, 30, same_time=True))
        with pytest.raises(InvalidArgument, match="1 frame"):  # one time: one frame kept, not 200
            read_clip(_video(64, 48, 200, 30, same_time=True))
    elif case == "a frame over 4K":  # a flat 4100x2200 clip is a few kilobytes, each frame 13 MB decoded
        with pytest.raises(InvalidArgument, match="4100x2200 pixels.*at most 8847360 pixels"):
            read_clip(_video(4100, 2200, 2, 10))
    elif case == "a frame larger than its header":  # a second sequence header: 64x64, then 8000x6400
        from video_fixtures import header_lies_video

        src = header_lies_video(tmp_path / "lies.avi", (64, 64), (8000, 6400))
        with pytest.raises(ImageError, match="not a readable video"):
            read_clip(src.read_bytes())
    elif case == "a tall frame":
        clip = read_clip(_video(128, 2048, 20, 10))
        assert all(f.shape[0] <= MAX_HEIGHT and f.shape[1] <= MAX_WIDTH for f in clip.frames)
        assert len(clip.frames) == 20
    else:
        frames = [np.zeros((360, 640, 3) if i < 15 else (180, 320, 3), np.uint8) for i in range(30)]
        with pytest.raises(InvalidArgument, match="one resolution"):
            check_liveness(frames, fps=15)


@pytest.mark.parametrize("case", ["a FIFO named 0.jpg", "/dev/zero named 0.jpg", "a folder named 0.jpg",
                                  "a link loop named 0.jpg", "a clip linked to /proc/self/pagemap"])
def test_a_clip_or_frame_that_is_no_regular_file_is_refused_unread(case: str, tmp_path: Path) -> None:
    """The frames of a folder were read with read_bytes: a FIFO named 0.jpg kept the check
    waiting for ever, a link to /dev/zero was read until memory ran out, a folder or a link loop
    named 0.jpg gave a raw OSError, and a clip linked to /proc/self/pagemap (a "regular" file of
    size 0 that reads 256 GiB) another. Each is a typed refusal now, read no further than the
    size limits, and a check in a workspace records the failure."""
    import os
    import threading

    from safeface.capture.clip import read_clip
    from safeface.errors import InvalidArgument

    frames = tmp_path / "frames"
    frames.mkdir()
    target: Path = frames
    if case.startswith("a FIFO"):
        os.mkfifo(frames / "0.jpg")
    elif case.startswith("/dev/zero"):
        (frames / "0.jpg").symlink_to("/dev/zero")
    elif case.startswith("a folder"):
        (frames / "0.jpg").mkdir()
    elif case.startswith("a link loop"):
        (frames / "0.jpg").symlink_to(frames / "0.jpg")
    else:
        target = tmp_path / "clip.mp4"
        target.symlink_to("/proc/self/pagemap")
    outcome: list[BaseException] = []

    def check() -> None:
        try:
            read_clip(target)
        except BaseException as exc:  # noqa: BLE001 - what it raised is the result
            outcome.append(exc)

    reader = threading.Thread(target=check, daemon=True)
    reader.start()
    reader.join(60)
    assert not reader.is_alive(), "the clip is still being read"
    assert len(outcome) == 1 and isinstance(outcome[0], (ImageError, InvalidArgument)), outcome
    if case.startswith("a folder"):
        ws = _liveness_ws(tmp_path)
        with open_sf(ws) as sf:
            ch = sf.liveness_challenge()
            with pytest.raises(ImageError, match="not a regular file"):
                sf.liveness_check(frames, ch.nonce)
            assert last_call(sf).operation == "liveness" and last_call(sf).decision == "failed"


def test_a_refusal_for_another_reason_does_not_use_up_the_evidence(tmp_path: Path) -> None:
    ws = _liveness_ws(tmp_path)
    imgs = images()
    with open_sf(ws) as sf:
        ev = _evidence_for(ws, imgs / "obama.jpg", dt.datetime.now(dt.timezone.utc))
        with pytest.raises(PolicyViolation) as info:
            sf.enroll(imgs / "obama.jpg", "alice", "demo", None, liveness=ev)  # no consent
        assert info.value.rule != "PA-01"
        sf.enroll(imgs / "obama.jpg", "alice", "demo", consent(ws, "alice"), liveness=ev)


def _waved_print(photo: Path, seed: int = 0) -> list[np.ndarray]:
    from safeface.evaluate.pad import waved_attack
    from safeface.imageio import load_image

    frames = waved_attack(load_image(photo), "print", seed=seed, seconds=2.0, max_turn=35.0)
    return frames[::2]  # 15 fps


def test_a_waved_print_is_refused_and_no_evidence_is_issued(tmp_path: Path) -> None:
    ws = _liveness_ws(tmp_path)
    with open_sf(ws) as sf:
        ch = sf.liveness_challenge(steps=("left", "right"))
        result = sf.liveness_check(_waved_print(images() / "obama.jpg"), ch.nonce, fps=15)
        assert not result.live and result.evidence is None and result.decision in ("attack", "inconclusive")
        last = last_call(sf)
        assert (last.operation, last.decision, last.rule) == ("liveness", "refused", "PA-01")
        assert result.clip_sha256[:16] in (last.note or "")
        # The challenge was answered (by the print): it cannot be answered again.
        another = _waved_print(images() / "obama.jpg", 1)
        with pytest.raises(PolicyViolation, match="already answered"):
            sf.liveness_check(another, ch.nonce, fps=15)
        with pytest.raises(PolicyViolation, match="no such challenge"):
            sf.liveness_check(another, "made-up", fps=15)
    # Nothing of the clip was written into the workspace.
    sizes = sum(p.stat().st_size for p in Path(ws.root).rglob("*") if p.is_file())
    assert sizes < 5_000_000


def test_a_challenge_expires(tmp_path: Path) -> None:
    ws = _liveness_ws(tmp_path)
    clock = Clock()
    with open_sf(ws, clock=clock) as sf:
        ch = sf.liveness_challenge()
        assert set(ch.steps) <= {"left", "right"} and len(ch.steps) >= 2 and len(ch.nonce) >= 20
        clock.advance(seconds=31)
        with pytest.raises(PolicyViolation, match="expired"):
            sf.liveness_check([np.zeros((48, 64, 3), np.uint8)] * 10, ch.nonce)


def _hamilton(start: int, n: int = 60) -> list[np.ndarray]:
    import av

    clip = datasets() / "face_recognition" / "examples" / "short_hamilton_clip.mp4"
    if not clip.is_file():
        pytest.skip("the Hamilton example clip is absent")
    with av.open(str(clip)) as c:
        frames = [f.to_ndarray(format="rgb24") for i, f in zip(range(start + n), c.decode(video=0))]
    return frames[start:start + n]


@pytest.mark.parametrize("attack", ["restore-older-copy", "delete-used-row"])
def test_used_evidence_stays_used_when_the_policy_state_forgets_it(tmp_path: Path, attack: str) -> None:
    """The host's operator puts back a copy of policy.db from before the evidence was used (or
    deletes its used-nonce row) and replays the evidence within its validity: the audit chain
    still names the call it let in, so the replay is refused."""
    import shutil
    import sqlite3

    ws = _liveness_ws(tmp_path)
    imgs = images()
    clock = Clock()
    with open_sf(ws, clock=clock) as sf:
        t = consent(ws, "alice", now=clock.now - dt.timedelta(minutes=1))
        sf.audit_entries()  # the policy state exists before the copy is taken
    older = tmp_path / "policy-before.db"
    shutil.copyfile(ws.policy, older)
    with open_sf(ws, clock=clock) as sf:
        ev = _evidence_for(ws, imgs / "obama.jpg", clock.now)
        sf.enroll(imgs / "obama.jpg", "alice", "demo", t, liveness=ev)
    if attack == "restore-older-copy":
        shutil.copyfile(older, ws.policy)
    else:
        con = sqlite3.connect(str(ws.policy))
        assert con.execute("DELETE FROM used_nonces").rowcount >= 1
        con.commit()
        con.close()
    with open_sf(ws, clock=clock) as sf:
        _refused(sf, lambda: sf.verify(imgs / "obama2.jpg", "alice", "demo", t, liveness=ev), "the audit log records")
        # Fresh evidence still lets the call in: only the replay is refused.
        ev2 = _evidence_for(ws, imgs / "obama.jpg", clock.now, nonce="nonce-fresh")
        assert sf.verify(imgs / "obama2.jpg", "alice", "demo", t, liveness=ev2).match


def test_evidence_spent_by_a_call_still_working_is_not_spent_again_when_its_row_is_deleted(tmp_path: Path) -> None:
    """Two app processes hold one liveness evidence. The first call is judged and still working
    (its own entry comes when it ends) when someone with the file deletes the used-nonce row and
    the second call arrives: the audit chain already records the spending (appended where the
    first call was judged, in the chain's write transaction), so the second is refused."""
    import sqlite3
    import threading

    from safeface.sdk import SafeFace

    ws = _liveness_ws(tmp_path)
    imgs = images()
    t = consent(ws, "alice")
    with open_sf(ws) as sf:
        sf.enroll(imgs / "obama.jpg", "alice", "demo", t, liveness=_evidence_for(ws, imgs / "obama.jpg", Clock().now,
                                                                               nonce="enrol"))
    entered, go = threading.Event(), threading.Event()

    class SlowPipe(CachedPipeline):
        def embed(self, image: Any, *, count_all: bool = False) -> Any:
            if threading.current_thread().name == "first":
                entered.set()
                go.wait(30)
            return super().embed(image, count_all=count_all)

    ev = _evidence_for(ws, imgs / "obama.jpg", dt.datetime.now(dt.timezone.utc), nonce="one-pass")
    outcomes: list[Any] = []

    def first() -> None:
        with SafeFace.open(ws.root, PASSPHRASE, pipeline=SlowPipe()) as a:
            try:
                outcomes.append(a.verify(imgs / "obama2.jpg", "alice", "demo", t, liveness=ev).match)
            except PolicyViolation as exc:
                outcomes.append(exc)

    th = threading.Thread(target=first, name="first")
    th.start()
    assert entered.wait(60)  # judged, evidence spent, still working
    with sqlite3.connect(str(ws.policy)) as db:
        assert db.execute("DELETE FROM used_nonces WHERE nonce = 'evidence:one-pass'").rowcount == 1
    with open_sf(ws) as b:
        _refused(b, lambda: b.verify(imgs / "obama2.jpg", "alice", "demo", t, liveness=ev), "the audit log records")
    go.set()
    th.join(60)
    assert outcomes == [True]
    with open_sf(ws) as sf:
        from safeface.sdk.nonces import nonce_ref

        named = [(e.operation, e.decision) for e in sf.audit_entries() if nonce_ref("one-pass") in (e.note or "")]
        assert named.count(("verify", "allowed")) == 1 and ("liveness-spent", "allowed") in named
        # The evidence was made with the keys, not by a check: the audit names it
        # (test_liveness_audit.py), and nothing else.
        report = sf.verify_store()
        assert report.problems and all("that no liveness check in this log issued" in p for p in report.problems)


@pytest.mark.slow
def test_real_head_motion_yields_evidence_that_lets_the_same_face_in(tmp_path: Path) -> None:
    """End to end on real footage: a performer turning to his right answers a "right" challenge;
    the evidence lets a frame of him be enrolled, once."""
    ws = _liveness_ws(tmp_path)
    frames = _hamilton(84)  # 2.8-4.8 s, inside one shot (the clip cuts to the audience at 7.04 s)
    with open_sf(ws) as sf:
        ch = sf.liveness_challenge(steps=("right",))
        result = sf.liveness_check(frames, ch.nonce, fps=29.97)
        assert result.live and result.evidence, result.checks
        assert result.checks["replay"]["border_share"] <= 0.4  # a stage, not a frame around the face
        t = consent(ws, "lin")
        probe = frames[4]
        sf.enroll(probe, "lin", "demo", t, liveness=result.evidence)
        check, enrol = [e for e in sf.audit_entries() if e.operation in ("liveness", "enroll")][-2:]
        ref = (check.note or "").rsplit("liveness ", 1)[1]
        assert check.decision == "allowed" and enrol.decision == "allowed" and ref in (enrol.note or "")
        sf.audit_verify()  # the store still matches the log
        with pytest.raises(PolicyViolation, match="already used"):
            sf.verify(probe, "lin", "demo", t, liveness=result.evidence)
        assert dataclasses.asdict(sf.records()[0])  # one row, described without any image


def _photo_over(frame: np.ndarray, photo: np.ndarray, photo_box: Any, box: Any, k: int) -> np.ndarray:
    """`frame` with `photo` scaled so its face covers `box`, shifted a pixel by k, with noise."""
    import cv2

    x1, y1, x2, _ = [float(v) for v in photo_box]
    s = (box[2] - box[0]) / (x2 - x1)
    scaled = cv2.resize(photo, None, fx=s, fy=s, interpolation=cv2.INTER_AREA)
    dx, dy = int(box[0] - x1 * s) + (k % 3) - 1, int(box[1] - y1 * s) + (k % 2)
    out = frame.copy()
    h, w = out.shape[:2]
    sx, sy = max(0, -dx), max(0, -dy)
    ex, ey = min(scaled.shape[1], w - dx), min(scaled.shape[0], h - dy)
    out[dy + sy:dy + ey, dx + sx:dx + ex] = scaled[sy:ey, sx:ex]
    noise = np.random.default_rng(k).integers(-3, 4, out.shape)
    return np.clip(out.astype(np.int16) + noise, 0, 255).astype(np.uint8)


@pytest.fixture(scope="module")
def obama_subject() -> tuple[np.ndarray, Any]:
    """obama.jpg and the subject's face the pipeline finds in it: the print's face, found once for
    the tests that hold up or mask that print."""
    from safeface.hazmat.vision import Pipeline, get_engine, pick_subject
    from safeface.imageio import load_image

    photo = load_image(images() / "obama.jpg")
    face = pick_subject(Pipeline(get_engine("onnx")).detect(photo), photo.shape)
    assert face is not None
    photo.setflags(write=False)  # shared: a test that drew on it in place would fail, not leak
    return photo, face


@pytest.mark.slow
def test_a_photo_shown_frontally_while_someone_else_turns_yields_no_evidence(tmp_path: Path,
                                                                           obama_subject: tuple[np.ndarray, Any]) -> None:
    """A thief holds a print of the victim over an accomplice's face for the first third of a
    second, where the face is most frontal, and the accomplice makes the turns asked. The moves
    and the head's depth are the accomplice's; the evidence must not carry the victim's face."""
    from safeface.hazmat.vision import Pipeline, get_engine, pick_subject

    ws = _liveness_ws(tmp_path)
    live = _hamilton(84)
    photo, victim = obama_subject
    performer = pick_subject(Pipeline(get_engine("onnx")).detect(live[0]), live[0].shape)
    assert performer is not None
    clip = [_photo_over(live[0], photo, victim.box, performer.box, k) for k in range(10)] + live
    with open_sf(ws) as sf:
        # The print faces the camera and the performer starts turned about 15 degrees to his left,
        # so the clip shows a turn to the left before the one to the right; a challenge must be
        # answered by exactly its turns, so the thief is given the one this clip answers.
        ch = sf.liveness_challenge(steps=("left", "right"))
        result = sf.liveness_check(clip, ch.nonce, fps=29.97)
        assert result.evidence is None and not result.live, result.checks
        assert result.decision == "attack" and result.checks["identity"]["consistent"] is False, result.checks
        assert result.checks["challenge"]["ok"]  # the turns were made: only the face gave it away
        last = [e for e in sf.audit_entries() if e.operation == "liveness"][-1]
        assert last.decision == "refused" and (last.note or "").startswith("attack")
        # The accomplice's own clip still passes: the check refuses the swap, not the motion.
        ch = sf.liveness_challenge(steps=("right",))
        honest = sf.liveness_check(live, ch.nonce, fps=29.97)
        assert honest.live and honest.evidence and honest.checks["identity"]["consistent"], honest.checks


@pytest.fixture(scope="module")
def bare_performer() -> list[tuple[np.ndarray, Any]]:
    """The shot above (frames 84-143), each frame with the performer's bare face: the faces a mask
    is drawn on, found once for every kind of mask."""
    from safeface.hazmat.vision import get_engine, pick_subject

    engine = get_engine("onnx")
    shot = []
    for f in _hamilton(84):
        # HOG, the pipeline's first step, gives the pipeline's own face in 56 of the 60 frames,
        # MMOD (90 px faces: no upsampling) the 4 others, in about 60% of the pipeline's time
        # (its search for masked faces beside a found one is no use on bare frames).
        face = pick_subject(engine.detect(f, "hog", 1) or engine.detect(f, "mmod", 0), f.shape)
        assert face is not None
        f.setflags(write=False)  # shared by both kinds: a mask drawn in place would fail, not leak
        shot.append((f, face))
    return shot


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["n95", "gaiter"])
def test_a_masked_performers_real_head_motion_still_reads_live(kind: str,
                                                               bare_performer: list[tuple[np.ndarray, Any]]) -> None:
    """A mask hides the nose and mouth that HOG looks for: the tracker falls back to our
    masked-face detector, so a masked person's turn is followed and judged like a bare one's."""
    from safeface.capture.liveness import check_liveness
    from safeface.hazmat.vision import get_engine
    from safeface.hazmat.vision.masks import draw_mask

    # The same shot as above; one mask (same seed) on every frame.
    frames = [draw_mask(f, face.landmarks, face.box, kind, seed=3) for f, face in bare_performer]
    assert get_engine("onnx").detect(frames[0], "hog", 0) == []  # HOG alone loses the masked face
    r = check_liveness(frames, fps=29.97)
    assert r.checks["acquired"] and r.checks["tracked"] >= 25, r.checks
    assert r.live, r.checks


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["n95", "gaiter"])
def test_a_waved_print_of_a_masked_face_is_still_refused(kind: str, obama_subject: tuple[np.ndarray, Any]) -> None:
    """The masked-face fallback follows a masked face that HOG loses, in a print too: the print is
    followed, and refused for how it moves, never let through for being hard to find."""
    from safeface.capture.liveness import check_liveness
    from safeface.evaluate.pad import waved_attack
    from safeface.hazmat.vision.masks import draw_mask

    photo, face = obama_subject
    masked = draw_mask(photo, face.landmarks, face.box, kind, seed=3)
    r = check_liveness(waved_attack(masked, "print", seed=0, seconds=2.0, max_turn=35.0)[::2], fps=15)
    assert r.checks["acquired"], r.checks
    assert not r.live and r.decision in ("attack", "inconclusive"), r.checks


# -- the optional PAD model ------------------------------------------------------------------------
def _pad_onnx(path: Path, bias_live: float, size: int = 16) -> str:
    """A tiny ONNX classifier (2 classes: attack, live) whose live logit grows with brightness."""
    import hashlib

    import onnx
    from onnx import TensorProto, helper, numpy_helper

    w = np.zeros((3 * size * size, 2), np.float32)
    w[:, 1] = 4.0 / (3 * size * size)
    nodes = [helper.make_node("Flatten", ["x"], ["f"], axis=1), helper.make_node("MatMul", ["f", "w"], ["m"]),
             helper.make_node("Add", ["m", "b"], ["y"])]
    graph = helper.make_graph(nodes, "pad", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [None, 3, size, size])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [None, 2])],
                              [numpy_helper.from_array(w, "w"),
                               numpy_helper.from_array(np.array([0.0, bias_live], np.float32), "b")])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    path.write_bytes(model.SerializeToString())
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_a_pad_model_is_pinned_licensed_and_scores_faces(tmp_path: Path) -> None:
    from safeface.capture.pad_model import PadModel, PadModelSpec
    from safeface.errors import ConfigError, ModelError

    sha = _pad_onnx(tmp_path / "pad.onnx", -2.0)
    spec = PadModelSpec.from_mapping({"file": "pad.onnx", "sha256": sha, "licence": "test-only", "input_size": 16},
                                     tmp_path)
    model = PadModel(spec)
    box = (10.0, 10.0, 40.0, 40.0)
    bright = model.live_probability([np.full((64, 64, 3), 250, np.uint8)], [box])
    dark = model.live_probability([np.full((64, 64, 3), 5, np.uint8)], [box])
    assert 0.0 < dark < 0.5 < bright < 1.0
    for bad in ({"file": "pad.onnx", "sha256": sha}, {"file": "pad.onnx", "licence": "x"},
                {"file": "pad.onnx", "sha256": sha, "licence": "x", "threshold": 2},
                {"file": "pad.onnx", "sha256": sha, "licence": "x", "colour": "red"}):
        with pytest.raises(ConfigError):
            PadModelSpec.from_mapping(bad, tmp_path)
    # The file swapped after it was pinned.
    _pad_onnx(tmp_path / "pad.onnx", +2.0)
    with pytest.raises(ModelError, match="pinned SHA-256"):
        PadModel(spec)


@pytest.mark.slow
def test_a_pad_model_can_veto_a_live_clip_but_never_make_one(tmp_path: Path) -> None:
    sha_veto = _pad_onnx(tmp_path / "veto.onnx", -50.0)
    ws = make_workspace(tmp_path / "ws", edit=lambda r: r.update(
        {"liveness_model": {"file": str(tmp_path / "veto.onnx"), "sha256": sha_veto, "licence": "test-only",
                            "input_size": 16}}))
    frames = _hamilton(84)  # 2.8-4.8 s, inside one shot (the clip cuts to the audience at 7.04 s)
    with open_sf(ws) as sf:
        ch = sf.liveness_challenge(steps=("right",))
        r = sf.liveness_check(frames, ch.nonce, fps=29.97)
    assert r.decision == "attack" and r.evidence is None and r.checks["pad_model"]["live_probability"] < 0.01
    assert r.checks["pad_model"]["licence"] == "test-only"
    sha_pass = _pad_onnx(tmp_path / "pass.onnx", 50.0)
    ws2 = make_workspace(tmp_path / "ws2", edit=lambda r: r.update(
        {"liveness_model": {"file": str(tmp_path / "pass.onnx"), "sha256": sha_pass, "licence": "test-only",
                            "input_size": 16}}))
    with open_sf(ws2) as sf:
        ch = sf.liveness_challenge(steps=("left", "right"))
        r = sf.liveness_check(_waved_print(images() / "obama.jpg"), ch.nonce, fps=15)
    assert not r.live and r.evidence is None


def test_two_processes_racing_with_one_evidence_let_one_call_through(tmp_path: Path) -> None:
    """Two SafeFace objects on one workspace (as two app processes) spend the same evidence at the
    same moment: the nonce ledger's single INSERT lets exactly one of them through."""
    import threading

    ws = _liveness_ws(tmp_path)
    imgs = images()
    with open_sf(ws) as sf:
        sf.enroll(imgs / "obama.jpg", "alice", "demo", consent(ws, "alice"),
                  liveness=_evidence_for(ws, imgs / "obama.jpg", dt.datetime.now(dt.timezone.utc), nonce="enrol"))
    ev = _evidence_for(ws, imgs / "obama.jpg", dt.datetime.now(dt.timezone.utc), nonce="shared")
    t = consent(ws, "alice")
    outcomes: list[str] = []
    barrier = threading.Barrier(2)

    def call() -> None:
        with open_sf(ws) as sf:
            barrier.wait()
            try:
                sf.verify(imgs / "obama2.jpg", "alice", "demo", t, liveness=ev)
                outcomes.append("allowed")
            except PolicyViolation as exc:
                outcomes.append(exc.rule)

    threads = [threading.Thread(target=call) for _ in range(2)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    assert sorted(outcomes) == ["PA-01", "allowed"]


def test_replay_cues_see_a_print_margin_and_frozen_frames() -> None:
    from safeface.capture.replay import replay_cues

    frames = _waved_print(images() / "obama.jpg", seed=2)
    boxes = []
    from policy_support import CachedPipeline as _P

    engine = _P().engine
    for f in frames:
        found = engine.detect(f, "hog", 0)
        boxes.append(found[0].box if found else (270.0, 150.0, 370.0, 250.0))
    cues = replay_cues(frames, boxes)
    assert cues.border_share >= 0.6 and not cues.frozen
    still = replay_cues([frames[0]] * 10, [boxes[0]] * 10)
    assert still.frozen and still.flagged


def test_frozen_frames_are_told_by_how_much_changes_not_by_exact_repeats() -> None:
    """A held frame that a re-encoding touched (a tenth of its pixels off by one grey level) is
    still the same picture; a sensor's noise (every pixel -1, 0 or +1 afresh in each frame,
    about 0.9 levels apart on average) is a new frame every time, however still the scene."""
    from safeface.capture.replay import replay_cues

    rng = np.random.default_rng(7)
    base = rng.integers(40, 200, (200, 200), dtype=np.int16)
    box = (50.0, 50.0, 150.0, 150.0)

    def frame(noise: np.ndarray) -> np.ndarray:
        return np.repeat((base + noise).astype(np.uint8)[..., None], 3, axis=2)

    def touched() -> np.ndarray:
        return np.where(rng.random(base.shape) < 0.1, rng.choice([-1, 1], base.shape), 0)

    held = replay_cues([frame(touched()) for _ in range(10)], [box] * 10)
    assert held.frozen_share == 1.0 and held.frozen
    live = replay_cues([frame(rng.integers(-1, 2, base.shape)) for _ in range(10)], [box] * 10)
    assert live.frozen_share == 0.0 and not live.frozen


def test_a_ledger_from_before_its_rows_were_authenticated_is_adopted_once(tmp_path: Path) -> None:
    """A policy.db written before the liveness rows carried a MAC: its rows are taken as they are
    when the column is added (so a used nonce stays used); a MAC removed later is an edit."""
    import sqlite3

    from safeface.workspace.state import PolicyState

    old = tmp_path / "policy.db"
    db = sqlite3.connect(old)
    db.execute("CREATE TABLE used_nonces (nonce TEXT PRIMARY KEY, until REAL NOT NULL)")
    db.execute("CREATE TABLE challenges (nonce TEXT PRIMARY KEY, steps TEXT NOT NULL, issued_at REAL NOT NULL, "
               "expires_at REAL NOT NULL)")
    until = dt.datetime.now(dt.timezone.utc) + dt.timedelta(minutes=5)
    db.execute("INSERT INTO used_nonces VALUES ('evidence:n-1', ?)", (until.timestamp(),))
    db.commit()
    db.close()
    key = b"k" * 32
    state = PolicyState(old, key)
    assert state.use_nonce("evidence:n-1", until) is False  # still used
    assert state.use_nonce("evidence:n-2", until) is True
    state.close()
    db = sqlite3.connect(old)
    db.execute("UPDATE used_nonces SET mac = NULL, until = 0")
    db.commit()
    db.close()
    state = PolicyState(old, key)
    with pytest.raises(IntegrityError, match="edited by hand"):
        state.use_nonce("evidence:n-1", until)
    state.close()


def test_enrol_and_verify_refuse_liveness_evidence_of_another_face(tmp_path: Path) -> None:
    """The live person must be the one presented, at enrolment and verification as at identify:
    evidence made on one face lets no other face's photo be enrolled or verified."""
    ws = _liveness_ws(tmp_path)
    imgs = images()
    clock = Clock()
    with open_sf(ws, clock=clock) as sf:
        t = consent(ws, "alice", now=clock.now - dt.timedelta(minutes=1))
        ev = _evidence_for(ws, imgs / "obama.jpg", clock.now, "n-enrol-other")
        _refused(sf, lambda: sf.enroll(imgs / "biden.jpg", "alice", "demo", t, liveness=ev), "another face")
        assert not sf.records()
        sf.enroll(imgs / "obama.jpg", "alice", "demo", t, liveness=_evidence_for(ws, imgs / "obama.jpg", clock.now,
                                                                                "n-enrol"))
        ev = _evidence_for(ws, imgs / "obama.jpg", clock.now, "n-verify-other")
        _refused(sf, lambda: sf.verify(imgs / "biden.jpg", "alice", "demo", t, liveness=ev), "another face")


def test_liveness_evidence_dated_ahead_of_the_clock_is_refused(tmp_path: Path) -> None:
    """Evidence issued by a handle whose clock ran an hour ahead would be spendable for that
    whole hour: refused as from the future."""
    ws = _liveness_ws(tmp_path)
    clock = Clock()
    ev = _evidence_for(ws, images() / "obama.jpg", clock.now + dt.timedelta(hours=1), "n-future")
    with open_sf(ws, clock=clock) as sf:
        t = consent(ws, "alice", now=clock.now - dt.timedelta(minutes=1))
        _refused(sf, lambda: sf.enroll(images() / "obama.jpg", "alice", "demo", t, liveness=ev), "future")
        assert not sf.records()


def test_a_report_only_role_gets_no_liveness_challenge(tmp_path: Path) -> None:
    """A challenge belongs to an enrolment or a match: the demo's report-only "auditor" is refused
    one, and the refusal is recorded."""
    ws = make_workspace(tmp_path / "ws")
    with open_sf(ws, role="auditor") as sf:
        with pytest.raises(PolicyViolation, match="may not enroll, verify or identify"):
            sf.liveness_challenge()
    with open_sf(ws) as sf:
        assert [e for e in sf.audit_entries() if e.operation == "liveness-challenge"][-1].decision == "refused"


@pytest.mark.parametrize("decision", ["attack", "inconclusive"])
def test_evidence_of_a_check_that_found_no_live_person_is_refused(tmp_path: Path, decision: str) -> None:
    """Evidence under the workspace's own keys that records a failed check lets no one in."""
    ws = _liveness_ws(tmp_path)
    clock = Clock()
    vec = CachedPipeline().embed(images() / "obama.jpg").embedding
    ev = _workspace_keys(ws).issue(nonce="n-" + decision, clip_sha256="00" * 32, now=clock.now.timestamp(),
                                   decision=decision, score=0.1, challenge=("left", "right"), embedding=vec)
    with open_sf(ws, clock=clock) as sf:
        t = consent(ws, "alice", now=clock.now - dt.timedelta(minutes=1))
        _refused(sf, lambda: sf.enroll(images() / "obama.jpg", "alice", "demo", t, liveness=ev), "live person")
        assert not sf.records()


def test_a_clip_file_over_the_size_limit_is_refused_by_its_size(tmp_path: Path) -> None:
    """Read no further than one byte past the limit, and refused: not decoded as if the first
    64 MiB were the clip."""
    from safeface.capture.clip import MAX_BYTES, read_clip
    from safeface.errors import InvalidArgument

    big = tmp_path / "clip.mp4"
    with open(big, "wb") as fh:
        fh.truncate(MAX_BYTES + 1)  # sparse: no disk used
    with pytest.raises(InvalidArgument, match="larger than"):
        read_clip(big)


def test_a_frame_folders_digest_names_its_frames_bytes_and_order(tmp_path: Path) -> None:
    """The evidence names the clip by its SHA-256; for a folder of frames, that of each frame's
    file in name order. Another folder of the same files gives the same digest; one frame
    re-encoded, or two frames' names swapped, gives another."""
    import shutil

    import numpy as np
    from PIL import Image

    from safeface.capture.clip import read_clip

    rng = np.random.default_rng(7)
    first = tmp_path / "first"
    first.mkdir()
    for i in range(3):
        Image.fromarray(rng.integers(0, 256, (48, 64, 3), dtype=np.uint8)).save(first / f"{i}.png")
    digest = read_clip(first).sha256
    assert digest == read_clip(shutil.copytree(first, tmp_path / "copy")).sha256
    reencoded = shutil.copytree(first, tmp_path / "reencoded")
    Image.open(first / "1.png").save(reencoded / "1.png", compress_level=1)  # the same pixels, other bytes
    swapped = shutil.copytree(first, tmp_path / "swapped")
    (swapped / "0.png").rename(swapped / "tmp.png")
    (swapped / "2.png").rename(swapped / "0.png")
    (swapped / "tmp.png").rename(swapped / "2.png")
    assert len({digest, read_clip(reencoded).sha256, read_clip(swapped).sha256}) == 3


def yaw_points(yaw_deg: float, at: float = 150.0) -> np.ndarray:
    """The 5 points of a face with eyes 100 px apart whose nose base sits where quality.pose_of
    reads `yaw_deg` of turn."""
    import math

    along = 0.35 * math.tan(math.radians(yaw_deg))
    return np.array([[-75, 0], [-25, 0], [25, 0], [75, 0], [100 * along, 74]], np.float64) + at


def test_a_real_turning_video_replayed_at_a_third_of_its_rate_is_an_attack_by_its_frozen_frames() -> None:
    """A video of the person turning, shown with each frame held three times: the frozen-frames
    cue decides it (a still picture is refused anyway, for not turning)."""
    from safeface.capture.liveness import check_liveness

    live = _hamilton(84)
    replay = [live[(i // 3) * 3] for i in range(len(live))]
    r = check_liveness(replay, fps=15.0)
    assert r.checks["replay"]["frozen"], r.checks
    assert r.decision == "attack" and not r.live, (r.decision, r.checks)


def test_a_real_turning_video_replayed_on_a_screen_is_an_attack_by_its_pixel_grid() -> None:
    from safeface.capture.liveness import check_liveness

    live = _hamilton(84)
    h, w = live[0].shape[:2]
    yy, xx = np.mgrid[:h, :w]
    grid = (1 - 0.3 * (((xx % 3) == 0) | ((yy % 3) == 0))).astype(np.float32)[..., None]  # dark lines every 3 px
    rng = np.random.default_rng(0)
    screen = [np.clip(f * grid + rng.normal(0, 2, f.shape), 0, 255).astype(np.uint8) for f in live]
    r = check_liveness(screen, fps=29.97)
    assert r.checks["replay"]["periodic"], r.checks
    assert r.decision == "attack" and not r.live, (r.decision, r.checks)


def test_turns_made_as_asked_do_not_stand_in_for_a_surface_never_judged(monkeypatch: pytest.MonkeyPatch) -> None:
    """Too few face points followed to judge the surface: "inconclusive", even when the
    challenge's turns were made (the decision rule alone, its measurements given)."""
    from safeface.capture import liveness
    from safeface.capture.clip import Clip
    from safeface.capture.parallax import Parallax
    from safeface.capture.replay import Replay
    from safeface.capture.track import Track

    yaws = [0.0] * 8 + [-25.0] * 10 + [0.0] * 8  # one turn to the person's right
    times = np.arange(len(yaws)) / 15.0
    track = Track(times, np.stack([yaw_points(y) for y in yaws]), tuple(range(len(yaws))),
                  tuple((60.0, 60.0, 240.0, 260.0) for _ in yaws))
    clip = Clip(tuple(np.zeros((300, 320, 3), np.uint8) for _ in yaws), tuple(times), "0" * 64)
    monkeypatch.setattr(liveness, "track_subject", lambda c, e: track)
    monkeypatch.setattr(liveness, "measure", lambda frames, pts: Parallax(0.0, 0.0, 5, 0))  # too few points
    monkeypatch.setattr(liveness, "replay_cues", lambda frames, boxes: Replay(1.0, 0.0))
    r = liveness.analyse_clip(clip, engine=None, challenge=("right",))
    assert r.checks["challenge"]["ok"] and not r.checks["surface"]["planar"]
    assert r.checks["physics"]["decision"] != "inconclusive"
    assert r.decision == "inconclusive" and not r.live and r.score < 0.5, (r.decision, r.checks)


def test_a_challenge_ends_at_its_30th_second_and_evidence_at_its_60th(tmp_path: Path) -> None:
    from safeface.hazmat.templates.keyring import PassphraseKeyring

    ws = _liveness_ws(tmp_path)
    clock = Clock(dt.datetime.now(dt.timezone.utc).replace(microsecond=0))  # whole seconds: no rounding at the edge
    with open_sf(ws, clock=clock) as sf:
        ch = sf.liveness_challenge()
        assert ch.expires_at - ch.issued_at == 30
        clock.advance(seconds=30)
        with pytest.raises(PolicyViolation, match="expired"):
            sf.liveness_check([np.zeros((48, 64, 3), np.uint8)] * 10, ch.nonce)
    keys = EvidenceKeys(PassphraseKeyring.open(ws.keyring, PASSPHRASE).key("pseudonym"))
    vec = CachedPipeline().embed(images() / "obama.jpg").embedding
    ev = keys.issue(nonce="n-edge", clip_sha256="00" * 32, now=clock.now.timestamp(), decision="live", score=0.9,
                    challenge=("left", "right"), embedding=vec)
    with open_sf(ws, clock=clock) as sf:
        t = consent(ws, "alice", now=clock.now - dt.timedelta(minutes=1))
        clock.advance(seconds=60)
        with pytest.raises(PolicyViolation, match="stale"):
            sf.enroll(images() / "obama.jpg", "alice", "demo", t, liveness=ev)
        assert not sf.records()
