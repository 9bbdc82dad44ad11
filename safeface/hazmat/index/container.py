"""The saved-index file format: a small header, named raw arrays, and a checksum. No pickle.

Layout (little-endian):
    8 bytes   magic b"SFINDEX1"
    4 bytes   header length H (uint32)
    H bytes   header, UTF-8 JSON: {"format": ..., "meta": {...}, "arrays": [[name, dtype, shape], ...]}
    ...       each array's raw bytes in header order, each starting at a multiple of 64
    8 bytes   checksum64 of every byte before it (uint64)

Sealed files (saved with a key) hold every array's bytes encrypted with AES-256-GCM instead, in
chunks of at most SEAL_CHUNK bytes, each followed by its 16-byte tag. The header says so
("sealed": {"alg", "nonce", "chunk"}) and stays readable; it is authenticated with every chunk,
whose nonce is the file's random 8-byte prefix and the chunk's 4-byte counter, so no chunk can be
altered, moved or swapped between files undetected.
"""

from __future__ import annotations

import json
import math
import os
import struct
from typing import Any, Callable, Mapping, Optional

import numpy as np

from . import _core
from ...aead import TAG_BYTES as _TAG, Aead
from ...atomicfile import atomic_writer
from ...errors import IntegrityError, InvalidArgument

MAGIC = b"SFINDEX1"
_ALIGN = 64
_DTYPES = {"int64", "uint8", "float32"}
SEAL_ALG = "AES-256-GCM"
SEAL_CHUNK = 16 << 20


def _pad(n: int) -> int:
    return (-n) % _ALIGN


def _aead(key: bytes) -> Aead:
    return Aead(key, "an index key")


