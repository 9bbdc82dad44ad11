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
  upper face only, the same occluder on both sides).

Prints 10-fold accuracy and FNMR at FMR 1e-2 per pairing. Measures only; writes nothing.

    python benches/masked_repr.py --pairs $D/pairsDevTest.txt --root $D [--limit N]
"""

from __future__ import annotations

import argparse
import sys
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
from safeface.imageio import load_image  # noqa: E402

BOXES = (0.5, 0.55, 0.6)


def reps(pipe: Pipeline, img: np.ndarray, face: object) -> dict[str, np.ndarray]:
    chip = pipe.engine.chips(img, [face])
    synth = np.concatenate([pipe.engine.chips(draw_mask(img, face.landmarks, face.box, k, 0), [face])  # type: ignore[attr-defined]
                            for k in MASK_KINDS])
    boxed = []
    for f in BOXES:
        c = chip.copy()
        c[:, int(f * c.shape[1]):] = 128
        boxed.append(c)
    vecs = pipe.embed_chips(np.concatenate([chip, synth, *boxed]))
    out = {"raw": vecs[0], "synth": l2_normalize(vecs[1:5].mean(axis=0, keepdims=True))[0]}
    out.update({f"box{f}": vecs[5 + i] for i, f in enumerate(BOXES)})
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
    bare: dict[Path, dict[str, np.ndarray]] = {}
    masked: dict[Path, dict[str, np.ndarray]] = {}
    paths = list(dict.fromkeys([p.image1 for p in pairs] + [p.image2 for p in pairs]))
    for n, path in enumerate(paths):
        key, data = read_hashed(path)
        img = load_image(data)
        face = pick_subject(pipe.detect(img), img.shape, pipe.config.pick)
        if face is None:
            continue
        bare[path] = reps(pipe, img, face)
        m = draw_mask(img, face.landmarks, face.box, RANDOM, image_seed(key, args.seed))
        r = pipe.embed(m)
        if r.face is not None:
            masked[path] = reps(pipe, m, r.face)
        if n % 100 == 0:
            print(f"{n}/{len(paths)}", file=sys.stderr, flush=True)
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
            (f"box{f}", f"box{f}") for f in BOXES]:
        report(f"probe masked: enrol {ke} / probe {kp}", bare, ke, masked, kp)
    for k in ["raw", "synth", "centred"] + [f"box{f}" for f in BOXES]:
        report(f"both masked: {k}/{k}", masked, k, masked, k)


if __name__ == "__main__":
    main()
