"""`safeface eval verify|identify|demographics|protection`: measure the system on a test set and
write JSON, HTML and PNG plots to --out (and, with --workspace, the summary the compliance
report embeds). Test-set embeddings are cached by image hash under --cache (default
<out>/cache) so that an interrupted run resumes; the cache is never placed inside a workspace."""

from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import Any, Optional

import numpy as np

from ..errors import ConfigError
from ..hazmat.vision import (DEFAULT_BOTH_MASKED_THRESHOLD, DEFAULT_ENGINE, DEFAULT_MASKED_THRESHOLD, DEFAULT_PICK,
                              DEFAULT_THRESHOLD, ENGINES, PICKS, masked_thresholds)
from .common import EXIT_OK, print_json, say


def _common(p: argparse.ArgumentParser, pairs: bool) -> None:
    if pairs:
        p.add_argument("--pairs", required=True, type=Path, help="LFW-format pairs file (View 1 or 10-fold View 2)")
    p.add_argument("--root", required=True, type=Path, help="folder with one sub-folder of images per person")
    p.add_argument("--engine", choices=ENGINES, default=DEFAULT_ENGINE, help=f"default: {DEFAULT_ENGINE}")
    p.add_argument("--flip", action=argparse.BooleanOptionalAction, default=True,
                   help="average with the mirrored face (default: on)")
    p.add_argument("--jitter", type=int, default=0, metavar="N", help="average N jittered copies of each face")
    p.add_argument("--fallback", action=argparse.BooleanOptionalAction, default=True,
                   help="HOG, then HOG upsampled, then MMOD (default: on); --no-fallback: HOG only")
    p.add_argument("--center-prior", action="store_true",
                   help="pre-cropped images only: a central box when no detector finds a face")
    p.add_argument("--pick", choices=PICKS, default=DEFAULT_PICK,
                   help=f"which face of an image with several (default {DEFAULT_PICK}: the largest, less a "
                        "penalty for distance from the centre)")
    p.add_argument("--limit", type=int, default=None, metavar="N", help="use only the first N pairs / people")
    p.add_argument("--threshold", type=float, default=DEFAULT_THRESHOLD, help="the deployment threshold")
    p.add_argument("--out", required=True, type=Path, help="report folder")
    p.add_argument("--cache", type=Path, default=None, help="embedding cache folder (default: <out>/cache)")
    p.add_argument("--no-cache", action="store_true", help="keep embeddings in memory only")
    p.add_argument("--workspace", type=Path, default=None,
                   help="also write the summary to <ws>/reports/evaluation/latest.json for the compliance report")
    p.add_argument("--passphrase-file", type=Path, default=None,
                   help="the workspace keyring's passphrase file, to put the summary on record in its audit log "
                        "(default: $SAFEFACE_PASSPHRASE)")
    p.add_argument("--json", action="store_true", help="print the JSON summary on stdout")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")


def _mask_args(p: argparse.ArgumentParser) -> None:
    from ..hazmat.vision.masks import MASK_KINDS, RANDOM

    p.add_argument("--mask-probe", choices=MASK_KINDS + (RANDOM,), default=None, metavar="KIND",
                   help=f"also measure masked faces: draw a synthetic mask ({', '.join(MASK_KINDS)} or {RANDOM}) "
                        "on each image before detection; reports masked probe and both masked next to unmasked")
    p.add_argument("--mask-seed", type=int, default=0, help="seed of the synthetic masks (default 0)")
    # Unset, each is the one a deployment with this --threshold applies (masked_thresholds): a
    # fixed 0.953 measured the masked path under a stricter --threshold at a bar no deployment used.
    p.add_argument("--masked-threshold", type=float, default=None,
                   help=f"the masked path's threshold (default {DEFAULT_MASKED_THRESHOLD}, tightened as the SDK "
                        "does under a stricter --threshold)")
    p.add_argument("--both-masked-threshold", type=float, default=None,
                   help="the masked path's threshold for an enrolment the mask detector called masked "
                        f"(default {DEFAULT_BOTH_MASKED_THRESHOLD}, tightened alike, never under the masked one)")


