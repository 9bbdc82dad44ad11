"""Synthetic face masks drawn from the 5 landmarks and the face box, for evaluation and for the
visible-region template made at enrolment.

Reproducible: the same image, landmarks, box, kind and seed give the same pixels (the only
randomness is a numpy Generator seeded by the caller). Geometry is built in the face's own frame
(origin between the eyes, x along the eye line, unit = eye distance), so a tilted head gets a
tilted mask; the seeded variation then scales its height and width and tilts it a little more.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Optional, Sequence, Union

import numpy as np

from ...errors import InvalidArgument

# Version of the drawing; evaluation caches key masked images by it, so a change here never
# reuses embeddings of masks drawn the old way.
GENERATOR_VERSION = 1


class MaskKind(enum.Enum):
    SURGICAL = "surgical"
    CLOTH = "cloth"
    N95 = "n95"  # N95 / KN95: a folded respirator with a seam down the middle
    GAITER = "gaiter"  # a scarf or neck gaiter pulled up over the nose


MASK_KINDS = tuple(k.value for k in MaskKind)
RANDOM = "random"

_COLOURS: dict[MaskKind, tuple[tuple[int, int, int], ...]] = {
    MaskKind.SURGICAL: ((173, 216, 230), (150, 200, 225), (240, 240, 240), (40, 40, 45), (245, 190, 205)),
    MaskKind.CLOTH: ((25, 25, 30), (60, 70, 120), (120, 30, 40), (90, 110, 70), (200, 170, 120), (230, 230, 225)),
    MaskKind.N95: ((245, 245, 240), (225, 225, 220), (200, 205, 210), (60, 60, 65)),
    MaskKind.GAITER: ((30, 30, 35), (70, 80, 90), (140, 40, 50), (40, 90, 60), (180, 150, 110)),
}


@dataclass(frozen=True)
class MaskStyle:
    """One mask's look and placement, drawn from a seed."""

    kind: MaskKind
    colour: tuple[int, int, int]
    height: float  # scale of the mask's height (1.0: nominal)
    width: float  # scale of its width
    tilt: float  # extra rotation, degrees
    pattern: int  # 0 plain, 1 stripes, 2 dots (cloth and gaiter)
    texture: float  # strength of the fabric noise


def mask_style(kind: Union[str, MaskKind] = MaskKind.SURGICAL, seed: int = 0) -> MaskStyle:
    """The style of the mask `kind` ("random" draws the kind too) for `seed`."""
    rng = np.random.default_rng([GENERATOR_VERSION, _seed(seed)])
    k = _kind(kind, rng)
    palette = _COLOURS[k]
    return MaskStyle(kind=k, colour=palette[int(rng.integers(len(palette)))],
                     height=float(rng.uniform(0.9, 1.1)), width=float(rng.uniform(0.92, 1.08)),
                     tilt=float(rng.uniform(-6.0, 6.0)),
                     pattern=int(rng.integers(3)) if k in (MaskKind.CLOTH, MaskKind.GAITER) else 0,
                     texture=float(rng.uniform(4.0, 10.0)))


def _seed(seed: object) -> int:
    """A seed is a whole number of at least 0: numpy's seeding refused a negative one, and int()
    a NaN, text or None, each with a bare ValueError or TypeError; a float was cut silently."""
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise InvalidArgument("a mask seed is a whole number of at least 0 (an int).")
    return int(seed)


def _kind(kind: Union[str, MaskKind], rng: np.random.Generator) -> MaskKind:
    if isinstance(kind, MaskKind):
        return kind
    if kind == RANDOM:
        return list(MaskKind)[int(rng.integers(len(MaskKind)))]
    try:
        return MaskKind(kind)
    except ValueError:
        raise InvalidArgument(f"unknown mask kind {kind!r}; choose one of {', '.join(MASK_KINDS)} or {RANDOM}.") from None


