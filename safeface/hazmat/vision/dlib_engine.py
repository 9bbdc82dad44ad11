"""The default engine: dlib's HOG and MMOD detectors, its 5-point shape predictor and its ResNet
face descriptor (128-d), all from face-recognition-models, verified by the registry."""

from __future__ import annotations

import hashlib
import queue
import threading
from typing import Any, Sequence

import numpy as np

from ...errors import ImageError, ModelError
from ...modelstore import registry
from .arrays import check_chips, check_rgb_image, l2_normalize
from .masked_faces import shared_detector
from .types import Face

CHIP_SIZE = 150
CHIP_PADDING = 0.25
DETECTORS = ("hog", "mmod", "masked", "maskface")
# The "masked" step looks again with a lower bar, for faces whose mouth and nose a mask hides:
# dlib's HOG and MMOD models score such faces low (on LFW dev with random synthetic masks, HOG
# finds 24% and MMOD 77% at their usual thresholds). The pipeline keeps a face from this step only
# when the mask detector says its lower face is covered. Scores as dlib gives them (HOG: the
# detector's adjust_threshold; MMOD: the raw network score, usually 0).
MASKED_HOG_THRESHOLD = -1.0
MASKED_MMOD_THRESHOLD = -1.0
# dlib's CNN (MMOD) boxes sit higher and further left on a face than its HOG boxes, from which
# the 5-point shape model places landmarks best. On the face_recognition and insightface sample
# photos (25 faces both detectors find; LFW not used), the HOG box centre lies 0.03 right of and
# 0.07 below the MMOD one, in MMOD box widths; sizes differ either way (quartiles 0.92-1.09), so
# only the shift is applied. Landmarks for MMOD faces start from the box moved by it; the box
# reported stays the detector's. LFW dev with MMOD alone: 97.8% -> 98.3% (HOG alone: 98.4%).
MMOD_LANDMARK_SHIFT = (0.03, 0.07)
# The masked-face detector (masked_faces.py): as a detector of its own (at its own bar, for callers
# that cannot confirm a mask: the liveness tracker), and among the masked step's candidates (at
# its lower bar, each confirmed by the mask detector; labelled "masked-maskface").
MASKED_FACE_SOURCE = "maskface"
# Its bar alone. On LFW dev people it was not trained on (upsample 1): 98% of masked faces found,
# a box elsewhere on 0.6% of bare images. The liveness tracker asks it only where HOG found no
# face, and a clip is judged by how the face moves, not by being found: at its own bar (0) it
# found 88% of masked faces in one image, and lost the stage clip's performer in a gaiter.
MASKED_FACE_ALONE_BAR = -0.5


def _dlib() -> Any:
    try:
        import dlib
    except ImportError as exc:  # pragma: no cover - dlib-bin is a hard dependency
        raise ModelError(f"dlib cannot be imported ({exc}); run: pip install dlib-bin") from None
    return dlib


