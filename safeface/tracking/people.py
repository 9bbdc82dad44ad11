"""Finding people in frames whose faces are already covered. Two detectors, both OpenCV
(opencv-python below 5, Apache-2.0; nothing is downloaded at run time):

- "motion" (the default, for a fixed camera): a Gaussian-mixture background model (MOG2) at half
  size; each moving blob of a person's size is a person, and a blob wider than one person is cut
  at the valleys of its column profile. About 10 ms a frame at 768x576.
- "hog": OpenCV's HOG people detector (Dalal and Triggs' linear SVM, built into OpenCV 4). Works
  with a moving camera but needs people at least 128 px tall at the scale it runs; on frames
  where they are smaller it upscales, which costs about a second a frame on two cores.
"""

from __future__ import annotations

from typing import Any, Callable, Optional

import numpy as np

from ..anonymize.detect import iou
from ..errors import InvalidArgument

PERSON_DETECTORS = ("motion", "hog")
DEFAULT_PERSON_DETECTOR = "motion"
Box = tuple[float, float, float, float]

# A standing person is about 0.42 times as wide as tall; a blob wider than SPLIT_ASPECT times
# its height holds several people side by side.
PERSON_ASPECT = 0.42
# A box wider than this share of its height is no whole upright person's (person_box makes them
# PERSON_ASPECT wide, HOG's are 0.43): a head over a wall, a head alone, two people side by side.
PARTIAL_ASPECT = 0.5
# Two people side by side in one box that was not split: their heads are separate runs of
# foreground columns across the top HEAD_BAND of the blob, each at most HEAD_WIDTH of the
# blob's height wide (a head is about a tenth of a person's height; a head seen alone, or from
# the shoulders up, fills far more of its own short blob).
HEAD_BAND = 0.12
HEAD_WIDTH = 0.2
# A person's shoulders lie within this share of their height from the top of their head; a
# part of a blob whose top lies lower (but above SHORTEST: a person at least 40% as tall), at
# least SHORTER_WIDTH of the blob's height wide (a child's shoulders; a leg is narrower), may be
# someone shorter. In vtest.avi about one box a frame is such a part (a bag held out, a
# striding leg): its zone is covered too, a patch on clothes, measured before any cover.
SHOULDERS = 0.25
SHORTER_WIDTH = 0.1
SHORTEST = 0.6
# A run of columns that high, beside a taller one, at least this wide is more than a shoulder
# (about a head's width beyond the head it rises to): a head beside the tallest that touches
# the shoulders' line, whose run went on into the shoulder's.
HEAD_AND_SHOULDER = 0.16
# A head is at least this share of its blob's height wide (about a tenth of a person's, who may
# hold their hands above it): a top narrower than that is hands, a pole, not a head, which lies
# lower, where the blob is first that wide.
HEAD_MIN = 0.06
# How much of a person a foreground blob misses at the top and at the feet, in blob heights.
BLOB_TOP = 0.03
BLOB_FEET = 0.09
# A blob taller than this times the scene's person height at its feet holds more than one person.
TALL_BLOB = 1.4
SPLIT_ASPECT = 0.8
# At the half-size working scale: smaller blobs are noise, leaves or litter.
MIN_HEIGHT = 14
MIN_AREA = 60
WARMUP_FRAMES = 15
# The model learns at its fast rate for this many frames: whoever keeps still from the first
# frame (a pianist at the piano) is background by then and is never a blob.
LEARNING_FRAMES = 30
# Re-detection around a track the motion model lost (a person who stopped, or was passed by
# another): HOG on a crop scaled so the person is this tall, accepted at this overlap.
RESCUE_HEIGHT = 144
RESCUE_IOU = 0.3


def _cv2() -> Any:
    import cv2

    return cv2


def check_person_detector(name: str) -> str:
    if name not in PERSON_DETECTORS:
        raise InvalidArgument(f"unknown person detector {name!r}; choose one of {', '.join(PERSON_DETECTORS)}.")
    return name


