"""Which visible-region representation serves masked faces best? Compares, on LFW dev pairs with
a random synthetic mask drawn on the probe (and, for "both", the enrolment) before detection:

- raw: the masked face's plain embedding;
- synth: the face under each synthetic mask kind, embeddings averaged (visible.py, the SDK's;
  applied to a masked face it hides its own mask under the same four, so both sides wear the
  same masks);
- centred: synth less its centre (the mean synth of the bare images, in this run, of the people
  the mask detector was trained on, mask_detect.trained_on), normalised again. Every face under
  the same four masks shares most of its embedding (that mean is about 0.95 long), which might
  be why two masked strangers score high; not adopted (see README, "Masked faces");
- box<f>: the aligned chip with everything below fraction f of its height filled grey (the
  upper face only, the same occluder on both sides);
- mean<f>: the same, filled with the mean bare chip of the run (a plausible lower face in place of
  the grey, so the network sees a whole face; no identity, the mean of every image), blended over
  12 rows. Not adopted: everyone's lower face is then the same, and the masked pairs scored lower.

A masked face is aligned as the SDK aligns it (visible.masked_landmarks).

Prints 10-fold accuracy and FNMR at FMR 1e-2 per pairing. Measures only; writes nothing.

    python benches/masked_repr.py --pairs $D/pairsDevTest.txt --root $D [--limit N]
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from safeface.evaluate import metrics  # noqa: E402
from safeface.evaluate.datasets import read_pairs  # noqa: E402
from safeface.evaluate.masked import image_seed  # noqa: E402
from safeface.hashing import read_hashed  # noqa: E402
from safeface.hazmat.vision import Pipeline, get_engine, pick_subject  # noqa: E402
from safeface.hazmat.vision.arrays import l2_normalize  # noqa: E402
from safeface.hazmat.vision.masks import MASK_KINDS, RANDOM, draw_mask  # noqa: E402
from safeface.hazmat.vision.mask_detect import trained_on  # noqa: E402
from safeface.hazmat.vision.types import Face  # noqa: E402
from safeface.hazmat.vision.visible import masked_landmarks  # noqa: E402
from safeface.imageio import load_image  # noqa: E402

BOXES = (0.5, 0.55, 0.6)
BLEND_ROWS = 12


def filled(chip: np.ndarray, f: float, fill: np.ndarray) -> np.ndarray:
    """`chip` with the rows below fraction `f` of its height replaced by `fill`'s, blended."""
    rows = np.arange(chip.shape[0])
    w = np.clip((rows - (int(f * chip.shape[0]) - BLEND_ROWS / 2)) / BLEND_ROWS, 0, 1)[:, None, None]
    return np.clip(chip * (1 - w) + fill * w, 0, 255).astype(chip.dtype)


def chips(pipe: Pipeline, img: np.ndarray, face: Face) -> np.ndarray:
    """The aligned chip, then the chip under each synthetic mask kind."""
    synth = [pipe.engine.chips(draw_mask(img, face.landmarks, face.box, k, 0), [face]) for k in MASK_KINDS]
    return np.concatenate([pipe.engine.chips(img, [face]), *synth])


def reps(pipe: Pipeline, cs: np.ndarray, mean: np.ndarray) -> dict[str, np.ndarray]:
    grey = np.full_like(mean, 128.0)
    boxed = [filled(cs[0], f, fill)[None] for fill in (grey, mean) for f in BOXES]
    vecs = pipe.embed_chips(np.concatenate([cs, *boxed]))
    out = {"raw": vecs[0], "synth": l2_normalize(vecs[1:5].mean(axis=0, keepdims=True))[0]}
    out.update({f"box{f}": vecs[5 + i] for i, f in enumerate(BOXES)})
    out.update({f"mean{f}": vecs[5 + len(BOXES) + i] for i, f in enumerate(BOXES)})
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--pairs", type=Path, required=True)
    ap.add_argument("--root", type=Path, required=True)
    ap.add_argument("--limit", type=int)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    pairs = read_pairs(args.pairs, args.root, args.limit)
    pipe = Pipeline(get_engine("onnx"))
    bare_chips: dict[Path, np.ndarray] = {}
    masked_chips: dict[Path, np.ndarray] = {}
    paths = list(dict.fromkeys([p.image1 for p in pairs] + [p.image2 for p in pairs]))
    for n, path in enumerate(paths):
        key, data = read_hashed(path)
        img = load_image(data)
        face = pick_subject(pipe.detect(img), img.shape, pipe.config.pick)
        if face is None:
            continue
        bare_chips[path] = chips(pipe, img, face)
        m = draw_mask(img, face.landmarks, face.box, RANDOM, image_seed(key, args.seed))
        found = pipe.embed(m).face
        if found is not None:
            masked_chips[path] = chips(pipe, m, replace(found, landmarks=masked_landmarks(m, found.landmarks)))
        if n % 100 == 0:
            print(f"{n}/{len(paths)}", file=sys.stderr, flush=True)
    mean = np.mean([c[0] for c in bare_chips.values()], axis=0)
    bare = {p: reps(pipe, c, mean) for p, c in bare_chips.items()}
    masked = {p: reps(pipe, c, mean) for p, c in masked_chips.items()}
    centre = np.mean([r["synth"] for p, r in bare.items() if trained_on(p.parent.name)], axis=0)
    for r in (*bare.values(), *masked.values()):
        r["centred"] = l2_normalize((r["synth"] - centre)[None, :])[0]
    same = np.array([p.same for p in pairs])
    folds = np.array([p.fold for p in pairs])

    def report(name: str, a: dict[Path, dict[str, np.ndarray]], ka: str, b: dict[Path, dict[str, np.ndarray]],
               kb: str) -> None:
        s = np.array([float(a[p.image1][ka] @ b[p.image2][kb]) if p.image1 in a and p.image2 in b else -1.0
                      for p in pairs])
        acc = metrics.kfold_accuracy(s, same, folds)
        fnmr = 1.0 - metrics.tar_at_far(s[same], s[~same], 1e-2).tmr.value
        print(f"{name:42s} 10-fold {acc.mean:.3f}  FNMR@FMR1e-2 {fnmr:.3f}")

    report("unmasked raw/raw", bare, "raw", bare, "raw")
    for ke, kp in [("raw", "raw"), ("synth", "raw"), ("synth", "synth"), ("raw", "synth"), ("centred", "centred")] + [
            (f"{k}{f}", f"{k}{f}") for k in ("box", "mean") for f in BOXES]:
        report(f"probe masked: enrol {ke} / probe {kp}", bare, ke, masked, kp)
    for k in ["raw", "synth", "centred"] + [f"{b}{f}" for b in ("box", "mean") for f in BOXES]:
        report(f"both masked: {k}/{k}", masked, k, masked, k)


if __name__ == "__main__":
    main()
