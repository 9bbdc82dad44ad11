"""Each input bound holds at its exact edge, one unit past it refused: the pixel budget of an
image and of an array, a TIFF's tiles against the image's pixels, the JPEG scan count of an MPO
(the multi-frame JPEG phones write), the bytes a sized reader gives, the size and length of an
audio packet decoded, the padding bits after an AAC configuration, a video frame's pixels as
stored and as shown."""

from __future__ import annotations

import io
import sys
import zlib
from fractions import Fraction
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parent))
from test_image_bombs import _gradient, _tiled_tiff  # noqa: E402

import safeface.anonymize.video as video_mod  # noqa: E402
from safeface.anonymize import FaceFinder, VideoOptions, detectable_frames  # noqa: E402
from safeface.anonymize.detect import DetectionEngine  # noqa: E402
from safeface.anonymize.video import anonymize_video_file  # noqa: E402
from safeface.errors import ImageError  # noqa: E402
from safeface.imageio import MAX_PIXELS, load_image  # noqa: E402
from safeface.regularfile import SizedReader, open_regular, read_regular  # noqa: E402
from safeface.videoio import MAX_AUDIO_PACKET_BYTES, audio_packet_problem, copied_extradata  # noqa: E402
from tests.video_fixtures import anamorphic_video, synthetic_video  # noqa: E402

def _png(w: int, h: int) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(np.zeros((h, w), np.uint8)).save(buf, "PNG")
    return buf.getvalue()


def test_the_pixel_budget_is_exact() -> None:
    data = _png(7, 5)  # 35 pixels
    assert load_image(data, max_pixels=35).shape == (5, 7, 3)
    with pytest.raises(ImageError, match="exceeds the 34-pixel limit"):
        load_image(data, max_pixels=34)


def test_the_array_pixel_budget_is_exact() -> None:
    with pytest.raises(ImageError, match="exceeds the"):
        load_image(np.zeros((1, MAX_PIXELS + 1), np.uint8))


def test_a_thin_tiff_in_tiles_of_many_times_its_pixels_is_refused() -> None:
    """A 300000x1 TIFF in one 300000x16 tile: the tile is 'within' the image padded to 16 rows, yet
    16 times its pixels, over max_pixels + TIFF_TILE_SLACK (at the default budget a 50-megapixel
    row in such tiles would be 800 megapixels, 2.4 GB of tile buffer)."""
    co = zlib.compressobj(9)
    cut_short = co.compress(b"\0" * (1 << 16)) + co.flush(zlib.Z_SYNC_FLUSH)
    data = _tiled_tiff(300_000, 1, (300_000, 16), [cut_short], deflate=True)
    with pytest.raises(ImageError, match="tiles of 300000x16"):
        load_image(data, max_pixels=300_000)  # the image's own pixels: the tile is 4.8M


def test_an_mpo_whose_first_frame_holds_hundreds_of_scans_is_refused() -> None:
    buf = io.BytesIO()
    Image.fromarray(_gradient(64, 64)).save(buf, format="MPO", save_all=True, progressive=True, quality=90,
                                            append_images=[Image.fromarray(_gradient(64, 64))])
    data = buf.getvalue()
    eoi = data.find(b"\xff\xd9")  # the first frame's end (the frames hold no thumbnail)
    last = data[data.rfind(b"\xff\xda", 0, eoi):eoi]
    flood = data[:eoi] + last * 500 + data[eoi:]
    assert Image.open(io.BytesIO(flood)).format == "MPO"
    with pytest.raises(ImageError, match="scans is refused"):
        load_image(flood)


def test_a_sized_reader_reads_no_byte_past_its_size(tmp_path: Path) -> None:
    f = tmp_path / "f.bin"
    f.write_bytes(b"0123456789")
    with open_regular(f, "f") as fh:
        r = SizedReader(fh, 4)
        assert io.BufferedReader(r).read() == b"0123"
        r.seek(2)
        assert r.read(100) == b"23"
        r.seek(0, io.SEEK_END)
        assert r.tell() == 4 and r.read(5) == b""


