"""Is the lower face covered? A logistic model of our own, trained on synthetic masks (masks.py)
over LFW dev images only, weighing two things: colour and texture statistics of the lower face
against the upper face (regions placed from the 5 landmarks), and the face's own embedding from
the recognizer (which a covered mouth and nose change in a consistent direction).

No third-party mask model. benches/mask_detector.py trains on one half of the LFW dev people and
measures on the other half (people split by a hash of their name, so no measured image was
trained on), and writes the weights to mask_detector.json. On the held-out half: statistics alone
found 92% of masked faces with 2% of bare faces called masked; with the embedding, 99% and 0.4%.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np

from ...errors import ModelError
from .masks import FaceFrame

# Regions in the face frame (x along the eye line, y down the face, unit: eye distance).
# Cheeks just under the eyes and the forehead stay bare under every mask; the mouth and chin are
# what a mask hides.
_CHEEKS = ((0.35, 0.85), (0.12, 0.32))  # |x| range, y range
_FOREHEAD = ((0.0, 0.55), (-0.65, -0.3))
_LOWER = ((0.0, 0.55), (1.05, 1.6))

STATS = ("lab_dist_cheek", "lab_dist_forehead", "chroma_dist_cheek", "texture_ratio", "skin_fraction",
         "light_ratio", "sat_diff")

# The trained weights: benches/mask_detector.py --write makes this file.
_MODEL_FILE = Path(__file__).with_name("mask_detector.json")


@dataclass(frozen=True)
class _Model:
    mean: np.ndarray
    scale: np.ndarray
    weights: np.ndarray
    bias: float
    threshold: float
    model_id: str


@lru_cache(maxsize=1)
def _model() -> _Model:
    raw = _MODEL_FILE.read_bytes()
    doc = json.loads(raw)
    arr = [np.asarray(doc[k], dtype=np.float64) for k in ("mean", "scale", "weights")]
    if not (arr[0].shape == arr[1].shape == arr[2].shape) or arr[0].ndim != 1:
        raise ModelError(f"{_MODEL_FILE} is damaged (its arrays differ in length); reinstall safeface.")
    return _Model(arr[0], arr[1], arr[2], float(doc["bias"]), float(doc["threshold"]),
                  hashlib.sha256(raw).hexdigest()[:12])


def trained_on(person: str) -> bool:
    """Whether the model was trained on this LFW person's images (the even half by a hash of the
    name); an evaluation measures the detector, and what depends on it, on the other half."""
    return hashlib.sha256(person.encode()).digest()[0] % 2 == 0


def model_id() -> str:
    """Names the trained weights, so caches of mask decisions never outlive them."""
    return _model().model_id


def mask_threshold() -> float:
    """The confidence at and above which a face is called masked."""
    return _model().threshold


@dataclass(frozen=True)
class MaskCheck:
    """`confidence`: probability that the lower face is covered; `masked`: the decision."""

    confidence: float
    masked: bool

    def to_dict(self) -> dict[str, object]:
        return {"masked": self.masked, "confidence": round(self.confidence, 4)}


def _region(img: np.ndarray, frame: FaceFrame, xs: tuple[float, float], ys: tuple[float, float],
            n: int = 12) -> np.ndarray:
    """Pixels sampled on an n x n grid on both sides of the face in the frame's region (nearest
    pixel; points outside the image are left out)."""
    x0, x1 = xs
    gx = np.concatenate([np.linspace(x0, x1, n // 2), -np.linspace(x0, x1, n // 2)]) if x0 > 0 else np.linspace(-x1, x1, n)
    gy = np.linspace(ys[0], ys[1], n)
    u, v = np.meshgrid(gx, gy)
    pts = frame.to_image(np.stack([u.ravel(), v.ravel()], axis=1))
    h, w = img.shape[:2]
    px, py = np.round(pts[:, 0]).astype(int), np.round(pts[:, 1]).astype(int)
    ok = (px >= 0) & (px < w) & (py >= 0) & (py < h)
    return img[py[ok], px[ok]] if ok.any() else img[:1, :1].reshape(-1, img.shape[2])


def _lab(rgb: np.ndarray) -> np.ndarray:
    import cv2

    return cv2.cvtColor(np.ascontiguousarray(rgb.reshape(1, -1, 3)), cv2.COLOR_RGB2LAB).reshape(-1, 3).astype(np.float64)


def _texture(gray: np.ndarray, frame: FaceFrame, xs: tuple[float, float], ys: tuple[float, float]) -> float:
    """Mean gradient magnitude in a region: masks are smoother than lips, chin and stubble."""
    gy, gx = np.gradient(gray)
    mag = np.hypot(gx, gy)[..., None]
    return float(_region(mag, frame, xs, ys, n=16).mean())


def mask_stats(image: np.ndarray, landmarks: np.ndarray) -> np.ndarray:
    """The lower-vs-upper-face statistics, in STATS order."""
    img = np.asarray(image)
    frame = FaceFrame.from_landmarks(landmarks)
    cheek, fore, low = (_lab(_region(img, frame, *r)) for r in (_CHEEKS, _FOREHEAD, _LOWER))
    cm, fm, lm = cheek.mean(axis=0), fore.mean(axis=0), low.mean(axis=0)
    gray = img.astype(np.float64).mean(axis=2)
    tex = (_texture(gray, frame, *_LOWER) + 1.0) / (_texture(gray, frame, *_CHEEKS) + 1.0)
    # Skin: lower-face pixels whose chroma is near the cheeks' (OpenCV Lab: a, b offset by 128).
    spread = np.maximum(cheek[:, 1:].std(axis=0), 3.0)
    skin = float((np.abs((low[:, 1:] - cm[1:]) / spread) < 2.5).all(axis=1).mean())

    def sat(lab: np.ndarray) -> float:
        return float(np.hypot(lab[:, 1] - 128, lab[:, 2] - 128).mean())

    return np.array([
        float(np.linalg.norm(lm - cm)), float(np.linalg.norm(lm - fm)), float(np.linalg.norm(lm[1:] - cm[1:])),
        float(np.log(tex)), skin, float((lm[0] + 1.0) / (cm[0] + 1.0)), sat(low) - sat(cheek),
    ])


def mask_features(image: np.ndarray, landmarks: np.ndarray, embedding: np.ndarray) -> np.ndarray:
    """What the model weighs: the statistics, then the face's unit embedding."""
    return np.concatenate([mask_stats(image, landmarks), np.asarray(embedding, dtype=np.float64).reshape(-1)])


def confidence_from_features(features: np.ndarray) -> np.ndarray:
    m = _model()
    x = np.atleast_2d(features)
    if x.shape[1] != m.weights.shape[0]:
        raise ModelError(f"the mask detector weighs {m.weights.shape[0]} values per face, got {x.shape[1]}: "
                         "it was trained for the dlib engine's 128-value embeddings.")
    z = (x - m.mean) / m.scale
    return np.asarray(1.0 / (1.0 + np.exp(-np.clip(z @ m.weights + m.bias, -60, 60))))


def check_mask(image: np.ndarray, landmarks: np.ndarray, embedding: np.ndarray) -> MaskCheck:
    """Whether the lower face of the face with these 5 landmarks (and this embedding from the
    dlib recognizer) is covered, with a confidence."""
    c = float(confidence_from_features(mask_features(image, landmarks, embedding))[0])
    return MaskCheck(c, c >= mask_threshold())
