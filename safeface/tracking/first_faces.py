"""Faces no person box will show. The output is held to photo strength (HOG at full size,
upsampling 2: faces from about 20 px); the video search reaches about 40 px, and the head zones
of the people tracked cover smaller faces. But whoever keeps still from the first frame is
learnt into the background model and never tracked, and someone seated or cut by the frame is
no shape HOG's people detector knows: a pianist's 26 px face showed in the first 20 frames of a
stage clip (and, with the camera fixed, would have for the whole run).

So the background model's learning period is searched at photo strength, its first frame and
one frame drawn at random from each later STRONG_EVERY (a whole-frame search on known frames can
be blinded by hiding the faces there alone), and each face found there becomes a place. From then on, every frame, the
neighbourhood of each place is searched again at photo strength (a small crop, its face shrunk
to PLACE_FACE: cheap), and the faces found there are covered, and for HOLD frames after (a face
whose score hovers at the bar is not found in every frame). A face that sways stays in its
place's crop; one that walks off leaves no patch behind (the head zones follow a walker). Small
faces found past MAX_PLACES are covered where found until the next scene cut.

Later in the run, the whole-frame searches are made again after a scene cut (most of the frame
changing at once: edited footage seats new people still), and a tile of the frame is searched at
photo strength once in every ROLL_EVERY frames, tile after tile, so a still face not found in those
frames (turned away, under the bar then) is found within one pass. Which frame of the ROLL_EVERY
is drawn at random: a clip that flashed white every frame the search was due (every 12th, and
the whole-frame searches' every 10th, a sixth of its frames) blinded every search and showed a
still face for the whole run. A whole-frame search is made again on a frame much brighter or
darker than its own (a flash on it), and on a frame drawn at random after it (a face blurred on
the due frames alone changes no brightness), at most FLASH_RETRIES times after each due one:
a white frame at 0, 10 and 20 left the first second's faces to the rolling pass. A place whose crop has not
changed since its last search keeps that search's answer (a still face gives the same one),
searched again at least every REFRESH frames, and at most PLACE_BUDGET changed places are
searched a frame: the others stay covered where their faces were until their turn."""

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

# A whole-frame search at photo strength costs four times the video search's, so only one frame
# in each STRONG_EVERY of the learning period has one (its first, then one drawn from each).
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
# A scene cut: more than CUT_SHARE of a small grey copy's pixels (CUT_SIDE px on its long side)
# change by more than CUT_LEVELS at once. The first second's searches are made again from it,
# at most one every STRONG_EVERY frames (a strobe cannot make every frame a whole-frame search).
CUT_SIDE = 64
CUT_LEVELS = 40
CUT_SHARE = 0.5
# A flash: the mean of that grey copy lies more than FLASH_LEVELS from that of the frame a
# whole-frame search was made on, before the next is due. The search is made again on such a
# frame, at most FLASH_RETRIES times after each due one: a white frame at 0, 10 and 20 hid every
# face from the first second's searches, and a strobe must not make every frame one. Movement
# moves the mean little (the shared clips' frames, at most 21 levels from one under ten before:
# the stage clip's camera), where a share of pixels changed read sixteen faces swaying, or the
# stage clip's camera, as a flash (and the search it added made a false face a place).
FLASH_LEVELS = 30.0
FLASH_RETRIES = 2
# One of those times is kept for a frame drawn at random from the STRONG_EVERY - 1 after each due
# search, whatever its brightness: a face blurred on the due frames alone (0, 10, 20: no change
# in brightness to tell) showed in every other frame of the first second, and of a cut's (and
# flashes on the two frames after each must not spend it first).
# A place's crop whose every 8x8 block differs from the crop its last search read by under
# SAME_LEVELS on average (in each view searched) keeps that search's answer: a still face is
# searched again every REFRESH frames, not every frame (sixteen places cost 0.7 s of CPU a frame
# at 1080p, each the same search of the same pixels).
SAME_LEVELS = 3.0
REFRESH = 15
# A place whose face no search has found for more than GONE frames (someone who got up; one
# standing in a crowd, found once) is searched on a frame drawn from each REFRESH, changed or not:
# on vtest.avi such a place was searched in 264 of 300 frames as others crossed it, and found a
# face there twice (a third of the step's CPU). A face shown there again shows until that frame
# (covering such places while changed instead put a spare cover in 224 of vtest's 300 frames).
GONE = LEARNING_FRAMES
# Changed places searched in one frame, the longest unsearched first; the others are covered
# where their faces were (or where they were found) until their turn.
PLACE_BUDGET = 2
# The rolling search: a tile in every ROLL_EVERY frames after the learning period, its core
# ROLL_CORE times the widest face a place is kept for, and at least 1/ROLL_SPLIT of the frame's
# long side (a pass of at most about 12 tiles at any size), overlapping its neighbours by that
# face, so every face under it lies whole in some tile. On vtest.avi (768x576, 6 tiles) a pass
# takes 72 frames, and a tile costs about a third of a whole-frame search.
ROLL_EVERY = 12
ROLL_CORE = 4
ROLL_SPLIT = 4


