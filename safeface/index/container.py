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
from typing import Any, Callable, Mapping, Optional

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
    """Write atomically and durably: a temporary file next to the target, flushed to disk, then
    renamed over the target."""
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
        f.flush()
        os.fsync(f.fileno())  # durable before the rename makes it the index
    os.replace(tmp, target)


#: Called with (meta, {name: (dtype, shape)}) before the arrays are read; returns, per name,
#: a writable array of exactly that dtype and shape to read the bytes into, or None for a new one.
Allocator = Callable[[dict[str, Any], dict[str, tuple[str, tuple[int, ...]]]],
                     Mapping[str, Optional[np.ndarray]]]

_CHUNK = 64 << 20


def read_container(path: str | os.PathLike[str], fmt: str,
                   allocate: Optional[Allocator] = None
                   ) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    """Read and verify a file written by :func:`write_container` with the same ``fmt``.

    The arrays are read straight into the buffers ``allocate`` supplies (no second copy of a large
    gallery), the checksum is computed on the fly, and the whole is verified before returning.
    Raises IntegrityError when the file is not such a file, is truncated, or its checksum fails.
    """
    with open(path, "rb") as f:
        size = os.fstat(f.fileno()).st_size
        checksum = _core.Checksum64()

        def read(n: int) -> np.ndarray:
            buf = np.empty(n, dtype=np.uint8)
            if f.readinto(buf.data) != n:
                raise IntegrityError(f"{path} is truncated.")
            checksum.update(buf)
            return buf

        head = read(12) if size >= 20 else np.zeros(0, np.uint8)
        if head.size < 12 or bytes(head[:8]) != MAGIC:
            raise IntegrityError(f"{path} is not a saved safeface index (bad magic bytes).")
        (hlen,) = struct.unpack("<I", bytes(head[8:12]))
        if hlen > size:
            raise IntegrityError(f"{path} is truncated.")
        try:
            header = json.loads(bytes(read(hlen)).decode())
            layout = {str(name): (str(dt), tuple(int(v) for v in shape))
                      for name, dt, shape in header["arrays"]}
            meta = dict(header["meta"])
        except (UnicodeDecodeError, json.JSONDecodeError, KeyError, TypeError, ValueError) as exc:
            raise IntegrityError(f"{path} has an unreadable header.") from exc
        if header.get("format") != fmt:
            raise IntegrityError(f"{path} holds a {header.get('format')!r} index, not {fmt!r}.")
        expected = 12 + hlen + _pad(12 + hlen) + 8
        for dt, shape in layout.values():
            if dt not in _DTYPES or any(v < 0 for v in shape):
                raise IntegrityError(f"{path} declares an unsupported array {dt} {shape}.")
            nbytes = int(np.prod(shape, dtype=np.int64)) * np.dtype(dt).itemsize
            expected += nbytes + _pad(nbytes)
        if expected != size:  # checked before any large allocation
            raise IntegrityError(f"{path} is truncated or has trailing data.")
        read(_pad(12 + hlen))
        targets = allocate(meta, layout) if allocate is not None else {}
        arrays: dict[str, np.ndarray] = {}
        for name, (dt, shape) in layout.items():
            dest = targets.get(name)
            if dest is None:
                dest = np.empty(shape, dtype=dt)
            elif dest.dtype != np.dtype(dt) or dest.size != int(np.prod(shape, dtype=np.int64)):
                raise IntegrityError(f"{path}: array {name!r} does not fit this index.")
            raw = dest.reshape(-1).view(np.uint8)
            for off in range(0, raw.size, _CHUNK):
                part = raw[off: off + _CHUNK]
                if f.readinto(part.data) != part.size:
                    raise IntegrityError(f"{path} is truncated.")
                checksum.update(part)
            read(_pad(raw.size))
            arrays[name] = dest.reshape(shape)
        tail = f.read(8)
        if len(tail) != 8 or struct.unpack("<Q", tail)[0] != checksum.digest():
            raise IntegrityError(f"{path} is damaged: its checksum does not match its content.")
    return meta, arrays
