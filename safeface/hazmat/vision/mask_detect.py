"""Is the lower face covered? A logistic model of our own, trained on synthetic masks (masks.py)
over LFW dev images only, weighing two things: colour, contrast, gradient and skin statistics of
bands down the lower face against the cheeks and forehead (the face resampled into its own frame
from the 5 landmarks), and the face's own embedding from the recognizer (which a covered mouth and
nose change in a consistent direction).

No third-party mask model. benches/mask_detector.py trains on one half of the LFW dev people and
measures on the other half (people split by a hash of their name, so no measured image was
trained on), on the faces the pipeline itself finds once a mask is drawn BEFORE detection: their
landmarks come from the masked face, and the weak candidates of the masked step (and beside a
bystander) are among them, so the model also learns to turn down weak boxes that are not a masked
face. It writes the weights to mask_detector.json, whose "held_out" says how it did on the other
half (bare faces called masked 0.6% of 799; masked subjects called masked 100% of 584; weak
candidates on the masked face kept 94%, elsewhere 1.2%).
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np

from ...errors import InvalidArgument
from .arrays import check_rgb_image
from .classifier import Classifier, load_classifier
from .masks import FaceFrame

# The face is resampled into its own frame (masks.FaceFrame: x along the eye line, y down the
# face, unit: the eye distance) on a PATCH_W x PATCH_H grid over x in [-1.25, 1.25], y in
# [-0.75, 2.25]: so the regions below sit on the same parts of every face, whatever its size and tilt.
PATCH_X0, PATCH_X1, PATCH_Y0 = -1.25, 1.25, -0.75
PATCH_W, PATCH_H = 30, 36
PATCH_STEP = (PATCH_X1 - PATCH_X0) / PATCH_W
# The widest blur face_patch runs, in pixels (sigma): a face of more than about 190 pixels between
# the eyes is shrunk first. The model was trained on LFW faces, blurred at sigma 1-3.
BLUR_MAX = 8.0
# The reference: cheeks just under the eyes and the forehead stay bare under every mask.
_CHEEKS = ((0.35, 0.85), (0.1, 0.35))  # |x| range, y range
_FOREHEAD = ((0.0, 0.55), (-0.65, -0.3))
# Bands down the lower face, each in the middle (|x| < 0.55) and at the sides (0.55-0.95): a mask's
# top edge sits anywhere from under the eyes to the nose, and the landmarks of a masked face are
# placed less surely than a bare one's, so no one band is trusted to hold the mask.
BANDS = ((0.3, 0.55), (0.55, 0.8), (0.8, 1.05), (1.05, 1.3), (1.3, 1.55), (1.55, 1.8), (1.8, 2.05))
_PARTS = ((0.0, 0.55), (0.55, 0.95))
# Per band and part, against the reference: lightness, red-green and blue-yellow offsets, chroma
# distance, log contrast and log gradient ratios, share of skin-coloured pixels; per band: how
# horizontal its edges are. Then the lower face's colour and light spread, the reference's.
STATS = tuple(name for i in range(len(BANDS)) for name in (
    *(f"{part}{i}_{s}" for part in ("mid", "side") for s in ("dL", "da", "db", "chroma", "contrast", "gradient", "skin")),
    f"horizontal{i}")) + (
    "lower_chroma_spread", "lower_light_spread", "ref_contrast", "ref_gradient", "ref_light")

# The trained weights: benches/mask_detector.py --write makes this file.
_MODEL_FILE = Path(__file__).with_name("mask_detector.json")


@lru_cache(maxsize=1)
def _model() -> Classifier:
    return load_classifier(_MODEL_FILE)


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


def face_patch(image: np.ndarray, landmarks: np.ndarray) -> np.ndarray:
    """The face resampled into its frame: (PATCH_H, PATCH_W, 3) uint8 RGB (blurred first when the
    face is large, so that the coarse grid does not alias)."""
    import cv2

    img = check_rgb_image(image)
    frame = FaceFrame.from_landmarks(landmarks)
    h, w = img.shape[:2]
    if frame.unit > max(h, w):
        raise InvalidArgument("these landmarks put the eyes further apart than the image is wide or tall: they "
                              "are no face of this image. Pass the landmarks the detector found in it.")
    sigma = 0.5 * frame.unit * PATCH_STEP
    # Only the pixels the patch samples, and the blur's reach around them, are read; a face larger
    # than BLUR_MAX allows is first shrunk to it (area averaging, which a Gaussian then smooths).
    # Blurring the whole photo with a kernel as wide as a large face took 25 s for a 40-megapixel
    # portrait, and minutes for landmarks spread wider than the image.
    corners = frame.to_image(np.array([[PATCH_X0, PATCH_Y0], [PATCH_X1, PATCH_Y0], [PATCH_X0, PATCH_Y0 + PATCH_H * PATCH_STEP],
                                       [PATCH_X1, PATCH_Y0 + PATCH_H * PATCH_STEP]]))
    pad = 4.0 * sigma + 2.0
    x0 = int(np.clip(np.floor(corners[:, 0].min() - pad), 0, w - 1))
    y0 = int(np.clip(np.floor(corners[:, 1].min() - pad), 0, h - 1))
    x1 = int(np.clip(np.ceil(corners[:, 0].max() + pad) + 1, x0 + 1, w))
    y1 = int(np.clip(np.ceil(corners[:, 1].max() + pad) + 1, y0 + 1, h))
    src = img[y0:y1, x0:x1]
    sx = sy = 1.0
    if sigma > BLUR_MAX:
        cw, ch = max(1, int(round((x1 - x0) * BLUR_MAX / sigma))), max(1, int(round((y1 - y0) * BLUR_MAX / sigma)))
        sx, sy = cw / (x1 - x0), ch / (y1 - y0)
        src, sigma = cv2.resize(src, (cw, ch), interpolation=cv2.INTER_AREA), BLUR_MAX
    src = cv2.GaussianBlur(src, (0, 0), sigma) if sigma > 1.0 else np.ascontiguousarray(src)
    origin = frame.to_image(np.array([PATCH_X0 + 0.5 * PATCH_STEP, PATCH_Y0 + 0.5 * PATCH_STEP]))
    ax, ay = frame.ux * frame.unit * PATCH_STEP, frame.uy * frame.unit * PATCH_STEP
    # Image pixel centres to the shrunk crop's (cv2.resize keeps pixel centres aligned).
    m = np.array([[ax[0] * sx, ay[0] * sx, (origin[0] - x0 + 0.5) * sx - 0.5],
                  [ax[1] * sy, ay[1] * sy, (origin[1] - y0 + 0.5) * sy - 0.5]])
    return np.asarray(cv2.warpAffine(src, m, (PATCH_W, PATCH_H), flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP,
                                     borderMode=cv2.BORDER_REPLICATE))


def region_cells(a: np.ndarray, xs: tuple[float, float], ys: tuple[float, float]) -> np.ndarray:
    """The patch's cells in the region (both sides of the face when xs starts off the midline)."""
    r = slice(int(round((ys[0] - PATCH_Y0) / PATCH_STEP)), int(round((ys[1] - PATCH_Y0) / PATCH_STEP)))

    def c(x0: float, x1: float) -> slice:
        return slice(int(round((x0 - PATCH_X0) / PATCH_STEP)), int(round((x1 - PATCH_X0) / PATCH_STEP)))

    if xs[0] > 0:
        parts = [a[r, c(*xs)], a[r, c(-xs[1], -xs[0])]]
    else:
        parts = [a[r, c(-xs[1], xs[1])]]
    return np.concatenate([p.reshape(-1, *a.shape[2:]) for p in parts])


