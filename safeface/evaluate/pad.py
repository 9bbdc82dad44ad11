"""Presentation attack detection, measured (ISO/IEC 30107-3), and a generator of test sets.

Evaluation: DIR holds ``live/`` and ``attack/<type>/``, each entry a clip file or a folder of
frames. Every entry gets the workspace-free check (physics, surface and replay cues, no
challenge). A clip in which no face was followed through enough frames is a failure to acquire
(reported per type as "fta", outside the rates below, as ISO/IEC 30107-3 keeps non-responses
apart). Over the acquired clips: APCER per attack type = the share accepted as live; BPCER = the
share of live clips not accepted as live, an "inconclusive" counting against it (the person has
to try again); "bpcer_attack_only" counts only those called attack; ACER = (max APCER + BPCER) / 2.
The inconclusive rates are reported beside them, and a DET curve (APCER of the worst type
against BPCER over the score).

Generator: attacks from still photographs (a print or a screen waved in front of the camera):
the photo, with a print's white margin and halftone dots, or a screen's bezel, sub-pixel grid
and glare, is placed on a plane in front of a pinhole camera and turned by smooth random 3D
rotations and moves, so every frame is an exact homography of the photo, as a real print's is.
Genuine footage: 2 s windows of real clips with head motion (the face_recognition project's
Hamilton example clip). What synthetic attacks cannot show is stated in the README.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Any, Optional, Sequence, cast

import numpy as np

from ..atomicfile import make_dirs, write_atomic
from ..errors import ConfigError

CLIP_SUFFIXES = (".mp4", ".avi", ".mov", ".mkv", ".webm")
FPS = 30
FRAME_SIZE = (640, 480)
FOCAL = 600.0  # pixels: a webcam's field of view at 640 x 480


# -- generator ------------------------------------------------------------------------------------
def _medium(photo: np.ndarray, kind: str, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """The photo as a print or a screen shows it (RGB float32 0-255) and its mask."""
    import cv2

    side = 420
    img = cv2.resize(photo, (side, side), interpolation=cv2.INTER_CUBIC).astype(np.float32)
    yy, xx = np.mgrid[:side, :side].astype(np.float32)
    if kind == "print":
        # Halftone: a dot screen at 45 degrees, about 3-5 px per period; inks less saturated.
        period = float(rng.uniform(3.0, 5.0))
        dots = 0.5 + 0.5 * np.cos(2 * np.pi * (xx + yy) / (period * 1.414)) * np.cos(2 * np.pi * (xx - yy) / (period * 1.414))
        img = img * (0.82 + 0.18 * dots[..., None])
        img = 0.85 * img + 0.15 * img.mean(axis=2, keepdims=True) + 12
        m = int(side * 0.08)
        out = np.full((side + 2 * m, side + 2 * m, 3), 245.0, np.float32)
        out[m:m + side, m:m + side] = img
    else:
        # A screen: red, green and blue sub-pixel columns, a blue cast, a black bezel.
        stripe = np.zeros((side, side, 3), np.float32)
        for c in range(3):
            stripe[:, c::3, c] = 1.0
        img = img * (0.7 + 0.45 * stripe)
        img[..., 2] = img[..., 2] * 1.05 + 6
        m = int(side * 0.1)
        out = np.full((side + 2 * m, side + 2 * m, 3), 12.0, np.float32)
        out[m:m + side, m:m + side] = img
    # Glare: a soft bright patch where the light catches the surface.
    h, w = out.shape[:2]
    gy, gx = rng.uniform(0.2, 0.8) * h, rng.uniform(0.2, 0.8) * w
    yy, xx = np.mgrid[:h, :w].astype(np.float32)
    glare = np.exp(-(((yy - gy) ** 2 + (xx - gx) ** 2) / (2 * (0.15 * w) ** 2)))
    out = out + float(rng.uniform(30, 80)) * glare[..., None]
    return np.clip(out, 0, 255), np.ones((h, w), np.float32)


def _background(rng: np.random.Generator) -> np.ndarray:
    import cv2

    w, h = FRAME_SIZE
    small = rng.uniform(40, 200, size=(6, 8, 3)).astype(np.float32)
    return cast(np.ndarray, cv2.resize(small, (w, h), interpolation=cv2.INTER_CUBIC))


def _rotation(yaw: float, pitch: float, roll: float) -> np.ndarray:
    a, b, c = np.radians([yaw, pitch, roll])
    ry = np.array([[np.cos(a), 0, np.sin(a)], [0, 1, 0], [-np.sin(a), 0, np.cos(a)]])
    rx = np.array([[1, 0, 0], [0, np.cos(b), -np.sin(b)], [0, np.sin(b), np.cos(b)]])
    rz = np.array([[np.cos(c), -np.sin(c), 0], [np.sin(c), np.cos(c), 0], [0, 0, 1]])
    out: np.ndarray = rz @ rx @ ry
    return out


def waved_attack(photo: np.ndarray, kind: str, seed: int, seconds: float = 2.0, face_frac: float = 0.45,
                 max_turn: float = 35.0) -> list[np.ndarray]:
    """Frames of a print ("print") or a screen ("screen") showing `photo`, waved in front of a
    camera: smooth random turns up to `max_turn` degrees, moves and a change of distance."""
    import cv2

    rng = np.random.default_rng(seed)
    medium, mask = _medium(photo, kind, rng)
    mh, mw = medium.shape[:2]
    bg = _background(rng)
    w, h = FRAME_SIZE
    k = np.array([[FOCAL, 0, w / 2], [0, FOCAL, h / 2], [0, 0, 1]])
    # The medium's pixels on a plane (units: medium pixels), centred; its distance sets its size.
    z0 = FOCAL * mw / (face_frac * w * 1.6)
    centre = np.array([[1, 0, -mw / 2], [0, 1, -mh / 2], [0, 0, 1]], dtype=np.float64)
    n = int(round(seconds * FPS))
    amp = rng.uniform(0.3, 1.0, size=3) * np.array([max_turn, max_turn * 0.6, 10.0])
    freq = rng.uniform(0.3, 0.9, size=6)
    phase = rng.uniform(0, 2 * np.pi, size=6)
    frames = []
    for i in range(n):
        t = i / FPS
        yaw, pitch, roll = (amp[j] * np.sin(2 * np.pi * freq[j] * t + phase[j]) for j in range(3))
        r = _rotation(yaw, pitch, roll)
        tx = 0.08 * z0 * np.sin(2 * np.pi * freq[3] * t + phase[3])
        ty = 0.06 * z0 * np.sin(2 * np.pi * freq[4] * t + phase[4])
        tz = z0 * (1 + 0.12 * np.sin(2 * np.pi * freq[5] * t + phase[5]))
        hmat = k @ np.column_stack([r[:, 0], r[:, 1], [tx, ty, tz]]) @ centre
        warped = cv2.warpPerspective(medium, hmat, (w, h), flags=cv2.INTER_LINEAR)
        m = cv2.warpPerspective(mask, hmat, (w, h), flags=cv2.INTER_LINEAR)[..., None]
        frame = warped * m + bg * (1 - m)
        frame = cv2.GaussianBlur(frame, (0, 0), 0.6) + rng.normal(0, 2.0, frame.shape)
        frames.append(np.clip(frame, 0, 255).astype(np.uint8))
    return frames


def write_clip(frames: Sequence[np.ndarray], path: Path, fps: float = FPS) -> Path:
    """An H.264 MP4 of the frames (what a phone or webcam would upload)."""
    import av

    path.parent.mkdir(parents=True, exist_ok=True)
    h, w = frames[0].shape[:2]
    with av.open(str(path), mode="w") as out:
        stream = out.add_stream("libx264", rate=Fraction(fps).limit_denominator(1001))
        stream.width, stream.height, stream.pix_fmt = w - w % 2, h - h % 2, "yuv420p"
        stream.options = {"preset": "veryfast", "crf": "20"}
        for f in frames:
            vf = av.VideoFrame.from_ndarray(np.ascontiguousarray(f[: h - h % 2, : w - w % 2]), format="rgb24")
            for packet in stream.encode(vf):
                out.mux(packet)
        for packet in stream.encode():
            out.mux(packet)
    return path


CUT_DIFF = 22.0  # mean absolute grey change between frames (0-255, at 64 px wide) that marks a cut: the
# Hamilton clip's three cuts change 28-31, its fastest camera and stage motion at most 18


def shots(frames: Sequence[np.ndarray]) -> list[tuple[int, int]]:
    """(start, end) frame ranges between cuts. An edited clip joins shots of different scenes; a
    window across a cut is not one presentation (the face jumps, or another person appears), so
    genuine samples are taken within a shot."""
    import cv2

    greys = [cv2.resize(cv2.cvtColor(f, cv2.COLOR_RGB2GRAY), (64, 36)).astype(np.float32) for f in frames]
    cuts = [i for i in range(1, len(greys)) if float(np.mean(np.abs(greys[i] - greys[i - 1]))) > CUT_DIFF]
    bounds = [0, *cuts, len(frames)]
    return [(a, b) for a, b in zip(bounds, bounds[1:]) if b > a]


def live_windows(video: Path, seconds: float = 2.0, stride: float = 1.0) -> list[tuple[list[np.ndarray], float]]:
    """Windows of a real clip, each inside one shot: (frames, fps)."""
    import av

    with av.open(str(video)) as c:
        s = c.streams.video[0]
        fps = float(s.average_rate or FPS)
        frames = [f.to_ndarray(format="rgb24") for f in c.decode(s)]
    n, step = int(round(seconds * fps)), max(1, int(round(stride * fps)))
    return [(frames[i:i + n], fps) for a, b in shots(frames) for i in range(a, b - n + 1, step)]


def make_pad_set(root: Path, stills: Sequence[Path], live_clips: Sequence[Path], per_kind: int = 20,
                 seed: int = 0, live_stride: float = 0.25) -> dict[str, int]:
    """Write a PAD test set: attack/print and attack/screen (waved stills), live (2 s windows of
    real clips within each shot, every `live_stride` s: overlapping, so not independent samples).
    Returns the count per folder."""
    from ..imageio import load_image

    root = Path(root)
    rng = np.random.default_rng(seed)
    counts: dict[str, int] = {}
    if not stills:
        raise ConfigError("no still photographs to make attacks from.")
    for kind in ("print", "screen"):
        for i in range(per_kind):
            photo = load_image(stills[int(rng.integers(len(stills)))])
            frames = waved_attack(photo, kind, seed=int(rng.integers(2**31)))
            write_clip(frames, root / "attack" / kind / f"{kind}_{i:03d}.mp4")
        counts[f"attack/{kind}"] = per_kind
    n = 0
    for clip in live_clips:
        for frames, fps in live_windows(clip, stride=live_stride):
            write_clip(frames, root / "live" / f"{clip.stem}_{n:03d}.mp4", fps)
            n += 1
    counts["live"] = n
    return counts


# -- evaluation -----------------------------------------------------------------------------------
@dataclass(frozen=True)
class Outcome:
    path: str
    kind: str  # "live" or the attack type
    decision: str
    score: float
    seconds: float
    acquired: bool = True  # a face was followed through the clip


def _entries(folder: Path) -> list[Path]:
    if not folder.is_dir():
        return []
    return sorted(p for p in folder.iterdir() if p.is_dir() or p.suffix.lower() in CLIP_SUFFIXES)


def run_pad(root: Path, engine: Any = None) -> list[Outcome]:
    from ..capture.liveness import check_clip, default_engine

    root = Path(root)
    if not (root / "live").is_dir() or not (root / "attack").is_dir():
        raise ConfigError(f"{root} must hold live/ and attack/<type>/ (clips or folders of frames); make one "
                          "with `safeface eval pad --make DIR`.")
    engine = engine or default_engine()
    jobs = [(p, "live") for p in _entries(root / "live")]
    for t in sorted(d for d in (root / "attack").iterdir() if d.is_dir()):
        jobs += [(p, t.name) for p in _entries(t)]
    out = []
    for path, kind in jobs:
        result, _ = check_clip(path, engine)
        out.append(Outcome(str(path.relative_to(root)), kind, result.decision, result.score, result.seconds,
                           bool(result.checks.get("acquired", True))))
    return out


def pad_metrics(outcomes: Sequence[Outcome]) -> dict[str, Any]:
    kinds = sorted({o.kind for o in outcomes})
    types = [k for k in kinds if k != "live"]
    got = [o for o in outcomes if o.acquired]
    if not any(o.kind == "live" for o in got) or not types:
        raise ConfigError("a PAD evaluation needs live clips in which a face is found and at least one attack type.")

    def share(kind: str, decision: str) -> Optional[float]:
        # None where no clip of the kind was acquired: 0% would claim evidence there is none of.
        of = [o for o in got if o.kind == kind]
        return float(np.mean([o.decision == decision for o in of])) if of else None

    apcer = {t: share(t, "live") for t in types}
    measured = [v for v in apcer.values() if v is not None]
    rates = {k: {"count": sum(o.kind == k for o in outcomes), "acquired": sum(o.kind == k for o in got),
                 "fta": float(np.mean([not o.acquired for o in outcomes if o.kind == k])),
                 "live": share(k, "live"), "attack": share(k, "attack"), "inconclusive": share(k, "inconclusive")}
             for k in ["live", *types]}
    bpcer = 1.0 - float(rates["live"]["live"] or 0.0)  # some live clip was acquired (checked above)
    times = [o.seconds for o in outcomes]
    return {"apcer": apcer, "bpcer": bpcer, "acer": (max(measured) + bpcer) / 2 if measured else None,
            "bpcer_attack_only": rates["live"]["attack"], "rates": rates,
            "seconds_median": float(np.median(times)), "seconds_p95": float(np.percentile(times, 95))}


def det_curve(outcomes: Sequence[Outcome]) -> Any:
    """APCER (worst type) against BPCER as the live threshold on the score moves."""
    from .metrics import Curve

    outcomes = [o for o in outcomes if o.acquired]
    live = np.array([o.score for o in outcomes if o.kind == "live"])
    types = sorted({o.kind for o in outcomes if o.kind != "live"})
    ths = np.unique(np.concatenate([[0.0, 1.01], [o.score for o in outcomes]]))[::-1]
    ap = np.array([max(float(np.mean([o.score >= t for o in outcomes if o.kind == k] or [0.0])) for k in types)
                   for t in ths])
    bp = np.array([float(np.mean(live < t)) if len(live) else 0.0 for t in ths])
    return Curve(ths, ap, bp)


def evaluate_pad(root: Path, out: Optional[Path] = None, engine: Any = None) -> dict[str, Any]:
    """Run the check on every entry of DIR; write pad.json and a DET plot to `out` (default DIR)."""
    from .plots import det_plot

    outcomes = run_pad(root, engine)
    result = pad_metrics(outcomes)
    out = Path(out or root)
    make_dirs(out)
    result["det_plot"] = str(det_plot({"PAD (physics + replay cues)": det_curve(outcomes)}, out / "pad_det.png",
                                      xlabel="APCER (worst attack type)", ylabel="BPCER"))
    result["outcomes"] = [o.__dict__ for o in outcomes]
    write_atomic(out / "pad.json", json.dumps(result, indent=2))
    return result
