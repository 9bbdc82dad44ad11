"""Decoding input images into RGB uint8 arrays, defensively.

Accepted: a filesystem path, raw bytes, or a NumPy array (HxW grey, HxWx3 RGB, HxWx4 RGBA;
uint8 or uint16). EXIF orientation is applied. Anything unreadable raises ImageError; nothing
here writes to disk.
"""

from __future__ import annotations

import hashlib
import io
import os
import re
import struct
import warnings
from pathlib import Path
from typing import Callable, Iterator, Union

import numpy as np
from PIL import Image, TiffImagePlugin, UnidentifiedImageError

from .errors import ImageError
from .regularfile import read_regular

ImageInput = Union[str, "os.PathLike[str]", bytes, bytearray, memoryview, np.ndarray]

# 50 megapixels covers any camera in use at a gate or a till; beyond it a file is far more
# likely a decompression bomb than a photograph.
MAX_PIXELS = 50_000_000
# Raw bytes larger than this are refused before decoding is attempted.
MAX_FILE_BYTES = 200 * 1024 * 1024
# The formats Pillow may try, and no others: each of its plugins is a decoder an upload could
# reach, and some (FITS, PSD, ICNS...) size their buffers from headers no check here reads. A
# JPEG holding several frames (MPO, as phones write) is opened by the JPEG plugin.
FORMATS = ("JPEG", "PNG", "BMP", "GIF", "WEBP", "TIFF")
# Scans a JPEG may hold. libjpeg decodes every scan over the whole image, so a 50-megapixel
# progressive JPEG with one 75-byte scan repeated costs about 30 ms of CPU per copy. A colour
# progressive JPEG of libjpeg's standard script has 10 scans and one with tuned scans some
# tens; 100 leaves room for any of them and bounds the decode to a few seconds.
MAX_JPEG_SCANS = 100
# Pieces of a file's structure that Pillow walks one at a time in Python while it opens the file,
# before any check here can read its size: a JPEG's segments (and stray or fill bytes) before its
# first scan, a PNG's chunks, a GIF's extension sub-blocks before its first frame, a TIFF's tags
# and its strips or tiles. Each costs microseconds and, kept in lists, tens of bytes: an 8 MiB
# TIFF of 2 million one-row strips took 11.6 s of CPU and 680 MiB, 32 MiB of empty JPEG APP
# segments or one-byte GIF comment blocks over 1 GiB. A photograph holds at most a few thousand
# (a PNG's 8 KiB data chunks, a tall TIFF's strips); this many costs a fraction of a second.
MAX_HEADER_PIECES = 65_536
# A TIFF tile may exceed the image it tiles (a thumbnail in 256x256 tiles, widths rounded up to
# 16) but not by more than this many pixels: libtiff allocates a whole tile before reading it.
TIFF_TILE_SLACK = 2048 * 2048
# The longest EXIF block whose orientation is read: a JPEG's fits one segment (64 KiB), while a
# PNG's eXIf chunk or a WebP's EXIF may run to the file's size, and Pillow's parser unpacks a
# tag's numbers into a tuple (20 million shorts, 38 MiB: 1.4 s and 566 MiB).
MAX_EXIF_BYTES = 1 << 16
# A BMP in run-length compression (RLE8, RLE4) is decoded by Pillow in Python: a loop step per
# pixel of an RLE4 run or of the padding a line end adds, and per two bytes of runs that add
# nothing. A 28 KB BMP of 7000x7000 took 5.5 s of CPU. No camera writes RLE; an icon or a
# scanned form up to these sizes costs a fraction of a second, anything larger is refused.
RLE_BMP_MAX_PIXELS = 1 << 20
# The most numbers one TIFF tag may hold (past it the file is refused like MAX_HEADER_PIECES
# pieces): the longest array TIFF 6.0 defines, a ColorMap or TransferFunction of three 16-bit
# channels (3 x 65,536 shorts, which a 48-bit scan may carry), unpacked in milliseconds.
MAX_TIFF_TAG_NUMBERS = 3 << 16
RLE_BMP_MAX_BYTES = 2 << 20


