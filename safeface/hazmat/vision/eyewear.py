"""Synthetic covers over the eyes drawn from the 5 landmarks (dark glasses, and a band, a patch over
one eye or a visor's shadow), for training and measuring the eye-cover check (eye_cover.py) and
for attack benchmarks.

Reproducible as masks.py is: the same image, landmarks, kind and seed give the same pixels. The
lenses are placed in the face's own frame (masks.FaceFrame: origin between the eyes, unit the eye
distance), so a tilted head gets tilted glasses; the seed varies the lens size, height, tint,
opacity, frame and a reflection.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, replace
from typing import Union

import numpy as np

from ...errors import InvalidArgument
from .masks import FaceFrame

# Version of the drawing; a change here never reuses features or embeddings of the old one.
GENERATOR_VERSION = 2


class EyewearKind(enum.Enum):
    ROUND = "round"
    RECTANGULAR = "rectangular"  # wayfarer-like, wider at the top
    AVIATOR = "aviator"  # teardrop lenses reaching down the cheek
    WRAP = "wrap"  # one shield across both eyes
    BAR = "bar"  # a flat band across both eyes: a hand, a strip of cloth, a censor bar
    PATCH = "patch"  # one eye covered
    SHADOW = "shadow"  # a cap's visor: the band over the eyes in deep shade


EYEWEAR_KINDS = tuple(k.value for k in EyewearKind)
RANDOM = "random"

# Lens tints: black, dark brown, dark grey, bottle green, navy; and a mirrored silver-blue.
_TINTS = ((12, 12, 14), (48, 32, 22), (44, 44, 50), (22, 44, 30), (20, 28, 58), (120, 140, 170))
MIRRORED = 5
# Bands and patches: the face's own skin (a hand), or a grey, black or cloth colour.
_BAND_COLOURS = ((128, 128, 128), (200, 200, 200), (20, 20, 20), (90, 60, 40), (40, 60, 110))
SKIN = -1


@dataclass(frozen=True)
class EyewearStyle:
    kind: EyewearKind
    tint: int  # index into _TINTS
    size: float  # scale of the lenses (1.0: nominal)
    drop: float  # lens centre below the eye line, frame units
    spread: float  # scale of the distance between the lenses
    tilt: float  # extra rotation, degrees
    opacity: float  # 1: nothing of the eye shows through
    rim: float  # frame thickness, frame units (0: rimless)
    glare: bool  # a light streak across each lens
    colour: int = SKIN  # a band's or patch's colour: index into _BAND_COLOURS, or SKIN
    shade: float = 0.25  # a shadow's remaining light
    side: float = 1.0  # which eye a patch covers


def eyewear_style(kind: Union[str, EyewearKind] = RANDOM, seed: int = 0) -> EyewearStyle:
    """The style of the glasses `kind` ("random" draws the kind too) for `seed`."""
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise InvalidArgument("an eyewear seed is a whole number of at least 0 (an int).")
    rng = np.random.default_rng([GENERATOR_VERSION, int(seed), 7])
    if isinstance(kind, EyewearKind):
        k = kind
    elif kind == RANDOM:
        k = list(EyewearKind)[int(rng.integers(len(EyewearKind)))]
    else:
        try:
            k = EyewearKind(kind)
        except ValueError:
            raise InvalidArgument(f"unknown eyewear kind {kind!r}; choose one of {', '.join(EYEWEAR_KINDS)} "
                                  f"or {RANDOM}.") from None
    return EyewearStyle(kind=k, tint=int(rng.integers(len(_TINTS))), size=float(rng.uniform(0.95, 1.3)),
                        drop=float(rng.uniform(-0.04, 0.1)), spread=float(rng.uniform(0.94, 1.08)),
                        tilt=float(rng.uniform(-4.0, 4.0)), opacity=float(rng.uniform(0.88, 1.0)),
                        rim=float(rng.choice([0.0, 0.03, 0.05])), glare=bool(rng.integers(2)),
                        colour=SKIN if rng.random() < 0.5 else int(rng.integers(len(_BAND_COLOURS))),
                        shade=float(rng.uniform(0.12, 0.35)), side=float(rng.choice([-1.0, 1.0])))


def _lens(style: EyewearStyle, side: float) -> np.ndarray:
    """One lens's outline in frame units; side -1 (image left) or +1."""
    s, cx, cy = style.size, side * 0.5 * style.spread, style.drop
    t = np.linspace(0.0, 2 * np.pi, 48, endpoint=False)
    k = style.kind
    if k == EyewearKind.ROUND:
        x, y = 0.3 * s * np.cos(t), 0.3 * s * np.sin(t)
    elif k == EyewearKind.RECTANGULAR:
        # A superellipse, its lower half narrowed towards the nose.
        c, sn = np.cos(t), np.sin(t)
        x = 0.38 * s * np.sign(c) * np.abs(c) ** 0.45
        y = 0.24 * s * np.sign(sn) * np.abs(sn) ** 0.45
        x = x * np.where(y > 0, 1.0 - 0.35 * y / (0.24 * s), 1.0)
    else:  # AVIATOR: an ellipse whose lower part swings down and outwards
        x, y = 0.36 * s * np.cos(t), 0.28 * s * np.sin(t)
        low = np.clip(y / (0.28 * s), 0.0, None)
        y = y + 0.12 * s * low
        x = x + side * 0.06 * s * low
    return np.stack([cx + x, cy + y], axis=1)


