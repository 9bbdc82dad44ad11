"""Frame-to-frame assignment: each track's Kalman prediction is matched to the frame's person
boxes by the Hungarian method (scipy's linear_sum_assignment) on a cost of distance, overlap and
clothing; a track unseen for up to `max_age` frames keeps predicting and can be found again."""

from __future__ import annotations

import secrets
from dataclasses import dataclass, field
from typing import Optional

import numpy as np

from ..anonymize.detect import iou
from .appearance import Appearance, distance
from .motion import Box, BoxKalman

INF = 1e6


@dataclass
class AssignOptions:
    """`confirm`: detections in a row before a track counts; `max_age`: frames a confirmed track
    is predicted without a detection before it ends (25 = 2.5 s at 10 fps); `gate`: farthest a
    detection may be from the prediction, in person heights; `max_cost`: worst accepted match."""

    confirm: int = 3
    max_age: int = 25
    gate: float = 0.5
    max_cost: float = 0.7
    appearance_weight: float = 0.45
    learn: float = 0.1


@dataclass
class LiveTrack:
    track_id: str
    kalman: BoxKalman
    look: Appearance
    hits: int = 1
    missed: int = 0
    confirmed: bool = False
    frames: list[int] = field(default_factory=list)
    boxes: list[Box] = field(default_factory=list)


def new_track_id() -> str:
    """Random and local to one run: nothing links it to another video or deployment."""
    return secrets.token_hex(4)


class Assigner:
    def __init__(self, options: Optional[AssignOptions] = None) -> None:
        self.o = options or AssignOptions()
        self.live: list[LiveTrack] = []
        self.ended: list[LiveTrack] = []

    def _cost(self, t: LiveTrack, pred: Box, box: Box, look: Appearance) -> float:
        ph = max(pred[3] - pred[1], 1.0)
        dh = max(box[3] - box[1], 1.0)
        ratio = dh / ph
        if not 0.6 <= ratio <= 1.65:
            return INF
        dx = ((pred[0] + pred[2]) - (box[0] + box[2])) / 2
        # Feet are steadier than heads: a box's bottom moves less when a blob grows or shrinks.
        dy = pred[3] - box[3]
        d = float(np.hypot(dx, dy)) / ph
        gate = self.o.gate * (1.0 + 0.25 * min(t.missed, 8))
        if d > gate:
            return INF
        a = distance(t.look, look)
        w = self.o.appearance_weight
        return (1 - w) * (0.6 * d / gate + 0.4 * (1.0 - iou(pred, box))) + w * a + 0.01 * t.missed

    def step(self, index: int, boxes: list[Box], looks: list[Appearance]) -> None:
        from scipy.optimize import linear_sum_assignment

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
                    self._hit(self.live[i], index, boxes[c], looks[c])
                    matched_t.add(i)
                    matched_d.add(c)
        keep: list[LiveTrack] = []
        for i, t in enumerate(self.live):
            if i not in matched_t:
                t.missed += 1
                t.kalman.slow_down()
                if not t.confirmed or t.missed > self.o.max_age:
                    if t.confirmed:
                        self.ended.append(t)
                    continue
            keep.append(t)
        for j, (b, lk) in enumerate(zip(boxes, looks)):
            if j not in matched_d:
                keep.append(LiveTrack(new_track_id(), BoxKalman(b), lk, frames=[index], boxes=[b]))
        self.live = keep

    def recover(self, index: int, track: LiveTrack, box: Box, look: Appearance) -> None:
        """A box found for `track` after the frame's assignment (re-detection near its prediction)."""
        track.missed = 0
        self._hit(track, index, box, look)

    def _hit(self, t: LiveTrack, index: int, box: Box, look: Appearance) -> None:
        t.kalman.update(box)
        t.look = t.look.blend(look, self.o.learn)
        t.hits += 1
        t.missed = 0
        t.frames.append(index)
        t.boxes.append(box)
        if t.hits >= self.o.confirm:
            t.confirmed = True

    def finish(self) -> list[LiveTrack]:
        done = self.ended + [t for t in self.live if t.confirmed]
        self.live, self.ended = [], []
        return sorted(done, key=lambda t: t.frames[0])