class DlibEngine:
    """dlib on the CPU. Thread-safe: a call takes a HOG detector from a pool, so threads detect in
    parallel (dlib's detector keeps scratch buffers, so one is never shared, and it releases the
    GIL while it scans); the other dlib objects are guarded by a lock each."""

    name = "dlib"
    embedding_dim = 128
    detectors = DETECTORS
    chip_size = CHIP_SIZE

    def __init__(self) -> None:
        dlib = _dlib()
        self._dlib = dlib
        # Detectors are kept for reuse: building one costs about 175 ms.
        self._hogs: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self._hogs.put(dlib.get_frontal_face_detector())
        self._shape = dlib.shape_predictor(str(registry.verified_path("dlib-shape-5")))
        self._rec = dlib.face_recognition_model_v1(str(registry.verified_path("dlib-resnet-v1")))
        self._mmod: Any = None
        self._lock = threading.Lock()
        self._mmod_lock = threading.Lock()
        # The weak detections of the last image this thread searched, by (detector, upsample):
        # see weak_rects.
        self._weak = threading.local()

    # -- detection -------------------------------------------------------------------------
    def _mmod_model(self) -> Any:
        with self._mmod_lock:
            if self._mmod is None:
                path = registry.verified_path("dlib-mmod")
                self._mmod = self._dlib.cnn_face_detection_model_v1(str(path))
            return self._mmod

    def detect_rects(self, image: np.ndarray, detector: str = "hog", upsample: int = 1) -> list[tuple[Any, float]]:
        """dlib rectangles (unclipped) with their detector scores."""
        image = check_rgb_image(image)
        if detector == "hog":
            # One scan at the masked step's lower bar: the faces above dlib's own bar are the
            # step's; those under it are kept for weak_faces (a scan's strongest detections come
            # out the same at either bar: dlib suppresses overlaps weakest first).
            rects = self._hog_rects(image, upsample, MASKED_HOG_THRESHOLD)
            self._keep_weak(image, ("hog", upsample), [(r, s) for r, s in rects if s < 0.0])
            return [(r, s) for r, s in rects if s >= 0.0]
        if detector == MASKED_FACE_SOURCE:
            # Alone (no mask detector to confirm what it finds), at its own bar.
            return shared_detector().rects(image, upsample, threshold=MASKED_FACE_ALONE_BAR)
        if detector == "mmod":
            if mmod_too_small(image, upsample):
                return []
            model = self._mmod_model()
            try:
                with self._mmod_lock:
                    dets = model(image, upsample)
            except RuntimeError as exc:  # dlib's own refusals of odd inputs, untyped
                h, w = image.shape[:2]
                raise ImageError(f"the MMOD detector cannot search a {w}x{h} image ({str(exc)[:80]}); pass a "
                                 "photograph of the face.") from None
            return [(d.rect, float(d.confidence)) for d in dets]
        raise ValueError(f"unknown detector {detector!r}; choose one of {', '.join(DETECTORS)}.")

    def masked_rects(self, image: np.ndarray, upsample: int = 1) -> list[tuple[Any, float, str]]:
        """Candidates for a masked face: (rect, score, which detector). The faces our masked-face
        detector finds at `upsample` (masked_faces.py), then the weak detections of this thread's
        searches of this very image (HOG at every upsampling it was searched at; dlib's own CNN
        takes no threshold), HOG's at `upsample` searched for when missing."""
        image = check_rgb_image(image)
        if ("hog", upsample) not in self._kept_weak(image):
            self.detect_rects(image, "hog", upsample)
        found = [(r, s, MASKED_FACE_SOURCE) for r, s in shared_detector().rects(image, upsample)]
        return found + [(r, s, det) for (det, _), rects in self._kept_weak(image).items() for r, s in rects]

    def weak_rects(self, image: np.ndarray, detector: str, upsample: int = 1) -> list[tuple[Any, float]]:
        """The detections under the bar, and above the masked step's, that `detector`'s search of
        this very image at `upsample` found, in this thread: no second scan is made. [] when the
        thread's last search was of another image."""
        return list(self._kept_weak(image).get((detector, upsample), []))

    def _keep_weak(self, image: np.ndarray, search: tuple[str, int], rects: list[tuple[Any, float]]) -> None:
        key = _image_key(image)
        last = getattr(self._weak, "value", None)
        if last is None or last[0] != key:
            kept: dict[tuple[str, int], list[tuple[Any, float]]] = {}
            last = self._weak.value = (key, kept)
        last[1][search] = rects

    def _kept_weak(self, image: np.ndarray) -> dict[tuple[str, int], list[tuple[Any, float]]]:
        last = getattr(self._weak, "value", None)
        return last[1] if last is not None and last[0] == _image_key(image) else {}

    def weak_faces(self, image: np.ndarray, detector: str, upsample: int = 1) -> list[Face]:
        """weak_rects as faces (labelled "masked-DETECTOR"), with landmarks."""
        return self._faces(image, [(r, s, f"masked-{detector}") for r, s in self.weak_rects(image, detector, upsample)])

    def _hog_rects(self, image: np.ndarray, upsample: int, threshold: float) -> list[tuple[Any, float]]:
        try:
            hog = self._hogs.get_nowait()
        except queue.Empty:
            hog = self._dlib.get_frontal_face_detector()
        try:
            rects, scores, _ = hog.run(image, upsample, threshold)
        finally:
            self._hogs.put(hog)
        return list(zip(rects, [float(s) for s in scores]))

    def landmarks_for(self, image: np.ndarray, rect: Any) -> np.ndarray:
        with self._lock:
            shape = self._shape(image, rect)
        return np.array([[p.x, p.y] for p in shape.parts()], dtype=np.float32)

    def detect(self, image: np.ndarray, detector: str = "hog", upsample: int = 1) -> list[Face]:
        if detector == "masked":
            found = [(r, s, f"masked-{src}") for r, s, src in self.masked_rects(image, upsample)]
        else:
            found = [(r, s, detector) for r, s in self.detect_rects(image, detector, upsample)]
        return self._faces(image, found)

    def _faces(self, image: np.ndarray, found: Sequence[tuple[Any, float, str]]) -> list[Face]:
        h, w = image.shape[:2]
        faces = []
        for rect, score, label in found:
            box = (
                float(max(rect.left(), 0)),
                float(max(rect.top(), 0)),
                float(min(rect.right(), w)),
                float(min(rect.bottom(), h)),
            )
            if box[2] <= box[0] or box[3] <= box[1]:
                continue
            start = self._shifted(rect, MMOD_LANDMARK_SHIFT) if label.endswith("mmod") else rect
            faces.append(Face(box=box, score=score, landmarks=self.landmarks_for(image, start), detector=label))
        return faces

    def _shifted(self, rect: Any, shift: tuple[float, float]) -> Any:
        w = rect.right() - rect.left()
        dx, dy = int(round(shift[0] * w)), int(round(shift[1] * w))
        return self._dlib.rectangle(rect.left() + dx, rect.top() + dy, rect.right() + dx, rect.bottom() + dy)

    def face_from_box(self, image: np.ndarray, box: Sequence[float], detector: str = "given") -> Face:
        """A face at a box the caller supplies (its own detector, or a centre prior)."""
        x1, y1, x2, y2 = (int(round(v)) for v in box)
        rect = self._dlib.rectangle(x1, y1, x2, y2)
        return Face(box=(float(x1), float(y1), float(x2), float(y2)), score=0.0,
                    landmarks=self.landmarks_for(image, rect), detector=detector)

    # -- alignment and embedding -----------------------------------------------------------
    def chips(self, image: np.ndarray, faces: Sequence[Face]) -> np.ndarray:
        """Aligned (N, 150, 150, 3) uint8 RGB chips, dlib's get_face_chip geometry."""
        image = check_rgb_image(image)
        out = np.empty((len(faces), CHIP_SIZE, CHIP_SIZE, 3), dtype=np.uint8)
        for i, face in enumerate(faces):
            shape = self._full_object_detection(face)
            out[i] = self._dlib.get_face_chip(image, shape, size=CHIP_SIZE, padding=CHIP_PADDING)
        return out

    def _full_object_detection(self, face: Face) -> Any:
        dlib = self._dlib
        x1, y1, x2, y2 = (int(round(v)) for v in face.box)
        parts = dlib.points()
        for x, y in face.landmarks:
            parts.append(dlib.point(int(round(float(x))), int(round(float(y)))))
        return dlib.full_object_detection(dlib.rectangle(x1, y1, x2, y2), parts)

    def raw_descriptors(self, chips: np.ndarray, jitters: int = 0) -> np.ndarray:
        """dlib's descriptors as dlib gives them (not unit length): (N, 128) float64."""
        chips = check_chips(chips, CHIP_SIZE)
        if len(chips) == 0:
            return np.zeros((0, self.embedding_dim), dtype=np.float64)
        with self._lock:
            descs = self._rec.compute_face_descriptor(list(chips), jitters)
        return np.array([np.array(d) for d in descs], dtype=np.float64)

    def embed_chips(self, chips: np.ndarray) -> np.ndarray:
        """(N, 128) float32 unit vectors from (N, 150, 150, 3) uint8 RGB chips."""
        return l2_normalize(self.raw_descriptors(chips))


# MMOD's smallest face is about 40 px at upsampling 0; on an image whose short side is under this
# many pixels once upsampled, dlib's CNN detector corrupted the heap (SIGSEGV or an abort on a
# 500x1 image, a bus error on a 2x2 video frame) or raised, and no face fits there anyway.
MMOD_MIN_SIDE = 20


def mmod_too_small(image: np.ndarray, upsample: int) -> bool:
    """Whether `image`, upsampled `upsample` times, is too small for MMOD to search."""
    side = int(min(image.shape[:2])) << max(int(upsample), 0)
    return side < MMOD_MIN_SIDE


def _image_key(image: np.ndarray) -> tuple[Any, ...]:
    """Names an image's pixels for the per-thread caches of what a search of it found."""
    return (image.shape, hashlib.blake2b(np.ascontiguousarray(image).data, digest_size=16).digest())
