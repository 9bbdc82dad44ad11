"""LFW dev: what each test-time option of the pipeline does to verification accuracy.

Detects each image once (HOG, then HOG upsampled, then MMOD), embeds the chosen face and its
mirror image once, and derives every variant from those: HOG only vs fallback, flip or not,
which face of several (each pick rule), centre prior for images no detector handles, and optionally dlib's
jitter. Prints one row per variant: best-threshold and 10-fold accuracy, EER, TAR@FAR, FTA.

    PYTHONPATH=. python3 benches/lfw_options.py [--root DIR] [--engine onnx|dlib] [--jitter N] [--json FILE]

Each option can also be measured alone with `safeface eval verify` and its flags.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
from tqdm import tqdm

from safeface.evaluate import metrics
from safeface.evaluate.datasets import read_pairs
from safeface.imageio import load_image
from safeface.hazmat.vision import DEFAULT_ENGINE, PICKS, Pipeline, PipelineConfig, get_engine, pick_subject
from safeface.hazmat.vision.arrays import l2_normalize as unit

DATASETS = Path(__file__).resolve().parents[1].parent / "shared" / "datasets"


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--root", type=Path, default=DATASETS / "lfw-dev")
    ap.add_argument("--engine", default=DEFAULT_ENGINE)
    ap.add_argument("--jitter", type=int, default=0, help="also dlib's own jitter with N copies (dlib engine only)")
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args()
    pairs = read_pairs(args.root / "pairsDevTest.txt", args.root)
    paths = list(dict.fromkeys(p for pr in pairs for p in (pr.image1, pr.image2)))
    engine = get_engine(args.engine)
    pipe = Pipeline(engine, PipelineConfig(flip=False))
    emb: dict[str, dict[Path, np.ndarray | None]] = {}
    step_of: dict[Path, str] = {}
    t0 = time.perf_counter()
    for path in tqdm(paths, file=sys.stderr, desc="images"):
        img = load_image(path)
        faces, step = [], ""
        for det, up in PipelineConfig().steps:
            faces = engine.detect(img, detector=det, upsample=up)
            if faces:
                step = f"{det}x{up}"
                break
        step_of[path] = step
        if not faces:
            face = pipe._center_face(img)
            chip = engine.chips(img, [face])
            e = engine.embed_chips(np.concatenate([chip, chip[:, :, ::-1]]))
            for k in PICKS:
                emb.setdefault(f"{k}/plain", {})[path] = None
                emb.setdefault(f"{k}/flip", {})[path] = None
            emb.setdefault("center/plain", {})[path] = e[0]
            emb.setdefault("center/flip", {})[path] = unit(e[0] + e[1])
            continue
        done: dict[int, np.ndarray] = {}
        for k in PICKS:
            face = pick_subject(faces, img.shape, k)
            e = done.get(id(face))
            if e is None:
                chip = engine.chips(img, [face])
                e = done[id(face)] = engine.embed_chips(np.concatenate([chip, chip[:, :, ::-1]]))
                if args.jitter > 1 and k == "largest" and engine.name == "dlib":
                    emb.setdefault("largest/jitter", {})[path] = unit(engine.raw_descriptors(chip, args.jitter))[0]  # type: ignore[attr-defined]
            emb.setdefault(f"{k}/plain", {})[path] = e[0]
            emb.setdefault(f"{k}/flip", {})[path] = unit(e[0] + e[1])
    seconds = time.perf_counter() - t0
    same = np.array([p.same for p in pairs])
    folds = np.array([p.fold for p in pairs])
    rows = []

    def evaluate(name: str, get) -> None:  # type: ignore[no-untyped-def]
        scores, fta = [], set()
        for p in pairs:
            a, b = get(p.image1), get(p.image2)
            for img, v in ((p.image1, a), (p.image2, b)):
                if v is None:
                    fta.add(img)
            scores.append(-1.0 if a is None or b is None else float(np.dot(a, b)))
        s = np.array(scores)
        g, i = s[same], s[~same]
        k = metrics.kfold_accuracy(s, same, folds)
        rows.append({"variant": name, "acc_best": metrics.best_threshold(s, same)[1], "acc_10fold": k.mean,
                     "acc_10fold_std": k.std, "eer": metrics.eer(g, i)[0],
                     "tar@1e-2": metrics.tar_at_far(g, i, 1e-2).tmr.value,
                     "tar@1e-3": metrics.tar_at_far(g, i, 1e-3).tmr.value, "fta": len(fta) / len(paths)})

    for flip in ("plain", "flip"):
        evaluate(f"HOG only, {flip}", lambda p, f=flip: emb[f"largest/{f}"][p] if step_of[p] == "hogx1" else None)
        for pick in PICKS:
            evaluate(f"fallback, {pick}, {flip}", lambda p, f=flip, k=pick: emb[f"{k}/{f}"][p])
        evaluate(f"fallback, central, {flip}, centre prior",
                 lambda p, f=flip: emb["central/" + f][p] if step_of[p] else emb.get("center/" + f, {}).get(p))
    if args.jitter > 1:
        evaluate(f"fallback, largest, dlib jitter {args.jitter}", lambda p: emb["largest/jitter"].get(p))
    steps = {s: sum(1 for v in step_of.values() if v == s) for s in sorted(set(step_of.values()))}
    print(f"{len(pairs)} pairs, {len(paths)} images, faces found by: {steps} ({seconds:.0f} s)")
    print(f"{'variant':44s} {'acc(best)':>9s} {'acc(10f)':>14s} {'EER':>7s} {'TAR@1e-2':>9s} {'TAR@1e-3':>9s} {'FTA':>7s}")
    for r in rows:
        print(f"{r['variant']:44s} {r['acc_best']:9.4f} {r['acc_10fold']:.4f}±{r['acc_10fold_std']:.4f} {r['eer']:7.4f} "
              f"{r['tar@1e-2']:9.4f} {r['tar@1e-3']:9.4f} {r['fta']:7.4f}")
    if args.json:
        args.json.write_text(json.dumps({"steps": steps, "rows": rows}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
