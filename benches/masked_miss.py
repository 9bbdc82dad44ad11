"""How often the anonymizer's detectors miss a masked face (LFW dev, a synthetic mask drawn
before detection): a face is missed when no cover overlaps its bare box by IoU 0.3 or more. Also
what the masked search costs on bare images: covers beyond those HOG and MMOD find there
(spare covers, an upper bound: some are real background faces the two miss).

    PYTHONPATH=. nice .venv/bin/python benches/masked_miss.py [--every 8]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from safeface.anonymize.detect import FaceFinder, iou
from safeface.hazmat.vision import Pipeline, get_engine, pick_subject
from safeface.hazmat.vision.dlib_engine import DlibEngine
from safeface.hazmat.vision.masks import draw_mask
from safeface.imageio import load_image

sys.path.insert(0, str(Path(__file__).resolve().parent))
from lfw import datasets_root  # noqa: E402

ROOT = datasets_root() / "lfw-dev" / "images"


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--every", type=int, default=8)
    args = ap.parse_args()
    pipe = Pipeline(get_engine("onnx"))
    dlib = DlibEngine()
    finders = {"hog alone (the old default)": FaceFinder("hog", engine=dlib, masked=False),
               "mmod": FaceFinder("mmod", engine=pipe.engine, masked=False),
               "default (hog + masked search)": FaceFinder("hog", engine=dlib)}
    n, missed = 0, {k: 0 for k in finders}
    spare = 0
    for i, path in enumerate(sorted(ROOT.glob("*/*.jpg"))[::args.every]):
        img = load_image(path)
        face = pick_subject(pipe.detect(img), img.shape)
        if face is None:
            continue
        n += 1
        masked = draw_mask(img, face.landmarks, face.box, "random", seed=i)
        for k, finder in finders.items():
            missed[k] += not any(iou(b, face.box) >= 0.3 for b in finder.find(masked))
        plain = finders["hog alone (the old default)"].find(img) + finders["mmod"].find(img)
        spare += sum(1 for b in finders["default (hog + masked search)"].find(img)
                     if not any(iou(b, p) > 0.3 for p in plain))
    for k, m in missed.items():
        print(f"{k:30s} missed {m}/{n} = {m / n:.3f}")
    print(f"{'spare covers on bare images':30s} {spare}/{n} images = {spare / n:.3f} per image")


if __name__ == "__main__":
    main()
