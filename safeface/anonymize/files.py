"""File handling shared by image and video anonymization: kinds by extension, the guard that
never lets an output replace its input."""

from __future__ import annotations

import os
from pathlib import Path

from ..errors import ImageError
from ..lookalike import spelled
from ..regularfile import check_path_text

IMAGE_EXTENSIONS = {".jpg": "JPEG", ".jpeg": "JPEG", ".png": "PNG", ".bmp": "BMP", ".webp": "WEBP",
                    ".tif": "TIFF", ".tiff": "TIFF"}
VIDEO_EXTENSIONS = {".mp4": "mp4", ".m4v": "mp4", ".mov": "mov", ".avi": "avi", ".mkv": "matroska"}


def kind_of(path: Path) -> str:
    ext = path.suffix.lower()
    if ext in IMAGE_EXTENSIONS:
        return "image"
    if ext in VIDEO_EXTENSIONS:
        return "video"
    raise ImageError(
        f"{path}: unsupported extension {spelled(ext) if ext else repr('(none)')}; images: {', '.join(sorted(IMAGE_EXTENSIONS))}; "
        f"videos: {', '.join(sorted(VIDEO_EXTENSIONS))}."
    )


def check_paths(in_path: Path, out_path: Path) -> tuple[str, str]:
    """Kinds of input and output; raises ImageError before anything is read or written when the
    pair is unusable. The output may never be the input, under any name (symlink, hard link)."""
    check_path_text(in_path)
    check_path_text(out_path)
    if not in_path.exists():
        raise ImageError(f"{in_path}: no such file; check the path.")
    if not in_path.is_file():
        raise ImageError(f"{in_path}: not a regular file.")
    try:
        same = in_path.resolve() == out_path.resolve() or (out_path.exists() and os.path.samefile(in_path, out_path))
    except (OSError, RuntimeError) as exc:  # a link loop (RuntimeError before Python 3.13)
        raise ImageError(f"{out_path}: the path cannot be followed ({exc}); choose another output path.") from None
    if same:
        raise ImageError(f"{out_path}: the output is the input file; choose another output path (the input is never overwritten).")
    in_kind, out_kind = kind_of(in_path), kind_of(out_path)
    if in_kind != out_kind:
        raise ImageError(f"{out_path}: cannot write a {in_kind} input as a {out_kind}; use an output extension of the same kind.")
    if not out_path.parent.is_dir():
        raise ImageError(f"{out_path.parent}: the output folder does not exist.")
    if out_path.exists() and not out_path.is_file():
        raise ImageError(f"{out_path}: exists and is not a regular file.")
    return in_kind, out_kind
