"""Files whose structure Pillow walks piece by piece in Python while it opens them, before any
size check can run: a TIFF of a million one-row strips, a JPEG of tens of thousands of empty
segments or fill bytes before its scan, a PNG of empty chunks, a GIF of one-byte comment
blocks. At an upload's 8 MiB each took seconds of CPU and hundreds of MiB (a 200 MB file through
the SDK, gigabytes). Each is refused before Pillow opens it; ordinary files still load."""

from __future__ import annotations

import io
import struct
import zlib

import pytest
from PIL import Image

from safeface.errors import ImageError
from safeface.imageio import load_image

MANY = 70_000  # more pieces than any photograph holds (imageio.MAX_HEADER_PIECES)


def _striped_tiff(w: int, h: int) -> bytes:
    """An 8-bit grey, uncompressed little-endian TIFF in one-row strips, all pointing at one row."""
    tags = 10
    data_at = 8 + 2 + tags * 12 + 4
    offsets_at = data_at + w
    counts_at = offsets_at + 2 * h

    def entry(tag: int, kind: int, count: int, value: int) -> bytes:
        return struct.pack("<HHII", tag, kind, count, value)

    ifd = [entry(256, 4, 1, w), entry(257, 4, 1, h), entry(258, 3, 1, 8), entry(259, 3, 1, 1),
           entry(262, 3, 1, 1), entry(273, 3, h, offsets_at), entry(277, 3, 1, 1), entry(278, 4, 1, 1),
           entry(279, 3, h, counts_at), entry(284, 3, 1, 1)]
    return (b"II*\x00" + struct.pack("<IH", 8, tags) + b"".join(ifd) + struct.pack("<I", 0)
            + b"\x80" * w + struct.pack("<H", data_at) * h + struct.pack("<H", w) * h)


def _saved(fmt: str, mode: str = "RGB") -> bytes:
    buf = io.BytesIO()
    Image.new(mode, (32, 32), 128).save(buf, fmt)
    return buf.getvalue()


def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def test_a_tiff_of_more_strips_than_any_photo_is_refused_before_pillow_lists_them() -> None:
    """A hostile uploader sends a TIFF of one-row strips, 4 bytes each (8 MiB: 2 million strips,
    11.6 s and 680 MiB): it must be refused, unopened; a tall TIFF of 60,000 strips still loads."""
    with pytest.raises(ImageError, match="strips"):
        load_image(_striped_tiff(24, MANY))
    assert load_image(_striped_tiff(24, 60_000)).shape == (60_000, 24, 3)


def test_a_jpeg_of_endless_segments_or_fill_bytes_before_its_scan_is_refused() -> None:
    """A hostile uploader pads a JPEG's header with empty APP segments (33 times their size in
    memory), also behind an early EOI, or with 0xFF fill bytes Pillow reads one at a time: each is
    refused, unopened; a photo's hundreds of APP segments still load."""
    jpeg = _saved("JPEG")
    for padding in (b"\xff\xef\x00\x02" * MANY, b"\xff" * MANY, b"\xff\xfe\x00\x02" * MANY,
                    b"\xff\xd9" + b"\xff\xef\x00\x02" * MANY):  # behind an EOI, which Pillow reads past
        with pytest.raises(ImageError, match="before its first scan"):
            load_image(jpeg[:2] + padding + jpeg[2:])
    icc_like = b"".join(b"\xff\xe2" + struct.pack(">H", 2 + 1000) + bytes(1000) for _ in range(200))
    assert load_image(jpeg[:2] + icc_like + jpeg[2:]).shape == (32, 32, 3)  # a photo's many APP2s


def test_a_png_of_endless_empty_chunks_is_refused() -> None:
    """A hostile uploader fills a PNG with empty private chunks, which Pillow keeps in a list, or
    empty data chunks it reads one by one: both are refused, unopened."""
    png = _saved("PNG")
    for filler in (_chunk(b"abCd", b""), _chunk(b"tEXt", b"k\x00v")):
        with pytest.raises(ImageError, match="chunks"):
            load_image(png[:33] + filler * MANY + png[33:])
    assert load_image(png[:33] + _chunk(b"tEXt", b"k\x00v") * 100 + png[33:]).shape == (32, 32, 3)


