"""Tracking a video: every frame is decoded and its faces covered by the anonymizer first; only
then does the person detector, the appearance model and the tracker see it (the anonymizer's
`on_frame` hook receives covered frames only). Face detection uses dlib's HOG detector alone
(anonymize.DetectionEngine): no landmark model, no recognition network, no embedding."""

from __future__ import annotations

import zlib
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Callable, Optional, Union

import numpy as np

from ..anonymize import DEFAULT_MARGIN, DEFAULT_MODE, AnonymizeReport, FaceFinder, VideoOptions
from ..anonymize.detect import DetectionEngine
from ..anonymize.files import check_paths
from ..anonymize.detect import iou
from ..anonymize.video import anonymize_video_file
from ..errors import ImageError, InvalidArgument
from .appearance import describe
from .assign import CLEAR, PARTIAL, AssignOptions, Assigner, LiveTrack, seen
from .colours import summary
from .describe import CHILD_BELOW, TALL_ABOVE, parse
from .first_faces import FirstFaces
from .heads import BELOW, cover_heads
from .search import Looks
from .motion import Box
from .still import StillPlaces, ghost, still
from .people import (DEFAULT_PERSON_DETECTOR, PARTIAL_ASPECT, PERSON_ASPECT, HogDetector, MotionDetector, Perspective,
                     check_person_detector, make_person_detector)

PathLike = Union[str, Path]
# Tracks shorter than this many detections are dropped: a person crossing the scene is seen for
# longer, a flicker of the background model is not.
MIN_DETECTIONS = 6
THUMB_MAX_SIDE = 160
# Frames between refits of the camera's perspective.
PERSPECTIVE_EVERY = 25
# A track unseen for up to this many frames still has its predicted head zone covered.
COAST_COVER = 5
# A box under this share of the height a typical person has at its place shows no whole person
# (a head alone is about a fifth of one); a small child is about half.
WHOLE_SHARE = 0.4
# A track whose detections showed only a head on its body's shadow this often is a head
# throughout (a person walking past a shadow's edge, a box or two, keeps their colours).
HEAD_SHARE = 0.2
# In a scene with no scale (no perspective to fit: every foot on one band of rows), a track whose
# boxes are wider than a whole person's in more than this share of its views shows a head
# (_heads_only).
HEADS_ONLY = 0.5
# Bounds on the tracker's work a frame, far above a camera's crowd the tracker can follow (about
# ten people in vtest.avi): assignment and re-identification grow with the square of the people,
# and each lost track costs a HOG search. A crafted clip of 570 moving shapes a frame took 4 s a
# frame at 720p (a whole 4K clip, hours); such a clip is refused, and re-detection runs on the
# most recently lost tracks only.
MAX_PEOPLE = 100  # person boxes in one frame
MAX_TRACKS = 200  # people followed or awaiting re-identification at once
MAX_RESCUES = 16  # HOG re-detections a frame
# People one run returns (TrackOptions.max_people): each holds up to AssignOptions.keep detections
# and a thumbnail to the end of the run, and a crafted clip of short-lived shapes made one
# result of tens of thousands of tracks. A busy camera's hour is far under it.
MAX_RUN_PEOPLE = 2000


def covering(fast: bool = False) -> VideoOptions:
    """The anonymizer's settings for a tracked video. Its masked-face search stays off: the head
    zone of every tracked person is covered anyway (heads.py), and that search would take the
    default path below real time."""
    base = VideoOptions.fast(progress=False) if fast else VideoOptions(progress=False)
    return replace(base, masked=False)


