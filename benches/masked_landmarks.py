"""Train and measure the masked-face shape model (safeface/hazmat/vision/masked_shape.py) on LFW dev.

Every image of LFW dev whose subject the pipeline finds bare gets a random synthetic mask drawn
before detection, as in the evaluation; the pipeline then finds the masked face as the SDK does
and, where the mask detector calls it masked, gives its first landmarks (dlib's 5-point model).
The answer taught is the bare face's 5-point landmarks: the mask is drawn on the same pixels, so
they are where the masked face's landmarks belong. Images of the people mask_detect.trained_on
names train, each under masks of seeds `--seeds` (default 3,4,5); the other half, under the
evaluation's masks (seed 0), measures. Errors are in eye distances (of the bare face).

    PYTHONPATH=. nice .venv/bin/python benches/masked_landmarks.py [--every N] [--write]

With --write the model goes to safeface/hazmat/vision/masked_landmarks.dat (dlib's own
serialisation: regression trees, no code); its SHA-256 then goes into models/manifest.json.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from safeface.evaluate.masked import image_seed
from safeface.hashing import read_hashed
from safeface.hazmat.vision import Pipeline, get_engine, pick_subject
from safeface.hazmat.vision.mask_detect import check_mask, trained_on
from safeface.hazmat.vision.masked_shape import MODEL_FILE, frame_box
from safeface.hazmat.vision.masks import FaceFrame, draw_mask
from safeface.imageio import load_image

sys.path.insert(0, str(Path(__file__).resolve().parent))
from lfw import datasets_root  # noqa: E402

ROOT = datasets_root() / "lfw-dev" / "images"


def collect(seeds: list[int], every: int) -> tuple[list[tuple[np.ndarray, np.ndarray, np.ndarray]], list[Any]]:
    """(masked image, first landmarks, bare landmarks) of the training half and of the held-out
    half."""
    pipe = Pipeline(get_engine())
    train: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = []
    held: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = []
    for path in sorted(ROOT.glob("*/*.jpg"))[::every]:
        key, data = read_hashed(path)
        img = load_image(data)
        bare = pick_subject(pipe.detect(img), img.shape, pipe.config.pick)
        if bare is None:
            continue
        learn = trained_on(path.parent.name)
        for seed in seeds if learn else [0]:
            masked = draw_mask(img, bare.landmarks, bare.box, "random", image_seed(key, seed))
            r = pipe.embed(masked)
            if r.face is None or r.embedding is None or not check_mask(masked, r.face.landmarks, r.embedding).masked:
                continue
            (train if learn else held).append((masked, np.asarray(r.face.landmarks, np.float64),
                                               np.asarray(bare.landmarks, np.float64)))
    return train, held


def train_model(cases: list[tuple[np.ndarray, np.ndarray, np.ndarray]], trees: int, nu: float) -> Any:
    import dlib

    opts = dlib.shape_predictor_training_options()
    opts.num_threads = 2
    opts.tree_depth = 4
    opts.cascade_depth = 10
    opts.num_trees_per_cascade_level = trees
    opts.nu = nu
    opts.oversampling_amount = 20
    opts.feature_pool_size = 400
    opts.be_verbose = False
    objects = [[dlib.full_object_detection(dlib.rectangle(*frame_box(first)),
                                           [dlib.point(int(round(x)), int(round(y))) for x, y in answer])]
               for _, first, answer in cases]
    return dlib.train_shape_predictor([np.ascontiguousarray(img) for img, _, _ in cases], objects, opts)


def errors(model: Any, cases: list[tuple[np.ndarray, np.ndarray, np.ndarray]]) -> dict[str, Any]:
    """Eye and nose errors of the 5-point model's landmarks and of the model's, in eye distances."""
    import dlib

    out: dict[str, list[tuple[float, float]]] = {"five_point": [], "masked_model": []}
    for img, first, answer in cases:
        shape = model(img, dlib.rectangle(*frame_box(first)))
        mine = np.array([[shape.part(i).x, shape.part(i).y] for i in range(5)], np.float64)
        unit = FaceFrame.from_landmarks(answer).unit
        for name, pts in (("five_point", first), ("masked_model", mine)):
            d = np.linalg.norm(pts - answer, axis=1) / unit
            out[name].append((float(d[:4].mean()), float(d[4])))

    def summary(v: list[tuple[float, float]]) -> dict[str, float]:
        a = np.array(v)
        return {"eyes_mean": round(float(a[:, 0].mean()), 4), "eyes_median": round(float(np.median(a[:, 0])), 4),
                "eyes_p90": round(float(np.percentile(a[:, 0], 90)), 4), "nose_mean": round(float(a[:, 1].mean()), 4)}

    return {"faces": len(cases), **{k: summary(v) for k, v in out.items()}}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--seeds", default="3,4,5", help="mask seeds of the training images")
    ap.add_argument("--every", type=int, default=1, help="use every Nth LFW dev image")
    ap.add_argument("--trees", type=int, default=300, help="regression trees per cascade level")
    ap.add_argument("--nu", type=float, default=0.1, help="the trees' shrinkage")
    ap.add_argument("--write", action="store_true", help=f"write the model to {MODEL_FILE.name}")
    args = ap.parse_args()
    t0 = time.time()
    train, held = collect([int(s) for s in args.seeds.split(",")], args.every)
    t1 = time.time()
    model = train_model(train, args.trees, args.nu)
    t2 = time.time()
    print(json.dumps({"collect_s": round(t1 - t0), "train_s": round(t2 - t1), "trees": args.trees, "nu": args.nu,
                      "training": errors(model, train), "held_out": errors(model, held)}, indent=1))
    if args.write:
        # Saved through a temporary name: a half-written model never sits where the SDK loads it.
        with tempfile.NamedTemporaryFile(dir=MODEL_FILE.parent, suffix=".tmp", delete=False) as tmp:
            pass
        model.save(tmp.name)
        Path(tmp.name).replace(MODEL_FILE)
        print(f"wrote {MODEL_FILE}")


if __name__ == "__main__":
    main()
