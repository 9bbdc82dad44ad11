"""Frame-to-frame assignment: each track's Kalman prediction is matched to the frame's person
boxes by the Hungarian method (scipy's linear_sum_assignment) on a cost of distance, overlap and
clothing. Four rules keep identities through crowds:

- a track whose prediction lies inside another person's box is occluded (two people merged into
  one blob): it coasts on its prediction and learns no clothing from the shared box;
- a box mostly inside a box already given to a track is a fragment of that person, not a new one;
- a new track, once confirmed (and again a second later, when a person coming back at the edge
  of the frame is fully in view), takes over a lost track (unseen for up to `reid_window`
  frames) that wore the same clothes and could have walked there in the time:
  re-identification after an occlusion the motion model could not bridge, or after a person
  left the view and came back;
- when the video is done, a track that lay mostly inside a longer track's boxes is dropped as a
  piece of that person."""

from __future__ import annotations

import secrets
from bisect import bisect_left
from dataclasses import dataclass, field
from typing import Any, Collection, Optional

import numpy as np

from ..anonymize.detect import iou
from .appearance import INSET, LOWER, UPPER, Appearance, distance
from .motion import Box, BoxKalman

INF = 1e6
# Looks kept per track for matching: the most recent clear views (box not shared with anyone).
GALLERY = 12
# The farthest a new view may be from the running mean to join the gallery: about the median
# distance between two views of one person on CCTV.
GALLERY_DISTANCE = 0.4
# Looks kept per track for re-identification: at least AssignOptions.confirm.
RECENT = 5
# A new track is compared with the lost ones when it is confirmed, and once more at this many
# detections (a second at 10 fps): someone coming back into view at the edge of the frame shows
# only part of their body at first, too short a box to compare with the one they left with.
REID_AGAIN = 10
# A box wider than this times its height holds more than one person (a standing person is about
# 0.42 times as wide as tall), or less than one: a head alone, someone from the shoulders up.
SINGLE_ASPECT = 0.5
# How a detection's box is kept for the colour summary (LiveTrack.colours): its clothing regions
# were the person's alone; shared with someone else's; or the box was no whole person's shape
# (wider than SINGLE_ASPECT), so its "top" and "bottom" regions may be a face and a neck, whose
# skin must never colour a summary a search ranks people by.
CLEAR, SHARED, PARTIAL = 2, 1, 0
# The detections a track keeps at full rate however long it lives: the latest ones, which the
# tracker reads (the last box, the still-standing test over the last ten).
TAIL = 16


@dataclass
class AssignOptions:
    """`confirm`: detections in a row before a track counts; `max_age`: frames a confirmed track
    is predicted without a detection before it ends (25 = 2.5 s at 10 fps); `gate`: farthest a
    detection may be from the prediction, in person heights; `resize`: the most a box's height
    may change from the prediction (as a ratio either way); `max_cost`: worst accepted match;
    `clothing_gate`: the worst clothing distance (0-1) at which a known person may still match;
    `reid_window`: frames after a track is lost during which a new track may turn out to be it;
    `reid_distance`: the worst clothing distance (0-1) for that; `walk`: the farthest a person
    walks in a frame, in person heights (0.12 is a brisk 1.5 m/s at 10 fps, with margin);
    `keep`: the most detections (frame, box, colour shares) a track holds: a longer track keeps
    every second, fourth, ... frame of its life, evenly, and its latest TAIL in full; `held`: the
    most all of a run's tracks hold together (about 500 bytes each): past it, every track's
    `keep` is halved, down to 4 * TAIL (2,000 tracks of 1,024 detections held about 1 GB).

    The clothing thresholds were measured on the annotated vtest.avi boxes (one person's clear
    view against the closest of their own or another person's last 12 clear views): a gate of
    0.5 turns away 1% of a person's own views and lets through a quarter of others' (0.6 let
    through 63%); re-identification compares the median of several views, so 0.4 still finds
    a person again while most lookalikes stay apart."""

    confirm: int = 3
    max_age: int = 25
    gate: float = 0.5
    resize: float = 1.65
    max_cost: float = 0.7
    appearance_weight: float = 0.45
    learn: float = 0.1
    clothing_gate: float = 0.5
    reid_window: int = 120
    reid_distance: float = 0.4
    walk: float = 0.12
    keep: int = 1024
    held: int = 200_000


