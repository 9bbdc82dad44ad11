"""The server store (PostgreSQL records + Milvus vectors) against the raw engines and ExactIndex,
all in the same run on the same protected 128-d templates.

* enrol: ServerStore.add_many (transform, seal, INSERT, pending notes, Milvus upsert) against
  the raw ceiling: plain COPY of the same sealed rows into PostgreSQL plus plain pymilvus inserts
  of the same vectors with the same scalar fields.
* ready: a new process opening the store and answering one search, against Gallery.open of the
  same rows in SQLite (which unseals every row into an in-memory ExactIndex).
* identify: ServerStore.search (Milvus proposes, the records are opened and re-scored) against a
  raw pymilvus search with the same filter, and ExactIndex with the same allowed rows; filters
  allowing 100% and 10% of rows; FLAT and an approximate index (--ann: HNSW or IVF_FLAT);
  recall@1 against exact search.
* visibility: the delay until another process finds a new enrolment.

Milvus Lite runs as its own server process (``python -m milvus_lite server``) so that several
processes share the collection, as they would share a Milvus cluster; PostgreSQL is a real
cluster started in a temporary folder (tests/server_support.py).

Run: PYTHONPATH=$PWD python3 benches/scaleout.py --n 100000
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))
from server_support import PG_PASSWORD, start_milvus, start_pg  # noqa: E402

from safeface.hazmat.index import ExactIndex  # noqa: E402
from safeface.hazmat.templates import HostKeyring, StaticKeyProvider  # noqa: E402
from safeface.storage.gallery import Gallery  # noqa: E402
from safeface.storage.rows import Enrollment  # noqa: E402
from safeface.storage.server import ServerStore  # noqa: E402
from safeface.storage.vectors import FLUSH_ROWS, MilvusVectors, search_params, purpose_filter, purpose_set  # noqa: E402

DIM = 128
BATCH = 2000

CHILD = r"""
import json, sys, time
t0 = time.perf_counter()
import numpy as np
import psycopg, pymilvus  # imported before the clock starts: "ready" is the open, not Python's imports
from safeface.hazmat.templates import HostKeyring, StaticKeyProvider
from safeface.storage.server import ServerStore
from safeface.storage.vectors import MilvusVectors
a = json.loads(sys.argv[1])
kr = HostKeyring(StaticKeyProvider({p: {int(v): bytes.fromhex(k) for v, k in vs.items()} for p, vs in a["keys"].items()}))
t1 = time.perf_counter()
s = ServerStore.open(a["dsn"], a["pw"], lambda: MilvusVectors.connect(a["vec"], None, a["coll"], a["dim"]), kr, a["dim"])
t2 = time.perf_counter()
q = np.asarray(a["q"], dtype=np.float32)
s.search(q, "all", k=1)
t3 = time.perf_counter()
print(json.dumps({"open_s": t2 - t1, "ready_s": t3 - t1, "with_imports_s": t3 - t0}), flush=True)
if a.get("watch"):
    target = np.asarray(a["watch"], dtype=np.float32)
    print("watching", flush=True)
    while not s.has_subject("late"):  # the record, in PostgreSQL
        time.sleep(0.001)
    record_at = time.time()
    while True:  # the vector, found by a filtered search in Milvus
        m = s.search(target, "all", k=1)
        if m and m[0].score > 0.999:
            print(json.dumps({"record_at": record_at, "seen_at": time.time()}), flush=True)
            break