@dataclass(frozen=True)
class TrackOptions:
    detector: str = DEFAULT_PERSON_DETECTOR
    assign: AssignOptions = field(default_factory=AssignOptions)
    video: VideoOptions = field(default_factory=covering)
    mode: str = DEFAULT_MODE
    margin: float = DEFAULT_MARGIN
    draw: bool = True
    max_frames: Optional[int] = None  # stop tracking (not covering heads) after this many frames
    cover_heads: bool = True  # also cover the head zone of every person box (heads.py)
    max_people: int = MAX_RUN_PEOPLE  # more people in one run is refused (MAX_RUN_PEOPLE)

    def __post_init__(self) -> None:
        if isinstance(self.max_people, bool) or not isinstance(self.max_people, int) or self.max_people < 1:
            raise InvalidArgument(f"max_people must be a whole number of people, at least 1; got {self.max_people!r}.")


@dataclass(frozen=True)
class Person:
    """One track: a random id local to this run, the frames it was detected on and its boxes
    (x1, y1, x2, y2), the names of its clothing colours (top and bottom, most first) and its
    height relative to the scene's typical person at the same place. `thumbnail` is a crop of a
    covered frame, in memory only. The colour shares a search ranks by are the result's, not
    the person's (search.py)."""

    track_id: str
    frames: list[int]
    boxes: list[Box]
    top: list[str]
    bottom: list[str]
    relative_height: float = 1.0
    thumbnail: Optional[np.ndarray] = field(default=None, repr=False)
    # A track followed for long keeps its detections on every `stride`-th frame only (and its
    # last few): AssignOptions.keep.
    stride: int = 1

    @property
    def size(self) -> str:
        return "child" if self.relative_height < CHILD_BELOW else ("tall" if self.relative_height > TALL_ABOVE else "adult")

    def box_at(self, frame: int, max_gap: int = 25) -> Optional[Box]:
        """The detected box, or one interpolated across a gap of at most `max_gap` frames (or of
        the track's thinning: twice its stride)."""
        i = int(np.searchsorted(self.frames, frame))
        if i < len(self.frames) and self.frames[i] == frame:
            return self.boxes[i]
        if 0 < i < len(self.frames) and self.frames[i] - self.frames[i - 1] <= max(max_gap, 2 * self.stride):
            a, b = self.frames[i - 1], self.frames[i]
            t = (frame - a) / (b - a)
            return tuple(x + (y - x) * t for x, y in zip(self.boxes[i - 1], self.boxes[i]))  # type: ignore[return-value]
        return None

    def to_dict(self, fps: float) -> dict[str, Any]:
        return {"id": self.track_id, "start_s": round(self.frames[0] / fps, 2), "end_s": round(self.frames[-1] / fps, 2),
                "frames": list(self.frames), "boxes": [[round(v, 1) for v in b] for b in self.boxes],
                "colours": {"top": list(self.top), "bottom": list(self.bottom)}, "size": self.size,
                "relative_height": round(self.relative_height, 2)}


@dataclass(frozen=True)
class Hit:
    track_id: str
    score: float
    start_s: float
    end_s: float
    colours: dict[str, list[str]]
    size: str
    thumbnail: Optional[np.ndarray] = field(default=None, repr=False)

    def to_dict(self) -> dict[str, Any]:
        return {"id": self.track_id, "score": round(self.score, 3), "start_s": self.start_s, "end_s": self.end_s,
                "colours": self.colours, "size": self.size}


