"""The cost of verify calls on a large image: a flat (faceless) 4-megapixel JPEG, the worst
case for the detector cascade (every step runs and finds nothing). Prints wall time and the
process's peak resident memory before and after the calls. `--calls N` runs N at once, each on
its own handle in its own thread (as the service's pool threads do); `--png` sends a PNG (a
flat one compresses far more than a JPEG: 50 megapixels in about 200 KB).

    python benches/bounded_input.py [--megapixels 4] [--engine onnx|dlib] [--calls 1] [--png]
"""

from __future__ import annotations

import argparse
import io
import json
import resource
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
from PIL import Image

from safeface.errors import ImageError
from safeface.policy.issuer import issue_consent
from safeface.policy.deployment import Deployment
from safeface.sdk import SafeFace
from safeface.workspace.init import init_workspace
from safeface.workspace.keys import read_signing_key

PASS = "bench passphrase, not secret"


def flat_image(megapixels: float, fmt: str = "JPEG") -> bytes:
    w = int(round((megapixels * 1e6 * 4 / 3) ** 0.5))
    h = int(round(w * 3 / 4))
    buf = io.BytesIO()
    Image.fromarray(np.full((h, w, 3), 128, np.uint8)).save(buf, fmt, **({"quality": 90} if fmt == "JPEG" else {}))
    return buf.getvalue()


def flat_image_bytes(megapixels: float, fmt: str) -> bytes:
    """flat_image made in a child process: making it here would raise this process's peak
    memory (the baseline) by the pixels' copies before anything is measured."""
    code = f"import sys; sys.path.insert(0, {str(Path(__file__).parent)!r}); import bounded_input as b; " \
           f"sys.stdout.buffer.write(b.flat_image({megapixels!r}, {fmt!r}))"
    return subprocess.run([sys.executable, "-c", code], capture_output=True, check=True).stdout


def peak_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0  # Linux: KiB


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--megapixels", type=float, default=4.0)
    ap.add_argument("--engine", default="onnx")
    ap.add_argument("--calls", type=int, default=1, help="calls in flight at once, one handle and thread each")
    ap.add_argument("--png", action="store_true", help="a flat PNG instead of a JPEG")
    args = ap.parse_args()
    fmt = "PNG" if args.png else "JPEG"
    with tempfile.TemporaryDirectory() as tmp:
        paths = init_workspace(Path(tmp) / "ws", demo=True, passphrase=PASS)
        raw = json.loads(paths.config.read_text())
        raw["matching"]["engine"] = args.engine
        paths.config.write_text(json.dumps(raw))
        dep = Deployment.load(paths.config)
        token, _ = issue_consent(read_signing_key(paths.demo_issuer), dep, "alice", ["demo"])
        data = flat_image_bytes(args.megapixels, fmt)
        handles = [SafeFace.open(paths.root, PASS) for _ in range(args.calls)]
        try:
            small = io.BytesIO()
            Image.fromarray(np.full((64, 64, 3), 128, np.uint8)).save(small, "PNG")
            for sf in handles:  # load the models outside the measurement
                try:
                    sf.verify(small.getvalue(), "alice", "demo", token)
                except ImageError:
                    pass
            outcomes: list[str] = []

            def call(sf: SafeFace) -> None:
                try:
                    sf.verify(data, "alice", "demo", token)
                    outcomes.append("verified")
                except ImageError as exc:
                    outcomes.append(f"ImageError: {exc}")

            before = peak_mib()
            t = time.perf_counter()
            threads = [threading.Thread(target=call, args=(sf,)) for sf in handles]
            for th in threads:
                th.start()
            for th in threads:
                th.join()
            took = time.perf_counter() - t
        finally:
            for sf in handles:
                sf.close()
        after = peak_mib()
        print(f"{args.megapixels:g} MP flat {fmt} ({len(data)} bytes), engine {args.engine}, {args.calls} call(s) at "
              f"once: {took:.2f} s; peak RSS {before:.0f} MiB before, {after:.0f} MiB after (+{after - before:.0f} "
              f"MiB, {(after - before) / args.calls:.0f} a call); {sorted(set(outcomes))}")

if __name__ == "__main__":
    sys.exit(main())
