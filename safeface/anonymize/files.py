"""File handling shared by image and video anonymization: kinds by extension, the guard that
never lets an output replace its input, hashing, and atomic writes (temp file, then rename)."""

from __future__ import annotations

import os
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

from ..errors import ImageError

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
        f"{path}: unsupported extension {ext or '(none)'!r}; images: {', '.join(sorted(IMAGE_EXTENSIONS))}; "
        f"videos: {', '.join(sorted(VIDEO_EXTENSIONS))}."
    )


def check_paths(in_path: Path, out_path: Path) -> tuple[str, str]:
    """Kinds of input and output; raises ImageError before anything is read or written when the
    pair is unusable. The output may never be the input, under any name (symlink, hard link)."""
    if not in_path.exists():
        raise ImageError(f"{in_path}: no such file; check the path.")
    if not in_path.is_file():
        raise ImageError(f"{in_path}: not a regular file.")
    if in_path.resolve() == out_path.resolve() or (out_path.exists() and os.path.samefile(in_path, out_path)):
        raise ImageError(f"{out_path}: the output is the input file; choose another output path (the input is never overwritten).")
    in_kind, out_kind = kind_of(in_path), kind_of(out_path)
    if in_kind != out_kind:
        raise ImageError(f"{out_path}: cannot write a {in_kind} input as a {out_kind}; use an output extension of the same kind.")
    if not out_path.parent.is_dir():
        raise ImageError(f"{out_path.parent}: the output folder does not exist.")
    if out_path.exists() and not out_path.is_file():
        raise ImageError(f"{out_path}: exists and is not a regular file.")
    return in_kind, out_kind


@contextmanager
def atomic_output(out_path: Path) -> Iterator[Path]:
    """A temporary path beside `out_path`, renamed onto it only when the block succeeds; a
    failure leaves any earlier file at `out_path` untouched and no partial file behind."""
    fd, tmp = tempfile.mkstemp(prefix=f".{out_path.stem}.", suffix=out_path.suffix, dir=out_path.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        os.replace(tmp_path, out_path)
    except BaseException:
        tmp_path.unlink(missing_ok=True)
        raise


def match_umask(path: Path) -> None:
    """mkstemp makes 0600 files; the output gets the permissions any new file would. The umask
    is read, not set and restored, since setting it would race with other threads."""
    mask = 0o022
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                mask = int(line.split()[1], 8)
    except OSError:
        pass
    os.chmod(path, 0o666 & ~mask)