@dataclass(frozen=True)
class TrackResult:
    """A run's people and what a search of them reads (`looks`, one entry a person). Frozen: the
    hook a workspace binds to record each search lives in `looks`, which every copy shares and
    which cannot be unbound; an assignment to the result raises."""

    people: tuple[Person, ...]
    fps: float
    frames: int
    width: int
    height: int
    report: AnonymizeReport
    detector: str
    looks: Looks = field(repr=False, compare=False)

    def __post_init__(self) -> None:
        if not isinstance(self.looks, Looks) or len(self.looks) != len(self.people):
            raise InvalidArgument("a tracking result needs its run's search data, one entry a person.")
        object.__setattr__(self, "people", tuple(self.people))

    def record_searches(self, record: Callable[[str], None]) -> None:
        """Have each later search recorded by `record` before it is made (SafeFace.track). Once
        bound it cannot be replaced or removed: a search that cannot be recorded is not made."""
        self.looks.bind(record)

    def search(self, description: str, top_k: int = 3) -> list[Hit]:
        """The tracks that best fit a description in the closed vocabulary (describe.py)."""
        q = parse(description)
        # A whole number only: NaN, infinity or None raised a bare Python error, and text was read.
        if isinstance(top_k, bool) or not isinstance(top_k, (int, np.integer)):
            raise InvalidArgument(f"top_k must be a whole number of tracks to return, got {type(top_k).__name__}.")
        ranked = self.looks.rank(q)
        return [Hit(p.track_id, s, round(p.frames[0] / self.fps, 2), round(p.frames[-1] / self.fps, 2),
                    {"top": list(p.top), "bottom": list(p.bottom)}, p.size, p.thumbnail)
                for s, p in ((s, self.people[i]) for s, i in ranked[:max(1, int(top_k))])]

    def to_dict(self) -> dict[str, Any]:
        return {"frames": self.frames, "fps": self.fps, "width": self.width, "height": self.height,
                "person_detector": self.detector, "faces_covered": self.report.face_count,
                "tracks": [p.to_dict(self.fps) for p in self.people]}


