"""A liveness check of a short clip: track, physics, replay cues, challenge.

Combination rule (the decision, in order):
1. no face followed through enough frames ("acquired": false), too little turning, or too few
   face points followed to judge the surface: "inconclusive" (unless step 2's replay cues or a
   made challenge already decide);
2. the face turned but its surface moved as one plane (parallax.py: under MIN_OFF_PLANE of its
   points off the best homography), a replay cue fires (a periodic spectrum, frozen frames), or a
   challenge was given and the clip did not show exactly its turns (all of them, in order, and
   no other: challenge.py): "attack";
3. a configured PAD model (pad_model.py, off by default) scores the face below its threshold:
   "attack" (the model can only veto);
4. otherwise "live".
Depth is judged by the surface, in pixels against the tracker's noise. The 5-point physics
(physics.py) says whether the face turned enough ("motion"); its depth figures (the eyes' width
asymmetry against the turn) are reported but do not decide: on a face under 40 px between the eyes
they sit within the 5-point tracker's noise, and its shape prior gives a turned picture a head's
asymmetry too (both measured on the README's sets). The score is 0.5 * off-plane share / MIN_OFF_PLANE (0.5
at the decision line), capped below 0.5 when any check of step 2 fails, so `score >= 0.5` if and
only if the decision is "live". "inconclusive" is never live.

Nothing here stores the clip, a frame or a landmark; the caller gets only the result.
"""

from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Optional, Sequence

import numpy as np

from ..hazmat.vision.arrays import l2_normalize
from .challenge import ChallengeResult, verify_moves
from .clip import Clip, read_clip
from .parallax import Parallax, measure
from .physics import MIN_FRAMES, Physics, analyse
from .replay import Replay, replay_cues
from .track import Track, track_subject


# The share of face points off the best homography above which the surface is not a plane: more
# than twice the largest share of the waved prints and screens of the calibration set (seed 0: at
# most 0.08), checked on held-out sets made with other seeds (at most 0.15; README, "Measuring it").
MIN_OFF_PLANE = 0.2


@dataclass(frozen=True)
class LivenessResult:
    decision: str  # "live", "attack", "inconclusive"
    score: float
    checks: dict[str, Any]
    clip_sha256: str
    seconds: float = 0.0
    track: Optional[Track] = field(default=None, repr=False, compare=False)  # in memory only
    moved: tuple[int, ...] = field(default=(), repr=False, compare=False)  # Parallax.samples

    @property
    def live(self) -> bool:
        return self.decision == "live"

    def to_dict(self) -> dict[str, Any]:
        return {"live": self.live, "decision": self.decision, "score": round(self.score, 3), "checks": self.checks,
                "clip_sha256": self.clip_sha256}


def default_engine() -> Any:
    from ..hazmat.vision import DEFAULT_ENGINE, get_engine

    return get_engine(DEFAULT_ENGINE)


def check_clip(source: Any, engine: Any = None, challenge: Optional[Sequence[str]] = None,
               mirrored: bool = False, fps: float = 10.0, pad_model: Any = None) -> tuple[LivenessResult, Clip]:
    """Check a clip (see clip.read_clip for the inputs; `fps` times a list or folder of frames).
    With `challenge` (steps), the clip must show exactly those turns, in order (`mirrored`: as the
    challenge was issued). Returns the result and the decoded clip (for the caller's evidence)."""
    t0 = time.perf_counter()
    clip = read_clip(source, fps)
    result = analyse_clip(clip, engine or default_engine(), challenge, mirrored, pad_model)
    return dataclasses.replace(result, seconds=time.perf_counter() - t0), clip


def check_liveness(clip: Any, *, fps: float = 10.0, mirrored: bool = False, pad_model: Any = None) -> LivenessResult:
    """The workspace-free check of a clip: physics, surface and replay cues (no challenge, no
    evidence). `clip`: a video path or its bytes, a folder of frames or a list of RGB frames (timed
    at `fps`). `pad_model`: a capture.pad_model.PadModel of the caller's, which can only veto."""
    return check_clip(clip, fps=fps, mirrored=mirrored, pad_model=pad_model)[0]


