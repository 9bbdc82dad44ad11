"""Gallery costs against peers measured in the same run.

* open: rebuilding the index from the store (read + unseal + transform-free load) against only
  reading the same rows from SQLite.
* search: Gallery.search (purpose/expiry filter, transform of the probe, one match per subject)
  against ExactIndex.search on the same protected vectors with the same allowed ids.
* enrol: add_many (transform + seal + one transaction) against plain SQLite inserts of the same
  number of equally sized blobs.

Run: PYTHONPATH=$PWD python3 benches/gallery.py --n 20000
"""

from __future__ import annotations

import argparse
import sqlite3
import tempfile
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

import numpy as np

from safeface.hazmat.index import ExactIndex
from safeface.hazmat.templates import HostKeyring, StaticKeyProvider, TemplateTransform
from safeface.storage.gallery import Enrollment, Gallery


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=20000)
    ap.add_argument("--dim", type=int, default=128)
    ap.add_argument("--queries", type=int, default=200)
    args = ap.parse_args()
    rng = np.random.default_rng(0)
    x = rng.standard_normal((args.n, args.dim)).astype(np.float32)
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    exp = datetime.now(timezone.utc) + timedelta(days=30)
    kr = HostKeyring(StaticKeyProvider.generate())
    with tempfile.TemporaryDirectory() as d:
        path = Path(d) / "g.db"
        g = Gallery.open(path, kr, args.dim)
        items = [Enrollment(f"s{i}", x[i], ["access"] if i % 2 else ["access", "payment"], f"t{i}", exp)
                 for i in range(args.n)]
        t = time.perf_counter()
        g.add_many(items)
        t_enrol = time.perf_counter() - t
        g.close()

        peer = sqlite3.connect(Path(d) / "peer.db", isolation_level=None)
        peer.execute("PRAGMA journal_mode=WAL")
        peer.execute("PRAGMA synchronous=FULL")
        peer.execute("CREATE TABLE r (id INTEGER PRIMARY KEY, p TEXT, b BLOB)")
        blob = bytes(4 * args.dim + 28)
        t = time.perf_counter()
        peer.execute("BEGIN")
        peer.executemany("INSERT INTO r (p, b) VALUES (?, ?)", ((f"{i:064x}", blob) for i in range(args.n)))
        peer.execute("COMMIT")
        t_enrol_peer = time.perf_counter() - t
        peer.close()

        t = time.perf_counter()
        g = Gallery.open(path, kr, args.dim)
        t_open = time.perf_counter() - t
        c = sqlite3.connect(path)
        t = time.perf_counter()
        rows = c.execute("SELECT * FROM rows").fetchall()
        t_read = time.perf_counter() - t
        c.close()
        assert len(rows) == args.n

        q = x[rng.integers(0, args.n, args.queries)] + 0.05 * rng.standard_normal((args.queries, args.dim)).astype(np.float32)
        now = datetime.now(timezone.utc)
        g.search(q[0], "payment", k=5, now=now)
        t = time.perf_counter()
        for v in q:
            g.search(v, "payment", k=5, now=now)
        t_search = (time.perf_counter() - t) / args.queries

        transform = TemplateTransform.from_key(kr.key("transform"), args.dim)
        prot = transform.apply(x)  # the same protected vectors, outside the gallery
        idx = ExactIndex(args.dim)
        ids = np.arange(1, args.n + 1, dtype=np.int64)
        idx.add(ids, prot)
        allowed = ids[0::2]
        qp = transform.apply(q)
        idx.search(qp[:1], 20, allowed=allowed)
        t = time.perf_counter()
        for v in qp:
            idx.search(v[None], 20, allowed=allowed)
        t_index = (time.perf_counter() - t) / args.queries
        g.close()

    print(f"rows {args.n}, dim {args.dim}")
    print(f"enrol: add_many {t_enrol:.3f}s vs plain SQLite inserts {t_enrol_peer:.3f}s  ratio {t_enrol / t_enrol_peer:.1f}x")
    print(f"open: rebuild from store {t_open:.3f}s vs reading the rows {t_read:.3f}s  ratio {t_open / t_read:.1f}x")
    print(f"search: Gallery.search {t_search * 1e3:.3f} ms vs ExactIndex.search with the same allowed ids "
          f"{t_index * 1e3:.3f} ms  ratio {t_search / t_index:.2f}x")


if __name__ == "__main__":
    main()