class _Run:
    """The per-frame hook: detect, describe, assign, remember a thumbnail, draw. With `finder`,
    the faces of people who keep still from the first frame are covered first (first_faces.py)."""

    def __init__(self, opts: TrackOptions, finder: Optional[FaceFinder] = None) -> None:
        self.opts = opts
        self.first_faces = FirstFaces(finder, opts.video.search, opts.margin, opts.mode)
        self.detector = make_person_detector(opts.detector)
        # HOG covers the motion model's blind spots: its first second, and people it loses.
        self.hog = self.detector if isinstance(self.detector, HogDetector) else HogDetector()
        self.assigner = Assigner(opts.assign)
        self.perspective = Perspective()
        # The last box of each track lost while standing still (at most MAX_TRACKS places).
        self.still = StillPlaces(MAX_TRACKS)
        if isinstance(self.detector, MotionDetector):
            self.detector.expected = self.perspective.height

    def __call__(self, index: int, rgb: np.ndarray) -> np.ndarray:
        import cv2

        rgb = self.first_faces.cover(index, rgb)
        boxes, shaped = self._detect(index, rgb)
        if self.opts.max_frames is not None and index >= self.opts.max_frames:
            # Tracking stops, covering does not: the people found still have their heads covered,
            # and so do those standing still when it stopped, whom the background model learns next.
            if index == self.opts.max_frames:
                for t in self.assigner.live:
                    if t.confirmed and still(t):
                        self.still.keep(t)
            heads = [self._whole(p) for b in boxes + self._cut_off() + self.still.boxes() for p in self._side_by_side(b)]
            return cover_heads(rgb, heads, self.opts.mode) if self.opts.cover_heads else rgb
        hsv = cv2.cvtColor(rgb, cv2.COLOR_RGB2HSV)
        grey = cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY)
        looks = [describe(hsv, grey, b) for b in boxes]
        # A head whose body the background model read as a shadow: its colours are its skin's.
        tops: set[Box] = self.detector.tops if isinstance(self.detector, MotionDetector) and not shaped else set()
        self.assigner.step(index, boxes, looks, shaped, [j for j, b in enumerate(boxes) if b in tops])
        if self.assigner.followed(index) > MAX_TRACKS:
            raise ImageError(f"by frame {index}, more than {MAX_TRACKS} people are followed or awaiting "
                             "re-identification at once, more than tracking follows; nothing was written. "
                             "Anonymize this video instead.")
        if self.assigner.confirmed() > self.opts.max_people:
            # Refused as it passes the bound, before it holds more: a result cut short would
            # leave people out of every search without a word.
            raise ImageError(f"by frame {index}, more than {self.opts.max_people} people were tracked, more than one "
                             "run returns (TrackOptions.max_people); nothing was written. Track the video in "
                             "shorter parts, or anonymize it instead.")
        taken = [t.boxes[-1] for t in self.assigner.live if t.frames[-1] == index]
        # Most recently lost first; an occluded track is inside another person's box, where HOG
        # would find that person.
        lost = sorted((t for t in self.assigner.live if t.confirmed and t.missed and not t.occluded),
                      key=lambda t: t.missed)
        for t in lost[:MAX_RESCUES]:
            found = self.hog.detect_near(rgb, t.kalman.box)
            # A box another track already holds this frame is that person, not this one.
            if found is not None and all(iou(found, b) < 0.3 for b in taken):
                view = seen(taken + [found], len(taken))
                if self.assigner.recover(index, t, found, describe(hsv, grey, found), view):
                    taken.append(found)
        if self.opts.cover_heads:
            rgb = cover_heads(rgb, self._heads(index, boxes), self.opts.mode)
        for t in self.assigner.live:
            if t.frames[-1] == index:
                self._thumb(t, rgb)
                if t.confirmed and t.recent[-1][1]:
                    self.perspective.add(t.boxes[-1])
        if index % PERSPECTIVE_EVERY == 0:
            self.perspective.refit()
        if self.opts.draw:
            rgb = np.ascontiguousarray(rgb)
            for t in self.assigner.live:
                if t.confirmed and t.frames[-1] == index:
                    _draw(rgb, t)
        return rgb

    def _detect(self, index: int, rgb: np.ndarray) -> tuple[list[Box], bool]:
        """The frame's person boxes, and whether a person-shape detector (HOG) found them."""
        boxes = self.detector.detect(rgb)
        shaped = self.detector is self.hog
        if getattr(self.detector, "warming_up", False):
            boxes, shaped = self.hog.detect(rgb), True
        if len(boxes) > MAX_PEOPLE:
            raise ImageError(f"frame {index} shows {len(boxes)} moving shapes, more people than tracking follows in "
                             f"one frame ({MAX_PEOPLE}); nothing was written. Anonymize this video instead.")
        return boxes, shaped

    def _heads(self, index: int, boxes: list[Box]) -> list[Box]:
        """Where people are this frame: the detector's boxes and the tall blobs some were cut
        from, the tracks' boxes (recovered ones too), for a track that just went unseen its
        predicted box, and the last box of each track lost while standing still until they are
        seen walking off (still.py); each as tall as a whole person standing there (_whole)."""
        out = list(boxes) + self._cut_off()
        for t in self.assigner.live:
            if t.frames[-1] == index:
                out.append(t.boxes[-1])
                self.still.seen(t)
                continue
            if t.confirmed and t.missed <= COAST_COVER:
                out.append(t.kalman.box)
            if t.confirmed and t.track_id not in self.still and still(t):
                # A person who stopped and faded into the background showed their face once the
                # coasting cover above ran out, for as long as they stood there.
                self.still.keep(t)
        self.still.watch(self.assigner.live)
        return [self._whole(p) for b in out + self.still.boxes() for p in self._side_by_side(b)]

    def _whole(self, box: Box) -> Box:
        """The box a whole person would fill from the top of `box` down: as tall as a person
        standing there when `box` is shorter (someone seen over a wall, from the shoulders up: the
        head zone of the part in view lay above the face and left it uncovered). Before the
        camera's perspective is known, a box wider than a whole person's may show a head alone,
        which fills its top square."""
        x1, y1, x2, y2 = box
        want = self.perspective.height(y2)
        if want is None:
            w = x2 - x1
            want = w / BELOW if w > PARTIAL_ASPECT * (y2 - y1) else w / PERSON_ASPECT
        return (x1, y1, x2, max(y2, y1 + want))

    def _side_by_side(self, box: Box) -> list[Box]:
        """One box per person of a box the motion detector saw people side by side in, where
        their heads are (MotionDetector.abreast): such a box, wider than a person, had its whole
        top square covered before the perspective was learned, over both people's clothes."""
        if isinstance(self.detector, MotionDetector):
            return self.detector.abreast.get(box, [box])
        return [box]

    def _cut_off(self) -> list[Box]:
        """The frame's tall blobs whole (MotionDetector.cut_off): the head at the top of each lies
        above the box it was cut to (a child's on an adult's shoulders showed uncovered)."""
        return list(self.detector.cut_off) if isinstance(self.detector, MotionDetector) else []

    def _thumb(self, t: LiveTrack, rgb: np.ndarray) -> None:
        x1, y1, x2, y2 = (int(round(v)) for v in t.boxes[-1])
        h = y2 - y1
        if t.thumb is not None and h <= t.thumb[0]:
            return
        H, W = rgb.shape[:2]
        pad = h // 8
        crop = rgb[max(0, y1 - pad):min(H, y2 + pad), max(0, x1 - pad):min(W, x2 + pad)]
        if crop.size:
            # Made small at once: every track keeps its thumbnail to the end of the run, and full
            # size crops of a long video's passers-by could hold gigabytes (up to 25 MB each at 4K).
            t.thumb = (float(h), _small(crop.copy()))


