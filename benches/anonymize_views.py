"""What the other views cost a photo's anonymization (anonymize/views.py: three quarter turns,
the negative, a dark photo stretched): the same photos with and without them, in one run.
Prints each photo's median time both ways, the faces covered, and the ratio.

Run: PYTHONPATH=$PWD SAFEFACE_DATASETS=../shared/datasets python3 benches/anonymize_views.py [--runs 3]
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

import numpy as np

import safeface.anonymize.image as image_mod
from safeface.anonymize import FaceFinder, anonymize_image
from safeface.imageio import load_image

ROOT = Path(os.environ.get("SAFEFACE_DATASETS", Path(__file__).resolve().parents[2] / "shared" / "datasets"))
PHOTOS = [ROOT / "face_recognition" / "test_images" / "obama.jpg", ROOT / "insightface" / "t1.jpg"]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=3)
    args = ap.parse_args()
    finder = FaceFinder("hog")
    rows = []
    for path in PHOTOS:
        pixels = load_image(path)
        anonymize_image(pixels, finder=finder)  # models loaded

        def timed() -> tuple[float, int]:
            t = time.perf_counter()
            _, report = anonymize_image(pixels, finder=finder)
            return time.perf_counter() - t, report.face_count

        with_views = [timed() for _ in range(args.runs)]
        real = image_mod.find_in_views
        image_mod.find_in_views = lambda finder, pixels: []  # type: ignore[assignment]
        try:
            without = [timed() for _ in range(args.runs)]
        finally:
            image_mod.find_in_views = real
        a, b = float(np.median([t for t, _ in with_views])), float(np.median([t for t, _ in without]))
        rows.append({"photo": path.name, "size": list(pixels.shape[:2]), "faces_with_views": with_views[0][1],
                     "faces_without": without[0][1], "with_views_s": a, "without_s": b, "ratio": a / b})
    print(json.dumps(rows, indent=2))


if __name__ == "__main__":
    main()
