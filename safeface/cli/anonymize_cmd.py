"""`safeface anonymize IN OUT`: blur, pixelate or paint out every face in a photo or video."""

from __future__ import annotations

import argparse
import dataclasses
from pathlib import Path
from typing import Any

from ..anonymize import DEFAULT_DETECTOR, DEFAULT_MARGIN, DEFAULT_MODE, DETECTORS, MODES, VideoOptions, anonymize_file
from .common import EXIT_OK, print_json, say


def register(sub: Any) -> None:
    p = sub.add_parser(
        "anonymize",
        help="cover every face in an image or video (no recognition, no consent needed)",
        description="Write a copy of IN with every face covered to OUT (same kind: image or video). "
        "Metadata (EXIF, GPS, container tags) is not carried over; the input is never modified.",
    )
    p.add_argument("input", metavar="IN", help="image (JPEG, PNG, BMP, WebP, TIFF) or video (MP4, MOV, MKV, AVI)")
    p.add_argument("output", metavar="OUT", help="output path; its extension picks the format")
    p.add_argument("--mode", choices=MODES, default=DEFAULT_MODE, help=f"how faces are covered, always under grain (default {DEFAULT_MODE})")
    p.add_argument("--margin", type=float, default=DEFAULT_MARGIN,
                   help=f"cover margin as a fraction of the face box on each side, more above (default {DEFAULT_MARGIN})")
    p.add_argument("--detector", choices=DETECTORS, default=DEFAULT_DETECTOR,
                   help=f"face detector; HOG always runs beside it as a safety net (default {DEFAULT_DETECTOR})")
    p.add_argument("--fast", action="store_true",
                   help="video: real-time setting (detect every other frame, faces from about 80 px at 640 px width, "
                        "160 px in larger frames)")
    p.add_argument("--min-face", type=float, default=None, metavar="PX",
                   help="video: the widest face a frame may be searched too coarsely to find, in px of the frame "
                        "(default 80, 160 with --fast); a large frame searched finer costs more time")
    p.add_argument("--max-video-bytes", type=int, default=None, metavar="N",
                   help="video: refuse a larger file before reading it (default 32 GiB)")
    p.add_argument("--masked", action=argparse.BooleanOptionalAction, default=True,
                   help="video: also search every frame for masked faces (default; photos always are); "
                        "--no-masked is faster and can leave a masked face uncovered")
    p.add_argument("--json", action="store_true", help="print the report as JSON on stdout")
    p.add_argument("--workspace", default=None,
                   help="also record the run (input SHA-256, face count) in this workspace's audit log")
    p.add_argument("--passphrase-file", type=Path, default=None, help="the workspace keyring's passphrase file")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    show = not args.json
    video = VideoOptions.fast(progress=True) if args.fast else VideoOptions(progress=True)
    video = dataclasses.replace(video, masked=args.masked)
    if args.min_face is not None:
        video = dataclasses.replace(video, min_face=args.min_face)
    if args.max_video_bytes is not None:
        video = dataclasses.replace(video, max_bytes=args.max_video_bytes)
    report = anonymize_file(args.input, args.output, args.mode, args.margin, args.detector, video=video)
    if args.workspace:
        from ..sdk import SafeFace

        with SafeFace.open(args.workspace, passphrase_file=args.passphrase_file) as sf:
            sf.record_anonymization(report)
    if args.json:
        print_json(report.to_dict())
    elif show:
        what = f"{report.frames} frames, " if report.kind == "video" else ""
        say(f"{args.output}: {what}{report.face_count} face(s) covered ({report.mode}).")
    return EXIT_OK
