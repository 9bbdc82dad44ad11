"""Places where a person stood still. The background model learns a person who stops into the
background within seconds, their track is lost, and the face search alone may not reach their
face: the head zone of their last box stays covered while they may still be there. A place is
let go once it has been seen without them for a while (they walked off), so no blurred patch
stays where nobody stands."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np

from .appearance import Appearance, distance
from .assign import LiveTrack
from .motion import Box

# A track stood still when its feet moved less than STILL_TRAVEL of its height over its last
# STILL_FRAMES detections.
STILL_FRAMES = 10
STILL_TRAVEL = 0.15
# A track that moved less than this many of its heights in its whole life, and that no
# person-shape detector confirmed, may be a ghost: the hole a person leaves in the background
# model when they walk off after standing still. It is no person to keep a place for.
GHOST_TRAVEL = 0.5
# A place is let go when its clothing regions have looked unlike the person who stood there
# (farther than LEFT_DISTANCE from their look when the place was kept and from every clear view
# of their track: the clothing gate the tracker matches a known person by) on LEFT_FRAMES frames
# in a row with no person box over it. Someone passing in front, or standing in front for a
# while, has a box there, and the count starts again.
LEFT_DISTANCE = 0.5
LEFT_FRAMES = 20


def still(t: LiveTrack) -> bool:
    """Whether the track stood still over its last STILL_FRAMES detections."""
    if len(t.boxes) < STILL_FRAMES:
        return False
    last = t.boxes[-STILL_FRAMES:]
    feet = np.array([((b[0] + b[2]) / 2, b[3]) for b in last])
    height = float(np.median([b[3] - b[1] for b in last]))
    return float(np.linalg.norm(feet - feet[-1], axis=1).max()) < STILL_TRAVEL * height


def ghost(t: LiveTrack) -> bool:
    """A blob that never moved and that the person-shape detector never confirmed (GHOST_TRAVEL)."""
    if t.shaped:
        return False
    feet = np.array([((b[0] + b[2]) / 2, b[3]) for b in t.boxes])
    height = float(np.median([b[3] - b[1] for b in t.boxes]))
    return float(np.linalg.norm(feet - feet[0], axis=1).max()) < GHOST_TRAVEL * height


@dataclass(eq=False)
class _Place:
    box: Box
    track: LiveTrack
    look: Appearance  # the place's clothing regions when it was kept, the person standing there
    empty: int = 0  # frames in a row the place was seen without them


class StillPlaces:
    """The kept places, at most `limit` (the oldest goes first)."""

    def __init__(self, limit: int) -> None:
        self._limit = limit
        self._places: dict[str, _Place] = {}  # track id -> its place

    def __contains__(self, track_id: str) -> bool:
        return track_id in self._places

    def boxes(self) -> list[Box]:
        return [p.box for p in self._places.values()]

    def keep(self, t: LiveTrack, look: Callable[[Box], Appearance]) -> None:
        """Keep `t`'s last box covered; `look` measures a box's clothing on the current frame."""
        if t.track_id in self._places:
            return
        self._places[t.track_id] = _Place(t.boxes[-1], t, look(t.boxes[-1]))
        if len(self._places) > self._limit:
            del self._places[next(iter(self._places))]

    def drop(self, track_id: str) -> None:
        """The track is seen again: its own box covers its head."""
        self._places.pop(track_id, None)

    def watch(self, look: Callable[[Box], Appearance], occupied: list[Box]) -> None:
        """Count, for each place, one more frame without its person or start again; let go the
        places seen empty for LEFT_FRAMES frames. `occupied`: this frame's person boxes."""
        for tid, p in list(self._places.items()):
            if any(_covered(p.box, b) > 0.1 for b in occupied):
                p.empty = 0
                continue
            now = look(p.box)
            gone = distance(p.look, now) > LEFT_DISTANCE and p.track.clothing_distance(now) > LEFT_DISTANCE
            p.empty = p.empty + 1 if gone else 0
            if p.empty >= LEFT_FRAMES:
                del self._places[tid]


def _covered(place: Box, box: Box) -> float:
    """The share of `place` that `box` covers."""
    w = max(0.0, min(place[2], box[2]) - max(place[0], box[0]))
    h = max(0.0, min(place[3], box[3]) - max(place[1], box[1]))
    area = (place[2] - place[0]) * (place[3] - place[1])
    return w * h / area if area > 0 else 0.0
