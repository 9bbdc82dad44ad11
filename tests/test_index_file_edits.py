"""Saved index files whose header was edited by hand (checksum recomputed): every such file is
refused with IntegrityError before its arrays are read, never with a bare numpy error."""

from __future__ import annotations

import json
import os
import struct
from pathlib import Path
from typing import Any, Callable

import numpy as np
import pytest

from safeface.errors import IntegrityError, InvalidArgument
from safeface.hazmat.index import ExactIndex, _core
from safeface.hazmat.index.container import read_container, write_container


def _rewrite_header(path: Path, edit: Callable[[dict[str, Any]], None], body: Callable[[bytes], bytes] = lambda b: b
                    ) -> None:
    """Edit a saved file's JSON header (and optionally its array bytes) and recompute the checksum,
    as anyone who can write the file can."""
    blob = path.read_bytes()
    hlen = struct.unpack("<I", blob[8:12])[0]
    header = json.loads(blob[12:12 + hlen])
    data = blob[12 + hlen + (-(12 + hlen)) % 64: -8]
    edit(header)
    raw = json.dumps(header).encode()
    prefix = b"SFINDEX1" + struct.pack("<I", len(raw)) + raw
    out = prefix + b"\0" * ((-len(prefix)) % 64) + body(data)
    checksum = _core.Checksum64()
    checksum.update(np.frombuffer(out, dtype=np.uint8))
    path.write_bytes(out + struct.pack("<Q", checksum.digest()))


def _small_index(path: Path, key: bytes | None = None) -> None:
    index = ExactIndex(8)
    index.add(np.arange(3), np.eye(3, 8, dtype=np.float32))
    if key is None:
        index.save(path, plaintext=True)
    else:
        index.save(path, key=key)


def test_an_array_with_a_negative_dimension_is_refused(tmp_path: Path) -> None:
    """A header declaring an array of negative shape is refused as a damaged file."""
    path = tmp_path / "g.sfx"
    _small_index(path)
    _rewrite_header(path, lambda h: h["arrays"].append(["extra", "float32", [-1]]))
    with pytest.raises(IntegrityError, match="unsupported array"):
        read_container(path, "safeface.exact")


@pytest.mark.parametrize("dtype", ["object", "float64"])
def test_an_array_of_a_dtype_the_format_does_not_hold_is_refused(tmp_path: Path, dtype: str) -> None:
    """Only int64, uint8 and float32 arrays are read back: an edited dtype (object, float64) is refused."""
    path = tmp_path / "g.sfx"
    _small_index(path)

    def relabel(h: dict[str, Any]) -> None:
        assert h["arrays"][0][:2] == ["ids", "int64"]
        h["arrays"][0][1] = dtype  # same 8 bytes per item, so the file's size still adds up

    _rewrite_header(path, relabel)
    with pytest.raises(IntegrityError, match="unsupported array"):
        read_container(path, "safeface.exact")


@pytest.mark.parametrize("field,value", [("chunk", 0), ("alg", "ChaCha20-Poly1305"), ("nonce", "")])
def test_a_sealed_header_this_version_cannot_open_is_refused_as_such(tmp_path: Path, field: str, value: Any) -> None:
    """A sealed file whose seal parameters were edited (chunk size, algorithm, nonce) is refused by name."""
    path, key = tmp_path / "g.sfx", os.urandom(32)
    _small_index(path, key)
    _rewrite_header(path, lambda h: h["sealed"].__setitem__(field, value))
    with pytest.raises(IntegrityError, match="this version cannot open"):
        ExactIndex.load(path, key=key)


def test_arrays_that_do_not_fit_the_declared_rows_are_refused(tmp_path: Path) -> None:
    """An exact-index file whose panel array is not the size its row count needs is refused as IntegrityError."""
    path = tmp_path / "g.sfx"
    meta = {"dim": 8, "dtype": "float32", "rerank": False, "n": 3}
    write_container(path, "safeface.exact", meta, {
        "ids": np.arange(3, dtype=np.int64), "panels": np.zeros(448, np.uint8),
        "scales": np.zeros(16, np.float32), "f32": np.zeros(0, np.float32)})
    with pytest.raises(IntegrityError, match="does not fit"):
        ExactIndex.load(path)


def test_two_saves_under_one_key_never_share_a_nonce(tmp_path: Path) -> None:
    """Each sealed save draws a fresh nonce prefix, so AES-GCM never reuses a nonce under one key."""
    key = os.urandom(32)
    nonces, bodies = set(), set()
    for i in range(3):
        path = tmp_path / f"g{i}.sfx"
        _small_index(path, key)
        blob = path.read_bytes()
        hlen = struct.unpack("<I", blob[8:12])[0]
        nonces.add(json.loads(blob[12:12 + hlen])["sealed"]["nonce"])
        bodies.add(blob[12 + hlen + (-(12 + hlen)) % 64: -8])
    assert len(nonces) == 3 and len(bodies) == 3


def test_an_array_of_a_dtype_the_format_does_not_hold_is_never_written(tmp_path: Path) -> None:
    """Saving a float64 array is refused up front, and no file that could not be read back is left."""
    path = tmp_path / "g.sfx"
    with pytest.raises(InvalidArgument, match="float64"):
        write_container(path, "safeface.exact", {}, {"x": np.zeros(4, np.float64)})
    assert not path.exists()


@pytest.mark.parametrize("shape", [[2**32, 2**32], [3, 6148914691236517206], [2**64]],
                         ids=["wraps-to-zero", "wraps-to-small", "past-int64"])
def test_a_shape_whose_size_overflows_is_refused_as_a_damaged_file(tmp_path: Path, shape: list[int]) -> None:
    """A hand-edited shape whose element count wraps around in 64 bits (to 0, the size of an
    empty array) passed the file-size check and failed later with a bare NumPy error; it is a
    damaged file like any other."""
    path = tmp_path / "g.sfx"
    _small_index(path)
    _rewrite_header(path, lambda h: h["arrays"].append(["extra", "uint8", shape]))
    with pytest.raises(IntegrityError):
        read_container(path, "safeface.exact")
    with pytest.raises(IntegrityError):
        ExactIndex.load(path)