class MotionDetector:
    """People as moving blobs against a learned background (fixed camera only)."""

    def __init__(self, learning_rate: float = 0.003) -> None:
        cv2 = _cv2()
        self._bg = cv2.createBackgroundSubtractorMOG2(history=300, varThreshold=25, detectShadows=True)
        self._rate = learning_rate
        self._open = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (3, 3))
        self._close = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (5, 9))
        self._frames = 0
        # Full-frame box height of a typical person whose feet are at row y, once the tracker
        # has learnt the camera's perspective (Perspective below); None until then.
        self.expected: Optional[Callable[[float], Optional[float]]] = None
        # Not people to follow, but a head is at the top of each, and no box's head zone is there:
        # this frame's tall blobs whole, before each was cut to its near person (a child on
        # shoulders, someone behind), and someone shorter beside or between others in one blob
        # (a child holding two adults' hands), from their own top (_shorter).
        self.cut_off: list[Box] = []
        # This frame's boxes wider than a person that show people side by side (_heads): each
        # with one whole person's box per head, where their head zones are.
        self.abreast: dict[Box, list[Box]] = {}
        # This frame's boxes cut from a blob that sits on a shadow as tall as itself (_on_shadow):
        # the top of a person whose body the model read as a shadow, a head alone.
        self.tops: set[Box] = set()

    @property
    def warming_up(self) -> bool:
        """The background model needs about a second of video before it can tell people apart."""
        return self._frames < WARMUP_FRAMES

    def detect(self, rgb: np.ndarray) -> list[Box]:
        cv2 = _cv2()
        h, w = rgb.shape[:2]
        if w < 2 or h < 2:  # halved to nothing (OpenCV's resize raises); no person fits anyway
            return []
        small = cv2.resize(rgb, (w // 2, h // 2), interpolation=cv2.INTER_AREA)
        # Learn fast while the model starts, then slowly, so a person who stops stays visible.
        rate = -1 if self._frames < LEARNING_FRAMES else self._rate
        self._frames += 1
        raw = self._bg.apply(small, learningRate=rate)
        mask = self._clean(np.where(raw == 255, 255, 0).astype(np.uint8))  # 127 marks shadows: not a person
        moving = self._clean(np.where(raw > 0, 255, 0).astype(np.uint8))  # a person's or a shadow's
        n, _, stats, _ = cv2.connectedComponentsWithStats(mask)
        boxes: list[Box] = []
        self.cut_off, self.abreast, self.tops = [], {}, set()
        for x, y, bw, bh, area in stats[1:n]:
            if bh < MIN_HEIGHT or area < MIN_AREA:
                continue
            want = self.expected(2.0 * (y + bh)) if self.expected is not None else None
            if want is not None:
                # Two people one behind the other make one tall blob: keep the near one, whose
                # feet are the blob's bottom, at the height a person has there.
                cut = int(round(want / 2.0 / (1.0 + BLOB_TOP + BLOB_FEET)))
                if bh > TALL_BLOB * cut:
                    self.cut_off.append(person_box((2.0 * x, 2.0 * y, 2.0 * (x + bw), 2.0 * (y + bh))))
                    y, bh = y + bh - cut, cut
            else:
                # Nothing says how tall a person is here: a narrow blob may be a piece of a head
                # whose other pieces (and body) the model took for a shadow, and boxed as a whole
                # small person it had only its top third covered, the face below it showing.
                wide = _moving_across(moving, x, y, bw, bh)
                if wide is not None:
                    self.cut_off.append(person_box((2.0 * wide[0], 2.0 * y, 2.0 * wide[1], 2.0 * (y + bh))))
            for x1, x2, top in _shorter(mask[y:y + bh, x:x + bw], want is not None) + \
                    _head_below(mask[y:y + bh, x:x + bw]):
                self.cut_off.append(person_box((2.0 * (x + x1), 2.0 * (y + top), 2.0 * (x + x2), 2.0 * (y + bh))))
            top_only = _on_shadow(mask, moving, x, y, bw, bh)
            for x1, x2 in _split(mask[y:y + bh, x:x + bw], int(bh)):
                box = person_box((2.0 * (x + x1), 2.0 * y, 2.0 * (x + x2), 2.0 * (y + bh)))
                boxes.append(box)
                if top_only:
                    self.tops.add(box)
                if box[2] - box[0] > PARTIAL_ASPECT * (box[3] - box[1]):
                    heads = _heads(mask[y:y + bh, x + x1:x + x2])
                    if len(heads) >= 2:
                        h = box[3] - box[1]
                        self.abreast[box] = [(2.0 * (x + x1) + c - PERSON_ASPECT * h / 2, box[1],
                                              2.0 * (x + x1) + c + PERSON_ASPECT * h / 2, box[3]) for c in heads]
        return boxes

    def _clean(self, mask: np.ndarray) -> np.ndarray:
        cv2 = _cv2()
        cleaned: np.ndarray = cv2.morphologyEx(cv2.morphologyEx(mask, cv2.MORPH_OPEN, self._open), cv2.MORPH_CLOSE,
                                               self._close)
        return cleaned


def person_box(blob: Box) -> Box:
    """The box a person fills, from the box of their moving pixels. The blob is short at both
    ends (the feet go with the shadow, which is not foreground, and the opening trims the top)
    and narrower than the person (thin arms vanish at half size), so it is grown to the usual
    person box: the HOG detector's and the MOT benchmarks' convention, PERSON_ASPECT wide."""
    x1, y1, x2, y2 = blob
    h = y2 - y1
    y1, y2 = y1 - BLOB_TOP * h, y2 + BLOB_FEET * h
    w = max(x2 - x1, PERSON_ASPECT * (y2 - y1))
    cx = (x1 + x2) / 2
    return (cx - w / 2, y1, cx + w / 2, y2)


def _split(blob: np.ndarray, height: int) -> list[tuple[int, int]]:
    """Column ranges of the people in one blob: cut at the emptiest columns."""
    width = blob.shape[1]
    if width <= SPLIT_ASPECT * height:
        return [(0, width)]
    k = max(2, round(width / (PERSON_ASPECT * height)))
    profile = (blob > 0).sum(axis=0).astype(np.float32)
    cuts = []
    for i in range(1, k):
        centre = i * width // k
        lo, hi = max(1, centre - width // (2 * k)), min(width - 1, centre + width // (2 * k))
        cuts.append(lo + int(np.argmin(profile[lo:hi])) if hi > lo else centre)
    edges = [0] + sorted(set(cuts)) + [width]
    return [(a, b) for a, b in zip(edges, edges[1:]) if b - a >= 3]


def _runs(columns: np.ndarray) -> list[tuple[int, int]]:
    """The runs of True in a row of booleans, as (start, end) pairs."""
    edges = np.flatnonzero(np.diff(np.concatenate([[0], columns.astype(np.int8), [0]])))
    return [(int(a), int(b)) for a, b in zip(edges[::2], edges[1::2])]


# The rows below a blob, as many as it is tall, that are mostly shadow in its columns: a body
# dressed a shade darker than the background, read as a shadow under its own head.
SHADOW_BODY = 0.5


def _on_shadow(mask: np.ndarray, moving: np.ndarray, x: int, y: int, bw: int, bh: int) -> bool:
    """Whether a blob sits on a shadow as tall as itself (SHADOW_BODY of the band below it, in its
    columns): its box shows a head, not a whole person. A person's shadow on the ground lies
    beside or behind their feet, mostly outside their own columns; one cast toward the camera
    lies under them, so a blob shaped like a whole person (under PARTIAL_ASPECT as wide as tall)
    is never taken for a head this way."""
    if bw < PARTIAL_ASPECT * bh:
        return False
    band = (moving[y + bh:y + 2 * bh, x:x + bw] > 0) & (mask[y + bh:y + 2 * bh, x:x + bw] == 0)
    return band.shape[0] >= bh // 2 and band.size > 0 and float(band.mean()) >= SHADOW_BODY


def _moving_across(moving: np.ndarray, x: int, y: int, bw: int, bh: int) -> Optional[tuple[int, int]]:
    """The columns (start, end) of what moves, foreground or shadow, across the top half of a
    blob's rows and through its columns, when they reach beyond the blob: the whole head a
    narrow piece of it belongs to, at most the blob's height further on each side (a head is no
    wider than tall; a cloud's shadow reaches across the frame). None when they do not."""
    cols: np.ndarray = np.asarray(moving[y:y + max(1, bh // 2)].any(axis=0))
    spans = [(a, b) for a, b in _runs(cols) if a < x + bw and b > x]
    if not spans:
        return None
    a, b = max(x - bh, min(a for a, _ in spans)), min(x + bw + bh, max(b for _, b in spans))
    return (a, b) if a < x or b > x + bw else None


def _shorter(blob: np.ndarray, scaled: bool = False) -> list[tuple[int, int, int]]:
    """Someone shorter standing beside or between others in one blob: each run of columns whose
    top lies below SHOULDERS of the blob's height and above SHORTEST, at least SHORTER_WIDTH of
    it wide, as (start, end, top row). A blob is boxed, and cut into people, at its full height, so the head zone of
    every box lay at the tallest person's head: a child between two adults showed their face.
    Higher up, below the blob's HEAD_BAND, a run is a head beside the tallest (a child carried on
    the hip, their head by the adult's chin) when no column next to it reaches higher (a shoulder
    rises to its own head), or, once the blob is known to hold one person's height (`scaled`: the
    perspective is learned) or one person's width (no wider than PARTIAL_ASPECT of its height),
    when it is wider than a shoulder (HEAD_AND_SHOULDER) and rises on one side only. Before that,
    in a wider blob, the half-learned heads of people side by side leave such runs; a child's
    head on an adult's hip, in a blob one adult wide, showed in 2 of 7 frames."""
    height = blob.shape[0]
    one = scaled or blob.shape[1] <= PARTIAL_ASPECT * height
    filled = blob > 0
    has = filled.any(axis=0)
    tops = np.where(has, np.argmax(filled, axis=0), height)
    low = has & (tops > SHOULDERS * height) & (tops < SHORTEST * height)
    high = has & (tops > HEAD_BAND * height) & (tops <= SHOULDERS * height)
    clear: list[tuple[int, int]] = []
    for a, b in _runs(high):
        rises = (a > 0 and tops[a - 1] <= SHOULDERS * height, b < len(tops) and tops[b] <= SHOULDERS * height)
        # Shoulders between two heads rise to both: two people side by side, not a third head.
        if not any(rises) or (one and b - a >= HEAD_AND_SHOULDER * height and not all(rises)):
            clear.append((a, b))
    return [(a, b, int(tops[a:b].min())) for a, b in _runs(low) + clear if b - a >= SHORTER_WIDTH * height]


def _head_below(blob: np.ndarray) -> list[tuple[int, int, int]]:
    """A head below a top too narrow to be one (hands raised above it): the first run of
    foreground at least HEAD_MIN of the blob's height wide, as (start, end, top row), when it lies
    below the blob's HEAD_BAND (above SHORTEST). The head zone lay at the hands' height, and the
    face of someone waving both hands over their head showed in every frame."""
    height = blob.shape[0]
    filled = blob[:int(SHORTEST * height)] > 0
    if not filled.size:
        return []
    # The length of the run of foreground ending at each pixel of each row, at once.
    count = filled.cumsum(axis=1)
    runs = count - np.maximum.accumulate(np.where(filled, 0, count), axis=1)
    wide = np.flatnonzero(runs.max(axis=1) >= HEAD_MIN * height)
    if not len(wide) or wide[0] <= HEAD_BAND * height:
        return []
    row = int(wide[0])
    end = int(np.argmax(runs[row])) + 1
    return [(end - int(runs[row].max()), end, row)]


def _heads(blob: np.ndarray) -> list[float]:
    """The centres (full-size columns from the blob's left) of the heads across the top of a blob
    of people side by side: the runs of foreground columns in its top HEAD_BAND. None (the box
    is covered as a head alone would be) unless every run is narrow for a head of a person as
    tall as the blob (HEAD_WIDTH). Someone shorter beside them has a box of their own (_shorter)."""
    height = blob.shape[0]
    band: np.ndarray = np.asarray((blob[:max(1, int(round(HEAD_BAND * height)))] > 0).any(axis=0))
    runs = _runs(band)
    if any(b - a > HEAD_WIDTH * height for a, b in runs):
        return []
    return [float(a + b) for a, b in runs]  # twice the half-size centre


HOG_WINDOW = (64, 128)  # OpenCV's default people detector: width, height


class HogDetector:
    """OpenCV's HOG people detector, upscaled by `upscale` so that people down to 128/upscale px
    tall are found."""

    def __init__(self, upscale: float = 1.5, hit_threshold: float = 0.3) -> None:
        cv2 = _cv2()
        self._hog = cv2.HOGDescriptor()
        self._hog.setSVMDetector(cv2.HOGDescriptor_getDefaultPeopleDetector())
        self._up = upscale
        self._hit = hit_threshold

    def detect(self, rgb: np.ndarray) -> list[Box]:
        cv2 = _cv2()
        image = cv2.resize(rgb, None, fx=self._up, fy=self._up) if self._up != 1 else rgb
        if image.shape[0] < HOG_WINDOW[1] or image.shape[1] < HOG_WINDOW[0]:
            # No person fits; and OpenCV's detector crashed the process (SIGSEGV) on a frame
            # smaller than its window: a 96x64 video killed a tracking run.
            return []
        rects, _ = self._hog.detectMultiScale(image, hitThreshold=self._hit, winStride=(8, 8), padding=(8, 8),
                                              scale=1.05)
        out: list[Box] = []
        for x, y, w, h in rects:
            # The HOG window has a margin around the person: about 1/8 of its width on each side.
            x, y, w, h = (float(v) / self._up for v in (x, y, w, h))
            out.append((x + 0.12 * w, y + 0.06 * h, x + 0.88 * w, y + 0.94 * h))
        return out


    def detect_near(self, rgb: np.ndarray, box: Box) -> Optional[Box]:
        """The person box HOG finds around `box` (a track's prediction) that overlaps it most."""
        cv2 = _cv2()
        H, W = rgb.shape[:2]
        x1, y1, x2, y2 = box
        w, h = x2 - x1, y2 - y1
        if h < 8 or w < 4:
            return None
        cx1, cy1 = max(0, int(x1 - 0.6 * w)), max(0, int(y1 - 0.3 * h))
        cx2, cy2 = min(W, int(x2 + 0.6 * w)), min(H, int(y2 + 0.3 * h))
        if cx2 - cx1 < 8 or cy2 - cy1 < 8:
            return None
        s = RESCUE_HEIGHT / h
        crop = cv2.resize(rgb[cy1:cy2, cx1:cx2], None, fx=s, fy=s)
        if crop.shape[0] < HOG_WINDOW[1] or crop.shape[1] < HOG_WINDOW[0]:
            return None
        rects, _ = self._hog.detectMultiScale(crop, hitThreshold=0.0, winStride=(4, 4), padding=(8, 8), scale=1.05)
        best: Optional[Box] = None
        best_iou = RESCUE_IOU
        for rx, ry, rw, rh in rects:
            cand = (cx1 + (rx + 0.12 * rw) / s, cy1 + (ry + 0.06 * rh) / s, cx1 + (rx + 0.88 * rw) / s,
                    cy1 + (ry + 0.94 * rh) / s)
            o = iou(cand, box)
            if o > best_iou:
                best, best_iou = cand, o
        return best


def make_person_detector(name: str) -> Any:
    check_person_detector(name)
    return MotionDetector() if name == "motion" else HogDetector()


class Perspective:
    """The height of a person's box against the row of their feet (h = a*y + b, least squares
    over clear one-person boxes of this video): a fixed camera sees people larger nearer it."""

    def __init__(self, min_samples: int = 40, keep: int = 600) -> None:
        self._ys: list[float] = []
        self._hs: list[float] = []
        self._min = min_samples
        self._keep = keep
        self._fit: Optional[tuple[float, float]] = None

    def add(self, box: Box) -> None:
        self._ys.append(box[3])
        self._hs.append(box[3] - box[1])
        if len(self._ys) > self._keep:
            del self._ys[0], self._hs[0]

    def refit(self) -> None:
        if len(self._ys) < self._min or float(np.ptp(self._ys)) < 20:
            return
        a, b = np.polyfit(np.array(self._ys), np.array(self._hs), 1)
        self._fit = (float(a), float(b))

    def height(self, y: float) -> Optional[float]:
        if self._fit is None:
            return None
        h = self._fit[0] * y + self._fit[1]
        return h if h >= 2 * MIN_HEIGHT else None
