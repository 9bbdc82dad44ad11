"""Challenge-response: the moves a person is asked to make, and whether a track made them.

A challenge is a random sequence of head turns ("left", "right") with a random nonce; it expires
in CHALLENGE_TTL_S seconds and can be answered once. "left" is the person's left: facing the
camera, their nose moves towards the image's right in the clip as the camera records it (a clip
recorded mirrored, as some front cameras do, is checked with `mirrored=True`). A step is made
when the apparent yaw (from the 5 points) has moved TURN_DEG from where the clip started, and the
steps must come in the order asked.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from typing import Sequence

import numpy as np

from ..errors import InvalidArgument
from .quality import pose_of

STEPS = ("left", "right")
SEQUENCES = (("left", "right"), ("right", "left"), ("left", "right", "left"), ("right", "left", "right"))
CHALLENGE_TTL_S = 30
TURN_DEG = 12.0

_WORDS = {"left": "turn your head to your left", "right": "turn your head to your right"}


@dataclass(frozen=True)
class Challenge:
    nonce: str
    steps: tuple[str, ...]
    issued_at: float  # Unix seconds
    expires_at: float

    @property
    def text(self) -> str:
        return ", then ".join(_WORDS[s] for s in self.steps).capitalize() + ", within 3 seconds."

    def to_dict(self) -> dict[str, object]:
        return {"challenge": self.nonce, "steps": list(self.steps), "instruction": self.text,
                "issued_at": self.issued_at, "expires_at": self.expires_at}


def new_challenge(now: float) -> Challenge:
    steps = SEQUENCES[secrets.randbelow(len(SEQUENCES))]
    # Hex, not URL-safe base64: a nonce starting with "-" would be read as an option by a command line.
    return Challenge(secrets.token_hex(18), steps, now, now + CHALLENGE_TTL_S)


def parse_steps(text: str) -> tuple[str, ...]:
    steps = tuple(s.strip() for s in text.split(",") if s.strip())
    bad = [s for s in steps if s not in STEPS]
    if not steps or bad:
        raise InvalidArgument(f"challenge steps are a comma-separated list of {', '.join(STEPS)}; got {text!r}.")
    return steps


@dataclass(frozen=True)
class ChallengeResult:
    ok: bool
    made: tuple[str, ...]  # the steps made, in order
    yaw_range: tuple[float, float]  # degrees, relative to the start

    def to_dict(self) -> dict[str, object]:
        return {"ok": self.ok, "made": list(self.made),
                "yaw_range": [round(self.yaw_range[0], 1), round(self.yaw_range[1], 1)]}


def verify_moves(points: np.ndarray, steps: Sequence[str], mirrored: bool = False) -> ChallengeResult:
    """Were `steps` made, in order, in this (frames, 5, 2) track?"""
    yaw = np.array([pose_of(p)[0] for p in np.asarray(points).reshape(-1, 5, 2)])
    if mirrored:
        yaw = -yaw
    if len(yaw) < 3:
        return ChallengeResult(False, (), (0.0, 0.0))
    # A 3-frame median removes single-frame landmark glitches.
    smooth = np.array([np.median(yaw[max(0, i - 1): i + 2]) for i in range(len(yaw))])
    rel = smooth - float(np.median(smooth[:3]))
    made: list[str] = []
    k = 0
    for v in rel:
        if k < len(steps):
            want = steps[k]
            if (want == "left" and v >= TURN_DEG) or (want == "right" and v <= -TURN_DEG):
                made.append(want)
                k += 1
    return ChallengeResult(k == len(steps), tuple(made), (float(rel.min()), float(rel.max())))
