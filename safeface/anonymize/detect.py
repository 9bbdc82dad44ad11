"""Finding faces to cover: detection only. No landmarks are kept, nothing is embedded."""

from __future__ import annotations

import math
import queue
from dataclasses import dataclass, field
from typing import Any, Callable, Optional, Sequence

import numpy as np
from PIL import Image

from ..errors import InvalidArgument, ModelError, SafeFaceError
from ..imageio import c_order
from ..jsonnum import finite_number
from ..lookalike import spelled
from .alternating import halves, line_periods
from .channels import channel_mean, lone_channel_regions
from .exposure import dark_view, narrow_view
from .impulses import filled_view, has_impulses, median_view
from .line_polarity import keyed_views

DETECTORS = ("hog", "mmod", "onnx")
DEFAULT_DETECTOR = "hog"
# dlib's HOG window is 80 px; upsampling twice finds faces down to about 20 px, which is worth
# its cost up to about 2 megapixels (group photos, where faces are small).
SMALL_IMAGE_SIDE = 1600
# The masked search: MMOD with its bar lowered to this score. A mask hides the nose and mouth that
# HOG and MMOD look for. On LFW dev with synthetic masks (benches/masked_miss.py), MMOD finds 65% of
# masked faces at its own bar 0 and about 89% at -0.7; at -1.0, 96%, but it also covers bits of
# wallpaper (0.18 per bare image; two on face_recognition's obama.jpg, one at -0.80 on t1.jpg).
MASKED_MMOD_BAR = -0.7
# And our masked-face detector (hazmat/vision/masked_faces.py) at this bar, unconfirmed too: on the
# LFW dev people it was not trained on it finds 98% of masked faces at upsample 1, with a box
# elsewhere on 0.6% of bare images (at the recognition pipeline's -0.75, where the mask detector
# confirms each box: 99%, and 5%).
MASKED_FACE_BAR = -0.5
# dlib's HOG window: a face about this wide (in the searched copy) is the smallest found without
# upsampling; each upsampling halves it.
HOG_WINDOW = 80
# How far under the no-face check's bar (dlib's own, 0) the video search looks. The check reads
# the encoded output, tracks drawn on it, whose pixels differ a little from the frame searched: a
# window just under the bar in one can be over it in the other. On vtest.avi an 18 px face scored
# -0.08 (HOG, upsample 2, full size) in the input and passed the bar in a tracked output.
SEARCH_MARGIN = 0.25
# The widest face a video search may miss for want of pixels, whatever the frame's size: the
# default search of a 1280x720 frame (640 px, upsampling 1) reaches this already.
DEFAULT_MIN_FACE = 80.0

# The most pixels (after upsampling) one detector pass scans; a larger image is scanned in
# overlapping tiles at full size, plus once scaled to the budget for faces wider than the overlap.
# Memory grows with the pixels scanned: MMOD took about 150 MB per megapixel scanned (a flat
# 2000x2000 photo at upsampling 1: 2.6 GB, 3000x3000: 6.5 GB), dlib's fHOG detectors about 10.
# The budgets leave ordinary photos whole: 1600x1600 at upsampling 2 for HOG, t1.jpg (1280x886)
# at upsampling 1 for MMOD.
FHOG_SCAN_PIXELS = 48e6
MMOD_SCAN_PIXELS = 5e6
# MMOD's smallest face without upsampling (dlib_engine.MMOD_MIN_SIDE's note).
MMOD_WINDOW = 40

Box = tuple[float, float, float, float]


class DetectionEngine:
    """dlib's HOG face detector and nothing else: no landmark model, no recognition network is
    loaded. For callers that must prove no face can be recognised on their path (tracking).
    Thread-safe as DlibEngine's HOG is: each call takes a detector of its own from a pool."""

    def __init__(self) -> None:
        import dlib

        self._dlib = dlib
        self._hogs: "queue.SimpleQueue[Any]" = queue.SimpleQueue()

    def detect_rects(self, image: np.ndarray, detector: str = "hog", upsample: int = 1,
                     threshold: float = 0.0) -> list[tuple[Any, float]]:
        """HOG rectangles with their scores, those at or above `threshold` (dlib's bar is 0)."""
        if detector != "hog":
            raise SafeFaceError(f"the detection-only engine has only the HOG detector, not {detector!r}.")
        try:
            hog = self._hogs.get_nowait()
        except queue.Empty:
            hog = self._dlib.get_frontal_face_detector()
        try:
            rects, scores, _ = hog.run(c_order(image), upsample, float(threshold))
        finally:
            self._hogs.put(hog)
        return list(zip(rects, [float(s) for s in scores]))


