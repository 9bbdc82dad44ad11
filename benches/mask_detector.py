"""Train and measure the mask detector (safeface/hazmat/vision/mask_detect.py) on LFW dev, on faces
found the way the pipeline finds them at run time.

The people of LFW dev are split by a hash of their name (mask_detect.trained_on): the even half
trains, the odd half measures. For each image and each mask seed, a random synthetic mask is drawn
over the bare face BEFORE detection, as a camera sees it, and the pipeline's own steps then find
the face in the masked image; the detector learns from what they give:

- the bare face (the pipeline's subject of the bare image): not masked;
- the subject the plain steps (HOG, HOG x2, MMOD) find in the masked image: masked when it is the
  masked face (its box covers half of the bare face's), not masked when it is a bystander;
- when they find none, the masked step's weak candidates; when they find only a bystander, the
  weak candidates of the same search that would be picked over it (Pipeline._masked_beside):
  masked when on the masked face, not masked when elsewhere (wallpaper, bystanders, a bare
  bystander in a bare image).

Features: mask_detect.mask_features (lower-face bands against cheeks and forehead, and the
recognizer's embedding of the face). A logistic model; its threshold is set out of fold on the
training half's bare faces (people kept in one fold) at TRAIN_FALSE_RATE. With --write the weights
go to safeface/hazmat/vision/mask_detector.json. --save keeps the collected rows (features and
labels, no images) in an .npz to train again from with --features.

    PYTHONPATH=. nice .venv/bin/python benches/mask_detector.py --seeds 0,1,2 [--save rows.npz] [--write]
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
from pathlib import Path
from typing import Callable, Iterator, Optional

import numpy as np
from scipy.optimize import minimize

from safeface.evaluate.masked import image_seed
from safeface.hashing import read_hashed
from safeface.hazmat.vision import Face, Pipeline, get_engine, pick_subject
from safeface.hazmat.vision.mask_detect import _MODEL_FILE, STATS, mask_features, trained_on
from safeface.hazmat.vision.masks import draw_mask
from safeface.imageio import load_image

sys.path.insert(0, str(Path(__file__).resolve().parent))
from lfw import datasets_root  # noqa: E402

ROOT = datasets_root() / "lfw-dev" / "images"
L2 = 30.0
# The decision threshold: this share of the training half's bare faces called masked (out of
# fold). Kept low: a bare face taken down the masked path meets the visible-region template and
# fails to match, while a masked face the detector misses still goes the plain way.
TRAIN_FALSE_RATE = 0.003
# A candidate is the masked face when its box covers this much of the bare face's (of the smaller
# box), and elsewhere under NOT_FACE_OVERLAP; in between it is left out of training.
FACE_OVERLAP, NOT_FACE_OVERLAP = 0.5, 0.3
ROLES = ("bare", "subject", "candidate", "beside")


def overlap(a: tuple[float, ...], b: tuple[float, ...]) -> float:
    inter = max(0.0, min(a[2], b[2]) - max(a[0], b[0])) * max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    return inter / max(1e-6, min((a[2] - a[0]) * (a[3] - a[1]), (b[2] - b[0]) * (b[3] - b[1])))


def _label(face: Face, bare: Face) -> Optional[int]:
    ov = overlap(face.box, bare.box)
    return 1 if ov >= FACE_OVERLAP else 0 if ov < NOT_FACE_OVERLAP else None


def faces_seen(pipe: Pipeline, img: np.ndarray) -> tuple[Optional[Face], list[Face], str]:
    """What the pipeline weighs in an image (LFW images are small: no step is scaled down): (the
    plain steps' subject, the weak candidates the mask detector is asked about, "beside" or
    "candidate")."""
    for step in pipe.config.steps:
        if step[0] == "masked":
            break
        found = pipe.engine.detect(img, *step)
        if found:
            subject = pick_subject(found, img.shape, pipe.config.pick)
            return subject, pipe.masked_candidates(img, pipe.beside(img, found, *step)), "beside"
    return None, pipe.masked_candidates(img, pipe.engine.detect(img, detector="masked", upsample=1)), "candidate"


def rows(seeds: list[int], every: int) -> Iterator[tuple[np.ndarray, int, bool, str, str]]:
    """(features, label, trained_on, role, image) for every face the detector would weigh."""
    pipe = Pipeline(get_engine())
    for path in sorted(ROOT.glob("*/*.jpg"))[::every]:
        person, name = path.parent.name, f"{path.parent.name}/{path.name}"
        key, data = read_hashed(path)
        img = load_image(data)
        bare = pick_subject(pipe.detect(img), img.shape)
        if bare is None:
            continue
        train = trained_on(person)

        def row(im: np.ndarray, faces: list[Face], label_of: object, role: str) -> Iterator[tuple[np.ndarray, int, bool, str, str]]:
            vecs = pipe.embed_faces(im, faces)
            for f, v in zip(faces, vecs):
                y = label_of(f) if callable(label_of) else label_of
                if y is not None:
                    yield mask_features(im, f.landmarks, v), int(y), train, role, name

        yield from row(img, [bare], 0, "bare")
        _, weak, _ = faces_seen(pipe, img)
        # Whatever stands beside a bare subject is no masked face.
        yield from row(img, weak, lambda f: 0 if overlap(f.box, bare.box) < NOT_FACE_OVERLAP else None, "beside")
        for seed in seeds if train else seeds[:1]:
            masked = draw_mask(img, bare.landmarks, bare.box, "random", image_seed(key, seed))
            subject, weak, role = faces_seen(pipe, masked)
            if subject is not None:
                yield from row(masked, [subject], lambda f: _label(f, bare), "subject")
            yield from row(masked, weak, lambda f: _label(f, bare), role)


Rows = tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]  # x, y, trained_on, role, image


def training_rows(features: Optional[Path], save: Optional[Path],
                  collect: Callable[[], list[tuple[np.ndarray, int, bool, str, str]]]) -> Rows:
    """The rows from an .npz saved before (`features`), or collected now (and kept in `save`)."""
    if features is not None:
        with np.load(features, allow_pickle=False) as z:
            x, y, train, role, image = (z[k] for k in ("x", "y", "train", "role", "image"))
    else:
        collected = collect()
        x = np.array([r[0] for r in collected])
        y, train = np.array([r[1] for r in collected]), np.array([r[2] for r in collected])
        role, image = np.array([r[3] for r in collected]), np.array([r[4] for r in collected])
        if save is not None:
            np.savez(save, x=x, y=y, train=train, role=role, image=image)
    return x, y.astype(np.float64), train.astype(bool), role, image


def fit(x: np.ndarray, y: np.ndarray, l2: float = L2) -> tuple[np.ndarray, np.ndarray, np.ndarray, float]:
    mean, scale = x.mean(axis=0), x.std(axis=0) + 1e-6
    z = (x - mean) / scale

    def loss(wb: np.ndarray) -> tuple[float, np.ndarray]:
        w, b = wb[:-1], wb[-1]
        t = z @ w + b
        p = 1 / (1 + np.exp(-t))
        val = float((np.logaddexp(0, -t) * y + np.logaddexp(0, t) * (1 - y)).mean() + 0.5 * l2 * (w @ w) / len(y))
        return val, np.append(z.T @ (p - y) / len(y) + l2 * w / len(y), (p - y).mean())

    r = minimize(loss, np.zeros(z.shape[1] + 1), jac=True, method="L-BFGS-B", options={"maxiter": 5000})
    return mean, scale, r.x[:-1], float(r.x[-1])


def prob(model: tuple[np.ndarray, np.ndarray, np.ndarray, float], x: np.ndarray) -> np.ndarray:
    mean, scale, w, b = model
    return np.asarray(1 / (1 + np.exp(-np.clip(((x - mean) / scale) @ w + b, -60, 60))))


def out_of_fold_threshold(x: np.ndarray, y: np.ndarray, bare: np.ndarray, image: np.ndarray, folds: int = 5) -> float:
    """The threshold at which TRAIN_FALSE_RATE of bare training faces are called masked, on
    probabilities each from a model that did not train on that person (a model's own training
    faces look far more certain than new ones)."""
    fold = np.array([hashlib.sha256(str(p).split("/")[0].encode()).digest()[1] % folds for p in image])
    pr = np.zeros(len(y))
    for k in range(folds):
        pr[fold == k] = prob(fit(x[fold != k], y[fold != k]), x[fold == k])
    scores = np.sort(pr[bare])
    thr = float(scores[min(len(scores) - 1, int(np.ceil((1 - TRAIN_FALSE_RATE) * len(scores))))])
    return min(max(thr, 0.05), 0.95)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--seeds", default="0,1,2", help="mask seeds (evaluate.masked.image_seed) for the training half; "
                                                     "the measured half gets the first only")
    ap.add_argument("--every", type=int, default=1, help="use every Nth LFW dev image")
    ap.add_argument("--features", type=Path, default=None, help="an .npz of rows saved before, instead of collecting")
    ap.add_argument("--save", type=Path, default=None, help="keep the collected rows in this .npz")
    ap.add_argument("--write", action="store_true", help="write the weights to " + _MODEL_FILE.name)
    args = ap.parse_args()
    seeds = [int(s) for s in args.seeds.split(",")]
    x, y, train, role, image = training_rows(args.features, args.save, lambda: list(rows(seeds, args.every)))
    model = fit(x[train], y[train])
    thr = out_of_fold_threshold(x[train], y[train], role[train] == "bare", image[train])
    p = prob(model, x)
    held = ~train
    report: dict[str, object] = {"threshold": thr, "trained_rows": int(train.sum())}
    for name, sel in (("bare_called_masked", held & (role == "bare")),
                      ("masked_subject_found", held & (role == "subject") & (y == 1)),
                      ("masked_candidate_kept", held & np.isin(role, ("candidate", "beside")) & (y == 1)),
                      ("other_candidate_kept", held & np.isin(role, ("candidate", "beside")) & (y == 0))):
        report[name] = {"rate": float(np.mean(p[sel] >= thr)) if sel.any() else None, "of": int(sel.sum())}
    print(json.dumps(report, indent=1))
    if args.write:
        doc = {"what": "safeface mask detector: logistic model on " + str(len(STATS)) + " lower-face statistics ("
                       + ", ".join(STATS[:8]) + ", ...) and the 128 values of the dlib ResNet embedding (flip-averaged)",
               "trained_on": "LFW dev, people with sha256(name)[0] even: the bare subject, and the faces the pipeline "
                             "weighs in the image with a random synthetic mask drawn before detection (mask seeds "
                             f"{args.seeds}); {int(train.sum())} rows",
               "held_out": report,
               "threshold": round(thr, 6), "bias": round(model[3], 8),
               "mean": [round(float(v), 8) for v in model[0]], "scale": [round(float(v), 8) for v in model[1]],
               "weights": [round(float(v), 8) for v in model[2]]}
        _MODEL_FILE.write_text(json.dumps(doc, indent=1) + "\n")
        print(f"wrote {_MODEL_FILE}")


if __name__ == "__main__":
    main()
