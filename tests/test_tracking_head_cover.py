"""The head zone of everyone the tracker finds is covered in every output frame, whatever options
the caller picks for the tracking itself."""

from __future__ import annotations

from functools import cache
from pathlib import Path

import av
import numpy as np
import pytest
from PIL import Image

from safeface.anonymize import FaceFinder
from safeface.anonymize.detect import DetectionEngine, Search
from safeface.imageio import load_image
from safeface.tracking import TrackOptions, track_video
from safeface.tracking.run import _Run
from tests.datasets_path import datasets
from tests.video_fixtures import synthetic_video


@cache
def _engine() -> DetectionEngine:
    """One HOG engine for the module: loading dlib's detector took more time than most of these
    tests' searches (a second or more each)."""
    return DetectionEngine()


def _walker(tmp_path: Path) -> Path:
    """36 frames of one person walking right: a real face about 22 px wide (under the video
    search's reach, within a photo-strength check's), a red top and blue trousers."""
    photos = sorted((datasets() / "lfw-dev" / "images" / "Bill_Frist").glob("*.jpg"))
    if not photos:
        pytest.skip("real face images absent (lfw-dev)")
    small = np.asarray(Image.fromarray(load_image(photos[0])).resize((52, 52)))
    head = small[10:44, 13:39]
    hh, hw = head.shape[:2]

    def frame(i: int) -> np.ndarray:
        rgb = np.full((272, 480, 3), 120, np.uint8)
        x, y = 40 + 10 * i, 100
        rgb[y:y + hh, x:x + hw] = head
        rgb[y + hh:y + hh + 50, x - 4:x + hw + 4] = (200, 30, 30)
        rgb[y + hh + 50:y + hh + 110, x:x + hw] = (30, 30, 160)
        return rgb

    return synthetic_video(tmp_path / "walk.mp4", 480, 272, frames=36, frame=frame)


def _around_the_walker(rgb: np.ndarray, i: int) -> np.ndarray:
    """The part of frame i where the walker is (a photo-strength search of it is quick)."""
    x = 40 + 10 * i
    return rgb[60:260, max(0, x - 60):x + 90]


def test_a_run_that_stops_tracking_early_still_covers_every_head(tmp_path: Path) -> None:
    """An app asks to stop tracking after 20 frames (max_frames, to save time): the head-zone
    cover stopped with it and the small face showed in the other 16; each head stays covered."""
    src = _walker(tmp_path)
    finder = FaceFinder("hog", engine=_engine())
    strong = Search(max_side=1 << 16, upsample=2)  # photo strength: faces from about 20 px
    with av.open(str(src)) as c:
        shown = [f.to_ndarray(format="rgb24") for f in c.decode(video=0)]
    assert all(finder.detectable(_around_the_walker(shown[i], i), strong) for i in (24, 32)), \
        "the face must show for the check to mean anything"
    # The decoded frames through track_video's hook, without the anonymizer's face searches
    # (most of a run's time): the face is under the video search's reach, and without the
    # photo-strength search of still faces, which could find it, only the head zone covers it.
    run = _Run(TrackOptions(max_frames=20))
    frames = [run(i, rgb.copy()) for i, rgb in enumerate(shown)]
    assert len(frames) == 36
    faces = [i for i in range(20, 36, 2) if finder.detectable(_around_the_walker(frames[i], i), strong)]
    assert faces == []


HAMILTON = datasets() / "face_recognition" / "examples" / "short_hamilton_clip.mp4"


@pytest.mark.skipif(not HAMILTON.is_file(), reason=f"the stage clip is absent ({HAMILTON}); "
                    "set SAFEFACE_DATASETS to the shared datasets")
