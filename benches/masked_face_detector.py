"""Train and measure the masked-face detector (safeface/hazmat/vision/masked_faces.py) on LFW dev.

dlib's HOG and MMOD detectors look for a nose and a mouth; under a mask they score the face low or
not at all. This trains a HOG detector of our own (dlib's structural SVM trainer, fHOG features)
on faces wearing the synthetic masks of masks.draw_mask, drawn over LFW dev images of the people
mask_detect.trained_on names (the even half by a hash of the name); the other half measures it.

Boxes are those of dlib's own HOG detector on the bare image, so the 5-point shape model places
landmarks on the new detector's boxes as it does on HOG's. Only images whose subject HOG finds at
upsample 1 train; every bare face HOG finds there is labelled (a bystander left unlabelled would
be taught as background). The masks use seeds other than the evaluation's (`--seeds`, default
3,4,5; `safeface eval --mask-seed` defaults to 0).

    PYTHONPATH=. nice .venv/bin/python benches/masked_face_detector.py [--C 5] [--write] [--no-train]

It prints, for the held-out half with the evaluation's masks (seed 0), how often the masked face
is found (a box covering half of the bare face's) and how many boxes elsewhere, at several bars;
and the same for bare images. With --write the detector goes to
safeface/hazmat/vision/masked_face_detector.svm (dlib's own serialisation: weights, no code).
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
from safeface.hazmat.vision.mask_detect import trained_on
from safeface.hazmat.vision.masked_faces import MODEL_FILE
from safeface.hazmat.vision.masks import draw_mask
from safeface.imageio import load_image

sys.path.insert(0, str(Path(__file__).resolve().parent))
from lfw import datasets_root  # noqa: E402

ROOT = datasets_root() / "lfw-dev" / "images"
BARS = (-1.0, -0.75, -0.5, -0.25, 0.0, 0.25)


def overlap(a: tuple[float, ...], b: tuple[float, ...]) -> float:
    inter = max(0.0, min(a[2], b[2]) - max(a[0], b[0])) * max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    return inter / max(1e-6, min((a[2] - a[0]) * (a[3] - a[1]), (b[2] - b[0]) * (b[3] - b[1])))


def collect(seeds: list[int], every: int) -> tuple[list[np.ndarray], list[list[tuple[float, ...]]], list[Any]]:
    """Training images (masked), their labelled boxes; and the held-out cases (masked image, bare
    image, the bare faces' boxes, the subject's box)."""
    pipe = Pipeline(get_engine())
    engine = pipe.engine
    images: list[np.ndarray] = []
    boxes: list[list[tuple[float, ...]]] = []
    held: list[Any] = []
    for path in sorted(ROOT.glob("*/*.jpg"))[::every]:
        key, data = read_hashed(path)
        img = load_image(data)
        bare = pick_subject(pipe.detect(img), img.shape)
        if bare is None:
            continue
        if not trained_on(path.parent.name):
            masked = draw_mask(img, bare.landmarks, bare.box, "random", image_seed(key, 0))
            others = [f.box for f in pipe.detect(img, count_all=True)]
            held.append((masked, img, others, bare.box))
            continue
        if bare.detector != "hog":
            continue
        faces = engine.detect(img, "hog", 1)
        if not any(overlap(f.box, bare.box) >= 0.5 for f in faces):
            continue
        for seed in seeds:
            images.append(draw_mask(img, bare.landmarks, bare.box, "random", image_seed(key, seed)))
            boxes.append([f.box for f in faces])
    return images, boxes, held


def train(images: list[np.ndarray], boxes: list[list[tuple[float, ...]]], c: float) -> Any:
    import dlib

    opts = dlib.simple_object_detector_training_options()
    opts.add_left_right_image_flips = True
    opts.C = c
    opts.num_threads = 2
    opts.epsilon = 0.01
    opts.be_verbose = False
    rects = [[dlib.rectangle(*(int(round(v)) for v in b)) for b in bs] for bs in boxes]
    trained = dlib.train_simple_object_detector(images, rects, opts)
    # Saved and read back as an fhog detector, whose run() takes a bar (the trained object's does not).
    with tempfile.TemporaryDirectory() as tmp:
        path = str(Path(tmp) / "detector.svm")
        trained.save(path)
        return dlib.fhog_object_detector(path)


def measure(detector: Any, held: list[Any], upsample: int) -> dict[str, Any]:
    found = {b: 0 for b in BARS}
    elsewhere = {b: 0 for b in BARS}
    bare_elsewhere = {b: 0 for b in BARS}
    for masked, img, others, subject in held:
        for im, hits, false in ((masked, found, elsewhere), (img, None, bare_elsewhere)):
            rects, scores, _ = detector.run(im, upsample, min(BARS))
            dets = [((r.left(), r.top(), r.right(), r.bottom()), s) for r, s in zip(rects, scores)]
            for bar in BARS:
                kept = [d for d, s in dets if s >= bar]
                if hits is not None and any(overlap(d, subject) >= 0.5 for d in kept):
                    hits[bar] += 1
                false[bar] += sum(1 for d in kept if all(overlap(d, o) < 0.3 for o in others))
    n = len(held)
    return {"images": n, "upsample": upsample,
            "masked_face_found": {b: round(found[b] / n, 4) for b in BARS},
            "boxes_elsewhere_per_masked_image": {b: round(elsewhere[b] / n, 4) for b in BARS},
            "boxes_elsewhere_per_bare_image": {b: round(bare_elsewhere[b] / n, 4) for b in BARS}}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--seeds", default="3,4,5", help="mask seeds of the training images")
    ap.add_argument("--every", type=int, default=1, help="use every Nth LFW dev image")
    ap.add_argument("--C", type=float, default=5.0, help="the SVM's C")
    ap.add_argument("--write", action="store_true", help=f"write the detector to {MODEL_FILE.name}")
    args = ap.parse_args()
    t0 = time.time()
    images, boxes, held = collect([int(s) for s in args.seeds.split(",")], args.every)
    t1 = time.time()
    detector = train(images, boxes, args.C)
    t2 = time.time()
    report = {"training_images": len(images), "C": args.C, "collect_s": round(t1 - t0), "train_s": round(t2 - t1),
              "held_out": [measure(detector, held, up) for up in (0, 1)]}
    print(json.dumps(report, indent=1))
    if args.write:
        detector.save(str(MODEL_FILE))
        print(f"wrote {MODEL_FILE}")


if __name__ == "__main__":
    main()
