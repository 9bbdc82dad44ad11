"""How often the anonymizer's detectors miss a masked face (LFW dev, a synthetic mask drawn
before detection): a face is missed when no cover overlaps its bare box by IoU 0.3 or more.

    PYTHONPATH=. nice .venv/bin/python benches/masked_miss.py [--every 8]
"""

from __future__ import annotations

import argparse
from pathlib import Path

from safeface.anonymize.detect import FaceFinder, iou, merge_boxes
from safeface.hazmat.vision import Pipeline, get_engine, pick_subject
from safeface.hazmat.vision.masks import draw_mask
from safeface.imageio import load_image

ROOT = Path(__file__).resolve().parents[1].parent / "shared" / "datasets" / "lfw-dev" / "images"


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--every", type=int, default=8)
    args = ap.parse_args()
    pipe = Pipeline(get_engine("onnx"))
    hog, mmod = FaceFinder("hog"), FaceFinder("mmod", engine=pipe.engine)
    n, missed = 0, {"hog (default)": 0, "mmod": 0, "hog + masked search": 0}
    for i, path in enumerate(sorted(ROOT.glob("*/*.jpg"))[::args.every]):
        img = load_image(path)
        face = pick_subject(pipe.detect(img), img.shape)
        if face is None:
            continue
        n += 1
        masked = draw_mask(img, face.landmarks, face.box, "random", seed=i)
        found = {"hog (default)": hog.find(masked), "mmod": mmod.find(masked)}
        extra = [(float(r.left()), float(r.top()), float(r.right()), float(r.bottom()))
                 for r, _, _ in pipe.engine.masked_rects(masked, 1)]  # type: ignore[attr-defined]
        found["hog + masked search"] = merge_boxes(list(found["hog (default)"]) + extra)
        for k, boxes in found.items():
            missed[k] += not any(iou(b, face.box) >= 0.3 for b in boxes)
    for k, m in missed.items():
        print(f"{k:22s} missed {m}/{n} = {m / n:.3f}")


if __name__ == "__main__":
    main()