def load_image(source: ImageInput, *, max_pixels: int = MAX_PIXELS) -> np.ndarray:
    """Return the image as a contiguous (H, W, 3) uint8 RGB array."""
    if isinstance(source, np.ndarray):
        return _from_array(source)
    data, label = _bytes_of(source)
    return _decode(data, label, max_pixels)


def load_image_hashed(source: ImageInput, *, max_pixels: int = MAX_PIXELS) -> tuple[str, np.ndarray]:
    """The image as load_image gives it, with the SHA-256 of the very bytes decoded (of the
    array's bytes for an array). A file is read once: a path pointed at another file meanwhile
    cannot have one file's hash named on the other's pixels."""
    if isinstance(source, np.ndarray):
        # The shape and type are hashed with the bytes: one buffer read as 886x1280 or 1280x886
        # is two images.
        h = hashlib.sha256(f"{source.dtype.str}{source.shape}".encode())
        # Hashed a band of rows at a time (the same digest as the whole): a strided or broadcast
        # view of a few bytes, made contiguous at once, took its full size (1.5 GB for 7000x7000x4
        # float64) before any check.
        for band in _row_bands(source):
            h.update(np.ascontiguousarray(band).data)
        return h.hexdigest(), _from_array(source)
    data, label = _bytes_of(source)
    return hashlib.sha256(data).hexdigest(), _decode(data, label, max_pixels)


def _bytes_of(source: ImageInput) -> tuple[bytes, str]:
    if isinstance(source, (bytes, bytearray, memoryview)):
        # Sized before it is copied: a view of a mapped file or a broadcast array can be far larger
        # than any image, and the copy would be made before _decode's size check.
        if memoryview(source).nbytes > MAX_FILE_BYTES:
            raise ImageError(f"the image bytes: larger than the {MAX_FILE_BYTES}-byte limit.")
        return bytes(source), "the image bytes"
    if isinstance(source, (str, os.PathLike)):
        name = os.fspath(source)
        if not isinstance(name, str):  # os.PathLike[bytes]: Path() would raise a bare TypeError
            raise ImageError("an image path must be a str or an os.PathLike giving a str; pass bytes as the "
                             "image's own bytes.")
        path = Path(name)
        return _read_file(path, str(path)), str(path)
    raise ImageError(
        f"unsupported image input of type {type(source).__name__}; "
        "pass a path, bytes or a NumPy array."
    )


def _read_file(path: Path, label: str) -> bytes:
    data = read_regular(path, label, MAX_FILE_BYTES)
    if len(data) > MAX_FILE_BYTES:
        raise ImageError(f"{label}: larger than the {MAX_FILE_BYTES}-byte limit.")
    return data


def _decode(data: bytes, label: str, max_pixels: int) -> np.ndarray:
    if not data:
        raise ImageError(f"{label}: the file is empty.")
    if len(data) > MAX_FILE_BYTES:
        raise ImageError(f"{label}: {len(data)} bytes is larger than the {MAX_FILE_BYTES}-byte limit.")
    _check_pieces(data, label)
    _check_bmp_rle(data, label)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(io.BytesIO(data), formats=FORMATS) as im:
                w, h = im.size
                if w <= 0 or h <= 0:
                    raise ImageError(f"{label}: the image has no pixels.")
                if w * h > max_pixels:
                    raise ImageError(
                        f"{label}: {w}x{h} pixels exceeds the {max_pixels}-pixel limit "
                        "(a decompression bomb or an oversized scan); resize it first."
                    )
                if isinstance(im, TiffImagePlugin.TiffImageFile):
                    _check_tiff_blocks(im, len(data), label, max_pixels)
                elif im.format in ("JPEG", "MPO"):
                    _check_jpeg_scans(data, label)
                im.load()
                turn = _TURNS.get(_orientation(im))
                if turn is not None:
                    im = im.transpose(turn)
                return _to_rgb(im, label)
    except ImageError:
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise ImageError(f"{label}: refused as a decompression bomb ({exc}).") from None
    except UnidentifiedImageError:
        raise ImageError(
            f"{label}: not an image safeface can read, or its header is corrupt "
            "(supported: JPEG, PNG, BMP, GIF, WebP, TIFF)."
        ) from None
    except (OSError, SyntaxError, ValueError, EOFError) as exc:
        raise ImageError(f"{label}: corrupt or truncated image ({exc}).") from None


