"""Masked-face evaluation, after NIST's FRVT masked-face tests: a synthetic mask is drawn on each
image BEFORE detection (as a camera sees it), then the whole pipeline runs on the masked image.

For every image we keep:
- the masked image's embedding (None: failure to acquire) and the mask detector's confidence;
- whether the eye-cover check calls the eyes hidden, on the masked face and on the bare one: the
  SDK refuses such a face (EyesCovered), so a masked face called so counts as not acquired;
- the mask detector's confidence on the bare face (how often a bare face is called masked);
- the visible-region template of the bare image (what enrolment stores for masked probes);
- the visible-region embedding of the masked image (synthetic masks drawn over the face found in
  it: what a masked probe is matched with, and what a masked enrolment stores).

Pairs are scored the way the SDK decides: a probe the mask detector calls masked is compared, by
its visible-region embedding, with the enrolment's visible-region template (both masked: that of
the masked enrolment image) against the masked threshold; any other probe by its embedding with
the enrolment's main template against the usual one, except that an enrolment the detector
called masked is met only by visible regions (the probe's own, at the masked threshold).
So one set of scores carries two thresholds; each score is reported relative to its own path's
threshold, shifted so the deployed threshold reads the same for every pair
(`score - path threshold + deployed threshold`).
"""

from __future__ import annotations

import hashlib
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping, Optional, Sequence

import numpy as np
import numpy.typing as npt

from ..errors import InvalidArgument
from ..hashing import read_hashed
from ..hazmat.vision import pick_subject
from ..hazmat.vision.eye_cover import check_eyes
from ..hazmat.vision.eye_cover import model_id as eye_model_id
from ..hazmat.vision.mask_detect import check_mask, mask_threshold, model_id, trained_on
from ..hazmat.vision.masked_shape import MODEL_NAME as SHAPE_MODEL
from ..hazmat.vision.masks import GENERATOR_VERSION, MASK_KINDS, RANDOM, draw_mask
from ..hazmat.vision.visible import visible_region_embedding
from ..imageio import load_image
from ..modelstore import registry
from . import metrics
from .datasets import Pair
from .embedcache import EmbeddingCache, Record
from .verification import NO_FACE_SCORE, PairScores, verification_metrics

MASK_PROBES = MASK_KINDS + (RANDOM,)
# Names the masked search of the pipeline in cache keys: a change to it never reuses old records.
MASKED_STEP_VERSION = 7


@dataclass(frozen=True)
class MaskedRecord:
    """One image, bare and masked. `drawn`: a bare face was found, so a mask could be drawn."""

    drawn: bool
    masked: Optional[np.ndarray]
    detector: str
    mask_confidence: float  # on the masked face (nan when it was not found)
    bare_confidence: float  # on the bare face (nan when there is none)
    visible: Optional[np.ndarray]
    masked_visible: Optional[np.ndarray] = None  # the masked image's visible-region embedding
    eyes_covered: bool = False  # the eye-cover check called the masked face's eyes hidden (refused)
    bare_eyes_covered: bool = False  # the same on the bare face

    @property
    def detected_masked(self) -> bool:
        return bool(self.mask_confidence >= mask_threshold())


def image_seed(key: str, seed: int) -> int:
    """Each image gets its own mask, the same on every run with the same seed."""
    return int.from_bytes(hashlib.sha256(f"{key}|{seed}".encode()).digest()[:4], "big")


def _ckey(*parts: object) -> str:
    return hashlib.sha256("|".join(str(p) for p in parts).encode()).hexdigest()


def _pack(detector: str, conf: float) -> str:
    return f"{detector};{conf:.5f}"


def _unpack(s: str) -> tuple[str, float]:
    det, _, conf = s.partition(";")
    return det, float(conf) if conf else float("nan")


