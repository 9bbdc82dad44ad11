"""Detect, align, embed: one image in, unit-length face embeddings out. The image never leaves
this module; nothing here touches disk, consent or the gallery."""

from __future__ import annotations

import math
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Callable, Optional, Sequence

import numpy as np
from PIL import Image

from ...errors import InvalidArgument
from ...imageio import ImageInput, load_image
from ...jsonnum import finite_number
from ...workers import worker_count
from .arrays import l2_normalize
from .types import Engine, Face, FaceEmbedding, Outcome

if TYPE_CHECKING:
    from .eye_cover import EyeCheck
    from .mask_detect import MaskCheck

# A detection step: (detector, upsample). The pipeline tries them in order until one finds a face.
Step = tuple[str, int]

# The cost of a detection step grows with the pixels it scans, upsampling included (each upsample
# doubles both sides). A 4-megapixel photo at upsample 2 is 64 million pixels: 19 s and 2.8 GB in
# verify. A step that would scan more than the budget scans a scaled-down copy instead; a face at
# an enrolment or a gate fills far more than the 80x80 pixels HOG needs at that scale.
DEFAULT_DETECT_MEGAPIXELS = 4.0
# No detector finds a face under 20 pixels (HOG's 80-pixel window at upsample 2), and ONNX
# Runtime fails on a CNN input smaller than its kernels: smaller images have no face to find.
MIN_DETECT_SIDE = 20
# Two detections from different steps are one face when their overlap covers half the smaller box.
SAME_FACE_OVERLAP = 0.5
# The masked step weighs at most this many of its weak candidates, best score first.
MASKED_CANDIDATES = 5
# A weak detection beside the faces a step found is asked about its lower face only when its box
# is at least this share of the widest of them as wide. On LFW dev with synthetic masks, the
# masked subjects found beside a bystander were 0.83 to 6 times as wide as it; a small weak box
# is more often texture (on a bare portrait with the face high up, a suit's pattern near the
# middle of the picture outranked the face and was called masked).
BESIDE_MIN_SIDE = 0.8
# Engines whose embeddings the mask detector and the eye-cover check were trained on (the same
# dlib networks).
MASK_CHECK_ENGINES = ("dlib", "onnx")

# The most a detection step upsamples (each doubles both sides). The budget below scales the image
# down to pay for it, to 1 pixel at worst, and dlib then upsampled that 1 pixel: a step of 40 had
# the process killed for its memory at the first detect.
MAX_UPSAMPLE = 3

# Which face of several is the subject. "prominent": the largest, less a penalty for distance
# from the image centre (area minus twice the squared offset of its centre, both in pixels), so
# that a bystander at the edge who happens to be closer to the camera is not taken for the person
# framed in the middle. On LFW dev it lifted accuracy from 98.5% (largest) to 99.0%.
PICKS = ("prominent", "largest", "central")
DEFAULT_PICK = "prominent"
CENTRE_WEIGHT = 2.0


def check_pick(rule: str) -> str:
    if rule not in PICKS:
        raise InvalidArgument(f"unknown pick rule {rule!r}; choose one of {', '.join(PICKS)}.")
    return rule


def pick_subject(faces: Sequence[Face], shape: tuple[int, ...], rule: str = DEFAULT_PICK) -> Optional[Face]:
    """The subject among `faces` of an image of `shape` by `rule` (see PICKS); None if no face."""
    check_pick(rule)
    if not faces:
        return None
    h, w = shape[:2]

    def offset2(f: Face) -> float:
        x1, y1, x2, y2 = f.box
        return float(((x1 + x2) / 2 - w / 2) ** 2 + ((y1 + y2) / 2 - h / 2) ** 2)

    if rule == "largest":
        return max(faces, key=lambda f: f.area)
    if rule == "central":
        return min(faces, key=offset2)
    return max(faces, key=lambda f: f.area - CENTRE_WEIGHT * offset2(f))


