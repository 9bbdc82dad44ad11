"""Files written by earlier versions keep opening: golden files made by the code before the
shared AES-GCM, atomic-write and hashing primitives existed (tests/data/formats), read with
today's code. A change to any framing fails here before it strands a user's data."""

from __future__ import annotations

import shutil
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from safeface.errors import IntegrityError
from safeface.hazmat.index.container import read_container
from safeface.hazmat.templates.keyring import PassphraseKeyring
from safeface.hazmat.templates.sealing import RowBinding, Sealer

DATA = Path(__file__).resolve().parent / "data" / "formats"
KEY = bytes(range(32))


def test_a_sealed_index_file_from_before_opens() -> None:
    meta, arrays = read_container(DATA / "index-sealed.bin", "safeface.golden", key=KEY)
    assert meta == {"dim": 8}
    np.testing.assert_array_equal(arrays["ids"], np.arange(5))
    np.testing.assert_array_equal(arrays["vecs"], (np.arange(40, dtype=np.float32) / 7).reshape(5, 8))


def test_a_sealed_row_from_before_opens_and_stays_bound() -> None:
    blob = (DATA / "row-sealed.bin").read_bytes()
    binding = RowBinding(7, "pseudonym-7", ("door",), "tokref", "consent", 1_900_000_000_000_000, 1, 1)
    assert np.frombuffer(Sealer(KEY).open(blob, binding), "<f4").tolist() == list(range(8))
    with pytest.raises(IntegrityError, match="row 8"):
        Sealer(KEY).open(blob, replace(binding, row_id=8))


def test_a_keyring_from_before_opens_with_its_key_ids(tmp_path: Path) -> None:
    path = tmp_path / "keyring.json"
    shutil.copyfile(DATA / "keyring.json", path)
    ring = PassphraseKeyring.open(path, "golden passphrase")
    ids = {p: {v: ring.key_id(p, v) for v in ring.versions(p)} for p in ("pseudonym", "transform", "seal", "audit")}
    assert ids == {"pseudonym": {1: "320b67954e93cc6e"}, "transform": {1: "e83d33f748203486"},
                   "seal": {1: "1a9623d730a4f276", 2: "15b64d4693205e70"}, "audit": {1: "fc61043ef74c478e"}}
    with pytest.raises(IntegrityError, match="passphrase is wrong"):
        PassphraseKeyring.open(path, "another passphrase")
    # Rotating under today's code writes a file that still opens with its old keys.
    ring.rotate("transform")
    again = PassphraseKeyring.open(path, "golden passphrase")
    assert again.key_id("seal", 2) == "15b64d4693205e70" and again.versions("transform") == [1, 2]


def test_an_evaluation_cache_shard_from_before_opens(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from safeface.evaluate.embedcache import EmbeddingCache

    home = tmp_path / "home"
    (home / "keys").mkdir(parents=True)
    shutil.copyfile(DATA / "eval-cache.key", home / "keys" / "eval-cache.key")
    monkeypatch.setenv("SAFEFACE_HOME", str(home))
    fingerprint = {"engine": "golden", "dim": 4}
    shard_dir = tmp_path / "cache" / "dc7523dfe34ae8eb"  # the folder named by the fingerprint's hash
    shard_dir.mkdir(parents=True)
    shutil.copyfile(DATA / "embedcache-shard.sealed", shard_dir / "shard-000000-1.sealed")
    cache = EmbeddingCache(tmp_path / "cache", fingerprint)
    assert cache.dir == shard_dir
    a = cache.get("a" * 64)
    assert a is not None and a.embedding is not None and a.embedding.tolist() == [1, 2, 3, 4] and a.detector == "hog"
    b = cache.get("b" * 64)
    assert b is not None and b.embedding is None and b.faces == 0
