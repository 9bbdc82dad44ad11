"""What searching dark video frames stretched costs, and what it covers.

640x480 MP4s of LFW dev photos: as built, squeezed to values 0-12 (an underexposed clip), and
the same with a white border (whose bright pixels lift the frame's 99th percentile); and the
first seconds of two real clips (face_recognition's stage clip, OpenCV's vtest.avi). Each is
anonymized with the default video setting with the dark view (exposure.dark_view: a dark frame
stretched, or a frame's shadows lifted, searched too) and, in the same run, without it. For
each: frames/s, the ratio, and the output frames in which HOG (upsampling 1) finds a face once
brightened (a levels step, white at 12).

Run: PYTHONPATH=$PWD SAFEFACE_DATASETS=../shared/datasets python3 benches/anonymize_dark_frames.py [--frames 60] [--runs 3]
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

import av
import numpy as np

import safeface.anonymize.detect as detect
from safeface.anonymize import FaceFinder, VideoOptions, anonymize_file
from tests.video_fixtures import build_face_video, reencode

DATASETS = Path(os.environ.get("SAFEFACE_DATASETS", Path(__file__).resolve().parents[1].parent / "shared" / "datasets"))


def brightened(frame: np.ndarray) -> np.ndarray:
    return (np.minimum(frame, 12).astype(np.uint16) * 255 // 12).astype(np.uint8)


def white_border(canvas: np.ndarray, where: tuple[int, int, int, int]) -> np.ndarray:
    canvas[:10], canvas[-10:], canvas[:, :10], canvas[:, -10:] = 255, 255, 255, 255
    return canvas


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--frames", type=int, default=60)
    ap.add_argument("--runs", type=int, default=3, help="runs of each setting, alternated; the median is printed")
    args = ap.parse_args()
    finder = FaceFinder("hog")
    photos = sorted((DATASETS / "lfw-dev" / "images").glob("*/*_0001.jpg"))[::53][:6]
    real = {"stage clip": DATASETS / "face_recognition" / "examples" / "short_hamilton_clip.mp4",
            "vtest.avi": DATASETS / "opencv" / "vtest.avi"}
    shown_view = detect.dark_view
    with tempfile.TemporaryDirectory() as tmp:
        clips: list[tuple[str, Path]] = []
        for label, dim, paint in (("bright", None, None), ("dark (0-12)", 12, None),
                                  ("dark, white border", 12, white_border)):
            src = Path(tmp) / f"{len(clips)}.mp4"
            build_face_video(src, photos, frames=args.frames, audio=False, dim=dim, paint=paint)
            clips.append((label, src))
        for label, path in real.items():
            if path.is_file():
                src = Path(tmp) / f"{len(clips)}.mp4"
                reencode(path, src, args.frames)
                clips.append((label, src))
        for label, src in clips:
            times: dict[str, list[float]] = {"with the dark view": [], "without it": []}
            for _ in range(args.runs):
                for name, view in (("with the dark view", shown_view), ("without it", lambda *a, **k: None)):
                    detect.dark_view = view  # type: ignore[assignment]
                    out = Path(tmp) / f"out-{name.split()[0]}.mp4"
                    t0 = time.perf_counter()
                    anonymize_file(src, out, video=VideoOptions(progress=False), finder=finder)
                    times[name].append(time.perf_counter() - t0)
            detect.dark_view = shown_view
            rates = {}
            for name in times:
                rates[name] = args.frames / float(np.median(times[name]))
                with av.open(str(Path(tmp) / f"out-{name.split()[0]}.mp4")) as c:
                    shown = sum(bool(finder.engine.detect(brightened(f.to_ndarray(format="rgb24")), "hog", 1))
                                for f in c.decode(video=0))
                print(f"  {label:18s} {name:19s}: {rates[name]:5.2f} frames/s (median of {args.runs}), output "
                      f"frames showing a face brightened: {shown}/{args.frames}")
            print(f"  {label}: with the dark view at {rates['with the dark view'] / rates['without it']:.2f}x "
                  "the rate without it")


if __name__ == "__main__":
    main()