def masked_records(session: Any, paths: Sequence[Path], kind: str, seed: int = 0,
                   progress: bool = True) -> dict[Path, MaskedRecord]:
    """A MaskedRecord per distinct path; cached next to the bare embeddings (sealed the same way)
    under keys that name the mask kind, seed, generator and mask detector."""
    from tqdm import tqdm

    pipeline = session.pipeline
    cache: Optional[EmbeddingCache] = session.cache
    out: dict[Path, MaskedRecord] = {}
    unique = list(dict.fromkeys(Path(p) for p in paths))
    pending: list[tuple[str, Record]] = []
    for path in tqdm(unique, desc=f"masked ({kind})", unit="img", file=sys.stderr, disable=not progress, leave=False):
        key, data = read_hashed(path)
        km = _ckey(key, "masked", kind, seed, GENERATOR_VERSION, model_id(), MASKED_STEP_VERSION)
        kv = _ckey(key, "visible", GENERATOR_VERSION, model_id())
        kmv = _ckey(key, "masked-visible", kind, seed, GENERATOR_VERSION, model_id(), MASKED_STEP_VERSION,
                    registry.entry(SHAPE_MODEL).sha256)
        ke = _ckey(key, "eyes", kind, seed, GENERATOR_VERSION, model_id(), eye_model_id(), MASKED_STEP_VERSION)
        rm, rv, rmv, re_ = ((cache.get(km), cache.get(kv), cache.get(kmv), cache.get(ke)) if cache is not None
                            else (None, None, None, None))
        if rm is None or rv is None or rmv is None:
            rm, rv, rmv = _compute(pipeline, data, kind, image_seed(key, seed))
            pending += [(km, rm), (kv, rv), (kmv, rmv)]
        if re_ is None:
            re_ = _eyes(pipeline, data, kind, image_seed(key, seed))
            pending.append((ke, re_))
        det, mconf = _unpack(rm.detector)
        _, bconf = _unpack(rv.detector)
        covered, bare_covered = (v == "1" for v in re_.detector.partition(";")[::2])
        # The SDK refuses a face with the eyes hidden: neither embedding of the masked face is used.
        out[path] = MaskedRecord(rv.faces > 0, None if covered else rm.embedding, det, mconf, bconf, rv.embedding,
                                 None if covered else rmv.embedding, covered, bare_covered)
        if cache is not None and len(pending) >= 64:
            cache.put_many(pending)
            pending = []
    if cache is not None:
        cache.put_many(pending)
    return out


def _compute(pipeline: Any, data: bytes, kind: str, seed: int) -> tuple[Record, Record, Record]:
    img = load_image(data)
    bare = pick_subject(pipeline.detect(img), img.shape, pipeline.config.pick)
    if bare is None:
        none = Record(None, 0, _pack("", float("nan")))
        return none, none, none
    visible = visible_region_embedding(pipeline, img, bare)
    bare_conf = check_mask(img, bare.landmarks, pipeline.embed_faces(img, [bare])[0]).confidence
    masked = draw_mask(img, bare.landmarks, bare.box, kind, seed)
    r = pipeline.embed(masked)
    check = (check_mask(masked, r.face.landmarks, r.embedding)
             if r.face is not None and r.embedding is not None else None)
    conf = check.confidence if check is not None else float("nan")
    det = r.face.detector if r.face is not None else ""
    mv = (visible_region_embedding(pipeline, masked, r.face, masked=check is not None and check.masked)
          if r.face is not None else None)
    return (Record(r.embedding, len(r.faces), _pack(det, conf)), Record(visible, 1, _pack("visible", bare_conf)),
            Record(mv, 1 if mv is not None else 0, ""))


def _refused(img: np.ndarray, landmarks: np.ndarray, embedding: np.ndarray) -> bool:
    """Whether the SDK refuses the face for its eyes: called hidden, or (InvalidArgument) its eyes
    or forehead past the image's edge, where the check cannot see them."""
    try:
        return check_eyes(img, landmarks, embedding).covered
    except InvalidArgument:
        return True


def _eyes(pipeline: Any, data: bytes, kind: str, seed: int) -> Record:
    """The eye-cover check's decisions on the masked face and on the bare one, as "masked;bare"
    ("1" hidden, "0" not, "" no face), found as _compute finds them."""
    img = load_image(data)
    bare = pick_subject(pipeline.detect(img), img.shape, pipeline.config.pick)
    if bare is None:
        return Record(None, 0, ";")
    bare_covered = _refused(img, bare.landmarks, pipeline.embed_faces(img, [bare])[0])
    masked = draw_mask(img, bare.landmarks, bare.box, kind, seed)
    r = pipeline.embed(masked)
    covered = (str(int(_refused(masked, r.face.landmarks, r.embedding)))
               if r.face is not None and r.embedding is not None else "")
    return Record(None, 0, f"{covered};{int(bare_covered)}")


def _cos(a: Optional[np.ndarray], b: Optional[np.ndarray]) -> Optional[float]:
    if a is None or b is None:
        return None
    return float(np.dot(a, b) / (np.linalg.norm(a) * np.linalg.norm(b)))


@dataclass(frozen=True)
class Scenario:
    """Scores of one way of pairing, each relative to its path's threshold (see the module)."""

    scores: PairScores
    masked_path: np.ndarray  # the probe went the masked way


