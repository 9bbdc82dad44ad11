"""Anonymization benchmark.

1. Video: a 640x480, 30 fps MP4 built from LFW faces pasted on a canvas, anonymized with the
   fast setting (HOG, no upsampling, every other frame) and the default one, each with the
   default search threads (one per core) and with one, and each without the masked-face search
   (--no-masked); frames/s and the ratio to real time, against a plain decode+encode of the
   same file (the ceiling) measured in the same run, and what the masked search costs.
2. Images: every LFW dev image and t1.jpg anonymized (default: blur, HOG with upsampling); the
   fraction of faces the detector finds again (HOG upsample 1 and 2) and the fraction whose
   recognizer score against the original (same aligned region) is below the threshold.

Run: PYTHONPATH=$PWD python3 benches/anonymize.py [--frames 300] [--step 1] [--mode blur]
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import av
import numpy as np

import safeface.hazmat.vision as vision
from safeface.anonymize import FaceFinder, VideoOptions, anonymize_file, anonymize_image
from safeface.anonymize.detect import iou
from safeface.imageio import load_image
from safeface.hazmat.vision.dlib_engine import DlibEngine
from tests.video_fixtures import build_face_video, reencode

DATASETS = Path(os.environ.get("SAFEFACE_DATASETS", Path(__file__).resolve().parents[1].parent / "shared" / "datasets"))
THRESHOLD = float(getattr(vision, "DEFAULT_THRESHOLD", 0.92))


def load() -> str:
    return " ".join(open("/proc/loadavg").read().split()[:3]) if Path("/proc/loadavg").exists() else "n/a"


def timed(fn: object) -> tuple[float, float]:
    w0, c0 = time.perf_counter(), time.process_time()
    fn()  # type: ignore[operator]
    return time.perf_counter() - w0, time.process_time() - c0


def plain_transcode(src: Path, dst: Path) -> None:
    reencode(src, dst, options={"preset": "veryfast", "crf": "20"})


def bench_video(frames: int, finder: FaceFinder) -> None:
    photos = sorted((DATASETS / "lfw-dev" / "images").glob("*/*_0001.jpg"))[::25][:20]
    with tempfile.TemporaryDirectory() as tmp:
        src = Path(tmp) / "faces.mp4"
        build_face_video(src, photos, frames=frames, per_photo=15)
        print(f"video: {frames} frames 640x480 @30 fps ({frames / 30:.1f} s), load before: {load()}")
        one = {"threads": 1, "progress": False}
        bare = {"masked": False}
        rows = [("plain decode+encode (ceiling)", lambda: plain_transcode(src, Path(tmp) / "plain.mp4")),
                ("anonymize --fast (HOG up0, every 2nd frame, masked)",
                 lambda: anonymize_file(src, Path(tmp) / "fast.mp4", video=VideoOptions.fast(progress=False), finder=finder)),
                ("  the same, 1 search thread",
                 lambda: anonymize_file(src, Path(tmp) / "fast1.mp4", video=replace(VideoOptions.fast(), **one), finder=finder)),
                ("anonymize --fast --no-masked",
                 lambda: anonymize_file(src, Path(tmp) / "fastbare.mp4",
                                        video=replace(VideoOptions.fast(progress=False), **bare), finder=finder)),
                ("anonymize default (HOG up1, every frame, masked)",
                 lambda: anonymize_file(src, Path(tmp) / "full.mp4", video=VideoOptions(progress=False), finder=finder)),
                ("  the same, 1 search thread",
                 lambda: anonymize_file(src, Path(tmp) / "full1.mp4", video=VideoOptions(**one), finder=finder)),
                ("anonymize --no-masked",
                 lambda: anonymize_file(src, Path(tmp) / "fullbare.mp4", video=VideoOptions(progress=False, **bare),
                                        finder=finder))]
        base = None
        rate = {}
        for name, fn in rows:
            wall, cpu = timed(fn)
            fps, cfps = frames / wall, frames / cpu
            base = base or fps
            rate[name] = fps
            print(f"  {name:52s} {fps:7.1f} frames/s wall ({fps / 30:5.2f}x real time), "
                  f"{cfps:7.1f} frames/s per CPU-second ({cfps / 30:5.2f}x), {fps / base:5.2f}x the ceiling")
        print(f"  load after: {load()} (2 cores shared with other work)")
        names = [r[0] for r in rows]
        print(f"  the masked search's cost: default {rate[names[4]] / rate[names[6]]:.2f}x the rate of --no-masked, "
              f"--fast {rate[names[1]] / rate[names[3]]:.2f}x the rate of --fast --no-masked")
        for name in ("fast", "full"):
            with av.open(str(Path(tmp) / f"{name}.mp4")) as c:
                frames_out = [f.to_ndarray(format="rgb24") for f in c.decode(video=0)]
            shown = sum(bool(finder.engine.detect(f, "hog", 1)) for f in frames_out)
            print(f"  {name}: {len(frames_out)} frames out, frames where HOG up1 still finds a face: {shown}")


def bench_images(step: int, mode: str, finder: FaceFinder, engine: DlibEngine) -> None:
    paths = sorted((DATASETS / "lfw-dev" / "images").glob("*/*.jpg"))[::step] + [DATASETS / "insightface" / "t1.jpg"]
    faces_total = no_redetect = below = images_with_any = above_blank = 0
    # The recognizer's score for a face against a blank grey square: what "no face at all" scores.
    blank = engine.embed_chips(np.full((1, 150, 150, 3), 128, np.uint8))[0]
    worst = 0.0
    scores: list[float] = []
    t0 = time.perf_counter()
    print(f"images: {len(paths)} ({'all' if step == 1 else f'every {step}th'} LFW dev + t1.jpg), mode {mode}, "
          f"threshold {THRESHOLD}, load before: {load()}")
    for i, path in enumerate(paths):
        original = load_image(path)
        faces = engine.detect(original, "hog", 1)
        covered, _ = anonymize_image(original, mode=mode, finder=finder)
        found = engine.detect(covered, "hog", 1) + engine.detect(covered, "hog", 2)
        images_with_any += bool(found)
        if not faces:
            continue
        a = engine.embed_chips(engine.chips(original, faces))
        b = engine.embed_chips(engine.chips(covered, faces))
        s = (a * b).sum(axis=1)
        scores += [float(x) for x in s]
        blank_scores = a @ blank
        for face, score, bscore in zip(faces, s, blank_scores):
            faces_total += 1
            # A cover scoring at or above threshold and above what a blank square scores.
            above_blank += bool(score >= THRESHOLD and score > bscore)
            no_redetect += not any(iou(face.box, f.box) > 0.1 for f in found)
            below += bool(score < THRESHOLD)
            worst = max(worst, float(score))
        if (i + 1) % 200 == 0:
            print(f"  {i + 1}/{len(paths)} images, {time.perf_counter() - t0:.0f} s", file=sys.stderr, flush=True)
    arr = np.array(scores)
    print(f"  faces (HOG up1 on the originals): {faces_total}")
    print(f"  no re-detection (HOG up1+up2): {no_redetect / faces_total:.4%}; images with any detection after: {images_with_any}")
    print(f"  recognizer score below {THRESHOLD}: {below / faces_total:.4%}  (max {worst:.3f}, p99 {np.quantile(arr, 0.99):.3f}, mean {arr.mean():.3f})")
    print(f"  at or above threshold: {faces_total - below}, of which scoring higher than a blank grey square "
          f"does against the same original: {above_blank}")
    print(f"  {time.perf_counter() - t0:.0f} s, load after: {load()}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--frames", type=int, default=300)
    ap.add_argument("--step", type=int, default=1, help="use every STEP-th LFW image (1: all 1,549)")
    ap.add_argument("--mode", default="blur")
    ap.add_argument("--skip-video", action="store_true")
    ap.add_argument("--skip-images", action="store_true")
    args = ap.parse_args()
    if not (DATASETS / "lfw-dev" / "images").is_dir():
        sys.exit(f"datasets not found under {DATASETS}; set SAFEFACE_DATASETS")
    engine = DlibEngine()
    finder = FaceFinder("hog", engine=engine)
    if not args.skip_video:
        bench_video(args.frames, finder)
    if not args.skip_images:
        bench_images(args.step, args.mode, finder, engine)


if __name__ == "__main__":
    main()
