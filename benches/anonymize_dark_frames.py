"""What searching dark video frames stretched costs, and what it covers.

Two 640x480 MP4s of LFW dev photos, one as built and one squeezed to values 0-12 (an
underexposed clip), anonymized with the default video setting with the dark view (frames whose
99th percentile is under exposure.DARK_P99 also searched stretched) and, in the same run,
without it (DARK_P99 set to 0). For each: frames/s, the ratio, and the output frames in which
HOG (upsampling 1) finds a face once the frame is brightened (stretched from its minimum to its
99th percentile).

Run: PYTHONPATH=$PWD SAFEFACE_DATASETS=../shared/datasets python3 benches/anonymize_dark_frames.py [--frames 60]
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

import av
import numpy as np

import safeface.anonymize.exposure as exposure
from safeface.anonymize import FaceFinder, VideoOptions, anonymize_file
from tests.video_fixtures import build_face_video

DATASETS = Path(os.environ.get("SAFEFACE_DATASETS", Path(__file__).resolve().parents[1].parent / "shared" / "datasets"))


def brightened(frame: np.ndarray) -> np.ndarray:
    lo, top = float(frame.min()), float(np.percentile(frame, 99))
    return np.clip((frame.astype(np.float32) - lo) * (255.0 / max(top - lo, 1.0)), 0, 255).astype(np.uint8)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--frames", type=int, default=60)
    ap.add_argument("--runs", type=int, default=3, help="runs of each setting, alternated; the median is printed")
    args = ap.parse_args()
    finder = FaceFinder("hog")
    photos = sorted((DATASETS / "lfw-dev" / "images").glob("*/*_0001.jpg"))[::53][:6]
    bar = exposure.DARK_P99
    with tempfile.TemporaryDirectory() as tmp:
        for label, dim in (("bright", None), ("dark (0-12)", 12)):
            src = Path(tmp) / "in.mp4"
            build_face_video(src, photos, frames=args.frames, audio=False, dim=dim)
            times: dict[str, list[float]] = {"with the dark view": [], "without it": []}
            for _ in range(args.runs):
                for name, dark_bar in (("with the dark view", bar), ("without it", 0)):
                    exposure.DARK_P99 = dark_bar
                    out = Path(tmp) / f"out-{dark_bar}.mp4"
                    t0 = time.perf_counter()
                    anonymize_file(src, out, video=VideoOptions(progress=False), finder=finder)
                    times[name].append(time.perf_counter() - t0)
            rates = {}
            for name, dark_bar in (("with the dark view", bar), ("without it", 0)):
                rates[name] = args.frames / float(np.median(times[name]))
                with av.open(str(Path(tmp) / f"out-{dark_bar}.mp4")) as c:
                    shown = sum(bool(finder.engine.detect(brightened(f.to_ndarray(format="rgb24")), "hog", 1))
                                for f in c.decode(video=0))
                print(f"  {label:12s} {name:19s}: {rates[name]:5.2f} frames/s (median of {args.runs}), output "
                      f"frames showing a face brightened: {shown}/{args.frames}")
            exposure.DARK_P99 = bar
            print(f"  {label}: with the dark view at {rates['with the dark view'] / rates['without it']:.2f}x "
                  "the rate without it")


if __name__ == "__main__":
    main()