def scenario(pairs: Sequence[Pair], bare: Mapping[Path, Record], masked: Mapping[Path, MaskedRecord],
             mode: str, threshold: float, masked_threshold: float, aware: bool = True,
             both_masked_threshold: Optional[float] = None) -> Scenario:
    """mode "probe": enrolment bare, probe masked; "both": both masked; "enrolment": enrolment
    masked, probe bare; "bare": neither. `aware` False scores every pair whole with the usual
    threshold (the pipeline without the masked path). `both_masked_threshold`: the masked path's
    threshold for a masked probe against an enrolment the mask detector called masked (None:
    `masked_threshold`)."""
    scores, acquired, path_m = [], [], []
    for p in pairs:
        probe = masked[p.image2]
        enrol_bare = bare[p.image1].embedding
        path_threshold = masked_threshold
        if mode == "bare":
            s, m = _cos(enrol_bare, bare[p.image2].embedding), False
        elif mode == "enrolment":
            enrol = masked[p.image1]
            m = aware and enrol.detected_masked
            s = _cos(enrol.masked_visible, probe.visible) if m else _cos(enrol.masked, bare[p.image2].embedding)
        else:
            m = aware and probe.detected_masked
            if mode == "both":
                by_region = m or (aware and masked[p.image1].detected_masked)
                s = (_cos(masked[p.image1].masked_visible, probe.masked_visible) if by_region
                     else _cos(masked[p.image1].masked, probe.masked))
                if m and both_masked_threshold is not None and masked[p.image1].detected_masked:
                    path_threshold = both_masked_threshold
                m = by_region
            else:
                s = _cos(masked[p.image1].visible, probe.masked_visible) if m else _cos(enrol_bare, probe.masked)
        if s is None:
            scores.append(NO_FACE_SCORE)
            acquired.append(False)
        else:
            scores.append(s - path_threshold + threshold if m else s)
            acquired.append(True)
        path_m.append(m)
    ps = PairScores(np.array(scores), np.array([p.same for p in pairs]), np.array([p.fold for p in pairs]),
                    np.array(acquired, dtype=bool))
    return Scenario(ps, np.array(path_m, dtype=bool))


def calibrated_masked_threshold(bare_nonmated: np.ndarray, masked_nonmated: np.ndarray,
                                threshold: float) -> Optional[float]:
    """The masked-path threshold whose FMR on `masked_nonmated` equals the bare path's FMR at
    `threshold` on `bare_nonmated` (never below that rate's resolution); None when either side
    has no impostor pair (a small run: `--limit`, or too few people called masked)."""
    if bare_nonmated.size == 0 or masked_nonmated.size == 0:
        return None
    fmr = float(np.mean(bare_nonmated >= threshold))
    return metrics.threshold_at_rate(masked_nonmated, max(fmr, 1.0 / max(len(masked_nonmated), 1)))


def calibrate_on_trained_half(bare: Mapping[Path, Record], masked: Mapping[Path, MaskedRecord],
                              threshold: float) -> dict[str, object]:
    """The masked threshold set apart from the measured people: on every different-person pair
    of images of the half of the people the mask detector was trained on, the threshold at which
    masked-path impostors (visible-region template against a masked probe's visible-region
    embedding, probes the detector calls masked) reach the FMR that bare impostors reach at
    `threshold`."""
    paths = [p for p, r in masked.items() if trained_on(Path(p).parent.name) and r.visible is not None
             and r.masked_visible is not None and bare.get(p) is not None and bare[p].embedding is not None]
    if len(paths) < 2:
        return {}
    person = np.array([Path(p).parent.name for p in paths])
    diff = person[:, None] != person[None, :]

    def unit(vs: list[Optional[np.ndarray]]) -> np.ndarray:
        x = np.stack([np.asarray(v, dtype=np.float64) for v in vs])
        norms: npt.NDArray[np.float64] = np.linalg.norm(x, axis=1, keepdims=True)
        return x / norms

    e = unit([bare[p].embedding for p in paths])
    bare_imp = (e @ e.T)[np.triu(diff, 1)]
    v, mv = unit([masked[p].visible for p in paths]), unit([masked[p].masked_visible for p in paths])
    probe_masked = np.array([masked[p].detected_masked for p in paths], dtype=bool)
    masked_imp = (v @ mv.T)[diff & probe_masked[None, :]]
    # Both masked: a masked enrolment's visible-region template (made from the masked image)
    # against a masked probe's, each image once as enrolment and once as probe.
    both = diff & probe_masked[None, :] & probe_masked[:, None]
    both_imp = (mv @ mv.T)[np.triu(both, 1)]
    return {"images": len(paths), "bare_impostor_pairs": int(bare_imp.size),
            "masked_impostor_pairs": int(masked_imp.size), "both_masked_impostor_pairs": int(both_imp.size),
            "bare_fmr_at_threshold": float(np.mean(bare_imp >= threshold)) if bare_imp.size else None,
            "masked_threshold": calibrated_masked_threshold(bare_imp, masked_imp, threshold),
            "both_masked_threshold": calibrated_masked_threshold(bare_imp, both_imp, threshold)}


