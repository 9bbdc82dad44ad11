"""Embeddings of a test set, cached by image SHA-256 so that an interrupted run loses nothing.

This is an evaluation-tool cache of test-set embeddings, written only where the user points
(`--cache DIR`, by default inside the report folder), never inside a workspace, with owner-only
permissions. No embedding reaches the disk in the clear: each shard is an `.npz` sealed with
AES-256-GCM under a key kept apart from the cache, in the user's safeface home
(`keys/eval-cache.key`), and read back with allow_pickle=False. Each configuration (engine,
detectors, flip, jitter, ...) has its own sub-folder, so changing an option never mixes
embeddings."""

from __future__ import annotations

import hashlib
import io
import json
import os
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional, Sequence

import numpy as np

from ..aead import Aead
from ..atomicfile import write_atomic, write_new
from ..errors import ConfigError, IntegrityError
from ..hashing import read_hashed
from ..hazmat.vision import Pipeline
from ..modelstore.registry import safeface_home
from ..workspace.paths import enclosing_workspace

SHARD_SIZE = 32


def cache_key() -> bytes:
    """The key that seals cached embeddings, created on first use (owner-only)."""
    path = safeface_home() / "keys" / "eval-cache.key"
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    key = os.urandom(32)
    try:
        write_new(path, key, mode=0o600)
        return key
    except FileExistsError:  # made earlier, or just now by a process racing this one
        key = path.read_bytes()
    if len(key) != 32:
        raise ConfigError(f"{path} is not a 32-byte key; delete it and the embedding caches it sealed.")
    return key


@dataclass
class Record:
    """What embedding one image gave: `embedding` None means failure to acquire (no face)."""

    embedding: Optional[np.ndarray]
    faces: int
    detector: str


@dataclass
class EmbedStats:
    images: int = 0
    from_cache: int = 0
    embedded: int = 0
    no_face: int = 0


def config_fingerprint(pipeline: Pipeline) -> dict[str, object]:
    c = pipeline.config
    masked: dict[str, object] = {}
    if any(d == "masked" for d, _ in c.steps):
        from ..hazmat.vision.mask_detect import model_id

        # The masked search, and the weak faces looked at beside a bystander, keep a face only
        # when the mask detector says so: new weights can change which face an image gives.
        masked = {"mask_detector": model_id()}
    return {
        **masked,
        "engine": pipeline.engine.name,
        "dim": int(pipeline.engine.embedding_dim),
        "steps": [list(s) for s in c.steps],
        "flip": c.flip,
        "jitter": c.jitter,
        "jitter_seed": c.jitter_seed,
        "center_prior": c.center_prior,
        "center_fraction": c.center_fraction,
        "pick": c.pick,
    }


def check_cache_location(cache_dir: Path, workspace: Optional[Path]) -> None:
    """Refuse a cache inside a workspace (the one named, or any the folder lies in): a workspace
    holds protected templates only."""
    cache = Path(cache_dir).resolve()
    found = enclosing_workspace(cache)
    if found is None and workspace is not None:
        ws = Path(workspace).resolve()
        found = ws if cache == ws or ws in cache.parents else None
    if found is not None:
        raise ConfigError(f"{cache_dir}: the embedding cache may not live inside the workspace {found}; "
                          "choose a --cache folder outside it.")