# The BMP headers Pillow reads a compression field from (Windows v3 to v5, OS/2 v2).
_BMP_INFO_SIZES = (40, 52, 56, 64, 108, 124)
_BMP_RLE = (1, 2)  # BI_RLE8, BI_RLE4


def _check_bmp_rle(data: bytes, label: str) -> None:
    """Refuse, from its header, a run-length BMP over RLE_BMP_MAX_PIXELS or RLE_BMP_MAX_BYTES
    (see there). The fields are read as Pillow's BMP plugin reads them."""
    if data[:2] != b"BM" or len(data) < 34:
        return
    # Header size, width, height, planes and bits (two 16-bit fields), compression.
    header, width, height, _, compression = struct.unpack_from("<IIIII", data, 14)
    if header not in _BMP_INFO_SIZES or compression not in _BMP_RLE:
        return
    if data[25] == 0xFF:  # a negative height: rows top-down
        height = 2**32 - height
    if width * height > RLE_BMP_MAX_PIXELS or len(data) > RLE_BMP_MAX_BYTES:
        raise ImageError(
            f"{label}: a {width}x{height} BMP of {len(data)} bytes in RLE compression is refused (over "
            f"{RLE_BMP_MAX_PIXELS} pixels or {RLE_BMP_MAX_BYTES} bytes, RLE keeps the decoder busy for seconds; "
            "no camera writes it); re-save it uncompressed or as PNG."
        )