def _band(style: EyewearStyle) -> np.ndarray:
    """A band across both eyes, brows to cheekbones, reaching past the face's sides."""
    s, cy = style.size, style.drop
    return np.array([(-1.1 * s, cy - 0.3 * s), (1.1 * s, cy - 0.3 * s), (1.1 * s, cy + 0.28 * s),
                     (-1.1 * s, cy + 0.28 * s)], dtype=np.float64)


def _shield(style: EyewearStyle) -> np.ndarray:
    """A wrap-around shield over both eyes, with a notch over the nose."""
    s, cy = style.size, style.drop
    top = [(-1.0 * s, cy - 0.22 * s), (-0.5 * s, cy - 0.28 * s), (0.0, cy - 0.26 * s), (0.5 * s, cy - 0.28 * s),
           (1.0 * s, cy - 0.22 * s)]
    bottom = [(0.98 * s, cy + 0.14 * s), (0.6 * s, cy + 0.3 * s), (0.25 * s, cy + 0.26 * s), (0.1 * s, cy + 0.12 * s),
              (0.0, cy + 0.08 * s), (-0.1 * s, cy + 0.12 * s), (-0.25 * s, cy + 0.26 * s), (-0.6 * s, cy + 0.3 * s),
              (-0.98 * s, cy + 0.14 * s)]
    return np.array(top + bottom, dtype=np.float64)