@dataclass(frozen=True)
class FaceFrame:
    """The face's own frame: origin between the eyes, `ux` along the eye line, `uy` down the face,
    `unit` the eye distance in pixels; `nose` the base of the nose in frame units."""

    origin: np.ndarray
    ux: np.ndarray
    uy: np.ndarray
    unit: float
    nose: float

    @classmethod
    def from_landmarks(cls, landmarks: np.ndarray) -> "FaceFrame":
        refusal = "a mask needs the 5 landmarks of a face (eye corners and nose base) as a 5x2 array of numbers."
        try:
            pts = np.asarray(landmarks, dtype=np.float64).reshape(-1, 2)
        except (TypeError, ValueError):  # text, objects, ragged lists
            raise InvalidArgument(refusal) from None
        if pts.shape != (5, 2) or not np.isfinite(pts).all():
            raise InvalidArgument(refusal)
        a, b = pts[0:2].mean(axis=0), pts[2:4].mean(axis=0)
        left, right = (a, b) if a[0] <= b[0] else (b, a)
        d = right - left
        unit = float(np.hypot(*d))
        if unit < 2.0:
            raise InvalidArgument("the eyes of this face are less than 2 pixels apart: too small to mask.")
        ux = d / unit
        uy = np.array([-ux[1], ux[0]])
        origin = (left + right) / 2
        nose = float(np.dot(pts[4] - origin, uy)) / unit
        # The 5-point model puts the nose base 0.6-1.1 eye distances below the eyes; clamp odd fits.
        return cls(origin, ux, uy, unit, float(np.clip(nose, 0.55, 1.2)))

    def rotated(self, degrees: float) -> "FaceFrame":
        t = np.deg2rad(degrees)
        c, s = np.cos(t), np.sin(t)
        ux = np.array([c * self.ux[0] - s * self.ux[1], s * self.ux[0] + c * self.ux[1]])
        return FaceFrame(self.origin, ux, np.array([-ux[1], ux[0]]), self.unit, self.nose)

    def to_image(self, xy: np.ndarray) -> np.ndarray:
        xy = np.asarray(xy, dtype=np.float64)
        out: np.ndarray = self.origin + self.unit * (xy[..., :1] * self.ux + xy[..., 1:2] * self.uy)
        return out

    def to_face(self, px: np.ndarray, py: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        dx, dy = px - self.origin[0], py - self.origin[1]
        return ((dx * self.ux[0] + dy * self.ux[1]) / self.unit, (dx * self.uy[0] + dy * self.uy[1]) / self.unit)


def _outline(style: MaskStyle, frame: FaceFrame, box_halfwidth: float) -> np.ndarray:
    """The mask's polygon in frame units."""
    n = frame.nose
    # Chin: the lower third of a face (nose base to chin) is about the middle third (brow to nose
    # base), and the brow sits about 0.35 eye distances above the eye line.
    chin = 2.0 * n + 0.35
    hw = style.width * 0.5 * (1.05 + box_halfwidth)
    top = n * (0.45 if style.kind != MaskKind.N95 else 0.4)
    bottom = top + style.height * (chin + 0.12 - top)
    k = style.kind
    if k == MaskKind.GAITER:
        hw *= 1.12
        bottom = top + style.height * (chin + 1.2 - top)
        return np.array([(-hw, top + 0.05), (-0.5 * hw, top - 0.03), (0, top - 0.05), (0.5 * hw, top - 0.03),
                         (hw, top + 0.05), (hw * 1.02, bottom), (-hw * 1.02, bottom)])
    if k == MaskKind.N95:
        mid = (top + bottom) / 2
        return np.array([(0, top - 0.08), (0.55 * hw, top + 0.08), (0.95 * hw, top + 0.3), (hw, mid),
                         (0.8 * hw, bottom - 0.25), (0.4 * hw, bottom - 0.02), (0, bottom + 0.04),
                         (-0.4 * hw, bottom - 0.02), (-0.8 * hw, bottom - 0.25), (-hw, mid),
                         (-0.95 * hw, top + 0.3), (-0.55 * hw, top + 0.08)])
    side = top + 0.62 * (bottom - top)
    return np.array([(-hw, top + 0.04), (-0.4 * hw, top - 0.03), (0, top - 0.05), (0.4 * hw, top - 0.03),
                     (hw, top + 0.04), (0.97 * hw, side), (0.7 * hw, bottom - 0.12), (0.35 * hw, bottom - 0.02),
                     (0, bottom), (-0.35 * hw, bottom - 0.02), (-0.7 * hw, bottom - 0.12), (-0.97 * hw, side)])


def _texture(style: MaskStyle, u: np.ndarray, v: np.ndarray, top: float, bottom: float,
             rng: np.random.Generator) -> np.ndarray:
    """(h, w, 3) float colours of the fabric at frame coordinates (u, v)."""
    base = np.array(style.colour, dtype=np.float64)
    t = np.clip((v - top) / max(bottom - top, 1e-6), 0.0, 1.0)
    # Light from above: the lower part and the sides turn away from it.
    shade = 1.0 - 0.12 * t - 0.10 * np.clip(np.abs(u) - 0.5, 0.0, None)
    k = style.kind
    if k == MaskKind.SURGICAL:
        pleats = np.zeros_like(v)
        for f in (0.3, 0.5, 0.7):
            pleats += np.exp(-(((t - f) * (bottom - top)) / 0.035) ** 2)
        shade = shade - 0.18 * pleats
    elif k == MaskKind.N95:
        shade = shade - 0.15 * np.exp(-(u / 0.04) ** 2)  # the seam
    elif style.pattern == 1:
        shade = shade * (1.0 - 0.25 * (np.sin((u + v) * 18.0) > 0.3))
    elif style.pattern == 2:
        dots = (np.sin(u * 25.0) * np.sin(v * 25.0)) > 0.75
        shade = shade * (1.0 - 0.35 * dots)
    colour = base[None, None, :] * shade[..., None]
    colour += rng.normal(0.0, style.texture, size=colour.shape)
    out: np.ndarray = np.clip(colour, 0.0, 255.0)
    return out


def draw_mask(image: np.ndarray, landmarks: np.ndarray, box: Optional[Sequence[float]] = None,
              kind: Union[str, MaskKind] = MaskKind.SURGICAL, seed: int = 0) -> np.ndarray:
    """A copy of the RGB `image` with a synthetic mask of `kind` over the face whose 5 landmarks
    (dlib's order: eye corners, nose base) and box (x1, y1, x2, y2; optional, it widens or narrows
    the mask to the face) are given. `kind` is a MaskKind, its name, or "random"; `seed` fixes
    kind (for "random"), colour, size, tilt and fabric noise."""
    import cv2

    img = np.asarray(image)
    if img.ndim != 3 or img.shape[2] != 3 or img.dtype != np.uint8:
        raise InvalidArgument("draw_mask needs an RGB uint8 image of shape (h, w, 3).")
    style = mask_style(kind, seed)
    frame = FaceFrame.from_landmarks(landmarks).rotated(style.tilt)
    box_hw = 1.05
    if box is not None:
        try:
            x1, _, x2, _ = np.asarray(box, dtype=np.float64).reshape(4)
        except (TypeError, ValueError):
            raise InvalidArgument("a mask's face box is 4 numbers (x1, y1, x2, y2), or None.") from None
        if x2 > x1:
            box_hw = float(np.clip(0.5 * (x2 - x1) / frame.unit, 0.8, 1.4))
    poly = _outline(style, frame, box_hw)
    pts = frame.to_image(poly)
    h, w = img.shape[:2]
    x0, y0 = int(max(0, np.floor(pts[:, 0].min()) - 2)), int(max(0, np.floor(pts[:, 1].min()) - 2))
    x1i, y1i = int(min(w, np.ceil(pts[:, 0].max()) + 3)), int(min(h, np.ceil(pts[:, 1].max()) + 3))
    out: np.ndarray = np.array(img, copy=True)
    if x1i <= x0 or y1i <= y0:
        return out
    # Coverage with 8x sub-pixel edges (cv2's shift), so edges are smooth and deterministic.
    alpha = np.zeros((y1i - y0, x1i - x0), dtype=np.uint8)
    shifted = np.round((pts - [x0, y0]) * 8).astype(np.int32)
    cv2.fillPoly(alpha, [shifted], 255, lineType=cv2.LINE_AA, shift=3)
    py, px = np.mgrid[y0:y1i, x0:x1i].astype(np.float64)
    u, v = frame.to_face(px, py)
    rng = np.random.default_rng([GENERATOR_VERSION, int(seed), 1])
    fabric = _texture(style, u, v, float(poly[:, 1].min()), float(poly[:, 1].max()), rng)
    a = (alpha.astype(np.float64) / 255.0)[..., None]
    region = out[y0:y1i, x0:x1i].astype(np.float64)
    out[y0:y1i, x0:x1i] = np.round(region * (1 - a) + fabric * a).astype(np.uint8)
    if style.kind in (MaskKind.SURGICAL, MaskKind.N95):
        _straps(out, frame, poly, style)
    return out


def _straps(out: np.ndarray, frame: FaceFrame, poly: np.ndarray, style: MaskStyle) -> None:
    """Ear loops (surgical) or head straps (N95): thin lines from the mask's sides outwards."""
    import cv2

    hw = float(np.abs(poly[:, 0]).max())
    top, bottom = float(poly[:, 1].min()), float(poly[:, 1].max())
    colour = tuple(int(c * 0.85) for c in style.colour)
    thick = max(1, int(round(frame.unit * 0.04)))
    for sx in (-1.0, 1.0):
        for fy, ex, ey in ((0.15, 1.45, 0.05), (0.75, 1.4, bottom - 0.2)):
            a = frame.to_image(np.array([sx * hw * 0.98, top + fy * (bottom - top)]))
            b = frame.to_image(np.array([sx * hw * ex, ey]))
            cv2.line(out, tuple(int(round(c)) for c in a), tuple(int(round(c)) for c in b), colour, thick,
                     lineType=cv2.LINE_AA)


def lower_face_polygon(landmarks: np.ndarray) -> np.ndarray:
    """Image points of the region a mask covers on a face (nominal surgical mask, no variation):
    what the mask detector compares with the upper face."""
    frame = FaceFrame.from_landmarks(landmarks)
    style = MaskStyle(MaskKind.SURGICAL, (0, 0, 0), 1.0, 1.0, 0.0, 0, 0.0)
    return np.asarray(frame.to_image(_outline(style, frame, 1.05)))