@dataclass(frozen=True)
class Search:
    """What a detectable face in a video frame is, in one place: dlib's HOG on a copy scaled down
    (never up), upsampled `upsample` times, at dlib's bar. The video path searches every frame
    this way at a bar SEARCH_MARGIN lower (FaceFinder.search), and its output is verified with
    the same Search at dlib's bar (FaceFinder.detectable, video.detectable_frames): so the
    anonymizer always searches at least as hard as the check it is verified by.

    The copy is `max_side` px on its long side, or larger where that would lose faces
    `min_face` px wide: a frame's pixel count does not change what is left uncovered. A
    1920x1080 frame searched at 640 px lost every face under about 120 px, and a 4K frame every
    face under 240 px, though faces of 68 px matched their originals at 0.985 and more."""

    max_side: int = 640
    upsample: int = 1
    # Also our masked-face detector (hazmat/vision/masked_faces.py) at the same scale: a face
    # whose nose and mouth a mask hides is a face too. The video path searches at
    # MASKED_FACE_BAR, the check at the detector's own bar (0).
    masked: bool = False
    min_face: float = DEFAULT_MIN_FACE

    def __post_init__(self) -> None:
        for name, value in (("max_side", self.max_side), ("min_face", self.min_face)):
            if not finite_number(value) or value < 1:
                raise InvalidArgument(f"the video search's {name} must be a number of pixels of at least 1, "
                                    f"not {value!r}.")
        if isinstance(self.upsample, bool) or not isinstance(self.upsample, int) or not 0 <= self.upsample <= 3:
            raise InvalidArgument(f"the video search's upsample must be 0, 1, 2 or 3, not {self.upsample!r}.")

    def scale(self, width: int, height: int) -> float:
        by_side = self.max_side / max(width, height, 1)
        by_face = HOG_WINDOW / 2.0 ** self.upsample / self.min_face
        return min(1.0, max(by_side, by_face))

    def smallest_face(self, width: int, height: int) -> float:
        """About the narrowest face (px, in the full frame) this search finds: at most
        `min_face`, unless the frame is searched at full size and that is already smaller."""
        return HOG_WINDOW / 2.0 ** self.upsample / self.scale(width, height)


def check_detector(detector: str) -> str:
    if detector not in DETECTORS:
        raise InvalidArgument(f"unknown detector {spelled(detector)}; choose one of {', '.join(DETECTORS)}.")
    return detector