@dataclass(frozen=True)
class PipelineConfig:
    """How faces are found and embedded.

    `steps`: detectors tried in order until one finds a face. HOG at upsample 1 finds most faces
    quickly; upsampling finds small ones; MMOD finds turned and poorly lit faces that HOG misses;
    "masked" looks again with a lower bar and keeps only faces whose lower face the mask detector
    finds covered (a mask hides what HOG and MMOD look for; see dlib_engine.MASKED_*); with it in
    the steps, a step that finds only a bystander also has the weak detections of its own search
    that would be picked over it asked the same (a masked subject scores under the bar).
    `flip`: average the descriptors of the chip and its mirror image, which lowers the variance
    of the descriptor at twice the embedding cost.
    `center_prior`: for pre-cropped face images only (the face fills the middle of the frame),
    use a central box when no detector finds a face. Off unless the caller asks for it.
    `jitter`: when above 1, average the descriptors of that many randomly perturbed copies of each
    chip (dlib's test-time jitter: small shifts, zooms, rotations and mirrorings), at that many
    times the embedding cost. `jitter_seed` makes the perturbations repeatable.
    `pick`: which face is embedded when an image shows several (see PICKS).
    `threads`: images of one `embed_many` call decoded, searched and aligned at once (0: one per
    core, at most 4); dlib's detector and ONNX Runtime release the GIL while they work.
    `detect_megapixels`: the most pixels, in millions and after upsampling, one detection step
    scans; a larger image is scaled down for that step (boxes and landmarks come back in the
    image's own pixels), and a step that would then scan no finer than an earlier step of the
    same detector is skipped. It bounds the time and memory of one call.
    """

    steps: tuple[Step, ...] = (("hog", 1), ("hog", 2), ("mmod", 1), ("masked", 1))
    flip: bool = True
    center_prior: bool = False
    center_fraction: float = 0.5
    jitter: int = 0
    jitter_seed: int = 0
    pick: str = DEFAULT_PICK
    threads: int = 0
    detect_megapixels: float = DEFAULT_DETECT_MEGAPIXELS

    def __post_init__(self) -> None:
        check_pick(self.pick)
        mp = self.detect_megapixels
        if not finite_number(mp) or mp < 0.1:
            raise InvalidArgument(f"detect_megapixels must be a number of at least 0.1, got {mp!r}.")
        if isinstance(self.threads, bool) or not isinstance(self.threads, int) or self.threads < 0:
            raise InvalidArgument(f"threads must be a whole number >= 0 (0: one per core), got {self.threads!r}.")
        if not isinstance(self.steps, (tuple, list)) or not all(
                isinstance(step, (tuple, list)) and len(step) == 2 and isinstance(step[0], str)
                and type(step[1]) is int and 0 <= step[1] <= MAX_UPSAMPLE for step in self.steps):
            raise InvalidArgument(f"steps is a sequence of (detector name, upsample) pairs, each upsample a whole "
                                  f"number from 0 to {MAX_UPSAMPLE}.")

    def with_(self, **kw: object) -> "PipelineConfig":
        fields = {**self.__dict__, **kw}
        return PipelineConfig(**fields)  # type: ignore[arg-type,unused-ignore]


