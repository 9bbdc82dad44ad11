"""The saved-index file format: a small header, named raw arrays, and a checksum. No pickle.

Layout (little-endian):
    8 bytes   magic b"SFINDEX1"
    4 bytes   header length H (uint32)
    H bytes   header, UTF-8 JSON: {"format": ..., "meta": {...}, "arrays": [[name, dtype, shape], ...]}
    ...       each array's raw bytes in header order, each starting at a multiple of 64
    8 bytes   checksum64 of every byte before it (uint64)
"""

from __future__ import annotations

import json
import os
import struct
from pathlib import Path
from typing import Any, Mapping

import numpy as np

from .. import _core
from ..errors import IntegrityError

MAGIC = b"SFINDEX1"
_ALIGN = 64
_DTYPES = {"int64", "uint8", "float32"}


def _pad(n: int) -> int:
    return (-n) % _ALIGN


def write_container(path: str | os.PathLike[str], fmt: str, meta: Mapping[str, Any],
                    arrays: Mapping[str, np.ndarray]) -> None:
    """Write atomically: a temporary file next to the target, then a rename."""
    layout = []
    for name, a in arrays.items():
        if a.dtype.name not in _DTYPES:
            raise ValueError(f"array {name!r} has unsupported dtype {a.dtype}.")
        layout.append([name, a.dtype.name, list(a.shape)])
    header = json.dumps({"format": fmt, "meta": dict(meta), "arrays": layout}).encode()
    prefix = MAGIC + struct.pack("<I", len(header)) + header
    target = Path(path)
    tmp = target.with_name(target.name + ".tmp")
    checksum = _core.Checksum64()
    zeros = np.zeros(_ALIGN, dtype=np.uint8)
    # Streamed: each piece goes to the file and the checksum as it is, with no full copy.
    with open(tmp, "wb") as f:
        pieces = [np.frombuffer(prefix, dtype=np.uint8)]
        pieces += [np.ascontiguousarray(a).reshape(-1).view(np.uint8) for a in arrays.values()]
        for piece in pieces:
            for part in (piece, zeros[: _pad(piece.size)]):
                checksum.update(part)
                f.write(part.data)
        f.write(struct.pack("<Q", checksum.digest()))
    os.replace(tmp, target)


def read_container(path: str | os.PathLike[str],
                   fmt: str) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    """Read and verify a file written by :func:`write_container` with the same ``fmt``.

    Raises IntegrityError when the file is not such a file or its checksum does not match.
    The returned arrays are read-only views into one buffer.
    """
    buf = np.fromfile(path, dtype=np.uint8)
    if buf.size < len(MAGIC) + 12 or bytes(buf[: len(MAGIC)]) != MAGIC:
        raise IntegrityError(f"{path} is not a saved safeface index (bad magic bytes).")
    stored = struct.unpack("<Q", bytes(buf[-8:]))[0]
    if _core.checksum64(buf[:-8]) != stored:
        raise IntegrityError(f"{path} is damaged: its checksum does not match its content.")
    (hlen,) = struct.unpack("<I", bytes(buf[8:12]))
    try:
        header = json.loads(bytes(buf[12: 12 + hlen]).decode())
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise IntegrityError(f"{path} has an unreadable header.") from exc
    if header.get("format") != fmt:
        raise IntegrityError(f"{path} holds a {header.get('format')!r} index, not {fmt!r}.")
    off = 12 + hlen
    off += _pad(off)
    arrays: dict[str, np.ndarray] = {}
    for name, dtype, shape in header["arrays"]:
        if dtype not in _DTYPES:
            raise IntegrityError(f"{path} declares an unsupported array type {dtype!r}.")
        count = int(np.prod(shape)) if shape else 1
        nbytes = count * np.dtype(dtype).itemsize
        if off + nbytes > buf.size - 8:
            raise IntegrityError(f"{path} is truncated.")
        a = buf[off: off + nbytes].view(dtype).reshape(shape)
        a.flags.writeable = False
        arrays[name] = a
        off += nbytes + _pad(nbytes)
    return dict(header["meta"]), arrays