def _masked_args(args: argparse.Namespace) -> tuple[float, float]:
    """The masked and both-masked thresholds of this run (its report records them)."""
    return masked_thresholds(args.threshold, args.masked_threshold, args.both_masked_threshold)


def register(sub: Any) -> None:
    ev = sub.add_parser("eval", help="evaluate accuracy, fairness and template protection on a test set")
    es = ev.add_subparsers(dest="eval_command", metavar="KIND")
    p = es.add_parser("verify", help="1:1 verification on a pairs file (LFW protocol)")
    _common(p, pairs=True)
    _mask_args(p)
    p.set_defaults(func=_verify)
    p = es.add_parser("identify", help="1:N identification on a folder-per-identity set")
    _common(p, pairs=False)
    p.add_argument("--holdout", type=int, default=5, help="hold one in N people out of the gallery (default 5)")
    _mask_args(p)
    p.set_defaults(func=_identify)
    p = es.add_parser("demographics", help="per-group FMR and FNMR from operator-supplied group labels")
    _common(p, pairs=True)
    p.add_argument("--groups", required=True, type=Path, help="CSV: subject,<attribute>,... supplied by the operator")
    p.set_defaults(func=_demographics)
    p = es.add_parser("protection", help="raw vs protected accuracy and unlinkability D_sys (ISO/IEC 30136)")
    _common(p, pairs=True)
    p.set_defaults(func=_protection)
    p = es.add_parser("pad", help="presentation attack detection: APCER per attack type, BPCER, ACER "
                      "(ISO/IEC 30107-3); --make writes a test set")
    g = p.add_mutually_exclusive_group(required=True)
    g.add_argument("--root", type=Path, help="folder with live/ and attack/<type>/ clips or frame folders")
    g.add_argument("--make", type=Path, metavar="DIR", help="write a test set: waved prints and screens of the "
                   "--stills, 2 s windows of the --live clips")
    p.add_argument("--stills", type=Path, nargs="*", default=[], help="photos or folders of photos (attacks)")
    p.add_argument("--live", type=Path, nargs="*", default=[], help="real clips with head motion (genuine)")
    p.add_argument("--per-kind", type=int, default=50, help="attacks per type (print, screen) for --make")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--live-stride", type=float, default=0.25, help="seconds between the starts of the 2 s "
                   "windows of a --live clip (within each shot; overlapping windows are not independent)")
    p.add_argument("--out", type=Path, default=None, help="where pad.json and pad_det.png go (default: --root)")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=_pad)


def _session(args: argparse.Namespace):  # type: ignore[no-untyped-def]
    from ..evaluate.session import EvalOptions, Session

    if args.jitter < 0 or (args.limit is not None and args.limit < 1):
        raise ConfigError("--jitter must be >= 0 and --limit >= 1.")
    opts = EvalOptions(engine=args.engine, flip=args.flip, jitter=args.jitter, fallback=args.fallback,
                       center_prior=args.center_prior, pick=args.pick, progress=not args.no_progress)
    cache: Optional[Path] = None if args.no_cache else (args.cache or args.out / "cache")
    return Session.open(opts, cache, args.workspace)


