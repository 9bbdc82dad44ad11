"""How far can the masked path go with this recognizer? On LFW dev pairs, with a random synthetic
mask drawn on the probe before detection, compares the visible-region match (visible.py: the
enrolment under each synthetic mask kind, against the masked probe under the same masks) made
three ways, each step removing one source of loss:

- pipeline: the probe aligned on the landmarks the pipeline finds on the masked face (the SDK);
- oracle landmarks: the masked probe aligned on the landmarks found on the same image before the
  mask was drawn (no alignment error left);
- both bare: the probe's own bare image under the synthetic masks (no alignment error and no real
  mask left; only the hidden lower face is lost). This is the ceiling of the representation:
  what better landmarks, or a better cover of the probe's own mask, could reach at most.

Prints 10-fold accuracy and FNMR at FMR 1e-2. Measures only; writes nothing.

    python benches/masked_headroom.py --root $D [--limit N]
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
from safeface.hazmat.vision.masks import RANDOM, draw_mask  # noqa: E402
from safeface.hazmat.vision.visible import visible_region_embedding  # noqa: E402
from safeface.imageio import load_image  # noqa: E402

WAYS = ("pipeline", "oracle landmarks", "both bare")


def vectors(pipe: Pipeline, path: Path, seed: int) -> dict[str, np.ndarray] | None:
    """The enrolment's visible-region template ("enrol") and the masked probe's, made each way."""
    key, data = read_hashed(path)
    img = load_image(data)
    face = pick_subject(pipe.detect(img), img.shape, pipe.config.pick)
    if face is None:
        return None
    masked = draw_mask(img, face.landmarks, face.box, RANDOM, image_seed(key, seed))
    enrol = visible_region_embedding(pipe, img, face)
    out = {"enrol": enrol, "both bare": enrol,
           "oracle landmarks": visible_region_embedding(pipe, masked, face)}
    found = pipe.embed(masked).face
    if found is not None:
        out["pipeline"] = visible_region_embedding(pipe, masked, found, masked=True)
    return out


def scores(pairs: list, vecs: dict[Path, dict[str, np.ndarray]], way: str) -> np.ndarray:
    return np.array([float(vecs[p.image1]["enrol"] @ vecs[p.image2][way])
                     if p.image1 in vecs and way in vecs.get(p.image2, {}) else -1.0 for p in pairs])


def line(name: str, s: np.ndarray, same: np.ndarray, folds: np.ndarray) -> str:
    acc = metrics.kfold_accuracy(s, same, folds).mean
    fnmr = 1.0 - metrics.tar_at_far(s[same], s[~same], 1e-2).tmr.value
    return f"{name:48s} pairs {len(s):4d}  10-fold {acc:.2%}  FNMR@FMR1e-2 {fnmr:.2%}"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--root", type=Path, required=True, help="LFW dev (images/ and pairsDevTest.txt)")
    ap.add_argument("--limit", type=int)
    ap.add_argument("--seed", type=int, default=0)
    a = ap.parse_args()
    pairs = read_pairs(a.root / "pairsDevTest.txt", a.root, a.limit)
    pipe = Pipeline(get_engine())
    paths = list(dict.fromkeys(p for pr in pairs for p in (pr.image1, pr.image2)))
    vecs: dict[Path, dict[str, np.ndarray]] = {}
    for n, path in enumerate(paths):
        v = vectors(pipe, path, a.seed)
        if v is not None:
            vecs[path] = v
        if n % 200 == 0:
            print(f"{n}/{len(paths)}", file=sys.stderr, flush=True)
    same = np.array([p.same for p in pairs])
    folds = np.array([p.fold for p in pairs])
    for way in WAYS:
        print(line(f"probe masked, {way}", scores(pairs, vecs, way), same, folds))


if __name__ == "__main__":
    main()
