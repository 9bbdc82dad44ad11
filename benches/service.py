"""`safeface serve` on loopback against in-process SafeFace.verify, measured in the same run.

    PYTHONPATH=. python3 benches/service.py [--threads 2] [--seconds 15]

1. verify with a 640x480 JPEG: in process (one caller), then over HTTP at 1, 4 and 16 concurrent
   clients: requests/s, p50 and p99; the overhead at 1 client is p50(HTTP) / p50(in process) - 1.
2. overload at 4x capacity (threads + queue = capacity; 4x as many clients enrolling at once):
   every answer must be 200 or 503 with Retry-After, and every acknowledged enrolment present
   and audited afterwards.
3. kill -9 of the server in the middle of an enrolment load, then a restart: audit verify, every
   acknowledged enrolment present, and how many requests were in flight.

Bounded: each phase stops after --seconds (or its request count). Loopback only. Numbers depend on
what else the machine runs; only ratios within one run mean much."""

from __future__ import annotations

import argparse
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any, Callable, Optional

import httpx

from safeface.policy.deployment import Deployment
from safeface.policy.issuer import issue_consent
from safeface.sdk import SafeFace
from safeface.workspace.init import init_workspace
from safeface.workspace.keys import read_signing_key
from tests.face_fixtures import jpeg_640

DATASETS = Path(os.environ.get("SAFEFACE_DATASETS", Path(__file__).resolve().parents[1].parent / "shared" / "datasets"))
PASSPHRASE = "benchmark passphrase, not secret"


def pct(xs: list[float], q: float) -> float:
    s = sorted(xs)
    return s[min(len(s) - 1, max(0, int(round(q * (len(s) - 1)))))] if s else float("nan")


class Server:
    def __init__(self, ws: Path, *args: str) -> None:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = s.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"
        env = {**os.environ, "SAFEFACE_PASSPHRASE": PASSPHRASE}
        self.proc = subprocess.Popen([sys.executable, "-m", "safeface.cli", "serve", str(ws), "--port", str(self.port),
                                      *args], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                     start_new_session=True)
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise SystemExit("the server exited at start")
            try:
                if httpx.get(self.url + "/v1/ready", timeout=2).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.2)
        raise SystemExit("the server did not become ready")

    def stop(self, sig: int = signal.SIGTERM) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, sig)
        self.proc.wait(timeout=60)


