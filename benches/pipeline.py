"""LFW dev verification: safeface's pipeline next to the face_recognition library, same images,
same run. Prints accuracy (best threshold and documented threshold), failures to acquire, and
images per second with their ratio.

    python benches/pipeline.py [--limit 200] [--engine dlib|onnx]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from lfw import best_accuracy, lfw_pairs  # noqa: E402

from safeface.hazmat.vision import DEFAULT_ENGINE, DEFAULT_THRESHOLD, Pipeline, get_engine  # noqa: E402


def run_safeface(images: list[Path], engine: str) -> tuple[dict[Path, np.ndarray | None], float]:
    pipe = Pipeline(get_engine(engine))
    pipe.embed(images[0])  # load models outside the timing
    t = time.perf_counter()
    out: dict[Path, np.ndarray | None] = {}
    batch = 32
    for i in range(0, len(images), batch):
        chunk = images[i : i + batch]
        for p, r in zip(chunk, pipe.embed_many(chunk)):
            out[p] = r.embedding
    return out, time.perf_counter() - t


def run_face_recognition(images: list[Path]) -> tuple[dict[Path, np.ndarray | None], float]:
    import face_recognition as fr

    fr.face_encodings(fr.load_image_file(str(images[0])))
    t = time.perf_counter()
    out: dict[Path, np.ndarray | None] = {}
    for p in images:
        enc = fr.face_encodings(fr.load_image_file(str(p)))
        out[p] = enc[0] if enc else None  # the library's usual use: the first face, none if none found
    return out, time.perf_counter() - t


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--limit", type=int, default=None, help="use this many pairs (half same, half different)")
    ap.add_argument("--engine", default=DEFAULT_ENGINE)
    args = ap.parse_args()
    pairs = lfw_pairs(args.limit)
    images = sorted({p for a, b, _ in pairs for p in (a, b)})
    same = [y for _, _, y in pairs]
    print(f"LFW dev: {len(pairs)} pairs, {len(images)} images")

    ours, t_ours = run_safeface(images, args.engine)
    peer, t_peer = run_face_recognition(images)

    # safeface: cosine, higher = same. A pair with a face missing is decided "different".
    s_ours = [float(np.dot(ours[a], ours[b])) if ours[a] is not None and ours[b] is not None else -2.0
              for a, b, _ in pairs]
    # face_recognition: Euclidean distance, lower = same; negated so higher = same.
    s_peer = [-float(np.linalg.norm(peer[a] - peer[b])) if peer[a] is not None and peer[b] is not None else -9.0
              for a, b, _ in pairs]

    acc_o, thr_o = best_accuracy(s_ours, same)
    acc_p, thr_p = best_accuracy(s_peer, same)
    doc_o = float(np.mean([(s >= DEFAULT_THRESHOLD) == y for s, y in zip(s_ours, same)]))
    doc_p = float(np.mean([(s >= -0.6) == y for s, y in zip(s_peer, same)]))
    fta_o = sum(v is None for v in ours.values())
    fta_p = sum(v is None for v in peer.values())
    ips_o, ips_p = len(images) / t_ours, len(images) / t_peer

    print(f"{'':22}{'safeface (' + args.engine + ')':>22}{'face_recognition':>20}")
    print(f"{'accuracy, best thr':22}{acc_o:>22.4f}{acc_p:>20.4f}")
    print(f"{'best threshold':22}{thr_o:>22.4f}{-thr_p:>20.4f}")
    print(f"{'accuracy, documented':22}{doc_o:>22.4f}{doc_p:>20.4f}   (cosine {DEFAULT_THRESHOLD} / Euclidean 0.6)")
    print(f"{'no face found':22}{fta_o:>22d}{fta_p:>20d}")
    print(f"{'images per second':22}{ips_o:>22.2f}{ips_p:>20.2f}")
    print(f"ratio safeface / face_recognition: accuracy {acc_o / acc_p:.4f}, images per second {ips_o / ips_p:.2f}")


if __name__ == "__main__":
    main()
