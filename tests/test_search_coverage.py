"""The anonymizer searches what it claims to: every frame of a video by default (the tracker's
hold would bridge a still face in a frame skipped), and every pixel of a large image at full
size, in tiles whose seams overlap by two detector windows (a small face on a seam lies whole
in one tile)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

from safeface.anonymize import FaceFinder, VideoOptions
from safeface.anonymize.detect import DetectionEngine, scan
from safeface.anonymize.video import anonymize_video_file
from tests.video_fixtures import synthetic_video


def test_every_frame_is_searched_by_default(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    src = synthetic_video(tmp_path / "in.mp4", 96, 64, frames=7)
    searched: list[tuple[int, ...]] = []
    real = FaceFinder.search

    def spy(self: Any, image: np.ndarray, search: Any) -> Any:
        searched.append(image.shape)
        return real(self, image, search)

    monkeypatch.setattr(FaceFinder, "search", spy)
    report = anonymize_video_file(src, tmp_path / "out.mp4", options=VideoOptions(progress=False, masked=False),
                                  finder=FaceFinder("hog", engine=DetectionEngine()))
    assert report.frames == 7 and len(searched) == 7, (report.frames, searched)


def _tiles(h: int, w: int, budget: float, window: float) -> list[tuple[float, float, float, float]]:
    """The rectangles scan() runs its detector on at full size, in image coordinates."""
    boxes = scan(np.zeros((h, w, 3), np.uint8), 0, budget, window,
                 lambda im: [(0.0, 0.0, float(im.shape[1]), float(im.shape[0]))])
    return boxes[1:]  # the first is the whole image scaled down


@pytest.mark.parametrize("h, w", [(1000, 1000), (700, 2500), (33, 9000)])
def test_full_size_tiles_cover_the_whole_image_and_overlap_by_two_windows(h: int, w: int) -> None:
    budget, window = 90_000.0, 40.0
    tiles = _tiles(h, w, budget, window)
    covered = np.zeros((h, w), bool)
    for x1, y1, x2, y2 in tiles:
        covered[int(y1):int(y2), int(x1):int(x2)] = True
    assert covered.all(), f"{(~covered).sum()} pixels never scanned at full size"
    xs = sorted({t[0] for t in tiles})
    tw = int(tiles[0][2] - tiles[0][0])
    if len(xs) > 1:
        # a face two detector windows wide on a seam lies whole in one tile
        assert max(b - a for a, b in zip(xs, xs[1:])) <= tw - 2 * window, (xs, tw)
