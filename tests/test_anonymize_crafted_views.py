"""Anonymizer photo path: views mapped back right, exposure views not fooled, report honest."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from safeface.anonymize import FaceFinder, anonymize_image
from safeface.anonymize.exposure import dark_view, narrow_view
from safeface.anonymize.views import crafted_views
from safeface.hazmat.vision.dlib_engine import DlibEngine
from safeface.imageio import load_image
from tests.test_anonymize import engine, finder  # noqa: F401 (its fixtures)
from tests.test_anonymize_views import OBAMA, THRESHOLD, _best_match, _obama_face, _reference, needs_photos


def _keyed_frame(face: np.ndarray) -> np.ndarray:
    """A 640x480 frame of a plain background with `face` (250x250, values rounded and clipped
    to 0..255) at (40, 60)."""
    frame = np.full((480, 640, 3), 90, np.uint8)
    frame[..., 2] = 140
    frame[60:310, 40:290] = np.clip(np.rint(face), 0, 255).astype(np.uint8)
    return frame


def _finder_for_a_hidden_face(frame: np.ndarray, what: str = "the key") -> FaceFinder:
    """A finder of the video search's kind, once HOG is shown to find no face in `frame`."""
    from safeface.anonymize.detect import DetectionEngine

    hog = DetectionEngine()
    assert not hog.detect_rects(frame, "hog", 1, -0.25), f"{what} must hide the face"
    return FaceFinder(engine=hog, masked=False)


def _on_the_face(boxes: list[tuple[int, int, int, int]]) -> bool:
    """Whether a box overlaps the face _keyed_frame placed."""
    return any(b[0] < 290 and b[2] > 40 and b[1] < 310 and b[3] > 60 for b in boxes)


def test_crafted_views_map_boxes_back_onto_a_wide_photo() -> None:
    """All eight crafted views are searched, and a box found in each lands on the same place of the
    photo."""
    pixels = np.zeros((61, 201, 3), np.uint8)
    n = 0
    for view, back in crafted_views(pixels):
        vh, vw = view.shape[:2]
        assert back((0, 0, vw, vh)) == pytest.approx((0, 0, 201, 61), abs=1)
        assert back((vw / 4, vh / 2, vw / 2, vh)) == pytest.approx((50.25, 30.5, 100.5, 61), abs=1)
        n += 1
    assert n == 8


def test_a_squeezed_photo_with_a_few_black_and_white_pixels_is_still_stretched() -> None:
    """A face squeezed into 8 grey levels is searched stretched even with salt-and-pepper added."""
    rng = np.random.default_rng(0)
    rgb = (120 + rng.integers(0, 8, (100, 100, 3))).astype(np.uint8)
    flat = rgb.reshape(-1, 3)
    idx = rng.choice(flat.shape[0], 60, replace=False)
    flat[idx[:30]] = 0
    flat[idx[30:]] = 255
    view = narrow_view(rgb)
    assert view is not None
    red, out = rgb[..., 0], view[..., 0]
    assert out[red == 120].max() < 40 and out[red == 127].min() > 200  # the band drawn at full range


def test_a_shadow_straddling_the_search_grid_is_brightened() -> None:
    """A face-sized dark square not aligned with the 40 px grid still gets the brightened view."""
    rgb = np.full((120, 120, 3), 200, np.uint8)
    rgb[20:60, 20:60] = 5
    view = dark_view(rgb)
    assert view is not None and int(view[30, 30, 0]) > 5 * 4


def test_a_shadow_two_thirds_dark_is_brightened() -> None:
    """A face-sized square 70% dark (a face in shadow with a lit cheek) gets the brightened view."""
    rgb = np.full((120, 120, 3), 200, np.uint8)
    rgb[40:68, 40:80] = 5
    assert dark_view(rgb) is not None