def draw_eyewear(image: np.ndarray, landmarks: np.ndarray, kind: Union[str, EyewearKind] = RANDOM,
                 seed: int = 0) -> np.ndarray:
    """A copy of the RGB `image` with synthetic dark glasses of `kind` over the eyes of the face
    whose 5 landmarks (dlib's order: eye corners, nose base) are given."""
    import cv2

    img = np.asarray(image)
    if img.ndim != 3 or img.shape[2] != 3 or img.dtype != np.uint8:
        raise InvalidArgument("draw_eyewear needs an RGB uint8 image of shape (h, w, 3).")
    style = eyewear_style(kind, seed)
    frame = FaceFrame.from_landmarks(landmarks).rotated(style.tilt)
    k = style.kind
    if k in (EyewearKind.BAR, EyewearKind.SHADOW):
        lenses = [_band(style)]
    elif k == EyewearKind.PATCH:
        lenses = [_lens(replace(style, kind=EyewearKind.ROUND), style.side)]
    elif k == EyewearKind.WRAP:
        lenses = [_shield(style)]
    else:
        lenses = [_lens(style, -1.0), _lens(style, 1.0)]
    pts = [frame.to_image(p) for p in lenses]
    every = np.concatenate(pts)
    h, w = img.shape[:2]
    pad = 3 + frame.unit * 0.1
    x0, y0 = int(max(0, np.floor(every[:, 0].min() - pad))), int(max(0, np.floor(every[:, 1].min() - pad)))
    x1, y1 = int(min(w, np.ceil(every[:, 0].max() + pad))), int(min(h, np.ceil(every[:, 1].max() + pad)))
    out: np.ndarray = np.array(img, copy=True)
    if x1 <= x0 or y1 <= y0:
        return out
    cover = np.zeros((y1 - y0, x1 - x0), dtype=np.uint8)
    shifted = [np.round((p - [x0, y0]) * 8).astype(np.int32) for p in pts]
    cv2.fillPoly(cover, shifted, 255, lineType=cv2.LINE_AA, shift=3)
    py, px = np.mgrid[y0:y1, x0:x1].astype(np.float64)
    u, v = frame.to_face(px, py)
    if k == EyewearKind.SHADOW:
        # Deep shade, its lower edge soft: the light left falls off towards the brows.
        soft = cv2.GaussianBlur(cover, (0, 0), max(1.0, 0.08 * frame.unit)).astype(np.float64) / 255.0
        light = 1.0 - soft * (1.0 - style.shade)
        out[y0:y1, x0:x1] = np.round(out[y0:y1, x0:x1].astype(np.float64) * light[..., None]).astype(np.uint8)
        return out
    if k in (EyewearKind.BAR, EyewearKind.PATCH):
        fill = (_skin(img, frame) if style.colour == SKIN else np.array(_BAND_COLOURS[style.colour], dtype=np.float64))
        rng = np.random.default_rng([GENERATOR_VERSION, int(seed), 9])
        flat = np.clip(fill[None, None, :] + rng.normal(0.0, 3.0, size=(y1 - y0, x1 - x0, 3)), 0.0, 255.0)
        a = (cover.astype(np.float64) / 255.0)[..., None]
        out[y0:y1, x0:x1] = np.round(out[y0:y1, x0:x1].astype(np.float64) * (1 - a) + flat * a).astype(np.uint8)
        return out
    tint = np.array(_TINTS[style.tint], dtype=np.float64)
    # Lighter at the top of a mirrored lens, darker at the bottom; a faint gradient on the others.
    grad = 1.0 + (0.35 if style.tint == MIRRORED else 0.15) * np.clip(-v / 0.3, -1.0, 1.0)
    lens = tint[None, None, :] * grad[..., None]
    if style.glare:
        streak = np.exp(-((u * 0.6 + v - style.drop + 0.05) / 0.04) ** 2) * (np.abs(u) < 1.1)
        lens = lens + 90.0 * streak[..., None]
    rng = np.random.default_rng([GENERATOR_VERSION, int(seed), 8])
    lens = np.clip(lens + rng.normal(0.0, 2.5, size=lens.shape), 0.0, 255.0)
    a = (cover.astype(np.float64) / 255.0 * style.opacity)[..., None]
    region = out[y0:y1, x0:x1].astype(np.float64)
    region = region * (1 - a) + lens * a
    rim_px = int(round(style.rim * frame.unit))
    if rim_px >= 1:
        edge = np.zeros_like(cover)
        cv2.polylines(edge, shifted, True, 255, thickness=rim_px, lineType=cv2.LINE_AA, shift=3)
        e = (edge.astype(np.float64) / 255.0)[..., None]
        region = region * (1 - e) + (tint * 0.5)[None, None, :] * e
    out[y0:y1, x0:x1] = np.round(region).astype(np.uint8)
    # The bridge and the arms towards the ears.
    thick = max(1, int(round(frame.unit * 0.035)))
    colour = tuple(int(c * 0.6) for c in tint)
    if k != EyewearKind.WRAP:
        inner = [p[np.argmin(np.abs(lens_pts[:, 0]))] for p, lens_pts in zip(pts, lenses)]
        cv2.line(out, tuple(int(round(c)) for c in inner[0]), tuple(int(round(c)) for c in inner[1]), colour, thick,
                 lineType=cv2.LINE_AA)
    edge_x = max(float(np.abs(p[:, 0]).max()) for p in lenses)
    for side in (-1.0, 1.0):
        a_pt = frame.to_image(np.array([side * edge_x * 0.98, style.drop - 0.1]))
        b_pt = frame.to_image(np.array([side * (edge_x + 0.45), style.drop - 0.12]))
        cv2.line(out, tuple(int(round(c)) for c in a_pt), tuple(int(round(c)) for c in b_pt), colour, thick,
                 lineType=cv2.LINE_AA)
    return out


def _skin(img: np.ndarray, frame: FaceFrame) -> np.ndarray:
    """The median colour of the cheeks below the eyes: what a hand over them looks like."""
    h, w = img.shape[:2]
    pts = frame.to_image(np.array([(x, y) for x in (-0.6, -0.4, 0.4, 0.6) for y in (0.45, 0.6, 0.75)]))
    xs = np.clip(np.round(pts[:, 0]).astype(int), 0, w - 1)
    ys = np.clip(np.round(pts[:, 1]).astype(int), 0, h - 1)
    out: np.ndarray = np.median(img[ys, xs].astype(np.float64), axis=0)
    return out