def scenario_figures(sc: Scenario, records: Mapping[Path, Any], threshold: float) -> dict[str, object]:
    g, i = sc.scores.scores[sc.scores.same], sc.scores.scores[~sc.scores.same]
    fig = verification_metrics(sc.scores, records, threshold, bootstrap_rounds=100)
    fig["fnmr_at_fmr"] = {f"{far:g}": 1.0 - metrics.tar_at_far(g, i, far).tmr.value for far in (1e-3, 1e-2)}
    fig["masked_path_pairs"] = int(sc.masked_path.sum())
    return fig


def mask_detection_figures(masked: Mapping[Path, MaskedRecord]) -> dict[str, object]:
    on_masked = [r.detected_masked for r in masked.values() if r.masked is not None]
    on_bare = [bool(r.bare_confidence >= mask_threshold()) for r in masked.values() if r.drawn]
    found, false = int(sum(on_masked)), int(sum(on_bare))
    return {"masked_found": metrics.wilson(found, len(on_masked)).to_dict(),
            "bare_called_masked": metrics.wilson(false, len(on_bare)).to_dict(),
            "threshold": mask_threshold()}


def fta_figures(masked: Mapping[Path, MaskedRecord]) -> dict[str, object]:
    """Masked faces not acquired: not found, or found with the eyes called hidden (refused)."""
    drawn = [r for r in masked.values() if r.drawn]
    lost = sum(1 for r in drawn if r.masked is None)
    by: dict[str, int] = {}
    for r in drawn:
        if r.masked is not None:
            by[r.detector] = by.get(r.detector, 0) + 1
    return {"masked_images": len(drawn), "no_face": lost, "rate": metrics.wilson(lost, len(drawn)).to_dict(),
            "eyes_called_hidden": sum(r.eyes_covered for r in drawn),
            "bare_eyes_called_hidden": sum(r.bare_eyes_covered for r in drawn),
            "images_without_bare_face": len(masked) - len(drawn), "faces_found_by": by}


