"""The first-faces step of tracking alone (tracking/first_faces.py: the whole-frame and rolling
photo-strength searches, and the places they keep), on the shared clips: the share of each
frame's pixels it covers, the frames it covers anything in, and its CPU a frame. Its rolling and
drawn searches are seeded, so two checkouts compare on the same frames: run it in each.

Run: PYTHONPATH=$PWD SAFEFACE_DATASETS=../shared/datasets python3 benches/tracking_first_faces.py [--frames 300]
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

import numpy as np

from safeface.anonymize import FaceFinder
from safeface.anonymize.detect import DetectionEngine, Search
from safeface.tracking.first_faces import FirstFaces

ROOT = Path(os.environ.get("SAFEFACE_DATASETS", Path(__file__).resolve().parents[2] / "shared" / "datasets"))
CLIPS = {"vtest.avi": ROOT / "opencv" / "vtest.avi",
         "stage clip": ROOT / "face_recognition" / "examples" / "short_hamilton_clip.mp4"}


def measure(path: Path, frames: int) -> tuple[int, float, int, float]:
    """Frames read, mean covered share, frames with any cover, CPU seconds a frame."""
    import av

    first = FirstFaces(FaceFinder("hog", engine=DetectionEngine()), Search(), 0.2, "blur",
                       rng=np.random.default_rng(1))
    cpu, shares = 0.0, []
    with av.open(str(path)) as clip:
        for i, frame in enumerate(clip.decode(video=0)):
            if i >= frames:
                break
            rgb = frame.to_ndarray(format="rgb24")
            start = time.process_time()
            out = first.cover(i, rgb.copy())
            cpu += time.process_time() - start
            shares.append(float((out != rgb).any(axis=2).mean()))
    n = max(len(shares), 1)
    return len(shares), float(np.mean(shares)) if shares else 0.0, sum(s > 0 for s in shares), cpu / n


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--frames", type=int, default=300, help="frames read from each clip (default 300)")
    args = parser.parse_args()
    for name, path in CLIPS.items():
        if not path.is_file():
            print(f"{name}: {path} is absent; skipped")
            continue
        n, share, covered, cpu = measure(path, args.frames)
        print(f"{name}: {n} frames, covered share {100 * share:.3f}%, frames with any cover {covered}, "
              f"CPU {cpu:.3f} s a frame")


if __name__ == "__main__":
    main()