def _draw(rgb: np.ndarray, t: LiveTrack) -> None:
    import cv2

    c = zlib.crc32(t.track_id.encode())
    colour = (64 + c % 192, 64 + (c >> 8) % 192, 64 + (c >> 16) % 192)
    x1, y1, x2, y2 = (int(round(v)) for v in t.boxes[-1])
    cv2.rectangle(rgb, (x1, y1), (x2, y2), colour, 2)
    cv2.putText(rgb, t.track_id[:4], (x1, max(10, y1 - 3)), cv2.FONT_HERSHEY_SIMPLEX, 0.4, colour, 1, cv2.LINE_AA)


def _scene_heights(tracks: list[LiveTrack]) -> tuple[float, float]:
    """The height (h = a*y + b) a typical person's box has with feet at row y: the camera's
    perspective, fitted on this video's own tracks (least squares), then again without the boxes
    under half or over twice the first fit (heads alone, pieces, merged blobs)."""
    ys = np.array([b[3] for t in tracks for b in t.boxes], np.float64)
    hs = np.array([b[3] - b[1] for t in tracks for b in t.boxes], np.float64)
    if _scaled(ys):
        a, b = np.polyfit(ys, hs, 1)
        r = hs / np.maximum(a * ys + b, 1.0)
        typical = (r >= 0.5) & (r <= 2.0)
        if _scaled(ys[typical]):
            a, b = np.polyfit(ys[typical], hs[typical], 1)
        return float(a), float(b)
    return 0.0, float(np.median(hs)) if len(hs) else 1.0


def _scaled(ys: np.ndarray) -> bool:
    """Whether boxes with their feet at rows `ys` give the scene a scale: enough of them, spread
    over enough rows to fit the camera's perspective on."""
    return len(ys) >= 10 and float(np.ptp(ys)) > 20


def _heads_only(t: LiveTrack) -> bool:
    """Whether a track of a scene with no scale shows a head, not a person: most of its boxes
    (views) wider than a whole person's. A head whose body is the background's own colour was
    boxed as a small whole person in the frames where only its moving edge showed, and its skin
    coloured the track; a person is that wide in few frames (a bag held out). Judged track by
    track: the scene's share let everyone else's views decide, so a child walking across the
    same scene, seen whole, gave the head its skin's colours back."""
    return sum(view == PARTIAL for _, view in t.colours) > HEADS_ONLY * len(t.colours)


def track_video(video: PathLike, out: Optional[PathLike] = None, options: Optional[TrackOptions] = None) -> TrackResult:
    """Follow every person through `video` without their faces. With `out`, write the video
    with faces covered and tracks drawn (no container metadata). Descriptors live only in the
    returned result's memory."""
    opts = options or TrackOptions()
    check_person_detector(opts.detector)
    src = Path(video)
    if out is None:
        return _track(src, None, opts)  # nothing written: the covered frames reach only the tracker
    dst = Path(out)
    kind, _ = check_paths(src, dst)
    if kind != "video":
        raise ImageError(f"{src}: tracking needs a video (MP4, MOV, MKV, AVI).")
    return _track(src, dst, opts)