def test_a_gif_of_endless_comment_blocks_before_its_frame_is_refused() -> None:
    """A hostile uploader puts one-byte comment sub-blocks, or empty extensions, before a GIF's
    first frame (32 MiB of them took over a GiB): refused, unopened."""
    gif = _saved("GIF", "L")
    palette = 3 << ((gif[10] & 7) + 1) if gif[10] & 0x80 else 0
    at = 13 + palette
    hidden = b"\x21\xf9\x00" + b"\x01," + b"\x01a" * MANY + b"\x00"  # Pillow reads on after an empty block
    for filler in (b"\x21\xfe" + b"\x01a" * MANY + b"\x00", b"\x21\xfe\x01a\x00" * MANY, hidden):
        with pytest.raises(ImageError, match="before its first frame"):
            load_image(gif[:at] + filler + gif[at:])
    assert load_image(gif[:at] + b"\x21\xfe" + b"\x05hello" * 100 + b"\x00" + gif[at:]).shape == (32, 32, 3)


def test_a_png_of_many_colour_profiles_is_refused() -> None:
    """Pillow inflates every iCCP chunk, up to 1 MiB each, and keeps the last: 2,000 profiles of a
    MiB of zeros (1 KB each compressed, a 2 MiB file) took 1.4 s of CPU, an 8 MiB upload about
    6 s, a 64 MiB one under the chunk bound about 45 s. The standard allows one profile: a second
    is refused before Pillow opens the file; a PNG with one still loads."""
    png = _saved("PNG")
    profile = _chunk(b"iCCP", b"p\x00\x00" + zlib.compress(bytes((1 << 20) - 1), 9))
    assert load_image(png[:33] + profile + png[33:]).shape == (32, 32, 3)
    for data in (png[:33] + profile * 2000 + png[33:], png[:33] + profile + png[33:-12] + profile + png[-12:]):
        with pytest.raises(ImageError, match="colour profiles"):
            load_image(data)


def _tiff_with_tag(tag: int, kind: int, count: int) -> bytes:
    """A 16x16 grey TIFF whose first directory also holds `tag` of `count` values of TIFF type
    `kind` (3 SHORT, 5 RATIONAL, 7 UNDEFINED...)."""
    w = h = 16
    size = {1: 1, 3: 2, 4: 4, 5: 8, 7: 1}[kind]
    tags = 11
    data_at = 8 + 2 + tags * 12 + 4

    def entry(t: int, k: int, c: int, v: int) -> bytes:
        return struct.pack("<HHII", t, k, c, v)

    ifd = sorted([entry(256, 4, 1, w), entry(257, 4, 1, h), entry(258, 3, 1, 8), entry(259, 3, 1, 1),
                  entry(262, 3, 1, 1), entry(273, 4, 1, data_at), entry(277, 3, 1, 1), entry(278, 4, 1, h),
                  entry(279, 4, 1, w * h), entry(284, 3, 1, 1), entry(tag, kind, count, data_at + w * h)])
    return (b"II*\x00" + struct.pack("<IH", 8, tags) + b"".join(ifd) + struct.pack("<I", 0)
            + b"\x80" * (w * h) + b"\x01" * (count * size))


@pytest.mark.parametrize("tag, kind", [(274, 3), (282, 5)], ids=["orientation of shorts", "resolution of rationals"])
def test_a_tiff_tag_of_endless_numbers_is_refused_before_pillow_unpacks_them(tag: int, kind: int) -> None:
    """Pillow unpacks a number tag's values into a Python tuple while it opens a TIFF: an
    orientation of 20 million shorts (38 MiB) took 3.7 s and 1.1 GB, a resolution of 4 million
    rationals (30 MiB) 10.9 s and 955 MiB. Past the longest array TIFF defines (3 x 65,536) a tag's
    numbers are refused like strips; bytes (an ICC profile, XMP) are one object to Pillow and may
    be long."""
    with pytest.raises(ImageError, match="tags, strips or tiles"):
        load_image(_tiff_with_tag(tag, kind, (3 << 16) + 1))
    assert load_image(_tiff_with_tag(tag, kind, 60_000)).shape == (16, 16, 3)
    assert load_image(_tiff_with_tag(34675, 7, 4 * MANY)).shape == (16, 16, 3)  # a long ICC profile


@pytest.mark.parametrize("tag", [301, 320], ids=["transfer function", "colour map"])
def test_a_tiff_tag_as_long_as_the_standard_allows_still_loads(tag: int) -> None:
    """A 48-bit scan's TransferFunction holds 3 x 65,536 shorts (as a 16-bit ColorMap would): such
    an honest TIFF was refused as a decompression bomb when one tag's numbers counted as pieces."""
    assert load_image(_tiff_with_tag(tag, 3, 3 << 16)).shape == (16, 16, 3)