def masked_verification(pairs: Sequence[Pair], bare: Mapping[Path, Record], masked: Mapping[Path, MaskedRecord],
                        threshold: float, masked_threshold: float, both_masked_threshold: float
                        ) -> tuple[dict[str, object], dict[str, Scenario]]:
    """Every masked-face figure of `eval verify`, next to the unmasked ones of the same run."""
    scen = {
        "unmasked": scenario(pairs, bare, masked, "bare", threshold, masked_threshold),
        "probe_masked": scenario(pairs, bare, masked, "probe", threshold, masked_threshold),
        "probe_masked_plain": scenario(pairs, bare, masked, "probe", threshold, masked_threshold, aware=False),
        "both_masked": scenario(pairs, bare, masked, "both", threshold, masked_threshold,
                                both_masked_threshold=both_masked_threshold),
        "both_masked_plain": scenario(pairs, bare, masked, "both", threshold, masked_threshold, aware=False),
        "enrolment_masked": scenario(pairs, bare, masked, "enrolment", threshold, masked_threshold),
        "enrolment_masked_plain": scenario(pairs, bare, masked, "enrolment", threshold, masked_threshold,
                                           aware=False),
    }
    tagged = {Path(f"{p}#masked"): Record(r.masked, 1 if r.masked is not None else 0, r.detector)
              for p, r in masked.items()}
    recs = {"unmasked": bare,
            "probe_masked": {**{p.image1: bare[p.image1] for p in pairs},
                             **{Path(f"{p.image2}#masked"): tagged[Path(f"{p.image2}#masked")] for p in pairs}},
            "both_masked": tagged,
            "enrolment_masked": {**{Path(f"{p.image1}#masked"): tagged[Path(f"{p.image1}#masked")] for p in pairs},
                                 **{p.image2: bare[p.image2] for p in pairs}}}
    figures: dict[str, object] = {
        "failure_to_acquire": fta_figures(masked),
        "mask_detection": mask_detection_figures(masked),
        "masked_threshold": masked_threshold,
        "both_masked_threshold": both_masked_threshold,
        "scores_note": "masked-path scores are shifted by (deployed threshold - the path's threshold: masked, "
                       "or both masked for an enrolment called masked), so the deployed threshold decides every pair",
    }
    for name, sc in scen.items():
        figures[name] = scenario_figures(sc, recs[name.replace("_plain", "")], threshold)
    # The mask detector was trained on half the LFW people (mask_detect.trained_on): its rates,
    # and what hangs on them (the masked detection step, the path), again on the other half alone.
    keep = np.array([not trained_on(p.subject1) and not trained_on(p.subject2) for p in pairs], dtype=bool)
    same = np.array([p.same for p in pairs], dtype=bool)
    if not keep.all() and (keep & same).any() and (keep & ~same).any():
        held = [p for p, k in zip(pairs, keep) if k]
        held_imgs = {p: r for p, r in masked.items() if not trained_on(Path(p).parent.name)}
        sub: dict[str, object] = {"pairs": len(held), "failure_to_acquire": fta_figures(held_imgs),
                                  "mask_detection": mask_detection_figures(held_imgs)}
        for name, sc in scen.items():
            s = sc.scores
            part = Scenario(PairScores(s.scores[keep], s.same[keep], s.folds[keep], s.acquired[keep]),
                            sc.masked_path[keep])
            sub[name] = scenario_figures(part, recs[name.replace("_plain", "")], threshold)
        figures["held_out"] = sub
    # The masked threshold this run's own impostors would give: FMR of masked-path probes equal to
    # the unmasked FMR at the deployed threshold.
    bare_i = scen["unmasked"].scores
    raw = scenario(pairs, bare, masked, "probe", threshold, threshold).scores
    mp = scen["probe_masked"].masked_path
    imp = raw.scores[~raw.same & mp & raw.acquired]
    if imp.size:
        figures["masked_threshold_equal_fmr_this_run"] = calibrated_masked_threshold(
            bare_i.scores[~bare_i.same & bare_i.acquired], imp, threshold)
    raw_both = scenario(pairs, bare, masked, "both", threshold, threshold).scores
    enrol_masked = np.array([masked[p.image1].detected_masked for p in pairs], dtype=bool)
    imp = raw_both.scores[~raw_both.same & scen["both_masked"].masked_path & enrol_masked & raw_both.acquired]
    if imp.size:
        figures["both_masked_threshold_equal_fmr_this_run"] = calibrated_masked_threshold(
            bare_i.scores[~bare_i.same & bare_i.acquired], imp, threshold)
    figures["calibration_on_trained_half"] = calibrate_on_trained_half(bare, masked, threshold)
    return figures, scen


def masked_identification(ss: Any, bare: Mapping[Path, Record], masked: Mapping[Path, MaskedRecord],
                          threshold: float, masked_threshold: float, both_masked_threshold: float) -> dict[str, object]:
    """`eval identify` with masked probes: against the gallery's visible-region templates (the
    masked path) and against its main templates (no masked path); and with gallery and probes
    both masked. Scores of the masked path are shifted as in verification, each gallery template
    by its own path's threshold (a masked enrolment's: `both_masked_threshold`)."""
    from . import identification as ident


    def rec(e: Optional[np.ndarray]) -> Record:
        return Record(e, 1 if e is not None else 0, "")

    gallery_paths = {p for _, p in ss.gallery}
    probes = [p for _, p in ss.mated + ss.nonmated]
    masked_probe = {p: rec(masked[p].masked) for p in probes}
    visible_probe = {p: rec(masked[p].masked_visible) for p in probes}
    out: dict[str, object] = {"failure_to_acquire": fta_figures({p: masked[p] for p in probes}),
                              "mask_detection": mask_detection_figures(masked), "masked_threshold": masked_threshold,
                              "both_masked_threshold": both_masked_threshold}
    to_masked = {p: threshold - masked_threshold for p in gallery_paths}
    to_both = {p: threshold - (both_masked_threshold if masked[p].detected_masked else masked_threshold)
               for p in gallery_paths}
    for name, gal, offsets in (("probe_masked", {p: rec(masked[p].visible) for p in gallery_paths}, to_masked),
                               ("probe_masked_plain", {p: bare[p] for p in gallery_paths}, None),
                               ("both_masked", {p: rec(masked[p].masked_visible) for p in gallery_paths}, to_both)):
        sc = ident.search(ss, {**gal, **(masked_probe if name == "probe_masked_plain" else visible_probe)}, offsets)
        fig = ident.identification_metrics(sc)
        fig.pop("cmc", None)
        out[name] = fig
    return out
