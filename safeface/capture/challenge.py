"""Challenge-response: the moves a person is asked to make, and whether a track made them.

A challenge is a random sequence of head turns ("left", "right") with a random nonce; it expires
in CHALLENGE_TTL_S seconds and can be answered once. "left" is the person's left: facing the
camera, their nose moves towards the image's right in the clip as the camera records it. Whether
the clip will be recorded mirrored (as some front cameras do) is fixed when the challenge is
issued (`mirrored`), stored with its steps, and never chosen by whoever sends the clip: with the
choice, an unedited clip turning right then left also answered "left, then right".

The clip must show exactly the turns asked, no more. The yaw is read from the 5 points of every
frame followed (track.py), in the clip's time, and cleaned of what a head cannot do (glitches()):
a sample more than SPIKE_DEG out from both its neighbours, to one side, is a spike; the track is
cut wherever the yaw moves faster than MAX_YAW_RATE (a head turns at 400 degrees a second at
most) from one sample to the next, by the samples' times, and a stretch of at most GLITCH_SAMPLES
samples between such cuts is a glitch of the landmarks, as is a sample out of reach of the last
one kept at that pace (a glitch that jumped out and came back smoothly). All are dropped; the
rest is median-smoothed over SMOOTH_SAMPLES samples, so an excursion of two samples that comes
back is gone. On the README's stage clip, near profile, the 5 points slip: the yaw jumped 45 degrees to
the other side and back within 1/15 s (frames 118-120), and that glitch of two samples was read
as a turn to the left in a shot where the performer only turns to his right. Which frames the
tracker sampled (15 a second of the rate declared for the frames) was the caller's choice through
`fps=`, so the same frames answered "left, right, left" at 20 and 29.97 fps and "left, right" at
40; every frame is followed now, and a rate above 60 frames a second is refused (clip.py).

A turn is then an excursion of the cleaned yaw (relative to where the clip started) TURN_DEG or
more to one side: it begins at the first sample that far out and ends at the first sample back
within TURN_DEG / 2 of the start, or TURN_DEG out to the other side. An excursion counts as a turn
when at least MIN_TURN_SAMPLES of its samples are TURN_DEG out. Turns to the same side one after
the other are one turn: the head came back only part way, or the tracker slipped (on the stage
clip's shot that the tests use, the performer turns right, the yaw reads back within 4 degrees of
the start for two samples, then right again). So the turns a clip shows alternate, and one clip answers at most one of
SEQUENCES (for the way of reading it, mirrored or not, fixed before the steps are drawn). Any
other turn, before the first step, between two steps or after the last, refuses the answer: a
pre-recorded clip that turned left, right, left, right answered all four sequences.
"""

from __future__ import annotations

import dataclasses
import secrets
from dataclasses import dataclass
from typing import Optional, Sequence, Union

import numpy as np

from ..errors import InvalidArgument
from .quality import pose_of

STEPS = ("left", "right")
SEQUENCES = (("left", "right"), ("right", "left"), ("left", "right", "left"), ("right", "left", "right"))
CHALLENGE_TTL_S = 30
TURN_DEG = 12.0
MIN_TURN_SAMPLES = 2
MAX_YAW_RATE = 400.0  # degrees a second: faster than a head turns (a quick one: 200-400)
YAW_NOISE_DEG = 8.0  # the 5-point yaw's noise from one frame to the next (stage clip: up to about 7)
SPIKE_DEG = 15.0  # out from both neighbours by more than this, to one side: a spike (noise: under 8)
GLITCH_SAMPLES = 4  # a stretch this short between two impossible moves is a landmark glitch
SMOOTH_SAMPLES = 5  # the median's width

_WORDS = {"left": "turn your head to your left", "right": "turn your head to your right"}