@dataclass(eq=False)  # tracks are compared by identity
class LiveTrack:
    track_id: str
    kalman: BoxKalman
    look: Appearance
    hits: int = 1
    missed: int = 0
    confirmed: bool = False
    occluded: bool = False
    frames: list[int] = field(default_factory=list)
    boxes: list[Box] = field(default_factory=list)
    # The last few looks, each with whether the box was the person's alone (see `alone`).
    recent: list[tuple[Appearance, bool]] = field(default_factory=list)
    # Per kept detection, only the colour-name shares (upper then lower) and how the box was
    # seen (CLEAR, SHARED or PARTIAL): 88 bytes for the colour summary, not a whole descriptor.
    colours: list[tuple[np.ndarray, int]] = field(default_factory=list)
    # Detections are kept on frames that are multiples of `stride` (and the latest TAIL): it
    # doubles each time the track holds more than AssignOptions.keep (see _thin).
    stride: int = 1
    gallery: list[Appearance] = field(default_factory=list)
    thumb: Optional[tuple[float, Any]] = None
    # Detections that came from a person-shape detector (HOG), not from motion alone.
    shaped: int = 0
    # Detections that showed only the top of a person (Assigner.step's `tops`): a head whose
    # body the motion model read as a shadow.
    heads: int = 0
    # Whether a newer track was found to be this person and joined to it (see _reidentify).
    absorbed: bool = False

    def clothing_distance(self, look: Appearance) -> float:
        """The closest of the running mean and the recent clear views: a person turning or
        passing a shadow still matches one of their own recent views."""
        return min([distance(self.look, look)] + [distance(g, look) for g in self.gallery])


def _names(look: Appearance) -> np.ndarray:
    return np.concatenate([look.upper_names, look.lower_names]).astype(np.float32)


def new_track_id() -> str:
    """Random and local to one run: nothing links it to another video or deployment."""
    return secrets.token_hex(4)


def _inside(inner: Box, outer: Box) -> float:
    """The share of `inner`'s area that lies inside `outer`."""
    ix = max(0.0, min(inner[2], outer[2]) - max(inner[0], outer[0]))
    iy = max(0.0, min(inner[3], outer[3]) - max(inner[1], outer[1]))
    area = (inner[2] - inner[0]) * (inner[3] - inner[1])
    return ix * iy / area if area > 0 else 0.0


def seen(boxes: list[Box], j: int) -> int:
    """How box j shows its person's clothing: CLEAR (alone), SHARED, or PARTIAL."""
    x1, y1, x2, y2 = boxes[j]
    if x2 - x1 > SINGLE_ASPECT * (y2 - y1):
        return PARTIAL
    return CLEAR if alone(boxes, j) else SHARED


def alone(boxes: list[Box], j: int) -> bool:
    """True when box j has one person's shape (not the width of two people merged into one
    blob) and no other box of the frame covers more than a sliver of its clothing region (the
    inset the appearance is measured on): its colours are one person's."""
    x1, y1, x2, y2 = boxes[j]
    w, h = x2 - x1, y2 - y1
    if w > SINGLE_ASPECT * h:
        return False
    core = (x1 + INSET * w, y1 + UPPER[0] * h, x2 - INSET * w, y1 + LOWER[1] * h)
    return all(k == j or _inside(core, b) < 0.1 for k, b in enumerate(boxes))


