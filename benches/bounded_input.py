"""The cost of one verify call on a large image: a flat (faceless) 4-megapixel JPEG, the worst
case for the detector cascade (every step runs and finds nothing). Prints wall time and the
process's peak resident memory before and after the call.

    python benches/bounded_input.py [--megapixels 4] [--engine onnx|dlib]
"""

from __future__ import annotations

import argparse
import io
import json
import resource
import sys
import tempfile
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


def flat_jpeg(megapixels: float) -> bytes:
    w = int(round((megapixels * 1e6 * 4 / 3) ** 0.5))
    h = int(round(w * 3 / 4))
    buf = io.BytesIO()
    Image.fromarray(np.full((h, w, 3), 128, np.uint8)).save(buf, "JPEG", quality=90)
    return buf.getvalue()


def peak_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0  # Linux: KiB


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--megapixels", type=float, default=4.0)
    ap.add_argument("--engine", default="onnx")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        paths = init_workspace(Path(tmp) / "ws", demo=True, passphrase=PASS)
        raw = json.loads(paths.config.read_text())
        raw["matching"]["engine"] = args.engine
        paths.config.write_text(json.dumps(raw))
        dep = Deployment.load(paths.config)
        token, _ = issue_consent(read_signing_key(paths.demo_issuer), dep, "alice", ["demo"])
        data = flat_jpeg(args.megapixels)
        with SafeFace.open(paths.root, PASS) as sf:
            small = io.BytesIO()
            Image.fromarray(np.full((64, 64, 3), 128, np.uint8)).save(small, "PNG")
            try:  # load the models outside the measurement
                sf.verify(small.getvalue(), "alice", "demo", token)
            except ImageError:
                pass
            before = peak_mib()
            t = time.perf_counter()
            try:
                sf.verify(data, "alice", "demo", token)
                outcome = "verified"
            except ImageError as exc:
                outcome = f"ImageError: {exc}"
            took = time.perf_counter() - t
        print(f"{args.megapixels:g} MP flat JPEG ({len(data)} bytes), engine {args.engine}: {took:.2f} s; "
              f"peak RSS {before:.0f} MiB before the call, {peak_mib():.0f} MiB after; {outcome}")


if __name__ == "__main__":
    sys.exit(main())
