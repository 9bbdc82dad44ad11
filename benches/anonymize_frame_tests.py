"""What the video search's tests for crafted frames cost (anonymize/alternating.py: lines inverted
every other one or two on, two off; line_polarity.py: lines inverted, or moved in level or spread, by a key; channels.py: a
face in one channel under noise in the others; impulses.py: heavy impulse noise): the video search (VideoOptions().search, the check's own
search too) of sampled frames of real clips, with the tests and without them, in one run, and
how many frames each test flagged (each flagged frame takes one to two more HOG searches).
Times are CPU seconds of this process (the machine may be shared).

Run: PYTHONPATH=$PWD SAFEFACE_DATASETS=../shared/datasets python3 benches/anonymize_frame_tests.py [--every 5]
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path
from typing import Any

import av
import numpy as np

import safeface.anonymize.detect as detect
from safeface.anonymize import FaceFinder, VideoOptions
from safeface.anonymize.alternating import line_periods
from safeface.anonymize.channels import lone_channel_regions
from safeface.anonymize.impulses import has_impulses
from safeface.anonymize.line_polarity import has_keyed_lines, has_shifted_lines

ROOT = Path(os.environ.get("SAFEFACE_DATASETS", Path(__file__).resolve().parents[2] / "shared" / "datasets"))
CLIPS = [ROOT / "opencv" / "vtest.avi", ROOT / "face_recognition" / "examples" / "short_hamilton_clip.mp4"]


def frames(path: Path, every: int) -> list[np.ndarray]:
    with av.open(str(path)) as c:
        return [f.to_ndarray(format="rgb24") for i, f in enumerate(c.decode(video=0)) if i % every == 0]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--every", type=int, default=5, help="search every Nth frame")
    args = ap.parse_args()
    finder = FaceFinder("hog")
    search = VideoOptions(progress=False).search
    real = {name: getattr(detect, name) for name in ("line_periods", "lone_channel_regions", "has_impulses",
                                                         "keyed_views")}
    off: dict[str, Any] = {"line_periods": lambda image: (0, 0), "lone_channel_regions": lambda image: [],
                           "has_impulses": lambda image: False, "keyed_views": lambda image: []}
    rows = []
    for path in CLIPS:
        clip = frames(path, args.every)
        finder.search(clip[0], search)  # models loaded
        flagged = {"lines": 0, "keyed lines": 0, "shifted lines": 0, "channels": 0, "impulses": 0}
        test_s = 0.0
        area = 0.0  # of the searched copy, searched again in one channel, summed over frames
        for rgb in clip:
            small = detect.scaled(rgb, search.scale(rgb.shape[1], rgb.shape[0]))
            t = time.process_time()
            flagged["lines"] += any(line_periods(rgb))
            regions = lone_channel_regions(small)
            flagged["channels"] += bool(regions)
            area += sum((x1 - x0) * (y1 - y0) for _, (x0, y0, x1, y1) in regions) / (small.shape[0] * small.shape[1])
            flagged["impulses"] += has_impulses(rgb)
            flagged["keyed lines"] += has_keyed_lines(rgb, 0) or has_keyed_lines(rgb, 1)
            flagged["shifted lines"] += has_shifted_lines(rgb, 0) or has_shifted_lines(rgb, 1)
            test_s += time.process_time() - t
        timed: dict[str, float] = {}
        found: dict[str, int] = {}
        for setting in ("with", "without", "with again", "without again"):
            for name, fn in (real if setting.startswith("with ") or setting == "with" else off).items():
                setattr(detect, name, fn)
            t = time.process_time()
            found[setting] = sum(len(finder.search(rgb, search)) for rgb in clip)
            timed[setting] = time.process_time() - t
        for name, fn in real.items():
            setattr(detect, name, fn)
        with_s = timed["with"] + timed["with again"]
        without_s = timed["without"] + timed["without again"]
        rows.append({"clip": path.name, "size": list(clip[0].shape[:2]), "frames_searched": len(clip),
                     "flagged": flagged, "channel_area_per_frame": round(area / len(clip), 3), "tests_ms_per_frame": round(1000 * test_s / len(clip), 2),
                     "search_ms_per_frame_with": round(1000 * with_s / 2 / len(clip), 1),
                     "search_ms_per_frame_without": round(1000 * without_s / 2 / len(clip), 1),
                     "ratio": round(with_s / without_s, 3),
                     "boxes_with": found["with"], "boxes_without": found["without"]})
    print(json.dumps(rows, indent=2))


if __name__ == "__main__":
    main()
