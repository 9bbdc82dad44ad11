"""Impostors who cover their own lower face: does a cheap cover raise the chance of being accepted
as someone else, against showing the bare face? On LFW dev's different-person pairs whose two
people the mask detector was not trained on (`mask_detect.trained_on`), each probe image is shown
bare and under each cover below, drawn on the image before detection from its bare face's box and
landmarks (the attacker knows their own face). A probe is scored as the SDK scores it against a
bare enrolment: called masked, by its visible-region embedding against the enrolment's
visible-region template at the masked threshold; otherwise whole, against the main template at
the plain threshold. Printed per cover: how often it was called masked, failure to acquire, and
the FMR at the deployed thresholds next to the bare probes' FMR on the same pairs; then the same
with the cover on the enrolment image (bare probes), and on both sides (the both-masked path when
both are called masked). Each pair is taken both ways (either image enrolled). With --cross, every
sampled image is also paired with every other person's (more impostor pairs from the same
embeddings, not independent ones).

    PYTHONPATH=. nice python benches/masked_covers.py [--pairs 200] [--jobs 2] [--cache DIR] [--printed] [--cross]

With --cache DIR, each image's embeddings are kept there between runs, keyed by image, cover and
the mask detector's model id, sealed with AES-256-GCM under the evaluation cache's key (as
`safeface eval --cache` seals its own: no embedding reaches the disk in the clear) and read back
without pickle; without it nothing is written.
"""

from __future__ import annotations

import argparse
import hashlib
import io
import sys
from multiprocessing import Pool
from pathlib import Path
from typing import Any, Callable, Optional

import numpy as np

from safeface.hazmat.vision import (DEFAULT_BOTH_MASKED_THRESHOLD, DEFAULT_MASKED_THRESHOLD, DEFAULT_THRESHOLD, Pipeline, get_engine,
                                    pick_subject)
from safeface.hazmat.vision.eye_cover import model_id as eye_model_id
from safeface.hazmat.vision.mask_detect import model_id, trained_on
from safeface.hazmat.vision.masks import draw_mask
from safeface.aead import Aead
from safeface.errors import InvalidArgument
from safeface.atomicfile import write_atomic
from safeface.evaluate.embedcache import cache_key
from safeface.imageio import load_image

sys.path.insert(0, str(Path(__file__).resolve().parent))
from lfw import datasets_root, lfw_pairs  # noqa: E402


def _rect(img: np.ndarray, x0: float, y0: float, x1: float, y1: float, colour: Any) -> np.ndarray:
    out = img.copy()
    h, w = img.shape[:2]
    a, b = int(max(0, round(x0))), int(min(w, round(x1)))
    c, d = int(max(0, round(y0))), int(min(h, round(y1)))
    if b > a and d > c:
        out[c:d, a:b] = np.asarray(colour, dtype=np.uint8)
    return out


def _skin(img: np.ndarray, box: np.ndarray, lm: np.ndarray) -> tuple[int, int, int]:
    """The median colour of the cheeks just under the eyes: what a hand or a skin-tone cloth is."""
    eye_y = float(lm[:4, 1].mean())
    w = box[2] - box[0]
    y0, y1 = int(eye_y + 0.08 * w), int(eye_y + 0.2 * w)
    x0, x1 = int(box[0] + 0.15 * w), int(box[2] - 0.15 * w)
    patch = img[max(0, y0):max(1, y1), max(0, x0):max(1, x1)].reshape(-1, 3)
    med = np.median(patch, axis=0) if patch.size else np.array([180, 140, 120])
    return int(med[0]), int(med[1]), int(med[2])


def _lower(img: np.ndarray, box: np.ndarray, lm: np.ndarray, colour: Any, top: float = 0.0,
           narrow: float = 0.0) -> np.ndarray:
    """A rectangle from a little under the nose base (plus `top` of what is left) to below the
    chin, the face box's width less `narrow` of it on each side."""
    w = box[2] - box[0]
    nose_y = float(lm[4, 1])
    bottom = box[3] + 0.1 * w
    y0 = nose_y - 0.05 * w
    y0 = y0 + top * (bottom - y0)
    return _rect(img, box[0] - 0.05 * w + narrow * w, y0, box[2] + 0.05 * w - narrow * w, bottom, colour)


def _sunglasses(img: np.ndarray, box: np.ndarray, lm: np.ndarray) -> np.ndarray:
    """Two dark discs over the eyes and a bridge between them."""
    import cv2

    out = img.copy()
    w = box[2] - box[0]
    for i in (0, 2):
        cx, cy = lm[i:i + 2].mean(axis=0)
        cv2.circle(out, (int(cx), int(cy)), max(1, int(0.16 * w)), (10, 10, 10), -1)
    cv2.line(out, tuple(int(v) for v in lm[1]), tuple(int(v) for v in lm[3]), (10, 10, 10), max(1, int(0.03 * w)))
    return out


