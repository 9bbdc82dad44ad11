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


def test_a_track_followed_for_hours_keeps_a_bounded_trail_spread_over_its_life() -> None:
    """Every detection's frame, box and colour shares were kept to the end of the run: a person
    followed for hours (or a hostile operator's endless loop) grew memory with every frame. A
    track now keeps at most about `keep` detections, evenly spread from its first frame to its
    last, and its colours are still those of the whole track."""
    from safeface.tracking.appearance import describe
    from safeface.tracking.assign import AssignOptions, Assigner
    from safeface.tracking.run import _people
    import cv2

    rgb = _frame(16)
    look = describe(cv2.cvtColor(rgb, cv2.COLOR_RGB2HSV), cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY), (40.0, 15.0, 90.0, 225.0))
    assigner = Assigner(AssignOptions(keep=64))
    frames = 3000
    for i in range(frames):
        x = 40.0 + 3 * abs(i % 200 - 100)  # walks to and fro
        assigner.step(i, [(x, 15.0, x + 50.0, 225.0)], [look])
    (person,), _ = _people(assigner.finish())
    assert len(person.frames) <= 64, len(person.frames)
    assert person.frames[0] == 0 and person.frames[-1] == frames - 1
    eighths = np.bincount(np.array(person.frames) * 8 // frames, minlength=8)
    assert eighths.min() >= 2, f"the kept detections must be spread over the track's whole life: {eighths}"
    assert person.top[0] == "red" and person.bottom[0] == "blue"
    assert all(person.box_at(f) is not None for f in range(0, frames, 7)), "a box for every frame of its life"


def test_a_track_past_the_reidentification_window_drops_its_descriptors() -> None:
    """A long video's passers-by each kept a dozen clothing descriptors to the end of the run,
    read only to re-identify a person within seconds of losing them; past that window they go."""
    from safeface.tracking.appearance import describe
    from safeface.tracking.assign import AssignOptions, Assigner
    import cv2

    rgb = _frame(16)
    look = describe(cv2.cvtColor(rgb, cv2.COLOR_RGB2HSV), cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY), (40.0, 15.0, 90.0, 225.0))
    opts = AssignOptions()
    assigner = Assigner(opts)
    for i in range(20):
        assigner.step(i, [(40.0 + 2 * i, 15.0, 90.0 + 2 * i, 225.0)], [look])
    for i in range(20, 20 + opts.max_age + opts.reid_window + 5):
        assigner.step(i, [], [])
    (gone,) = assigner.ended
    assert gone.gallery == [] and gone.recent == []
    assert len(gone.frames) == 20


def test_a_run_of_many_long_tracks_keeps_a_bounded_trail_in_all() -> None:
    """Each track's bound alone let a run hold 2,000 tracks of 1,024 detections (about 1 GB,
    reached by a crafted clip of about 20,500 frames). Past a run-wide budget (`held`), every
    track is thinned further, each still spread over its whole life."""
    from safeface.tracking.appearance import describe
    from safeface.tracking.assign import TAIL, AssignOptions, Assigner
    import cv2

    rgb = _frame(16)
    look = describe(cv2.cvtColor(rgb, cv2.COLOR_RGB2HSV), cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY), (40.0, 15.0, 90.0, 225.0))
    assigner = Assigner(AssignOptions(keep=1024, held=1500))
    frames, lanes = 1200, 8
    for i in range(frames):
        x = 40.0 + abs(i % 100 - 50)  # each walks to and fro in a lane of their own
        assigner.step(i, [(x + 300.0 * k, 15.0, x + 300.0 * k + 50.0, 225.0) for k in range(lanes)], [look] * lanes)
        held = sum(len(t.frames) for t in assigner.live + assigner.ended)
        assert held <= 1500 + lanes, (i, held)  # one frame's detections over at most
    people = assigner.finish()
    assert len(people) == lanes
    for t in people:
        assert t.frames[0] == 0 and t.frames[-1] == frames - 1
        assert len(t.frames) >= 4 * TAIL // 2, len(t.frames)
        eighths = np.bincount(np.array(t.frames) * 8 // frames, minlength=8)
        assert eighths.min() >= 2, f"the kept detections must be spread over the track's whole life: {eighths}"


def test_a_track_seen_on_odd_frames_only_keeps_a_trail_spread_over_its_life() -> None:
    """A person the detector finds only every other frame (a flicker, a fence they walk behind),
    on odd frames: thinning kept the frames that are multiples of the stride, none of theirs, so
    the track held only its first and latest detections, `box_at` found no box for the whole of
    its life between and its colours were those of its last second."""
    from safeface.tracking.appearance import describe
    from safeface.tracking.assign import AssignOptions, Assigner
    from safeface.tracking.run import _people
    import cv2

    rgb = _frame(16)
    look = describe(cv2.cvtColor(rgb, cv2.COLOR_RGB2HSV), cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY), (40.0, 15.0, 90.0, 225.0))
    assigner = Assigner(AssignOptions(keep=64))
    frames = 2000
    for i in range(frames):
        x = 40.0 + 3 * abs(i % 200 - 100)
        seen = i < 4 or i % 2 == 1
        assigner.step(i, [(x, 15.0, x + 50.0, 225.0)] if seen else [], [look] if seen else [])
    (person,), _ = _people(assigner.finish())
    assert person.frames[0] == 0 and person.frames[-1] == frames - 1
    assert len(person.frames) <= 64, len(person.frames)
    eighths = np.bincount(np.array(person.frames) * 8 // frames, minlength=8)
    assert eighths.min() >= 2, f"the kept detections must be spread over the track's whole life: {eighths}"
    assert all(person.box_at(f) is not None for f in range(0, frames, 7)), "a box for every frame of its life"
