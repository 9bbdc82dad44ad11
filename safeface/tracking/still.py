"""Places where a person stood still. The background model learns a person who stops into the
background within seconds, their track is lost, and the face search alone may not reach their
face: the head zone of their last box stays covered while they may still be there. A place is
let go when the person is seen walking off from it, so no blurred patch stays where nobody
stands: a track that started on the place, in that person's clothes, and has left it."""

from __future__ import annotations

from bisect import bisect_right
from dataclasses import dataclass, field

import numpy as np

from .assign import LiveTrack
from .motion import Box

# A track stood still when its feet moved less than STILL_TRAVEL of its height over its last
# STILL_FRAMES detections.
STILL_FRAMES = 10
STILL_TRAVEL = 0.15
# A track that moved less than this many of its heights in its whole life, and that no
# person-shape detector confirmed, may be a ghost: the hole a person leaves in the background
# model when they walk off after standing still.
GHOST_TRAVEL = 0.5
# The person walked off when a confirmed track started at the place (its first box's feet within
# STARTED_NEAR of the place's height from the place's: the blob of someone walking off is whole
# only a few frames on), its latest box has left the place (covers under LEFT_ON of it), and its
# clothes are theirs (within LEFT_DISTANCE of their track's: the clothing gate a known person is
# matched by). What the place looks like meanwhile decides nothing: a cloud, or someone in
# front, changes it while the person still stands there.
STARTED_NEAR = 0.5
LEFT_ON = 0.2
LEFT_DISTANCE = 0.5


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
    last: int  # the frame the track was last seen on when the place was kept
    # Someone in the person's clothes who came onto the place from elsewhere: those there now
    # (track ids), and how many were lost there, standing (faded into the background as the
    # person did). Each of those may be the one later seen walking off.
    visiting: set[str] = field(default_factory=set)
    stopped: int = 0
    # Tracks already counted as walking off from the place: each is one person leaving.
    left: set[str] = field(default_factory=set)


class StillPlaces:
    """The kept places, at most `limit` (the oldest goes first)."""

    def __init__(self, limit: int) -> None:
        self._limit = limit
        self._places: dict[str, _Place] = {}  # track id -> its place

    def __contains__(self, track_id: str) -> bool:
        return track_id in self._places

    def boxes(self) -> list[Box]:
        return [p.box for p in self._places.values()]

    def keep(self, t: LiveTrack) -> None:
        """Keep `t`'s last box covered."""
        if t.track_id in self._places:
            return
        self._places[t.track_id] = _Place(t.boxes[-1], t, t.frames[-1])
        if len(self._places) > self._limit:
            del self._places[next(iter(self._places))]

    def seen(self, t: LiveTrack) -> None:
        """The place's own track is seen again: let go when it came back at the place (the person
        seen there again, or walking off from it; its own box covers its head). A track that came
        back elsewhere was re-identified by its clothes, and may be someone dressed alike: the
        place was let go as soon as they were seen, the person still standing there."""
        p = self._places.get(t.track_id)
        if p is None:
            return
        back = bisect_right(t.frames, p.last)  # its first detection since the place was kept
        if back < len(t.boxes) and _feet_apart(p.box, t.boxes[back]) <= STARTED_NEAR:
            del self._places[t.track_id]

    def watch(self, live: list[LiveTrack]) -> None:
        """Let go each place its person is seen walking off from (STARTED_NEAR, LEFT_ON). Someone
        in their clothes who came onto the place and stood there until the model lost them too
        may be the one walking off: a place is let go only by one more walk-off than such
        visitors (a look-alike who walked onto the place, stood and walked off uncovered the
        person still standing there)."""
        for tid, p in list(self._places.items()):
            for t in live:
                if not t.confirmed or p.track.clothing_distance(t.look) > LEFT_DISTANCE:
                    continue
                here = _feet_apart(p.box, t.boxes[-1]) <= STARTED_NEAR
                # Where it came from: the place's own track (re-identified by its clothes) from
                # its first detection since the place was kept.
                back = bisect_right(t.frames, p.last) if t is p.track else 0
                if back >= len(t.boxes):
                    continue
                # Came from elsewhere, or walked off once already and came back: a look-alike
                # who left, returned and stood until lost let the place go at their next walk-off.
                if _feet_apart(p.box, t.boxes[back]) > STARTED_NEAR or t.track_id in p.left:
                    if here and not t.missed:
                        p.visiting.add(t.track_id)
                    elif t.track_id in p.visiting and t.missed:
                        p.visiting.discard(t.track_id)  # lost on the place, standing
                        p.stopped += 1
                    elif not here:
                        p.visiting.discard(t.track_id)  # passed by
                elif t is not p.track and t.track_id not in p.left and _covered(p.box, t.boxes[-1]) < LEFT_ON \
                        and not here:
                    p.left.add(t.track_id)
                    if p.stopped:
                        p.stopped -= 1
                    else:
                        del self._places[tid]
                        break


def _covered(place: Box, box: Box) -> float:
    """The share of `place` that `box` covers."""
    w = max(0.0, min(place[2], box[2]) - max(place[0], box[0]))
    h = max(0.0, min(place[3], box[3]) - max(place[1], box[1]))
    area = (place[2] - place[0]) * (place[3] - place[1])
    return w * h / area if area > 0 else 0.0


def _feet_apart(place: Box, box: Box) -> float:
    """How far apart the feet of `place` and of `box` are, in heights of `place`."""
    dx = (place[0] + place[2] - box[0] - box[2]) / 2
    return float(np.hypot(dx, place[3] - box[3])) / max(place[3] - place[1], 1.0)