@dataclass(frozen=True)
class Challenge:
    nonce: str
    steps: tuple[str, ...]
    issued_at: float  # Unix seconds
    expires_at: float
    mirrored: bool = False  # the clip answering it will be recorded mirrored (fixed at issue)

    @property
    def text(self) -> str:
        return ", then ".join(_WORDS[s] for s in self.steps).capitalize() + ", within 3 seconds."

    def to_dict(self) -> dict[str, object]:
        return {"challenge": self.nonce, "steps": list(self.steps), "instruction": self.text,
                "issued_at": self.issued_at, "expires_at": self.expires_at, "mirrored": self.mirrored}


def new_challenge(now: float, mirrored: bool = False) -> Challenge:
    steps = SEQUENCES[secrets.randbelow(len(SEQUENCES))]
    # Hex, not URL-safe base64: a nonce starting with "-" would be read as an option by a command line.
    return Challenge(secrets.token_hex(18), steps, now, now + CHALLENGE_TTL_S, bool(mirrored))


def with_steps(ch: Challenge, steps: Sequence[str]) -> Challenge:
    """The challenge with fixed `steps` (--demo workspaces only: a real challenge is random)."""
    return dataclasses.replace(ch, steps=parse_steps(",".join(steps)))


def parse_steps(text: str) -> tuple[str, ...]:
    steps = tuple(s.strip() for s in text.split(",") if s.strip())
    bad = [s for s in steps if s not in STEPS]
    if not steps or bad:
        raise InvalidArgument(f"challenge steps are a comma-separated list of {', '.join(STEPS)}; got {text!r}.")
    if any(a == b for a, b in zip(steps, steps[1:])):
        raise InvalidArgument(f"challenge steps alternate (two turns to one side in a row read as one); got {text!r}.")
    return steps


@dataclass(frozen=True)
class ChallengeResult:
    ok: bool
    made: tuple[str, ...]  # the steps asked that were made, in order
    yaw_range: tuple[float, float]  # degrees, relative to the start
    turns: tuple[str, ...] = ()  # every turn the clip showed, in order (see the module's doc)
    reason: str = ""  # why not ok, in words; "" when ok

    def to_dict(self) -> dict[str, object]:
        d: dict[str, object] = {"ok": self.ok, "made": list(self.made), "turns": list(self.turns),
                                "yaw_range": [round(self.yaw_range[0], 1), round(self.yaw_range[1], 1)]}
        if self.reason:
            d["reason"] = self.reason
        return d


def turns_of(rel: np.ndarray) -> tuple[str, ...]:
    """The turns (see the module's doc) in a relative yaw track, in degrees (+: the person's left)."""
    turns: list[str] = []
    side: Optional[str] = None  # the excursion under way
    out = 0  # its samples TURN_DEG or more out
    for v in (float(x) for x in rel):
        far = "left" if v >= TURN_DEG else "right" if v <= -TURN_DEG else None
        if side is not None and (abs(v) <= TURN_DEG / 2 or (far is not None and far != side)):
            side, out = None, 0  # back near the start, or out to the other side: the excursion ended
        if side is None and far is not None:
            side, out = far, 0
        if side is not None and far == side:
            out += 1
            if out == MIN_TURN_SAMPLES and (not turns or turns[-1] != side):
                turns.append(side)
    return tuple(turns)


def _where(i: int, n: int) -> str:
    if i == 0:
        return "before the first step"
    if i == n:
        return "after the last step"
    return f"between steps {i} and {i + 1}"


def judge_turns(turns: Sequence[str], steps: Sequence[str]) -> tuple[bool, tuple[str, ...], str]:
    """(ok, the steps made in order, the reason when not ok): ok only when `turns` are `steps`."""
    made: list[str] = []
    extra: list[str] = []  # the first turn outside the steps, and where
    for t in turns:
        if len(made) < len(steps) and t == steps[len(made)]:
            made.append(t)
        elif not extra:
            extra = [t, _where(len(made), len(steps))]
    if tuple(turns) == tuple(steps):
        return True, tuple(made), ""
    asked = ", ".join(steps)
    shown = ", ".join(turns) or "none"
    if len(made) < len(steps):
        reason = f"the moves asked ({asked}) were not made in order (the clip showed turns: {shown})"
    else:
        reason = (f"the clip showed a turn to the {extra[0]} {extra[1]} that was not asked (asked: {asked}; "
                  f"the clip showed turns: {shown}): make only the turns asked")
    return False, tuple(made), reason