def _finish(args: argparse.Namespace, kind: str, dataset: dict[str, Any], session: Any, figures: dict[str, Any],
            plots: dict[str, Path], started: float, stats: Any) -> int:
    from ..evaluate import report

    figures = {**figures, "run": {"seconds": round(time.perf_counter() - started, 2), "images_embedded": stats.embedded,
                                  "images_from_cache": stats.from_cache}}
    # The thresholds it was measured at, and the workspace's deployment: the compliance report
    # tells a summary measured at another threshold, or copied from another deployment.
    options = {**session.options.to_dict(), "threshold": args.threshold}
    if getattr(args, "mask_probe", None):
        options["masked_threshold"], options["both_masked_threshold"] = _masked_args(args)
    doc = report.summary(kind, dataset, session.options.engine, options, figures, plots, args.out)
    if args.workspace is not None:
        doc["deployment"] = report.deployment_id(args.workspace)
    written = report.write_report(args.out, doc, plots, args.workspace)
    say(f"report: {written.html_path}")
    if written.workspace_json:
        say(f"workspace summary: {written.workspace_json}")
        _put_on_record(args.workspace, written.workspace_bytes or b"", getattr(args, "passphrase_file", None))
    if args.json:
        print_json(doc)
    return EXIT_OK


def _put_on_record(workspace: Path, summary: bytes, passphrase_file: Optional[Path] = None) -> None:
    """The summary's SHA-256 in the workspace's audit log, where the workspace opens (its passphrase
    from --passphrase-file, $SAFEFACE_PASSPHRASE, or a demo's): the compliance report shows a
    summary not on record as written or changed by other hands, not as safeface's measurement."""
    from ..errors import SafeFaceError
    from ..sdk import SafeFace

    try:
        with SafeFace.open(workspace, passphrase_file=passphrase_file) as sf:
            digest = sf.record_evaluation(summary)
    except SafeFaceError as exc:
        say(f"the summary is not on record in the workspace's audit log ({type(exc).__name__}: {exc}); "
            "the compliance report will show it as not on record")
        return
    say(f"on record in the audit log: sha256 {digest}")


def _pairs_and_records(args: argparse.Namespace):  # type: ignore[no-untyped-def]
    from ..evaluate.datasets import read_pairs

    pairs = read_pairs(args.pairs, args.root, args.limit)
    session = _session(args)
    records, stats = session.embed([p for pr in pairs for p in (pr.image1, pr.image2)])
    say(f"{stats.images} images: {stats.embedded} embedded, {stats.from_cache} from cache, {stats.no_face} without a face")
    return pairs, session, records, stats


def _dataset(args: argparse.Namespace, **extra: Any) -> dict[str, Any]:
    d: dict[str, Any] = {"root": str(args.root), "limit": args.limit}
    if getattr(args, "pairs", None):
        d["pairs_file"] = str(args.pairs)
    return {**d, **extra}


def _verify(args: argparse.Namespace) -> int:
    from ..evaluate import metrics, plots
    from ..evaluate.verification import score_pairs, verification_metrics

    started = time.perf_counter()
    pairs, session, records, stats = _pairs_and_records(args)
    ps = score_pairs(pairs, records)
    figures = verification_metrics(ps, records, args.threshold)
    g, i = ps.scores[ps.same], ps.scores[~ps.same]
    curve = {session.options.engine: metrics.roc(g, i)}
    out = args.out
    pl = {"roc": plots.roc_plot(curve, out / "verify-roc.png"),
          "det": plots.det_plot(curve, out / "verify-det.png"),
          "scores": plots.score_histogram(g[ps.acquired[ps.same]], i[ps.acquired[~ps.same]], out / "verify-scores.png",
                                          threshold=args.threshold)}
    if args.mask_probe:
        from ..evaluate import masked as mk

        mrec = mk.masked_records(session, [p for pr in pairs for p in (pr.image1, pr.image2)], args.mask_probe,
                                 args.mask_seed, progress=not args.no_progress)
        masked_t, both_t = _masked_args(args)
        mfig, scen = mk.masked_verification(pairs, records, mrec, args.threshold, masked_t, both_t)
        mfig["kind"], mfig["seed"] = args.mask_probe, args.mask_seed
        figures["masked"] = mfig
        for name in ("probe_masked", "both_masked"):
            s = scen[name].scores
            ok = s.acquired
            curve[name.replace("_", " ")] = metrics.roc(s.scores[s.same], s.scores[~s.same])
            pl[f"{name}_scores"] = plots.score_histogram(
                s.scores[s.same & ok], s.scores[~s.same & ok], out / f"verify-{name.replace('_', '-')}-scores.png",
                threshold=args.threshold, title=f"{name.replace('_', ' ')} ({args.mask_probe}): score distributions")
        pl["roc"] = plots.roc_plot(curve, out / "verify-roc.png")
        pl["det"] = plots.det_plot(curve, out / "verify-det.png")
        _say_masked(mfig)
    return _finish(args, "verify", _dataset(args, pairs=len(pairs)), session, figures, pl, started, stats)