def test_a_face_seated_still_from_the_first_frame_is_covered(tmp_path: Path) -> None:
    """The stage clip's first frames: a pianist seated at the left, his face about 26 px, under
    the video search's reach. No one is tracked yet while the background model learns the
    scene, HOG's people detector does not know a seated shape, and once learnt he is background:
    his face showed at photo strength in every frame until the camera moved."""
    from tests.video_fixtures import cut

    src, out = cut(HAMILTON, tmp_path / "stage.mp4", 0, 10), tmp_path / "out.mp4"
    finder = FaceFinder("hog", engine=_engine())
    strong = Search(max_side=1 << 16, upsample=2)  # photo strength: faces from about 20 px

    def around_the_pianist(rgb: np.ndarray) -> np.ndarray:
        return rgb[100:300, 0:200]  # a photo-strength search of it is quick

    with av.open(str(src)) as c:
        assert finder.detectable(next(c.decode(video=0)).to_ndarray(format="rgb24"), strong), \
            "the face must show for the check to mean anything"
    track_video(src, out, TrackOptions(draw=False))
    with av.open(str(out)) as c:
        frames = [f.to_ndarray(format="rgb24") for f in c.decode(video=0)]
    assert len(frames) == 10
    assert [i for i, f in enumerate(frames) if finder.detectable(around_the_pianist(f), strong)] == []
    assert finder.detectable(frames[0], strong) == []  # nor anywhere else in the frame


@pytest.mark.slow
def test_a_still_face_with_every_other_line_inverted_stays_covered_after_the_first_frame() -> None:
    """A hostile operator seats someone still from the first frame with every other line of
    their 50 px face inverted (anyone who inverts them back sees it): the first frame's search
    found it in half its lines, but its place was searched again as plain pixels only, so from
    frame 6 (past the frames a place stays covered) the face showed to the check."""
    from safeface.tracking.first_faces import HOLD, FirstFaces

    photos = sorted((datasets() / "lfw-dev" / "images" / "Bill_Frist").glob("*.jpg"))
    if not photos:
        pytest.skip("real face images absent (lfw-dev)")
    face = np.asarray(Image.fromarray(load_image(photos[0])).resize((113, 113)))
    rgb = np.full((192, 256, 3), 120, np.uint8)  # small: each photo-strength search here is a second or more
    rgb[40:153, 70:183] = face
    rgb[40:153:2, 70:183] = 255 - rgb[40:153:2, 70:183]
    finder = FaceFinder("hog", engine=_engine())
    strong = Search(max_side=1 << 16, upsample=2)
    assert finder.detectable(rgb, strong), "the face must show for the check to mean anything"
    first = FirstFaces(finder, Search(), 0.2, "blur")
    # Every frame is covered in turn; the first frame and those past the hold are checked.
    covered = [first.cover(i, rgb.copy()) for i in range(HOLD + 3)]
    shown = [i for i in (0, *range(HOLD, HOLD + 3)) if finder.detectable(covered[i], strong)]
    assert shown == []