COVERS: dict[str, Callable[[np.ndarray, np.ndarray, np.ndarray], np.ndarray]] = {
    "black lower half": lambda i, b, l: _lower(i, b, l, (0, 0, 0)),
    "skin-coloured lower half": lambda i, b, l: _lower(i, b, l, _skin(i, b, l)),
    "grey lower half": lambda i, b, l: _lower(i, b, l, (128, 128, 128)),
    "black over the mouth only": lambda i, b, l: _lower(i, b, l, (0, 0, 0), top=0.35, narrow=0.22),
    "skin over the mouth only": lambda i, b, l: _lower(i, b, l, _skin(i, b, l), top=0.35, narrow=0.22),
    "draw_mask surgical seed 0 (the SDK's own)": lambda i, b, l: draw_mask(i, l, b, "surgical", 0),
    "draw_mask gaiter seed 0 (the SDK's own)": lambda i, b, l: draw_mask(i, l, b, "gaiter", 0),
    "draw_mask random seed 2**63-1": lambda i, b, l: draw_mask(i, l, b, "random", 2**63 - 1),
    "sunglasses and a surgical mask": lambda i, b, l: _sunglasses(draw_mask(i, l, b, "surgical", 1), b, l),
    "dark sunglasses only": lambda i, b, l: _sunglasses(i, b, l),
}
EYES_AND_MOUTH = "sunglasses and a surgical mask"  # the enrolment of the "covered-enrolment" block

MASKED_ENROLMENT = "draw_mask random seed 2**63-1"
_PIPE: Optional[Pipeline] = None


def _pipe() -> Pipeline:
    global _PIPE
    if _PIPE is None:
        _PIPE = Pipeline(get_engine("onnx"))
    return _PIPE


def _key(path: Path, cover: str, cache: Path) -> Path:
    h = hashlib.sha256(f"{path.read_bytes().hex()[:4096]}|{path.name}|{cover}|{model_id()}|{eye_model_id()}|v2"
                       .encode()).hexdigest()
    return cache / f"{h[:32]}.sealed"


def _read(f: Path) -> Optional[dict[str, Any]]:
    """A sealed record of the cache, or None where there is none."""
    if not f.exists():
        return None
    plain = Aead(cache_key(), "the evaluation cache key").open(f.read_bytes(), f.name.encode())
    with np.load(io.BytesIO(plain), allow_pickle=False) as z:
        return {k: z[k] for k in z.files}


def _write(f: Path, rec: dict[str, Any]) -> None:
    buf = io.BytesIO()
    np.savez(buf, **rec)
    write_atomic(f, Aead(cache_key(), "the evaluation cache key").seal(buf.getvalue(), f.name.encode()),
                 mode=0o600, durable=False)


def _compute(job: tuple[Path, Optional[Path]]) -> dict[str, dict[str, Any]]:
    """Per cover ("bare" too): emb, conf, masked, covered (refused for its eyes), visible (the enrolment's visible-region template
    for "bare"; the probe's masked visible-region embedding when called masked)."""
    path, cache = job
    out: dict[str, dict[str, Any]] = {}
    pipe = _pipe()
    img = load_image(path)
    bare = pick_subject(pipe.detect(img), img.shape, pipe.config.pick)
    for cover in ("bare", *COVERS):
        f = _key(path, cover, cache) if cache is not None else None
        z = _read(f) if f is not None else None
        if z is not None and (not bool(z["found"]) or "covered" in z):
            out[cover] = z
            continue
        rec: dict[str, Any] = {"found": np.array(False)}
        if bare is not None:
            shown = img if cover == "bare" else COVERS[cover](img, np.asarray(bare.box, float), bare.landmarks)
            r = pipe.embed(shown)
            if r.face is not None and r.embedding is not None:
                check = pipe.mask_check(shown, r.face, r.embedding)
                eyes = _eyes_refused(pipe, shown, r.face, r.embedding)
                assert check is not None
                rec = {"found": np.array(True), "emb": np.asarray(r.embedding, np.float32),
                       "conf": np.array(check.confidence), "masked": np.array(check.masked),
                       "covered": np.array(eyes)}
                rec["visible"] = pipe.visible_embedding(shown, r.face, masked=check.masked)
        if f is not None:
            _write(f, rec)
        out[cover] = rec
    return out