@dataclass
class EmbeddingCache:
    """Shards of (sha256, embedding, faces, detector) under `root/<config hash>/`."""

    root: Path
    fingerprint: dict[str, object]
    records: dict[str, Record] = field(default_factory=dict)

    def __post_init__(self) -> None:
        blob = json.dumps(self.fingerprint, sort_keys=True).encode()
        self.dir = Path(self.root) / hashlib.sha256(blob).hexdigest()[:16]
        self.dir.mkdir(parents=True, exist_ok=True)
        os.chmod(self.dir, 0o700)
        meta = self.dir / "config.json"
        if not meta.exists():
            write_atomic(meta, json.dumps(self.fingerprint, indent=2) + "\n", durable=False)
        self._aead = Aead(cache_key(), "the evaluation cache key")
        self._load()

    def _load(self) -> None:
        dim = int(self.fingerprint["dim"])  # type: ignore[call-overload]
        for shard in sorted(self.dir.glob("shard-*.sealed")):
            blob = shard.read_bytes()
            try:
                plain = self._aead.open(blob, self.dir.name.encode())
            except IntegrityError:
                raise ConfigError(f"{shard} does not open under this user's cache key (altered, or sealed by "
                                  f"another user); delete the cache folder {self.dir}.") from None
            with np.load(io.BytesIO(plain), allow_pickle=False) as z:
                keys, emb, faces, det = z["keys"], z["embeddings"], z["faces"], z["detectors"]
            if emb.ndim != 2 or emb.shape[1] != dim:
                raise ConfigError(f"{shard}: embeddings of the wrong width; delete the cache folder {self.dir}.")
            for k, e, f, d in zip(keys, emb, faces, det):
                vec = None if np.isnan(e).any() else e.astype(np.float32)
                self.records[str(k)] = Record(vec, int(f), str(d))

    def get(self, key: str) -> Optional[Record]:
        return self.records.get(key)

    def put_many(self, items: Sequence[tuple[str, Record]]) -> None:
        """Add records and write them as one new shard, atomically (a cache: not fsynced)."""
        if not items:
            return
        dim = int(self.fingerprint["dim"])  # type: ignore[call-overload]
        emb = np.full((len(items), dim), np.nan, dtype=np.float32)
        for i, (_, r) in enumerate(items):
            if r.embedding is not None:
                emb[i] = r.embedding
        n = len(list(self.dir.glob("shard-*.sealed")))
        target = self.dir / f"shard-{n:06d}-{os.getpid()}.sealed"
        buf = io.BytesIO()
        np.savez(buf, keys=np.array([k for k, _ in items], dtype="U64"), embeddings=emb,
                 faces=np.array([r.faces for _, r in items], dtype=np.int32),
                 detectors=np.array([r.detector for _, r in items], dtype="U32"))
        write_atomic(target, self._aead.seal(buf.getvalue(), self.dir.name.encode()), mode=0o600, durable=False)
        for k, r in items:
            self.records[k] = r


def _embed_batch(pipeline: Pipeline, items: Sequence[tuple[str, bytes]]) -> list[tuple[str, Record]]:
    """The pipeline's own embed_many over the batch: images searched in parallel, all chosen faces
    embedded in one engine call (batched engines such as ONNX Runtime run far faster so)."""
    results = pipeline.embed_many([data for _, data in items])
    return [(key, Record(r.embedding, len(r.faces), r.face.detector) if r.face is not None else Record(None, 0, ""))
            for (key, _), r in zip(items, results)]


def embed_images(pipeline: Pipeline, paths: Sequence[Path], cache: Optional[EmbeddingCache],
                 progress: bool = True, batch: int = SHARD_SIZE) -> tuple[dict[Path, Record], EmbedStats]:
    """One record per distinct path; images already in the cache are not embedded again. New
    embeddings are computed `batch` images at a time and each batch is saved to the cache as
    soon as it is done, so an interruption loses at most one batch."""
    from tqdm import tqdm

    unique = list(dict.fromkeys(Path(p) for p in paths))
    stats = EmbedStats(images=len(unique))
    by_key: dict[str, Record] = {}
    keys: dict[Path, str] = {}
    todo: list[tuple[str, bytes]] = []
    bar = tqdm(total=len(unique), desc="embedding", unit="img", file=sys.stderr, disable=not progress, leave=False)
    try:
        for path in unique:
            key, data = read_hashed(path)
            keys[path] = key
            rec = cache.get(key) if cache is not None else None
            if rec is not None:
                stats.from_cache += 1
                by_key[key] = rec
                bar.update(1)
            elif key not in by_key and all(k != key for k, _ in todo):
                todo.append((key, data))
            if len(todo) >= batch:
                _flush(pipeline, todo, cache, by_key, stats, bar)
                todo = []
        _flush(pipeline, todo, cache, by_key, stats, bar)
    finally:
        bar.close()
    out = {p: by_key[keys[p]] for p in unique}
    stats.no_face = sum(1 for r in out.values() if r.embedding is None)
    return out, stats


def _flush(pipeline: Pipeline, todo: list[tuple[str, bytes]], cache: Optional[EmbeddingCache],
           by_key: dict[str, Record], stats: EmbedStats, bar: Any) -> None:
    if not todo:
        return
    done = _embed_batch(pipeline, todo)
    if cache is not None:
        cache.put_many(done)
    for key, rec in done:
        by_key[key] = rec
    stats.embedded += len(done)
    bar.update(len(done))