def _say_masked(m: dict[str, Any], title: str = "masked") -> None:
    fta = m["failure_to_acquire"]
    md = m["mask_detection"]
    say(f"{title}: failure to acquire {fta['no_face']}/{fta['masked_images']} (eyes called hidden, refused: "
        f"{fta.get('eyes_called_hidden', 0)}; bare faces so called: {fta.get('bare_eyes_called_hidden', 0)}); "
        f"mask detection: masked found "
        f"{md['masked_found']['value']:.4f}, bare called masked {md['bare_called_masked']['value']:.4f}")
    for name in ("unmasked", "probe_masked", "probe_masked_plain", "both_masked", "both_masked_plain",
                 "enrolment_masked", "enrolment_masked_plain"):
        f = m.get(name)
        if not isinstance(f, dict):
            continue
        at = f["at_default_threshold"]
        acc = f.get("accuracy_10fold", {})
        say(f"  {name:22s} 10-fold {acc.get('mean', float('nan')):.4f}  at threshold: accuracy "
            f"{at['accuracy']['value']:.4f} FMR {at['fmr']['value']:.4f} FNMR {at['fnmr']['value']:.4f}  "
            f"FNMR@FMR1e-3 {f['fnmr_at_fmr']['0.001']:.4f} @1e-2 {f['fnmr_at_fmr']['0.01']:.4f}")
    held = m.get("held_out")
    if isinstance(held, dict):
        _say_masked(held, f"held-out people only ({held['pairs']} pairs; the mask detector never saw them)")


def _identify(args: argparse.Namespace) -> int:
    from ..evaluate import identification as ident
    from ..evaluate import plots
    from ..evaluate.datasets import identities

    started = time.perf_counter()
    ss = ident.split(identities(args.root), holdout=args.holdout, limit=args.limit)
    session = _session(args)
    records, stats = session.embed(ss.paths())
    say(f"{stats.images} images: {stats.embedded} embedded, {stats.from_cache} from cache, {stats.no_face} without a face")
    sc = ident.search(ss, records)
    figures = ident.identification_metrics(sc)
    out = args.out
    pl = {"cmc": plots.cmc_plot(np.array(figures["cmc"]), out / "identify-cmc.png")}
    if len(sc.nonmated_top):
        pl["scores"] = plots.score_histogram(sc.mate_scores[np.isfinite(sc.mate_scores)], sc.nonmated_top,
                                             out / "identify-scores.png", threshold=args.threshold,
                                             title="mate scores vs best non-mated scores")
    if args.mask_probe:
        from ..evaluate import masked as mk

        mrec = mk.masked_records(session, ss.paths(), args.mask_probe, args.mask_seed, progress=not args.no_progress)
        masked_t, both_t = _masked_args(args)
        ifig = mk.masked_identification(ss, records, mrec, args.threshold, masked_t, both_t)
        ifig["kind"], ifig["seed"] = args.mask_probe, args.mask_seed
        figures["masked"] = ifig
    return _finish(args, "identify", _dataset(args, people=len({n for n, _ in ss.gallery + ss.mated + ss.nonmated})),
                   session, figures, pl, started, stats)