def test_a_photo_without_a_face_reports_no_frame_with_faces(finder: FaceFinder) -> None:  # noqa: F811
    """The report of a photo with no face says 0 faces, 0 detections and 0 frames with faces."""
    rgb = np.full((64, 64, 3), 128, np.uint8)
    out, report = anonymize_image(rgb, finder=finder)
    assert (report.face_count, report.detections, report.frames_with_faces) == (0, 0, 0)
    assert np.array_equal(out, rgb)


@needs_photos
def test_a_face_in_the_blue_channel_under_noise_blocks_is_covered(engine: DlibEngine,  # noqa: F811
                                                                  finder: FaceFinder) -> None:  # noqa: F811
    """A grey face hidden in blue under random blocks in red and green is covered (taking blue shows
    nothing)."""
    face = _obama_face()
    reference = _reference(engine, face)
    grey = np.asarray(Image.fromarray(face).convert("L"))
    h, w = grey.shape
    blocks = np.random.default_rng(1).integers(0, 256, (h // 6 + 1, w // 6 + 1, 2), dtype=np.uint8)
    blocks = blocks.repeat(6, 0).repeat(6, 1)[:h, :w]
    crafted = np.ascontiguousarray(np.dstack([blocks[..., 0], blocks[..., 1], grey]))
    take_blue = lambda a: np.ascontiguousarray(np.repeat(a[..., 2:], 3, axis=2))  # noqa: E731
    assert _best_match(engine, take_blue(crafted), reference) >= THRESHOLD, "the step must show the face"
    covered, report = anonymize_image(crafted, finder=finder)
    assert report.face_count >= 1
    assert _best_match(engine, take_blue(covered), reference) < THRESHOLD


def test_a_photo_too_wide_for_webp_is_a_typed_error_and_leaves_no_file(tmp_path: Path) -> None:
    """Writing a photo the WebP encoder refuses raises ImageError and leaves nothing in the
    folder."""
    from safeface.anonymize.image import write_clean_image
    from safeface.errors import ImageError

    with pytest.raises(ImageError, match="could not write the WEBP image"):
        write_clean_image(np.zeros((1, 20000, 3), np.uint8), tmp_path / "out.webp")
    assert list(tmp_path.iterdir()) == []


def test_a_photo_squeezed_into_dark_levels_above_black_is_stretched_to_full_range() -> None:
    """A photo whose values all sit in 50-57 is searched brightened from its own darkest level to
    white."""
    rgb = (50 + np.random.default_rng(3).integers(0, 8, (80, 80, 3))).astype(np.uint8)
    view = dark_view(rgb)
    assert view is not None and int(view.min()) < 10 and int(view.max()) > 245


@needs_photos
def test_a_face_with_a_tenth_of_its_rows_inverted_by_a_key_is_put_back() -> None:
    """A tenth of a face's rows inverted at random hides most LFW faces from HOG, and reads as
    inverted in about a quarter of a block's pairs: under a first bar of half that share the
    frame was not repaired. Put back, HOG finds the face."""
    from safeface.anonymize.detect import DetectionEngine
    from safeface.anonymize.line_polarity import keyed_views
    from tests.test_anonymize_views import LFW

    hog = DetectionEngine()
    face = load_image(LFW / "Candice_Bergen" / "Candice_Bergen_0001.jpg")
    canvas = np.full((480, 640, 3), 90, np.uint8)
    canvas[..., 2] = 140
    region = face.copy()
    key = np.random.default_rng(3).random(region.shape[0]) < 0.1
    region[key] = 255 - region[key]
    canvas[60:310, 40:290] = region
    assert not hog.detect_rects(canvas, "hog", 1, -0.25), "the rows must hide the face"
    found = [bool(hog.detect_rects(v, "hog", 1, -0.25)) for v in keyed_views(canvas)]
    assert len(found) == 4 and any(found)


def test_blocks_of_one_channel_scattered_over_a_frame_are_searched_once_whole() -> None:
    """Lone-channel blocks scattered every fourth block made one region each, grown to five
    blocks a side: several times the frame searched again in each such channel. Regions adding
    up to half the frame or more are one search of the whole frame."""
    from safeface.anonymize.channels import BLOCK, lone_channel_regions

    rng = np.random.default_rng(5)
    frame = np.full((15 * BLOCK, 20 * BLOCK, 3), 128, np.uint8)
    for by in range(0, 15, 4):
        for bx in range(0, 20, 4):
            block = frame[by * BLOCK:(by + 1) * BLOCK, bx * BLOCK:(bx + 1) * BLOCK]
            block[..., 0] = rng.integers(0, 256, (BLOCK, BLOCK))
            block[..., 1] = rng.integers(0, 256, (BLOCK, BLOCK))
    regions = lone_channel_regions(frame)
    assert regions
    h, w = frame.shape[:2]
    for c in {c for c, _ in regions}:
        area = sum((x1 - x0) * (y1 - y0) for k, (x0, y0, x1, y1) in regions if k == c)
        assert area <= w * h, f"channel {c}: {area / (w * h):.1f} frames searched"


@needs_photos
def test_a_video_frame_with_a_face_in_two_channels_under_noise_in_the_third_is_searched() -> None:
    """A grey face drawn in red and green, random blocks in blue: HOG misses it, and either
    channel shows it. The lone-channel test flags blue (its texture follows neither other), so
    only blue was searched and the frame went through with no face found, while a photo of it
    (each channel searched) was covered. The two channels following each other are searched
    together too."""
    from safeface.anonymize import VideoOptions
    from safeface.anonymize.detect import DetectionEngine

    face = load_image(OBAMA)
    face = np.asarray(Image.fromarray(face).resize((face.shape[1] // 2, face.shape[0] // 2)))
    grey = np.asarray(Image.fromarray(face).convert("L"))
    h, w = grey.shape
    blocks = np.random.default_rng(1).integers(0, 256, (h // 6 + 1, w // 6 + 1), dtype=np.uint8)
    blocks = blocks.repeat(6, 0).repeat(6, 1)[:h, :w]
    frame = np.full((720, 960, 3), 90, np.uint8)
    frame[40:40 + h, 40:40 + w] = np.dstack([grey, grey, blocks])
    hog = DetectionEngine()
    assert not hog.detect_rects(frame, "hog", 1, -0.25), "the blue blocks must hide the face"
    assert hog.detect_rects(np.ascontiguousarray(frame[..., 0]), "hog", 1, 0.0), "and red alone show it"
    finder = FaceFinder(engine=hog, masked=False)
    found = finder.search(frame, VideoOptions().search)
    assert any(b[0] < 40 + w and b[2] > 40 and b[1] < 40 + h and b[3] > 40 for b in found), found


@needs_photos
@pytest.mark.parametrize("person", ["Bill_Frist/Bill_Frist_0007.jpg", "Nancy_Pelosi/Nancy_Pelosi_0006.jpg"])
def test_a_face_with_bands_of_rows_inverted_is_put_back_in_video_and_photos(person: str) -> None:
    """Eight rows of every 32 inverted hide these faces from HOG, and read as inverted in two
    pairs of a block's 32 (0.0625): under the keyed-lines share (0.1), so neither a video frame
    nor a photo was put back, and each went through uncovered. Two pairs reading inverted by a
    wide margin flag a block too."""
    from safeface.anonymize import VideoOptions
    from safeface.anonymize.views import find_in_views
    from tests.test_anonymize_views import LFW

    face = load_image(LFW / person).copy()
    bands = np.arange(face.shape[0]) % 32 < 8
    face[bands] = 255 - face[bands]
    frame = _keyed_frame(face)
    finder = _finder_for_a_hidden_face(frame, "the bands")
    assert _on_the_face(finder.search(frame, VideoOptions().search))
    assert _on_the_face(find_in_views(finder, frame))


@needs_photos
@pytest.mark.parametrize("offset, gain", [(60, 1.0), (0, 0.7), (-55, 0.5)],
                         ids=["offset 60", "gain 0.7", "gain 0.5 and offset -55"])
def test_a_face_with_rows_inverted_by_a_key_with_an_offset_or_a_gain_is_found(offset: int, gain: float) -> None:
    """Half a face's rows written as 255 - gain * v + offset by a key: the keyed repair put each
    line back as 255 - v, so every put-back line stayed off its neighbours by the offset or the
    gain (and an offset made lines read inverted from their negatives): HOG found no face in
    the repaired view of a video frame or of a photo. Each line is now mapped back by an affine
    fit to its neighbours."""
    from safeface.anonymize import VideoOptions
    from safeface.anonymize.views import find_in_views
    from tests.test_anonymize_views import LFW

    face = load_image(LFW / "Candice_Bergen" / "Candice_Bergen_0001.jpg").astype(np.float32)
    key = np.random.default_rng(3).random(face.shape[0]) < 0.5
    face[key] = 255 - gain * face[key] + offset
    frame = _keyed_frame(face)
    finder = _finder_for_a_hidden_face(frame)
    assert _on_the_face(finder.search(frame, VideoOptions().search)), "a video frame"
    assert _on_the_face(find_in_views(finder, frame)), "a photo"


@needs_photos
def test_a_face_with_rows_inverted_at_their_neighbours_brightness_is_found() -> None:
    """Half a face's rows written as 88 - 0.3 v by a key: inverted, yet near their neighbours'
    level and most of them flat, so flat lines, judged flipped only where closer to the other's
    negative, were mostly left as they were, and the fitted view of a video frame showed no
    face (4 of 14 sampled faces found; 13 now). A flat pair moved as a key moves lines reads
    flipped too, and a frame whose lines read shifted is searched fitted as well."""
    from safeface.anonymize import VideoOptions
    from tests.test_anonymize_views import LFW

    face = load_image(LFW / "Donald_Rumsfeld" / "Donald_Rumsfeld_0036.jpg").astype(np.float32)
    key = np.random.default_rng(3).random(face.shape[0]) < 0.5
    face[key] = 88 - 0.3 * face[key]
    frame = _keyed_frame(face)
    found = _finder_for_a_hidden_face(frame).search(frame, VideoOptions().search)
    assert _on_the_face(found), found


@needs_photos
@pytest.mark.parametrize("gain, offset, axis, person", [
    (0.3, 80, 0, "Bill_Frist/Bill_Frist_0007.jpg"), (0.5, 30, 1, "Bill_Frist/Bill_Frist_0007.jpg")],
    ids=["rows at 0.3 v + 80 (and a photo)", "columns at 0.5 v + 30"])
def test_a_face_with_lines_moved_in_level_by_a_key_is_found(gain: float, offset: int, axis: int,
                                                             person: str) -> None:
    """Half a face's rows (or columns) written as gain * v + offset by a key, none inverted: no
    pair of lines reads inverted, so neither the keyed-line test nor any view found the face in
    a video frame or a photo (0 of 8 sampled faces), and the key gives it back. Lines moved in
    level or spread against their neighbours' texture are fitted back to them."""
    from safeface.anonymize import VideoOptions
    from safeface.anonymize.views import find_in_views
    from tests.test_anonymize_views import LFW

    face = load_image(LFW / person).astype(np.float32)
    key = np.random.default_rng(3).random(face.shape[axis]) < 0.5
    lines = (key, slice(None)) if axis == 0 else (slice(None), key)
    face[lines] = gain * face[lines] + offset
    frame = _keyed_frame(face)
    finder = _finder_for_a_hidden_face(frame)
    assert _on_the_face(finder.search(frame, VideoOptions().search)), "a video frame"
    if axis == 0:  # the photo path makes the same keyed views (a photo's search is many frames')
        assert _on_the_face(find_in_views(finder, frame)), "a photo"


@needs_photos
def test_a_face_with_lines_moved_up_and_down_by_turns_along_them_is_found() -> None:
    """A key adding 60 to each keyed row in one 32 px strip and taking 60 from it in the next,
    on the grid the shifted-lines test reads: each keyed pair read shifted in both strips, but
    the two strips had to agree on its direction, so no block was flagged and the video frame
    went through with the face unfound."""
    from safeface.anonymize import VideoOptions
    from tests.test_anonymize_views import LFW

    face = load_image(LFW / "AJ_Lamas" / "AJ_Lamas_0001.jpg").astype(np.float32)
    key = np.random.default_rng(1).random(face.shape[0]) < 0.5
    turns = np.where((np.arange(face.shape[1]) + 40) // 32 % 2 == 0, 60.0, -60.0)
    face[key] += turns[None, :, None]
    frame = _keyed_frame(face)
    found = _finder_for_a_hidden_face(frame).search(frame, VideoOptions().search)
    assert _on_the_face(found), found


@needs_photos
def test_a_face_with_lines_moved_up_or_down_by_a_key_is_found() -> None:
    """A key adding 60 to a third of a face's rows and taking 60 from another third: the lines
    read shifted, but the repair split each strip's lines into two kinds by which way the last
    shifted pair went, so a row after one moved down was fitted to the rows moved down, and
    the video frame went through with the face unfound (2 of 14 sampled faces found). The shifts
    above each line, added up, less their running median, are taken away too."""
    from safeface.anonymize import VideoOptions
    from tests.test_anonymize_views import LFW

    face = load_image(LFW / "Candice_Bergen" / "Candice_Bergen_0001.jpg").astype(np.float32)
    kind = np.random.default_rng(3).integers(0, 3, face.shape[0])
    face[kind == 1] += 60
    face[kind == 2] -= 60
    frame = _keyed_frame(face)
    found = _finder_for_a_hidden_face(frame).search(frame, VideoOptions().search)
    assert _on_the_face(found), found


@needs_photos
@pytest.mark.parametrize("gain, offset", [(-0.7, 255.0), (0.3, 80.0)],
                         ids=["255 - 0.7 v", "0.3 v + 80, none inverted"])
def test_a_one_frame_video_with_rows_keyed_with_a_gain_is_covered(engine: DlibEngine,  # noqa: F811
                                                                  finder: FaceFinder,  # noqa: F811
                                                                  tmp_path: Path, gain: float,
                                                                  offset: float) -> None:
    """A one-frame colour clip whose face's rows a key wrote as gain * v + offset: the frame
    went through with no face covered, and the key on the output gave the face back (H.264's
    4:2:0 chroma blends each keyed row's colour with its neighbour's: the fitted views are
    grey). 255 - 0.7 v reads inverted; 0.3 v + 80, which inverts none, read as nothing."""
    import av

    from safeface.anonymize import VideoOptions, anonymize_file
    from tests.test_anonymize_views import LFW
    from tests.video_fixtures import build_face_video

    key = np.random.default_rng(3).random(4096) < 0.5
    places: list[tuple[int, int, int, int]] = []

    def keyed(frame: np.ndarray, forward: bool) -> np.ndarray:
        x, y, w, h = places[0]
        out = frame.astype(np.float32)
        region = out[y:y + h, x:x + w]
        rows = key[y:y + h]
        region[rows] = gain * region[rows] + offset if forward else (region[rows] - offset) / gain
        return np.clip(np.rint(out), 0, 255).astype(np.uint8)

    def paint(canvas: np.ndarray, where: tuple[int, int, int, int]) -> np.ndarray:
        places.append(where)
        return keyed(canvas, True)

    src, out = tmp_path / "keyed.mp4", tmp_path / "out.mp4"
    build_face_video(src, sorted(LFW.glob("*/*.jpg"))[::151][:1], frames=1, size=(320, 256), audio=False,
                     paint=paint)
    with av.open(str(src)) as c:
        frame_in = next(c.decode(video=0)).to_ndarray(format="rgb24")
    assert not engine.detect(frame_in, "hog", 1), "the key must hide the face"
    assert engine.detect(keyed(frame_in, False), "hog", 2), "and the key show it"
    report = anonymize_file(src, out, video=VideoOptions(progress=False), finder=finder)
    assert report.frames_with_faces == 1
    with av.open(str(out)) as c:
        frame_out = next(c.decode(video=0)).to_ndarray(format="rgb24")
    assert not engine.detect(keyed(frame_out, False), "hog", 2), "the key on the output shows a face"


@pytest.mark.parametrize("height", [575, 1023, 63])
def test_a_frame_of_any_height_is_tested_for_shifted_lines(height: int) -> None:
    """A frame 31 rows over a whole number of blocks: the shifted-lines test, reading every
    other row of its last band, counted one block more than the strips held and raised a
    ValueError, so such a photo or video frame could not be anonymized. Its keyed lines are
    still found."""
    from safeface.anonymize.line_polarity import has_shifted_lines, keyed_views

    rng = np.random.default_rng(2)
    frame = np.repeat(np.repeat(rng.integers(0, 256, (height // 8 + 1, 81, 1), dtype=np.uint8), 8, 0), 8, 1)
    frame = np.ascontiguousarray(np.repeat(frame[:height, :640], 3, axis=2))
    assert not has_shifted_lines(frame, 1) and not list(keyed_views(frame))
    key = rng.random(height) < 0.5
    frame[key] = (0.4 * frame[key] + 60).astype(np.uint8)
    assert has_shifted_lines(frame, 0) and len(list(keyed_views(frame))) >= 2


def test_the_keyed_views_of_a_tall_photo_take_few_copies_of_it() -> None:
    """A photo with a third of its rows inverted: the fitted view's grey was made from a float32
    copy of the whole photo and its mean, 6.4 copies of the photo at once here (about 950 MB
    beside a 50-megapixel photo); made a band at a time, 3.1."""
    from safeface.anonymize.line_polarity import keyed_views
    from tests.test_anonymize_views import _traced_peak

    rng = np.random.default_rng(1)
    photo = np.tile(np.arange(256, dtype=np.uint8), (4096, 1, 3)).reshape(4096, -1, 3)
    photo = np.clip(photo + rng.integers(0, 40, photo.shape, dtype=np.int16), 0, 255).astype(np.uint8)
    key = rng.random(photo.shape[0]) < 0.3
    photo[key] = 255 - photo[key]
    list(keyed_views(photo[:64, :64]))  # modules imported

    def views() -> int:
        seen = 0
        for view in keyed_views(photo):
            seen += 1
            if seen == 3:
                assert np.array_equal(view[..., 0], view[..., 2])
        return seen

    seen, peak = _traced_peak(views)
    assert seen == 4
    assert peak < 4 * photo.nbytes, f"{peak / photo.nbytes:.1f} copies of the photo"


def _text_page(height: int = 720, width: int = 1280) -> np.ndarray:
    """A page of black anti-aliased text on white, a line every 26 px."""
    import cv2

    words = "the quick brown fox jumps over lazy dog privacy consent face template audit log".split()
    rng = np.random.default_rng(0)
    page = np.full((height, width, 3), 255, np.uint8)
    for y in range(30, height - 10, 26):
        cv2.putText(page, " ".join(rng.choice(words, 12)), (20, y), cv2.FONT_HERSHEY_SIMPLEX, 0.7, (0, 0, 0), 1,
                    cv2.LINE_AA)
    return page


def _halftone(height: int = 720, width: int = 1280, cell: int = 6) -> np.ndarray:
    """A halftone print of a diagonal ramp: black dots on white, one per cell, sized by its
    darkness."""
    yy, xx = np.mgrid[0:height, 0:width]
    dark = ((xx // cell * cell) + (yy // cell * cell)) / (height + width)
    centre = cell / 2 - 0.5
    dot = (yy % cell - centre) ** 2 + (xx % cell - centre) ** 2 < dark * (0.7 * cell) ** 2
    return np.repeat(np.where(dot, 0, 255).astype(np.uint8)[..., None], 3, axis=2)


@pytest.mark.parametrize("make", [_text_page, _halftone], ids=["text page", "halftone"])
def test_honest_text_and_halftone_do_not_read_as_keyed(make: object) -> None:
    """A page of text and a halftone print read as lines a key moved: a blank column beside a
    glyph's (a white gap beside a dot's) has no texture, so any change in level read as far
    over its texture, and each such frame was searched in five more views (2.3 times a plain
    frame's search). A flat line beside a textured one no longer counts as shifted."""
    from safeface.anonymize.line_polarity import has_keyed_lines, has_shifted_lines, keyed_views

    frame = make()  # type: ignore[operator]
    assert not any(has_shifted_lines(frame, axis) or has_keyed_lines(frame, axis) for axis in (0, 1))
    assert not list(keyed_views(frame))


def _short_runs(lines: int, seed: int, shortest: int = 2, longest: int = 4) -> np.ndarray:
    """A key over `lines` lines: runs of `shortest` to `longest` lines, each keyed or not at
    random."""
    rng = np.random.default_rng(seed)
    key = np.zeros(lines, bool)
    at = 0
    while at < lines:
        run = int(rng.integers(shortest, longest + 1))
        key[at:at + run] = rng.random() < 0.5
        at += run
    return key


@needs_photos
def test_a_face_with_short_runs_of_rows_moved_by_a_key_is_found() -> None:
    """A key moving runs of 2-4 rows together (0.6 v - 30) shifts only each run's ends:
    0.19-0.25 of a block's pairs read shifted, under the test's share, and the video frame went
    through with the face unfound (12 of 32 sampled faces found). A run's end takes back its
    start's shift, which natural lines seldom do: blocks with a few such pairs are flagged."""
    from safeface.anonymize import VideoOptions
    from tests.test_anonymize_views import LFW

    face = load_image(LFW / "Candice_Bergen" / "Candice_Bergen_0001.jpg").astype(np.float32)
    key = _short_runs(face.shape[0], 2)
    face[key] = 0.6 * face[key] - 30
    frame = _keyed_frame(face)
    found = _finder_for_a_hidden_face(frame).search(frame, VideoOptions().search)
    assert _on_the_face(found), found


@needs_photos
def test_a_face_with_runs_of_five_to_eight_rows_moved_by_a_key_is_found() -> None:
    """A key moving runs of 5-8 rows together (0.6 v - 30): a run's end took back its start's
    shift further on than the run test looked (2-4 lines), and the video frame went through
    with the face unfound (1 of 12 sampled faces found; 9 now)."""
    from safeface.anonymize import VideoOptions
    from tests.test_anonymize_views import LFW

    face = load_image(LFW / "Candice_Bergen" / "Candice_Bergen_0001.jpg").astype(np.float32)
    key = _short_runs(face.shape[0], 3, 5, 8)
    face[key] = 0.6 * face[key] - 30
    frame = _keyed_frame(face)
    found = _finder_for_a_hidden_face(frame).search(frame, VideoOptions().search)
    assert _on_the_face(found), found


@needs_photos
@pytest.mark.parametrize("person", ["Gus_Van_Sant/Gus_Van_Sant_0002.jpg", "Roy_Moore/Roy_Moore_0003.jpg",
                                    "Natalie_Coughlin/Natalie_Coughlin_0005.jpg"])
def test_an_honest_photo_with_blurred_edges_does_not_read_as_runs_of_moved_lines(person: str) -> None:
    """Looking for runs of up to 8 lines, a blurred edge's two or three neighbouring pairs each
    read as a run's start (13 of 518 LFW photos past the bar, 4 before, each searched in five
    more views): one pair counts for such an edge."""
    from safeface.anonymize.line_polarity import has_shifted_lines
    from tests.test_anonymize_views import LFW

    photo = load_image(LFW / person)
    assert not any(has_shifted_lines(photo, axis) for axis in (0, 1))