def mask_stats(image: np.ndarray, landmarks: np.ndarray) -> np.ndarray:
    """The lower-vs-upper-face statistics, in STATS order."""
    import cv2

    lab = cv2.cvtColor(face_patch(np.asarray(image), landmarks), cv2.COLOR_RGB2LAB).astype(np.float64)
    gy, gx = np.gradient(lab[..., 0])
    mag = np.hypot(gx, gy)
    horizontal = np.abs(gy) / (np.abs(gx) + np.abs(gy) + 1e-3)
    cheek = region_cells(lab, *_CHEEKS)
    ref = np.concatenate([cheek, region_cells(lab, *_FOREHEAD)])
    ref_mean, cheek_mean = ref.mean(axis=0), cheek.mean(axis=0)
    # Skin: chroma near the cheeks' (OpenCV Lab: a, b offset by 128).
    spread = np.maximum(cheek[:, 1:].std(axis=0), 3.0)
    ref_grad = float(np.concatenate([region_cells(mag, *_CHEEKS), region_cells(mag, *_FOREHEAD)]).mean()) + 1.0
    ref_contrast = float(ref[:, 0].std()) + 1.0
    out: list[float] = []
    for ys in BANDS:
        for xs in _PARTS:
            reg, m = region_cells(lab, xs, ys), region_cells(mag, xs, ys)
            mean = reg.mean(axis=0)
            out += [mean[0] - ref_mean[0], mean[1] - cheek_mean[1], mean[2] - cheek_mean[2],
                    float(np.linalg.norm(mean[1:] - cheek_mean[1:])), float(np.log((reg[:, 0].std() + 1.0) / ref_contrast)),
                    float(np.log((m.mean() + 1.0) / ref_grad)),
                    float((np.abs((reg[:, 1:] - cheek_mean[1:]) / spread) < 2.5).all(axis=1).mean())]
        out.append(float(region_cells(horizontal, _PARTS[0], ys).mean()))
    low = region_cells(lab, _PARTS[0], (0.8, 1.8))
    out += [float(np.log(low[:, 1:].std(axis=0).mean() + 1.0)), float(np.log(low[:, 0].std() + 1.0)),
            float(np.log(ref_contrast)), float(np.log(ref_grad)), ref_mean[0] / 255.0]
    return np.array(out)


def mask_features(image: np.ndarray, landmarks: np.ndarray, embedding: np.ndarray) -> np.ndarray:
    """What the model weighs: the statistics, then the face's unit embedding."""
    try:
        emb = np.asarray(embedding, dtype=np.float64).reshape(-1)
    except (TypeError, ValueError):
        emb = np.array([np.nan])
    # A NaN confidence is never "masked" and passes every mask bar: refused, not decided.
    if not np.isfinite(emb).all():
        raise InvalidArgument("the mask check needs the face's embedding as finite numbers (the recognizer's).")
    return np.concatenate([mask_stats(image, landmarks), emb])


def confidence_from_features(features: np.ndarray) -> np.ndarray:
    return _model().confidence(features, "mask detector")


def check_mask(image: np.ndarray, landmarks: np.ndarray, embedding: np.ndarray) -> MaskCheck:
    """Whether the lower face of the face with these 5 landmarks (and this embedding from the
    dlib recognizer) is covered, with a confidence."""
    c = float(confidence_from_features(mask_features(image, landmarks, embedding))[0])
    return MaskCheck(c, c >= mask_threshold())