def _track(src: Path, dst: Optional[Path], opts: TrackOptions) -> TrackResult:
    if not src.is_file():
        raise ImageError(f"{src}: no such file; check the path.")
    finder = FaceFinder("hog", engine=DetectionEngine())
    hook = _Run(opts, finder)
    report = anonymize_video_file(src, dst, opts.mode, opts.margin, "hog", options=opts.video, finder=finder,
                                  on_frame=hook)
    people, looks = _people(hook.assigner.finish())
    # The rate of the stream the frames came from, not of what the path holds after the run.
    return TrackResult(tuple(people), report.fps or 25.0, report.frames, report.width, report.height, report,
                       opts.detector, looks)


def _people(finished: list[LiveTrack]) -> tuple[list[Person], Looks]:
    """The finished tracks long enough to be people, with their clothing colours: the median
    over the frames where the box was the person's alone (else over those where it had a whole
    person's shape), so a passer-by's coat or a shadow in a few frames does not colour the
    summary. A box that shows no whole person (wider than one, or under WHOLE_SHARE of the
    height a person has at that place: a head alone, someone from the shoulders up) never
    counts: its "top" was a face's skin, and a search would rank people by skin tone. A track
    seen only so has no colours (zero shares: every search scores it as the scene's mean), nor
    has a track of a scene with no scale whose boxes are mostly that wide (_heads_only).
    Each track's height is its boxes' median over the scene's typical height (_scene_heights)."""
    tracks = [t for t in finished if len(t.frames) >= MIN_DETECTIONS and not ghost(t)]
    a, b = _scene_heights(tracks)
    unscaled = not _scaled(np.array([bx[3] for t in tracks for bx in t.boxes], np.float64))
    people: list[Person] = []
    ups: list[np.ndarray] = []
    los: list[np.ndarray] = []
    seen_on: list[int] = []
    heights: list[float] = []
    for t in tracks:
        ratios = [(bx[3] - bx[1]) / max(a * bx[3] + b, 1.0) for bx in t.boxes]
        # A track seen as a head on its body's shadow in some frames is a head in the others too,
        # where the shadow did not show (the model still learning, the body still): a head's skin
        # was its colour in a scene with no whole person to give it a scale.
        head = (unscaled and _heads_only(t)) or t.heads >= HEAD_SHARE * t.hits
        whole = [(c, view) for (c, view), r in zip(t.colours, ratios)
                 if view != PARTIAL and r >= WHOLE_SHARE and not head]
        clear = [c for c, view in whole if view == CLEAR] or [c for c, _ in whole]
        mid = np.median(clear, axis=0) if clear else np.zeros_like(t.colours[0][0])
        half = len(mid) // 2
        up, lo = _shares(mid[:half]), _shares(mid[half:])
        thumb = t.thumb[1] if t.thumb is not None else None
        height = float(np.median(ratios))
        people.append(Person(t.track_id, list(t.frames), list(t.boxes), summary(up), summary(lo), height, thumb,
                             t.stride))
        ups.append(up)
        los.append(lo)
        seen_on.append(len(clear))
        heights.append(height)
    return people, Looks(ups, los, seen_on, heights)


def _shares(v: np.ndarray) -> np.ndarray:
    total = float(v.sum())
    return (v / total).astype(np.float32) if total > 0 else v.astype(np.float32)


def _small(crop: np.ndarray) -> np.ndarray:
    from PIL import Image

    h, w = crop.shape[:2]
    s = min(1.0, THUMB_MAX_SIDE / max(h, w))
    if s >= 1.0:
        return crop
    return np.asarray(Image.fromarray(crop).resize((max(1, round(w * s)), max(1, round(h * s)))))