@dataclass
class FaceFinder:
    """Detector(s) used to find faces to cover. HOG always runs as a safety net beside the chosen
    detector: for anonymization a missed face costs far more than a spare cover. `masked` (on by
    default): also the masked search, our masked-face detector (MASKED_FACE_BAR) and MMOD at a
    lower bar (MASKED_MMOD_BAR) on the ONNX engine, both unconfirmed, since confirming a masked
    face would need landmarks and an embedding, which the anonymizer never computes. Without the
    ONNX engine only the masked-face detector searches; with a detection-only engine (as tracking
    uses) there is no masked search of photos (video: VideoOptions.masked)."""

    detector: str = DEFAULT_DETECTOR
    engine: Any = None
    onnx_engine: Any = None
    masked: bool = True
    _hog: Optional[DetectionEngine] = field(default=None, init=False, repr=False)
    _no_onnx: bool = field(default=False, init=False, repr=False)  # the ONNX engine failed to start

    def __post_init__(self) -> None:
        check_detector(self.detector)
        if self.engine is None:
            from ..hazmat.vision import get_engine

            self.engine = get_engine("dlib")  # the process's: its models load once, not per image
        if self.detector == "onnx" and self.onnx_engine is None:
            self.onnx_engine = _onnx_engine()

    def find(self, image: np.ndarray, upsample: Optional[Sequence[int]] = None, *,
             masked: Optional[bool] = None) -> list[Box]:
        """Boxes of every face found in `image`, overlapping duplicates merged. `masked`
        (default: the finder's own setting) adds the masked search's boxes."""
        h, w = image.shape[:2]
        levels = list(upsample) if upsample is not None else ([1, 2] if max(h, w) <= SMALL_IMAGE_SIDE else [1])
        boxes: list[Box] = []
        for up in levels:
            boxes += self._rects(image, "hog", up)
        if self.detector == "mmod":
            boxes += self._rects(image, "mmod", 1)
        elif self.detector == "onnx":
            boxes += [tuple(map(float, f.box)) for f in self.onnx_engine.detect(image)]  # type: ignore[misc]
        if self.masked if masked is None else masked:
            boxes += self._masked_boxes(image)
        return merge_boxes(boxes)

    def _masked_face_boxes(self, image: np.ndarray, upsample: int, bar: float) -> list[Box]:
        """Our masked-face detector's boxes: a detector only, like HOG (no landmarks)."""
        from ..hazmat.vision.masked_faces import shared_detector

        return scan(image, upsample, FHOG_SCAN_PIXELS, HOG_WINDOW,
                    lambda im: [_box(r) for r, _ in shared_detector().rects(im, upsample, bar)])

    def _masked_boxes(self, image: np.ndarray) -> list[Box]:
        if isinstance(self.engine, DetectionEngine):
            return []
        boxes = self._masked_face_boxes(image, 1, MASKED_FACE_BAR)
        if self.onnx_engine is None and not self._no_onnx:
            try:
                self.onnx_engine = _onnx_engine()
            except ModelError:
                # Said once in the docstring; the masked-face detector, HOG (and MMOD) still run.
                self._no_onnx = True
        search = getattr(self.onnx_engine, "mmod_detections", None)
        if search is None:
            return boxes
        return boxes + scan(image, 1, MMOD_SCAN_PIXELS, MMOD_WINDOW, lambda im: [
            (float(d.rect[0]), float(d.rect[1]), float(d.rect[2]), float(d.rect[3]))
            for d in search(im, 1, MASKED_MMOD_BAR)])

    def search(self, image: np.ndarray, search: Search, merged: bool = True) -> list[Box]:
        """The video path's search of one frame: `search` at a bar SEARCH_MARGIN under dlib's
        (plus the chosen detector's own search of the scaled copy). `merged` False: each view's
        boxes as found, for a caller that judges a face's size (a union of views is wider)."""
        return self._search(image, search, -SEARCH_MARGIN, extra=True, merged=merged)

    def detectable(self, image: np.ndarray, search: Search) -> list[Box]:
        """The no-face check of one frame: the faces `search` finds at dlib's own bar. Whatever
        it finds, `self.search` of the same pixels finds too (or a stronger box over it: dlib
        suppresses overlapping windows weakest first)."""
        return self._search(image, search, 0.0, extra=False)

    def _search(self, image: np.ndarray, search: Search, threshold: float, extra: bool,
                merged: bool = True) -> list[Box]:
        h, w = image.shape[:2]
        scale = search.scale(w, h)
        small = scaled(image, scale) if scale < 1.0 else image
        # HOG through the detection-only engine, which takes a bar (DlibEngine's HOG is the same
        # dlib detector at its own bar).
        if self._hog is None:
            self._hog = self.engine if isinstance(self.engine, DetectionEngine) else DetectionEngine()
        hog = self._hog

        def found(view: np.ndarray, k: float = 1.0, at: tuple[int, int] = (0, 0)) -> list[Box]:
            """HOG's boxes on `view`, in `small`'s pixels: scaled by `k`, then moved by `at`."""
            return [(x1 * k + at[0], y1 * k + at[1], x2 * k + at[0], y2 * k + at[1]) for x1, y1, x2, y2 in
                    (_box(r) for r, _ in hog.detect_rects(view, "hog", search.upsample, threshold))]

        def as_copy(view: np.ndarray) -> np.ndarray:
            """A view made on the frame as decoded, at the copy's scale."""
            return scaled(view, scale) if scale < 1.0 else view

        boxes = found(small)
        # A frame dark enough to hide a face is searched brightened too (exposure.py), by the
        # search and its check alike: brightening the output gave back faces HOG missed there.
        # So is one squeezed into a narrow band elsewhere (nearly white, mid-grey), stretched.
        for view in (dark_view(small, sample=True), narrow_view(small, sample=True)):
            if view is not None:
                boxes += found(view)
        # Faces written to hide from HOG, each searched only where a cheap test (a few ms a
        # frame) finds its sign, as photos search them always (views.crafted_views): one channel
        # under noise in the others, or two (channels.py: the regions found, in that channel alone
        # or the two's mean);
        # heavy impulse noise (impulses.py: tested and filtered on the frame as decoded, where
        # impulses are single pixels, then scaled as the copy: a median, and over half the
        # pixels, where a median is an impulse too, the mean of the others); lines inverted every other one or
        # two on, two off (alternating.py: tested on the frame as decoded, since the scaled copy
        # blends the lines away, then half of it searched at the copy's scale, and its negative).
        for channels, (x0, y0, x1, y1) in lone_channel_regions(small):
            boxes += found(channel_mean(small[y0:y1, x0:x1], channels), at=(x0, y0))
        if has_impulses(image):
            boxes += found(as_copy(median_view(image)))
            boxes += found(as_copy(filled_view(image)))
        # Lines inverted, or moved in level or spread, by a key, in no period (line_polarity.py):
        # put back on the frame as decoded, searched at the copy's scale, and the negative (made
        # in place of the view).
        for view in keyed_views(image):
            boxes += found(as_copy(view))
        periods = line_periods(image)
        if any(periods):
            half_scale = min(1.0, 2.0 * scale)
            for half in halves(image, periods):
                # k: from the half's searched copy to `small`.
                boxes += found(scaled(half, half_scale) if half_scale < 1.0 else half, k=2.0 * scale / half_scale)
        if search.masked:
            boxes += self._masked_face_boxes(small, search.upsample, MASKED_FACE_BAR if extra else 0.0)
        if extra and self.detector == "mmod":
            boxes += self._rects(small, "mmod", search.upsample)
        elif extra and self.detector == "onnx":
            boxes += [tuple(map(float, f.box)) for f in self.onnx_engine.detect(small)]  # type: ignore[misc]
        boxes = [(x1 / scale, y1 / scale, x2 / scale, y2 / scale) for x1, y1, x2, y2 in boxes]
        return merge_boxes(boxes) if merged else boxes

    def _rects(self, image: np.ndarray, detector: str, upsample: int) -> list[Box]:
        # Unclipped dlib rectangles and no landmarks: a face half out of frame still gets its
        # whole cover, and nothing about the face beyond where it is gets computed.
        budget, window = (MMOD_SCAN_PIXELS, MMOD_WINDOW) if detector == "mmod" else (FHOG_SCAN_PIXELS, HOG_WINDOW)
        return scan(image, upsample, budget, window,
                    lambda im: [_box(r) for r, _ in self.engine.detect_rects(im, detector, upsample)])


