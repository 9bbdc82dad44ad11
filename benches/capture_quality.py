"""Capture quality on LFW dev: how many images the pipeline matches correctly would the default
enrolment quality (PA-02) refuse, and why.

An image counts as "matched correctly" when every LFW dev pair it takes part in is decided right
at the default threshold (same person: score >= threshold; different people: below). For each
such image the default QualityThresholds are applied to the face the pipeline embeds (the other
faces found count only when they could be taken for the subject); the bench prints the share that
fails and the reasons for each half of LFW dev: the "calibration" half (people whose name's SHA-256
starts with an even byte), on whose extremes the default size, pose and focus floors were set, and
the "held-out" half, on which they were not. It prints the spread of each measure (5th/50th/95th
percentile) so a floor can be judged against real photographs, and shows that blurring, darkening
and shrinking make passing images fail with the right reason, and that a synthetic mask drawn
before detection fails "lower_face" (the mask detector's confidence above the floor's bar, PA-02's
occlusion); and, for each half, how many bare and masked faces each bar on that confidence
would refuse.

Run: PYTHONPATH=$PWD python benches/capture_quality.py [--limit N]
"""

from __future__ import annotations

import argparse
import collections
import hashlib
import os
import sys
import time
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from safeface.capture.quality import QualityThresholds, assess
from safeface.evaluate.datasets import read_pairs
from safeface.hazmat.vision import DEFAULT_THRESHOLD, Pipeline, cosine, get_engine, pick_subject
from safeface.hazmat.vision.mask_detect import mask_threshold
from safeface.hazmat.vision.masks import RANDOM, draw_mask
from safeface.imageio import load_image

