"""Small files that cost a decoder far more than their size: a TIFF whose tiles are larger than
the image they tile, a format safeface never claimed to read (gzip-compressed FITS), a JPEG of
hundreds of scans. Each is refused before anything is decoded, measured in a fresh child process
(VmHWM); beside them, the ordinary files of each format still load. Every fixture is built here,
a few kilobytes at most."""

from __future__ import annotations

import io
import struct
import subprocess
import sys
import textwrap
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parent))
from child_process import child_env  # noqa: E402

from safeface.errors import ImageError  # noqa: E402
from safeface import imageio  # noqa: E402
from safeface.imageio import load_image  # noqa: E402

# A child importing safeface and refusing a file peaks near 40 MiB; each attack took 1.2-2.2 GB.
PEAK_BOUND_KIB = 600 * 1024


def _in_child(tmp_path: Path, data: bytes) -> tuple[str, int]:
    """load_image of `data` in a fresh process: what it printed, and its peak resident KiB."""
    src = tmp_path / "input.bin"
    src.write_bytes(data)
    code = textwrap.dedent("""
        import re, sys
        from safeface.errors import ImageError
        from safeface.imageio import load_image
        try:
            print("decoded", load_image(open(sys.argv[1], "rb").read()).shape)
        except ImageError as exc:
            print("ImageError:", exc)
        print(re.search(r"VmHWM:\\s+(\\d+)", open("/proc/self/status").read()).group(1))
    """)
    r = subprocess.run([sys.executable, "-c", code, str(src)], env=child_env(), cwd=str(tmp_path),
                       capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr[-2000:]
    *said, peak = r.stdout.strip().splitlines()
    return "\n".join(said), int(peak)


def _gradient(w: int, h: int) -> np.ndarray:
    y, x = np.mgrid[0:h, 0:w]
    return np.stack([x * 255 // max(w - 1, 1), y * 255 // max(h - 1, 1), (x + y) % 256], axis=2).astype(np.uint8)


def _tiled_tiff(w: int, h: int, tile: tuple[int, int], blocks: list[bytes], *, deflate: bool,
                counts: list[int] | None = None) -> bytes:
    """A little-endian RGB 8-bit TIFF in tiles of `tile` pixels holding `blocks` as they are."""
    body = b"".join(blocks)
    offsets, at = [], 8
    for b in blocks:
        offsets.append(at)
        at += len(b)
    extra = bytearray()
    base = 8 + len(body)

    def array(kind: str, values: list[int]) -> int:
        if len(extra) % 2:
            extra.append(0)
        where = base + len(extra)
        extra.extend(struct.pack(f"<{len(values)}{kind}", *values))
        return where

    def entry(tag: int, typ: int, values: list[int]) -> bytes:
        kind, size = {3: ("H", 2), 4: ("I", 4)}[typ]
        if len(values) * size <= 4:
            inline = struct.pack(f"<{len(values)}{kind}", *values).ljust(4, b"\0")
            return struct.pack("<HHI", tag, typ, len(values)) + inline
        return struct.pack("<HHII", tag, typ, len(values), array(kind, values))

    byte_counts = counts if counts is not None else [len(b) for b in blocks]
    tags = [(256, 4, [w]), (257, 4, [h]), (258, 3, [8, 8, 8]), (259, 3, [8 if deflate else 1]),
            (262, 3, [2]), (277, 3, [3]), (284, 3, [1]), (322, 4, [tile[0]]), (323, 4, [tile[1]]),
            (324, 4, offsets), (325, 4, byte_counts)]
    entries = [entry(t, typ, v) for t, typ, v in tags]
    if len(extra) % 2:
        extra.append(0)
    ifd_at = base + len(extra)
    ifd = struct.pack("<H", len(entries)) + b"".join(entries) + struct.pack("<I", 0)
    return b"II*\0" + struct.pack("<I", ifd_at) + body + bytes(extra) + ifd


def _tiles_of(img: np.ndarray, tw: int, th: int, deflate: bool) -> list[bytes]:
    h, w = img.shape[:2]
    out = []
    for y in range(0, h, th):
        for x in range(0, w, tw):
            t = np.zeros((th, tw, 3), np.uint8)
            part = img[y:y + th, x:x + tw]
            t[:part.shape[0], :part.shape[1]] = part
            out.append(zlib.compress(t.tobytes()) if deflate else t.tobytes())
    return out


# -- TIFF tiles larger than the image ----------------------------------------------------------
def test_a_tiff_whose_one_tile_is_far_larger_than_the_image_is_refused_before_libtiff_allocates_it(
        tmp_path: Path) -> None:
    """64x64 pixels in one 20000x20000 tile: libtiff allocated and filled the 1.2 GB tile buffer
    before failing on the 1 KB of deflate data behind it (a 26000-pixel tile took 1,970 MiB)."""
    co = zlib.compressobj(9)
    cut_short = co.compress(b"\0" * (1 << 20)) + co.flush(zlib.Z_SYNC_FLUSH)
    bomb = _tiled_tiff(64, 64, (20000, 20000), [cut_short], deflate=True)
    assert len(bomb) < 2000
    said, peak = _in_child(tmp_path, bomb)
    assert peak < PEAK_BOUND_KIB, f"{peak // 1024} MiB: {said}"
    assert said.startswith("ImageError:") and "tiles of 20000x20000" in said, said


def test_a_tiff_tile_byte_count_beyond_the_file_is_refused() -> None:
    img = _gradient(64, 64)
    data = _tiled_tiff(64, 64, (32, 32), _tiles_of(img, 32, 32, True), deflate=True, counts=[1 << 30] * 4)
    with pytest.raises(ImageError, match="claims 1073741824 bytes"):
        load_image(data)


@pytest.mark.parametrize("deflate", [True, False])
@pytest.mark.parametrize("w, h, tile", [(100, 70, (32, 32)), (40, 30, (256, 256)), (50, 20, (64, 32))])
def test_tiled_tiffs_with_ordinary_tiles_still_load(w: int, h: int, tile: tuple[int, int], deflate: bool) -> None:
    """Tiles smaller than the image, and one standard tile over a thumbnail, decode exactly."""
    img = _gradient(w, h)
    data = _tiled_tiff(w, h, tile, _tiles_of(img, *tile, deflate), deflate=deflate)
    assert np.array_equal(load_image(data), img)


def test_a_large_tiff_in_one_tile_rounded_up_to_16_pixels_still_loads() -> None:
    """A writer that puts the whole image in one tile rounds the tile's sides up to a multiple of
    16, as TIFF requires: 2050x2050 in one 2064x2064 tile is far over the slack allowed a tile
    larger than its image, and an ordinary photo all the same."""
    img = _gradient(2050, 2050)
    data = _tiled_tiff(2050, 2050, (2064, 2064), _tiles_of(img, 2064, 2064, True), deflate=True)
    assert np.array_equal(load_image(data), img)
    refused = _tiled_tiff(2050, 2050, (2080, 2064), _tiles_of(img, 2080, 2064, True), deflate=True)
    with pytest.raises(ImageError, match="tiles of 2080x2064"):
        load_image(refused)  # 16 pixels more than rounding gives is out of proportion again


@pytest.mark.parametrize("compression", [None, "tiff_deflate", "tiff_lzw"])
def test_striped_tiffs_still_load(compression: str | None) -> None:
    img = _gradient(90, 61)
    buf = io.BytesIO()
    Image.fromarray(img).save(buf, format="TIFF", compression=compression)
    assert np.array_equal(load_image(buf.getvalue()), img)


# -- formats safeface does not claim ------------------------------------------------------------
def _fits_card(key: str, value: str | None = None) -> bytes:
    return (key.ljust(8) + ("= " + value if value is not None else "")).ljust(80).encode()


def _fits_block(cards: list[bytes]) -> bytes:
    b = b"".join(cards) + _fits_card("END")
    return b + b" " * (-len(b) % 2880)


def test_a_gzip_compressed_fits_image_is_refused_as_a_format_safeface_does_not_read(tmp_path: Path) -> None:
    """6000x6000 32-bit pixels in 150 KB: Pillow's FITS plugin expanded them into a list of
    Python ints (1.5 GB and more, 7070x7070 peaked at 2,159 MiB) though safeface never listed
    FITS. Only the formats it lists are tried now."""
    side = 6000
    prim = _fits_block([_fits_card("SIMPLE", "T"), _fits_card("BITPIX", "8"), _fits_card("NAXIS", "0")])
    ext = _fits_block([_fits_card("XTENSION", "'BINTABLE'"), _fits_card("BITPIX", "8"), _fits_card("NAXIS", "2"),
                       _fits_card("NAXIS1", "1"), _fits_card("NAXIS2", "1"), _fits_card("ZIMAGE", "T"),
                       _fits_card("ZCMPTYPE", "'GZIP_1  '"), _fits_card("ZBITPIX", "32"), _fits_card("ZNAXIS", "2"),
                       _fits_card("ZNAXIS1", str(side)), _fits_card("ZNAXIS2", str(side))])
    gz = zlib.compressobj(9, zlib.DEFLATED, 31)  # gzip framing
    row = bytes(side * 4)
    stream = b"".join(gz.compress(row) for _ in range(side)) + gz.flush()
    bomb = prim + ext + b"\0" + stream
    assert len(bomb) < 200_000
    said, peak = _in_child(tmp_path, bomb)
    assert peak < PEAK_BOUND_KIB, f"{peak // 1024} MiB: {said}"
    assert said.startswith("ImageError:") and "supported: JPEG, PNG, BMP, GIF, WebP, TIFF" in said, said


@pytest.mark.parametrize("fmt", ["PPM", "ICO", "TGA", "PCX", "SGI", "DDS", "QOI"])
def test_formats_pillow_reads_but_safeface_does_not_list_are_refused(fmt: str) -> None:
    buf = io.BytesIO()
    Image.fromarray(_gradient(16, 16)).save(buf, format=fmt)
    with pytest.raises(ImageError, match="not an image safeface can read"):
        load_image(buf.getvalue())


@pytest.mark.parametrize("fmt, kw", [("PNG", {}), ("GIF", {}), ("WEBP", {"lossless": True}), ("BMP", {}),
                                     ("JPEG", {"quality": 95}), ("TIFF", {})])
def test_every_listed_format_still_loads(fmt: str, kw: dict[str, object]) -> None:
    img = _gradient(48, 32)
    buf = io.BytesIO()
    Image.fromarray(img).save(buf, format=fmt, **kw)
    out = load_image(buf.getvalue())
    assert out.shape == (32, 48, 3)
    if fmt in ("PNG", "WEBP", "BMP", "TIFF"):
        assert np.array_equal(out, img)


def test_a_multi_frame_jpeg_from_a_phone_loads_as_its_first_frame() -> None:
    """MPO (a JPEG with further frames after it) is opened by the JPEG plugin."""
    first, second = _gradient(40, 30), _gradient(40, 30)[::-1].copy()
    buf = io.BytesIO()
    Image.fromarray(first).save(buf, format="MPO", save_all=True, append_images=[Image.fromarray(second)],
                                quality=95)
    assert Image.open(io.BytesIO(buf.getvalue())).format == "MPO"
    out = load_image(buf.getvalue())
    assert np.abs(out.astype(int) - first).mean() < 3


# -- JPEG scans ---------------------------------------------------------------------------------
def _progressive(img: np.ndarray, **kw: object) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(img).save(buf, format="JPEG", progressive=True, quality=90, **kw)
    return buf.getvalue()


def _with_last_scan_repeated(jpeg: bytes, times: int) -> bytes:
    """The JPEG with its last scan (SOS segment and data, up to EOI) repeated: libjpeg decodes
    each copy over the whole image (about 30 ms each at 50 megapixels)."""
    assert jpeg.endswith(b"\xff\xd9")
    last = jpeg[jpeg.rfind(b"\xff\xda"):-2]
    return jpeg[:-2] + last * times + b"\xff\xd9"


def test_a_jpeg_of_hundreds_of_scans_is_refused_before_decoding(tmp_path: Path) -> None:
    """The repeated scan is 75 bytes at 7000x7000; an 8 MB upload of them held a worker for most
    of an hour. Here the image is small (the refusal is on the count, before decoding)."""
    flood = _with_last_scan_repeated(_progressive(_gradient(64, 64)), 500)
    said, peak = _in_child(tmp_path, flood)
    assert peak < PEAK_BOUND_KIB, f"{peak // 1024} MiB: {said}"
    assert said.startswith("ImageError:") and "scans is refused" in said, said


def test_an_empty_comment_segment_between_scans_does_not_end_the_count() -> None:
    """An empty comment (FF FE 00 00) after the first scan ended the walk, while libjpeg skips it
    and decodes every scan after: 2,010 scans of a 4000x4000 image took 19.6 s of CPU."""
    base = _progressive(_gradient(64, 64))
    second = base.find(b"\xff\xda", base.find(b"\xff\xda") + 2)
    flood = _with_last_scan_repeated(base[:second] + b"\xff\xfe\x00\x00" + base[second:], 500)
    with pytest.raises(ImageError, match="scans"):
        load_image(flood)
    honest = base[:second] + b"\xff\xfe\x00\x00" + base[second:]
    assert load_image(honest).shape == (64, 64, 3)  # libjpeg reads past it, and so does the count


def test_the_scan_bound_is_exact() -> None:
    base = _progressive(_gradient(64, 64))  # libjpeg's standard colour script: 10 scans
    bound = imageio.MAX_JPEG_SCANS
    assert load_image(_with_last_scan_repeated(base, bound - 10)).shape == (64, 64, 3)
    with pytest.raises(ImageError, match="scans"):
        load_image(_with_last_scan_repeated(base, bound - 9))


def test_scan_markers_inside_other_segments_and_stuffed_or_restart_bytes_are_not_counted() -> None:
    """The walk follows segment lengths and the rules of scan data: SOS bytes in a comment, an
    EXIF thumbnail's own scans, 0xFF00 and restart markers in scan data are not scans."""
    img = _gradient(96, 80)
    thumb = io.BytesIO()
    Image.fromarray(img[:16, :16]).save(thumb, format="JPEG", progressive=True)
    exif = Image.Exif()
    exif[0x0112] = 1
    data = _progressive(img, comment=b"\xff\xda\x00\x08" * 2000, restart_marker_blocks=1,
                        exif=exif.tobytes() + thumb.getvalue() * 10)
    assert data.count(b"\xff\xda") > 2000
    assert any(bytes([0xFF, m]) in data for m in range(0xD0, 0xD8))
    out = load_image(data)
    assert out.shape == (80, 96, 3)
    assert np.abs(out.astype(int) - img).mean() < 4


def test_progressive_and_baseline_jpegs_still_load() -> None:
    img = _gradient(120, 90)
    for data in (_progressive(img), _progressive(img[:, :, 0].copy())):
        assert load_image(data).shape == (90, 120, 3)
    buf = io.BytesIO()
    Image.fromarray(img).save(buf, format="JPEG", quality=95)
    assert np.abs(load_image(buf.getvalue()).astype(int) - img).mean() < 3


# -- BMP in RLE compression ---------------------------------------------------------------------
def _rle_bmp(w: int, h: int, body: bytes, *, rle4: bool = False) -> bytes:
    """A bottom-up BMP of 16 palette colours (colour i: i*16 in red and green, 255-i*16 in blue)
    whose pixel data, RLE8 or RLE4 as written, is `body`."""
    palette = b"".join(bytes((255 - i * 16, i * 16, i * 16, 0)) for i in range(16))  # B, G, R, 0
    offset = 14 + 40 + len(palette)
    info = struct.pack("<IiiHHIIiiII", 40, w, h, 1, 4 if rle4 else 8, 2 if rle4 else 1, len(body), 2835, 2835, 16, 0)
    return b"BM" + struct.pack("<IHHI", offset + len(body), 0, 0, offset) + info + palette + body


def _rle_colour(i: int) -> tuple[int, int, int]:
    return (i * 16, i * 16, 255 - i * 16)


def test_a_small_rle_bmp_still_loads() -> None:
    """Run-length BMPs (RLE8, RLE4) of an icon's size decode, pixel for pixel."""
    w, h = 40, 30
    rows8 = b"".join(bytes((w, y % 16)) + b"\x00\x00" for y in range(h)) + b"\x00\x01"
    rows4 = b"".join(bytes((w, (y % 16) << 4 | (y + 1) % 16)) + b"\x00\x00" for y in range(h)) + b"\x00\x01"
    for data, second in ((_rle_bmp(w, h, rows8), lambda y: y % 16),
                         (_rle_bmp(w, h, rows4, rle4=True), lambda y: (y + 1) % 16)):
        out = load_image(data)
        assert out.shape == (h, w, 3)
        for y in range(h):  # bottom-up: the file's first row is the image's last
            row = out[h - 1 - y]
            assert tuple(row[0]) == _rle_colour(y % 16)
            assert tuple(row[1]) == _rle_colour(second(y))


@pytest.mark.parametrize("attack", ["line ends", "rle4 runs", "runs past the row"])
def test_an_rle_bmp_that_pillow_would_decode_for_seconds_is_refused_before_decoding(attack: str) -> None:
    """Pillow decodes RLE in Python, a loop step per pixel for RLE4 runs and for the padding a
    line end adds, and per two bytes for runs past the row's end that add nothing. A 28 KB BMP
    of 7000x7000 (one pixel, then a line end, on each row) took 5.5 s of CPU and 240 MiB; a
    406 KB one of RLE4 runs 2.5 s; 8 MB of runs past the row 1.75 s. Here smaller copies of each
    (about 1.8 s, 0.8 s, 0.6 s before): refused on their header, naming the compression."""
    if attack == "line ends":
        w = h = 4000
        data = _rle_bmp(w, h, b"\x01\x05\x00\x00" * h + b"\x00\x01")
    elif attack == "rle4 runs":
        w = h = 4000
        data = _rle_bmp(w, h, (b"\xff\x12" * (w // 255) + bytes((w % 255, 0x12)) + b"\x00\x00") * h + b"\x00\x01",
                        rle4=True)
    else:
        w = h = 100  # a first row, 3 MiB of runs that add nothing, then the other rows
        row = bytes((w, 3)) + b"\x00\x00"
        data = _rle_bmp(w, h, bytes((w, 3)) + b"\x01\x01" * (3 << 19) + b"\x00\x00" + row * (h - 1) + b"\x00\x01")
    with pytest.raises(ImageError, match="RLE") as caught:
        load_image(data)
    assert "re-save it" in str(caught.value)