def _eyes_refused(pipe: Pipeline, shown: np.ndarray, face: Any, embedding: np.ndarray) -> bool:
    """Whether the SDK refuses the face for its eyes: called hidden, or its eyes or forehead past
    the image's edge (InvalidArgument), where the check cannot see them."""
    try:
        eyes = pipe.eye_check(shown, face, embedding)
    except InvalidArgument:
        return True
    assert eyes is not None
    return eyes.covered


def _score(enrol: dict[str, Any], probe: dict[str, Any]) -> Optional[tuple[float, float]]:
    """(score, threshold) of a probe against an enrolment, as the SDK decides: a masked probe by
    visible regions (at the both-masked threshold against an enrolment called masked); a probe not
    called masked whole, except against an enrolment called masked (by visible regions). Each
    record's `visible` is what the SDK makes of that image (drawn over its masked landmarks when
    the image was called masked). A face whose eyes the eye-cover check calls hidden is refused
    (EyesCovered), at enrolment as at verification: no score."""
    if not bool(enrol.get("found")) or not bool(probe.get("found")):
        return None
    if bool(enrol["covered"]) or bool(probe["covered"]):
        return None
    by_region = bool(probe["masked"]) or bool(enrol["masked"])
    if not by_region:
        return float(np.dot(enrol["emb"], probe["emb"])), DEFAULT_THRESHOLD
    both = bool(probe["masked"]) and bool(enrol["masked"])
    return (float(np.dot(enrol["visible"], probe["visible"])),
            DEFAULT_BOTH_MASKED_THRESHOLD if both else DEFAULT_MASKED_THRESHOLD)


def _cos_fix(recs: dict[Path, dict[str, dict[str, Any]]]) -> None:
    for per in recs.values():
        for rec in per.values():
            for k in ("emb", "visible"):
                if k in rec:
                    rec[k] = rec[k] / np.linalg.norm(rec[k])


def _report(title: str, pairs: list[tuple[Path, Path]], recs: dict[Path, dict[str, dict[str, Any]]],
            side: str = "probe") -> None:
    """side "probe": bare enrolments, covered probes; "enrolment": covered enrolments, bare probes;
    "both": the same cover on both sides; "masked-enrolment" and "covered-enrolment": enrolments under
    one fixed cover (a synthetic mask; sunglasses and a mask), probes under each cover."""
    what = {"probe": "enrolment bare, probe as below", "enrolment": "enrolment as below, probe bare",
            "both": "enrolment and probe both under the cover below",
            "masked-enrolment": f"enrolment under {MASKED_ENROLMENT!r}, probe as below; baseline: the bare probe",
            "covered-enrolment": f"enrolment under {EYES_AND_MOUTH!r}, probe as below; baseline: the bare probe"}[side]
    print(f"\n{title}: {len(pairs)} impostor pairs ({what})")
    print(f"{'cover':45s} {'called masked':>14s} {'FTA':>6s} {'accepted':>9s} {'FMR':>7s}   bare FMR same pairs")
    for cover in ("bare", *COVERS):
        n = acc = acc_bare = masked = fta = scored = 0
        for a, b in pairs:
            enrolled = {"masked-enrolment": MASKED_ENROLMENT, "covered-enrolment": EYES_AND_MOUTH}.get(side)
            e = recs[a]["bare" if side == "probe" else enrolled or cover]
            p = recs[b]["bare" if side == "enrolment" else cover]
            pb = recs[b]["bare"]
            if not bool(recs[a]["bare"].get("found")) or not bool(recs[a][MASKED_ENROLMENT].get("found")):
                continue
            if side == "covered-enrolment" and not bool(recs[a][EYES_AND_MOUTH].get("found")):
                continue
            if not bool(e.get("found")) or not bool(pb.get("found")):
                continue
            n += 1
            s = _score(e, p)
            if s is None:
                fta += 1
                continue
            scored += 1
            masked += bool((e if side == "enrolment" else p)["masked"])
            acc += s[0] >= s[1]
            sb = _score(recs[a][enrolled] if enrolled else recs[a]["bare"], pb)
            acc_bare += sb is not None and sb[0] >= sb[1]
        fmr = acc / max(1, scored)
        print(f"{cover:45s} {masked / max(1, scored):14.1%} {fta / max(1, n):6.1%} {acc:9d} {fmr:7.2%}   "
              f"{acc_bare / max(1, scored):.2%} ({acc_bare})")


