"""What turning ONNX Runtime's CPU memory arena off costs and saves (ort_session.new_session).

Each run is a fresh process doing the same work: embed N LFW dev faces through the pipeline, then
M MMOD searches of a group photo. Runs alternate, arena off (safeface's setting) and on (ONNX
Runtime's default), so both see the same load. Prints, for each run, its CPU time (user + system)
and peak resident memory, then the medians and their ratios, arena off to on.

    python benches/onnx_arena.py --root $D/lfw-dev --photo $D/face_recognition/test_images/obama.jpg
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

# The child: the arena is put back by keeping SessionOptions from switching it off.
CHILD = """
import json, resource, sys, time
from pathlib import Path
arena, root, photo, faces, searches = sys.argv[1] == "on", Path(sys.argv[2]), sys.argv[3], int(sys.argv[4]), int(sys.argv[5])
if arena:
    import onnxruntime
    class _Options(onnxruntime.SessionOptions):
        def __setattr__(self, name, value):
            if name != "enable_cpu_mem_arena":
                super().__setattr__(name, value)
    onnxruntime.SessionOptions = _Options
from safeface.hazmat.vision import Pipeline, get_engine
from safeface.imageio import load_image
engine = get_engine("onnx")
pipe = Pipeline(engine)
images = [load_image(p) for p in sorted(root.glob("images/*/*.jpg"))[:faces]]
group = load_image(photo)
pipe.embed(images[0])
def cpu():
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime
c0 = cpu()
for image in images:
    pipe.embed(image)
c1 = cpu()
for _ in range(searches):
    engine.detect(group, "mmod", 1)
c2 = cpu()
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
print(json.dumps({"embed_cpu_s": c1 - c0, "mmod_cpu_s": c2 - c1, "peak_mib": peak}))
"""


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--root", type=Path, required=True, help="the LFW dev folder (holding images/)")
    ap.add_argument("--photo", type=Path, required=True, help="a photo for the MMOD searches")
    ap.add_argument("--faces", type=int, default=60)
    ap.add_argument("--searches", type=int, default=5)
    ap.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args()
    runs: dict[str, list[dict[str, float]]] = {"off": [], "on": []}
    for r in range(args.rounds):
        for arena in ("off", "on"):
            done = subprocess.run([sys.executable, "-c", CHILD, arena, str(args.root), str(args.photo),
                                   str(args.faces), str(args.searches)], capture_output=True, text=True,
                                  cwd=ROOT, check=True, env={**os.environ, "PYTHONPATH": str(ROOT)})
            run = json.loads(done.stdout.strip().splitlines()[-1])
            runs[arena].append(run)
            print(f"round {r + 1} arena {arena:3}: embed {run['embed_cpu_s']:.2f} s CPU, "
                  f"{args.searches} MMOD {run['mmod_cpu_s']:.2f} s CPU, peak {run['peak_mib']:.0f} MiB")
    for key, what in (("embed_cpu_s", f"embed {args.faces} faces, CPU s"),
                      ("mmod_cpu_s", f"{args.searches} MMOD searches, CPU s"), ("peak_mib", "peak MiB")):
        off, on = (statistics.median(x[key] for x in runs[a]) for a in ("off", "on"))
        print(f"{what:28} arena off {off:8.2f}  on {on:8.2f}  off/on {off / on:.2f}")


if __name__ == "__main__":
    main()
