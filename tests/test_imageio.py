"""Input handling: every supported form decodes; every bad input gives ImageError, fast."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from safeface import ImageError, load_image


def _png(arr: np.ndarray, mode: str | None = None) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(arr, mode=mode).save(buf, format="PNG") if mode else Image.fromarray(arr).save(buf, format="PNG")
    return buf.getvalue()


def _jpeg(arr: np.ndarray, **kw: object) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, format="JPEG", **kw)
    return buf.getvalue()


@pytest.fixture()
def gradient() -> np.ndarray:
    y, x = np.mgrid[0:40, 0:60]
    return np.stack([x * 4, y * 6, (x + y) * 2], axis=-1).astype(np.uint8)


def test_path_bytes_and_array_agree(tmp_path: Path, gradient: np.ndarray) -> None:
    data = _png(gradient)
    p = tmp_path / "g.png"
    p.write_bytes(data)
    a = load_image(p)
    b = load_image(data)
    c = load_image(gradient)
    assert a.shape == (40, 60, 3) and a.dtype == np.uint8
    assert np.array_equal(a, b) and np.array_equal(a, c) and np.array_equal(a, gradient)


def test_grayscale_becomes_three_equal_channels(gradient: np.ndarray) -> None:
    g = gradient[:, :, 0]
    out = load_image(_png(g))
    assert out.shape == (40, 60, 3)
    assert np.array_equal(out[:, :, 0], g) and np.array_equal(out[:, :, 2], g)


def test_rgba_composited_on_white() -> None:
    rgba = np.zeros((10, 10, 4), dtype=np.uint8)
    rgba[..., 0] = 200
    rgba[:5, :, 3] = 255  # top half opaque red, bottom half transparent
    out = load_image(_png(rgba))
    assert tuple(out[0, 0]) == (200, 0, 0)
    assert tuple(out[9, 9]) == (255, 255, 255)


def test_16bit_png_scaled_to_8bit() -> None:
    g16 = (np.arange(100, dtype=np.uint16).reshape(10, 10) * 600)
    buf = io.BytesIO()
    Image.fromarray(g16).save(buf, format="PNG")
    out = load_image(buf.getvalue())
    assert out.dtype == np.uint8
    assert out[0, 0, 0] == 0
    assert out[-1, -1, 0] == round(99 * 600 * 255 / 65535)


@pytest.mark.parametrize("mode", ["I;16", "RGBA"])
def test_a_small_file_of_many_pixels_decodes_without_copies_of_its_size(mode: str) -> None:
    """A flat 7,070 x 7,070 PNG (50 megapixels, the limit) is a few hundred kilobytes. Converted
    to 8-bit RGB in one go, a 16-bit one made float copies of 400 MB each, and a transparent one
    two more full copies: over a gigabyte for one call. Converted a band of rows at a time, the
    arrays beside the result stay small."""
    import tracemalloc

    side = 7070
    buf = io.BytesIO()
    Image.new(mode, (side, side), 3000 if mode == "I;16" else (10, 20, 30, 128)).save(buf, format="PNG")
    data = buf.getvalue()
    assert len(data) < 400_000
    tracemalloc.start()
    try:
        out = load_image(data)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert out.shape == (side, side, 3) and out.dtype == np.uint8
    assert tuple(out[-1, -1]) == ((12, 12, 12) if mode == "I;16" else (132, 137, 142))
    assert peak < 1.5 * out.nbytes, f"{peak / 2**20:.0f} MB of arrays for a {out.nbytes / 2**20:.0f} MB image"


def test_a_big_endian_16_bit_tiff_decodes_like_its_little_endian_twin() -> None:
    g16 = (np.arange(48 * 64, dtype=np.uint16).reshape(48, 64) * 20)
    little = io.BytesIO()
    Image.fromarray(g16).save(little, format="TIFF")
    big = io.BytesIO()
    Image.frombuffer("I;16B", (64, 48), g16.astype(">u2").tobytes(), "raw", "I;16B", 0, 1).save(big, format="TIFF")
    assert Image.open(io.BytesIO(big.getvalue())).mode == "I;16B"
    assert np.array_equal(load_image(big.getvalue()), load_image(little.getvalue()))


def test_exif_orientation_applied(gradient: np.ndarray) -> None:
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise on display
    data = _jpeg(gradient, exif=exif.tobytes(), quality=95)
    out = load_image(data)
    assert out.shape == (60, 40, 3)


def _tiff_ifd(entries: list[tuple[int, int, bytes]]) -> bytes:
    """A little-endian TIFF header and one IFD of (tag, type, value) entries, each one count."""
    import struct

    head, body, extra = b"II*\x00" + struct.pack("<I", 8), struct.pack("<H", len(entries)), b""
    past = 8 + 2 + 12 * len(entries) + 4
    for tag, kind, value in entries:
        where = value.ljust(4, b"\0") if len(value) <= 4 else struct.pack("<I", past + len(extra))
        extra += b"" if len(value) <= 4 else value
        body += struct.pack("<HHI", tag, kind, 1) + where
    return head + body + struct.pack("<I", 0) + extra


def test_exif_pillow_cannot_parse_or_rewrite_is_no_crash(gradient: np.ndarray) -> None:
    """Two photos Pillow opens whose EXIF its parser fails on: a PNG eXIf chunk cut after the
    TIFF header (struct.error) and a turned JPEG whose DateTime is stored as a double (Pillow's
    exif_transpose failed rewriting it: AttributeError). Both reached the service as HTTP 500 and
    the CLI as a traceback. Unreadable EXIF is ignored; a readable orientation still turns."""
    import struct
    import zlib

    png = _png(gradient)
    cut = b"II*\x00\x08\x00"
    chunk = struct.pack(">I", len(cut)) + b"eXIf" + cut + struct.pack(">I", zlib.crc32(b"eXIf" + cut))
    at = png.index(b"IDAT") - 4
    assert load_image(png[:at] + chunk + png[at:]).shape == (40, 60, 3)
    exif = b"Exif\x00\x00" + _tiff_ifd([(0x0112, 3, struct.pack("<H", 6)), (0x0132, 12, struct.pack("<d", 2024.0))])
    assert load_image(_jpeg(gradient, exif=exif, quality=95)).shape == (60, 40, 3)


@pytest.mark.parametrize(
    "data, words",
    [
        (b"", "empty"),
        (b"not an image at all", "not an image"),
        (b"\x89PNG\r\n\x1a\n" + b"\x00" * 40, "corrupt"),
    ],
)
def test_bad_bytes(data: bytes, words: str) -> None:
    with pytest.raises(ImageError, match=words):
        load_image(data)


def test_truncated_jpeg(gradient: np.ndarray) -> None:
    data = _jpeg(np.tile(gradient, (8, 8, 1)))
    with pytest.raises(ImageError, match="corrupt or truncated"):
        load_image(data[: len(data) // 2])


def test_decompression_bomb_refused_before_decoding() -> None:
    # A valid PNG header claiming 100000 x 100000 pixels: refused on the header alone.
    small = _png(np.zeros((1, 1), dtype=np.uint8))
    import struct
    import zlib

    ihdr = struct.pack(">IIBBBBB", 100_000, 100_000, 8, 0, 0, 0, 0)
    chunk = b"IHDR" + ihdr
    bomb = small[:8] + struct.pack(">I", 13) + chunk + struct.pack(">I", zlib.crc32(chunk)) + small[33:]
    with pytest.raises(ImageError, match="limit|bomb"):
        load_image(bomb)


def test_missing_file_and_directory(tmp_path: Path) -> None:
    with pytest.raises(ImageError, match="no such file"):
        load_image(tmp_path / "nope.jpg")
    with pytest.raises(ImageError, match="not a regular file"):
        load_image(tmp_path)


def test_bad_arrays() -> None:
    with pytest.raises(ImageError, match="empty"):
        load_image(np.zeros((0, 5, 3), dtype=np.uint8))
    with pytest.raises(ImageError, match="shape"):
        load_image(np.zeros((4, 4, 2), dtype=np.uint8))
    with pytest.raises(ImageError, match="NaN"):
        load_image(np.full((4, 4), np.nan, dtype=np.float32))
    with pytest.raises(ImageError, match="unsupported image input"):
        load_image(12345)  # type: ignore[arg-type]


def test_big_endian_arrays_are_read_as_their_values() -> None:
    """An array stored big-endian (from a file format or a network buffer) was refused as an
    unsupported dtype, though uint16 and float are accepted."""
    values = np.arange(12 * 10 * 3).reshape(12, 10, 3) % 256
    for little, big in (("<u2", ">u2"), ("<f4", ">f4")):
        assert np.array_equal(load_image(values.astype(big)), load_image(values.astype(little)))
    assert np.array_equal(load_image((values * 257).astype(">u2")), load_image((values * 257).astype("<u2")))


def _red_corner() -> np.ndarray:
    a = np.zeros((40, 60, 3), np.uint8)
    a[:10, :10] = (255, 0, 0)  # stored top-left
    return a


@pytest.mark.parametrize("orientation, turns", [(6, -1), (8, 1), (3, 2)])  # np.rot90's k: + is anticlockwise
def test_exif_orientation_turns_the_right_way(orientation: int, turns: int) -> None:
    """A turn the wrong way round has the right shape too: a phone portrait would come out upside
    down."""
    exif = Image.Exif()
    exif[0x0112] = orientation
    buf = io.BytesIO()
    Image.fromarray(_red_corner()).save(buf, format="PNG", exif=exif.tobytes())
    assert np.array_equal(load_image(buf.getvalue()), np.rot90(_red_corner(), k=turns))


def test_an_exif_block_longer_than_a_photos_is_not_parsed(gradient: np.ndarray) -> None:
    """A PNG's eXIf chunk (or a WebP's EXIF) has no size bound, and Pillow's parser unpacks the
    orientation tag's values into a tuple, one object per number: 20 million shorts (38 MiB) took
    1.4 s and 566 MiB, a 200 MB file gigabytes. A JPEG's EXIF fits one 64 KiB segment; a longer
    block is read as unreadable EXIF is (the photo as stored), and a photo's short one still turns."""
    import struct
    import tracemalloc
    import zlib

    def in_png(exif: bytes) -> bytes:
        png = _png(gradient)
        at = png.index(b"IDAT") - 4
        return png[:at] + struct.pack(">I", len(exif)) + b"eXIf" + exif + struct.pack(">I", zlib.crc32(b"eXIf" + exif)) \
            + png[at:]

    def with_exif(orientations: int) -> bytes:
        if orientations == 1:  # the value in the entry itself
            return in_png(_tiff_ifd([(0x0112, 3, struct.pack("<H", 6))]))
        return in_png(b"II*\x00" + struct.pack("<IH", 8, 1) + struct.pack("<HHII", 0x0112, 3, orientations, 26)
                      + struct.pack("<I", 0) + struct.pack("<H", 6) * orientations)

    long_block = with_exif(4_000_000)  # 8 MB: Pillow's tuple of it alone took 32 MB
    tracemalloc.start()
    try:
        shape = load_image(long_block).shape
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 4 * len(long_block), f"{peak / len(long_block):.1f} times the file"
    assert shape == (40, 60, 3)
    assert load_image(with_exif(1)).shape == (60, 40, 3)