def analyse_clip(clip: Clip, engine: Any, challenge: Optional[Sequence[str]] = None,
                 mirrored: bool = False, pad_model: Any = None) -> LivenessResult:
    followed = track_subject(clip, engine)  # every frame: the challenge reads these
    track = followed.sampled() if followed is not None else None  # up to 15 a second: the other checks
    checks: dict[str, Any] = {"frames": len(clip.frames), "duration_s": round(clip.duration, 2)}
    if track is None or len(track) < MIN_FRAMES:
        checks.update(acquired=False, tracked=0 if track is None else len(track))
        checks["reason"] = "no face was followed through the clip: face the camera in good light"
        return LivenessResult("inconclusive", 0.0, checks, clip.sha256, track=track)
    width = float(clip.frames[0].shape[1])
    tracked = [clip.frames[i] for i in track.frames]
    phys: Physics = analyse(track.points, width)
    surface: Parallax = measure(tracked, track.points)
    rep: Replay = replay_cues(tracked, track.boxes)
    checks.update(acquired=True, tracked=len(track), faces=track.faces_seen, physics=phys.to_dict(),
                  surface={**surface.to_dict(), "planar": surface.measured and surface.off_plane < MIN_OFF_PLANE},
                  replay=rep.to_dict())
    chal: Optional[ChallengeResult] = None
    if challenge is not None and followed is not None:
        chal = verify_moves(followed.points, challenge, mirrored, followed.times)
        checks["challenge"] = {"steps": list(challenge), **chal.to_dict()}
    turned = phys.decision != "inconclusive"
    score = float(np.clip(0.5 * surface.off_plane / MIN_OFF_PLANE, 0.0, 1.0)) if turned and surface.measured else 0.0
    failures = []
    if turned and surface.measured and surface.off_plane < MIN_OFF_PLANE:
        failures.append("the face turned but its surface moved as one plane (a print or a screen)")
    if rep.periodic:
        failures.append("a regular grid in the face's spectrum (a halftone print or a screen)")
    if rep.frozen:
        failures.append("repeated frames (a still picture or a replayed video)")
    if chal is not None and not chal.ok:
        failures.append(chal.reason)
    undecided = None
    if not turned:
        undecided = phys.reason
    elif not surface.measured:
        undecided = "too few points of the face could be followed to judge its surface: face the camera in good light"
    if undecided and not (rep.flagged or (chal is not None and chal.made)):
        checks["reason"] = undecided
        return LivenessResult("inconclusive", 0.0, checks, clip.sha256, track=track)
    if failures:
        checks["reason"] = "; ".join(failures)
        return LivenessResult("attack", min(score, 0.49), checks, clip.sha256, track=track)
    if undecided:
        checks["reason"] = undecided
        return LivenessResult("inconclusive", 0.0, checks, clip.sha256, track=track)
    if pad_model is not None:
        # The optional passive model may only veto (see pad_model.py).
        picks = frontal_indices(track)
        prob = pad_model.live_probability([clip.frames[track.frames[i]] for i in picks], [track.boxes[i] for i in picks])
        checks["pad_model"] = {**pad_model.describe(), "live_probability": round(prob, 4)}
        if prob < pad_model.spec.threshold:
            checks["reason"] = "the PAD model scores the face below its threshold"
            return LivenessResult("attack", min(score, 0.49), checks, clip.sha256, track=track)
    checks["reason"] = "the face turned and its surface showed a head's depth (not one plane)"
    return LivenessResult("live", max(score, 0.5), checks, clip.sha256, track=track, moved=surface.samples)


# At most this many of the frames whose motion was judged are embedded to check the bound face.
MOVED_SAMPLES = 16


def bind_face(result: LivenessResult, frames: Sequence[np.ndarray], embed: Callable[[np.ndarray, Any, np.ndarray],
              Optional[np.ndarray]], threshold: float) -> tuple[Optional[np.ndarray], dict[str, Any]]:
    """The face a live result's evidence carries, and the check that it is the face that moved.

    The evidence carries the mean embedding of the most frontal frames (the best for matching),
    but the verdict comes from the frames across which the face turned. Shown a photo of someone
    else in a few frontal frames while a live accomplice does the turns, the two differ: the mean
    of the turning frames must match the frontal mean at the deployment's threshold (the bar a
    probe must clear), or there is no evidence. Measured on the stage clip's live windows: 0.94 to
    0.99; a still of another person shown first: 0.90 (README, "Liveness"). `embed(frame, box,
    points)` gives a unit embedding or None."""
    track = result.track
    if not result.live or track is None:
        return None, {}

    def mean_of(idx: Sequence[int]) -> Optional[np.ndarray]:
        vecs = [v for v in (embed(frames[track.frames[i]], track.boxes[i], track.points[i]) for i in idx)
                if v is not None]
        return l2_normalize(np.mean(vecs, axis=0)) if vecs else None

    frontal = mean_of(frontal_indices(track))
    moved = list(result.moved)
    if len(moved) > MOVED_SAMPLES:  # evenly over the turns
        moved = [moved[int(i)] for i in np.linspace(0, len(moved) - 1, MOVED_SAMPLES).round()]
    turning = mean_of(moved)
    if frontal is None or turning is None:
        return None, {"consistent": False, "reason": "the tracked face could not be embedded"}
    similarity = float(frontal @ turning)
    check = {"consistent": similarity >= threshold, "similarity": round(similarity, 3), "frames": len(moved)}
    return (frontal if check["consistent"] else None), check


def frontal_indices(track: Track, k: int = 3) -> list[int]:
    """The tracked samples whose face is nearest frontal, up to `k`: the ones to embed for the
    evidence. A sample whose yaw jumps away from both neighbours (the tracker slipped for a
    frame, and its landmarks would misalign the chip) is never chosen."""
    from .physics import _median3
    from .quality import pose_of

    poses = np.array([pose_of(p) for p in track.points])
    yaw = poses[:, 0]
    smooth = _median3(yaw)
    cost = np.abs(smooth) + np.abs(poses[:, 2]) + np.where(np.abs(yaw - smooth) > 8.0, 1e6, 0.0)
    order = [int(i) for i in np.argsort(cost, kind="stable") if cost[i] < 1e6]
    return order[:k] or [0]
