"""`safeface models list|fetch|verify|add-custom|convert`: what models are installed, the one
explicit way to download a pack, and hash checks of everything installed."""

from __future__ import annotations

import argparse
import importlib
import sys
from pathlib import Path
from typing import Any, Optional

from ..errors import ModelError
from .common import EXIT_ERROR, EXIT_INTEGRITY, EXIT_OK, print_json, say


def _dest(args: argparse.Namespace) -> Optional[Path]:
    return Path(args.dest) if getattr(args, "dest", None) else None


def _cmd_list(args: argparse.Namespace) -> int:
    from ..modelstore.fetch import list_models

    rows = list_models(_dest(args))
    if args.json:
        print_json(rows)
        return EXIT_OK
    for r in rows:
        state = "verified" if r["verified"] else ("INSTALLED, FAILS ITS HASH" if r["installed"] else "not installed")
        print(f"{r['name']:<20} {r['kind']:<8} {r['task']:<22} {state}")
        print(f"{'':<20} licence: {r['licence']}")
    return EXIT_OK


def _progress() -> Any:
    last = [-1]

    def report(got: int, total: Optional[int]) -> None:
        if total:
            pct = int(got * 100 / total)
            if pct // 10 != last[0]:
                last[0] = pct // 10
                say(f"  {pct}% of {total / 1e6:.1f} MB")

    return report


def _cmd_fetch(args: argparse.Namespace) -> int:
    from ..modelstore.fetch import fetch_pack

    say(f"fetching pack {args.name} ...")
    result = fetch_pack(args.name, dest_dir=_dest(args), url=args.url, sha256=args.sha256,
                        timeout=args.timeout, force=args.force,
                        progress=None if args.json else _progress())
    return _report_pack(result, args.json)


def _report_pack(result: Any, as_json: bool) -> int:
    """What a fetch or a custom install put in place, and the pack's licence."""
    if as_json:
        print_json(result.to_dict())
    else:
        verb = "already installed and verified" if result.already_installed else "installed"
        print(f"pack {result.name} {verb} at {result.path}")
        for f in result.installed:
            print(f"  {f.role:<12} {f.file}  sha256 {f.sha256}")
        for r in result.refused:
            print(f"  REFUSED      {r['file']}: {r['reason']}")
        for s in result.skipped:
            print(f"  skipped      {s['file']}: {s['reason']}")
    # The licence goes to stderr as well so it is seen even when stdout is parsed.
    say(f"LICENCE of pack {result.name}: {result.licence}")
    return EXIT_OK


def _cmd_add_custom(args: argparse.Namespace) -> int:
    from ..modelstore.fetch import install_custom

    kwargs: dict[str, Any] = {}
    if args.licence:
        kwargs["licence"] = args.licence
    result = install_custom(Path(args.detector), Path(args.recognizer), name=args.name,
                            dest_dir=_dest(args), force=args.force, **kwargs)
    return _report_pack(result, args.json)


def _cmd_verify(args: argparse.Namespace) -> int:
    from ..modelstore.fetch import verify_installed

    rows = verify_installed(_dest(args))
    if args.json:
        print_json(rows)
    else:
        for r in rows:
            print(f"{'ok  ' if r['ok'] else 'FAIL'} {r['name']:<20} {r['reason']}")
    # A file that is present but differs from its recorded hash is an integrity failure; a
    # package model that is simply not installed is not.
    bad = [r for r in rows if not r["ok"] and r.get("path") and Path(r["path"]).exists()]
    if bad:
        if not args.json:
            say(f"{len(bad)} installed model(s) failed verification: " + ", ".join(r["name"] for r in bad))
        return EXIT_INTEGRITY
    return EXIT_OK


def _cmd_convert(args: argparse.Namespace) -> int:
    try:
        module = importlib.import_module("safeface.modelstore.onnx_convert")
    except ModuleNotFoundError as exc:
        if exc.name not in ("safeface.modelstore.onnx_convert",):
            raise ModelError(f"the ONNX converter needs a module that is missing ({exc}).") from None
        sys.stderr.write(
            "safeface: error: the ONNX converter (safeface.modelstore.onnx_convert) is not part of this "
            "installation.\n"
        )
        return EXIT_ERROR
    rows = module.convert_all(force=args.force)
    if args.json:
        print_json(rows)
    else:
        for r in rows:
            print("  ".join(f"{k}={v}" for k, v in r.items()))
    return EXIT_OK


def register(sub: Any) -> None:
    p = sub.add_parser("models", help="list, fetch and verify model files")
    msub = p.add_subparsers(dest="models_command", metavar="ACTION", parser_class=type(p))
    p.set_defaults(func=lambda a: (p.print_help(sys.stderr), 2)[1])

    q = msub.add_parser("list", help="models safeface knows, their licence, and whether they verify")
    q.add_argument("--dest", help="packs directory (default: $SAFEFACE_HOME/models/packs)")
    q.add_argument("--json", action="store_true", help="print JSON")
    q.set_defaults(func=_cmd_list)

    q = msub.add_parser("fetch", help="download, verify and install a model pack (prints its licence)")
    q.add_argument("name", help="pack name: buffalo_l, buffalo_s, antelopev2, or your own with --url")
    q.add_argument("--url", help="download from this URL instead (https; http only for localhost)")
    q.add_argument("--sha256", help="the archive's SHA-256 (required when the manifest has none)")
    q.add_argument("--dest", help="packs directory (default: $SAFEFACE_HOME/models/packs)")
    q.add_argument("--timeout", type=float, default=60.0, help="network timeout in seconds (default 60)")
    q.add_argument("--force", action="store_true", help="replace an installed pack")
    q.add_argument("--json", action="store_true", help="print JSON")
    q.set_defaults(func=_cmd_fetch)

    q = msub.add_parser("add-custom", help="install your own SCRFD detector and ArcFace recognizer ONNX files")
    q.add_argument("--detector", required=True, help="SCRFD detector .onnx (with 5-point landmarks)")
    q.add_argument("--recognizer", required=True, help="ArcFace recognizer .onnx (112x112 input)")
    q.add_argument("--name", default="custom", help="pack name (default: custom)")
    q.add_argument("--licence", help="the licence of your files, recorded with the pack")
    q.add_argument("--dest", help="packs directory (default: $SAFEFACE_HOME/models/packs)")
    q.add_argument("--force", action="store_true", help="replace an installed pack of that name")
    q.add_argument("--json", action="store_true", help="print JSON")
    q.set_defaults(func=_cmd_add_custom)

    q = msub.add_parser("verify", help="check every installed model file against its SHA-256 (exit 4 on a mismatch)")
    q.add_argument("--dest", help="packs directory (default: $SAFEFACE_HOME/models/packs)")
    q.add_argument("--json", action="store_true", help="print JSON")
    q.set_defaults(func=_cmd_verify)

    q = msub.add_parser("convert", help="convert dlib's models to ONNX")
    q.add_argument("--force", action="store_true", help="convert again even if converted files exist")
    q.add_argument("--json", action="store_true", help="print JSON")
    q.set_defaults(func=_cmd_convert)


__all__ = ["register"]