@dataclass
class Pipeline:
    engine: Engine
    config: PipelineConfig = field(default_factory=PipelineConfig)

    def detect(self, image: ImageInput, *, count_all: bool = False) -> list[Face]:
        """All faces, from the first detection step that finds any; with `count_all`, the faces
        that any step finds (each counted once), so that a bystander only an upsampled or MMOD
        step sees is still counted. Enrolment and verification use it to refuse a second face."""
        img = load_image(image)
        h, w = img.shape[:2]
        if min(h, w) < MIN_DETECT_SIDE:
            return []
        budget = self.config.detect_megapixels * 1e6
        scaled: dict[float, np.ndarray] = {}
        finest: dict[str, float] = {}
        found: list[Face] = []
        masked_step = any(d == "masked" for d, _ in self.config.steps)
        for detector, upsample in self.config.steps:
            if detector == "masked" and found:
                continue  # the masked step is for images where no other step found a face
            scale = min(1.0, math.sqrt(budget / (h * w * 4.0 ** upsample)))
            effective = scale * 2.0 ** upsample
            if effective <= finest.get(detector, 0.0) * 1.01:
                continue  # scaled down to the budget, it would scan what an earlier step scanned
            finest[detector] = effective
            if scale < 1.0 and scale not in scaled:
                scaled[scale] = _resized(img, scale)
            if detector == "masked":
                faces = self._masked_faces(scaled.get(scale, img), upsample)
            else:
                faces = self.engine.detect(scaled.get(scale, img), detector=detector, upsample=upsample)
                if faces and masked_step:
                    faces += self._masked_beside(scaled.get(scale, img), faces, detector, upsample)
            if scale < 1.0:
                faces = [_rescaled(f, 1.0 / scale, w, h) for f in faces]
            found += [f for f in faces if not any(_same_face(f, g) for g in found)]
            if found and not count_all:
                return found
        if not found and self.config.center_prior:
            return [self._center_face(img)]
        return found

    def _masked_faces(self, img: np.ndarray, upsample: int) -> list[Face]:
        """Weak candidates kept only when their lower face is covered: a low bar alone would find
        faces in wallpaper. Engines without a masked search (insightface) skip the step."""
        if not hasattr(self.engine, "masked_rects"):
            return []
        return self._covered(img, self.masked_candidates(img, self.engine.detect(img, detector="masked", upsample=upsample)))

    def _masked_beside(self, img: np.ndarray, faces: list[Face], detector: str, upsample: int) -> list[Face]:
        """A masked subject next to a bare face: when a step finds only a bystander, the masked
        face in the middle of the picture often scored just under the bar in the same search.
        Those weak detections are kept when their lower face is covered."""
        return self._covered(img, self.masked_candidates(img, self.beside(img, faces, detector, upsample)))

    def beside(self, img: np.ndarray, faces: list[Face], detector: str, upsample: int) -> list[Face]:
        """The weak detections of the search by `detector` that just found `faces` in `img` (no
        second scan) that are none of them and would be picked over every one of them."""
        weak_faces: Optional[Callable[[np.ndarray, str, int], list[Face]]] = getattr(self.engine, "weak_faces", None)
        if weak_faces is None:
            return []
        rule = self.config.pick
        side = BESIDE_MIN_SIDE * max(f.box[2] - f.box[0] for f in faces)
        return [c for c in weak_faces(img, detector, upsample)
                if c.box[2] - c.box[0] >= side and not any(_same_face(c, f) for f in faces)
                and pick_subject([*faces, c], img.shape, rule) is c]

    def masked_candidates(self, img: np.ndarray, candidates: Sequence[Face]) -> list[Face]:
        """The weak candidates the mask detector is asked about: the best MASKED_CANDIDATES, best
        first (HOG and MMOD scores both read 0 at their detector's own bar), a face that two
        searches found counted once."""
        h, w = img.shape[:2]
        faces: list[Face] = []
        for f in sorted(candidates, key=lambda f: -f.score):
            # A weak candidate in a corner of the image (cut by two edges) is far more often
            # texture than a face: random noise gave one.
            corner = (f.box[0] <= 0) + (f.box[1] <= 0) + (f.box[2] >= w) + (f.box[3] >= h) >= 2
            if not corner and not any(_same_face(f, g) for g in faces):
                faces.append(f)
        return faces[:MASKED_CANDIDATES]

    def _covered(self, img: np.ndarray, faces: list[Face]) -> list[Face]:
        """The faces whose lower face the mask detector finds covered."""
        from .mask_detect import check_mask

        if not faces:
            return []
        vecs = self.embed_faces(img, faces)
        return [f for f, v in zip(faces, vecs) if check_mask(img, f.landmarks, v).masked]

    def mask_check(self, image: ImageInput, face: Face, embedding: np.ndarray) -> Optional["MaskCheck"]:
        """Whether the face's lower half is covered; None for an engine the mask detector was not
        trained for (it weighs the dlib recognizer's embedding)."""
        if self.engine.name not in MASK_CHECK_ENGINES:
            return None
        from .mask_detect import check_mask

        return check_mask(load_image(image), face.landmarks, embedding)

    def eye_check(self, image: ImageInput, face: Face, embedding: np.ndarray) -> Optional["EyeCheck"]:
        """Whether the face's eyes are hidden (dark glasses); None for an engine the check was not
        trained for."""
        if self.engine.name not in MASK_CHECK_ENGINES:
            return None
        from .eye_cover import check_eyes

        return check_eyes(load_image(image), face.landmarks, embedding)

    def visible_embedding(self, image: ImageInput, face: Face, *, masked: bool = False) -> np.ndarray:
        """The visible-region template of `face` (see visible.py); `masked`: the face wears a mask."""
        from .visible import visible_region_embedding

        return visible_region_embedding(self, image, face, masked=masked)

    def _center_face(self, img: np.ndarray) -> Face:
        h, w = img.shape[:2]
        f = self.config.center_fraction
        side = f * min(h, w)
        box = ((w - side) / 2, (h - side) / 2, (w + side) / 2, (h + side) / 2)
        face_from_box = getattr(self.engine, "face_from_box", None)
        if face_from_box is None:
            raise NotImplementedError(f"engine {self.engine.name!r} cannot place landmarks on a given box.")
        face: Face = face_from_box(img, box, detector="center-prior")
        return face

    def embed_faces(self, image: np.ndarray, faces: Sequence[Face]) -> np.ndarray:
        """(N, d) float32 unit embeddings of the given faces of a decoded image."""
        if not faces:
            return np.zeros((0, self.engine.embedding_dim), dtype=np.float32)
        return self.embed_chips(self.engine.chips(image, faces))

    def embed_chips(self, chips: np.ndarray) -> np.ndarray:
        if self.config.jitter > 1:
            from .jitter import jittered_embeddings

            return jittered_embeddings(self.engine, chips, self.config.jitter, self.config.jitter_seed)
        if not self.config.flip:
            return self.engine.embed_chips(chips)
        n = len(chips)
        both = self.engine.embed_chips(np.concatenate([chips, chips[:, :, ::-1]]))
        return l2_normalize(both[:n] + both[n:])

    def _prepare(self, image: ImageInput, count_all: bool = False
                 ) -> tuple[list[Face], Optional[Face], Optional[np.ndarray]]:
        img = load_image(image)
        faces = self.detect(img, count_all=count_all)
        chosen = pick_subject(faces, img.shape, self.config.pick)
        return faces, chosen, (self.engine.chips(img, [chosen]) if chosen is not None else None)

    def embed(self, image: ImageInput, *, count_all: bool = False) -> FaceEmbedding:
        """The embedding of the subject (`config.pick`). No face and several faces are outcomes,
        not errors. With `count_all`, `faces` holds what every detection step finds (detect)."""
        return self.embed_many([image], count_all=count_all)[0]

    def embed_many(self, images: Sequence[ImageInput], *, count_all: bool = False) -> list[FaceEmbedding]:
        """Subject embeddings of many images: each image decoded, searched and aligned on a pool
        of threads (`config.threads`), then all chips embedded in one batch."""
        workers = min(worker_count(self.config.threads), len(images))
        if workers > 1:
            with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="safeface-detect") as pool:
                prepared = list(pool.map(lambda im: self._prepare(im, count_all), images))
        else:
            prepared = [self._prepare(im, count_all) for im in images]
        chips = [chip for _, _, chip in prepared if chip is not None]
        # One embedding per chip, in order: the rows below take them one by one.
        vecs = iter(self.embed_chips(np.concatenate(chips)) if chips else ())
        out: list[FaceEmbedding] = []
        for fs, c, _ in prepared:
            if c is None:
                out.append(FaceEmbedding(Outcome.NO_FACE, (), None, None))
                continue
            outcome = Outcome.FOUND if len(fs) == 1 else Outcome.SEVERAL_FACES
            out.append(FaceEmbedding(outcome, tuple(fs), c, next(vecs)))
        return out