def _printed(pairs: list[tuple[Path, Path]], recs: dict[Path, dict[str, dict[str, Any]]]) -> None:
    """The impostor wears the enrolled person's own lower face (a mask printed with it): the
    enrolled image's lower face, warped onto the impostor's by the 5 landmarks, pasted over the
    same rectangle as the covers above. Not cached."""
    import cv2

    pipe = _pipe()
    faces: dict[Path, Any] = {}

    def face(p: Path) -> Any:
        if p not in faces:
            img = load_image(p)
            faces[p] = (img, pick_subject(pipe.detect(img), img.shape, pipe.config.pick))
        return faces[p]

    n = acc = acc_bare = masked = 0
    for a, b in pairs:
        (va, fa), (vb, fb) = face(a), face(b)
        if fa is None or fb is None or not bool(recs[a]["bare"].get("found")):
            continue
        m, _ = cv2.estimateAffinePartial2D(fa.landmarks.astype(np.float32), fb.landmarks.astype(np.float32))
        warped = cv2.warpAffine(va, m, (vb.shape[1], vb.shape[0]), borderMode=cv2.BORDER_REPLICATE)
        box = np.asarray(fb.box, float)
        w = box[2] - box[0]
        y0, y1 = int(max(0, fb.landmarks[4, 1] - 0.05 * w)), int(min(vb.shape[0], box[3] + 0.1 * w))
        x0, x1 = int(max(0, box[0] - 0.05 * w)), int(min(vb.shape[1], box[2] + 0.05 * w))
        shown = vb.copy()
        shown[y0:y1, x0:x1] = warped[y0:y1, x0:x1]
        r = pipe.embed(shown)
        if r.face is None or r.embedding is None:
            continue
        check = pipe.mask_check(shown, r.face, r.embedding)
        assert check is not None
        rec = {"found": True, "masked": check.masked, "covered": _eyes_refused(pipe, shown, r.face, r.embedding), "emb": r.embedding / np.linalg.norm(r.embedding),
               "visible": pipe.visible_embedding(shown, r.face, masked=check.masked)}
        s, sb = _score(recs[a]["bare"], rec), _score(recs[a]["bare"], recs[b]["bare"])
        n += 1
        masked += check.masked
        acc += s is not None and s[0] >= s[1]
        acc_bare += sb is not None and sb[0] >= sb[1]
    print(f"\nthe enrolled person's own lower face pasted over the impostor's: {n} pairs, called masked "
          f"{masked / max(1, n):.1%}, accepted {acc} ({acc / max(1, n):.2%}); bare {acc_bare} ({acc_bare / max(1, n):.2%})")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--pairs", type=int, default=200, help="held-out different-person pairs at most")
    ap.add_argument("--jobs", type=int, default=2)
    ap.add_argument("--cache", type=Path, default=None,
                    help="keep the embeddings here between runs, sealed (outside the checkout and any workspace)")
    ap.add_argument("--printed", action="store_true", help="also the enrolled person's lower face worn by the impostor")
    ap.add_argument("--cross", action="store_true", help="also every sampled image against every other person's")
    args = ap.parse_args()
    if args.cache is not None:
        args.cache.mkdir(parents=True, exist_ok=True, mode=0o700)
    person = lambda p: p.parent.name  # noqa: E731
    held = [(a, b) for a, b, same in lfw_pairs() if not same and not trained_on(person(a)) and not trained_on(person(b))]
    held = held[: args.pairs]
    images = list(dict.fromkeys([x for ab in held for x in ab]))
    print(f"{len(held)} held-out impostor pairs, {len(images)} images, {len(COVERS)} covers; data "
          f"{datasets_root()}", flush=True)
    with Pool(args.jobs) as pool:
        recs = dict(zip(images, pool.map(_compute, [(p, args.cache) for p in images], chunksize=4)))
    _cos_fix(recs)
    for cover in COVERS:
        confs = [float(r[cover]["conf"]) for r in recs.values() if bool(r[cover].get("found"))]
        if confs:
            print(f"{cover:45s} mask confidence median {np.median(confs):.3f}, 10th pct {np.percentile(confs, 10):.3f}")
    both_ways = held + [(b, a) for a, b in held]
    for side in ("probe", "enrolment", "both", "masked-enrolment", "covered-enrolment"):
        _report("LFW dev test split, held-out people, each pair both ways", both_ways, recs, side)
    if args.printed:
        _printed(both_ways, recs)
    if args.cross:
        cross = [(a, b) for a in images for b in images if person(a) != person(b)]
        _report("every sampled image against every other person's", cross, recs)
        _report("every sampled image against every other person's", cross, recs, "enrolment")
        _report("every sampled image against every other person's", cross, recs, "both")


if __name__ == "__main__":
    main()