DATASETS = Path(os.environ.get("SAFEFACE_DATASETS", Path(__file__).resolve().parents[1].parent / "shared" / "datasets"))


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--limit", type=int, default=None, help="pairs to use (balanced); default all 1000")
    args = ap.parse_args()
    lfw = DATASETS / "lfw-dev"
    if not (lfw / "pairsDevTest.txt").is_file():
        print(f"LFW dev is absent ({lfw}); set SAFEFACE_DATASETS", file=sys.stderr)
        return 2
    pairs = read_pairs(lfw / "pairsDevTest.txt", lfw, limit=args.limit)
    pipe = Pipeline(get_engine("onnx"))
    images = sorted({p for pair in pairs for p in (pair.image1, pair.image2)})
    t0 = time.perf_counter()
    vec: dict[Path, np.ndarray] = {}
    reports = {}
    nfaces: dict[Path, int] = {}
    subjects: dict[Path, Any] = {}
    for path in images:
        img = load_image(path)
        faces = pipe.detect(img)
        subject = pick_subject(faces, img.shape, pipe.config.pick)
        if subject is None:
            continue
        vec[path] = pipe.embed_faces(img, [subject])[0]
        nfaces[path], subjects[path] = len(faces), subject
        reports[path] = assess(img, subject.landmarks, len(faces), others=[f.landmarks for f in faces if f is not subject],
                               mask_confidence=_mask(pipe, img, subject, vec[path]))
    elapsed = time.perf_counter() - t0
    wrong: set[Path] = set()
    for p in pairs:
        if p.image1 not in vec or p.image2 not in vec:
            wrong.update((p.image1, p.image2))
            continue
        if (cosine(vec[p.image1], vec[p.image2]) >= DEFAULT_THRESHOLD) != p.same:
            wrong.update((p.image1, p.image2))
    correct = [i for i in images if i not in wrong and i in reports]
    failing = [i for i in correct if not reports[i].ok]
    print(f"LFW dev: {len(pairs)} pairs, {len(images)} images, {len(vec)} with a face; "
          f"{len(correct)} matched correctly at threshold {DEFAULT_THRESHOLD} "
          f"({elapsed / max(1, len(images)) * 1000:.0f} ms/image incl. detection and embedding)")

    def half(i: Path) -> str:
        return "calibration" if hashlib.sha256(i.parent.name.encode()).digest()[0] % 2 == 0 else "held-out"

    for label in ("calibration", "held-out", "all"):
        part = [i for i in correct if label in ("all", half(i))]
        bad = [i for i in part if not reports[i].ok]
        reasons = collections.Counter(r for i in bad for r in reports[i].reasons)
        print(f"{label:11s}: default enrolment quality refuses {len(bad)} of {len(part)} correctly matched images "
              f"({100 * len(bad) / max(1, len(part)):.1f}%)" + (f": {dict(reasons.most_common())}" if bad else ""))
    for i in failing[:12]:
        print(f"  e.g. {i.name}: {reports[i].advice} "
              + ", ".join(f"{c.name}={c.value:.3g}" for c in reports[i].components if not c.ok))
    crowded = [i for i in correct if nfaces[i] > 1]
    print(f"  {len(crowded)} of the correctly matched images show another face; "
          f"{sum('face_count' in reports[i].reasons for i in crowded)} of them one that could be taken for the subject")
    print("spread of each measure over the correctly matched images (p5 / p50 / p95):")
    names = [c.name for c in reports[correct[0]].components]
    for name in names:
        vals = np.array([next(c.value for c in reports[i].components if c.name == name) for i in correct])
        p5, p50, p95 = np.percentile(vals, [5, 50, 95])
        print(f"  {name:12s} {p5:8.3f} {p50:8.3f} {p95:8.3f}")
    # Degraded copies of passing images must fail for the right reason.
    passing = [i for i in correct if reports[i].ok][:100]
    t = QualityThresholds()
    checks = {"blur (Gaussian sigma 3)": ("sharpness", lambda a: cv2.GaussianBlur(a, (0, 0), 3.0)),
              "blur (Gaussian sigma 4)": ("sharpness", lambda a: cv2.GaussianBlur(a, (0, 0), 4.0)),
              "dark (x0.12)": ("brightness", lambda a: (a.astype(np.float32) * 0.12).astype(np.uint8)),
              "small (x0.45)": ("eye_distance", lambda a: cv2.resize(a, None, fx=0.45, fy=0.45,
                                                                      interpolation=cv2.INTER_AREA))}
    print(f"degraded copies of {len(passing)} passing images (fail with the named reason / face still found):")
    for label, (reason, fn) in checks.items():
        hit = found = 0
        for i in passing:
            img = fn(load_image(i))
            faces = pipe.detect(img)
            subject = pick_subject(faces, img.shape, pipe.config.pick)
            if subject is None:
                continue
            found += 1
            hit += reason in assess(img, subject.landmarks, len(faces), t,
                                   [f.landmarks for f in faces if f is not subject]).reasons
        print(f"  {label:24s} {hit}/{found} refused for {reason}")
    # Masked copies of every correctly matched image: a random synthetic mask drawn where the bare
    # face is, then searched as a camera's frame would be (seeds other than the evaluation's).
    masked: dict[Path, float] = {}
    for n, i in enumerate(correct):
        bare = subjects[i]
        m = draw_mask(load_image(i), bare.landmarks, bare.box, RANDOM, 100 + n)
        rm = pipe.embed(m)
        masked[i] = 0.0 if rm.face is None or rm.embedding is None else _mask(pipe, m, rm.face, rm.embedding)
    print(f"lower_face: refused at each bar on the mask confidence (default {t.max_mask_confidence:g}; the mask "
          f"detector's own decision at {mask_threshold():.3f}), bare images / masked copies (no face found: 0):")
    for label in ("calibration", "held-out"):
        part = [i for i in correct if half(i) == label and i in masked]
        b = np.array([next(c.value for c in reports[i].components if c.name == "lower_face") for i in part])
        mk = np.array([masked[i] for i in part])
        cells = ", ".join(f"{bar:.2f}: {np.sum(b > bar)} / {np.mean(mk > bar):.1%}"
                          for bar in (mask_threshold(), 0.6, 0.8, 0.9, 0.95))
        print(f"  {label:11s} ({len(part)} images) {cells}")
    return 0


def _mask(pipe: Pipeline, img: np.ndarray, face: Any, vec: np.ndarray) -> float:
    check = pipe.mask_check(img, face, vec)
    assert check is not None
    return float(check.confidence)


if __name__ == "__main__":
    sys.exit(main())