def test_read_regular_reads_one_byte_over_the_limit_so_the_caller_can_refuse(tmp_path: Path) -> None:
    f = tmp_path / "f.bin"
    f.write_bytes(b"x" * 11)
    assert read_regular(f, "f", 10) == b"x" * 11
    assert read_regular(f, "f", 20) == b"x" * 11


def test_a_file_one_byte_over_the_image_limit_is_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import safeface.imageio as imageio

    f = tmp_path / "big.png"
    f.write_bytes(b"\x89PNG" + b"\0" * 60)
    monkeypatch.setattr(imageio, "MAX_FILE_BYTES", 63)
    with pytest.raises(ImageError, match="larger than the 63-byte limit"):
        imageio.load_image(f)


def test_an_audio_packet_of_many_seconds_is_not_decoded() -> None:
    small_long = SimpleNamespace(size=100, duration=11, time_base=Fraction(1))
    assert audio_packet_problem(small_long) is not None
    assert audio_packet_problem(SimpleNamespace(size=100, duration=10, time_base=Fraction(1))) is None
    assert audio_packet_problem(SimpleNamespace(size=MAX_AUDIO_PACKET_BYTES + 1, duration=1,
                                                time_base=Fraction(1, 100))) is not None


def test_the_padding_bits_after_an_aac_configuration_are_zeroed() -> None:
    # AAC LC, 44.1 kHz, stereo; sync extension 0x2B7, SBR object type 5, sbrPresentFlag 0;
    # then 7 padding bits set, and bytes after.
    extra = bytes.fromhex("121056e5") + bytes([0x7F]) + b"HIDDEN"
    stream = SimpleNamespace(codec_context=SimpleNamespace(name="aac", extradata=extra))
    assert copied_extradata(stream) == bytes.fromhex("121056e500")


def test_the_frame_size_limit_is_exact(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    src = synthetic_video(tmp_path / "in.mp4", 64, 48)
    monkeypatch.setattr(video_mod, "MAX_FRAME_PIXELS", 64 * 48 - 1)
    with pytest.raises(ImageError, match="64x48 pixels exceed the 3071-pixel limit"):
        anonymize_video_file(src, tmp_path / "out.mp4", options=VideoOptions(progress=False, masked=False))
    assert not (tmp_path / "out.mp4").exists()
    monkeypatch.setattr(video_mod, "MAX_FRAME_PIXELS", 64 * 48)
    anonymize_video_file(src, tmp_path / "out.mp4", options=VideoOptions(progress=False, masked=False))
    assert (tmp_path / "out.mp4").exists()


def test_the_no_face_check_refuses_frames_whose_shown_size_is_over_the_limit(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    src = anamorphic_video(tmp_path / "in.mp4", np.full((12, 12, 3), 200, np.uint8), size=(64, 48), frames=2)
    monkeypatch.setattr(video_mod, "MAX_FRAME_PIXELS", 64 * 48 * 2)  # stored 3,072 passes; shown 9,216 does not
    with pytest.raises(ImageError, match="192x48 pixels exceed"):
        detectable_frames(src, VideoOptions(masked=False).search, FaceFinder("hog", engine=DetectionEngine()))


def test_anonymizing_refuses_frames_whose_shown_size_is_over_the_limit(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Every frame would otherwise be converted, searched and encoded at the stretched size."""
    from safeface.anonymize.video import anonymize_video_file

    src = anamorphic_video(tmp_path / "in.mp4", np.full((12, 12, 3), 200, np.uint8), size=(64, 48), frames=2)
    monkeypatch.setattr(video_mod, "MAX_FRAME_PIXELS", 64 * 48 * 2)
    with pytest.raises(ImageError, match="192x48 pixels exceed"):
        anonymize_video_file(src, tmp_path / "out.mp4", options=VideoOptions(progress=False, masked=False))
    assert not (tmp_path / "out.mp4").exists()
