"""`safeface demo`: the main job on the embedded default models and the sample images."""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from ..demo import sample_image_dir
from ..imageio import load_image
from ..hazmat.index import ExactIndex
from ..hazmat.vision import DEFAULT_ENGINE, DEFAULT_THRESHOLD, ENGINES, Pipeline, cosine, euclidean_equivalent, get_engine
from .common import EXIT_OK


def register(sub: Any) -> None:
    p = sub.add_parser("demo", help="detect, embed and match on the sample images")
    p.add_argument("--engine", choices=ENGINES, default=DEFAULT_ENGINE)
    p.set_defaults(func=_demo)


def _demo(args: argparse.Namespace) -> int:
    folder = sample_image_dir()
    print(f"safeface demo: engine {args.engine}, sample images from {folder}")
    pipe = Pipeline(get_engine(args.engine))

    group = load_image(folder / "t1.jpg")
    t = time.perf_counter()
    faces = pipe.detect(group)
    print(f"1. detect: {len(faces)} faces in t1.jpg ({group.shape[1]}x{group.shape[0]}) "
          f"in {time.perf_counter() - t:.2f} s")
    for i, f in enumerate(faces):
        print(f"   face {i}: box {[int(v) for v in f.box]}, score {f.score:.2f}")

    t = time.perf_counter()
    vecs = pipe.embed_faces(group, faces)
    print(f"2. embed: {len(vecs)} x {vecs.shape[1]}-d unit vectors in {time.perf_counter() - t:.2f} s "
          "(held in memory only)")

    index = ExactIndex(vecs.shape[1])
    index.add(np.arange(len(vecs)), vecs)
    hanks = load_image(folder / "Tom_Hanks_54745.png")
    probe = pipe.embed(hanks)
    recaptured = pipe.embed(_recapture(hanks))
    if probe.embedding is None or recaptured.embedding is None:
        print("   no face found in Tom_Hanks_54745.png")
        return EXIT_OK
    print(f"3. match (cosine; same person at >= {DEFAULT_THRESHOLD}, "
          f"about {euclidean_equivalent(DEFAULT_THRESHOLD):.2f} on dlib's Euclidean scale):")
    same = cosine(probe.embedding, recaptured.embedding)
    print(f"   Tom Hanks vs a re-captured copy (smaller, brighter, tilted): {same:.3f} -> {'same' if same >= DEFAULT_THRESHOLD else 'different'}")
    scores, ids = index.search(probe.embedding[None, :], k=3)
    best = float(scores[0, 0])
    print(f"   Tom Hanks vs the 6 people of t1.jpg: best {best:.3f} (face {int(ids[0, 0])}) -> "
          f"{'match' if best >= DEFAULT_THRESHOLD else 'no match'}")
    hits, _ = index.search(probe.embedding[None, :], k=3, threshold=DEFAULT_THRESHOLD)
    print(f"   candidates above the threshold: {int(np.isfinite(hits).sum())}")
    _guarded_demo(pipe, hanks, _recapture(hanks), group)
    return EXIT_OK


def _guarded_demo(pipe: Pipeline, photo: np.ndarray, recaptured: np.ndarray, group: np.ndarray) -> None:
    """The same faces through the compliance guard, in a temporary demo workspace."""
    from ..errors import PolicyViolation
    from ..policy.issuer import issue_consent
    from ..workspace.init import init_workspace
    from ..workspace.keys import read_signing_key
    from ..sdk import SafeFace

    with tempfile.TemporaryDirectory(prefix="safeface-demo-") as tmp:
        ws = init_workspace(Path(tmp) / "ws", demo=True)
        print("4. guarded calls in a temporary demo workspace (profile cn-2025, purpose 'demo'):")
        with SafeFace.open(ws.root, pipeline=pipe) as sf:
            token, consent = issue_consent(read_signing_key(ws.demo_issuer), sf.deployment, "tom", ["demo"])
            print(f"   consent: JWS signed with EdDSA (Ed25519) for deployment {consent.audience[0][:8]}..., "
                  f"subject 'tom', purpose demo, {', '.join(consent.operations)}; binds notice "
                  f"{sf.deployment.notice_hash[:12]}")
            e = sf.enroll(photo, "tom", "demo", token)
            print(f"   enroll: stored as pseudonym {e.pseudonym[:16]}..., protected template, expires {e.expires_at.date()}")
            v = sf.verify(recaptured, "tom", "demo", token)
            print(f"   verify the re-captured copy: {'match' if v.match else 'no match'} ({v.score:.3f} >= {v.threshold})")
            found = sf.identify(group, "demo", token)
            print(f"   identify the most prominent face of t1.jpg: {len(found)} candidate(s) above the threshold")
            for label, call in (
                    ("verify without consent", lambda: sf.verify(recaptured, "tom", "demo", None)),
                    ("enroll for an undeclared purpose", lambda: sf.enroll(photo, "tom", "marketing", token)),
                    ("analyze 'skin tone'", lambda: sf.analyze(photo, ["skin tone"]))):
                try:
                    call()
                    print(f"   {label}: allowed (unexpected)")
                except PolicyViolation as exc:
                    print(f"   {label}: refused, rule {exc.rule}: {exc.message}")
            receipt = sf.erase("tom")
            print(f"   erase: {receipt.templates_removed} template(s) removed, receipt {receipt.receipt_id} "
                  f"signed ({receipt.signature[:16]}...)")
            try:
                sf.verify(recaptured, "tom", "demo", token)
            except PolicyViolation as exc:
                print(f"   verify after erasure: refused, rule {exc.rule}")
            report = sf.audit_verify()
            print(f"   audit log: {report.entries} entries, hash chain and signed head intact")
    print("demo finished: the temporary workspace (protected templates and audit log only) was deleted; "
          "no image or raw embedding was written.")


def _recapture(image: np.ndarray) -> np.ndarray:
    """The same photo as a second camera might give it: two-thirds the size, brighter, tilted."""
    from PIL import Image, ImageEnhance

    im = Image.fromarray(image)
    im = im.resize((im.width * 2 // 3, im.height * 2 // 3), Image.Resampling.BILINEAR)
    im = ImageEnhance.Brightness(im).enhance(1.25).rotate(8, resample=Image.Resampling.BILINEAR, fillcolor=(255, 255, 255))
    return np.asarray(im)
