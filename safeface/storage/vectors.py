"""The protected vectors in Milvus (a server or cluster, or Milvus Lite in one process).

Milvus is an index of the record store, never the truth. It receives only protected templates
(the embedding after the workspace's keyed orthogonal transform), keyed by the record's row id,
with the row's purposes and expiry as scalar fields so that search filters inside Milvus. It
never receives a raw embedding, a subject id, a pseudonym or a token reference. Whoever runs the
Milvus cluster sees scores between this deployment's templates (an orthogonal map keeps them)
and nothing that links them to another deployment's or inverts them without the transform key.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Optional, Sequence

import numpy as np

from ..errors import BackendError, ConfigError

ID, VECTOR, PURPOSES, EXPIRES = "id", "vector", "purposes", "expires_us"
MAX_PURPOSES = 64
MAX_PURPOSE_LEN = 256
INDEX_KINDS = {
    "FLAT": {},
    "HNSW": {"M": 32, "efConstruction": 200},
    "IVF_FLAT": {"nlist": 1024},
}
SEARCH_PARAMS = {"FLAT": {}, "HNSW": {"ef": 256}, "IVF_FLAT": {"nprobe": 64}}
BATCH = 5000


def _client_error() -> tuple[type[BaseException], ...]:
    from pymilvus.exceptions import MilvusException

    return (MilvusException, OSError, ConnectionError, TimeoutError)


class MilvusVectors:
    """One collection of protected templates. Use `MilvusVectors.connect`."""

    def __init__(self, client: Any, where: str, collection: str, dim: int, index_kind: str) -> None:
        self._client = client
        self.where = where
        self.collection = collection
        self._dim = dim
        self._kind = index_kind

    def __repr__(self) -> str:
        return f"MilvusVectors({self.where!r}, collection={self.collection!r})"

    @classmethod
    def connect(cls, target: str, root: Path, collection: str, dim: int, index_kind: str = "FLAT",
                token: Optional[str] = None, timeout: float = 10.0) -> "MilvusVectors":
        """`target` is "milvus:<uri>" (a Milvus server or cluster) or "milvus-lite:<path>"
        (relative to the workspace `root`). Checks the collection if it exists (its dimension);
        creates nothing: call `ensure` once every check of the opening store has passed."""
        try:
            from pymilvus import MilvusClient
        except ImportError:
            raise ConfigError("the deployment keeps its vectors in Milvus, but pymilvus is not installed: "
                              "pip install 'safeface[server]'.") from None
        if index_kind not in INDEX_KINDS:
            raise ConfigError(f"storage.vector_index must be one of {sorted(INDEX_KINDS)}, got {index_kind!r}.")
        if target.startswith("milvus-lite:"):
            path = Path(target[len("milvus-lite:"):])
            path = path if path.is_absolute() else root / path
            path.parent.mkdir(parents=True, exist_ok=True)
            uri, where = str(path), f"Milvus Lite at {path}"
        elif target.startswith("milvus:"):
            uri = target[len("milvus:"):]
            where = f"Milvus at {uri}"
        else:
            raise ConfigError(f"storage.vectors must be 'local', 'milvus:<uri>' or 'milvus-lite:<file>', got {target!r}.")
        try:
            client = MilvusClient(uri=uri, token=token or "", timeout=timeout)
        except _client_error() as exc:
            raise BackendError(f"{where} cannot be reached or refused the credentials ({_short(exc)}). Check that it "
                               "runs and that SAFEFACE_MILVUS_TOKEN is right; nothing was written.") from None
        out = cls(client, where, collection, dim, index_kind)
        out._check_existing()
        return out

    def _call(self, what: str, fn: Any, *args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except _client_error() as exc:
            raise BackendError(f"{self.where} failed to {what} ({_short(exc)}).") from None

    def _check_existing(self) -> None:
        if not self._call("list collections", self._client.has_collection, self.collection):
            return
        desc = self._call("describe the collection", self._client.describe_collection, self.collection)
        fields = {f["name"]: f for f in desc.get("fields", [])}
        vec = fields.get(VECTOR)
        if vec is None or set(fields) != {ID, VECTOR, PURPOSES, EXPIRES}:
            raise ConfigError(f"the collection {self.collection!r} in {self.where} was not made by safeface (fields "
                              f"{sorted(fields)}); name another collection in storage.collection.")
        have = int(vec.get("params", {}).get("dim", 0))
        if have != self._dim:
            raise ConfigError(f"the collection {self.collection!r} in {self.where} holds {have}-dimensional vectors, "
                              f"but this workspace's templates have {self._dim}; name another collection in "
                              "storage.collection or rebuild it with `safeface index rebuild`.")

    def ensure(self) -> None:
        """Create the collection (and its index) if it does not exist, and load it."""
        from pymilvus import DataType, MilvusClient

        if self._call("list collections", self._client.has_collection, self.collection):
            self._call("load the collection", self._client.load_collection, self.collection)
            return
        schema = MilvusClient.create_schema(auto_id=False, enable_dynamic_field=False)
        schema.add_field(ID, DataType.INT64, is_primary=True)
        schema.add_field(VECTOR, DataType.FLOAT_VECTOR, dim=self._dim)
        schema.add_field(PURPOSES, DataType.ARRAY, element_type=DataType.VARCHAR, max_capacity=MAX_PURPOSES,
                         max_length=MAX_PURPOSE_LEN)
        schema.add_field(EXPIRES, DataType.INT64)
        params = self._client.prepare_index_params()
        params.add_index(VECTOR, index_type=self._kind, metric_type="IP", params=INDEX_KINDS[self._kind])
        self._call("create the collection", self._client.create_collection, self.collection, schema=schema,
                   index_params=params, consistency_level="Strong")

    def drop(self) -> None:
        if self._call("list collections", self._client.has_collection, self.collection):
            self._call("drop the collection", self._client.drop_collection, self.collection)

    def upsert(self, ids: Sequence[int], vectors: np.ndarray, purposes: Sequence[Sequence[str]],
               expires_us: Sequence[int]) -> None:
        """Write protected templates (never anything else) under their row ids."""
        vecs = np.asarray(vectors, dtype=np.float32)
        for i in range(0, len(ids), BATCH):
            rows = [{ID: int(r), VECTOR: v, PURPOSES: list(p), EXPIRES: int(e)}
                    for r, v, p, e in zip(ids[i:i + BATCH], vecs[i:i + BATCH], purposes[i:i + BATCH],
                                          expires_us[i:i + BATCH])]
            self._call("store vectors", self._client.upsert, self.collection, rows)

    def delete(self, ids: Sequence[int]) -> None:
        for i in range(0, len(ids), BATCH):
            self._call("delete vectors", self._client.delete, self.collection, ids=[int(r) for r in ids[i:i + BATCH]])

    def present(self, ids: Sequence[int]) -> list[int]:
        """Which of these ids Milvus still holds (a strongly consistent query by id)."""
        out: list[int] = []
        for i in range(0, len(ids), BATCH):
            part = [int(r) for r in ids[i:i + BATCH]]
            found = self._call("query vectors", self._client.query, self.collection,
                               filter=f"{ID} in {json.dumps(part)}", output_fields=[ID], consistency_level="Strong")
            out.extend(int(r[ID]) for r in found)
        return sorted(out)

    def search(self, query: np.ndarray, purpose: str, now_us: int, limit: int) -> list[tuple[int, float]]:
        """(row id, score) of the best vectors whose purposes include `purpose` and whose expiry is
        after `now_us`, filtered inside Milvus."""
        flt = f"array_contains({PURPOSES}, {json.dumps(purpose)}) and {EXPIRES} > {int(now_us)}"
        res = self._call("search", self._client.search, self.collection, [np.asarray(query, np.float32).tolist()],
                         limit=int(limit), filter=flt, output_fields=[ID], search_params={
                             "metric_type": "IP", "params": SEARCH_PARAMS[self._kind]}, consistency_level="Strong")
        return [(int(h["id"]), float(h["distance"])) for h in res[0]]

    def ids(self) -> list[int]:
        """Every id the collection holds, sorted (for the consistency check)."""
        it = self._call("list vectors", self._client.query_iterator, self.collection, batch_size=BATCH, filter="",
                        output_fields=[ID], consistency_level="Strong")
        out: list[int] = []
        try:
            while True:
                page = self._call("list vectors", it.next)
                if not page:
                    break
                out.extend(int(r[ID]) for r in page)
        finally:
            it.close()
        return sorted(out)

    def fetch(self, ids: Sequence[int]) -> dict[int, tuple[np.ndarray, list[str], int]]:
        """What Milvus holds under these ids: (protected vector, purposes, expiry)."""
        out: dict[int, tuple[np.ndarray, list[str], int]] = {}
        for i in range(0, len(ids), BATCH):
            part = [int(r) for r in ids[i:i + BATCH]]
            for r in self._call("read vectors", self._client.query, self.collection, filter=f"{ID} in {json.dumps(part)}",
                                output_fields=[ID, VECTOR, PURPOSES, EXPIRES], consistency_level="Strong"):
                out[int(r[ID])] = (np.asarray(r[VECTOR], dtype=np.float32), [str(p) for p in r[PURPOSES]],
                                   int(r[EXPIRES]))
        return out

    def count(self) -> int:
        res = self._call("count vectors", self._client.query, self.collection, filter="", output_fields=["count(*)"],
                         consistency_level="Strong")
        return int(res[0]["count(*)"])

    def close(self) -> None:
        try:
            self._client.close()
        except Exception:  # closing a client whose server went away is not an error worth raising
            pass


def _short(exc: BaseException) -> str:
    text = str(getattr(exc, "message", "") or exc) or type(exc).__name__
    return text.replace("\n", " ")[:160]
