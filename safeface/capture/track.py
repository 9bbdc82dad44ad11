"""The subject's 5 landmarks through a clip, cheaply.

The detector (HOG) runs on the first frames until it finds the subject (the pipeline's pick rule)
and again every REDETECT_EVERY frames inside a window around the face; in between, the box is
carried from the previous frame's landmarks (the box-to-landmarks offset of the last detection,
moved with the points, at the size of that detection: _box_from) and only the 5-point shape
predictor runs (about 1 ms). Every
frame of the clip is followed (a clip keeps at most 60 frames a second: clip.py), so the points a
clip gives do not depend on the rate declared for it: following every second or third frame (the
15 fps the checks sample), the box carried over a larger step slipped off a turning face, and
which frames were skipped, so what the points read, was chosen by the `fps=` a caller declared.
The physics, surface and replay checks read the samples at up to SAMPLE_FPS (Track.sampled); the
challenge reads every frame (challenge.py). The cost stays within a few hundred milliseconds for
a 2 s clip.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Optional

import numpy as np

from ..hazmat.vision import pick_subject
from ..hazmat.vision.dlib_engine import MASKED_FACE_SOURCE
from .clip import Clip

SAMPLE_FPS = 15.0
REDETECT_EVERY = 5  # frames followed (0.17 s at 30 fps; with 10, the box slipped near profile)
MAX_SEARCHES = 25  # full-frame detections at most until the face is found (5 s at 5 a second before)
SEARCH_MARGIN = 0.8  # the re-detection window: the box grown by this share of its side on each side


@dataclass(frozen=True)
class Track:
    times: np.ndarray  # (n,) seconds
    points: np.ndarray = field(repr=False)  # (n, 5, 2) landmarks, pixels
    frames: tuple[int, ...] = ()  # index into the clip's frames of each tracked sample
    boxes: tuple[tuple[float, float, float, float], ...] = ()
    faces_seen: int = 1  # most faces the detector found in one frame

    def __len__(self) -> int:
        return len(self.times)

    def sampled(self, rate: float = SAMPLE_FPS) -> "Track":
        """The samples at most `rate` per second apart: the ones the physics, surface and replay
        checks read (calibrated at 15 samples per second), from the track of every frame."""
        keep = sampled_indices(self.times, rate)
        return Track(self.times[keep], self.points[keep], tuple(self.frames[i] for i in keep),
                     tuple(self.boxes[i] for i in keep), self.faces_seen)


def _geometry(box: tuple[float, float, float, float], pts: np.ndarray) -> tuple[float, float, float, float]:
    """The box relative to the landmarks: its centre's offset from theirs, and its size (pixels)."""
    c = pts.mean(axis=0)
    bx, by = (box[0] + box[2]) / 2, (box[1] + box[3]) / 2
    return bx - c[0], by - c[1], box[2] - box[0], box[3] - box[1]


def _box_from(geom: tuple[float, float, float, float], pts: np.ndarray) -> tuple[float, float, float, float]:
    """The box carried to the landmarks `pts`: moved with them, the size of the last detection.
    (Scaled with the points' spread, it shrank with them as the head turned towards profile, the
    points shrank further in the smaller box, and on the stage clip it was 4 px wide within 15
    frames: the face was lost, and its "yaw" jumped between +-55 degrees from frame to frame.)"""
    c = pts.mean(axis=0)
    cx, cy = c[0] + geom[0], c[1] + geom[1]
    w, h = geom[2], geom[3]
    return cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2


