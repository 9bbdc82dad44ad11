"""Matching benchmark: safeface's exact C core against FAISS and NumPy, measured in the same run.

    PYTHONPATH=. python3 benches/matching.py --n 1000000 --dims 128 512
    PYTHONPATH=. python3 benches/matching.py --n 100000 --dims 128 --lfw 600   # + real LFW embeddings

For each dimension: N synthetic unit vectors (float32), 256 random unit queries, k = 10.
Rows: single-query latency (all contenders round-robin, best of max(4 x repeat, 20)), batch-of-256 time, recall@10 against exact float32, search with 10% of
rows allowed, add time, save and load of the gallery. Every figure is the best of --repeat runs
(wall clock); ratios are ours / peer (below 1: ours is faster, or for recall: ours is lower).
Peers: FAISS IndexFlatIP, FAISS IndexScalarQuantizer QT_8bit (for int8), and NumPy brute force
(matrix product plus argpartition; "bare" = the product alone, no top-k).
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Callable, Optional

import faiss
import numpy as np

from safeface.hazmat.index import ExactIndex, get_isa, get_num_threads

K = 10


#: Pause before each timed call: OpenBLAS and OpenMP worker threads keep spinning for a while
#: after a call returns, and would otherwise slow down whichever contender runs next.
SETTLE_S = 0.05


def best_time(fn: Callable[[], object], repeat: int) -> float:
    fn()  # warm-up (page faults, thread start)
    best = float("inf")
    for _ in range(repeat):
        time.sleep(SETTLE_S)
        t = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t)
    return best


def best_times(fns: dict[str, Callable[[], object]], repeat: int) -> dict[str, float]:
    """Best time of each callable, run round-robin so that load changes on a shared machine
    hit every contender alike."""
    for fn in fns.values():
        fn()
    best = {name: float("inf") for name in fns}
    for _ in range(repeat):
        for name, fn in fns.items():
            time.sleep(SETTLE_S)
            t = time.perf_counter()
            fn()
            best[name] = min(best[name], time.perf_counter() - t)
    return best


def unit_rows(rng: np.random.Generator, n: int, d: int, chunk: int = 100_000) -> np.ndarray:
    out = np.empty((n, d), dtype=np.float32)
    for s in range(0, n, chunk):
        x = rng.standard_normal((min(chunk, n - s), d), dtype=np.float32)
        x /= np.linalg.norm(x, axis=1, keepdims=True)
        out[s: s + x.shape[0]] = x
    return out


def write_durably(index: faiss.Index, path: Path) -> None:
    """FAISS's write_index plus an fsync, as ExactIndex.save flushes its file to disk too."""
    faiss.write_index(index, str(path))
    with open(path, "rb") as f:
        os.fsync(f.fileno())


def numpy_topk(x: np.ndarray, q: np.ndarray, k: int) -> np.ndarray:
    s = q @ x.T if q.ndim == 2 else (x @ q)[None, :]
    part = np.argpartition(-s, k, axis=1)[:, :k]
    order = np.argsort(-np.take_along_axis(s, part, 1), axis=1)
    return np.take_along_axis(part, order, 1)


def recall(found: np.ndarray, truth: np.ndarray) -> float:
    return float(np.mean([len(set(a.tolist()) & set(b.tolist())) / truth.shape[1]
                          for a, b in zip(found, truth)]))


class Table:
    def __init__(self) -> None:
        self.rows: list[tuple[str, str, str, str]] = []

    def add(self, what: str, ours: float, peer_name: str, peer: Optional[float], unit: str = "ms"
            ) -> None:
        scale = 1e3 if unit == "ms" else 1.0
        o = f"{ours * scale:.2f} {unit}" if unit else f"{ours:.4f}"
        if peer is None:
            self.rows.append((what, o, peer_name, ""))
            return
        p = f"{peer * scale:.2f} {unit}" if unit else f"{peer:.4f}"
        self.rows.append((what, o, f"{peer_name} {p}", f"{ours / peer:.3f}x" if peer else "-"))

    def print(self, title: str) -> None:
        print(f"\n## {title}\n")
        print("| measure | ours | peer | ours/peer |\n|---|---|---|---|")
        for r in self.rows:
            print("| " + " | ".join(r) + " |")