def _resized(img: np.ndarray, scale: float) -> np.ndarray:
    h, w = img.shape[:2]
    size = (max(1, int(round(w * scale))), max(1, int(round(h * scale))))
    # reducing_gap: PIL first shrinks by a whole factor in the JPEG-style box way, then resamples:
    # fast, and no aliasing that would hide faces.
    out = Image.fromarray(img).resize(size, Image.Resampling.BILINEAR, reducing_gap=2.0)
    return np.ascontiguousarray(np.asarray(out, dtype=np.uint8))


def _rescaled(face: Face, factor: float, w: int, h: int) -> Face:
    """A face found on a scaled copy, in the pixels of the image itself."""
    x1, y1, x2, y2 = face.box
    box = (max(0.0, x1 * factor), max(0.0, y1 * factor), min(float(w), x2 * factor), min(float(h), y2 * factor))
    return replace(face, box=box, landmarks=np.asarray(face.landmarks, dtype=np.float32) * np.float32(factor))


def _same_face(a: Face, b: Face) -> bool:
    ax1, ay1, ax2, ay2 = a.box
    bx1, by1, bx2, by2 = b.box
    inter = max(0.0, min(ax2, bx2) - max(ax1, bx1)) * max(0.0, min(ay2, by2) - max(ay1, by1))
    smaller = min(a.area, b.area)
    return smaller > 0 and inter >= SAME_FACE_OVERLAP * smaller


def cosine(a: np.ndarray, b: np.ndarray) -> float:
    """The score of two faces: cosine similarity of their embeddings."""
    a = l2_normalize(np.asarray(a, dtype=np.float32).reshape(-1))
    b = l2_normalize(np.asarray(b, dtype=np.float32).reshape(-1))
    return float(np.dot(a, b))


def euclidean_equivalent(cos_threshold: float, norm: float = 1.387) -> float:
    """dlib's Euclidean distance equivalent to a cosine threshold, for descriptors of dlib's
    typical norm: d^2 = 2 n^2 (1 - cos)."""
    return float(np.sqrt(max(0.0, 2.0 * norm * norm * (1.0 - cos_threshold))))