@dataclass
class _Place:
    anchor: Box  # where its face was found by a whole-frame search: the crop searched is around it
    faces: list[Box]  # the faces found in that crop last time
    missed: int = 0  # frames since a face was last found there
    # What its last search read (each view's crop) and when: unchanged pixels keep its answer.
    seen: Optional[list[np.ndarray]] = None
    searched: int = -1
    # Whether that search found a face: a whole-frame search that missed it since (a flash, a
    # score at the bar) does not make the same pixels a miss.
    found: bool = False
    # Once its face has been gone GONE frames, the first frame it is searched again on (drawn:
    # a face shown there on the frame after a known one would show until the next).
    turn: int = 0


class FirstFaces:
    """The places to cover in each frame before anything else sees it (`cover`). Without a
    finder (a tracker driven frame by frame, as tests do) nothing is searched."""

    def __init__(self, finder: Optional[FaceFinder], search: Search, margin: float, mode: str,
                 rng: Optional[np.random.Generator] = None) -> None:
        self._finder = finder
        # Draws the rolling search's frames (from the OS's entropy unless a test seeds it).
        self._rng = rng if rng is not None else np.random.default_rng()
        # Draws the later whole-frame searches' frames, in a stream of its own: the rolling
        # search's frames drawn from a seed stay those it drew before these were drawn.
        self._due_rng = self._rng.spawn(1)[0]
        self._turn_rng = self._rng.spawn(1)[0]  # long-gone places' turns (GONE), the same way
        self._search = search  # the video path's, which finds faces from its smallest_face
        self._engine = finder.engine if finder is not None and isinstance(finder.engine, DetectionEngine) else (
            DetectionEngine() if finder is not None else None)
        self._margin = margin
        self._mode = mode
        self._places: list[_Place] = []
        # Small faces found past MAX_PLACES: covered where found until the next scene cut (a spare
        # cover where a passer-by's face was costs little; a still face left bare would show).
        self._beyond: list[Box] = []
        # After a scene cut, the earlier scene's such faces, covered until the cut's own searches
        # are made (a flash read as a cut must not bare them), then dropped: edited footage of
        # many crowded scenes was refused for their sum, and kept every scene's patches.
        self._fading: list[Box] = []
        # Small faces the rolling search found with no place free: covered for one pass of it,
        # when it finds them again if they are still there (never refused: a busy scene's
        # passers-by are found over a long run); one entry a face, refreshed when found again.
        self._brief: list[tuple[int, Box]] = []
        self._pass = 0
        # Frames due a whole-frame search (the first second's, then a cut's), the last made, the
        # small grey copy of the previous frame (scene cuts), and the rolling search's next tile.
        self._due: list[int] = list(range(0, LEARNING_FRAMES, STRONG_EVERY))
        self._strong = -STRONG_EVERY
        self._grey: Optional[np.ndarray] = None
        # The mean of the grey copy of the frame the last whole-frame search was made on, and how
        # many more times a flash may have it made again before the next due one.
        self._searched: Optional[float] = None
        self._retries = 0
        # The frame drawn after the last due search to search the whole frame again on.
        self._check_at = -1
        self._tile = 0
        self._roll_at = self._rolled_after(LEARNING_FRAMES - 1)
        self._waiting: list[_Place] = []

    def cover(self, index: int, rgb: np.ndarray) -> np.ndarray:
        if self._finder is None:
            return rgb
        h, w = rgb.shape[:2]
        if self._cut(rgb):
            self._due = [index + k * STRONG_EVERY for k in range(LEARNING_FRAMES // STRONG_EVERY)]
            self._fading, self._beyond = (self._fading + self._beyond)[-MAX_BEYOND:], []
        self._waiting = []
        if self._due and self._due[0] <= index and index - self._strong >= STRONG_EVERY:
            self._due = [d for d in self._due if d > index]
            self._strong, self._searched, self._retries = index, self._level(), FLASH_RETRIES
            self._check_at = index + 1 + int(self._rng.integers(STRONG_EVERY - 1))
            if self._due:
                # The next one on a frame drawn from its STRONG_EVERY, not the first: hiding the
                # faces on 0-2, 10-12 and 20-22 blinded every search whose drawn frame fell there.
                self._due[0] += int(self._due_rng.integers(STRONG_EVERY))
            self._search_frame(index, rgb, (0, 0, w, h))
            if not self._due:
                self._fading = []
        elif self._again(index):
            # Not due: the schedule (and a strobe's cost) stays that of the due searches.
            self._searched, self._retries = self._level(), self._retries - 1
            self._search_frame(index, rgb, (0, 0, w, h))
        else:
            if self._places:
                self._search_places(index, rgb)
            if index >= self._roll_at:
                self._roll_at = self._rolled_after(index)
                self._search_frame(index, rgb, self._next_tile(w, h))
        self._brief = [(until, b) for until, b in self._brief if until > index]
        shown = [b for p in self._places if p.missed <= HOLD for b in p.faces] + self._beyond + self._fading
        shown += [b for _, b in self._brief]
        # A changed place not searched this frame: covered where its faces were and where it was
        # found, grown by half a face (a face swaying in its seat while it waits its turn).
        shown += [_grown(b) for p in self._waiting for b in [p.anchor] + p.faces]
        if not shown:
            return rgb
        return apply_cover(rgb, [region_for_box(b, self._margin, w, h) for b in shown], self._mode)

    def _cut(self, rgb: np.ndarray) -> bool:
        """Whether most of the frame changed at once since the previous one (a scene cut)."""
        import cv2

        h, w = rgb.shape[:2]
        f = CUT_SIDE / max(h, w, 1)
        grey = cv2.resize(cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY), (max(1, round(w * f)), max(1, round(h * f))),
                          interpolation=cv2.INTER_AREA)
        before, self._grey = self._grey, grey
        if before is None or before.shape != grey.shape:
            return False
        return float(np.mean(cv2.absdiff(grey, before) > CUT_LEVELS)) > CUT_SHARE

    def _level(self) -> Optional[float]:
        """The mean of this frame's grey copy (`_cut` made it)."""
        return None if self._grey is None else float(self._grey.mean())

    def _again(self, index: int) -> bool:
        """Whether the whole-frame search is made again on this frame, before the next is due: the
        frame drawn for it, or a frame much brighter or darker than the one it was last made on (a
        flash that hid the faces there). Told after, not before: frame 0 has no frame before it to
        tell a flash by, and a face hidden on that frame alone changes no brightness."""
        searched, level = self._searched, self._level()
        if self._retries <= 0 or index - self._strong >= STRONG_EVERY or searched is None or level is None:
            return False
        kept = 1 if self._check_at > index else 0  # the drawn frame's, still to come
        return index == self._check_at or (self._retries > kept and abs(level - searched) > FLASH_LEVELS)

    def _rolled_after(self, index: int) -> int:
        """The frame of the next rolling search: one drawn from the ROLL_EVERY frames after those
        holding `index`."""
        return (index // ROLL_EVERY + 1) * ROLL_EVERY + int(self._rng.integers(ROLL_EVERY))

    def _next_tile(self, w: int, h: int) -> Box:
        """The rolling search's next tile (full-frame px): a grid of cores (ROLL_CORE place-sized
        faces wide, or more), each grown by one such face to the right and below, in turn."""
        face = REACH * self._search.smallest_face(w, h)
        core = max(ROLL_CORE * face, max(w, h) / ROLL_SPLIT, 1.0)
        cols, rows = int(np.ceil(w / core)), int(np.ceil(h / core))
        # A pass, and the most its next visit to a tile can come later (a frame drawn later).
        self._pass = (cols * rows + 1) * ROLL_EVERY
        i = self._tile % (cols * rows)
        self._tile = i + 1
        x, y = (i % cols) * core, (i // cols) * core
        return (x, y, min(float(w), x + core + face), min(float(h), y + core + face))

    def _search_frame(self, index: int, rgb: np.ndarray, area: Box) -> None:
        """The frame (or a tile of it, `area`) searched at photo strength, under dlib's bar as the
        video path searches: each small face found is its place's face now, or a new place."""
        finder = self._finder
        if finder is None:  # cover() searches nothing without one
            return
        h, w = rgb.shape[:2]
        small = REACH * self._search.smallest_face(w, h)
        whole = area == (0, 0, w, h)
        if whole:
            found = finder.search(rgb, PHOTO_STRENGTH, merged=False)
        else:
            # At the whole frame's photo-strength scale: the tile's copy is as many px as that
            # frame's would hold there.
            x0, y0 = int(area[0]), int(area[1])
            part = rgb[y0:int(np.ceil(area[3])), x0:int(np.ceil(area[2]))]
            side = max(1, round(max(part.shape[:2]) * PHOTO_STRENGTH.scale(w, h)))
            found = [(b[0] + x0, b[1] + y0, b[2] + x0, b[3] + y0)
                     for b in finder.search(part, Search(max_side=side, upsample=PHOTO_STRENGTH.upsample),
                                            merged=False)]
        # Judged small in the view that saw it small, then merged: a face under the reach that
        # another view (one channel, a median) found a little wider merged into a box past the
        # reach, and was left to a search that cannot see it.
        found = merge_boxes([b for b in found if b[2] - b[0] < small])
        if whole:
            for p in self._places:
                p.missed += 1
        for b in found:
            same = [p for p in self._places if iou(p.anchor, b) > SAME_PLACE]
            if same:
                same[0].faces, same[0].missed = [b], 0
            elif len(self._places) < MAX_PLACES or self._free_place():
                self._places.append(_Place(b, [b]))
            elif not whole:
                self._keep_brief(index + self._pass + 1, b)
            elif all(iou(k, b) <= SAME_PLACE for k in self._beyond):
                self._beyond.append(b)
        if len(self._beyond) > MAX_BEYOND:
            raise ImageError(f"one scene shows more than {MAX_PLACES + MAX_BEYOND} small faces sitting still, more "
                             "than tracking covers; nothing was written. Anonymize this video instead.")

    def _keep_brief(self, until: int, box: Box) -> None:
        """A face the rolling search found with no place free, covered until `until`. Found again
        (the next pass, or the next tile, which overlaps this one by a face) it refreshes its
        entry: each face kept an entry per sighting, and about 60 such faces filled MAX_BEYOND, so
        those found after were left bare once their first entry ran out. The two boxes' union is
        kept, as merge_boxes keeps it: a face behind another must not lose its cover to it."""
        for k, (_, kept) in enumerate(self._brief):
            if iou(kept, box) > SAME_PLACE:
                self._brief[k] = (until, merge_boxes([kept, box])[0])
                return
        if len(self._brief) < MAX_BEYOND:
            self._brief.append((until, box))

    def _free_place(self) -> bool:
        """Drop the place whose face has been gone longest, if one has been gone for longer than
        the learning period (a scene cut away, a passer-by), to make room for a new face."""
        gone = max(self._places, key=lambda p: p.missed, default=None)
        if gone is None or gone.missed <= LEARNING_FRAMES:
            return False
        self._places.remove(gone)
        return True

    def _search_places(self, index: int, rgb: np.ndarray) -> None:
        """Each place's neighbourhood searched at photo strength, in the frame as the check sees
        it: whole, and the brightened or stretched views of the whole frame (exposure.py). A
        place whose pixels have not changed since its last search keeps its answer."""
        engine = self._engine
        if engine is None:  # cover() searches nothing without a finder, which gives the engine
            return
        due: list[_Place] = []
        for p in self._places:
            if p.missed > GONE and index < p.turn:
                p.missed += 1  # no face there for long: searched again on its turn alone
            else:
                due.append(p)
        if not due:  # nor the frame's views made
            return
        h, w = rgb.shape[:2]
        # At the scale the whole-frame search found the faces: searched at full size, sixteen
        # places of 4K faces took 4 s of CPU a frame, nine times what finds the same faces.
        k = PHOTO_STRENGTH.scale(w, h)
        small = rgb if k >= 1.0 else scaled(rgb, k)
        sh, sw = small.shape[:2]
        views = [small] + [v for v in (dark_view(small, sample=True), narrow_view(small, sample=True)) if v is not None]
        crops = []
        for p in due:
            # Around the anchor, not the latest face: a passer-by's face crossing the crop would
            # otherwise draw the place away with them, off the face still sitting there.
            x1, y1, x2, y2 = (c * k for c in p.anchor)
            side = AROUND * max(x2 - x1, y2 - y1)
            cx1, cy1 = max(0, int(x1 - side)), max(0, int(y1 - side))
            cx2, cy2 = min(sw, int(np.ceil(x2 + side))), min(sh, int(np.ceil(y2 + side)))
            parts = [v[cy1:cy2, cx1:cx2] for v in views]
            # The frame's own pixels too: the scaled copy blends away every other line, which
            # the halves are searched for at full size.
            x0, y0 = int(cx1 / k), int(cy1 / k)
            full = rgb[y0:int(np.ceil(cy2 / k)), x0:int(np.ceil(cx2 / k))]
            if _unchanged(p.seen, parts + [full]) and index - p.searched < REFRESH:
                # The answer its last search gave these pixels: a face there still; or none, unless
                # a whole-frame search has found one there since (missed is 0 then).
                if p.found:
                    p.missed = 0
                elif p.missed > 0:
                    p.missed += 1
                continue
            crops.append((p, (cx1, cy1, cx2, cy2), parts, full))
        # The longest unsearched first, at most PLACE_BUDGET: the rest wait, covered (cover()).
        crops.sort(key=lambda c: c[0].searched)
        self._waiting = [c[0] for c in crops[PLACE_BUDGET:]]
        for p, (cx1, cy1, cx2, cy2), parts, full in crops[:PLACE_BUDGET]:
            x1, x2 = p.anchor[0] * k, p.anchor[2] * k
            p.seen, p.searched = [np.array(q) for q in parts + [full]], index
            p.turn = index + 1 + int(self._turn_rng.integers(REFRESH))
            found: list[Box] = []
            if cx2 > cx1 and cy2 > cy1:
                # A face wider than PLACE_FACE is searched shrunk to it: sixteen 1080p faces of
                # 110 px took 2 s of CPU a frame at the frame's scale.
                f = min(1.0, PLACE_FACE / max(x2 - x1, 1.0))
                for part in parts:
                    if f < 1.0:
                        part = scaled(part, f)
                    found += [((r.left() / f + cx1) / k, (r.top() / f + cy1) / k, (r.right() / f + cx1) / k,
                               (r.bottom() / f + cy1) / k) for r, _ in
                              engine.detect_rects(part, "hog", PHOTO_STRENGTH.upsample, -SEARCH_MARGIN)]
                found += self._in_halves(rgb, (cx1 / k, cy1 / k, cx2 / k, cy2 / k), k * f)
            p.found = bool(found)
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


def _unchanged(before: Optional[list[np.ndarray]], now: list[np.ndarray]) -> bool:
    """Whether each view's crop is what a place's last search read: every 8x8 block within
    SAME_LEVELS on average (encoding noise), the same views, the same size."""
    import cv2

    if before is None or len(before) != len(now):
        return False
    for a, b in zip(before, now):
        if a.shape != b.shape:
            return False
        if a.size == 0:
            continue
        diff = cv2.absdiff(a, b)
        if diff.ndim == 3:
            diff = diff.max(axis=2)  # a change in one channel alone counts (HOG reads the strongest)
        diff = diff.astype(np.float32)
        blocks = cv2.resize(diff, (max(1, diff.shape[1] // 8), max(1, diff.shape[0] // 8)), interpolation=cv2.INTER_AREA)
        if float(blocks.max()) >= SAME_LEVELS:
            return False
    return True


def _grown(box: Box) -> Box:
    """`box` grown by half its width on every side."""
    x1, y1, x2, y2 = box
    d = (x2 - x1) / 2.0
    return (x1 - d, y1 - d, x2 + d, y2 + d)
