"""Approximate (or FAISS-exact) inner-product search over faiss-cpu, same interface as ExactIndex.

FAISS keeps its own internal labels; this wrapper maps them to the caller's ids. Deleted rows can
never come back: flat and HNSW indexes cannot drop rows cheaply, so a deleted row becomes a
tombstone that every search excludes through an IDSelector, and the index is rebuilt from its live
rows once tombstones exceed ``rebuild_fraction`` of all rows. IVF indexes remove rows for real.
"""

from __future__ import annotations

import math
import os
from typing import Any, Iterable, Optional

import faiss
import numpy as np

from ...errors import IntegrityError, InvalidArgument
from .base import Allowed, as_ids, as_new_ids, as_vectors, check_dim, check_k, check_threshold
from .container import read_container, require_seal_or_consent, write_container

_FORMAT = "safeface.faiss"
KINDS = ("flat", "ivf-flat", "hnsw", "ivf-pq")
_TOMBSTONE_KINDS = ("flat", "hnsw")


class FaissIndex:
    """A FAISS index (inner-product metric) behind the ExactIndex interface.

    Not safe for a mutation concurrent with any other call; searches alone may run concurrently.

    kind: "flat" (exact, IndexFlatIP), "hnsw" (IndexHNSWFlat; ``hnsw_m``, ``ef_construction``,
    ``ef_search``), "ivf-flat" or "ivf-pq" (``nlist``, ``nprobe``; ivf-pq also ``pq_m`` sub-vectors).
    IVF kinds train on the first batch passed to :meth:`add` (the list count shrinks to fit a
    small first batch), so make that batch representative.
    """

    def __init__(self, dim: int, kind: str = "hnsw", *, hnsw_m: int = 32,
                 ef_construction: int = 80, ef_search: int = 64, nlist: int = 1024,
                 nprobe: int = 16, pq_m: Optional[int] = None,
                 rebuild_fraction: float = 0.2) -> None:
        self.dim = check_dim(dim)
        if kind not in KINDS:
            raise ValueError(f"kind must be one of {', '.join(KINDS)}; got {kind!r}.")
        if not 0.0 < rebuild_fraction <= 1.0:
            raise ValueError(f"rebuild_fraction must be in (0, 1], got {rebuild_fraction}.")
        pq = pq_m if pq_m is not None else max(1, self.dim // 8)
        if kind == "ivf-pq" and self.dim % pq:
            raise ValueError(f"pq_m must divide dim ({self.dim}), got {pq}.")
        self.kind = kind
        self.params: dict[str, Any] = {
            "hnsw_m": int(hnsw_m), "ef_construction": int(ef_construction),
            "ef_search": int(ef_search), "nlist": int(nlist), "nprobe": int(nprobe),
            "pq_m": int(pq), "rebuild_fraction": float(rebuild_fraction)}
        self._index: Optional[faiss.Index] = None if kind.startswith("ivf") else self._new_index()
        self._label_id = np.zeros(0, dtype=np.int64)  # label -> caller id, -1 when deleted
        self._n_labels = 0
        self._id_label: dict[int, int] = {}
        self._dead = 0

    # ---- construction -------------------------------------------------------------------
    def _new_index(self, train: Optional[np.ndarray] = None) -> Any:
        p, d, ip = self.params, self.dim, faiss.METRIC_INNER_PRODUCT
        index: Any
        if self.kind == "flat":
            return faiss.IndexFlatIP(d)
        if self.kind == "hnsw":
            index = faiss.IndexHNSWFlat(d, p["hnsw_m"], ip)
            index.hnsw.efConstruction = p["ef_construction"]
            index.hnsw.efSearch = p["ef_search"]
            return index
        if train is None:
            raise InvalidArgument(f"a {self.kind} index is trained on its first vectors; add vectors to build it.")
        # FAISS wants about 39 training points per list; shrink the list count for small batches.
        nlist = max(1, min(p["nlist"], train.shape[0] // 39))
        quantizer = faiss.IndexFlatIP(d)
        if self.kind == "ivf-flat":
            index = faiss.IndexIVFFlat(quantizer, d, nlist, ip)
        else:
            # Codebooks also want ~39 points per centroid: fewer bits for small batches.
            nbits = int(max(4, min(8, math.floor(math.log2(max(train.shape[0] / 39, 2))))))
            index = faiss.IndexIVFPQ(quantizer, d, nlist, p["pq_m"], nbits, ip)
        index.train(train)
        index.nprobe = min(p["nprobe"], nlist)
        index.quantizer_trains_alone = 0
        self._quantizer = quantizer  # the IVF index borrows it; keep it alive
        return index

    def __len__(self) -> int:
        return len(self._id_label)

    def __repr__(self) -> str:
        return f"FaissIndex(dim={self.dim}, kind={self.kind!r}, n={len(self)})"

    # ---- mutation -------------------------------------------------------------------------
    def add(self, ids: Iterable[int] | np.ndarray, vectors: np.ndarray) -> None:
        """Add rows. Re-adding an id replaces its vector (within one call, the last one wins).
        Any int64 id but -1 (reserved for missing results)."""
        id_arr = as_new_ids(ids)
        vecs = as_vectors(vectors, self.dim)
        if id_arr.shape[0] != vecs.shape[0]:
            raise ValueError(f"got {id_arr.shape[0]} ids for {vecs.shape[0]} vectors.")
        if id_arr.size == 0:
            return
        # Last occurrence of each id wins.
        _, last = np.unique(id_arr[::-1], return_index=True)
        keep = np.sort(id_arr.size - 1 - last)
        id_arr, vecs = id_arr[keep], np.ascontiguousarray(vecs[keep])
        self._drop(id_arr, allow_rebuild=False)
        if self._index is None:
            if self.kind == "ivf-pq" and vecs.shape[0] < 16:
                raise ValueError("an ivf-pq index trains on its first add, which needs at least "
                                 f"16 vectors (better thousands); got {vecs.shape[0]}.")
            self._index = self._new_index(vecs)
        labels = np.arange(self._n_labels, self._n_labels + id_arr.size, dtype=np.int64)
        if self.kind in _TOMBSTONE_KINDS:
            self._index.add(vecs)  # sequential labels, never renumbered (no removal)
        else:
            self._index.add_with_ids(vecs, labels)
        self._grow(self._n_labels + id_arr.size)
        self._label_id[labels] = id_arr
        self._n_labels += id_arr.size
        self._id_label.update(zip(id_arr.tolist(), labels.tolist()))
        self._maybe_rebuild()

    def remove(self, ids: Iterable[int] | np.ndarray) -> int:
        """Remove the given ids; ids not present are ignored. Returns how many were removed."""
        n = self._drop(np.unique(as_ids(ids)), allow_rebuild=True)
        return n

    def _drop(self, ids: np.ndarray, allow_rebuild: bool) -> int:
        labels = [self._id_label.pop(i) for i in ids.tolist() if i in self._id_label]
        if not labels:
            return 0
        lab = np.asarray(labels, dtype=np.int64)
        self._label_id[lab] = -1
        if self.kind in _TOMBSTONE_KINDS:
            self._dead += lab.size
        else:
            if self._index is None:  # ids recorded but no index: the object was damaged
                raise IntegrityError(f"this {self.kind} index lists ids but holds no FAISS index; rebuild it.")
            self._index.remove_ids(faiss.IDSelectorBatch(lab))
        if allow_rebuild:
            self._maybe_rebuild()
        return int(lab.size)

    def _grow(self, need: int) -> None:
        if need > self._label_id.size:
            grown = np.full(max(need, 2 * self._label_id.size, 1024), -1, dtype=np.int64)
            grown[: self._n_labels] = self._label_id[: self._n_labels]
            self._label_id = grown

    def _maybe_rebuild(self) -> None:
        if self._dead and self._dead > self.params["rebuild_fraction"] * self._n_labels:
            self.rebuild()

    def rebuild(self) -> None:
        """Rebuild a flat/HNSW index from its live rows, dropping every tombstone."""
        if self.kind not in _TOMBSTONE_KINDS or self._index is None:
            return
        live = np.flatnonzero(self._label_id[: self._n_labels] >= 0)
        vecs = self._index.reconstruct_batch(live) if live.size else np.zeros((0, self.dim), np.float32)
        ids = self._label_id[live]
        self._index = self._new_index()
        if live.size:
            self._index.add(np.ascontiguousarray(vecs, dtype=np.float32))
        self._label_id = np.full(max(live.size, 1024), -1, dtype=np.int64)
        self._label_id[: live.size] = ids
        self._n_labels = int(live.size)
        self._id_label = dict(zip(ids.tolist(), range(live.size)))
        self._dead = 0

    # ---- queries --------------------------------------------------------------------------
    def ids(self) -> np.ndarray:
        """The ids, in internal label order (the order a boolean ``allowed`` mask follows)."""
        lab = self._label_id[: self._n_labels]
        out: np.ndarray = lab[lab >= 0].copy()
        return out

    def search(self, queries: np.ndarray, k: int, threshold: Optional[float] = None,
               allowed: Allowed = None) -> tuple[np.ndarray, np.ndarray]:
        """Same contract as :meth:`ExactIndex.search` (scores from FAISS, approximate for
        hnsw/ivf kinds). ``allowed``: boolean mask in ``ids()`` order, or an iterable of ids."""
        kk = check_k(k)
        q = as_vectors(queries, self.dim, "queries")
        thr = check_threshold(threshold)
        m = q.shape[0]
        scores = np.full((m, kk), -np.inf, dtype=np.float32)
        out = np.full((m, kk), -1, dtype=np.int64)
        if self._index is None or len(self) == 0:
            if allowed is not None:
                self._allowed_bool(allowed)  # still validate the argument
            return scores, out
        bitmap = None
        if allowed is not None or self._dead:
            ok = (self._allowed_bool(allowed) if allowed is not None
                  else self._label_id[: self._n_labels] >= 0)
            bitmap = np.packbits(ok, bitorder="little")
        sel = (faiss.IDSelectorBitmap(self._n_labels, faiss.swig_ptr(bitmap))
               if bitmap is not None else None)
        params = self._params(sel, kk)
        # `bitmap` and `sel` stay referenced here for the whole search: FAISS only points at them.
        d, lab = self._index.search(q, kk, params=params)
        valid = lab >= 0
        ids = np.where(valid, self._label_id[np.clip(lab, 0, None)], -1)
        valid &= ids >= 0  # defensive: a deleted label is never returned
        if thr is not None:
            valid &= d >= thr
        # Compact valid results to the front of each row, keeping their order.
        order = np.argsort(~valid, axis=1, kind="stable")
        valid = np.take_along_axis(valid, order, 1)
        scores[:] = np.where(valid, np.take_along_axis(d, order, 1), -np.inf)
        out[:] = np.where(valid, np.take_along_axis(ids, order, 1), -1)
        return scores, out

    def _allowed_bool(self, allowed: Allowed) -> np.ndarray:
        """Boolean mask over labels: live and allowed."""
        lab = self._label_id[: self._n_labels]
        live = lab >= 0
        if isinstance(allowed, np.ndarray) and allowed.dtype == np.bool_:
            n = int(live.sum())
            if allowed.shape != (n,):
                raise ValueError(
                    f"a boolean allowed mask needs one entry per indexed row in ids() order "
                    f"({n}), got shape {allowed.shape}.")
            ok = np.zeros(self._n_labels, dtype=bool)
            ok[np.flatnonzero(live)[allowed]] = True
            return ok
        return live & np.isin(lab, as_ids(allowed))  # type: ignore[arg-type]

    def _params(self, sel: Optional[faiss.IDSelector], k: int) -> Any:
        params: Any
        if self.kind == "hnsw":
            params = faiss.SearchParametersHNSW()  # type: ignore[attr-defined,unused-ignore]
            params.efSearch = max(self.params["ef_search"], k)
        elif self.kind.startswith("ivf"):
            params = faiss.SearchParametersIVF()
            params.nprobe = self._index.nprobe  # type: ignore[union-attr]
        else:
            if sel is None:
                return None
            params = faiss.SearchParameters()
        if sel is not None:
            params.sel = sel
        return params

    # ---- persistence ----------------------------------------------------------------------
    def save(self, path: str | os.PathLike[str], key: Optional[bytes] = None, *, plaintext: bool = False) -> None:
        """Write the index to ``path`` (own container with a checksum around FAISS's bytes),
        sealed with AES-256-GCM when ``key`` (32 bytes) is given; unsealed only with
        ``plaintext=True``."""
        require_seal_or_consent(key, plaintext)
        blob = faiss.serialize_index(self._index) if self._index is not None else np.zeros(0, np.uint8)
        meta = {"dim": self.dim, "kind": self.kind, "params": self.params, "dead": self._dead,
                "n_labels": self._n_labels, "trained": self._index is not None}
        write_container(path, _FORMAT, meta,
                        {"faiss": np.asarray(blob, dtype=np.uint8),
                         "label_id": self._label_id[: self._n_labels].copy()}, key)

    @classmethod
    def load(cls, path: str | os.PathLike[str], key: Optional[bytes] = None) -> "FaissIndex":
        """Open an index written by :meth:`save` (with the same ``key`` if it was sealed).
        Raises IntegrityError if the file is damaged, altered or opened with the wrong key."""
        meta, arrays = read_container(path, _FORMAT, key=key)
        try:
            p = dict(meta["params"])
            index = cls(int(meta["dim"]), str(meta["kind"]), hnsw_m=p["hnsw_m"],
                        ef_construction=p["ef_construction"], ef_search=p["ef_search"],
                        nlist=p["nlist"], nprobe=p["nprobe"], pq_m=p["pq_m"],
                        rebuild_fraction=p["rebuild_fraction"])
            if meta["trained"]:
                index._index = faiss.deserialize_index(np.array(arrays["faiss"]))
            lab = np.array(arrays["label_id"], dtype=np.int64)
            index._n_labels = int(meta["n_labels"])
            index._label_id = lab
            live = np.flatnonzero(lab >= 0)
            index._id_label = dict(zip(lab[live].tolist(), live.tolist()))
            index._dead = int(meta["dead"])
            index._check_loaded(live.size)
        except (KeyError, ValueError, RuntimeError) as exc:
            raise IntegrityError(f"{path} is not a consistent FAISS index: {exc}") from exc
        return index

    def _check_loaded(self, live: int) -> None:
        """What save() writes agrees with itself (ExactIndex's core checks the same of its
        file). An id listed twice came back after its remove() (the other label still named it),
        and FAISS rows beyond the labels crashed every search."""
        lab, index = self._label_id, self._index
        if lab.shape != (self._n_labels,) or len(self._id_label) != live:
            raise ValueError("its labels repeat an id or do not match their count")
        # A flat or HNSW index keeps a removed row as a tombstone; an IVF index drops it.
        stored = self._n_labels if self.kind in _TOMBSTONE_KINDS else live
        dead = self._n_labels - live if self.kind in _TOMBSTONE_KINDS else 0
        if index is None:
            if self._n_labels:
                raise ValueError("it lists ids but holds no FAISS index")
        elif index.d != self.dim or index.ntotal != stored or index.metric_type != faiss.METRIC_INNER_PRODUCT:
            raise ValueError(f"its FAISS index holds {index.ntotal} rows of dimension {index.d}, not {stored} of "
                             f"{self.dim} by inner product")
        if self._dead != dead:
            raise ValueError(f"it counts {self._dead} removed rows, not {dead}")