class Assigner:
    def __init__(self, options: Optional[AssignOptions] = None) -> None:
        self.o = options or AssignOptions()
        self.live: list[LiveTrack] = []
        self.ended: list[LiveTrack] = []
        self._retired = 0  # ended[:_retired] are past the re-identification window (_retire)
        self._keep = self.o.keep  # halved while all tracks together hold more than `held` (_within_budget)

    def _cost(self, t: LiveTrack, pred: Box, box: Box, look: Appearance) -> float:
        ph = max(pred[3] - pred[1], 1.0)
        dh = max(box[3] - box[1], 1.0)
        ratio = dh / ph
        if not 1 / self.o.resize <= ratio <= self.o.resize:
            return INF
        dx = ((pred[0] + pred[2]) - (box[0] + box[2])) / 2
        # Feet are steadier than heads: a box's bottom moves less when a blob grows or shrinks.
        dy = pred[3] - box[3]
        d = float(np.hypot(dx, dy)) / ph
        gate = self.o.gate * (1.0 + 0.25 * min(t.missed, 8))
        if d > gate:
            return INF
        a = t.clothing_distance(look)
        if self._other_clothes(t, a):
            return INF
        w = self.o.appearance_weight
        return (1 - w) * (0.6 * d / gate + 0.4 * (1.0 - iou(pred, box))) + w * a + 0.01 * t.missed

    def _other_clothes(self, t: LiveTrack, clothing: float) -> bool:
        """A known person does not change clothes: a box that fits none of their clear views is
        someone else, however close (the usual swap when two people cross)."""
        return t.confirmed and len(t.gallery) >= 3 and clothing > self.o.clothing_gate

    def step(self, index: int, boxes: list[Box], looks: list[Appearance], shaped: bool = False,
             tops: Collection[int] = ()) -> None:
        """Assign the frame's boxes; `shaped` says they came from a person-shape detector, `tops`
        which of them show only the top of a person (a head whose body the detector read as a
        shadow): those are PARTIAL views, whatever their shape."""
        from scipy.optimize import linear_sum_assignment

        def view(j: int) -> int:
            return PARTIAL if j in tops else seen(boxes, j)

        preds = [t.kalman.predict() for t in self.live]
        cost = np.full((len(self.live), len(boxes)), INF)
        for i, (t, p) in enumerate(zip(self.live, preds)):
            for j, (b, lk) in enumerate(zip(boxes, looks)):
                cost[i, j] = self._cost(t, p, b, lk)
        matched_t: set[int] = set()
        matched_d: set[int] = set()
        if cost.size:
            # Confirmed tracks first: a fresh, unconfirmed track never steals a known person.
            order = sorted(range(len(self.live)), key=lambda i: (not self.live[i].confirmed, self.live[i].missed))
            rows, cols = linear_sum_assignment(cost[order])
            for r, c in zip(rows, cols):
                i = order[r]
                if cost[i, c] <= self.o.max_cost:
                    self._hit(self.live[i], index, boxes[c], looks[c], view(c), shaped)
                    self.live[i].heads += c in tops
                    matched_t.add(i)
                    matched_d.add(c)
        keep: list[LiveTrack] = []
        for i, t in enumerate(self.live):
            if i not in matched_t:
                t.missed += 1
                t.kalman.slow_down()
                # Hidden inside someone else's box: occluded, not gone.
                t.occluded = t.confirmed and any(_inside(preds[i], boxes[j]) >= 0.5 for j in matched_d)
                if not t.confirmed or t.missed > self.o.max_age:
                    if t.confirmed:
                        self.ended.append(t)
                    continue
            keep.append(t)
        held = [boxes[j] for j in matched_d]
        for j, (b, lk) in enumerate(zip(boxes, looks)):
            # A box mostly inside one a track holds is a piece of that person (an arm, a bag).
            if j not in matched_d and all(_inside(b, h) < 0.5 for h in held):
                v = view(j)
                keep.append(LiveTrack(new_track_id(), BoxKalman(b), lk, frames=[index], boxes=[b],
                                      recent=[(lk, v == CLEAR)], colours=[(_names(lk), v)], shaped=int(shaped),
                                      heads=int(j in tops)))
        self.live = keep
        self._reidentify(index)
        self._retire(index)
        self._within_budget()

    def recover(self, index: int, track: LiveTrack, box: Box, look: Appearance, view: int) -> bool:
        """A box found for `track` after the frame's assignment (re-detection near its prediction),
        taken only in clothes the person wore (the clothing gate of the assignment); True if taken."""
        if self._other_clothes(track, track.clothing_distance(look)):
            return False
        track.missed = 0
        self._hit(track, index, box, look, view, True)
        return True

    def _hit(self, t: LiveTrack, index: int, box: Box, look: Appearance, view: int, shaped: bool) -> None:
        clear = view == CLEAR
        t.shaped += shaped
        t.kalman.update(box)
        if clear:
            # A view unlike the person's usual look (a passer-by half inside the box, a shadow)
            # is not kept as one of their views: one such view would let a stranger match.
            if len(t.gallery) < 3 or distance(t.look, look) <= GALLERY_DISTANCE:
                t.gallery = (t.gallery + [look])[-GALLERY:]
            t.look = t.look.blend(look, self.o.learn)
        t.hits += 1
        t.missed = 0
        t.occluded = False
        t.frames.append(index)
        t.boxes.append(box)
        t.recent = (t.recent + [(look, clear)])[-RECENT:]
        t.colours.append((_names(look), view))
        _thin(t, self._keep)
        if t.hits == self.o.confirm:
            t.confirmed = True

    def _reidentify(self, index: int) -> None:
        """Each track confirmed on this frame is matched against the tracks lost within the
        window; the best fit (clothing within `reid_distance`, reachable on foot) absorbs it."""
        fresh = [t for t in self.live if t.confirmed and t.frames[-1] == index and not t.absorbed
                 and t.hits in (self.o.confirm, REID_AGAIN)]
        if not fresh:
            return
        lost = [t for t in self.live if t.confirmed and t.missed > 0] + self._recently_ended(index)
        for t in fresh:
            best: Optional[LiveTrack] = None
            best_d = self.o.reid_distance
            for c in lost:
                gap = t.frames[0] - c.frames[-1]
                if gap <= 0:
                    continue
                h = max(c.boxes[-1][3] - c.boxes[-1][1], 1.0)
                a, b, now = c.boxes[-1], t.boxes[0], t.boxes[-1]
                far = float(np.hypot((a[0] + a[2] - b[0] - b[2]) / 2, a[3] - b[3]))
                if far > (0.5 + self.o.walk * gap) * h or not 0.6 <= (now[3] - now[1]) / h <= 1.65:
                    continue
                d = float(np.median([c.clothing_distance(lk) for lk, _ in t.recent]))
                if d < best_d:
                    best, best_d = c, d
            if best is not None:
                self._absorb(best, t)
                lost = [c for c in lost if c is not best]

    def _absorb(self, old: LiveTrack, new: LiveTrack) -> None:
        """`old` continues as `new`: one id, one history."""
        old.kalman = new.kalman
        old.frames += new.frames
        old.boxes += new.boxes
        old.recent = (old.recent + new.recent)[-RECENT:]
        old.colours += new.colours
        old.gallery = (old.gallery + [lk for lk, clear in new.recent if clear])[-GALLERY:]
        old.stride = max(old.stride, new.stride)
        _thin(old, self._keep)
        old.hits += new.hits
        old.shaped += new.shaped
        old.heads += new.heads
        old.missed = 0
        old.occluded = False
        old.absorbed = True
        if new.thumb is not None and (old.thumb is None or new.thumb[0] > old.thumb[0]):
            old.thumb = new.thumb
        self.live = [t for t in self.live if t is not new and t is not old] + [old]
        self.ended = [t for t in self.ended if t is not old]

    def _recently_ended(self, index: int) -> list[LiveTrack]:
        """The tracks ended within the re-identification window. `ended` is in the order the
        tracks ended (each `max_age` frames after its last), so only its tail is read: a long
        video's thousands of tracks long gone are not read again at every frame."""
        recent: list[LiveTrack] = []
        for t in reversed(self.ended):
            if index - t.frames[-1] > self.o.reid_window:
                break
            recent.append(t)
        return recent[::-1]

    def _retire(self, index: int) -> None:
        """Tracks ended before the re-identification window are never compared again: they drop
        what only that comparison reads (a dozen descriptors each), keeping what the result needs."""
        while self._retired < len(self.ended) and index - self.ended[self._retired].frames[-1] > self.o.reid_window:
            t = self.ended[self._retired]
            t.gallery, t.recent = [], []
            self._retired += 1

    def _within_budget(self) -> None:
        """Every track thinned further while all together hold more than `held` detections:
        each track's bound alone let a run of 2,000 tracks hold about 1 GB."""
        tracks = self.ended + self.live
        while self._keep > 4 * TAIL and sum(len(t.frames) for t in tracks) > self.o.held:
            self._keep = max(4 * TAIL, self._keep // 2)
            for t in tracks:
                _thin(t, self._keep)

    def followed(self, index: int) -> int:
        """The tracks followed now, and those ended within the re-identification window, which
        each new track is compared with."""
        return len(self.live) + len(self._recently_ended(index))

    def confirmed(self) -> int:
        """The confirmed tracks so far, ended or followed now: what the run's result will hold."""
        return len(self.ended) + sum(1 for t in self.live if t.confirmed)

    def finish(self) -> list[LiveTrack]:
        done = self.ended + [t for t in self.live if t.confirmed]
        self.live, self.ended, self._retired = [], [], 0
        return sorted(_without_pieces(done), key=lambda t: t.frames[0])


def _thin(t: LiveTrack, keep: int) -> None:
    """Hold at most about `keep` detections: past that, only the first in each run of `stride`
    frames stays (with the first and the latest TAIL; not the multiples of the stride, which a
    track seen on odd frames only never falls on), the stride doubling until about half
    of `keep` is left, so what is kept is spread evenly over the track's life (its colour median
    and boxes still describe all of it) and a track followed for hours holds no more than one
    followed for minutes."""
    keep = max(keep, 4 * TAIL)
    if len(t.frames) <= keep:
        return
    while True:
        n = len(t.frames)
        idx = [i for i in range(n) if i == 0 or i >= n - TAIL or t.frames[i] // t.stride != t.frames[i - 1] // t.stride]
        t.frames = [t.frames[i] for i in idx]
        t.boxes = [t.boxes[i] for i in idx]
        t.colours = [t.colours[i] for i in idx]
        if len(idx) <= (keep + TAIL) // 2:
            return
        t.stride *= 2


# A track whose box lay mostly inside another track's box on more than this share of its frames
# was a piece of that person (a bag, a half body the background model split off), not a person.
PIECE_SHARE = 0.5


def _without_pieces(tracks: list[LiveTrack]) -> list[LiveTrack]:
    """The tracks less the pieces of others: the rule that keeps a new track from starting on a
    piece of a person, applied to the whole of each track once the video is done (a piece can
    outlast the frame that started it, or start before its person's track). A longer track is
    one with more detections; a thinned one (_thin) is read between the frames it kept."""
    on: dict[int, list[tuple[int, Box]]] = {}
    for i, t in enumerate(tracks):
        for f, box in zip(t.frames, t.boxes):
            on.setdefault(f, []).append((i, box))
    thinned = [t for t in tracks if t.stride > 1]

    def within(t: LiveTrack, f: int, box: Box) -> bool:
        return any(tracks[j] is not t and tracks[j].hits > t.hits and _inside(box, other) >= 0.5 for j, other in on[f]) or \
            any(u is not t and u.hits > t.hits and (b := _box_on(u, f)) is not None and _inside(box, b) >= 0.5
                for u in thinned)

    def piece(t: LiveTrack) -> bool:
        return sum(within(t, f, box) for f, box in zip(t.frames, t.boxes)) > PIECE_SHARE * len(t.frames)

    return [t for t in tracks if not piece(t)]


def _box_on(t: LiveTrack, f: int) -> Optional[Box]:
    """`t`'s box on frame `f`: the one kept, or, between two kept detections no further apart than
    thinning set them (2 strides), the box interpolated between them."""
    k = bisect_left(t.frames, f)
    if k < len(t.frames) and t.frames[k] == f:
        return t.boxes[k]
    if 0 < k < len(t.frames) and t.frames[k] - t.frames[k - 1] <= 2 * t.stride:
        a, b = t.frames[k - 1], t.frames[k]
        w = (f - a) / (b - a)
        return tuple(x + (y - x) * w for x, y in zip(t.boxes[k - 1], t.boxes[k]))  # type: ignore[return-value]
    return None