def scan(image: np.ndarray, upsample: int, budget: float, window: float,
         run: Callable[[np.ndarray], list[Box]]) -> list[Box]:
    """`run`'s boxes on `image`, no pass scanning more than `budget` pixels once upsampled. A
    larger image is scanned in tiles at full size, so no face narrower than the overlap is lost,
    and once scaled down to the budget, where a face wider than the overlap is at least twice
    the narrowest the detector finds (`window` px without upsampling). Unmerged."""
    h, w = image.shape[:2]
    per = 4.0 ** upsample
    if h * w * per <= budget:
        return run(image)
    scale = math.sqrt(budget / (h * w * per))
    small = scaled(c_order(image), scale)
    boxes = [(x1 / scale, y1 / scale, x2 / scale, y2 / scale) for x1, y1, x2, y2 in run(small)]
    side = max(1, int(math.sqrt(budget / per)))
    overlap = min(side // 2, math.ceil(2 * window / 2.0 ** upsample / scale))
    # A strip (a panorama, a 21-row sliver) is cut into long tiles, not thousands of squares.
    th = min(h, side)
    tw = min(w, max(side, int(budget / per / th)))
    if tw == w:
        th = min(h, max(side, int(budget / per / tw)))
    for y in _starts(h, th, overlap):
        for x in _starts(w, tw, overlap):
            boxes += [(x1 + x, y1 + y, x2 + x, y2 + y) for x1, y1, x2, y2 in run(c_order(image[y:y + th, x:x + tw]))]
    return boxes


def _starts(length: int, tile: int, overlap: int) -> list[int]:
    """Where tiles `tile` long, overlapping by `overlap`, start to cover `length`."""
    if length <= tile:
        return [0]
    stride = max(1, tile - overlap)
    return list(range(0, length - tile, stride)) + [length - tile]


def scaled(image: np.ndarray, f: float) -> np.ndarray:
    """`image` resized by the factor `f` (bilinear, at least one pixel each way): the copy the
    detectors search in place of a frame, a place or a half larger than their budget."""
    h, w = image.shape[:2]
    return np.asarray(Image.fromarray(image).resize((max(1, round(w * f)), max(1, round(h * f))),
                                                    Image.Resampling.BILINEAR))


def _box(rect: Any) -> Box:
    """A dlib rectangle as a box (x1, y1, x2, y2), unclipped."""
    return (float(rect.left()), float(rect.top()), float(rect.right()), float(rect.bottom()))


def _onnx_engine() -> Any:
    try:
        from ..hazmat.vision import get_engine
    except ImportError:
        raise ModelError(
            "the ONNX engine is unavailable in this installation; use detector 'hog' or 'mmod'."
        ) from None
    try:
        return get_engine("onnx")
    except ModelError:
        raise
    except Exception as exc:  # an engine that cannot start is a model problem for the user
        raise ModelError(f"the ONNX engine is unavailable ({exc}); use detector 'hog' or 'mmod'.") from None


def iou(a: Box, b: Box) -> float:
    ix = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = ix * iy
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


def merge_boxes(boxes: Sequence[Box], threshold: float = 0.3) -> list[Box]:
    """One box per face: overlapping boxes (IoU above threshold) become their union."""
    merged: list[Box] = []
    for box in sorted(boxes, key=lambda b: -(b[2] - b[0]) * (b[3] - b[1])):
        for i, kept in enumerate(merged):
            if iou(box, kept) > threshold:
                merged[i] = (min(box[0], kept[0]), min(box[1], kept[1]), max(box[2], kept[2]), max(box[3], kept[3]))
                break
        else:
            merged.append(box)
    return merged
