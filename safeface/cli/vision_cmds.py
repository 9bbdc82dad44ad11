"""`safeface detect`, `safeface embed`, `safeface compare`: the recognition pipeline alone,
with no gallery and no storage."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

import numpy as np

from ..atomicfile import atomic_writer
from ..errors import SafeFaceError
from ..imageio import load_image
from ..hazmat.vision import DEFAULT_ENGINE, DEFAULT_THRESHOLD, ENGINES, Pipeline, PipelineConfig, cosine, get_engine
from ..workspace.paths import enclosing_workspace
from .common import EXIT_ERROR, EXIT_OK, print_json, say


def _add_engine_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--engine", choices=ENGINES, default=DEFAULT_ENGINE,
                   help=f"recognition engine (default: {DEFAULT_ENGINE})")
    p.add_argument("--detector", choices=("hog", "mmod"), default=None,
                   help="use only this detector (default: HOG, then HOG upsampled, then MMOD)")
    p.add_argument("--no-flip", action="store_true", help="do not average with the mirrored face")


def pipeline_from_args(args: argparse.Namespace) -> Pipeline:
    config = PipelineConfig(flip=not args.no_flip)
    if args.detector:
        config = config.with_(steps=((args.detector, 1),))
    return Pipeline(get_engine(args.engine), config)


def register(sub: Any) -> None:
    p = sub.add_parser("detect", help="find faces: boxes, scores and 5 landmarks")
    p.add_argument("image")
    p.add_argument("--json", action="store_true", help="print JSON")
    _add_engine_args(p)
    p.set_defaults(func=_detect)

    p = sub.add_parser("embed", help="write face embeddings of images to a .npy file")
    p.add_argument("images", nargs="+")
    p.add_argument("--out", required=True, help="output .npy: (n, d) float32, NaN rows where no face")
    _add_engine_args(p)
    p.set_defaults(func=_embed)

    p = sub.add_parser("compare", help="are two images the same person?")
    p.add_argument("image1")
    p.add_argument("image2")
    p.add_argument("--threshold", type=float, default=DEFAULT_THRESHOLD)
    p.add_argument("--json", action="store_true", help="print JSON")
    _add_engine_args(p)
    p.set_defaults(func=_compare)


def _detect(args: argparse.Namespace) -> int:
    faces = pipeline_from_args(args).detect(load_image(args.image))
    if args.json:
        print_json({"faces": [f.to_dict() for f in faces]})
    else:
        print(f"{len(faces)} face(s) in {args.image}")
        for f in faces:
            d = f.to_dict()
            print(f"  box {d['box']} score {d['score']} ({f.detector})")
    return EXIT_OK


def _embed(args: argparse.Namespace) -> int:
    # The embeddings file is written by an explicit user command: the SDK itself never stores one.
    out = Path(args.out)
    if out.suffix != ".npy":
        raise SafeFaceError(f"{out}: the output must be a .npy file.")
    ws = enclosing_workspace(out.parent)
    if ws is not None:
        # A workspace holds sealed templates only; raw embeddings beside them would be readable
        # by anyone who can read its files, without the keys.
        raise SafeFaceError(f"{out}: raw embeddings may not be written inside the workspace {ws}; "
                            "choose an --out path outside it.")
    pipe = pipeline_from_args(args)
    results = pipe.embed_many(args.images)
    dim = pipe.engine.embedding_dim
    arr = np.full((len(results), dim), np.nan, dtype=np.float32)
    missing = 0
    for i, r in enumerate(results):
        if r.embedding is None:
            missing += 1
        else:
            arr[i] = r.embedding
    with atomic_writer(out, mode=0o600) as fh:  # biometric data: the owner's alone
        np.save(fh, arr, allow_pickle=False)
    say(f"{len(results)} image(s), {len(results) - missing} embedded, {missing} with no face; wrote {out}")
    return EXIT_OK


def _compare(args: argparse.Namespace) -> int:
    pipe = pipeline_from_args(args)
    a, b = pipe.embed_many([args.image1, args.image2])
    for name, r in ((args.image1, a), (args.image2, b)):
        if r.embedding is None:
            say(f"safeface: error: no face found in {name}")
            return EXIT_ERROR
    score = cosine(a.embedding, b.embedding)  # type: ignore[arg-type]
    result = {"score": round(score, 6), "same": bool(score >= args.threshold), "threshold": args.threshold}
    if args.json:
        print_json(result)
    else:
        verdict = "same person" if result["same"] else "different people"
        print(f"score {score:.4f} (threshold {args.threshold}): {verdict}")
    return EXIT_OK
