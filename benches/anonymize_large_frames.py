"""What searching large frames for faces as small as a 720p frame's costs, and what it covers.

A 1920x1080 (or --size WxH) MP4 of LFW dev photos shrunk so their faces are about 70 px wide,
anonymized with the video search's copy sized by the smallest face (`min_face`, 80 px by
default) and, in the same run, with the old fixed copy (640 px on the long side, which at
1080p searched for faces from about 120 px). For each: frames/s, the ratio between them, and
the output frames in which HOG on the full frame (upsampling 1, faces from about 40 px) still
finds a face. The same for --fast (min_face 160 against the fixed 640 px copy).

Run: PYTHONPATH=$PWD SAFEFACE_DATASETS=../shared/datasets python3 benches/anonymize_large_frames.py [--frames 30]
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from dataclasses import replace
from pathlib import Path

from PIL import Image

from safeface.anonymize import FaceFinder, Search, VideoOptions, anonymize_file, detectable_frames
from tests.video_fixtures import build_face_video

DATASETS = Path(os.environ.get("SAFEFACE_DATASETS", Path(__file__).resolve().parents[1].parent / "shared" / "datasets"))
# A min_face so large that only max_side sizes the copy: the search before min_face existed.
FIXED_COPY = 1e9


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--frames", type=int, default=30)
    ap.add_argument("--size", default="1920x1080")
    ap.add_argument("--photo", type=int, default=160, help="side the LFW photos are shrunk to (px)")
    args = ap.parse_args()
    w, h = (int(v) for v in args.size.split("x"))
    finder = FaceFinder("hog")
    strong = Search(max_side=1 << 16, upsample=1)
    with tempfile.TemporaryDirectory() as tmp:
        photos = []
        for i, path in enumerate(sorted((DATASETS / "lfw-dev" / "images").glob("*/*_0001.jpg"))[::97][:5]):
            photos.append(Path(tmp) / f"face{i}.png")
            Image.open(path).convert("RGB").resize((args.photo, args.photo)).save(photos[-1])
        src = Path(tmp) / "in.mp4"
        build_face_video(src, photos, frames=args.frames, size=(w, h), per_photo=6, audio=False)
        shown_in = len(detectable_frames(src, strong, finder))
        print(f"{args.frames} frames {w}x{h}, LFW photos at {args.photo} px; input frames with a face HOG "
              f"finds at full size: {shown_in}")
        for label, base in (("default", VideoOptions(progress=False)), ("--fast", VideoOptions.fast(progress=False))):
            rates = {}
            for name, opts in (("sized by min_face", base), ("fixed 640 px copy", replace(base, min_face=FIXED_COPY))):
                out = Path(tmp) / "out.mp4"
                t0 = time.perf_counter()
                report = anonymize_file(src, out, video=opts, finder=finder)
                rates[name] = args.frames / (time.perf_counter() - t0)
                left = len(detectable_frames(out, strong, finder))
                print(f"  {label:8s} {name:18s} smallest face {report.smallest_face:5.0f} px: "
                      f"{rates[name]:5.2f} frames/s, output frames still showing a face: {left}/{args.frames}")
            print(f"  {label}: sized by min_face runs at {rates['sized by min_face'] / rates['fixed 640 px copy']:.2f}x "
                  f"the fixed copy's rate")


if __name__ == "__main__":
    main()
