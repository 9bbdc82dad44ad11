"""dlib against ONNX Runtime in the same run: embedding speed per batch size, MMOD detection speed,
the largest descriptor difference, and (with --lfw) LFW dev verification accuracy.

    PYTHONPATH=. python3 benches/engines.py [--lfw | --lfw-only] [--threads N]

Numbers depend on what else the machine runs; only the ratios within one run mean much."""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Callable

import numpy as np
from PIL import Image

from safeface.evaluate.datasets import read_pairs
from safeface.evaluate.metrics import kfold_accuracy
from safeface.imageio import load_image
from safeface.hazmat.vision import pick_subject
from safeface.hazmat.vision.dlib_engine import DlibEngine
from safeface.hazmat.vision.onnx_engine import OnnxEngine
from tests.face_fixtures import lfw_face_chips

DATASETS = Path(os.environ.get("SAFEFACE_DATASETS", Path(__file__).resolve().parents[1].parent / "shared" / "datasets"))


def timed(fn: Callable[[], object], min_seconds: float = 1.0, max_runs: int = 50) -> float:
    """Median seconds per call, after one warm-up call."""
    fn()
    runs: list[float] = []
    start = time.perf_counter()
    while len(runs) < max_runs and (time.perf_counter() - start < min_seconds or len(runs) < 3):
        t = time.perf_counter()
        fn()
        runs.append(time.perf_counter() - t)
    return float(np.median(runs))


def bench_embedding(dl: DlibEngine, ox: OnnxEngine) -> None:
    chips = lfw_face_chips(dl, DATASETS / "lfw-dev" / "images", 64)
    diff = np.abs(ox.raw_descriptors(chips) - dl.raw_descriptors(chips)).max()
    print(f"descriptor max |onnx - dlib| over {len(chips)} LFW faces: {diff:.2e}")
    print(f"{'batch':>5} {'dlib ms/face':>13} {'onnx ms/face':>13} {'dlib faces/s':>13} {'onnx faces/s':>13} {'speed-up':>9}")
    for b in (1, 8, 32):
        batch = chips[:b]
        t_dl = timed(lambda: dl.raw_descriptors(batch), min_seconds=2.0, max_runs=8) / b
        t_ox = timed(lambda: ox.raw_descriptors(batch), min_seconds=2.0) / b
        print(f"{b:>5} {t_dl * 1e3:>13.1f} {t_ox * 1e3:>13.2f} {1 / t_dl:>13.1f} {1 / t_ox:>13.1f} {t_dl / t_ox:>8.1f}x")


def bench_detection(dl: DlibEngine, ox: OnnxEngine) -> None:
    t1 = load_image(DATASETS / "insightface" / "t1.jpg")
    vga = np.asarray(Image.fromarray(t1).resize((640, 480), Image.BILINEAR))
    cases = [("t1.jpg 1280x886", t1, 0), ("640x480", vga, 0), ("640x480", vga, 1)]
    print(f"{'image':>16} {'up':>3} {'dlib HOG s':>11} {'dlib MMOD s':>12} {'onnx MMOD s':>12} {'faces d/o':>10} "
          f"{'MMOD speed-up':>14} {'onnx/HOG':>9}")
    for label, image, up in cases:
        t_hog = timed(lambda: dl.detect_rects(image, "hog", up), min_seconds=1.0, max_runs=5)
        t_dm = timed(lambda: dl.detect_rects(image, "mmod", up), min_seconds=0.0, max_runs=1)
        t_om = timed(lambda: ox.detect_rects(image, "mmod", up), min_seconds=2.0, max_runs=10)
        n_d = len(dl.detect_rects(image, "mmod", up))
        n_o = len(ox.detect_rects(image, "mmod", up))
        print(f"{label:>16} {up:>3} {t_hog:>11.3f} {t_dm:>12.2f} {t_om:>12.3f} {f'{n_d}/{n_o}':>10} "
              f"{t_dm / t_om:>13.1f}x {t_om / t_hog:>8.2f}x")


def lfw_accuracy(ox: OnnxEngine, detector: str, limit: int) -> tuple[float, int, int]:
    """10-fold LFW dev accuracy with one detector at upsample 1 (no flip, the pipeline's pick
    rule); an image where it finds nothing gets a centre box and counts as a miss."""
    root = DATASETS / "lfw-dev"
    pairs = read_pairs(root / "pairsDevTest.txt", root, limit=limit or None)
    cache: dict[Path, np.ndarray] = {}
    misses = 0

    def embed(path: Path) -> np.ndarray:
        nonlocal misses
        if path not in cache:
            image = load_image(path)
            face = pick_subject(ox.detect(image, detector, upsample=1), image.shape)
            if face is None:  # LFW is centred: fall back to a centre box, and count the miss
                misses += 1
                h, w = image.shape[:2]
                face = ox.face_from_box(image, (w * 0.3, h * 0.3, w * 0.7, h * 0.7))
            cache[path] = ox.embed_chips(ox.chips(image, [face]))[0]
        return cache[path]

    scores = np.array([float(embed(p.image1) @ embed(p.image2)) for p in pairs])
    k = kfold_accuracy(scores, np.array([p.same for p in pairs]), np.array([p.fold for p in pairs]))
    return k.mean, misses, len(cache)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--threads", type=int, default=0, help="ONNX Runtime intra-op threads (0: its choice)")
    ap.add_argument("--lfw", action="store_true", help="also LFW dev accuracy, ONNX MMOD vs HOG detection")
    ap.add_argument("--lfw-pairs", type=int, default=0, help="use this many pairs (0: all 1000)")
    ap.add_argument("--lfw-only", action="store_true", help="only the LFW accuracy (implies --lfw)")
    args = ap.parse_args()
    if not DATASETS.is_dir():
        print(f"the shared datasets are not at {DATASETS}; set SAFEFACE_DATASETS", file=sys.stderr)
        return 1
    os.environ.setdefault("SAFEFACE_HOME", tempfile.mkdtemp(prefix="safeface-bench-"))
    dl = DlibEngine()
    ox = OnnxEngine(intra_op_threads=args.threads or None)
    print(f"cores: {os.cpu_count()}  onnx providers: {ox.providers}  threads: {args.threads or 'default'}")
    if not args.lfw_only:
        bench_embedding(dl, ox)
        bench_detection(dl, ox)
    if args.lfw or args.lfw_only:
        for det in ("hog", "mmod"):
            t = time.perf_counter()
            acc, misses, images = lfw_accuracy(ox, det, args.lfw_pairs)
            print(f"LFW dev, onnx engine, {det:>4} detection: accuracy {acc:.4f}, no face in {misses}/{images} images "
                  f"({time.perf_counter() - t:.0f} s)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
