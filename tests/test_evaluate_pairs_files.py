"""LFW pairs files: folds of a View 1 file, with and without --limit; operator group labels."""

from __future__ import annotations

from pathlib import Path

from safeface.evaluate.datasets import read_groups, read_pairs


def _view1(tmp_path: Path, per_class: int) -> Path:
    for name in ("Ann", "Bob"):
        (tmp_path / name).mkdir()
        for i in (1, 2):
            (tmp_path / name / f"{name}_{i:04d}.jpg").write_bytes(b"x")
    lines = [str(per_class)] + ["Ann 1 2"] * per_class + ["Ann 1 Bob 2"] * per_class
    (tmp_path / "pairs.txt").write_text("\n".join(lines) + "\n")
    return tmp_path / "pairs.txt"


def test_a_limited_view1_subset_is_still_split_into_ten_folds(tmp_path: Path) -> None:
    """--limit keeps ten folds, so the 10-fold accuracy is still reported on the subset."""
    pairs = read_pairs(_view1(tmp_path, 15), tmp_path, limit=20)
    assert len(pairs) == 20 and sorted({p.fold for p in pairs}) == list(range(10))


def test_view1_folds_are_contiguous_runs_in_file_order(tmp_path: Path) -> None:
    """A View 1 file is cut into ten consecutive blocks per class, as LFW's folds are."""
    pairs = read_pairs(_view1(tmp_path, 20), tmp_path)
    same = [p.fold for p in pairs if p.same]
    assert same == [k // 2 for k in range(20)]


def test_a_blank_group_label_puts_the_subject_in_no_group(tmp_path: Path) -> None:
    """A subject with an empty cell for an attribute is left out of that attribute's groups."""
    (tmp_path / "g.csv").write_text("subject,band\nAnn,x\nBob,\n")
    assert read_groups(tmp_path / "g.csv") == {"band": {"Ann": "x"}}