def _sealed_size(nbytes: int, chunk: int) -> int:
    return nbytes + _TAG * ((nbytes + chunk - 1) // chunk)


def _nonce(prefix: bytes, counter: int) -> bytes:
    return prefix + struct.pack(">I", counter)


_END = b"\x00end"


def _open(aead: Aead, path: Any, nonce_prefix: bytes, counter: int, sealed: np.ndarray, aad: bytes) -> bytes:
    return aead.decrypt(_nonce(nonce_prefix, counter), sealed.data, aad,
                        refused=f"{path} cannot be unsealed: the key is not the one it was saved with, "
                                "or the file was altered.")


def write_container(path: str | os.PathLike[str], fmt: str, meta: Mapping[str, Any],
                    arrays: Mapping[str, np.ndarray], key: Optional[bytes] = None) -> None:
    """Write atomically and durably: a temporary file next to the target, flushed to disk, then
    renamed over the target. With ``key`` (32 bytes) the arrays are sealed (AES-256-GCM)."""
    aead = _aead(key) if key is not None else None
    layout = []
    for name, a in arrays.items():
        if a.dtype.name not in _DTYPES:
            raise InvalidArgument(f"array {name!r} has dtype {a.dtype}; an index file holds only "
                                  f"{', '.join(sorted(_DTYPES))}.")
        layout.append([name, a.dtype.name, list(a.shape)])
    head: dict[str, Any] = {"format": fmt, "meta": dict(meta), "arrays": layout}
    nonce_prefix = os.urandom(8)
    if aead is not None:
        head["sealed"] = {"alg": SEAL_ALG, "nonce": nonce_prefix.hex(), "chunk": SEAL_CHUNK}
    header = json.dumps(head).encode()
    prefix = MAGIC + struct.pack("<I", len(header)) + header
    checksum = _core.Checksum64()
    zeros = np.zeros(_ALIGN, dtype=np.uint8)
    counter = 0

    def put(part: Any) -> None:
        checksum.update(np.frombuffer(part, dtype=np.uint8))
        f.write(part)

    # Streamed: each piece goes to the file and the checksum as it is, with no full copy; the
    # file becomes the index only once whole and on disk.
    with atomic_writer(path) as f:
        put(prefix)
        put(zeros[: _pad(len(prefix))].data)
        for a in arrays.values():
            raw = np.ascontiguousarray(a).reshape(-1).view(np.uint8)
            if aead is None:
                put(raw.data)
                put(zeros[: _pad(raw.size)].data)
                continue
            for off in range(0, raw.size, SEAL_CHUNK):
                put(aead.encrypt(_nonce(nonce_prefix, counter), raw[off: off + SEAL_CHUNK].data, prefix))
                counter += 1
            put(zeros[: _pad(_sealed_size(raw.size, SEAL_CHUNK))].data)
        if aead is not None:
            put(aead.encrypt(_nonce(nonce_prefix, counter), b"", prefix + _END))
        f.write(struct.pack("<Q", checksum.digest()))


#: Called with (meta, {name: (dtype, shape)}) before the arrays are read; returns, per name,
#: a writable array of exactly that dtype and shape to read the bytes into, or None for a new one.
Allocator = Callable[[dict[str, Any], dict[str, tuple[str, tuple[int, ...]]]],
                     Mapping[str, Optional[np.ndarray]]]

_CHUNK = 64 << 20


def read_container(path: str | os.PathLike[str], fmt: str,
                   allocate: Optional[Allocator] = None, key: Optional[bytes] = None
                   ) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    """Read and verify a file written by :func:`write_container` with the same ``fmt``.

    The arrays are read straight into the buffers ``allocate`` supplies (no second copy of a large
    gallery), the checksum is computed on the fly, and the whole is verified before returning.
    Raises IntegrityError when the file is not such a file, is truncated, or its checksum fails;
    a sealed file needs the ``key`` it was saved with, and a key is refused for a file saved
    without one (an unsealed file put in a sealed one's place is not taken for it).
    """
    aead = _aead(key) if key is not None else None
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
        header_bytes = bytes(read(hlen))
        try:
            header = json.loads(header_bytes.decode())
            layout = {str(name): (str(dt), tuple(int(v) for v in shape))
                      for name, dt, shape in header["arrays"]}
            meta = dict(header["meta"])
        except (UnicodeDecodeError, json.JSONDecodeError, KeyError, TypeError, ValueError) as exc:
            raise IntegrityError(f"{path} has an unreadable header.") from exc
        if header.get("format") != fmt:
            raise IntegrityError(f"{path} holds a {header.get('format')!r} index, not {fmt!r}.")
        seal = header.get("sealed")
        if seal is not None and aead is None:
            raise IntegrityError(f"{path} is sealed; pass the key it was saved with (key=...).")
        if seal is None and aead is not None:
            raise IntegrityError(f"{path} was saved without a key, so it is not sealed; it cannot be "
                                 "opened as a sealed index (load it without a key if you trust it).")
        chunk, nonce_prefix, counter = 0, b"", 0
        if seal is not None:
            try:
                chunk, nonce_prefix = int(seal["chunk"]), bytes.fromhex(seal["nonce"])
            except (KeyError, TypeError, ValueError) as exc:
                raise IntegrityError(f"{path} has an unreadable header.") from exc
            if seal.get("alg") != SEAL_ALG or chunk <= 0 or chunk > 1 << 30 or len(nonce_prefix) != 8:
                raise IntegrityError(f"{path} is sealed in a way this version cannot open.")
        # Every chunk is authenticated with the exact header bytes as stored.
        prefix = bytes(head) + header_bytes
        expected = 12 + hlen + _pad(12 + hlen) + 8 + (_TAG if seal is not None else 0)
        for dt, shape in layout.values():
            if dt not in _DTYPES or any(v < 0 for v in shape):
                raise IntegrityError(f"{path} declares an unsupported array {dt} {shape}.")
            # Python integers: a hand-edited shape whose product wraps around in int64 (to 0,
            # matching an empty array's size) must fail the size check below, not pass it.
            nbytes = math.prod(int(v) for v in shape) * np.dtype(dt).itemsize
            stored = _sealed_size(nbytes, chunk) if seal is not None else nbytes
            expected += stored + _pad(stored)
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
            if aead is None:
                for off in range(0, raw.size, _CHUNK):
                    part = raw[off: off + _CHUNK]
                    if f.readinto(part.data) != part.size:
                        raise IntegrityError(f"{path} is truncated.")
                    checksum.update(part)
                read(_pad(raw.size))
            else:
                for off in range(0, raw.size, chunk):
                    n = min(chunk, raw.size - off)
                    raw[off: off + n] = np.frombuffer(_open(aead, path, nonce_prefix, counter, read(n + _TAG), prefix),
                                                      dtype=np.uint8)
                    counter += 1
                read(_pad(_sealed_size(raw.size, chunk)))
            arrays[name] = dest.reshape(shape)
        if aead is not None:  # the closing tag: header and chunk count, even for no rows
            _open(aead, path, nonce_prefix, counter, read(_TAG), prefix + _END)
        tail = f.read(8)
        if len(tail) != 8 or struct.unpack("<Q", tail)[0] != checksum.digest():
            raise IntegrityError(f"{path} is damaged: its checksum does not match its content.")
    return meta, arrays


def require_seal_or_consent(key: Optional[bytes], plaintext: bool) -> None:
    """An unsealed index file holds the vectors as they are: for raw embeddings, anyone who
    reads it gets them back exactly (one search per basis vector). Saving one is refused
    unless the caller says so."""
    if key is None and not plaintext:
        raise InvalidArgument("an unsealed index file holds its vectors in the clear; pass key= (32 random bytes "
                              "kept apart from the file) to seal it, or plaintext=True if these vectors are not "
                              "biometric.")
