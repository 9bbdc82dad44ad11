"""Faces no person box will ever show. The output is held to photo strength (HOG at full size,
upsampling 2: faces from about 20 px); the video search reaches about 40 px, and the head zones
of the people tracked cover smaller faces. But whoever keeps still from the first frame is
learnt into the background model and never tracked, and someone seated or cut by the frame is
no shape HOG's people detector knows: a pianist's 26 px face showed in the first 20 frames of a
stage clip (and, with the camera fixed, would have for the whole run).

So every STRONG_EVERY-th frame of the background model's learning period is searched at photo
strength, and each face found is covered until the next such search; a face found at the same
place by two of them is someone keeping still, whose place stays covered to the end of the run
(at most MAX_PLACES). A passer-by found once leaves no patch behind: the head zones follow them."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import numpy as np

from ..anonymize.cover import apply_cover, region_for_box
from ..anonymize.detect import FaceFinder, Search, iou
from .motion import Box
from .people import LEARNING_FRAMES

# Four times the video search's cost a frame, so not on every frame of the learning period.
STRONG_EVERY = 5
# Photo strength, with frames wider than this scaled to it (1080p: faces from about 30 px).
PHOTO_SIDE = 1280
PHOTO_STRENGTH = Search(max_side=PHOTO_SIDE, upsample=2)
# The same face found again: its boxes overlap this much (a seated person sways a little).
SAME_PLACE = 0.3
MAX_PLACES = 200


@dataclass
class _Place:
    box: Box
    found: int  # searches that found a face here
    last: int  # the frame of the latest


class FirstFaces:
    """The places to cover in each frame before anything else sees it (`cover`)."""

    def __init__(self, finder: Optional[FaceFinder], margin: float, mode: str) -> None:
        self._finder = finder
        self._margin = margin
        self._mode = mode
        self._places: list[_Place] = []
        self._latest = -1  # the frame of the latest search

    def cover(self, index: int, rgb: np.ndarray) -> np.ndarray:
        if self._finder is not None and index < LEARNING_FRAMES and index % STRONG_EVERY == 0:
            self._search(index, rgb)
        # Found twice: kept still. Found lately: until the search after next (a face whose score
        # hovers at the bar is not found by every search).
        recent = self._latest - STRONG_EVERY if index < LEARNING_FRAMES else LEARNING_FRAMES
        boxes = [p.box for p in self._places if p.found >= 2 or p.last >= recent]
        if not boxes:
            return rgb
        h, w = rgb.shape[:2]
        return apply_cover(rgb, [region_for_box(b, self._margin, w, h) for b in boxes], self._mode)

    def _search(self, index: int, rgb: np.ndarray) -> None:
        assert self._finder is not None
        self._latest = index
        for box in self._finder.search(rgb, PHOTO_STRENGTH):  # under dlib's bar, as the video path searches
            same = [p for p in self._places if iou(p.box, box) > SAME_PLACE]
            if same:
                same[0].box, same[0].found, same[0].last = box, same[0].found + 1, index
            elif len(self._places) < MAX_PLACES:
                self._places.append(_Place(box, 1, index))
