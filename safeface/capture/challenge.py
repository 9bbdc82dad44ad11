"""Challenge-response: the moves a person is asked to make, and whether a track made them.

A challenge is a random sequence of head turns ("left", "right") with a random nonce; it expires
in CHALLENGE_TTL_S seconds and can be answered once. "left" is the person's left: facing the
camera, their nose moves towards the image's right in the clip as the camera records it. Whether
the clip will be recorded mirrored (as some front cameras do) is fixed when the challenge is
issued (`mirrored`), stored with its steps, and never chosen by whoever sends the clip: with the
choice, an unedited clip turning right then left also answered "left, then right".

The clip must show exactly the turns asked, no more. A turn is an excursion of the apparent yaw
(from the 5 points, median-smoothed over 3 frames, relative to where the clip started) TURN_DEG or
more to one side: it begins at the first sample that far out and ends at the first sample back
within TURN_DEG / 2 of the start, or TURN_DEG out to the other side. An excursion counts as a turn
when at least MIN_TURN_SAMPLES of its samples are TURN_DEG out (one alone is a landmark glitch that
the median let through: on the README's stage clip, near profile, the smoothed yaw jumps 13 degrees
to the other side for single samples). Turns to the same side one after the other are one turn:
the head came back only part way, or the tracker slipped (on the stage clip's shot that the tests
use, the performer turns right, the yaw reads back within 4 degrees of the start for two samples,
then right again). So the turns a clip shows alternate, and one clip answers at most one of
SEQUENCES (for the way of reading it, mirrored or not, fixed before the steps are drawn). Any
other turn, before the first step, between two steps or after the last, refuses the answer: a
pre-recorded clip that turned left, right, left, right answered all four sequences.
"""

from __future__ import annotations

import dataclasses
import secrets
from dataclasses import dataclass
from typing import Optional, Sequence

import numpy as np

from ..errors import InvalidArgument
from .quality import pose_of

STEPS = ("left", "right")
SEQUENCES = (("left", "right"), ("right", "left"), ("left", "right", "left"), ("right", "left", "right"))
CHALLENGE_TTL_S = 30
TURN_DEG = 12.0
MIN_TURN_SAMPLES = 2

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


def verify_moves(points: np.ndarray, steps: Sequence[str], mirrored: bool = False) -> ChallengeResult:
    """Were exactly `steps` made, in order and with no other turn, in this (frames, 5, 2) track?"""
    yaw = np.array([pose_of(p)[0] for p in np.asarray(points).reshape(-1, 5, 2)])
    if mirrored:
        yaw = -yaw
    if len(yaw) < 3:
        return ChallengeResult(False, (), (0.0, 0.0), (), "too few frames of the face were followed to see the turns")
    # A 3-frame median removes single-frame landmark glitches.
    smooth = np.array([np.median(yaw[max(0, i - 1): i + 2]) for i in range(len(yaw))])
    rel = smooth - float(np.median(smooth[:3]))
    turns = turns_of(rel)
    ok, made, reason = judge_turns(turns, steps)
    return ChallengeResult(ok, made, (float(rel.min()), float(rel.max())), turns, reason)
