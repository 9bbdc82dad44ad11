"""A server-store search while Milvus lags the records (a re-key's or `index rebuild`'s rewrite
pending), which scores every record from PostgreSQL, against the same search with Milvus
proposing candidates; in the same run, on the same protected 128-d templates. Prints the
medians and their ratio; also the same Milvus search without the stamp check that each search
makes (ServerStore._index_state: one Milvus query by id), to price that check.
The store scans the records up to storage.server.SCAN_MAX rows.

Run: PYTHONPATH=$PWD python3 benches/lagging_search.py --n 20000
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))
from server_support import PG_PASSWORD, start_milvus, start_pg  # noqa: E402

from safeface.hazmat.templates import HostKeyring, StaticKeyProvider  # noqa: E402
from safeface.storage.rows import Enrollment  # noqa: E402
from safeface.storage.server import REBUILD, ServerStore  # noqa: E402
from safeface.storage.vectors import MilvusVectors  # noqa: E402

DIM = 128


def median_s(fn, runs: int) -> float:  # type: ignore[no-untyped-def]
    times = []
    for _ in range(runs):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return float(np.median(times))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=20_000)
    ap.add_argument("--runs", type=int, default=5)
    args = ap.parse_args()
    x = np.random.default_rng(0).standard_normal((args.n, DIM)).astype(np.float32)
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    later = datetime.now(timezone.utc) + timedelta(days=30)
    kr = HostKeyring(StaticKeyProvider.generate())
    with tempfile.TemporaryDirectory(prefix="safeface-bench-") as d:
        base = Path(d)
        base.chmod(0o755)
        pg = start_pg(base / "pg")
        mv = start_milvus(base / "milvus")
        try:
            vec = f"milvus:{mv.uri}"
            s = ServerStore.open(pg.new_database(), PG_PASSWORD, lambda: MilvusVectors.connect(vec, base, "c", DIM),
                                 kr, DIM)
            for i in range(0, args.n, 2000):
                s.add_many([Enrollment(f"s{j}", x[j], ["access"], f"t{j}", later)
                            for j in range(i, min(args.n, i + 2000))])
            probe = x[args.n // 2]
            assert s.search(probe, "access", k=1)[0].score > 0.999
            milvus = median_s(lambda: s.search(probe, "access", k=5), args.runs)
            checked = s._index_state
            s._index_state = lambda book: "ok"  # type: ignore[method-assign]
            unchecked = median_s(lambda: s.search(probe, "access", k=5), args.runs)
            s._index_state = checked  # type: ignore[method-assign]
            s._note_now([REBUILD], "rebuild")  # as a re-key leaves it until Milvus is rewritten
            assert s.search(probe, "access", k=1)[0].score > 0.999
            scan = median_s(lambda: s.search(probe, "access", k=5), args.runs)
            s._sql("DELETE FROM {ns}.pending")
            s.close()
        finally:
            mv.stop()
            pg.stop()
    out = {"n": args.n, "milvus_search_s": milvus, "records_scan_search_s": scan, "scan_to_milvus": scan / milvus,
           "milvus_search_without_stamp_check_s": unchecked, "stamp_check_cost": milvus / unchecked}
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
