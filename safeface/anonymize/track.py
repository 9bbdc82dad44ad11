"""A short memory of where faces were, so a frame where the detector misses a face still gets
its cover: boxes are interpolated across a gap, held a few frames after the last detection and
put in place a few frames before the first one."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional

from .detect import Box

# Each frame without a detection grows a held box by this fraction, up to the cap: the face
# may have moved while the detector was not seeing it.
GROWTH_PER_FRAME = 0.08
MAX_GROWTH = 0.5
# Two detections belong to one face when their centres are closer than this many box sides.
MATCH_DISTANCE = 0.75


@dataclass
class _Track:
    obs: list[tuple[int, Box]] = field(default_factory=list)

    @property
    def last(self) -> tuple[int, Box]:
        return self.obs[-1]


def _centre_size(b: Box) -> tuple[float, float, float]:
    return (b[0] + b[2]) / 2, (b[1] + b[3]) / 2, max(b[2] - b[0], b[3] - b[1], 1.0)


def _grow(b: Box, missed: int) -> Box:
    g = min(MAX_GROWTH, GROWTH_PER_FRAME * missed)
    w, h = b[2] - b[0], b[3] - b[1]
    return (b[0] - g * w / 2, b[1] - g * h / 2, b[2] + g * w / 2, b[3] + g * h / 2)


def _lerp(a: Box, b: Box, t: float) -> Box:
    return tuple(x + (y - x) * t for x, y in zip(a, b))  # type: ignore[return-value]


class FaceTracker:
    """Feed it each frame's detections in order with `observe`; ask `boxes_at(i)` once frame
    `i + hold` has been observed, so that look-ahead is available for frame i."""

    def __init__(self, hold: int) -> None:
        self.hold = max(0, int(hold))
        self._tracks: list[_Track] = []
        self.track_count = 0

    def observe(self, index: int, boxes: list[Box]) -> None:
        live = [t for t in self._tracks if index - t.last[0] <= self.hold + 1]
        taken: set[int] = set()
        for box in boxes:
            cx, cy, size = _centre_size(box)
            best: Optional[int] = None
            best_d = MATCH_DISTANCE
            for i, tr in enumerate(live):
                if i in taken or tr.last[0] == index:
                    continue
                tx, ty, tsize = _centre_size(tr.last[1])
                d = ((cx - tx) ** 2 + (cy - ty) ** 2) ** 0.5 / max(size, tsize)
                if d < best_d:
                    best, best_d = i, d
            if best is None:
                tr = _Track()
                self._tracks.append(tr)
                self.track_count += 1
            else:
                taken.add(best)
                tr = live[best]
            tr.obs.append((index, box))

    def boxes_at(self, index: int) -> list[Box]:
        out: list[Box] = []
        for tr in self._tracks:
            before = [o for o in tr.obs if o[0] <= index]
            after = [o for o in tr.obs if o[0] >= index]
            a = before[-1] if before else None
            b = after[0] if after else None
            if a is not None and a[0] == index:
                out.append(a[1])
            elif a is not None and b is not None:
                t = (index - a[0]) / (b[0] - a[0])
                gap = min(index - a[0], b[0] - index)
                out.append(_grow(_lerp(a[1], b[1], t), gap))
            elif a is not None and index - a[0] <= self.hold:
                out.append(_grow(a[1], index - a[0]))
            elif b is not None and b[0] - index <= self.hold:
                out.append(_grow(b[1], b[0] - index))
        return out

    def forget_before(self, index: int) -> None:
        """Drop what no frame from `index` on can need (bounded memory on long videos)."""
        keep: list[_Track] = []
        for tr in self._tracks:
            if tr.last[0] < index - self.hold:
                continue
            # The latest observation before `index` is still needed to interpolate or hold.
            older = [o for o in tr.obs if o[0] < index]
            tr.obs = older[-1:] + [o for o in tr.obs if o[0] >= index]
            keep.append(tr)
        self._tracks = keep