def _demographics(args: argparse.Namespace) -> int:
    from ..evaluate import plots
    from ..evaluate.datasets import read_groups
    from ..evaluate.demographics import differentials
    from ..evaluate.verification import score_pairs

    started = time.perf_counter()
    groups = read_groups(args.groups)
    pairs, session, records, stats = _pairs_and_records(args)
    ps = score_pairs(pairs, records)
    figures: dict[str, Any] = {}
    pl: dict[str, Path] = {}
    for attr, labels in groups.items():
        d = differentials(pairs, ps.scores, labels, args.threshold)
        figures[attr] = d
        rows: dict[str, Any] = d["groups"]  # type: ignore[assignment]
        for metric in ("fmr", "fnmr"):
            vals = {g: r[metric]["value"] for g, r in rows.items() if metric in r}
            ivs = {g: (r[metric]["low"], r[metric]["high"]) for g, r in rows.items() if metric in r}
            if vals:
                safe = "".join(c if c.isalnum() else "_" for c in attr)
                pl[f"{attr}-{metric}"] = plots.group_bars(vals, args.out / f"demographics-{safe}-{metric}.png",
                                                          metric.upper(), ivs)
    return _finish(args, "demographics", _dataset(args, groups_file=str(args.groups), attributes=list(groups)),
                   session, figures, pl, started, stats)


def _protection(args: argparse.Namespace) -> int:
    from ..evaluate import plots
    from ..evaluate.protection import default_factory, protection_metrics

    started = time.perf_counter()
    factory = default_factory()  # fail before embedding anything when protection is missing
    pairs, session, records, stats = _pairs_and_records(args)
    figures, unl, sc = protection_metrics(pairs, records, session.pipeline.engine.embedding_dim, factory)
    out = args.out
    pl = {"unlinkability": plots.score_histogram(sc["cross_mated"], sc["cross_nonmated"], out / "protection-unlinkability.png",
                                                 title="linkage scores across two keys", local=unl["protected"]),
          "unlinkability_raw": plots.score_histogram(sc["raw_mated"], sc["raw_nonmated"], out / "protection-raw.png",
                                                     title="raw templates (no protection)", local=unl["raw"])}
    return _finish(args, "protection", _dataset(args, pairs=len(pairs)), session, figures, pl, started, stats)


def _pad(args: argparse.Namespace) -> int:
    from ..evaluate.pad import evaluate_pad, make_pad_set

    if args.make is not None:
        stills: list[Path] = []
        for s in args.stills:
            stills += sorted(p for p in s.rglob("*") if p.suffix.lower() in (".jpg", ".jpeg", ".png")) if s.is_dir() else [s]
        counts = make_pad_set(args.make, stills, args.live, per_kind=args.per_kind, seed=args.seed,
                              live_stride=args.live_stride)
        print_json({"written": str(args.make), "counts": counts})
        return EXIT_OK
    result = evaluate_pad(args.root, args.out)
    summary = {k: v for k, v in result.items() if k != "outcomes"}
    if args.json:
        print_json(summary)
    else:
        for t, v in result["apcer"].items():
            r = result["rates"][t]
            if v is None:
                print(f"APCER {t:10s}     -   (none of {r['count']} attacks acquired: no figure)")
                continue
            print(f"APCER {t:10s} {100 * v:5.1f}%  ({r['acquired']} of {r['count']} attacks acquired: "
                  f"{100 * r['attack']:.0f}% called attack, {100 * r['inconclusive']:.0f}% inconclusive)")
        live = result["rates"]["live"]
        print(f"BPCER            {100 * result['bpcer']:5.1f}%  ({live['acquired']} of {live['count']} live clips "
              f"acquired: {100 * live['attack']:.0f}% called attack, {100 * live['inconclusive']:.0f}% inconclusive)")
        acer = result["acer"]
        print(f"ACER             {100 * acer:5.1f}%" if acer is not None else "ACER               -   (no attack acquired)")
        print(f"check time: median {1000 * result['seconds_median']:.0f} ms, p95 {1000 * result['seconds_p95']:.0f} ms")
        print(f"DET plot: {result['det_plot']}")
    return EXIT_OK
