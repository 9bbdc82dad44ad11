"""Are the eyes hidden? With dark glasses on, and a mask too, a face keeps little for the
recognizer to tell people apart by: on LFW dev's held-out people, strangers in the same cover on
both sides were accepted 73.7% of the time behind a mask and 30.6% with the glasses alone
(benches/masked_covers.py). The SDK refuses such a face instead of matching it.

A small model of our own (one hidden layer; the mask detector is logistic): statistics of the eye
regions against the forehead (lightness, colour, contrast, edges, skin and dark shares) in the
face's own frame, and the recognizer's embedding. benches/eye_cover_detector.py trains it on one
half of the LFW dev people with synthetic dark glasses (eyewear.py), bare and behind synthetic
masks, and measures it on the other half; eye_cover.json holds the weights and those figures.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np

from ...errors import InvalidArgument
from .classifier import Classifier, load_classifier
from .mask_detect import PATCH_STEP, PATCH_X0, PATCH_Y0, face_patch, region_cells
from .masks import FaceFrame

# Regions in the face's frame (x along the eye line, y down the face; unit: the eye distance):
# |x| range, y range. The eyes sit at x = +-0.5, y = 0; the brows about 0.35 above.
_EYES = ((0.2, 0.85), (-0.2, 0.25))
_PUPILS = ((0.35, 0.65), (-0.1, 0.12))
_BRIDGE = ((0.0, 0.18), (-0.15, 0.15))
_BROWS = ((0.2, 0.85), (-0.45, -0.25))
_UNDER = ((0.25, 0.85), (0.3, 0.45))
_FOREHEAD = ((0.0, 0.55), (-0.7, -0.45))
REGIONS = {"eyes": _EYES, "pupils": _PUPILS, "bridge": _BRIDGE, "brows": _BROWS, "under": _UNDER}
# The strip across both eyes, pooled to a coarse grid of lightness and of edge strength (each
# against the forehead's): the shape of two eyes, brows and a nose bridge, or of one dark band.
_STRIP_X, _STRIP_Y = (-1.0, 1.0), (-0.5, 0.4)
GRID = (3, 8)  # rows, columns
STATS = tuple(f"{r}_{s}" for r in REGIONS for s in ("dL", "da", "db", "chroma", "contrast", "gradient", "skin", "dark")) + (
    "eyes_left_right", "ref_light", "ref_contrast", "eyes_p10", "eyes_p50", "eyes_p90", "eyes_bright") + tuple(
    f"strip_{k}{i}_{j}" for k in ("L", "g") for i in range(GRID[0]) for j in range(GRID[1]))

_MODEL_FILE = Path(__file__).with_name("eye_cover.json")


@lru_cache(maxsize=1)
def _model() -> Classifier:
    return load_classifier(_MODEL_FILE)


def model_id() -> str:
    return _model().model_id


def eye_cover_threshold() -> float:
    """The confidence at and above which the eyes are called covered."""
    return _model().threshold


@dataclass(frozen=True)
class EyeCheck:
    """`confidence`: probability that the eyes are hidden; `covered`: the decision."""

    confidence: float
    covered: bool

    def to_dict(self) -> dict[str, object]:
        return {"eyes_covered": self.covered, "confidence": round(self.confidence, 4)}


def eye_stats(image: np.ndarray, landmarks: np.ndarray) -> np.ndarray:
    """The eye-region-vs-forehead statistics, in STATS order."""
    import cv2

    lab = cv2.cvtColor(face_patch(np.asarray(image), landmarks), cv2.COLOR_RGB2LAB).astype(np.float64)
    gy, gx = np.gradient(lab[..., 0])
    mag = np.hypot(gx, gy)
    ref = region_cells(lab, *_FOREHEAD)
    ref_mean = ref.mean(axis=0)
    ref_contrast = float(ref[:, 0].std()) + 1.0
    ref_grad = float(region_cells(mag, *_FOREHEAD).mean()) + 1.0
    spread = np.maximum(ref[:, 1:].std(axis=0), 3.0)
    out: list[float] = []
    for xs, ys in REGIONS.values():
        reg, m = region_cells(lab, xs, ys), region_cells(mag, xs, ys)
        mean = reg.mean(axis=0)
        out += [mean[0] - ref_mean[0], mean[1] - ref_mean[1], mean[2] - ref_mean[2],
                float(np.linalg.norm(mean[1:] - ref_mean[1:])), float(np.log((reg[:, 0].std() + 1.0) / ref_contrast)),
                float(np.log((m.mean() + 1.0) / ref_grad)),
                float((np.abs((reg[:, 1:] - ref_mean[1:]) / spread) < 2.5).all(axis=1).mean()),
                float((reg[:, 0] < 0.5 * ref_mean[0]).mean())]
    # Glasses darken both eyes alike; a shadow or a squint often only one.
    n = region_cells(lab, _EYES[0], _EYES[1]).shape[0] // 2
    both = region_cells(lab, *_EYES)[:, 0]
    out += [float(abs(both[:n].mean() - both[n:].mean()) / (ref_mean[0] + 1.0)), ref_mean[0] / 255.0,
            float(np.log(ref_contrast))]
    # Sclera and catch-lights: an eye's brightest cells come near the forehead's light, a dark
    # lens's do not (unless it reflects).
    p10, p50, p90 = np.percentile(both, [10, 50, 90])
    out += [p10 / (ref_mean[0] + 1.0), p50 / (ref_mean[0] + 1.0), p90 / (ref_mean[0] + 1.0),
            float(np.sort(both)[-3:].mean() / (ref_mean[0] + 1.0))]
    rows = slice(int(round((_STRIP_Y[0] - PATCH_Y0) / PATCH_STEP)), int(round((_STRIP_Y[1] - PATCH_Y0) / PATCH_STEP)))
    cols = slice(int(round((_STRIP_X[0] - PATCH_X0) / PATCH_STEP)), int(round((_STRIP_X[1] - PATCH_X0) / PATCH_STEP)))
    for plane, ref_v in ((lab[rows, cols, 0], ref_mean[0]), (mag[rows, cols], ref_grad)):
        out += list((_pool(plane, GRID) / (ref_v + 1.0)).reshape(-1))
    return np.array(out)


def _pool(a: np.ndarray, grid: tuple[int, int]) -> np.ndarray:
    """The mean of `a` over a grid of near-equal blocks."""
    rs = np.array_split(np.arange(a.shape[0]), grid[0])
    cs = np.array_split(np.arange(a.shape[1]), grid[1])
    return np.array([[a[np.ix_(r, c)].mean() for c in cs] for r in rs])


def eye_features(image: np.ndarray, landmarks: np.ndarray, embedding: np.ndarray) -> np.ndarray:
    """What the model weighs: the statistics, then the face's unit embedding."""
    try:
        emb = np.asarray(embedding, dtype=np.float64).reshape(-1)
    except (TypeError, ValueError):
        emb = np.array([np.nan])
    if not np.isfinite(emb).all():
        raise InvalidArgument("the eye-cover check needs the face's embedding as finite numbers (the recognizer's).")
    return np.concatenate([eye_stats(image, landmarks), emb])