def glitches(yaw: np.ndarray, times: np.ndarray) -> np.ndarray:
    """The samples (a mask) of a yaw track (degrees; `times` in seconds) that a head cannot have
    made. A spike: a sample more than SPIKE_DEG out from both its neighbours, to one side (by the
    samples' count, so whatever rate is declared; a track that zigzags is all spikes). Of the rest, the track is
    cut wherever the yaw moves faster than MAX_YAW_RATE from one sample to the next (by their
    times, with YAW_NOISE_DEG of the tracker's noise), and a stretch of at most GLITCH_SAMPLES
    between such cuts (or before the first, or after the last) is a glitch of the landmarks; so
    is a sample out of reach of the last one kept, at that pace."""
    yaw, times = np.asarray(yaw, np.float64), np.asarray(times, np.float64)
    n = len(yaw)
    drop = np.zeros(n, bool)
    if n >= 3:  # spikes: more than SPIKE_DEG out from both neighbours, to one side
        back, ahead = yaw[1:-1] - yaw[:-2], yaw[1:-1] - yaw[2:]
        drop[1:-1] = (back * ahead > 0) & (np.minimum(np.abs(back), np.abs(ahead)) > SPIKE_DEG)
    keep = np.flatnonzero(~drop)
    y, t = yaw[keep], times[keep]
    step = np.abs(np.diff(y))
    allowed = MAX_YAW_RATE * np.maximum(np.diff(t), 0.0) + YAW_NOISE_DEG
    cuts = [0] + [i + 1 for i in np.flatnonzero(step > allowed)] + [len(keep)]
    if len(cuts) > 2:  # one cut at least
        for a, b in zip(cuts, cuts[1:]):
            if b - a <= GLITCH_SAMPLES:
                drop[keep[a:b]] = True
    # And what stays out of reach of the last sample kept, at a head's pace (a glitch that jumped
    # out and came back smoothly: the way out is still impossible).
    last = -1
    for i in np.flatnonzero(~drop):
        if last >= 0 and abs(yaw[i] - yaw[last]) > MAX_YAW_RATE * max(times[i] - times[last], 0.0) + YAW_NOISE_DEG:
            drop[i] = True
        else:
            last = int(i)
    return drop


def smoothed(yaw: np.ndarray) -> np.ndarray:
    """A centred median over SMOOTH_SAMPLES samples: an excursion of fewer than half of them that
    comes back (a glitch of one or two samples) is gone."""
    h = SMOOTH_SAMPLES // 2
    return np.array([np.median(yaw[max(0, i - h): i + h + 1]) for i in range(len(yaw))])


def verify_moves(points: np.ndarray, steps: Sequence[str], mirrored: bool = False,
                 times: Optional[Union[Sequence[float], np.ndarray]] = None) -> ChallengeResult:
    """Were exactly `steps` made, in order and with no other turn, in this (frames, 5, 2) track
    (`times`: of each sample, seconds; without them, samples 1/15 s apart)?"""
    yaw = np.array([pose_of(p)[0] for p in np.asarray(points).reshape(-1, 5, 2)])
    if mirrored:
        yaw = -yaw
    t = np.arange(len(yaw)) / 15.0 if times is None else np.asarray(times, np.float64)
    if len(t) != len(yaw):
        raise InvalidArgument(f"{len(t)} times for {len(yaw)} samples of the track.")
    # Glitches of the landmarks, then a median over SMOOTH_SAMPLES: a head's turns remain.
    yaw = yaw[~glitches(yaw, t)]
    if len(yaw) < 3:
        return ChallengeResult(False, (), (0.0, 0.0), (), "too few frames of the face were followed to see the turns")
    smooth = smoothed(yaw)
    rel = smooth - float(np.median(smooth[:3]))
    turns = turns_of(rel)
    ok, made, reason = judge_turns(turns, steps)
    return ChallengeResult(ok, made, (float(rel.min()), float(rel.max())), turns, reason)
