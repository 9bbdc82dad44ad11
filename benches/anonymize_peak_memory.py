"""The whole process's peak memory (VmHWM) while one photo near the 50-megapixel limit is
anonymized: a group photo (insightface's t1.jpg) scaled up to `--megapixels`, given as JPEG
bytes, in a fresh child process with the models loaded first. `--trace` also prints the
largest NumPy/Python allocations alive at tracemalloc's peak (slower).

Run: PYTHONPATH=$PWD SAFEFACE_DATASETS=../shared/datasets python3 benches/anonymize_peak_memory.py [--megapixels 49.9]
"""

from __future__ import annotations

import argparse
import io
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(os.environ.get("SAFEFACE_DATASETS", Path(__file__).resolve().parents[2] / "shared" / "datasets"))
PHOTO = ROOT / "insightface" / "t1.jpg"


def vm(field: str) -> float:
    """A /proc/self/status field in MiB (VmHWM: the peak resident set; VmRSS: now)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 1024.0
    raise KeyError(field)


def child(megapixels: float, trace: bool) -> None:
    import numpy as np
    from PIL import Image

    from safeface.anonymize import FaceFinder, anonymize_image

    with Image.open(PHOTO) as im:
        f = (megapixels * 1e6 / (im.width * im.height)) ** 0.5
        big = im.convert("RGB").resize((int(im.width * f), int(im.height * f)), Image.Resampling.BILINEAR)
    buf = io.BytesIO()
    big.save(buf, "JPEG", quality=90)
    data = buf.getvalue()
    del big
    finder = FaceFinder("hog")
    anonymize_image(np.full((64, 64, 3), 128, np.uint8), finder=finder)  # models loaded
    before = vm("VmHWM")
    if trace:
        import tracemalloc

        tracemalloc.start(25)
    t = time.perf_counter()
    out, report = anonymize_image(data, finder=finder)
    took = time.perf_counter() - t
    if trace:
        peak = tracemalloc.get_traced_memory()[1]
        print(f"tracemalloc peak {peak / 2**20:.0f} MiB")
    print(f"{out.shape[1]}x{out.shape[0]} ({out.shape[0] * out.shape[1] / 1e6:.1f} MP), {len(data)} bytes JPEG: "
          f"{took:.1f} s, {report.face_count} faces; VmHWM {before:.0f} MiB before the call, "
          f"{vm('VmHWM'):.0f} MiB after")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--megapixels", type=float, default=49.9)
    ap.add_argument("--trace", action="store_true")
    ap.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        child(args.megapixels, args.trace)
        return
    cmd = [sys.executable, __file__, "--child", "--megapixels", str(args.megapixels)] + (["--trace"] if args.trace else [])
    sys.exit(subprocess.run(cmd).returncode)


if __name__ == "__main__":
    main()