def _require_in_view(image: np.ndarray, landmarks: np.ndarray) -> None:
    """Refuse a face whose eye regions or forehead lie past the image's edge: the patch repeats
    the edge pixels there, and the check then compares the eyes with copies of themselves (dark
    glasses on a photo cut off just above them were called bare), or judges pixels that are no
    part of the face."""
    frame = FaceFrame.from_landmarks(landmarks)
    h, w = np.asarray(image).shape[:2]
    corners = np.array([(sx * x, y) for xs, ys in (_EYES, _FOREHEAD) for x in (xs[0], xs[1]) for y in ys
                        for sx in (-1.0, 1.0)])
    pts = frame.to_image(corners)
    if (pts[:, 0] < -0.5).any() or (pts[:, 1] < -0.5).any() or (pts[:, 0] > w - 0.5).any() or (pts[:, 1] > h - 0.5).any():
        raise InvalidArgument("the eyes of this face, or the forehead above them, lie past the image's edge: the "
                              "eye-cover check cannot see them. Use a photo that shows the whole face.")


def check_eyes(image: np.ndarray, landmarks: np.ndarray, embedding: np.ndarray) -> EyeCheck:
    """Whether the eyes of the face with these 5 landmarks (and this embedding from the dlib
    recognizer) are hidden, with a confidence. A face whose eyes or forehead lie past the image's
    edge is refused (InvalidArgument): the check cannot see them."""
    features = eye_features(image, landmarks, embedding)  # checks the image and the landmarks first
    _require_in_view(image, landmarks)
    c = float(_model().confidence(features, "eye-cover check")[0])
    return EyeCheck(c, c >= eye_cover_threshold())