def _pad16(n: int) -> int:
    return -(-n // 16) * 16


def _tag_ints(im: TiffImagePlugin.TiffImageFile, tag: int) -> list[int]:
    value = im.tag_v2.get(tag)
    if value is None:
        return []
    values = value if isinstance(value, tuple) else (value,)
    return [int(v) for v in values]


def _check_tiff_blocks(im: TiffImagePlugin.TiffImageFile, size: int, label: str, max_pixels: int) -> None:
    """Refuse a TIFF whose tiles or strips are out of proportion to the image. libtiff sizes its
    buffer from the tile (or strip) tags, not from the image: a 1 KB file saying 64x64 in one
    26000x26000 tile had 2 GB allocated and filled before anything failed."""
    w, h = im.size
    tile_w, tile_h = _tag_ints(im, 322), _tag_ints(im, 323)
    if tile_w or tile_h:
        tw, th = (tile_w or [0])[0], (tile_h or [0])[0]
        area = tw * th
        within_image = tw <= _pad16(w) and th <= _pad16(h)
        if tw <= 0 or th <= 0 or not (within_image or area <= TIFF_TILE_SLACK) or area > max_pixels + TIFF_TILE_SLACK:
            raise ImageError(
                f"{label}: a {w}x{h} TIFF in tiles of {tw}x{th} pixels; tiles that much larger than "
                "the image are refused (a decompression bomb); re-save it with ordinary tiles "
                "(256x256) or in strips."
            )
    else:
        # libtiff reads at most the image's height in one strip whatever RowsPerStrip says
        # (2**32-1, "the whole image", is its default), so the clamped strip is what is allocated.
        rows = min((_tag_ints(im, 278) or [h])[0], h)
        if rows <= 0 or rows * w > max_pixels:
            raise ImageError(
                f"{label}: a {w}x{h} TIFF in strips of {rows} rows is refused (corrupt or a "
                "decompression bomb); re-save it."
            )
    counts = _tag_ints(im, 325) or _tag_ints(im, 279)
    if counts and max(counts) > size:
        raise ImageError(
            f"{label}: a TIFF strip or tile claims {max(counts)} bytes in a {size}-byte file "
            "(corrupt or a decompression bomb); re-save it."
        )


# A JPEG marker outside scan data: 0xFF then any byte but 0x00 or a fill 0xFF (libjpeg skips
# stray bytes and fill bytes between segments the same way).
_JPEG_MARKER = re.compile(rb"\xff[^\x00\xff]")
# The marker that ends a scan's entropy-coded data: 0xFF00 is a stuffed 0xFF and RST0-7
# (0xFFD0-D7) sit inside the data.
_JPEG_SCAN_END = re.compile(rb"\xff[^\x00\xd0-\xd7\xff]")


def _jpeg_scans(data: bytes, limit: int) -> tuple[int, int]:
    """(the SOS segments before EOI, the markers walked to find them), walked segment by segment
    as libjpeg reads them (so an embedded thumbnail's scans, inside an APP1 segment, are not
    counted); stops past `limit` scans or MAX_HEADER_PIECES markers. Each step moves forward:
    linear in the file's size."""
    scans, steps, i, n = 0, 0, 2, len(data)
    while scans <= limit and steps <= MAX_HEADER_PIECES:
        found = _JPEG_MARKER.search(data, i)
        if found is None:
            break
        # Counted: _check_pieces bounds the segments before the first scan only, and millions of
        # empty ones after it cost this walk seconds of Python (libjpeg skips them in C).
        steps += 1
        code, i = data[found.start() + 1], found.end()
        if code in (0xD8, 0xD9):  # EOI, or a second SOI, which libjpeg refuses
            break
        if 0xD0 <= code <= 0xD7 or code == 0x01:  # standalone markers: no length
            continue
        if i + 2 > n:
            break
        length = int.from_bytes(data[i:i + 2], "big")
        # libjpeg skips a comment or APPn segment of length 0 or 1 as one of 2 (nothing after
        # its length) and reads on: stopping here let the scans after it go uncounted. On the
        # segments libjpeg checks, such a length fails the decode anyway.
        i += max(length, 2)
        if code == 0xDA:
            scans += 1
            found = _JPEG_SCAN_END.search(data, i)
            if found is None:
                break
            i = found.start()
    return scans, steps


def _check_jpeg_scans(data: bytes, label: str) -> None:
    scans, steps = _jpeg_scans(data, MAX_JPEG_SCANS)
    if steps > MAX_HEADER_PIECES:
        raise ImageError(
            f"{label}: a JPEG of more than {MAX_HEADER_PIECES} segments is refused (a photograph has "
            "at most a few hundred; so many would keep the reader busy for seconds); re-save it."
        )
    if scans > MAX_JPEG_SCANS:
        raise ImageError(
            f"{label}: a JPEG of more than {MAX_JPEG_SCANS} scans is refused (a photograph has "
            "at most a few tens; so many would keep the decoder busy for minutes); re-save it."
        )


_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
_TIFF_PREFIXES = (b"MM\x00\x2a", b"II\x2a\x00", b"MM\x2a\x00", b"II\x00\x2a", b"MM\x00\x2b", b"II\x2b\x00")
# Tags whose arrays Pillow reads into Python lists at open (strip and tile offsets and byte counts).
_TIFF_BLOCK_TAGS = (273, 279, 324, 325)
# TIFF types Pillow keeps as one bytes or str object (BYTE, ASCII, UNDEFINED: an ICC profile,
# XMP); it unpacks every other type's values into a tuple, an object per number, as it opens the
# file: an orientation of 20 million shorts (38 MiB) took 3.7 s and 1.1 GB.
_TIFF_BYTE_TYPES = (1, 2, 7)


def _check_pieces(data: bytes, label: str) -> None:
    """Refuse, before Pillow opens it, a file of more than MAX_HEADER_PIECES pieces Pillow would
    walk in Python (see there). Each walk stops past the bound: linear in the file's size."""
    limit = MAX_HEADER_PIECES
    if data[:3] == b"\xff\xd8\xff":
        pieces, what = _jpeg_header_pieces(data, limit), "segments or stray bytes before its first scan"
    elif data[:8] == _PNG_SIGNATURE:
        pieces, profiles = _png_chunks(data, limit)
        what = "chunks"
        if profiles > 1:
            raise ImageError(
                f"{label}: a PNG of {profiles} colour profiles (iCCP chunks) is refused: the standard allows one, "
                "and the reader inflates each, up to a MiB, in turn (seconds for a small file); re-save it."
            )
    elif data[:6] in (b"GIF87a", b"GIF89a"):
        pieces, what = _gif_header_pieces(data, limit), "extension blocks or stray bytes before its first frame"
    elif data[:4] in _TIFF_PREFIXES:
        pieces = _tiff_pieces(data, limit)
        what = f"tags, strips or tiles (or a tag of over {MAX_TIFF_TAG_NUMBERS} numbers)"
    else:
        return
    if pieces > limit:
        raise ImageError(
            f"{label}: it holds more than {limit} {what}, which no photograph needs and which would "
            "take the reader seconds and gigabytes to list (a decompression bomb); re-save it."
        )


def _jpeg_header_pieces(data: bytes, limit: int) -> int:
    """The segments, fill and stray bytes before a JPEG's first scan (Pillow's part of it), walked
    as Pillow reads them: an EOI or a second SOI, where libjpeg (and _jpeg_scans) stops, does not
    end it. Stops past `limit`."""
    pieces, i, n = 0, 2, len(data)
    while pieces <= limit:
        found = _JPEG_MARKER.search(data, i)
        if found is None:
            return pieces + n - i  # stray bytes to the end, which Pillow reads one at a time too
        pieces += 1 + found.start() - i
        code, i = data[found.start() + 1], found.end()
        if code == 0xDA:
            break
        if 0xD0 <= code <= 0xD9 or code == 0x01:  # no length; Pillow reads on past an EOI or an SOI
            continue
        if i + 2 > n:
            break
        i += max(int.from_bytes(data[i:i + 2], "big"), 2)
    return pieces


def _png_chunks(data: bytes, limit: int) -> tuple[int, int]:
    """A PNG's chunks up to IEND (Pillow reads each, before and after the image data), and its
    colour profiles (iCCP: Pillow inflates each, up to 1 MiB, with no bound on their number);
    stops past `limit` chunks."""
    pieces, profiles, i, n = 0, 0, 8, len(data)
    while pieces <= limit and i + 8 <= n:
        pieces += 1
        kind = data[i + 4:i + 8]
        if kind == b"IEND":
            break
        profiles += int(kind == b"iCCP")
        i += 12 + int.from_bytes(data[i:i + 4], "big")
    return pieces, profiles


def _gif_header_pieces(data: bytes, limit: int) -> int:
    """A GIF's extension sub-blocks and stray bytes before its first image, which Pillow reads one
    by one (a comment's into a list); stops past `limit`."""
    flags = data[10] if len(data) > 10 else 0
    i, n, pieces = 13 + (3 << ((flags & 7) + 1) if flags & 0x80 else 0), len(data), 0
    while pieces <= limit and i < n and data[i] not in (0x2C, 0x3B):  # an image, the trailer
        pieces += 1
        if data[i] != 0x21:  # a stray byte
            i += 1
            continue
        # An extension: its label, then sub-blocks up to an empty one. Pillow reads a second run
        # after an empty first sub-block of any but a comment, so an image marker inside that run
        # is data to it, not the first frame.
        label, i = data[i + 1] if i + 1 < n else 0, i + 2
        for _ in range(2 if i < n and data[i] == 0 and label != 0xFE else 1):
            while pieces <= limit and i < n and data[i]:
                pieces += 1
                i += 1 + data[i]
            i += 1
    return pieces


def _tiff_pieces(data: bytes, limit: int) -> int:
    """The most of a TIFF's first directory's tags, of the strips or tiles it lists, or of the
    numbers a tag holds past MAX_TIFF_TAG_NUMBERS (Pillow makes a Python object of each at open);
    0 when the header is cut short (Pillow refuses it)."""
    order = "<" if data[:2] == b"II" else ">"
    big = data[2] == 43  # BigTIFF, as Pillow tells it
    entry, fmt = (20, "HHQ") if big else (12, "HHL")
    try:
        (offset,) = struct.unpack_from(order + ("Q" if big else "L"), data, 8 if big else 4)
        (count,) = struct.unpack_from(order + ("Q" if big else "H"), data, offset)
    except struct.error:
        return 0
    most, first = int(count), offset + (8 if big else 2)
    for k in range(min(most, limit + 1, (len(data) - first) // entry)):
        tag, kind, values = struct.unpack_from(order + fmt, data, first + k * entry)
        if tag in _TIFF_BLOCK_TAGS or (kind not in _TIFF_BYTE_TYPES and values > MAX_TIFF_TAG_NUMBERS):
            most = max(most, int(values))
    return most


# EXIF orientation -> the turn that shows the image upright (what viewers do with the tag).
_TURNS = {2: Image.Transpose.FLIP_LEFT_RIGHT, 3: Image.Transpose.ROTATE_180, 4: Image.Transpose.FLIP_TOP_BOTTOM,
          5: Image.Transpose.TRANSPOSE, 6: Image.Transpose.ROTATE_270, 7: Image.Transpose.TRANSVERSE,
          8: Image.Transpose.ROTATE_90}


def _orientation(im: Image.Image) -> int:
    """The image's EXIF (or XMP) orientation, 1 (as stored) when it has none or when its
    metadata cannot be read: Pillow's EXIF parser raises struct, type and attribute errors on
    a malformed block, and a photo with one is still a photo; so is one whose block is longer than
    MAX_EXIF_BYTES, left unparsed. The turn is applied here, without rewriting the EXIF block
    (Pillow's exif_transpose does, and fails on some valid tags)."""
    exif = im.info.get("exif")
    if isinstance(exif, (bytes, bytearray)) and len(exif) > MAX_EXIF_BYTES:
        return 1
    try:
        value = im.getexif().get(0x0112, 1)
    except Exception:  # noqa: BLE001 - any failure of the metadata parser: hostile bytes
        return 1
    return value if isinstance(value, int) and not isinstance(value, bool) else 1


def _to_rgb(im: Image.Image, label: str) -> np.ndarray:
    """The decoded image as HxWx3 uint8, converted a band of rows at a time (_bands)."""
    mode = im.mode
    if mode in ("I;16", "I;16B", "I;16L", "I;16N", "I"):
        top = max(int(np.asarray(band).max()) for band in _crops(im))
        k = np.float32(255.0 / (65535.0 if top > 255 else 255.0))
        return _bands(im, lambda b: _scaled(np.asarray(b), k)[:, :, None])
    if mode in ("RGBA", "LA", "PA") or (mode == "P" and "transparency" in im.info):
        # Transparent areas become white: a face is never on a transparent background, and
        # white keeps the detector away from false edges.
        return _bands(im, lambda b: _over_white(np.asarray(b if b.mode == "RGBA" else b.convert("RGBA"))))
    return _bands(im, lambda b: np.asarray(b if b.mode == "RGB" else b.convert("RGB")))


def _crops(im: Image.Image) -> Iterator[Image.Image]:
    w, h = im.size
    for r in range(0, h, _BAND_ROWS):
        yield im.crop((0, r, w, min(h, r + _BAND_ROWS)))


def _bands(im: Image.Image, fn: Callable[[Image.Image], np.ndarray]) -> np.ndarray:
    """fn over the image a band of rows at a time, into one HxWx3 uint8 array: no full-size copy
    of the decoded pixels beside the result (a 50-megapixel image would need one or several)."""
    w, h = im.size
    out = np.empty((h, w, 3), dtype=np.uint8)
    for r, band in zip(range(0, h, _BAND_ROWS), _crops(im)):
        out[r:r + _BAND_ROWS] = fn(band)
    return out


def c_order(a: np.ndarray) -> np.ndarray:
    """`a` in C order with the strides a new array of its shape has (a copy only where they
    differ). NumPy counts a view whose size-1 axis has any stride as C-contiguous, so
    np.ascontiguousarray hands back a one-row image turned a quarter (500x1, strides of the
    row) as it is, and dlib refuses it with an untyped RuntimeError."""
    want: list[int] = []
    step = a.itemsize
    for n in reversed(a.shape):
        want.insert(0, step)
        step *= max(n, 1)
    if a.flags.c_contiguous and list(a.strides) == want:
        return a
    return np.array(a, order="C", copy=True)


def _from_array(arr: np.ndarray) -> np.ndarray:
    arr = np.asarray(arr)  # an ndarray subclass (np.matrix) indexes otherwise
    if arr.dtype.byteorder == ">":  # the same values in the machine's order: '>u2' is uint16 too
        arr = arr.astype(arr.dtype.newbyteorder("="))
    if arr.size == 0:
        raise ImageError("the image array is empty.")
    if arr.ndim == 3 and arr.shape[2] == 1:
        arr = arr[:, :, 0]
    if arr.ndim not in (2, 3) or (arr.ndim == 3 and arr.shape[2] not in (3, 4)):
        raise ImageError(f"image array of shape {arr.shape}: expected HxW, HxWx3 or HxWx4.")
    if arr.shape[0] * arr.shape[1] > MAX_PIXELS:
        raise ImageError(f"image array of {arr.shape[1]}x{arr.shape[0]} pixels exceeds the {MAX_PIXELS}-pixel limit.")
    if arr.dtype == np.uint8:
        out = arr
    elif arr.dtype in (np.uint16, np.int32, np.uint32, np.int64):
        k = np.float32(255.0 / (65535.0 if arr.max(initial=0) > 255 else 255.0))
        out = _by_rows(arr, lambda c: _scaled(c, k), arr.shape[2:])
    elif arr.dtype in (np.float32, np.float64):
        if not all(np.isfinite(band).all() for band in _row_bands(arr)):
            raise ImageError("the image array holds NaN or infinite values.")
        scale = np.float32(255.0 if arr.max(initial=0.0) <= 1.0 else 1.0)
        out = _by_rows(arr, lambda c: _scaled(c, scale), arr.shape[2:])
    else:
        raise ImageError(f"image array of dtype {arr.dtype}: expected uint8, uint16 or float.")
    if out.ndim == 2:
        out = np.repeat(out[:, :, None], 3, axis=2)
    elif out.shape[2] == 4:
        out = _by_rows(out, _over_white, (3,))
    return c_order(out)


# Rows converted at a time: a large image's float copy would be 4-8 times its pixels' bytes at
# once (about a gigabyte for 50 megapixels), where a band of rows is a few megabytes.
_BAND_ROWS = 256


def _row_bands(arr: np.ndarray) -> Iterator[np.ndarray]:
    for r in range(0, arr.shape[0] if arr.ndim else 0, _BAND_ROWS):
        yield arr[r:r + _BAND_ROWS]


def _by_rows(arr: np.ndarray, fn: Callable[[np.ndarray], np.ndarray], channels: tuple[int, ...]) -> np.ndarray:
    """fn applied to bands of rows, into one uint8 array of `channels` channels."""
    out = np.empty(arr.shape[:2] + channels, dtype=np.uint8)
    for r in range(0, arr.shape[0], _BAND_ROWS):
        out[r:r + _BAND_ROWS] = fn(arr[r:r + _BAND_ROWS])
    return out


def _scaled(values: np.ndarray, k: np.float32) -> np.ndarray:
    """Values times k, rounded into 0-255 (a band of a 16-bit or float image)."""
    return np.asarray(np.clip(np.rint(values.astype(np.float32) * k), 0, 255))


def _over_white(rgba: np.ndarray) -> np.ndarray:
    alpha = rgba[:, :, 3:4].astype(np.float32) / np.float32(255.0)
    return np.asarray(np.rint(rgba[:, :, :3] * alpha + np.float32(255.0) * (1 - alpha)))
