"""Capture quality after ISO/IEC 29794-5, from the image and the subject's 5 landmarks.

Each measure is a named component with its value, its floor or range and, when it fails, a
sentence the person in front of the camera can act on ("move closer", "face the camera"). The
score (0-100) is the lowest component score, so one bad property cannot be hidden by good ones.

Pose comes from the 5 points alone (dlib order: outer and inner corner of the eye on the image's
right, outer and inner corner of the other eye, base of the nose). The base of the nose sits in
front of the plane of the eye corners, about 0.35 eye distances deep, so turning the head shifts
it along the eye line by 0.35 * tan(yaw) eye distances. Nodding shifts it across the eye line
from its frontal position (0.74 eye distances below it, the LFW dev median); noses differ in length
from person to person by about 0.1 eye distance, so pitch uses an effective sensitivity of 0.5
per radian, which keeps that spread to about +-12 degrees. Both are coarse estimates, and biased
high for a strongly turned or tilted head (the 5-point shape prior moves the nose further than the
head turned: LFW photographs turned about 35-45 degrees read 50-60, tilted 20-30 read 40-46), so
the floors are set in these estimated degrees, from what the recogniser handles, not from the
true angle (benches/capture_quality.py).

One face only means one face that could be taken for the subject: another face counts when it is
comparable in size (COMPARABLE_SIZE of the subject's eye distance, each corrected for its turn)
and about as central (no more than CENTRE_MARGIN subject eye distances further from the picture's
centre). A small face in the background, or a neighbour at the edge of a press photo, does not
make the capture ambiguous; two people side by side in the middle do.

Focus is judged after the noise is taken out. Sensor noise (a dim room, a phone's night mode) is
fine-scale energy of its own, so a defocused face with noise on it would read as sharp by its
share of fine gradient energy. Each band the measure looks at (finer than FINE_SCALE, and from
there to MID_SCALE) has its noise level read where the face has least detail (the flattest
quarter of the region's blocks, cheeks and forehead, whose residual is mostly noise, smeared by
JPEG or not), is shrunk by a few times that level (soft thresholding: what is left is edges
standing out of the noise, eyelids, nostrils, lips), and the share is measured on what remains.
The fine band's noise level has a ceiling of its own (max_noise): past it the capture is refused
asking for more light.

Noise read in the flattest quarter misses texture that is not everywhere: laid over all of a
defocused face but its brow, the untouched rows are the flattest quarter and read no noise, and
impulses (dead or hot pixels, 2% of them) barely move it; either way the texture outlived the
denoising and passed for focus. So focus is judged on the region median-filtered first (impulses
vanish), and it is the lower of two readings: the fine share above, and how much steeper the
region's edges are than the same edges at a coarser scale, its gradients projected on its blur's
(coherence_of). Texture that is not the face's own points anywhere against the face's edges and
adds nothing to that projection in expectation; the little it adds through its own blur is taken
out, twice over, from its energy read block by block (a robust median in each block, so texture on
any part of the region counts, wherever it lies).

A covered lower face (a mask, a scarf) is an occlusion ISO/IEC 29794-5 counts against a
reference: the template of a masked enrolment image serves bare probes poorly and masked ones
no better than a bare enrolment does. The caller passes the mask detector's confidence
(hazmat/vision/mask_detect.py); this module never runs a model itself.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, fields, replace
from typing import Any, Mapping, Optional, Sequence, cast

import numpy as np

from ..errors import ConfigError
from ..jsonnum import finite_number

NOSE_DEPTH = 0.35  # nose base in front of the eye-corner plane, in eye distances
NOSE_DROP = 0.74  # frontal nose base below the eye line, in eye distances (LFW dev median, yaw undone)
PITCH_SENSITIVITY = 0.5  # shift across the eye line per radian of pitch, in eye distances (see above)
ANALYSIS_SIDE = 96  # the face region is measured at this size, so focus is judged independent of scale
COMPARABLE_SIZE = 0.7  # another face with at least this share of the subject's eye distance is comparable...
CENTRE_MARGIN = 1.0  # ...unless it is this many subject eye distances further from the picture's centre
MAX_TURN_CORRECTION = 60.0  # degrees: the eye distance is corrected for at most this much turn (x2)
FINE_SCALE = 1.5  # Gaussian sigma (analysis pixels) that separates the fine scale from the rest
NOISE_BLOCK = 12  # the noise level is read in blocks of this many analysis pixels...
NOISE_SHARE = 0.25  # ...the flattest quarter of them
MID_SCALE = 3.0  # ...and the band between FINE_SCALE and this one is denoised too before focus is judged
SHRINK_FINE = 3.0  # each band is soft-thresholded at this many of its noise levels (fine band)...
SHRINK_MID = 2.0  # ...and the band below it
MEDIAN = 3  # focus is judged on the region median-filtered (MEDIAN x MEDIAN, at the image's own resolution)
COHERENCE_SCALE = 3.0  # Gaussian sigma (analysis pixels) of the reference the region's gradients are compared with
# What texture independent of the face (white noise, median-filtered as focus is) adds to the coherence's
# numerator and denominator per unit of its block-MAD energy, the mean of 80 and 160 px regions. It depends on
# how far the region is resampled to ANALYSIS_SIDE (measured: 6.3 and 2.1 for an 80 px region, 2.4 and 0.7 at
# 120, 1.3 and 0.4 at 160, 0.6 and 0.2 at 250): with NOISE_MARGIN it covers regions from about 75 px (eyes
# 42 px apart; LFW's faces) up, and less than all of it on smaller faces, upsampled further.
NOISE_COHERENCE = 4.0
NOISE_REFERENCE = 1.3
NOISE_MARGIN = 2.0  # the estimated texture energy is taken out this many times over
COHERENCE_WEIGHT = 0.7  # coherence in units of the fine share (LFW dev medians: 0.42 against 0.30)


@dataclass(frozen=True)
class QualityThresholds:
    """The floors a capture must meet. Size and pose floors sit just outside what the recogniser
    handles on one half of LFW dev (the people whose name's SHA-256 starts with an even byte: every
    image it matches correctly passes; their extremes were 29.8 px, 60.7 yaw, 45.7 pitch) and are
    checked on the other half (benches/capture_quality.py). The eye distance is the frontal one
    (corrected for the estimated turn); below 25 px the 150 px chip (eyes about 45 px apart) is an
    upsampled blur. Pose is in estimated degrees (biased high, see the module's note): 65 yaw puts
    the nose base beyond the far eye's centre, close to a profile. Focus is measured with the noise
    taken out and as edge coherence, the lower of the two (see the module's note); its floor, 0.14,
    is set to keep refusing blur: of all 1,549 LFW dev faces, blurred at sigma 3 and 4, 94.6% and
    99.2% are refused, blurred with noise on them, stored as JPEG or not, 99.7-100%, blurred with
    1-2% impulses or with texture over part of the region 98.1-100% (before the median filter and
    the coherence, 0.1-4.3% of those), while 0.5% of the clean images and of their JPEG (q75-q30)
    copies are refused (0.2-0.3% before), 0.6% of low-light ones and 1.4% of denoised ones
    (non-local means; 0.5% and 0.6% before).
    The noise ceiling, 8 grey levels,
    is where recognition starts to suffer: clean LFW dev faces read 0.9-3.3 (p1-p99), and with
    Gaussian noise of 20, 30 and 40 grey levels added they read about 7, 10 and 13 while the
    recogniser matched 96%, 93% and 87% of 120 same-person pairs (98% clean)."""

    min_eye_distance: float = 25.0  # pixels between the eye centres, as the face turned frontal would show them
    max_yaw: float = 65.0  # degrees, estimated from the 5 points
    max_pitch: float = 50.0
    max_roll: float = 30.0
    min_sharpness: float = 0.14  # focus: fine share (noise taken out) or edge coherence, the lower (LFW p1: 0.15)
    max_noise: float = 8.0  # grey levels: fine-scale residual in the face's flattest quarter (LFW p99: 3.3)
    min_brightness: float = 40.0  # mean grey level of the face region, 0-255
    max_brightness: float = 220.0
    max_clipped: float = 0.25  # share of face pixels at 0-5 or 250-255
    min_contrast: float = 14.0  # grey-level standard deviation of the face region
    max_faces: int = 1
    # The mask detector's confidence that the lower face is covered, above which a capture is
    # refused; 1 accepts masked references. Far above the detector's own decision (0.41): a false
    # refusal locks out a person who cannot fix it (bearded and sunglassed faces score 0.4-0.8),
    # while a masked reference let through still takes the masked-enrolment path. On LFW dev's
    # held-out half: 0 of 792 bare faces refused (5 at the detector's decision), 95.6% of their
    # synthetic-masked copies (benches/capture_quality.py).
    max_mask_confidence: float = 0.9

    @classmethod
    def from_mapping(cls, raw: Optional[Mapping[str, Any]], where: str = "quality") -> "QualityThresholds":
        """Defaults overridden by a purpose's "quality" object; an unknown or non-numeric key is an
        error (a misspelt floor must never silently fall back to the default)."""
        if raw is None:
            return cls()
        if not isinstance(raw, Mapping):
            raise ConfigError(f"{where} must be an object of thresholds, e.g. {{\"min_eye_distance\": 60}}.")
        known = {f.name: f for f in fields(cls)}
        values: dict[str, Any] = {}
        for k, v in raw.items():
            if k not in known:
                raise ConfigError(f"{where}: unknown threshold {k!r}; known: {', '.join(sorted(known))}.")
            if not finite_number(v) or v < 0:
                raise ConfigError(f"{where}.{k} must be a non-negative number, got {v!r}.")
            if k == "max_mask_confidence" and v > 1:
                raise ConfigError(f"{where}.{k} is a confidence from 0 to 1 (1 accepts any mask), got {v!r}.")
            values[k] = int(v) if k == "max_faces" else float(v)
        return replace(cls(), **values)

    def to_dict(self) -> dict[str, float]:
        return {f.name: getattr(self, f.name) for f in fields(self)}


@dataclass(frozen=True)
class Component:
    name: str
    value: float
    ok: bool
    score: float  # 0..1
    limit: str  # the floor or range, in words
    action: Optional[str] = None  # what to do when it fails


@dataclass(frozen=True)
class QualityReport:
    score: float  # 0..100, the lowest component score
    components: tuple[Component, ...]
    pose: tuple[float, float, float] = (0.0, 0.0, 0.0)  # yaw, pitch, roll in degrees
    thresholds: QualityThresholds = field(default_factory=QualityThresholds)

    @property
    def ok(self) -> bool:
        return all(c.ok for c in self.components)

    @property
    def reasons(self) -> tuple[str, ...]:
        return tuple(c.name for c in self.components if not c.ok)

    @property
    def advice(self) -> str:
        """One sentence naming what to fix, the most important first."""
        actions = list(dict.fromkeys(c.action for c in self.components if not c.ok and c.action))
        return "; ".join(actions) + "." if actions else "the capture is fit for recognition."

    def to_dict(self) -> dict[str, Any]:
        return {"ok": self.ok, "score": round(self.score, 1), "reasons": list(self.reasons), "advice": self.advice,
                "pose": {"yaw": round(self.pose[0], 1), "pitch": round(self.pose[1], 1), "roll": round(self.pose[2], 1)},
                "components": {c.name: {"value": round(c.value, 3), "ok": c.ok, "limit": c.limit}
                               for c in self.components}}


# -- geometry from the 5 points -------------------------------------------------------------------
def eye_centres(landmarks: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(eye on the image's left, eye on the image's right) centres."""
    p = np.asarray(landmarks, dtype=np.float64).reshape(5, 2)
    a, b = (p[0] + p[1]) / 2, (p[2] + p[3]) / 2
    return (a, b) if a[0] <= b[0] else (b, a)


def nose_offsets(landmarks: np.ndarray) -> tuple[float, float, float]:
    """(along, across, eye distance): the nose base relative to the eyes' midpoint, along the eye
    line (towards the image's right) and across it (downwards), in eye distances."""
    p = np.asarray(landmarks, dtype=np.float64).reshape(5, 2)
    left, right = eye_centres(p)
    e = right - left
    d = float(np.hypot(*e))
    if d < 1e-6:
        return 0.0, 0.0, 0.0
    ex = e / d
    ey = np.array([-ex[1], ex[0]])
    v = p[4] - (left + right) / 2
    return float(v @ ex) / d, float(v @ ey) / d, d


def pose_of(landmarks: np.ndarray) -> tuple[float, float, float]:
    """(yaw, pitch, roll) in degrees. Yaw > 0: the nose points towards the image's right;
    pitch > 0: the face tilts down; roll > 0: the eye line turns clockwise in the image."""
    left, right = eye_centres(landmarks)
    e = right - left
    roll = math.degrees(math.atan2(e[1], e[0]))
    along, across, d = nose_offsets(landmarks)
    if d == 0.0:
        return 0.0, 0.0, roll
    yaw = math.degrees(math.atan(along / NOSE_DEPTH))
    # Turning shortens the eye distance by cos(yaw), which would read as a longer nose: undo it.
    across *= math.cos(math.radians(yaw))
    pitch = math.degrees(math.asin(max(-1.0, min(1.0, (across - NOSE_DROP) / PITCH_SENSITIVITY))))
    return yaw, pitch, roll


def face_region(landmarks: np.ndarray) -> tuple[float, float, float, float]:
    """The face's extent from the eyes: brow to chin, ear to ear (x1, y1, x2, y2). Eye to chin is
    about 1.9 eye distances on an upright face; the region is rotated with the head's roll."""
    left, right = eye_centres(landmarks)
    mid = (left + right) / 2
    e = right - left
    d = float(np.hypot(*e)) or 1.0
    ex = e / d
    ey = np.array([-ex[1], ex[0]])
    corners = [mid + d * (sx * ex + sy * ey) for sx in (-1.1, 1.1) for sy in (-1.0, 1.9)]
    xs, ys = [c[0] for c in corners], [c[1] for c in corners]
    return min(xs), min(ys), max(xs), max(ys)


# -- photometry of the face region --------------------------------------------------------------
def _grey_face(image: np.ndarray, landmarks: np.ndarray, median: bool = False) -> np.ndarray:
    """The central face (between the eyes' outer reach, brow to mouth) as grey float32, resampled
    to ANALYSIS_SIDE pixels, so that sharpness does not depend on how large the face is. With
    `median`, the crop is first median-filtered (MEDIAN pixels, at the image's resolution): isolated
    impulses (dead or hot pixels, bit errors, salt and pepper) vanish, edges stay."""
    import cv2

    left, right = eye_centres(landmarks)
    mid = (left + right) / 2
    d = float(np.hypot(*(right - left))) or 1.0
    h, w = image.shape[:2]
    x1, x2 = int(max(0, mid[0] - 0.9 * d)), int(min(w, mid[0] + 0.9 * d))
    y1, y2 = int(max(0, mid[1] - 0.6 * d)), int(min(h, mid[1] + 1.2 * d))
    if x2 - x1 < 4 or y2 - y1 < 4:
        return np.zeros((ANALYSIS_SIDE, ANALYSIS_SIDE), np.float32)
    crop = image[y1:y2, x1:x2]
    grey = (crop.mean(axis=2) if crop.ndim == 3 else crop).astype(np.float32)
    if median:
        grey = cv2.medianBlur(grey, MEDIAN)
    return cast(np.ndarray, cv2.resize(grey, (ANALYSIS_SIDE, ANALYSIS_SIDE),
                                       interpolation=cv2.INTER_AREA))


def _energy(a: np.ndarray) -> float:
    import cv2

    gx = cv2.Sobel(a, cv2.CV_32F, 1, 0, ksize=3)
    gy = cv2.Sobel(a, cv2.CV_32F, 0, 1, ksize=3)
    return float(np.mean(gx * gx + gy * gy))


def _flat_rms(residual: np.ndarray) -> float:
    """Root mean square of a band-pass residual in the flattest NOISE_SHARE of its NOISE_BLOCK-pixel
    blocks: where the face holds no detail at that scale, what the band holds is noise."""
    r = np.asarray(residual, np.float32)
    b = NOISE_BLOCK
    n, m = r.shape[0] // b, r.shape[1] // b
    if n == 0 or m == 0:
        return float(np.sqrt(np.mean(r * r)))
    blocks = np.sort((r * r)[: n * b, : m * b].reshape(n, b, m, b).mean(axis=(1, 3)).ravel())
    return float(np.sqrt(blocks[: max(1, int(len(blocks) * NOISE_SHARE))].mean()))


def noise_of(grey: np.ndarray) -> float:
    """The noise level in grey levels at the analysis scale: the root mean square of the fine-scale
    residual (the region less its FINE_SCALE blur) in the flattest NOISE_SHARE of its
    NOISE_BLOCK-pixel blocks. A face's flattest parts (cheeks, forehead) hold little fine detail,
    so there the residual is the sensor's noise, whether the face is in focus or not and whether
    JPEG smeared the noise or not. Clean LFW faces read 0.9-2.6 (p1-p95)."""
    import cv2

    g = np.asarray(grey, np.float32)
    return _flat_rms(g - cv2.GaussianBlur(g, (0, 0), FINE_SCALE))


def _shrink(r: np.ndarray, t: float) -> np.ndarray:
    return cast(np.ndarray, np.sign(r) * np.maximum(np.abs(r) - t, 0.0))


def fine_share_of(grey: np.ndarray) -> float:
    """The share of gradient energy the fine scale holds: gradients of the region against those of
    the region blurred a little. A focused face keeps fine edges (eyelids, nostrils, lips); motion
    and defocus blur remove them first. Independent of contrast and exposure. Noise adds fine
    energy of its own whatever the focus, so the region is first denoised: its fine band (less the
    FINE_SCALE blur) and the band below it (down to MID_SCALE) are each soft-thresholded at
    SHRINK_FINE and SHRINK_MID times that band's own noise level (measured as noise_of() does):
    noise goes, edges that stand out of it stay."""
    import cv2

    g = np.asarray(grey, np.float32)
    if _energy(g) <= 1e-6:
        return 0.0
    b1 = cv2.GaussianBlur(g, (0, 0), FINE_SCALE)
    b2 = cv2.GaussianBlur(g, (0, 0), MID_SCALE)
    r1, r2 = g - b1, b1 - b2
    clean = (b2 + _shrink(r2, SHRINK_MID * _flat_rms(r2)) + _shrink(r1, SHRINK_FINE * _flat_rms(r1))).astype(np.float32)
    total = _energy(clean)
    if total <= 1e-6:
        return 0.0
    return max(0.0, 1.0 - _energy(cv2.GaussianBlur(clean, (0, 0), FINE_SCALE)) / total)


def _texture_energy(residual: np.ndarray) -> float:
    """The energy of whatever fine texture covers the region, wherever it lies: each NOISE_BLOCK
    block's robust noise variance (median absolute fine residual / 0.6745, squared: a face's edges
    are sparse in a block and barely move the median, texture or noise is dense and sets it), summed
    over the blocks' pixels. Unlike the flattest quarter, texture on any part of the region counts."""
    r = np.abs(np.asarray(residual, np.float32))
    b = NOISE_BLOCK
    n, m = r.shape[0] // b, r.shape[1] // b
    if n == 0 or m == 0:
        return float(r.size * (np.median(r) / 0.6745) ** 2)
    blocks = r[: n * b, : m * b].reshape(n, b, m, b).transpose(0, 2, 1, 3).reshape(n * m, b * b)
    sigma = np.median(blocks, axis=1) / 0.6745
    return float(b * b * np.sum(sigma * sigma))


def coherence_of(grey: np.ndarray) -> float:
    """How much steeper the region's edges are than the same edges seen at COHERENCE_SCALE: the
    region's gradients projected on those of its COHERENCE_SCALE blur, against the blur's own, less
    one. A step edge blurred to width s reads sqrt(2) * c / sqrt(s^2 + c^2) - 1 with
    c^2 = s^2 + COHERENCE_SCALE^2: about 0.38 in focus (s = 0.7 analysis pixels), 0.04 at s = 7.
    Texture that is not the face's own (noise, impulses, a pattern laid over a defocused face)
    has fine gradients that point anywhere against the face's coarse ones, so it adds nothing in
    expectation; what it does add, through its own blur, is taken out: NOISE_MARGIN times the
    texture's energy (_texture_energy) at NOISE_COHERENCE and NOISE_REFERENCE per unit."""
    import cv2

    g = np.asarray(grey, np.float32)
    b = cv2.GaussianBlur(g, (0, 0), COHERENCE_SCALE)
    gx, gy = cv2.Sobel(g, cv2.CV_32F, 1, 0, ksize=3), cv2.Sobel(g, cv2.CV_32F, 0, 1, ksize=3)
    bx, by = cv2.Sobel(b, cv2.CV_32F, 1, 0, ksize=3), cv2.Sobel(b, cv2.CV_32F, 0, 1, ksize=3)
    num = float(np.sum(gx * bx + gy * by, dtype=np.float64))
    den = float(np.sum(bx * bx + by * by, dtype=np.float64))
    texture = NOISE_MARGIN * _texture_energy(g - cv2.GaussianBlur(g, (0, 0), FINE_SCALE))
    num -= NOISE_COHERENCE * texture
    den -= NOISE_REFERENCE * texture
    if den <= 1e-6:
        return 0.0
    return max(0.0, num / den - 1.0)


def sharpness_of(grey: np.ndarray) -> float:
    """Focus, judged two ways and the lower kept: the fine share of the denoised region
    (fine_share_of) and, in the same units (COHERENCE_WEIGHT), how much steeper its edges are than
    at a coarser scale (coherence_of). The share alone credits any fine texture that outlives the
    denoising (texture where the noise is not read, impulses); coherence credits only detail that
    lines up with the face's own edges. `grey` is the region as assess() passes it: median-filtered
    (_grey_face(..., median=True)), so that impulses are gone before either is measured."""
    g = np.asarray(grey, np.float32)
    return min(fine_share_of(g), COHERENCE_WEIGHT * coherence_of(g))


def _ramp(value: float, floor: float, span: float) -> float:
    """0 at floor - span, 1 at floor + span: a soft score around a hard floor."""
    if span <= 0:
        return 1.0 if value >= floor else 0.0
    return float(min(1.0, max(0.0, 0.5 + (value - floor) / (2 * span))))


def frontal_eye_distance(landmarks: np.ndarray) -> float:
    """The eye distance in pixels as the face turned to the camera would show it (a turned head's
    eyes look closer together by cos(yaw); the correction is capped at MAX_TURN_CORRECTION)."""
    left, right = eye_centres(landmarks)
    yaw = min(abs(pose_of(landmarks)[0]), MAX_TURN_CORRECTION)
    return float(np.hypot(*(right - left))) / math.cos(math.radians(yaw))


def competing(image_shape: tuple[int, ...], subject: np.ndarray, others: Sequence[np.ndarray]) -> int:
    """How many of the `others` (5-point landmarks) could be taken for the subject: comparable in
    size and about as central (see the module's note)."""
    h, w = image_shape[:2]
    centre = np.array([w / 2, h / 2])
    d = frontal_eye_distance(subject) or 1.0
    off = float(np.linalg.norm(np.asarray(subject, np.float64).reshape(5, 2)[:4].mean(axis=0) - centre))
    n = 0
    for o in others:
        p = np.asarray(o, np.float64).reshape(5, 2)
        if frontal_eye_distance(p) < COMPARABLE_SIZE * d:
            continue
        if float(np.linalg.norm(p[:4].mean(axis=0) - centre)) > off + CENTRE_MARGIN * d:
            continue
        n += 1
    return n


def assess(image: np.ndarray, landmarks: Optional[np.ndarray], faces: int,
           thresholds: Optional[QualityThresholds] = None,
           others: Optional[Sequence[np.ndarray]] = None,
           mask_confidence: Optional[float] = None) -> QualityReport:
    """Judge one capture: `image` RGB uint8, `landmarks` the subject's 5 points (None when no face
    was found), `faces` how many faces the image holds. With `others` (the 5 points of every other
    face found), only the faces that could be taken for the subject count against "one face".
    With `mask_confidence` (the mask detector's, for the subject), a covered lower face fails
    "lower_face"; without it that component is not judged."""
    t = thresholds or QualityThresholds()
    if landmarks is None or faces == 0:
        comp = Component("face", 0.0, False, 0.0, "one face", "no face was found: face the camera in good light")
        return QualityReport(0.0, (comp,), thresholds=t)
    lm = np.asarray(landmarks, dtype=np.float64).reshape(5, 2)
    yaw, pitch, roll = pose_of(lm)
    left, right = eye_centres(lm)
    d = float(np.hypot(*(right - left)))
    size = frontal_eye_distance(lm)
    h, w = image.shape[:2]
    if others is not None:
        faces = 1 + competing(image.shape, lm, others)
    x1, y1, x2, y2 = face_region(lm)
    # How far the face reaches outside the frame, in eye distances (0 when fully inside).
    outside = max(0.0, -x1, -y1, x2 - w, y2 - h) / max(d, 1.0)
    grey = _grey_face(image, lm)
    bright = float(grey.mean())
    contrast = float(grey.std())
    clipped = float(np.mean((grey <= 5) | (grey >= 250)))
    noise = noise_of(grey)
    sharp = sharpness_of(_grey_face(image, lm, median=True))
    light_action = ("add light in front of the face" if bright < t.min_brightness
                    else "avoid strong light or glare on the face")
    comps = [
        Component("face_count", float(faces), faces <= t.max_faces, 1.0 if faces <= t.max_faces else 0.0,
                  f"at most {t.max_faces}", "only the person should be in the picture: ask others to step out"),
        Component("eye_distance", size, size >= t.min_eye_distance,
                  _ramp(size, t.min_eye_distance, 0.3 * t.min_eye_distance),
                  f">= {t.min_eye_distance:g} px", "move closer to the camera"),
        Component("yaw", yaw, abs(yaw) <= t.max_yaw, _ramp(t.max_yaw - abs(yaw), 0.0, 10.0),
                  f"within +-{t.max_yaw:g} deg", "face the camera (the head is turned sideways)"),
        Component("pitch", pitch, abs(pitch) <= t.max_pitch, _ramp(t.max_pitch - abs(pitch), 0.0, 10.0),
                  f"within +-{t.max_pitch:g} deg", "face the camera (the head is tilted up or down)"),
        Component("roll", roll, abs(roll) <= t.max_roll, _ramp(t.max_roll - abs(roll), 0.0, 10.0),
                  f"within +-{t.max_roll:g} deg", "hold the head upright"),
        Component("in_frame", outside, outside <= 0.05, _ramp(0.05 - outside, 0.0, 0.1),
                  "the whole face inside the picture", "centre the face in the picture, with room around it"),
        Component("sharpness", sharp, sharp >= t.min_sharpness, _ramp(sharp, t.min_sharpness, 0.5 * t.min_sharpness),
                  f">= {t.min_sharpness:g}", "hold still and let the camera focus"),
        Component("noise", noise, noise <= t.max_noise, _ramp(t.max_noise - noise, 0.0, 0.25 * t.max_noise),
                  f"<= {t.max_noise:g} grey levels", "the picture is too noisy: add light in front of the face"),
        Component("brightness", bright, t.min_brightness <= bright <= t.max_brightness,
                  min(_ramp(bright, t.min_brightness, 15.0), _ramp(-bright, -t.max_brightness, 15.0)),
                  f"{t.min_brightness:g}-{t.max_brightness:g}", light_action),
        Component("clipped", clipped, clipped <= t.max_clipped, _ramp(t.max_clipped - clipped, 0.0, 0.1),
                  f"<= {t.max_clipped:g}", light_action),
        Component("contrast", contrast, contrast >= t.min_contrast, _ramp(contrast, t.min_contrast, 0.4 * t.min_contrast),
                  f">= {t.min_contrast:g}", "light the face evenly from the front (it looks flat or washed out)"),
    ]
    if mask_confidence is not None:
        covered = mask_confidence > t.max_mask_confidence
        comps.append(Component("lower_face", float(mask_confidence), not covered, 0.0 if covered else 1.0,
                               f"mask confidence <= {t.max_mask_confidence:g}",
                               "take off the mask or whatever covers the nose and mouth"))
    score = 100.0 * min(c.score for c in comps)
    return QualityReport(score, tuple(comps), (yaw, pitch, roll), t)


def assess_faces(image: np.ndarray, faces: Sequence[Any], subject: Any,
                 thresholds: Optional[QualityThresholds] = None) -> QualityReport:
    """assess() from detector output: `faces` all detected faces, `subject` the chosen one."""
    others = [f.landmarks for f in faces if f is not subject]
    return assess(image, None if subject is None else subject.landmarks, len(faces), thresholds, others)