def test_more_small_faces_still_from_the_first_frame_than_places_are_all_covered() -> None:
    """A hostile operator opens on 18 small faces sitting still (a class photo on a wall, a
    crowd seated): at most 16 become places searched every frame, and the other two, found by
    the same search, were never covered, not even in the frame they were found in."""
    from safeface.tracking.first_faces import MAX_PLACES, FirstFaces

    photos = sorted((datasets() / "lfw-dev" / "images").glob("*/*_0001.jpg"))[:MAX_PLACES + 2]
    if len(photos) < MAX_PLACES + 2:
        pytest.skip("real face images absent (lfw-dev)")
    rgb = np.full((540, 960, 3), 110, np.uint8)
    spots = [(20 + (k // 6) * 175, 20 + (k % 6) * 155) for k in range(len(photos))]
    for (y, x), p in zip(spots, photos):  # faces of about 50 px: under the video search's reach
        rgb[y:y + 113, x:x + 113] = np.asarray(Image.fromarray(load_image(p)).resize((113, 113)))
    first = FirstFaces(FaceFinder("hog", engine=_engine()), Search(), 0.2, "blur")
    for i in range(2):
        out = first.cover(i, rgb.copy())
        bare = [(y, x) for y, x in spots
                if (out[y + 40:y + 80, x + 40:x + 80] == rgb[y + 40:y + 80, x + 40:x + 80]).all()]
        assert bare == [], (i, bare)



def _small_face() -> np.ndarray:
    """A real face of about 50 px in a 113 px square: under the video search's reach in a frame
    of 256x192 (which keeps these tests' photo-strength searches small), found at photo strength."""
    photos = sorted((datasets() / "lfw-dev" / "images" / "Bill_Frist").glob("*.jpg"))
    if not photos:
        pytest.skip("real face images absent (lfw-dev)")
    return np.asarray(Image.fromarray(load_image(photos[0])).resize((113, 113)))


def _seated() -> tuple[FaceFinder, Search, np.ndarray]:
    """The HOG finder, the photo-strength search, and a 256x192 frame with _small_face seated
    still at (70, 40)."""
    seated = np.full((192, 256, 3), 170, np.uint8)
    seated[40:153, 70:183] = _small_face()
    return FaceFinder("hog", engine=_engine()), Search(max_side=1 << 16, upsample=2), seated


def _blurred(seated: np.ndarray) -> np.ndarray:
    """`seated` with its face blurred away and the frame's brightness kept (no flash to tell)."""
    import cv2

    blurred = seated.copy()
    blurred[40:153, 70:183] = cv2.GaussianBlur(seated[40:153, 70:183], (0, 0), 12)
    return blurred


def test_a_face_seated_still_after_a_scene_cut_is_covered() -> None:
    """Edited footage: the first second shows an empty stage, then a cut to someone seated still.
    The photo-strength search ran in the first second only, so the still face of the second
    scene (never boxed: learnt as background) showed for the rest of the run."""
    from safeface.tracking.first_faces import HOLD, FirstFaces

    finder = FaceFinder("hog", engine=_engine())
    strong = Search(max_side=1 << 16, upsample=2)
    before = np.full((192, 256, 3), 60, np.uint8)
    after = np.full((192, 256, 3), 170, np.uint8)
    after[40:153, 70:183] = _small_face()
    assert finder.detectable(after, strong), "the face must show for the check to mean anything"
    first = FirstFaces(finder, Search(), 0.2, "blur")
    for i in range(31):
        first.cover(i, before.copy())
    outs = {i: first.cover(i, after.copy()) for i in range(31, 31 + HOLD + 3)}
    assert [i for i in (31, 32, 31 + HOLD + 2) if finder.detectable(outs[i], strong)] == []


def test_a_still_face_that_turns_to_the_camera_later_is_covered_within_a_pass() -> None:
    """Someone seated still, turned away in the first second (no face to find then), faces the
    camera from frame 31: no cut, nobody walking, so nothing searched there again and the face
    showed for the rest of the run. The rolling search finds it within one pass of the frame
    (two tiles at this size, each at a frame drawn from its ROLL_EVERY)."""
    from safeface.tracking.first_faces import HOLD, ROLL_EVERY, FirstFaces

    finder = FaceFinder("hog", engine=_engine())
    strong = Search(max_side=1 << 16, upsample=2)
    empty = np.full((192, 256, 3), 120, np.uint8)
    seated = empty.copy()
    seated[40:153, 70:183] = _small_face()
    # Seeded so no whole-frame search of the first second falls on frame 31 (the frame drawn
    # after its last one may be as late as 38).
    first = FirstFaces(finder, Search(), 0.2, "blur", rng=np.random.default_rng(3))
    for i in range(31):
        first.cover(i, empty.copy())
    passed = 31 + 3 * ROLL_EVERY
    outs = {i: first.cover(i, seated.copy()) for i in range(31, passed + HOLD + 3)}
    assert finder.detectable(outs[31], strong), "shown until the rolling search reaches it"
    assert [i for i in (passed, passed + 1, passed + HOLD + 2) if finder.detectable(outs[i], strong)] == []


class _CountingEngine(DetectionEngine):
    """dlib's HOG detector, counting its searches (the cost of a frame)."""

    searches = 0

    def detect_rects(self, *args, **kwargs):  # type: ignore[no-untyped-def]
        self.searches += 1
        return super().detect_rects(*args, **kwargs)


def test_sixteen_small_still_faces_cost_a_bounded_search_a_frame_and_stay_covered() -> None:
    """A hostile operator opens on sixteen faces just under the video search's reach, sitting
    still: every place's crop was searched again, in every view, every frame, the same search of
    the same pixels (0.7 s of CPU a frame at 1080p). Now an unchanged crop keeps its answer, and
    at most PLACE_BUDGET changed places are searched a frame (noise added to every frame cannot
    make all sixteen searched), the others staying covered meanwhile."""
    from safeface.tracking.first_faces import MAX_PLACES, PLACE_BUDGET, FirstFaces

    photos = sorted((datasets() / "lfw-dev" / "images").glob("*/*_0001.jpg"))[:MAX_PLACES]
    if len(photos) < MAX_PLACES:
        pytest.skip("real face images absent (lfw-dev)")
    def seated(dx: int) -> np.ndarray:
        rgb = np.full((500, 500, 3), 110, np.uint8)
        for (y, x), p in zip(spots, photos):
            rgb[y:y + 113, x + dx:x + dx + 113] = np.asarray(Image.fromarray(load_image(p)).resize((113, 113)))
        return rgb

    spots = [(4 + (k // 4) * 118, 4 + (k % 4) * 118) for k in range(len(photos))]
    rgb = seated(0)
    engine = _CountingEngine()
    # Seeded so the whole-frame search is made again on frame 9 (drawn from frames 1-9).
    first = FirstFaces(FaceFinder("hog", engine=engine), Search(), 0.2, "blur", rng=np.random.default_rng(4))
    first.cover(0, rgb.copy())
    assert first._check_at == 9
    rng = np.random.default_rng(0)
    # Still in frames 1-8, frame 9 searched whole (frame 10 left out of the count too), then in frame 11 a little noise
    # everywhere and every face swayed 20 px to the right while most places wait their turn.
    swayed = seated(20)
    for i in range(1, 12):
        frame = rgb.copy() if i < 11 else np.clip(swayed + rng.integers(-12, 13, rgb.shape), 0, 255).astype(np.uint8)
        engine.searches = 0
        out = first.cover(i, frame)
        if i not in (9, 10):
            # Frames 1-8 search each place once (the frame and its stretched view).
            assert engine.searches <= PLACE_BUDGET * 2, (i, engine.searches)
        dx = 20 if i == 11 else 0
        bare = [(y, x) for y, x in spots  # most of the face's middle left as it was
                if (out[y + 30:y + 90, x + dx + 30:x + dx + 90] == frame[y + 30:y + 90, x + dx + 30:x + dx + 90]).all(axis=2).mean() > 0.2]
        assert bare == [], (i, bare)


def test_a_change_in_one_colour_channel_alone_searches_a_place_again() -> None:
    """A place's crop keeps its last search's answer while its pixels stay as they were; a
    change of 8 levels in the red channel alone averaged to under the noise bound over the three
    channels, and a face drawn so would have kept the answer of the empty crop."""
    from safeface.tracking.first_faces import SAME_LEVELS, _unchanged

    crop = np.full((48, 48, 3), 120, np.uint8)
    red = crop.copy()
    red[8:40, 8:40, 0] += 8
    assert 8 / 3 < SAME_LEVELS <= 8, "the change must hide in a mean over channels for the check to mean anything"
    assert _unchanged([crop], [crop.copy()])
    assert not _unchanged([crop], [red])


def test_a_flash_at_the_whole_frame_searches_does_not_bare_a_still_face() -> None:
    """A hostile operator flashes the frame white at frames 10, 20 and 30, where the whole-frame
    searches are made: each found no face, counted a miss at the seated face's place, and its
    crop, unchanged since its last search had found the face, went on counting misses, so the
    face showed from five frames after the flash until the place was searched again."""
    from safeface.tracking.first_faces import FirstFaces

    finder, strong, seated = _seated()
    flash = np.full_like(seated, 255)
    first = FirstFaces(finder, Search(), 0.2, "blur")
    shown = []
    for i in range(32):
        out = first.cover(i, (flash if i in (10, 20, 30) else seated).copy())
        if i not in (10, 20, 30) and finder.detectable(out, strong):
            shown.append(i)
    assert shown == []


def test_a_flash_on_every_frame_a_search_was_due_does_not_keep_a_still_face_bare() -> None:
    """A hostile operator seats someone still and flashes the frame white on every 10th and every
    12th frame (a sixth of them), the frames the whole-frame and rolling searches were made on:
    every search saw white, no place was ever made, and the face showed in every other frame of
    the run. The rolling search's frames are drawn at random now, so it finds the face (and the
    whole-frame search made again on the frame after a flash finds it in the first second)."""
    from safeface.tracking.first_faces import FirstFaces

    finder, strong, seated = _seated()
    flash = np.full_like(seated, 255)
    first = FirstFaces(finder, Search(), 0.2, "blur", rng=np.random.default_rng(7))
    flashed = [i for i in range(90) if i % 10 == 0 or i % 12 == 0]
    assert finder.detectable(seated, strong), "the face must show for the check to mean anything"
    outs = {i: first.cover(i, (flash if i in flashed else seated).copy()) for i in range(90)}
    assert [i for i in (61, 71, 83, 89) if finder.detectable(outs[i], strong)] == []


def test_many_small_faces_past_the_places_found_by_the_rolling_search_stay_covered() -> None:
    """A hostile operator fills the frame after the first second with 81 small still faces: the
    rolling search makes 16 places and covers the others for a pass, but each face kept an entry
    per sighting (again in the next pass, twice where two tiles overlap), so the 100 entries
    were full before the second pass ended and faces whose first entry ran out were left bare."""
    from safeface.tracking.first_faces import MAX_BEYOND, MAX_PLACES, ROLL_EVERY, FirstFaces

    photos = sorted((datasets() / "lfw-dev" / "images").glob("*/*_0001.jpg"))[:8]
    if len(photos) < 8:
        pytest.skip("real face images absent (lfw-dev)")
    tiles = [np.asarray(Image.fromarray(load_image(p)).resize((53, 53))) for p in photos]
    rgb = np.full((480, 480, 3), 110, np.uint8)
    spots = [(r * 53, c * 53) for r in range(9) for c in range(9)]  # faces of about 23 px
    for k, (y, x) in enumerate(spots):
        rgb[y:y + 53, x:x + 53] = tiles[k % 8]
    assert len(spots) - MAX_PLACES < MAX_BEYOND, "each face past the places fits the bound once"
    first = FirstFaces(FaceFinder("hog", engine=_engine()), Search(), 0.2, "blur",
                       rng=np.random.default_rng(3))
    first._due = []  # the first second's searches of an empty stage (a second each here) skipped
    bare: dict[int, list[tuple[int, int]]] = {}
    # The last frame of each ROLL_EVERY from the first second's end: each makes the rolling
    # search drawn in its ROLL_EVERY (four tiles a pass here); two passes and a tile.
    ends = range(4 * ROLL_EVERY - 1, 13 * ROLL_EVERY, ROLL_EVERY)
    for index in ends:
        out = first.cover(index, rgb.copy())
        bare[index] = [(y, x) for y, x in spots
                       if (out[y + 18:y + 36, x + 18:x + 36] == rgb[y + 18:y + 36, x + 18:x + 36]).all()]
    assert bare[ends[3]] == [], "a pass covers every face"
    assert {i: b for i, b in bare.items() if i > ends[3] and b} == {}


def test_a_flash_on_the_first_seconds_own_search_frames_does_not_bare_a_still_face() -> None:
    """A hostile operator flashes the frame white exactly at frames 0, 10 and 20, where the first
    second's whole-frame searches are made: each saw white, so a face seated still (learnt into
    the background, never boxed) showed from frame 1 until a later search or the rolling pass
    found it (faces past the 16 places only then). The search is made again on the frame after
    a flash."""
    from safeface.tracking.first_faces import FirstFaces

    finder, strong, seated = _seated()
    assert finder.detectable(seated, strong), "the face must show for the check to mean anything"
    flash = np.full_like(seated, 255)
    first = FirstFaces(finder, Search(), 0.2, "blur")
    flashed = (0, 10, 20)
    outs = {i: first.cover(i, (flash if i in flashed else seated).copy()) for i in range(30)}
    assert [i for i in (1, 5, 9, 11, 19, 21, 29) if finder.detectable(outs[i], strong)] == []


@pytest.mark.parametrize("strobe", [False, True], ids=["blurred alone", "and two flashes after each"])
def test_a_face_blurred_on_the_first_seconds_own_search_frames_is_covered_after_one(strobe: bool) -> None:
    """A hostile operator blurs a seated face on frames 0, 10 and 20 alone, where the first
    second's whole-frame searches are made: the frames' brightness is the same, so no flash was
    told, no search found the face, and it showed in every other frame of the first second. One
    more search is made on a frame drawn at random after each due one, which flashes white and
    black on the two frames after each (searched again, as flashes) cannot spend."""
    from safeface.tracking.first_faces import FirstFaces

    finder, strong, seated = _seated()
    blurred = _blurred(seated)
    assert finder.detectable(seated, strong) and not finder.detectable(blurred, strong)
    assert abs(float(seated.mean()) - float(blurred.mean())) < 1, "no flash to tell"
    flashes = {d + k: np.full_like(seated, 255 * (k == 1)) for d in (0, 10, 20) for k in (1, 2)} if strobe else {}
    # Seeded so the frame drawn after frame 0 is frame 9.
    first = FirstFaces(finder, Search(), 0.2, "blur", rng=np.random.default_rng(4))
    hidden = (0, 10, 20)
    outs = {i: first.cover(i, (blurred if i in hidden else flashes.get(i, seated)).copy()) for i in range(30)}
    shown = [i for i in range(9, 30) if i not in hidden and i not in flashes and finder.detectable(outs[i], strong)]
    assert shown == []


class _CountingFinder(FaceFinder):
    """HOG as the video path finds faces, counting its whole-frame searches."""

    searches = 0

    def search(self, *args, **kwargs):  # type: ignore[no-untyped-def]
        self.searches += 1
        return super().search(*args, **kwargs)


def test_a_strobe_cannot_make_every_frame_a_whole_frame_search() -> None:
    """A strobe flips the frame between white and black every frame: each frame differs from the
    one a whole-frame search was made on, and the search made again after a flash must stay
    bounded (each costs four times a frame's video search)."""
    from safeface.tracking.first_faces import FLASH_RETRIES, STRONG_EVERY, FirstFaces
    from safeface.tracking.people import LEARNING_FRAMES

    finder = _CountingFinder("hog", engine=_engine())
    white, black = np.full((96, 128, 3), 255, np.uint8), np.zeros((96, 128, 3), np.uint8)
    first = FirstFaces(finder, Search(), 0.2, "blur")
    for i in range(LEARNING_FRAMES):
        first.cover(i, (white if i % 2 else black).copy())
    due = LEARNING_FRAMES // STRONG_EVERY
    assert due < finder.searches <= due * (1 + FLASH_RETRIES)


def test_a_face_found_again_past_the_places_keeps_one_entry_covering_both_sightings() -> None:
    """The rolling search finds a face past the places again, a little to the side (a face half
    behind another's, found as the other): one entry, refreshed, over both boxes, so neither
    face loses its cover to the other and the bound counts faces, not sightings."""
    from safeface.tracking.first_faces import FirstFaces

    first = FirstFaces(None, Search(), 0.2, "blur")
    first._keep_brief(100, (40.0, 40.0, 70.0, 70.0))
    first._keep_brief(130, (48.0, 44.0, 78.0, 74.0))
    first._keep_brief(131, (200.0, 40.0, 230.0, 70.0))  # another face
    assert first._brief == [(130, (40.0, 40.0, 78.0, 74.0)), (131, (200.0, 40.0, 230.0, 70.0))]


def test_the_first_seconds_later_whole_frame_searches_fall_on_frames_drawn_at_random() -> None:
    """The whole-frame searches were made on frames 0, 10 and 20 of each learning period, so a
    hostile operator knew which frames to hide the faces on; only frame 0 (faces covered from
    the first frame) and a cut's first frame are known now."""
    from safeface.tracking.first_faces import STRONG_EVERY, FirstFaces

    frame = np.full((16, 16, 3), 120, np.uint8)  # nothing to find: each search is quick
    finder = FaceFinder("hog", engine=_engine())
    made: list[list[int]] = []
    for seed in range(12):
        first = FirstFaces(finder, Search(), 0.2, "blur", rng=np.random.default_rng(seed))
        made.append([])
        for i in range(3 * STRONG_EVERY):
            first.cover(i, frame.copy())
            if first._strong == i:
                made[-1].append(i)
    assert {m[0] for m in made} == {0}
    assert all(len(m) == 3 and m[1] - m[0] >= STRONG_EVERY and m[2] - m[1] >= STRONG_EVERY for m in made)
    assert len({m[1] for m in made}) >= 4 and len({m[2] for m in made}) >= 3


def test_a_face_hidden_on_bursts_from_each_whole_frame_search_is_covered_in_the_first_second() -> None:
    """A hostile operator blurs a seated face on frames 0-2, 10-12 and 20-22 (no change in
    brightness): where the frame drawn after each of those searches fell in its burst too (one
    run in about ninety), no search of the first second saw the face and it showed from frame 23
    until the rolling pass reached it. Seeded so each drawn frame falls in a burst."""
    from safeface.tracking.first_faces import FirstFaces

    finder, strong, seated = _seated()
    blurred = _blurred(seated)
    assert finder.detectable(seated, strong) and not finder.detectable(blurred, strong)
    first = FirstFaces(finder, Search(), 0.2, "blur", rng=np.random.default_rng(75))
    hidden = {d + k for d in (0, 10, 20) for k in range(3)}
    outs = {i: first.cover(i, (blurred if i in hidden else seated).copy()) for i in range(24)}
    assert not finder.detectable(outs[23], strong)


def test_a_place_whose_face_has_long_gone_is_searched_on_its_turn_alone() -> None:
    """A walker's face found by a whole-frame search as they passed made a place, and every
    later frame in which others crossed it changed its crop, so it was searched in 264 of
    vtest.avi's 300 frames for a face found there twice (a third of the step's CPU). With no
    face found there for longer than the learning period, it is searched on a frame drawn from
    each REFRESH."""
    from safeface.tracking.first_faces import REFRESH, FirstFaces, _Place
    from safeface.tracking.people import LEARNING_FRAMES

    first = FirstFaces(FaceFinder("hog", engine=_engine()), Search(), 0.2, "blur", rng=np.random.default_rng(0))
    place = _Place((30.0, 30.0, 50.0, 50.0), [(30.0, 30.0, 50.0, 50.0)], missed=LEARNING_FRAMES + 1, searched=100)
    first._places = [place]
    rng = np.random.default_rng(0)
    searched = []
    for i in range(101, 101 + 2 * REFRESH):
        # Something crosses the crop in every frame: it is never the same as last searched.
        first._search_places(i, rng.integers(0, 256, (100, 100, 3), dtype=np.uint8))
        searched += [i] if place.searched == i else []
    gaps = np.diff(searched)
    # Searched in every frame before (30 here); now on about one frame in eight, at most REFRESH apart.
    assert searched[0] == 101 and 2 <= len(searched) <= 8 and gaps.max() <= REFRESH and len(set(gaps)) > 1
    assert place.missed == LEARNING_FRAMES + 1 + 2 * REFRESH