def load(n_clients: int, seconds: float, max_requests: int, send: Callable[[httpx.Client, int], httpx.Response],
         stop: Optional[threading.Event] = None) -> dict[str, Any]:
    """n_clients threads sending back to back until the time or count runs out."""
    lat: list[float] = []
    codes: dict[int, int] = {}
    errors = [0]
    acked: list[Any] = []
    bad: list[str] = []
    counter = [0]
    lock = threading.Lock()
    deadline = time.monotonic() + seconds

    def client() -> None:
        with httpx.Client(timeout=120) as c:
            while time.monotonic() < deadline and not (stop and stop.is_set()):
                with lock:
                    if counter[0] >= max_requests:
                        return
                    i = counter[0]
                    counter[0] += 1
                t = time.perf_counter()
                try:
                    r = send(c, i)
                except httpx.HTTPError:
                    with lock:
                        errors[0] += 1
                    continue
                dt_ = time.perf_counter() - t
                with lock:
                    codes[r.status_code] = codes.get(r.status_code, 0) + 1
                    if r.status_code == 200:
                        lat.append(dt_)
                        acked.append((i, r.json()))
                    elif r.status_code != 503 or "retry-after" not in r.headers:
                        bad.append(f"{r.status_code} {r.text[:80]}")
                if r.status_code == 503:
                    time.sleep(0.25)  # a client backs off (less than Retry-After, to keep the pressure on)

    t0 = time.perf_counter()
    threads = [threading.Thread(target=client) for _ in range(n_clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wall = time.perf_counter() - t0
    return {"lat": lat, "codes": codes, "errors": errors[0], "acked": acked, "bad": bad, "wall": wall,
            "rps": len(lat) / wall if wall else 0.0}


def check_acked(ws: Path, acked: list[Any]) -> tuple[int, int]:
    """(acknowledged enrolments missing from the store or the log, entries verified)."""
    with SafeFace.open(ws, PASSPHRASE) as sf:
        report = sf.audit_verify()
        rows = {r.row_id for r in sf.records()}
        notes = " ".join(e.note or "" for e in sf.audit_entries() if e.operation == "enroll" and e.decision == "allowed")
    missing = sum(1 for _, d in acked if d["row_id"] not in rows or f"rows={d['row_id']};" not in notes)
    return missing, report.entries


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--seconds", type=float, default=15.0)
    ap.add_argument("--requests", type=int, default=60, help="at most this many verifications per level")
    args = ap.parse_args()

    imgs = DATASETS / "face_recognition" / "test_images"
    probe, enrol_img = jpeg_640(imgs / "obama2.jpg"), jpeg_640(imgs / "obama.jpg")
    tmp = Path(tempfile.mkdtemp(prefix="safeface-bench-service-"))
    ws = tmp / "ws"
    paths = init_workspace(ws, demo=True, passphrase=PASSPHRASE)
    dep = Deployment.load(paths.config)
    issuer = read_signing_key(paths.demo_issuer)

    def token(subject: str) -> str:
        return issue_consent(issuer, dep, subject, ["demo"])[0]

    alice = token("alice")
    with SafeFace.open(ws, PASSPHRASE) as sf:
        key = sf.issue_api_key("operator", rate=100_000)[1]
        sf.enroll(enrol_img, "alice", "demo", alice)
    headers = {"X-API-Key": key, "X-Consent-Token": alice}

    def verify(c: httpx.Client, i: int) -> httpx.Response:
        return c.post(server.url + "/v1/verify", headers=headers, files={"image": ("p.jpg", probe, "image/jpeg")},
                      data={"subject": "alice", "purpose": "demo"})

    server = Server(ws, "--threads", str(args.threads), "--queue", "64")
    try:
        # One caller, in process and over HTTP taking turns, so that the machine's other load
        # falls on both alike.
        inproc: list[float] = []
        http1: list[float] = []
        with SafeFace.open(ws, PASSPHRASE) as sf, httpx.Client(timeout=120) as c:
            for _ in range(2):  # warm-up
                sf.verify(probe, "alice", "demo", alice)
                verify(c, 0)
            end = time.monotonic() + 2 * args.seconds
            while len(inproc) < args.requests and time.monotonic() < end:
                t = time.perf_counter()
                sf.verify(probe, "alice", "demo", alice)
                inproc.append(time.perf_counter() - t)
                t = time.perf_counter()
                r = verify(c, 0)
                http1.append(time.perf_counter() - t)
                if r.status_code != 200:
                    raise SystemExit(f"verify over HTTP answered {r.status_code}: {r.text[:200]}")
        base_p50 = statistics.median(inproc)
        p50_1 = statistics.median(http1)
        print(f"cores: {os.cpu_count()}; server: 1 worker x {args.threads} thread(s); 640x480 JPEG verify\n")
        print(f"{'caller':<24}{'clients':>8}{'req/s':>9}{'p50 ms':>9}{'p99 ms':>9}{'503':>6}{'vs in-process p50':>20}")
        print(f"{'SafeFace.verify':<24}{1:>8}{len(inproc) / sum(inproc):>9.2f}{base_p50 * 1e3:>9.1f}"
              f"{pct(inproc, 0.99) * 1e3:>9.1f}{0:>6}{'1.00x':>20}")
        print(f"{'HTTP /v1/verify':<24}{1:>8}{len(http1) / sum(http1):>9.2f}{p50_1 * 1e3:>9.1f}"
              f"{pct(http1, 0.99) * 1e3:>9.1f}{0:>6}{p50_1 / base_p50:>19.2f}x")
        for n in (4, 16):
            res = load(n, args.seconds, max(args.requests, 4 * n), verify)
            p50 = statistics.median(res["lat"]) if res["lat"] else float("nan")
            print(f"{'HTTP /v1/verify':<24}{n:>8}{res['rps']:>9.2f}{p50 * 1e3:>9.1f}{pct(res['lat'], 0.99) * 1e3:>9.1f}"
                  f"{res['codes'].get(503, 0):>6}{p50 / base_p50:>19.2f}x")
            if res["bad"]:
                print("   unexpected answers:", res["bad"][:3])
    finally:
        server.stop()
    print(f"\noverhead at 1 client (p50, interleaved): {(p50_1 / base_p50 - 1) * 100:+.1f}% (target <= +10%)")

    # Overload at 4x capacity: enrolments, each its own subject and consent.
    capacity = args.threads + args.threads
    tokens = [token(f"load{i}") for i in range(400)]

    def enroll(c: httpx.Client, i: int) -> httpx.Response:
        return c.post(server.url + "/v1/enroll", headers={"X-API-Key": key},
                      files={"image": ("e.jpg", enrol_img, "image/jpeg")},
                      data={"subject": f"load{i}", "purpose": "demo", "consent": tokens[i]})

    server = Server(ws, "--threads", str(args.threads), "--queue", str(args.threads))
    try:
        res = load(4 * capacity, args.seconds, 400, enroll)
    finally:
        server.stop()
    missing, entries = check_acked(ws, res["acked"])
    other5xx = sum(v for k, v in res["codes"].items() if k >= 500 and k != 503)
    print(f"\noverload: {4 * capacity} clients on capacity {capacity} ({args.threads} threads + queue {args.threads}) "
          f"for {res['wall']:.0f}s: answers {dict(sorted(res['codes'].items()))}, other 5xx {other5xx}, "
          f"503 without Retry-After {len(res['bad'])}; acknowledged {len(res['acked'])}, missing afterwards "
          f"{missing}; audit verify ok ({entries} entries)")

    # kill -9 in the middle of an enrolment load, then a restart.
    tokens = [token(f"kill{i}") for i in range(300)]

    def enroll_k(c: httpx.Client, i: int) -> httpx.Response:
        return c.post(server.url + "/v1/enroll", headers={"X-API-Key": key},
                      files={"image": ("e.jpg", enrol_img, "image/jpeg")},
                      data={"subject": f"kill{i}", "purpose": "demo", "consent": tokens[i]})

    server = Server(ws, "--threads", str(args.threads), "--queue", "16")
    stop = threading.Event()
    box: dict[str, Any] = {}
    th = threading.Thread(target=lambda: box.update(load(8, args.seconds * 4, 300, enroll_k, stop)))
    th.start()
    time.sleep(args.seconds)
    stop.set()  # no new requests; those in flight now die with the server
    server.stop(signal.SIGKILL)
    th.join()
    res = box
    server = Server(ws, "--threads", str(args.threads))
    try:
        r = httpx.get(server.url + "/v1/audit/verify", headers={"X-API-Key": key}, timeout=300)
    finally:
        server.stop()
    missing, entries = check_acked(ws, res["acked"])
    with SafeFace.open(ws, PASSPHRASE) as sf:
        stored = {r.pseudonym for r in sf.records()}
        acked_subjects = {f"kill{i}" for i, _ in res["acked"]}
        extra = sum(1 for i in range(300) if f"kill{i}" not in acked_subjects and sf.pseudonym(f"kill{i}") in stored)
    print(f"\nkill -9 mid-load: {len(res['acked'])} acknowledged before the kill, {res['errors']} in flight "
          f"(connection lost); after restart audit verify {r.status_code} ({entries} entries), acknowledged "
          f"missing {missing}, stored but never acknowledged {extra}")


if __name__ == "__main__":
    main()
