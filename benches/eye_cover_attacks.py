"""Attacks on the eye-cover check (safeface/hazmat/vision/eye_cover.py): covers and image changes
it was not trained on, on LFW dev people it was not trained on (`mask_detect.trained_on` False,
one image each) and the face_recognition test images, plus what the check costs honest users.

Each attack is drawn on the image from its bare face's box and landmarks (the attacker knows their
own face), then the image goes through the SDK's steps: detection, embedding, the mask check and
the eye-cover check. Printed per attack: found again, called covered (refused) and missed; then,
over every pair of sampled LFW images of different people with the SAME attack on both sides
(enrolment and probe alike), how many impostor pairs the SDK would accept among the pairs neither
of whose sides was refused, next to the same pairs shown bare (scored as benches/masked_covers.py
`_score` scores: visible-region path when called masked, else whole, at the deployed thresholds).
"Honest" rows are changes an honest user's photo may carry (a tilt, JPEG, a small face, clear
glasses): there the refusals are the cost.

    PYTHONPATH=. nice python benches/eye_cover_attacks.py [--people 40] [--only NAME,...] [--honest 0]

--honest N (e.g. 150) instead counts false refusals of N bare held-out images, bare and under a
synthetic mask (masks.draw_mask), and prints the refused files. Nothing is written to disk.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import sys
import time
from pathlib import Path
from typing import Any, Callable, Iterator

import numpy as np

import safeface.hazmat.vision.eyewear as eyewear
from safeface.errors import InvalidArgument
from safeface.hazmat.vision import pick_subject
from safeface.hazmat.vision.eyewear import draw_eyewear
from safeface.hazmat.vision.mask_detect import trained_on
from safeface.hazmat.vision.masks import FaceFrame, draw_mask
from safeface.imageio import load_image

sys.path.insert(0, str(Path(__file__).resolve().parent))
from lfw import datasets_root  # noqa: E402
from masked_covers import _pipe, _score, _skin, _sunglasses  # noqa: E402

Attack = Callable[[np.ndarray, np.ndarray, np.ndarray, int], np.ndarray]


@contextlib.contextmanager
def _style(**change: Any) -> Iterator[None]:
    """draw_eyewear with its random style changed (e.g. opacity, size)."""
    orig = eyewear.eyewear_style
    eyewear.eyewear_style = lambda k="random", s=0: dataclasses.replace(orig(k, s), **change)  # type: ignore[assignment]
    try:
        yield
    finally:
        eyewear.eyewear_style = orig  # type: ignore[assignment]


# The glasses of these attacks: the four lens kinds, one by seed (the generator's "random" also
# draws bands, shadows and one-eye patches, which have their own rows here).
LENSES = ("round", "rectangular", "aviator", "wrap")


def _lenses(seed: int) -> str:
    return LENSES[seed % len(LENSES)]


def _styled(img: np.ndarray, lm: np.ndarray, seed: int, **change: Any) -> np.ndarray:
    with _style(**change):
        return draw_eyewear(img, lm, _lenses(seed), seed)


def _bar(img: np.ndarray, lm: np.ndarray, colour: Any, half_width: float = 1.0, up: float = 0.3,
         down: float = 0.3) -> np.ndarray:
    """A bar along the eye line, `half_width` eye distances each side of the centre."""
    import cv2

    frame = FaceFrame.from_landmarks(lm)
    pts = frame.to_image(np.array([(-half_width, -up), (half_width, -up), (half_width, down), (-half_width, down)]))
    out = img.copy()
    cv2.fillPoly(out, [np.round(pts).astype(np.int32)], tuple(int(c) for c in colour))
    return out


def _patch(img: np.ndarray, lm: np.ndarray) -> np.ndarray:
    """A black eye patch over the image-left eye, and its strap."""
    import cv2

    frame = FaceFrame.from_landmarks(lm)
    t = np.linspace(0, 2 * np.pi, 40)
    pts = frame.to_image(np.stack([-0.5 + 0.32 * np.cos(t), 0.02 + 0.26 * np.sin(t)], axis=1))
    out = img.copy()
    cv2.fillPoly(out, [np.round(pts).astype(np.int32)], (15, 15, 15))
    a, b = frame.to_image(np.array([[-0.7, -0.15], [0.9, -0.6]]))
    cv2.line(out, tuple(int(v) for v in a), tuple(int(v) for v in b), (15, 15, 15), max(1, int(frame.unit * 0.05)))
    return out


def _shadow(img: np.ndarray, lm: np.ndarray, keep: float) -> np.ndarray:
    """A cap's visor shadow: everything from above the brows to just under the eyes darkened to
    `keep` of its light, softened at the lower edge."""
    frame = FaceFrame.from_landmarks(lm)
    h, w = img.shape[:2]
    py, px = np.mgrid[0:h, 0:w].astype(np.float64)
    _, v = frame.to_face(px, py)
    fade = np.clip((0.3 - v) / 0.1, 0.0, 1.0)  # full shade down to v=0.2, none below v=0.3
    gain = 1.0 - (1.0 - keep) * fade
    return np.round(img * gain[..., None]).astype(np.uint8)


def _rotate(img: np.ndarray, deg: float) -> np.ndarray:
    import cv2

    h, w = img.shape[:2]
    m = cv2.getRotationMatrix2D((w / 2, h / 2), deg, 1.0)
    return cv2.warpAffine(img, m, (w, h), borderMode=cv2.BORDER_REPLICATE)


def _jpeg(img: np.ndarray, q: int) -> np.ndarray:
    import cv2

    ok, buf = cv2.imencode(".jpg", img[..., ::-1], [cv2.IMWRITE_JPEG_QUALITY, q])
    assert ok
    return np.ascontiguousarray(cv2.imdecode(buf, cv2.IMREAD_COLOR)[..., ::-1])


def _gray(img: np.ndarray) -> np.ndarray:
    g = np.round(img @ np.array([0.299, 0.587, 0.114])).astype(np.uint8)
    return np.ascontiguousarray(np.repeat(g[..., None], 3, axis=2))


def _face_width(img: np.ndarray, box: np.ndarray, width: float) -> np.ndarray:
    import cv2

    f = width / float(box[2] - box[0])
    h, w = img.shape[:2]
    interp = cv2.INTER_AREA if f < 1 else cv2.INTER_CUBIC
    return np.ascontiguousarray(cv2.resize(img, (max(1, round(w * f)), max(1, round(h * f))), interpolation=interp))


def _crop_above(img: np.ndarray, lm: np.ndarray, v: float) -> np.ndarray:
    """The image cut off at `v` eye distances above the eye line: no forehead left."""
    frame = FaceFrame.from_landmarks(lm)
    top = int(max(0, round(float(frame.to_image(np.array([0.0, v]))[1]))))
    return np.ascontiguousarray(img[top:])


def _dark(img: np.ndarray, lm: np.ndarray, seed: int) -> np.ndarray:
    return draw_eyewear(img, lm, _lenses(seed), seed)


ATTACKS: dict[str, Attack] = {
    # The trained cover, for reference.
    "dark glasses (eyewear.py, as trained)": lambda i, b, l, s: _dark(i, l, s),
    "dark discs (masked_covers._sunglasses)": lambda i, b, l, s: _sunglasses(i, b, l),
    "black censor bar": lambda i, b, l, s: _bar(i, l, (0, 0, 0)),
    "skin-tone bar (a hand)": lambda i, b, l, s: _bar(i, l, _skin(i, b, l)),
    "grey bar": lambda i, b, l, s: _bar(i, l, (128, 128, 128)),
    "light tint, opacity 0.5": lambda i, b, l, s: _styled(i, l, s, opacity=0.5),
    "light tint, opacity 0.7": lambda i, b, l, s: _styled(i, l, s, opacity=0.7),
    "one eye patched": lambda i, b, l, s: _patch(i, l),
    "glasses 1.5x large": lambda i, b, l, s: _styled(i, l, s, size=1.5),
    "glasses 0.75x small": lambda i, b, l, s: _styled(i, l, s, size=0.75),
    "glasses, image rotated 20 deg": lambda i, b, l, s: _rotate(_dark(i, l, s), 20.0),
    "glasses, upside down": lambda i, b, l, s: np.ascontiguousarray(_dark(i, l, s)[::-1, ::-1]),
    "glasses, rotated 90 deg": lambda i, b, l, s: np.ascontiguousarray(np.rot90(_dark(i, l, s))),
    "glasses, mirrored": lambda i, b, l, s: np.ascontiguousarray(_dark(i, l, s)[:, ::-1]),
    "glasses, grayscale": lambda i, b, l, s: _gray(_dark(i, l, s)),
    "glasses, JPEG q=15": lambda i, b, l, s: _jpeg(_dark(i, l, s), 15),
    "glasses, face 75 px wide": lambda i, b, l, s: _face_width(_dark(i, l, s), b, 75.0),
    "glasses, upscaled 3x": lambda i, b, l, s: _face_width(_dark(i, l, s), b, 3.0 * float(b[2] - b[0])),
    "glasses, cut off above the brows": lambda i, b, l, s: _crop_above(_dark(i, l, s), l, -0.45),
    "glasses, cut off through the lenses": lambda i, b, l, s: _crop_above(_dark(i, l, s), l, -0.15),
    "glasses and a mask": lambda i, b, l, s: _dark(draw_mask(i, l, b, "random", s), l, 100 + s),
    "visor shadow 70%": lambda i, b, l, s: _shadow(i, l, 0.3),
    "visor shadow 80%": lambda i, b, l, s: _shadow(i, l, 0.2),
    "visor shadow 80% + mask": lambda i, b, l, s: _shadow(draw_mask(i, l, b, "random", s), l, 0.2),
    # Honest: changes a user's bare photo may carry; a refusal here is a cost.
    "honest: clear glasses (rims only)": lambda i, b, l, s: _styled(i, l, s, opacity=0.0, rim=0.04),
    "honest: bare, rotated 20 deg": lambda i, b, l, s: _rotate(i, 20.0),
    "honest: bare, grayscale": lambda i, b, l, s: _gray(i),
    "honest: bare, JPEG q=15": lambda i, b, l, s: _jpeg(i, 15),
    "honest: bare, face 75 px wide": lambda i, b, l, s: _face_width(i, b, 75.0),
    "honest: bare, cut off above the brows": lambda i, b, l, s: _crop_above(i, l, -0.45),
}



def _record(shown: np.ndarray) -> dict[str, Any]:
    """What the SDK makes of an image: found, its unit embedding, masked, covered, visible."""
    pipe = _pipe()
    r = pipe.embed(shown)
    if r.face is None or r.embedding is None:
        return {"found": False}
    mask = pipe.mask_check(shown, r.face, r.embedding)
    try:
        eyes = pipe.eye_check(shown, r.face, r.embedding)
        assert eyes is not None
        covered, confidence = eyes.covered, eyes.confidence
    except InvalidArgument:  # eyes or forehead past the image's edge: the SDK refuses the face
        covered, confidence = True, float("nan")
    assert mask is not None
    emb = np.asarray(r.embedding, np.float64)
    vis = np.asarray(pipe.visible_embedding(shown, r.face, masked=mask.masked), np.float64)
    return {"found": True, "emb": emb / np.linalg.norm(emb), "masked": mask.masked, "covered": covered,
            "eyes": confidence, "visible": vis / np.linalg.norm(vis)}


def _held_out(n: int, skip: int = 0) -> list[Path]:
    """One image of each of n held-out LFW dev people, spread over the alphabet."""
    root = datasets_root() / "lfw-dev" / "images"
    people = [p for p in sorted(root.iterdir()) if p.is_dir() and not trained_on(p.name)]
    step = max(1, len(people) // max(1, n))
    return [sorted(p.glob("*.jpg"))[0] for p in people[skip::step]][:n]


def _honest(n: int) -> None:
    pipe = _pipe()
    counts = {"bare": [0, 0], "masked": [0, 0]}
    for i, path in enumerate(_held_out(n, skip=1)):
        img = load_image(path)
        face = pick_subject(pipe.detect(img), img.shape, pipe.config.pick)
        if face is None:
            continue
        for role, shown in (("bare", img), ("masked", draw_mask(img, face.landmarks, face.box, "random", i))):
            rec = _record(shown)
            if rec["found"]:
                counts[role][1] += 1
                counts[role][0] += bool(rec["covered"])
                if rec["covered"]:
                    print(f"  refused {role}: {path.parent.name}/{path.name} (confidence {rec['eyes']:.3f})")
    for role, (k, m) in counts.items():
        print(f"honest {role}: {k} of {m} refused")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--people", type=int, default=40, help="held-out LFW dev people (one image each)")
    ap.add_argument("--only", default="", help="comma-separated attack names (substring match)")
    ap.add_argument("--honest", type=int, default=0, help="count false refusals on this many bare images instead")
    args = ap.parse_args()
    if args.honest:
        _honest(args.honest)
        return
    attacks = {k: v for k, v in ATTACKS.items()
               if not args.only or any(s.strip() and s.strip() in k for s in args.only.split(","))}
    fr = datasets_root() / "face_recognition" / "test_images"
    extra = [fr / n for n in ("obama.jpg", "obama2.jpg", "obama3.jpg", "biden.jpg") if (fr / n).is_file()]
    lfw = _held_out(args.people)
    pipe = _pipe()
    recs: dict[Path, dict[str, dict[str, Any]]] = {}
    t0 = time.time()
    for i, path in enumerate(lfw + extra):
        img = load_image(path)
        face = pick_subject(pipe.detect(img), img.shape, pipe.config.pick)
        if face is None:
            continue
        box = np.asarray(face.box, float)
        recs[path] = {"bare": _record(img)}
        for name, fn in attacks.items():
            recs[path][name] = _record(fn(img, box, face.landmarks, i))
    print(f"{len(lfw)} held-out LFW dev people + {len(extra)} face_recognition images, {len(attacks)} attacks "
          f"({time.time() - t0:.0f} s)")
    pairs = [(a, b) for a in lfw for b in lfw if a.parent.name < b.parent.name and a in recs and b in recs]
    bare_acc = sum(1 for a, b in pairs if (s := _score(recs[a]["bare"], recs[b]["bare"])) is not None and s[0] >= s[1])
    print(f"bare: {sum(bool(r['bare']['covered']) for r in recs.values() if r['bare']['found'])} of "
          f"{sum(bool(r['bare']['found']) for r in recs.values())} refused; {bare_acc} of {len(pairs)} impostor "
          f"pairs accepted")
    print(f"{'attack':42s} {'found':>6s} {'refused':>8s} {'missed':>7s} {'fr imgs missed':>15s} "
          f"{'pairs scored':>13s} {'accepted':>9s} {'bare same pairs':>16s}")
    for name in attacks:
        found = [p for p in recs if recs[p][name]["found"]]
        refused = [p for p in found if recs[p][name]["covered"]]
        missed_fr = [p.name for p in found if p in extra and not recs[p][name]["covered"]]
        n = acc = acc_bare = 0
        for a, b in pairs:
            s = _score(recs[a][name], recs[b][name])
            if s is None:
                continue
            n += 1
            acc += s[0] >= s[1]
            sb = _score(recs[a]["bare"], recs[b]["bare"])
            acc_bare += sb is not None and sb[0] >= sb[1]
        print(f"{name:42s} {len(found):6d} {len(refused):8d} {len(found) - len(refused):7d} "
              f"{len(missed_fr):>15d} {n:13d} {acc:4d} ({acc / max(1, n):5.1%}) {acc_bare:4d} ({acc_bare / max(1, n):5.1%})",
              flush=True)


if __name__ == "__main__":
    main()
