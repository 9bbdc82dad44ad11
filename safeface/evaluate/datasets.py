"""Test sets on disk: LFW-style pairs files, folder-per-identity trees, and group-label CSVs.

A pairs file is LFW's: View 1 starts with one number N, then N same-person lines `name i j` and
N different-person lines `name1 i name2 j`; View 2 starts with `folds N` and repeats that block
once per fold. Image i of a person is `<root>/<name>/<name>_<i as 4 digits>.jpg`."""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Optional, Sequence

from ..errors import ConfigError
from ..regularfile import read_text

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".webp")
FOLDS = 10


@dataclass(frozen=True)
class Pair:
    """Two images and whether they show the same person. `fold` is the cross-validation fold."""

    image1: Path
    image2: Path
    subject1: str
    subject2: str
    same: bool
    fold: int


def image_root(root: Path) -> Path:
    """The folder that holds one sub-folder per person: `root`, or `root/images` when present."""
    root = Path(root)
    if not root.is_dir():
        raise ConfigError(f"{root}: no such folder; pass the folder that holds one sub-folder per person.")
    nested = root / "images"
    return nested if nested.is_dir() else root


def lfw_image(root: Path, name: str, index: int) -> Path:
    return root / name / f"{name}_{index:04d}.jpg"


# A pairs file or a groups CSV the operator names: LFW's View 2 pairs file is about 100 KiB.
MAX_LIST_FILE_BYTES = 64 * 1024 * 1024


def read_pairs(pairs_file: Path, root: Path, limit: Optional[int] = None) -> list[Pair]:
    """The pairs of an LFW pairs file (View 1 or View 2), with a fold each.

    View 2 keeps its own folds. A single block (View 1, LFW dev) is split into ten folds, each
    holding the same share of same-person and different-person pairs. `limit` keeps a balanced
    subset (half same, half different) and refolds it."""
    pairs_file = Path(pairs_file)
    # As every file a user names is read: a regular file, bounded (a FIFO waited for ever).
    text = read_text(pairs_file, f"the pairs file {pairs_file}", MAX_LIST_FILE_BYTES)
    lines = [ln.split() for ln in text.splitlines() if ln.strip()]
    if not lines:
        raise ConfigError(f"{pairs_file}: empty pairs file.")
    root = image_root(root)
    head = lines[0]
    try:
        if len(head) == 1:
            folds, per_class = 1, int(head[0])
        elif len(head) == 2:
            folds, per_class = int(head[0]), int(head[1])
        else:
            raise ValueError
    except ValueError:
        raise ConfigError(f"{pairs_file}: the first line must be `N` or `folds N` (LFW's pairs format).") from None
    body = lines[1:]
    if len(body) != folds * 2 * per_class:
        raise ConfigError(
            f"{pairs_file}: the header promises {folds} x 2 x {per_class} pairs but the file has {len(body)} lines."
        )
    pairs: list[Pair] = []
    for n, tokens in enumerate(body):
        fold = n // (2 * per_class)
        want_same = (n % (2 * per_class)) < per_class
        try:
            if len(tokens) == 3 and want_same:
                name, i, j = tokens
                pairs.append(Pair(lfw_image(root, name, int(i)), lfw_image(root, name, int(j)), name, name, True, fold))
            elif len(tokens) == 4 and not want_same:
                a, i, b, j = tokens
                pairs.append(Pair(lfw_image(root, a, int(i)), lfw_image(root, b, int(j)), a, b, False, fold))
            else:
                raise ValueError
        except ValueError:
            kind = "`name i j`" if want_same else "`name1 i name2 j`"
            raise ConfigError(f"{pairs_file}: line {n + 2} should be {kind}.") from None
    if limit is not None:
        if limit < 2:
            raise ConfigError("--limit must keep at least 2 pairs (one same-person, one different-person).")
        same = [p for p in pairs if p.same][: (limit + 1) // 2]
        diff = [p for p in pairs if not p.same][: limit // 2]
        pairs, folds = same + diff, 1
    if folds == 1:
        pairs = _refold(pairs)
    missing = [p for p in pairs for path in (p.image1, p.image2) if not path.is_file()]
    if missing:
        raise ConfigError(f"{missing[0].image1 if not missing[0].image1.is_file() else missing[0].image2}: "
                          f"image of a pair not found ({len(missing)} pair(s) affected); check --root.")
    return pairs


def _refold(pairs: Sequence[Pair]) -> list[Pair]:
    """Ten folds, each with an equal share of each class (in file order, as LFW's folds are)."""
    out: list[Pair] = []
    for same in (True, False):
        group = [p for p in pairs if p.same == same]
        for k, p in enumerate(group):
            out.append(replace(p, fold=k * FOLDS // max(1, len(group))))
    return out


def identities(root: Path, min_images: int = 1) -> dict[str, list[Path]]:
    """Folder-per-identity: {person: sorted image paths} for people with at least `min_images`."""
    root = image_root(root)
    out: dict[str, list[Path]] = {}
    for d in sorted(p for p in root.iterdir() if p.is_dir()):
        files = sorted(f for f in d.iterdir() if f.suffix.lower() in IMAGE_SUFFIXES and f.is_file())
        if len(files) >= min_images:
            out[d.name] = files
    if not out:
        raise ConfigError(f"{root}: no sub-folders with images; expected one folder per person.")
    return out


def read_groups(csv_file: Path) -> dict[str, dict[str, str]]:
    """Operator-supplied group labels: {attribute: {subject: group}}.

    The CSV has a `subject` column (the person's folder name) and one column per attribute, e.g.
    `subject,sex,age_band`. Labels come from the operator; safeface never infers them."""
    text = read_text(Path(csv_file), f"the groups CSV {csv_file}", MAX_LIST_FILE_BYTES)
    rows = list(csv.DictReader(io.StringIO(text, newline="")))
    if not rows or "subject" not in rows[0]:
        raise ConfigError(f"{csv_file}: the groups CSV needs a header with a `subject` column and attribute columns.")
    attributes = [k for k in rows[0] if k != "subject"]
    if not attributes:
        raise ConfigError(f"{csv_file}: no attribute columns next to `subject`.")
    return {a: {r["subject"]: r[a] for r in rows if r.get(a)} for a in attributes}
