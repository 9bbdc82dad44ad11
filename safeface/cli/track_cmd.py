"""`safeface track VIDEO OUT`: follow people by clothing, faces covered; `safeface track search
VIDEO --describe "red top, blue trousers"`: the tracks that fit a description."""

from __future__ import annotations

import argparse
from dataclasses import replace
from pathlib import Path
from typing import Any, Optional

from ..errors import InvalidArgument
from .common import EXIT_OK, print_json, say


def register(sub: Any) -> None:
    p = sub.add_parser(
        "track",
        help="follow people by clothing and motion, faces covered (no face recognised, no consent token)",
        description="safeface track VIDEO OUT.mp4 [--json]: write VIDEO with faces covered and tracks drawn. "
        "safeface track search VIDEO --describe \"red top, blue trousers, child\": the best-fitting tracks with "
        "their time spans. Descriptions use a closed vocabulary: colours (black, white, grey, red, orange, "
        "yellow, green, blue, purple, pink, brown), garments (top, shirt, jacket, coat, ...; trousers, jeans, "
        "skirt, ...) and sizes (child, adult, tall).",
    )
    p.add_argument("paths", nargs="+", metavar="ARG", help="VIDEO OUT, or: search VIDEO")
    p.add_argument("--describe", default=None, help="search: the description to look for")
    p.add_argument("--top", type=int, default=3, help="search: how many tracks to list (default 3)")
    p.add_argument("--thumbnails", type=Path, default=None,
                   help="search: write each hit's thumbnail (faces covered) as a PNG into this folder")
    p.add_argument("--person-detector", choices=("motion", "hog"), default="motion",
                   help="motion: fixed camera, real time (default); hog: OpenCV's HOG people detector, slower")
    p.add_argument("--fast", action="store_true",
                   help="the anonymizer's real-time face search (every other frame, faces from about 80 px at 640 px "
                        "width, 160 px in larger frames)")
    p.add_argument("--min-face", type=float, default=None, metavar="PX",
                   help="the anonymizer's face search: the widest face a frame may be searched too coarsely to find "
                        "(default 80, 160 with --fast)")
    p.add_argument("--max-video-bytes", type=int, default=None, metavar="N",
                   help="video: refuse a larger file before reading it (default 32 GiB)")
    p.add_argument("--masked", action="store_true",
                   help="the anonymizer's face search also looks for masked faces beside the covered head zones "
                        "(slower: below real time by default)")
    p.add_argument("--json", action="store_true", help="print the tracks (or hits) as JSON on stdout")
    p.add_argument("--workspace", default=None, help="run under this workspace's guard and audit log")
    p.add_argument("--purpose", default=None, help="with --workspace: the declared purpose of the tracking")
    p.add_argument("--passphrase-file", type=Path, default=None, help="the workspace keyring's passphrase file")
    p.set_defaults(func=run)


def _run_tracking(args: argparse.Namespace, video: str, out: Optional[str], describe: Optional[str] = None,
                  top: int = 3) -> Any:
    """The tracking run's result or, with `describe`, its hits for that description: in a
    workspace the search is made while the workspace is open, judged and recorded there."""
    from ..tracking import TrackOptions, track_video
    from ..tracking.run import covering

    video_opts = replace(covering(args.fast), masked=bool(args.masked))
    if args.min_face is not None:
        video_opts = replace(video_opts, min_face=args.min_face)
    if args.max_video_bytes is not None:
        video_opts = replace(video_opts, max_bytes=args.max_video_bytes)
    opts = TrackOptions(detector=args.person_detector, video=video_opts)
    if args.purpose is not None and not args.workspace:
        # Only a workspace judges a purpose and records the run: without one, a purpose given
        # (undeclared or ended alike) was ignored and the run went unrecorded.
        raise InvalidArgument("--purpose is judged and recorded only in a workspace; add --workspace WS, or leave "
                              "--purpose out for an unrecorded run.")
    if args.workspace:
        from ..sdk import SafeFace

        if not args.purpose:
            raise InvalidArgument("tracking in a workspace needs --purpose, one the deployment declares.")
        with SafeFace.open(args.workspace, passphrase_file=args.passphrase_file) as sf:
            result = sf.track(video, args.purpose, out, options=opts, describe=describe)
            return result if describe is None else result.search(describe, top)
    result = track_video(video, out, opts)
    return result if describe is None else result.search(describe, top)


def run(args: argparse.Namespace) -> int:
    paths = list(args.paths)
    if paths[0] == "search":
        if len(paths) != 2 or not args.describe:
            raise InvalidArgument("usage: safeface track search VIDEO --describe \"red top, blue trousers\".")
        from ..tracking import parse

        parse(args.describe)  # a bad description is refused before the video is read
        if args.thumbnails is not None:
            _thumbnails_folder(args.thumbnails)  # made (or refused) before the video is read
        hits = _run_tracking(args, paths[1], None, args.describe, args.top)
        if args.thumbnails is not None:
            _write_thumbnails(args.thumbnails, hits)
        if args.json:
            print_json({"description": args.describe, "hits": [h.to_dict() for h in hits]})
        else:
            for h in hits:
                say(f"{h.track_id}  {h.start_s:7.1f}-{h.end_s:7.1f} s  score {h.score:.2f}  top {'/'.join(h.colours['top'])}"
                    f"  bottom {'/'.join(h.colours['bottom'])}  {h.size}")
        return EXIT_OK
    if len(paths) != 2:
        raise InvalidArgument("usage: safeface track VIDEO OUT.mp4 [--json], or safeface track search VIDEO --describe TEXT.")
    result = _run_tracking(args, paths[0], paths[1])
    if args.json:
        print_json(result.to_dict())
    else:
        say(f"{paths[1]}: {result.frames} frames, {len(result.people)} track(s), {result.report.face_count} face(s) covered.")
    return EXIT_OK


def _thumbnails_folder(folder: Path) -> None:
    """The thumbnails folder, made as `report --out` and `eval --out` make theirs (none of it
    writable by others): the README's `--thumbnails hits/` names one that is not there yet,
    which was refused after the whole video had been tracked."""
    from ..atomicfile import make_dirs

    try:
        make_dirs(folder)
    except OSError as e:
        raise InvalidArgument(f"{folder}: the thumbnails folder cannot be made ({e.strerror}).") from None
    if not folder.is_dir():
        raise InvalidArgument(f"{folder}: the thumbnails folder is not a folder.")


def _write_thumbnails(folder: Path, hits: list[Any]) -> None:
    """Crops of covered frames, written only when asked for, each atomically: a killed run
    leaves no half-written file."""
    from PIL import Image

    from ..atomicfile import atomic_writer

    if not folder.is_dir():
        raise InvalidArgument(f"{folder}: the thumbnails folder does not exist.")
    for rank, h in enumerate(hits, 1):
        if h.thumbnail is not None:
            with atomic_writer(folder / f"{rank}-{h.track_id}.png") as fh:
                Image.fromarray(h.thumbnail).save(fh, format="PNG")
