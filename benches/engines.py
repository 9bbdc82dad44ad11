"""dlib against ONNX Runtime in the same run: embedding speed per batch size, MMOD detection speed,
the largest descriptor difference, and (with --lfw) LFW dev verification accuracy.

    PYTHONPATH=. python3 benches/engines.py [--lfw] [--threads N]

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

from safeface.imageio import load_image
from safeface.vision.dlib_engine import DlibEngine
from safeface.vision.onnx_engine import OnnxEngine

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


def lfw_chips(engine: DlibEngine, n: int) -> np.ndarray:
    chips = []
    for person in sorted(p for p in (DATASETS / "lfw-dev" / "images").iterdir() if p.is_dir()):
        for path in sorted(person.glob("*.jpg")):
            image = load_image(path)
            faces = engine.detect(image, "hog", upsample=0)
            if faces:
                chips.append(engine.chips(image, faces[:1])[0])
            if len(chips) == n:
                return np.stack(chips)
    return np.stack(chips)


def bench_embedding(dl: DlibEngine, ox: OnnxEngine) -> None:
    chips = lfw_chips(dl, 64)
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
    root = DATASETS / "lfw-dev"
    lines = (root / "pairsDevTest.txt").read_text().split("\n")
    n = int(lines[0])
    pairs: list[tuple[str, int, str, int, bool]] = []
    for line in lines[1:1 + n]:
        name, i, j = line.split()
        pairs.append((name, int(i), name, int(j), True))
    for line in lines[1 + n:1 + 2 * n]:
        a, i, b, j = line.split()
        pairs.append((a, int(i), b, int(j), False))
    if limit:
        pairs = pairs[:limit // 2] + pairs[n:n + limit // 2]
    cache: dict[tuple[str, int], np.ndarray] = {}
    misses = 0

    def embed(name: str, i: int) -> np.ndarray:
        nonlocal misses
        key = (name, i)
        if key not in cache:
            image = load_image(root / "images" / name / f"{name}_{i:04d}.jpg")
            faces = ox.detect(image, detector, upsample=1)
            if faces:
                face = max(faces, key=lambda f: f.area)
            else:  # LFW is centred: fall back to a centre box, and count the miss
                misses += 1
                h, w = image.shape[:2]
                face = ox.face_from_box(image, (w * 0.3, h * 0.3, w * 0.7, h * 0.7))
            cache[key] = ox.embed_chips(ox.chips(image, [face]))[0]
        return cache[key]

    dist = np.array([np.linalg.norm(embed(a, i) - embed(b, j)) for a, i, b, j, _ in pairs])
    same = np.array([p[4] for p in pairs])
    # 10-fold: the threshold chosen on nine folds is scored on the tenth
    order = np.random.default_rng(0).permutation(len(pairs))
    folds = np.array_split(order, 10)
    correct = 0
    for k, test in enumerate(folds):
        train = np.concatenate([f for m, f in enumerate(folds) if m != k])
        cands = np.unique(dist[train])
        accs = [((dist[train] < t) == same[train]).mean() for t in cands]
        t = cands[int(np.argmax(accs))]
        correct += int(((dist[test] < t) == same[test]).sum())
    return correct / len(pairs), misses, len(cache)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--threads", type=int, default=0, help="ONNX Runtime intra-op threads (0: its choice)")
    ap.add_argument("--lfw", action="store_true", help="also LFW dev accuracy, ONNX MMOD vs HOG detection")
    ap.add_argument("--lfw-pairs", type=int, default=0, help="use this many pairs (0: all 1000)")
    args = ap.parse_args()
    if not DATASETS.is_dir():
        print(f"the shared datasets are not at {DATASETS}; set SAFEFACE_DATASETS", file=sys.stderr)
        return 1
    os.environ.setdefault("SAFEFACE_HOME", tempfile.mkdtemp(prefix="safeface-bench-"))
    dl = DlibEngine()
    ox = OnnxEngine(intra_op_threads=args.threads or None)
    print(f"cores: {os.cpu_count()}  onnx providers: {ox.providers}  threads: {args.threads or 'default'}")
    bench_embedding(dl, ox)
    bench_detection(dl, ox)
    if args.lfw:
        for det in ("hog", "mmod"):
            t = time.perf_counter()
            acc, misses, images = lfw_accuracy(ox, det, args.lfw_pairs)
            print(f"LFW dev, onnx engine, {det:>4} detection: accuracy {acc:.4f}, no face in {misses}/{images} images "
                  f"({time.perf_counter() - t:.0f} s)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