def _detect_in(engine: Any, frame: np.ndarray, window: Optional[tuple[float, float, float, float]]) -> list[Any]:
    """Faces in the frame, or in a window of it (coordinates of the whole frame)."""
    h, w = frame.shape[:2]
    if window is None:
        x1, y1, x2, y2 = 0, 0, w, h
    else:
        x1, y1 = max(0, int(window[0])), max(0, int(window[1]))
        x2, y2 = min(w, int(window[2])), min(h, int(window[3]))
        if x2 - x1 < 40 or y2 - y1 < 40:
            return []
    crop = np.ascontiguousarray(frame[y1:y2, x1:x2])
    # HOG finds faces from 80 px. A window around a face smaller than that is upsampled once;
    # the whole frame is searched as it is (a face under 80 px in a 640 px frame is too far).
    up = 1 if window is not None and (x2 - x1) < 2.6 * 80 else 0
    faces: list[Any] = list(engine.detect(crop, "hog", up))
    if not faces and MASKED_FACE_SOURCE in getattr(engine, "detectors", ()):
        # A mask hides the nose and mouth HOG looks for; our masked-face detector does not need them.
        faces = list(engine.detect(crop, MASKED_FACE_SOURCE, up))
    if x1 or y1:
        from ..hazmat.vision.types import Face

        faces = [Face((f.box[0] + x1, f.box[1] + y1, f.box[2] + x1, f.box[3] + y1), f.score,
                      f.landmarks + np.array([x1, y1], np.float32), f.detector) for f in faces]
    return faces


def sampled_indices(times: np.ndarray, rate: float = SAMPLE_FPS) -> list[int]:
    """The indices of the times at most `rate` per second apart (the first, then each one at
    least 0.95 / rate after the one picked before)."""
    step_t = 1.0 / rate
    picked: list[int] = []
    last = -1e9
    for i, t in enumerate(np.asarray(times, np.float64)):
        if t - last >= step_t * 0.95:
            picked.append(i)
            last = float(t)
    return picked


def track_subject(clip: Clip, engine: Any) -> Optional[Track]:
    """The subject's landmarks in every frame of the clip from the one where it was found, or
    None when no face is found."""
    times = np.asarray(clip.times)
    # Until the face is found, every few frames, by their count (at most MAX_SEARCHES full-frame
    # detections): which frame it is found in, where the turns are read from, is not the declared rate's.
    every = max(3, -(-len(clip.frames) // MAX_SEARCHES))
    pts_out: list[np.ndarray] = []
    idx_out: list[int] = []
    boxes: list[tuple[float, float, float, float]] = []
    geom: Optional[tuple[float, float, float, float]] = None
    prev: Optional[np.ndarray] = None
    most = 0
    since = 0
    for i, frame in enumerate(clip.frames):
        face = None
        if prev is None:
            if i % every:
                continue
            faces = _detect_in(engine, frame, None)
            most = max(most, len(faces))
            face = pick_subject(faces, frame.shape)
        elif since >= REDETECT_EVERY:
            box = _box_from(geom, prev) if geom else None
            if box is not None:
                side = max(box[2] - box[0], box[3] - box[1])
                m = SEARCH_MARGIN * side
                faces = _detect_in(engine, frame, (box[0] - m, box[1] - m, box[2] + m, box[3] + m))
                if not faces:
                    # The carried box may have drifted off the face (near profile the points slide
                    # and the box follows them), so the window missed it: search the whole frame
                    # for the face nearest the box.
                    faces = _detect_in(engine, frame, None)
                    cx, cy = (box[0] + box[2]) / 2, (box[1] + box[3]) / 2
                    faces = sorted(faces, key=lambda f: (f.box[0] + f.box[2] - 2 * cx) ** 2
                                   + (f.box[1] + f.box[3] - 2 * cy) ** 2)[:1]
                face = max(faces, key=lambda f: f.area) if faces else None
            since = 0
        if face is not None:
            geom = _geometry(face.box, np.asarray(face.landmarks, np.float64))
            pts = np.asarray(face.landmarks, np.float64)
            box = face.box
        elif prev is not None and geom is not None:
            box = _box_from(geom, prev)
            pts = np.asarray(engine.face_from_box(frame, box).landmarks, np.float64)
        else:
            continue
        since += 1
        prev = pts
        pts_out.append(pts)
        idx_out.append(i)
        boxes.append(tuple(float(v) for v in box))  # type: ignore[arg-type]
    if not pts_out:
        return None
    return Track(times[idx_out], np.stack(pts_out), tuple(idx_out), tuple(boxes), max(1, most))