def bench_dim(n: int, d: int, repeat: int, batch: int, rng: np.random.Generator,
              tmpdir: Path, dtypes: list[str]) -> None:
    t = Table()
    x = unit_rows(rng, n, d)
    q = unit_rows(rng, batch, d)
    ids = np.arange(n, dtype=np.int64)
    mask = rng.random(n) < 0.10
    sel_ids = np.flatnonzero(mask)

    # ---- batch and build figures (long runs, measured one after another) ----------------
    np_bareb = best_time(lambda: q @ x.T, max(1, repeat // 2))
    truth = numpy_topk(x, q, K)
    np_topb = best_time(lambda: numpy_topk(x, q, K), max(1, repeat // 2))

    flat = faiss.IndexFlatIP(d)
    f_add = best_time(lambda: (flat.reset(), flat.add(x)), 1)
    f_b = best_time(lambda: flat.search(q, K), max(1, repeat // 2))
    bitmap = np.packbits(mask, bitorder="little")
    fsel = faiss.IDSelectorBitmap(n, faiss.swig_ptr(bitmap))
    fparams = faiss.SearchParameters()
    fparams.sel = fsel
    f_bf = best_time(lambda: flat.search(q, K, params=fparams), max(1, repeat // 2))
    fpath = tmpdir / "flat.faiss"
    f_save = best_time(lambda: write_durably(flat, fpath), 1)
    f_load = best_time(lambda: faiss.read_index(str(fpath)), 1)
    fpath.unlink()

    sq8 = None
    sq: dict[str, float] = {}
    if "int8" in dtypes:
        sq8 = faiss.IndexScalarQuantizer(d, faiss.ScalarQuantizer.QT_8bit,
                                         faiss.METRIC_INNER_PRODUCT)
        sq["add"] = best_time(lambda: (sq8.reset(), sq8.train(x[:100_000]), sq8.add(x)), 1)
        sq["batch"] = best_time(lambda: sq8.search(q, K), max(1, repeat // 2))
        sq["recall"] = recall(sq8.search(q, K)[1], truth)

    ours: dict[str, dict[str, float]] = {}
    indexes: dict[str, ExactIndex] = {}
    for dtype in dtypes:
        r: dict[str, float] = {}
        holder: list[ExactIndex] = []

        def fresh_add() -> None:
            holder.clear()
            index = ExactIndex(d, dtype, rerank=True)
            index.add(ids, x)
            holder.append(index)

        r["add"] = best_time(fresh_add, 1)
        index = holder[0]
        r["batch"] = best_time(lambda: index.search(q, K), max(1, repeat // 2))
        r["batch_filt"] = best_time(lambda: index.search(q, K, allowed=mask), max(1, repeat // 2))
        r["recall"] = recall(index.search(q, K)[1], truth)
        _, got_f = index.search(q, K, allowed=mask)
        assert np.isin(got_f, sel_ids).all(), "filtered search returned a disallowed row"
        path = tmpdir / f"ours-{dtype}.sfx"
        r["save"] = best_time(lambda: index.save(path, plaintext=True), 1)
        r["load"] = best_time(lambda: ExactIndex.load(path), 1)
        path.unlink()
        if dtype == "int8":
            r["recall_norerank"] = recall(ExactIndex_search_norerank(d, ids, x, q), truth)
        ours[dtype] = r
        indexes[dtype] = index

    # ---- single queries: every contender round-robin, each query in turn ----------------
    qi = iter(range(1 << 30))

    def one(fn: Callable[[np.ndarray], object]) -> Callable[[], object]:
        return lambda: fn(q[next(qi) % q.shape[0]][None, :])

    single: dict[str, Callable[[], object]] = {
        "np_bare": one(lambda v: x @ v[0]),
        "np_top": one(lambda v: numpy_topk(x, v[0], K)),
        "faiss": one(lambda v: flat.search(v, K)),
        "faiss_filt": one(lambda v: flat.search(v, K, params=fparams)),
    }
    if sq8 is not None:
        single["sq8"] = one(lambda v: sq8.search(v, K))
    for dtype, index in indexes.items():
        single[f"{dtype}"] = one(lambda v, ix=index: ix.search(v, K))
        single[f"{dtype}_filt"] = one(lambda v, ix=index: ix.search(v, K, allowed=mask))
        single[f"{dtype}_filt_ids"] = one(lambda v, ix=index: ix.search(v, K, allowed=sel_ids))
    st = best_times(single, max(4 * repeat, 20))
    np_bare1, np_top1, f_1, f_1f = st["np_bare"], st["np_top"], st["faiss"], st["faiss_filt"]
    if sq8 is not None:
        sq["1q"] = st["sq8"]
    for dtype in indexes:
        ours[dtype]["1q"] = st[dtype]
        ours[dtype]["1q_filt"] = st[f"{dtype}_filt"]
        ours[dtype]["1q_filt_ids"] = st[f"{dtype}_filt_ids"]
    # Free the peers and our indexes before the long figures below (assignment, not del, since
    # the timing lambdas above close over these names).
    flat = sq8 = indexes = single = None  # type: ignore[assignment]

    f32 = ours.get("float32")
    if f32:
        t.add("float32 1 query", f32["1q"], "FAISS Flat", f_1)
        t.add("float32 1 query", f32["1q"], "NumPy matvec bare", np_bare1)
        t.add("float32 1 query", f32["1q"], "NumPy matvec+top-k", np_top1)
        t.add(f"float32 batch {batch}", f32["batch"], "FAISS Flat", f_b)
        t.add(f"float32 batch {batch}", f32["batch"], "NumPy matmul bare", np_bareb)
        t.add(f"float32 batch {batch}", f32["batch"], "NumPy matmul+top-k", np_topb)
        t.add("float32 1 query, 10% allowed (mask)", f32["1q_filt"], "ours unfiltered", f32["1q"])
        t.add("float32 1 query, 10% allowed (mask)", f32["1q_filt"], "FAISS Flat+bitmap", f_1f)
        t.add("float32 1 query, 10% allowed (id list)", f32["1q_filt_ids"], "ours unfiltered",
              f32["1q"])
        t.add(f"float32 batch {batch}, 10% allowed", f32["batch_filt"], "ours unfiltered",
              f32["batch"])
        t.add(f"float32 batch {batch}, 10% allowed", f32["batch_filt"], "FAISS Flat+bitmap", f_bf)
        t.add("float32 recall@10", f32["recall"], "exact", 1.0, unit="")
        t.add("float32 add (all rows)", f32["add"], "FAISS Flat add", f_add)
        t.add("float32 save (with fsync)", f32["save"], "FAISS write_index+fsync", f_save)
        t.add("float32 load", f32["load"], "FAISS read_index", f_load)
    for dtype in ("int8", "float16"):
        r = ours.get(dtype)
        if not r:
            continue
        t.add(f"{dtype} 1 query (re-ranked)", r["1q"], "ours float32", f32["1q"] if f32 else None)
        if dtype == "int8":
            t.add("int8 1 query (re-ranked)", r["1q"], "FAISS SQ8", sq["1q"])
            t.add(f"int8 batch {batch}", r["batch"], "FAISS SQ8", sq["batch"])
        t.add(f"{dtype} batch {batch}", r["batch"], "FAISS Flat", f_b)
        t.add(f"{dtype} 1 query, 10% allowed (mask)", r["1q_filt"], f"ours {dtype} unfiltered",
              r["1q"])
        t.add(f"{dtype} batch {batch}, 10% allowed", r["batch_filt"], f"ours {dtype} unfiltered",
              r["batch"])
        t.add(f"{dtype} recall@10 (re-ranked)", r["recall"], "exact", 1.0, unit="")
        if dtype == "int8":
            t.add("int8 recall@10 without re-rank", r["recall_norerank"], "FAISS SQ8 recall",
                  sq["recall"], unit="")
            t.add("int8 add (all rows)", r["add"], "FAISS SQ8 train+add", sq["add"])
        t.add(f"{dtype} load", r["load"], "FAISS read_index (flat)", f_load)
    t.print(f"N = {n:,}, d = {d}, k = {K} (ours: {get_isa()} kernels, {get_num_threads()} threads;"
            f" FAISS {faiss.__version__}, {faiss.omp_get_max_threads()} OpenMP threads)")


def ExactIndex_search_norerank(d: int, ids: np.ndarray, x: np.ndarray, q: np.ndarray) -> np.ndarray:
    index = ExactIndex(d, "int8", rerank=False)
    index.add(ids, x)
    return index.search(q, K)[1]


def cpu_times(fns: dict[str, Callable[[], object]], repeat: int) -> dict[str, float]:
    """Best process CPU time of each callable, round-robin (meaningful only single-threaded)."""
    for fn in fns.values():
        fn()
    best = {name: float("inf") for name in fns}
    for _ in range(repeat):
        for name, fn in fns.items():
            t = time.process_time()
            fn()
            best[name] = min(best[name], time.process_time() - t)
    return best


def bench_cpu_single_thread(n: int, d: int, repeat: int, batch: int) -> None:
    """Everything on one thread, timed in process CPU time: on a machine shared with other
    work this removes the waits for a core, which wall-clock figures of multi-threaded code
    suffer unevenly. Runs in a child process started with OPENBLAS/OMP_NUM_THREADS=1."""
    rng = np.random.default_rng(7)
    x = unit_rows(rng, n, d)
    q = unit_rows(rng, batch, d)
    flat = faiss.IndexFlatIP(d)
    flat.add(x)
    sq8 = faiss.IndexScalarQuantizer(d, faiss.ScalarQuantizer.QT_8bit, faiss.METRIC_INNER_PRODUCT)
    sq8.train(x[:100_000])
    sq8.add(x)
    idx = {}
    for dtype in ("float32", "int8", "float16"):
        idx[dtype] = ExactIndex(d, dtype, threads=1)
        idx[dtype].add(np.arange(n), x)
    qi = iter(range(1 << 30))

    def one(fn: Callable[[np.ndarray], object]) -> Callable[[], object]:
        return lambda: fn(q[next(qi) % q.shape[0]][None, :])

    st = cpu_times({
        "np_bare": one(lambda v: x @ v[0]),
        "np_top": one(lambda v: numpy_topk(x, v[0], K)),
        "faiss": one(lambda v: flat.search(v, K)),
        "sq8": one(lambda v: sq8.search(v, K)),
        **{dt: one(lambda v, ix=ix: ix.search(v, K)) for dt, ix in idx.items()},
    }, max(4 * repeat, 20))
    bt = cpu_times({"np_matmul": lambda: q @ x.T,
                    **{dt: (lambda ix=ix: ix.search(q, K)) for dt, ix in idx.items()}},
                   max(1, repeat // 2))
    t = Table()
    t.add("float32 1 query", st["float32"], "FAISS Flat", st["faiss"])
    t.add("float32 1 query", st["float32"], "NumPy matvec bare", st["np_bare"])
    t.add("float32 1 query", st["float32"], "NumPy matvec+top-k", st["np_top"])
    t.add("int8 1 query (re-ranked)", st["int8"], "FAISS SQ8", st["sq8"])
    t.add("int8 1 query (re-ranked)", st["int8"], "ours float32", st["float32"])
    t.add("float16 1 query (re-ranked)", st["float16"], "ours float32", st["float32"])
    t.add(f"float32 batch {batch}", bt["float32"], "NumPy matmul bare", bt["np_matmul"])
    t.add(f"int8 batch {batch}", bt["int8"], "NumPy matmul bare", bt["np_matmul"])
    t.print(f"one thread each, process CPU time: N = {n:,}, d = {d}, k = {K}")


def lfw_embeddings(limit: int) -> tuple[np.ndarray, list[str]]:
    """dlib embeddings of the first `limit` LFW dev images (kept in memory only)."""
    from safeface.imageio import load_image
    from safeface.hazmat.vision.dlib_engine import DlibEngine

    root = Path(os.environ.get("SAFEFACE_DATASETS",
                               Path(__file__).resolve().parents[1].parent / "shared" / "datasets"))
    images = sorted((root / "lfw-dev" / "images").glob("*/*.jpg"))[:limit]
    if not images:
        raise SystemExit(f"no LFW images under {root}; run without --lfw")
    engine = DlibEngine()
    chips, names = [], []
    for p in images:
        img = load_image(p)
        face = engine.face_from_box(img, (70, 70, 180, 180))  # deep-funneled: face centred
        chips.append(engine.chips(img, [face])[0])
        names.append(p.parent.name)
    vecs = [engine.embed_chips(np.stack(chips[i: i + 64])) for i in range(0, len(chips), 64)]
    return np.concatenate(vecs).astype(np.float32), names


def bench_lfw(limit: int, repeat: int) -> None:
    x, names = lfw_embeddings(limit)
    n, d = x.shape
    ids = np.arange(n, dtype=np.int64)
    truth = numpy_topk(x, x, K)
    t = Table()
    flat = faiss.IndexFlatIP(d)
    flat.add(x)
    f_b = best_time(lambda: flat.search(x, K), repeat)
    for dtype in ("float32", "float16", "int8"):
        index = ExactIndex(d, dtype)
        index.add(ids, x)
        t.add(f"{dtype} all {n} as queries", best_time(lambda: index.search(x, K), repeat),
              "FAISS Flat", f_b)
        t.add(f"{dtype} recall@10 (re-ranked)", recall(index.search(x, K)[1], truth), "exact",
              1.0, unit="")
        raw = ExactIndex(d, dtype, rerank=False)
        raw.add(ids, x)
        t.add(f"{dtype} recall@10 without re-rank", recall(raw.search(x, K)[1], truth), "exact",
              1.0, unit="")
    t.print(f"real LFW dlib embeddings: N = {n}, d = {d}, {len(set(names))} people")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--n", type=int, default=1_000_000, help="gallery size (default 1,000,000)")
    ap.add_argument("--dims", type=int, nargs="+", default=[128, 512])
    ap.add_argument("--batch", type=int, default=256)
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--dtypes", nargs="+", default=["float32", "int8", "float16"])
    ap.add_argument("--lfw", type=int, default=0,
                    help="also run on this many real LFW images' dlib embeddings (0: skip)")
    ap.add_argument("--cpu-time", action="store_true",
                    help="also compare single-threaded CPU times (child process, first --dims only)")
    ap.add_argument("--cpu-child", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.cpu_child:
        bench_cpu_single_thread(args.n, args.dims[0], args.repeat, args.batch)
        return
    print("load before:", subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip())
    rng = np.random.default_rng(2026)
    with tempfile.TemporaryDirectory(prefix="sf-bench-") as td:
        for d in args.dims:
            bench_dim(args.n, d, args.repeat, args.batch, rng, Path(td), args.dtypes)
    if args.lfw:
        bench_lfw(args.lfw, args.repeat)
    if args.cpu_time:
        env = dict(os.environ, OPENBLAS_NUM_THREADS="1", OMP_NUM_THREADS="1")
        subprocess.run([sys.executable, __file__, "--cpu-child", "--n", str(args.n),
                        "--repeat", str(args.repeat), "--batch", str(args.batch), "--dims",
                        *map(str, args.dims)], env=env, check=True)
    print("\nload after:", subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip())


if __name__ == "__main__":
    main()
