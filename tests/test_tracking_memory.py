"""What a tracking run keeps while it runs: a long video of many passers-by cannot fill memory with
their pictures."""

from __future__ import annotations

import numpy as np

from safeface.tracking import TrackOptions
from safeface.tracking.run import THUMB_MAX_SIDE, _Run


def _frame(i: int) -> np.ndarray:
    """A flat scene; from frame 16, a person 200 px tall (red top, blue trousers) walking right."""
    rgb = np.full((240, 480, 3), 120, np.uint8)
    if i >= 16:
        x = 40 + 8 * (i - 16)
        rgb[20:60, x + 10:x + 40] = (150, 110, 90)
        rgb[60:130, x:x + 50] = (200, 30, 30)
        rgb[130:220, x + 5:x + 45] = (30, 30, 160)
    return rgb


def test_a_track_keeps_only_a_small_thumbnail_while_the_video_runs() -> None:
    """Every track keeps its thumbnail to the end of the run: a hostile operator's video of large
    passers-by in ever new clothes held each one's full-size crop (gigabytes over a long video);
    no kept thumbnail is larger than the one the result returns."""
    run = _Run(TrackOptions(draw=False))
    for i in range(30):
        run(i, _frame(i))
    kept = [t.thumb for t in run.assigner.live + run.assigner.ended if t.thumb is not None]
    assert kept, "the walker must be tracked for the check to mean anything"
    sizes = [crop.shape[:2] for _, crop in kept]
    assert all(max(size) <= THUMB_MAX_SIDE for size in sizes), sizes
