"""Tracking's work a frame is bounded: a small crafted clip of many moving shapes cannot hold a
tracking run (or a service worker) for hours."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import av
import numpy as np
import pytest
from PIL import Image

from safeface.anonymize import FaceFinder
from safeface.anonymize.detect import DetectionEngine, Search
from safeface.errors import ImageError, InvalidArgument
from safeface.imageio import load_image
from safeface.tracking import track_video
from safeface.tracking.first_faces import FirstFaces
from tests.datasets_path import datasets
from tests.video_fixtures import synthetic_video

WIDTH, HEIGHT = 640, 240


def _crowd(i: int) -> np.ndarray:
    """A flat scene; from frame 16 (after the background model's first second), a grid of 124
    person-sized shapes that all move a little each frame."""
    rgb = np.full((HEIGHT, WIDTH, 3), 200, np.uint8)
    if i >= 16:
        dx = 2 * (i - 16)
        for y in range(4, HEIGHT - 36, 56):
            for x in range(2, WIDTH - 30, 20):
                rgb[y:y + 32, x + dx:x + dx + 8] = (20, 20, 160)
    return rgb


def test_a_clip_of_more_moving_shapes_than_people_in_a_frame_is_refused(tmp_path: Path) -> None:
    """A hostile operator tracks a clip of 124 moving shapes a frame (the tracker's work grows with
    their square: 570 in a 720p frame took 4 s a frame); refused, typed, with no output left."""
    src = synthetic_video(tmp_path / "crowd.mp4", WIDTH, HEIGHT, frames=19, frame=_crowd)
    out = tmp_path / "out.mp4"
    with pytest.raises(ImageError, match="people"):
        track_video(src, out)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["crowd.mp4"]


def _waves(i: int) -> np.ndarray:
    """From frame 16, a wave of 90 shapes every 4 frames, each in its own colour and place, each
    seen long enough to be followed and then gone: no frame holds more than 90."""
    rgb = np.full((HEIGHT, WIDTH, 3), 200, np.uint8)
    if i >= 16:
        wave, step = divmod(i - 16, 4)
        colour = [(20, 20, 160), (160, 20, 20), (20, 140, 20), (150, 150, 20)][wave % 4]
        spots = [(x, y) for y in range(4, HEIGHT - 36, 56) for x in range(2, WIDTH - 30, 20)][:90]
        for x, y in spots:
            x += 10 * (wave % 2) + 2 * step
            rgb[y + 12 * (wave % 2):y + 12 * (wave % 2) + 32, x:x + 8] = colour
    return rgb


def test_waves_of_shapes_that_each_fit_a_frame_cannot_pile_up_lost_tracks(tmp_path: Path) -> None:
    """A hostile operator shows 90 shapes at a time, a new wave every 4 frames: each wave's tracks
    coast and are searched for again frame after frame; beyond 200 at once the clip is refused."""
    from safeface.tracking import TrackOptions
    from safeface.tracking.run import _Run

    # The tracker's hook alone, fed the decoded frames: the bound is the hook's, and the
    # anonymizer's face searches of these frames were most of the run's time.
    src = synthetic_video(tmp_path / "waves.mp4", WIDTH, HEIGHT, frames=30, frame=_waves)
    with av.open(str(src)) as c:
        frames = [f.to_ndarray(format="rgb24") for f in c.decode(video=0)]
    run = _Run(TrackOptions())
    with pytest.raises(ImageError, match="people"):
        for i, rgb in enumerate(frames):
            run(i, rgb)


def _small_waves(i: int) -> np.ndarray:
    """From frame 16, a wave of 8 shapes every 4 frames, each in its own place, seen long enough
    to be followed and then gone."""
    rgb = np.full((120, 320, 3), 200, np.uint8)
    if i >= 16:
        wave, step = divmod(i - 16, 4)
        for k in range(8):
            x, y = 8 + 36 * k + 12 * (wave % 2) + 2 * step, 16 + 50 * (wave % 2)
            rgb[y:y + 32, x:x + 8] = [(20, 20, 160), (160, 20, 20)][wave % 2]
    return rgb


def test_a_clip_of_more_people_than_one_run_returns_is_refused() -> None:
    """A hostile operator shows wave after wave of short-lived shapes, each wave within the bounds
    a frame: every shape became a track held to the end of the run, with its detections and
    thumbnail, and the result grew without bound. Past `TrackOptions.max_people` the run is
    refused, typed (the frame hook's refusal, as for the bounds above: no output is left)."""
    from safeface.tracking import TrackOptions
    from safeface.tracking.run import _Run

    assert TrackOptions().max_people == 2000
    run = _Run(TrackOptions(max_people=12, draw=False))
    with pytest.raises(ImageError, match="max_people"):
        for i in range(26):
            run(i, _small_waves(i))
    assert i >= 20, "refused only once the second wave is followed"
    for wrong in (0, -1, 2.5, True, "100"):
        with pytest.raises(InvalidArgument):
            TrackOptions(max_people=wrong)  # type: ignore[arg-type]


class _PixelCountingEngine(DetectionEngine):
    """The real HOG engine, which also adds up the pixels it is asked to search."""

    def __init__(self) -> None:
        super().__init__()
        self.pixels = 0

    def detect_rects(self, image: np.ndarray, detector: str = "hog", upsample: int = 1,
                     threshold: float = 0.0) -> list[tuple[Any, float]]:
        self.pixels += image.shape[0] * image.shape[1]
        return super().detect_rects(image, detector, upsample, threshold)


@pytest.mark.parametrize("width, height, face", [(3840, 2160, 105), (1920, 1080, 100)], ids=["4K", "1080p"])
def test_sixteen_small_faces_in_a_first_frame_do_not_make_every_frame_dear(width: int, height: int, face: int) -> None:
    """A hostile operator opens a clip on 16 faces just under the video search's reach, each kept
    as a place searched again every frame: searched at full size, 4K faces took 4 s of CPU a
    frame, and at the whole-frame search's scale 1080p faces of 112 px took 2 s. A frame of the
    places' searches now costs under a third of the whole-frame search that found them."""
    photos = sorted((datasets() / "lfw-dev" / "images").glob("*/*_0001.jpg"))[:16]
    if len(photos) < 16:
        pytest.skip("real face images absent (lfw-dev)")
    side = face * 250 // 110  # the LFW photo's face is about 110 of its 250 px
    rgb = np.full((height, width, 3), 110, np.uint8)
    spots = [(20 + (k // 4) * (height // 4), 20 + (k % 4) * (width // 4)) for k in range(16)]
    for (y, x), p in zip(spots, photos):
        rgb[y:y + side, x:x + side] = np.asarray(Image.fromarray(load_image(p)).resize((side, side)))
    engine = _PixelCountingEngine()
    # Seeded so the whole-frame search is made again on frame 9, not on frame 1 (drawn from 1-9).
    first = FirstFaces(FaceFinder("hog", engine=engine), Search(), 0.2, "blur", rng=np.random.default_rng(4))
    first.cover(0, rgb.copy())
    assert first._check_at != 1
    whole_frame, engine.pixels = engine.pixels, 0
    covered = first.cover(1, rgb.copy())
    # Each face still found and covered in frame 1.
    c = side // 2
    assert all((covered[y + c - 20:y + c + 20, x + c - 20:x + c + 20]
                != rgb[y + c - 20:y + c + 20, x + c - 20:x + c + 20]).any() for y, x in spots)
    assert 3 * engine.pixels < whole_frame


def test_a_first_frame_tiled_with_small_faces_is_refused() -> None:
    """A hostile operator tiles the first frame with 144 small faces: each past the 16 places is
    covered where found for the whole run, and 1,400 of them would add a quarter second of
    covering to every frame. Past 116 the run is refused, typed, as a crowd of shapes is."""
    photos = sorted((datasets() / "lfw-dev" / "images").glob("*/*_0001.jpg"))[:8]
    if len(photos) < 8:
        pytest.skip("real face images absent (lfw-dev)")
    tiles = [np.asarray(Image.fromarray(load_image(p)).resize((60, 60))) for p in photos]
    rgb = np.full((540, 960, 3), 110, np.uint8)
    for r in range(9):
        for c in range(16):
            rgb[r * 60:(r + 1) * 60, c * 60:(c + 1) * 60] = tiles[(r * 16 + c) % 8]
    first = FirstFaces(FaceFinder("hog", engine=DetectionEngine()), Search(), 0.2, "blur")
    with pytest.raises(ImageError, match="small faces"):
        first.cover(0, rgb)


def test_edited_footage_of_crowded_scenes_is_not_refused_for_their_sum() -> None:
    """Two scenes, each of more small still faces than places (well under the bound alone): the
    faces past the places are covered for the rest of the run, and those of both scenes together
    passed the bound, so honest edited footage was refused at its second scene. Each scene is
    bounded alone, and the second's faces are covered."""
    photos = sorted((datasets() / "lfw-dev" / "images").glob("*/*_0001.jpg"))[:8]
    if len(photos) < 8:
        pytest.skip("real face images absent (lfw-dev)")
    tiles = [np.asarray(Image.fromarray(load_image(p)).resize((60, 60))) for p in photos]
    first_scene = np.full((540, 960, 3), 110, np.uint8)
    second_scene = np.full((540, 960, 3), 40, np.uint8)
    for r in range(4):
        for c in range(15):
            first_scene[r * 60:(r + 1) * 60, c * 60:(c + 1) * 60] = tiles[(r * 15 + c) % 8]
            y, x = 270 + r * 60, 30 + c * 60  # elsewhere in the frame: other places
            second_scene[y:y + 60, x:x + 60] = tiles[(r * 15 + c + 3) % 8]
    first = FirstFaces(FaceFinder("hog", engine=DetectionEngine()), Search(), 0.2, "blur")
    first.cover(0, first_scene.copy())
    for i in range(1, 11):  # the cut at frame 1; its search at 10, a whole-frame search's interval on
        out = first.cover(i, second_scene.copy())
    bare = [(r, c) for r in range(4) for c in range(15)
            if (out[270 + r * 60 + 20:270 + r * 60 + 40, 30 + c * 60 + 20:30 + c * 60 + 40]
                == second_scene[270 + r * 60 + 20:270 + r * 60 + 40, 30 + c * 60 + 20:30 + c * 60 + 40]).all()]
    assert bare == []
