"""`safeface liveness`: issue a challenge, check a clip (with a workspace: evidence for the next
guarded call; without one: physics and replay cues only)."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from ..errors import InvalidArgument
from .common import EXIT_OK, print_json


def register(sub: Any) -> None:
    lv = sub.add_parser("liveness", help="liveness: a challenge, then a 1-3 s clip of the person answering it")
    ls = lv.add_subparsers(dest="liveness_command", metavar="STEP")
    p = ls.add_parser("challenge", help="issue a random challenge (head turns) that expires in seconds")
    p.add_argument("workspace")
    p.add_argument("--mirrored", action="store_true", help="the clip answering it will be recorded mirrored (a selfie "
                   "preview); `check` then reads the clip so")
    p.add_argument("--passphrase-file", type=Path, default=None)
    p.add_argument("--role", default=None)
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=_challenge)
    p = ls.add_parser("check", help="check a clip: `check WS CLIP --challenge ID` (evidence) or `check CLIP` "
                      "(physics and replay cues only)")
    p.add_argument("paths", nargs="+", metavar="[WS] CLIP", help="the workspace (optional) and the clip: a video "
                   "file or a folder of frames")
    p.add_argument("--challenge", default=None, help="the challenge id from `liveness challenge`")
    p.add_argument("--fps", type=float, default=10.0, help="frame rate of a folder of frames (default 10)")
    p.add_argument("--mirrored", action="store_true", default=None,
                   help="the clip was recorded mirrored (a selfie preview); in a workspace the challenge says so "
                   "(`liveness challenge --mirrored`) and a check that differs is refused")
    p.add_argument("--pad-model", type=Path, default=None, metavar="SPEC.json",
                   help="without a workspace: your ONNX PAD model, described as deployment.json's liveness_model "
                   "(file relative to SPEC.json, sha256, licence, ...); it can only veto (in a workspace the "
                   "deployment's liveness_model is used)")
    p.add_argument("--passphrase-file", type=Path, default=None)
    p.add_argument("--role", default=None)
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=_check)


def _challenge(args: argparse.Namespace) -> int:
    from ..sdk import SafeFace

    with SafeFace.open(args.workspace, passphrase_file=args.passphrase_file, role=args.role) as sf:
        ch = sf.liveness_challenge(mirrored=args.mirrored)
    if args.json:
        print_json(ch.to_dict())
    else:
        print(f"challenge {ch.nonce}: {ch.text} (expires in {ch.expires_at - ch.issued_at:.0f} s"
              f"{'; the clip is read as mirrored' if ch.mirrored else ''})")
    return EXIT_OK


def _check(args: argparse.Namespace) -> int:
    if len(args.paths) > 2:
        raise InvalidArgument("give the workspace and one clip, or one clip.")
    if len(args.paths) == 2:
        from ..sdk import SafeFace

        if not args.challenge:
            raise InvalidArgument("a check in a workspace answers a challenge: pass --challenge ID from "
                                  "`safeface liveness challenge WS`.")
        if args.pad_model is not None:
            raise InvalidArgument("in a workspace the PAD model is the deployment's liveness_model; --pad-model is "
                                  "for a check without one.")
        with SafeFace.open(args.paths[0], passphrase_file=args.passphrase_file, role=args.role) as sf:
            result: Any = sf.liveness_check(args.paths[1], args.challenge, mirrored=args.mirrored, fps=args.fps)
    else:
        if args.challenge:
            raise InvalidArgument("a challenge belongs to a workspace: `safeface liveness check WS CLIP --challenge ID`.")
        from ..capture.liveness import check_liveness

        model = _pad_model(args.pad_model) if args.pad_model is not None else None
        result = check_liveness(args.paths[0], fps=args.fps, mirrored=bool(args.mirrored), pad_model=model)
    if args.json:
        print_json(result.to_dict())
    else:
        print(f"{result.decision} (score {result.score:.2f}): {result.checks.get('reason', '')}")
        if getattr(result, "evidence", None):
            print(f"evidence: {result.evidence}")
    return EXIT_OK


def _pad_model(spec_file: Path) -> Any:
    """The user's PAD model from a JSON description (the keys of deployment.json's liveness_model),
    pinned by its SHA-256 like the workspace's."""
    import json

    from ..capture.pad_model import PadModel, PadModelSpec
    from ..errors import ConfigError
    from ..regularfile import read_text

    # Read as every file a user names is: a regular file, bounded (a FIFO waited for ever).
    text = read_text(Path(spec_file), f"the PAD model description {spec_file}", 64 * 1024)
    try:
        raw = json.loads(text)
    except ValueError as exc:
        raise ConfigError(f"{spec_file}: not a readable JSON description of a PAD model ({type(exc).__name__}).") from None
    return PadModel(PadModelSpec.from_mapping(raw, Path(spec_file).resolve().parent))