s.close()
"""


def timed(fn: Any) -> tuple[Any, float]:
    t = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - t


def settle(pid: int, quiet_s: float = 5.0) -> float:
    """Wait until the Milvus Lite server has finished its background compaction and index builds
    (its process used under 2% of a core for `quiet_s`); returns the seconds waited. Milvus Lite
    has no call that reports them, and a search before they end scans unindexed segments."""
    t0 = time.perf_counter()
    tick = os.sysconf("SC_CLK_TCK")

    def cpu() -> float:
        f = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(f[11]) + int(f[12])) / tick

    while True:
        before = cpu()
        time.sleep(quiet_s)
        if cpu() - before < 0.02 * quiet_s:
            return time.perf_counter() - t0 - quiet_s


def child(args: dict[str, Any], env: dict[str, str]) -> subprocess.Popen:  # type: ignore[type-arg]
    return subprocess.Popen([sys.executable, "-c", CHILD, json.dumps(args)], stdout=subprocess.PIPE, text=True,
                            env=env, cwd=tempfile.gettempdir())


def node_figures(n: int, queries: int) -> dict[str, Any]:
    """Per-node figures for the capacity plan, on an engine that serves like a Milvus query node
    (FAISS HNSW, the graph Milvus's knowhere builds, M=32, efConstruction=200, ef=256), and the
    exact scan, on n protected templates, one query at a time on one thread."""
    import faiss

    faiss.omp_set_num_threads(1)
    rng = np.random.default_rng(1)
    x = rng.standard_normal((n, DIM)).astype(np.float32)
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    qi = rng.choice(n, queries, replace=False)
    q = x[qi] + 0.35 * rng.standard_normal((queries, DIM)).astype(np.float32) / np.sqrt(DIM)
    q /= np.linalg.norm(q, axis=1, keepdims=True)
    exact = ExactIndex(DIM)
    exact.add(np.arange(n, dtype=np.int64), x)
    truth = exact.search(q, 1)[1][:, 0]
    elat = [timed(lambda: exact.search(v[None, :], 1))[1] for v in q]
    faiss.omp_set_num_threads(2)
    h = faiss.IndexHNSWFlat(DIM, 32, faiss.METRIC_INNER_PRODUCT)
    h.hnsw.efConstruction = 200
    _, build = timed(lambda: h.add(x))
    faiss.omp_set_num_threads(1)
    h.hnsw.efSearch = 256
    got, hlat = [], []
    for v in q:
        (_, ids), dt_ = timed(lambda: h.search(v[None, :], 1))
        got.append(int(ids[0, 0]))
        hlat.append(dt_)
    size = faiss.serialize_index(h).nbytes
    return {"n": n, "hnsw_build_s": build, "hnsw_bytes_per_vector": size / n, "hnsw_ms": 1000 * float(np.median(hlat)),
            "hnsw_p99_ms": 1000 * float(np.percentile(hlat, 99)), "hnsw_recall1": float(np.mean(np.asarray(got) == truth)),
            "exact_ms": 1000 * float(np.median(elat))}


def main() -> None:
    import psycopg
    from pymilvus import MilvusClient

    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=100_000)
    ap.add_argument("--queries", type=int, default=200)
    ap.add_argument("--json", type=Path, default=None)
    ap.add_argument("--ann", choices=("HNSW", "IVF_FLAT"), default="HNSW",
                    help="the approximate index (IVF_FLAT builds far faster on a small machine)")
    ap.add_argument("--node-n", type=int, default=0, help="only the per-node engine figures, at this size")
    ap.add_argument("--skip-identify", action="store_true", help="enrolment, ready time and visibility only")
    args = ap.parse_args()
    if args.node_n:
        out = node_figures(args.node_n, args.queries)
        print(json.dumps(out, indent=2))
        if args.json:
            args.json.write_text(json.dumps(out, indent=2))
        return
    n = args.n
    rng = np.random.default_rng(0)
    x = rng.standard_normal((n, DIM)).astype(np.float32)
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    # Half the queries come from rows the 10% filter allows (mated: their own row is the answer),
    # half from the others (their best allowed row is a stranger, as for an unenrolled face).
    half = args.queries // 2
    qi = np.concatenate([10 * rng.choice(n // 10, half, replace=False),
                         10 * rng.choice(n // 10, args.queries - half, replace=False) + 1 + rng.integers(0, 9, args.queries - half)])
    qi = np.minimum(qi, n - 1)
    noisy = x[qi] + 0.35 * rng.standard_normal((args.queries, DIM)).astype(np.float32) / np.sqrt(DIM)
    exp = datetime.now(timezone.utc) + timedelta(days=30)
    keys = StaticKeyProvider.generate()
    kr = HostKeyring(keys)
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OPENBLAS_NUM_THREADS": "1"}
    res: dict[str, Any] = {"n": n, "dim": DIM, "queries": args.queries, "flush_rows": FLUSH_ROWS}

    def save(phase: str) -> None:  # after each phase, so a long run killed late still leaves its figures
        res["phase_done"] = phase
        res["loadavg_1_5_15"] = os.getloadavg()
        print(f"[{time.strftime('%H:%M:%S')}] {phase} done; load {os.getloadavg()}", flush=True)
        if args.json:
            args.json.write_text(json.dumps(res, indent=2))

    with tempfile.TemporaryDirectory(prefix="safeface-bench-") as d:
        base = Path(d)
        pg = start_pg(Path(tempfile.mkdtemp(prefix="safeface-pg-")))
        mv = start_milvus(base / "milvus")
        try:
            dsn = pg.new_database()
            vec = f"milvus:{mv.uri}"
            # Purposes: every row "all"; one row in ten also "tenth".
            purposes = [["all", "tenth"] if i % 10 == 0 else ["all"] for i in range(n)]

            # ---- enrolment through the store
            store = ServerStore.open(dsn, PG_PASSWORD, lambda: MilvusVectors.connect(vec, base, "flat", DIM), kr, DIM)
            items = [Enrollment(f"s{i}", x[i], purposes[i], f"t{i}", exp) for i in range(n)]
            t = time.perf_counter()
            for i in range(0, n, BATCH):
                store.add_many(items[i:i + BATCH])
            res["enrol_store_s"] = time.perf_counter() - t
            del items
            save("enrol through the store")

            # ---- the raw ceiling: COPY the same sealed rows, insert the same vectors
            sealed = store.sealed_rows(-1, n + 1)
            keysobj = store._require_keys()
            templates = keysobj.transform.apply(x.astype(np.float64)).astype(np.float32)
            with psycopg.connect(dsn, password=PG_PASSWORD, autocommit=True) as c:
                size = c.execute("SELECT pg_total_relation_size('safeface.rows')").fetchone()[0]
                res["pg_bytes_per_row"] = size / n
                c.execute("CREATE TABLE raw_rows (LIKE safeface.rows)")
                t = time.perf_counter()
                with c.cursor() as cur, cur.copy("COPY raw_rows (row_id, pseudonym, purposes, token_id, provenance, "
                                                 "expires_us, transform_version, seal_version, sealed, created_at, "
                                                 "last_interaction, look, look_small) FROM STDIN") as cp:
                    for r in sealed:
                        cp.write_row(r)
                res["enrol_raw_copy_s"] = time.perf_counter() - t
            raw = MilvusClient(uri=mv.uri)
            ids = [int(r[0]) for r in sealed]
            exp_us = [int(r[5]) for r in sealed]
            del sealed
            res["settle_after_store_s"] = settle(mv.proc.pid)
            # Plain inserts of the same rows (same schema, same encoded purposes), flushed at the
            # store's cadence (every FLUSH_ROWS rows) so that both leave the vectors equally searchable.
            for kind in ("FLAT", args.ann):
                coll = f"raw_{kind.lower()}"
                mvx = MilvusVectors.connect(vec, base, coll, DIM, kind)
                mvx.ensure()
                t = time.perf_counter()
                for i in range(0, n, FLUSH_ROWS):
                    raw.insert(coll, [{"id": ids[j], "vector": templates[j], "purposes": purpose_set(purposes[j]),
                                       "expires_us": exp_us[j]} for j in range(i, min(n, i + FLUSH_ROWS))])
                    raw.flush(coll)
                res[f"enrol_raw_milvus_{kind}_s"] = time.perf_counter() - t
                res[f"settle_raw_{kind}_s"] = settle(mv.proc.pid)
            res["enrol_raw_s"] = res["enrol_raw_copy_s"] + res["enrol_raw_milvus_FLAT_s"]
            res["enrol_store_rows_per_s"] = n / res["enrol_store_s"]
            res["enrol_raw_rows_per_s"] = n / res["enrol_raw_s"]
            res["enrol_ratio_to_raw"] = res["enrol_raw_s"] / res["enrol_store_s"]
            save("raw enrolment ceiling")

            # ---- identify: store vs raw Milvus vs ExactIndex, FLAT and the ANN index, filters 100% / 10%
            exact = ExactIndex(DIM)
            exact.add(np.asarray(ids, dtype=np.int64), templates)
            tenth = np.asarray([ids[i] for i in range(n) if i % 10 == 0], dtype=np.int64)
            qt = keysobj.transform.apply((noisy / np.linalg.norm(noisy, axis=1, keepdims=True)).astype(np.float64)
                                         ).astype(np.float32)
            now_us = int(time.time() * 1e6)
            for kind in () if args.skip_identify else ("FLAT", args.ann):
                coll = "flat" if kind == "FLAT" else f"raw_{kind.lower()}"
                s2 = store if kind == "FLAT" else ServerStore.open(
                    dsn, PG_PASSWORD, lambda: MilvusVectors.connect(vec, base, coll, DIM, kind), kr, DIM)
                for label, purpose, allowed in (("100", "all", None), ("10", "tenth", tenth)):
                    truth = exact.search(qt, 1, allowed=allowed)[1][:, 0]
                    mated = np.ones(len(qi), bool) if allowed is None else (qi % 10 == 0)
                    flt = purpose_filter(purpose, now_us)
                    # the raw search gets the parameters the store derives from its estimate of
                    # the allowed fraction (a wider IVF probe under a selective filter), so the
                    # ceiling searches as hard as the store does
                    frac = s2.allowed_fraction(purpose)
                    params = search_params(kind, frac)
                    got, lat, rlat, rgot = [], [], [], []
                    # Store and raw alternate query by query (and which goes first), so that the
                    # load of this shared machine falls on both alike.
                    for i in range(len(noisy)):
                        for side in ((0, 1) if i % 2 else (1, 0)):
                            if side == 0:
                                m, dt_ = timed(lambda: s2.search(noisy[i], purpose, k=1))
                                got.append(m[0].row_id if m else -1)
                                lat.append(dt_)
                            else:
                                h, dt_ = timed(lambda: raw.search(coll, [qt[i].tolist()], limit=4, filter=flt,
                                                                  output_fields=["id"], search_params={
                                                                      "metric_type": "IP", "params": params}))
                                rgot.append(int(h[0][0]["id"]) if h[0] else -1)
                                rlat.append(dt_)
                    elat = [timed(lambda: exact.search(q[None, :], 1, allowed=allowed))[1] for q in qt]
                    key = f"identify_{kind}_{label}pct"
                    res[key] = {
                        "store_ms": 1000 * float(np.median(lat)), "raw_milvus_ms": 1000 * float(np.median(rlat)),
                        "exact_ms": 1000 * float(np.median(elat)),
                        "allowed_fraction_estimate": frac, "search_params": params,
                        "load_1_5_15": os.getloadavg(),
                        "ratio_to_raw": float(np.median(lat) / np.median(rlat)),
                        "recall1_store": float(np.mean(np.asarray(got) == truth)),
                        "recall1_raw": float(np.mean(np.asarray(rgot) == truth)),
                        # the queries whose own row the filter allows: what identification needs
                        "recall1_store_mated": float(np.mean((np.asarray(got) == truth)[mated])),
                        "recall1_raw_mated": float(np.mean((np.asarray(rgot) == truth)[mated])),
                        "recall1_store_unmated": float(np.mean((np.asarray(got) == truth)[~mated])) if (~mated).any() else None,
                        "recall1_raw_unmated": float(np.mean((np.asarray(rgot) == truth)[~mated])) if (~mated).any() else None,
                    }
                    save(key)
                if s2 is not store:
                    s2.close()

            # ---- a new process: ready time, then the delay until it sees a new enrolment
            keyhex = {p: {str(v): keys.key(p, v).hex() for v in keys.versions(p)} for p in ("transform", "seal", "pseudonym", "audit")}
            new_vec = rng.standard_normal(DIM).astype(np.float32)
            new_vec /= np.linalg.norm(new_vec)
            p = child({"dsn": dsn, "pw": PG_PASSWORD, "vec": vec, "coll": "flat", "dim": DIM,
                       "keys": keyhex, "q": noisy[0].tolist(), "watch": new_vec.tolist()}, env)
            assert p.stdout is not None
            ready = json.loads(p.stdout.readline())
            res["open_new_process_s"] = ready["open_s"]
            res["ready_new_process_s"] = ready["ready_s"]
            res["ready_new_process_with_imports_s"] = ready["with_imports_s"]
            p.stdout.readline()  # watching
            time.sleep(0.5)
            t0 = time.time()
            store.add_many([Enrollment("late", new_vec, ["all"], "t-late", exp)])
            t_done = time.time()
            got = json.loads(p.stdout.readline())
            seen = got["seen_at"]
            p.wait(timeout=120)
            res["visibility_record_after_call_s"] = max(0.0, got["record_at"] - t_done)
            res["visibility_after_commit_s"] = max(0.0, seen - t_done)
            res["visibility_from_call_start_s"] = seen - t0
            store.close()
            save("new process")

            # ---- the local gallery of the same rows: open (unseal all into ExactIndex)
            gpath = base / "g.db"
            g = Gallery.open(gpath, kr, DIM)
            for i in range(0, n, 20_000):
                g.add_many([Enrollment(f"s{j}", x[j], purposes[j], f"t{j}", exp) for j in range(i, min(n, i + 20_000))])
            g.close()
            _, res["ready_local_gallery_s"] = timed(lambda: Gallery.open(gpath, kr, DIM).close())
            save("local gallery")
        finally:
            mv.stop()
            pg.stop()

    print(json.dumps(res, indent=2))


if __name__ == "__main__":
    main()
