"""Faces no person box will show. The output is held to photo strength (HOG at full size,
upsampling 2: faces from about 20 px); the video search reaches about 40 px, and the head zones
of the people tracked cover smaller faces. But whoever keeps still from the first frame is
learnt into the background model and never tracked, and someone seated or cut by the frame is
no shape HOG's people detector knows: a pianist's 26 px face showed in the first 20 frames of a
stage clip (and, with the camera fixed, would have for the whole run).

So every STRONG_EVERY-th frame of the background model's learning period is searched at photo
strength, and each face found there becomes a place. From then on, every frame, the
neighbourhood of each place is searched again at photo strength (a small crop, its face shrunk
to PLACE_FACE: cheap), and the faces found there are covered, and for HOLD frames after (a face
whose score hovers at the bar is not found in every frame). A face that sways stays in its
place's crop; one that walks off leaves no patch behind (the head zones follow a walker). Small
faces found past MAX_PLACES are covered where found for the rest of the run."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import numpy as np

from ..anonymize.alternating import halves, has_alternating_lines
from ..anonymize.cover import apply_cover, region_for_box
from ..anonymize.detect import SEARCH_MARGIN, DetectionEngine, FaceFinder, Search, iou, merge_boxes, scaled
from ..anonymize.exposure import dark_view, narrow_view
from ..errors import ImageError
from .motion import Box
from .people import LEARNING_FRAMES

# A whole-frame search at photo strength costs four times the video search's, so only every
# STRONG_EVERY-th frame of the learning period has one.
STRONG_EVERY = 10
# Photo strength, with frames wider than this scaled to it (1080p: faces from about 30 px).
PHOTO_SIDE = 1280
PHOTO_STRENGTH = Search(max_side=PHOTO_SIDE, upsample=2)
# A place is searched again this many face widths around its face, every frame.
AROUND = 1.0
# Frames a place stays covered after its face was last found.
HOLD = 5
# A face found again where a place is: their boxes overlap this much.
SAME_PLACE = 0.3
# Places are kept for faces under this many times the video search's smallest (larger ones it
# finds itself), at most MAX_PLACES of them: each costs a small search a frame. Faces found past
# that are covered where found for the rest of the run, unsearched, at most MAX_BEYOND of them
# (a first second tiled with 1,400 small faces would add a quarter second of covering a frame):
# past it the run is refused, as a frame of more person boxes than tracking follows is.
REACH = 1.5
MAX_PLACES = 16
# A place's crop is searched with its face shrunk to at most this many px: twice the narrowest
# face photo strength finds (20 px), so the face may shrink to half before the search loses it.
PLACE_FACE = 40.0
MAX_BEYOND = 100


@dataclass
class _Place:
    anchor: Box  # where its face was found by a whole-frame search: the crop searched is around it
    faces: list[Box]  # the faces found in that crop last time
    missed: int = 0  # frames since a face was last found there


class FirstFaces:
    """The places to cover in each frame before anything else sees it (`cover`). Without a
    finder (a tracker driven frame by frame, as tests do) nothing is searched."""

    def __init__(self, finder: Optional[FaceFinder], search: Search, margin: float, mode: str) -> None:
        self._finder = finder
        self._search = search  # the video path's, which finds faces from its smallest_face
        self._engine = finder.engine if finder is not None and isinstance(finder.engine, DetectionEngine) else (
            DetectionEngine() if finder is not None else None)
        self._margin = margin
        self._mode = mode
        self._places: list[_Place] = []
        # Small faces found past MAX_PLACES: covered where found for the rest of the run (a spare
        # cover where a passer-by's face was costs little; a still face left bare would show).
        self._beyond: list[Box] = []

    def cover(self, index: int, rgb: np.ndarray) -> np.ndarray:
        if self._finder is None:
            return rgb
        h, w = rgb.shape[:2]
        if index < LEARNING_FRAMES and index % STRONG_EVERY == 0:
            self._search_frame(rgb)
        elif self._places:
            self._search_places(rgb)
        shown = [b for p in self._places if p.missed <= HOLD for b in p.faces] + self._beyond
        if not shown:
            return rgb
        return apply_cover(rgb, [region_for_box(b, self._margin, w, h) for b in shown], self._mode)

    def _search_frame(self, rgb: np.ndarray) -> None:
        """The whole frame searched at photo strength, under dlib's bar as the video path searches:
        each small face found is its place's face now, or a new place."""
        finder = self._finder
        if finder is None:  # cover() searches nothing without one
            return
        h, w = rgb.shape[:2]
        small = REACH * self._search.smallest_face(w, h)
        found = [b for b in merge_boxes(finder.search(rgb, PHOTO_STRENGTH)) if b[2] - b[0] < small]
        for p in self._places:
            p.missed += 1
        for b in found:
            same = [p for p in self._places if iou(p.anchor, b) > SAME_PLACE]
            if same:
                same[0].faces, same[0].missed = [b], 0
            elif len(self._places) < MAX_PLACES:
                self._places.append(_Place(b, [b]))
            elif all(iou(k, b) <= SAME_PLACE for k in self._beyond):
                self._beyond.append(b)
        if len(self._beyond) > MAX_BEYOND:
            raise ImageError(f"the first second shows more than {MAX_PLACES + MAX_BEYOND} small faces, more than "
                             "tracking covers; nothing was written. Anonymize this video instead.")

    def _search_places(self, rgb: np.ndarray) -> None:
        """Each place's neighbourhood searched at photo strength, in the frame as the check sees
        it: whole, and the brightened or stretched views of the whole frame (exposure.py)."""
        engine = self._engine
        if engine is None:  # cover() searches nothing without a finder, which gives the engine
            return
        h, w = rgb.shape[:2]
        # At the scale the whole-frame search found the faces: searched at full size, sixteen
        # places of 4K faces took 4 s of CPU a frame, nine times what finds the same faces.
        k = PHOTO_STRENGTH.scale(w, h)
        small = rgb if k >= 1.0 else scaled(rgb, k)
        sh, sw = small.shape[:2]
        views = [small] + [v for v in (dark_view(small, sample=True), narrow_view(small, sample=True)) if v is not None]
        for p in self._places:
            # Around the anchor, not the latest face: a passer-by's face crossing the crop would
            # otherwise draw the place away with them, off the face still sitting there.
            x1, y1, x2, y2 = (c * k for c in p.anchor)
            side = AROUND * max(x2 - x1, y2 - y1)
            cx1, cy1 = max(0, int(x1 - side)), max(0, int(y1 - side))
            cx2, cy2 = min(sw, int(np.ceil(x2 + side))), min(sh, int(np.ceil(y2 + side)))
            found: list[Box] = []
            if cx2 > cx1 and cy2 > cy1:
                # A face wider than PLACE_FACE is searched shrunk to it: sixteen 1080p faces of
                # 110 px took 2 s of CPU a frame at the frame's scale.
                f = min(1.0, PLACE_FACE / max(x2 - x1, 1.0))
                for v in views:
                    part = v[cy1:cy2, cx1:cx2]
                    if f < 1.0:
                        part = scaled(part, f)
                    found += [((r.left() / f + cx1) / k, (r.top() / f + cy1) / k, (r.right() / f + cx1) / k,
                               (r.bottom() / f + cy1) / k) for r, _ in
                              engine.detect_rects(part, "hog", PHOTO_STRENGTH.upsample, -SEARCH_MARGIN)]
                found += self._in_halves(rgb, (cx1 / k, cy1 / k, cx2 / k, cy2 / k), k * f)
            if found:
                p.faces, p.missed = merge_boxes(found), 0  # all of them: a spare cover costs little
            else:
                p.missed += 1

    def _in_halves(self, rgb: np.ndarray, crop: Box, k: float) -> list[Box]:
        """The faces in a place's crop (full-frame px) with every other line inverted, searched in
        its halves as the whole-frame search does (FaceFinder._search): that search found such a
        face at the first second, and the crop alone lost it five frames later. `k`: the scale
        the crop's plain pixels were searched at; the half's copy is twice that (at most 1)."""
        engine = self._engine
        if engine is None:  # cover() searches nothing without a finder, which gives the engine
            return []
        x0, y0 = int(crop[0]), int(crop[1])
        part = rgb[y0:int(np.ceil(crop[3])), x0:int(np.ceil(crop[2]))]
        if not has_alternating_lines(part):
            return []
        hk = min(1.0, 2.0 * k)
        out: list[Box] = []
        for half in halves(part):
            if hk < 1.0:
                half = scaled(half, hk)
            f = 2.0 / hk  # from the half's copy to full-frame px
            out += [(x0 + r.left() * f, y0 + r.top() * f, x0 + r.right() * f, y0 + r.bottom() * f) for r, _ in
                    engine.detect_rects(half, "hog", PHOTO_STRENGTH.upsample, -SEARCH_MARGIN)]
        return out
