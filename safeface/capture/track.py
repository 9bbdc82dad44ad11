"""The subject's 5 landmarks through a clip, cheaply.

The detector (HOG) runs on the first frames until it finds the subject (the pipeline's pick rule)
and again every few sampled frames inside a window around the face; in between, the box is
carried from the previous frame's landmarks (the box-to-landmarks geometry of the last detection,
moved and scaled with the points) and only the 5-point shape predictor runs (about 1 ms). Frames
are sampled at up to SAMPLE_FPS: head turns are slow against that, and the cost stays within a
few hundred milliseconds for a 2 s clip.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Optional

import numpy as np

from ..hazmat.vision import pick_subject
from ..hazmat.vision.dlib_engine import MASKED_FACE_SOURCE
from .clip import Clip

SAMPLE_FPS = 15.0
REDETECT_EVERY = 10  # sampled frames
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


def _geometry(box: tuple[float, float, float, float], pts: np.ndarray) -> tuple[float, float, float, float]:
    """The box relative to the landmarks: centre offset and side, in units of the points' spread."""
    c = pts.mean(axis=0)
    s = float(np.sqrt(((pts - c) ** 2).sum(axis=1).mean())) or 1.0
    bx, by = (box[0] + box[2]) / 2, (box[1] + box[3]) / 2
    return (bx - c[0]) / s, (by - c[1]) / s, (box[2] - box[0]) / s, (box[3] - box[1]) / s


def _box_from(geom: tuple[float, float, float, float], pts: np.ndarray) -> tuple[float, float, float, float]:
    c = pts.mean(axis=0)
    s = float(np.sqrt(((pts - c) ** 2).sum(axis=1).mean())) or 1.0
    cx, cy = c[0] + geom[0] * s, c[1] + geom[1] * s
    w, h = geom[2] * s, geom[3] * s
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


def track_subject(clip: Clip, engine: Any) -> Optional[Track]:
    """The subject's landmarks in the sampled frames, or None when no face is found."""
    times = np.asarray(clip.times)
    step_t = 1.0 / SAMPLE_FPS
    picked: list[int] = []
    last = -1e9
    for i, t in enumerate(times):
        if t - last >= step_t * 0.95:
            picked.append(i)
            last = t
    pts_out: list[np.ndarray] = []
    idx_out: list[int] = []
    boxes: list[tuple[float, float, float, float]] = []
    geom: Optional[tuple[float, float, float, float]] = None
    prev: Optional[np.ndarray] = None
    most = 0
    since = 0
    for n, i in enumerate(picked):
        frame = clip.frames[i]
        face = None
        if prev is None:
            if n % 3:  # until the face is found, search every third sampled frame only
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
