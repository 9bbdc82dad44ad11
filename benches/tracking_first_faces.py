"""The first-faces step of tracking alone (tracking/first_faces.py: the whole-frame and rolling
photo-strength searches, and the places they keep), on the shared clips: the share of each
frame's pixels it covers, the frames it covers anything in, its CPU a frame, the whole-frame
searches it made, and the share of the small faces photo strength finds (at the video path's
bar) in every FACES_EVERY-th frame that it covered (each at least half covered). Its rolling and drawn searches are seeded,
so two checkouts compare on the same frames: run it in each.

Run: PYTHONPATH=$PWD SAFEFACE_DATASETS=../shared/datasets python3 benches/tracking_first_faces.py [--frames 300] [--seeds 1 2 3 4 5]
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

import numpy as np

from safeface.anonymize import FaceFinder
from safeface.anonymize.detect import DetectionEngine, Search, merge_boxes
from safeface.tracking.first_faces import PHOTO_STRENGTH, REACH, FirstFaces

ROOT = Path(os.environ.get("SAFEFACE_DATASETS", Path(__file__).resolve().parents[2] / "shared" / "datasets"))
CLIPS = {"vtest.avi": ROOT / "opencv" / "vtest.avi",
         "stage clip": ROOT / "face_recognition" / "examples" / "short_hamilton_clip.mp4"}
# The faces the step is judged on: those photo strength finds in every FACES_EVERY-th frame.
FACES_EVERY = 10
Box = tuple[float, float, float, float]


def frames_of(path: Path, frames: int) -> list[np.ndarray]:
    import av

    out = []
    with av.open(str(path)) as clip:
        for i, frame in enumerate(clip.decode(video=0)):
            if i >= frames:
                break
            out.append(frame.to_ndarray(format="rgb24"))
    return out


def small_faces(rgbs: list[np.ndarray]) -> dict[int, list[Box]]:
    """The faces under the places' reach photo strength finds at the video path's bar (the step's
    own searches'), in every FACES_EVERY-th frame."""
    finder = FaceFinder("hog", engine=DetectionEngine())
    out = {}
    for i in range(0, len(rgbs), FACES_EVERY):
        h, w = rgbs[i].shape[:2]
        small = REACH * Search().smallest_face(w, h)
        out[i] = merge_boxes([b for b in finder.search(rgbs[i], PHOTO_STRENGTH, merged=False) if b[2] - b[0] < small])
    return out


def measure(rgbs: list[np.ndarray], faces: dict[int, list[Box]], seed: int) -> dict[str, float]:
    first = FirstFaces(FaceFinder("hog", engine=DetectionEngine()), Search(), 0.2, "blur",
                       rng=np.random.default_rng(seed))
    # Each kind of search counted, and its CPU summed (where a change in cost goes).
    counts = {"whole": 0, "tiles": 0, "places": 0}
    spent = {"whole": 0.0, "tiles": 0.0, "places": 0.0}
    searched, places_searched = first._search_frame, first._search_places

    def counted(index: int, rgb: np.ndarray, area: Box) -> None:
        h, w = rgb.shape[:2]
        kind = "whole" if area == (0, 0, w, h) else "tiles"
        start = time.process_time()
        searched(index, rgb, area)
        counts[kind] += 1
        spent[kind] += time.process_time() - start

    def timed(index: int, rgb: np.ndarray) -> None:
        start = time.process_time()
        places_searched(index, rgb)
        counts["places"] += sum(p.searched == index for p in first._places)
        spent["places"] += time.process_time() - start

    first._search_frame = counted  # type: ignore[method-assign]
    first._search_places = timed  # type: ignore[method-assign]
    cpu, shares, seen, covered, places = 0.0, [], 0, 0, 0
    for i, rgb in enumerate(rgbs):
        start = time.process_time()
        out = first.cover(i, rgb.copy())
        cpu += time.process_time() - start
        changed = (out != rgb).any(axis=2)
        shares.append(float(changed.mean()))
        places = max(places, len(first._places))
        for x1, y1, x2, y2 in faces.get(i, []):
            seen += 1
            box = changed[max(0, int(y1)):int(y2), max(0, int(x1)):int(x2)]
            covered += int(box.size > 0 and box.mean() >= 0.5)
    n = max(len(shares), 1)
    return {"share": float(np.mean(shares)), "frames": sum(s > 0 for s in shares), "cpu": cpu / n,
            "whole": counts["whole"], "tiles": counts["tiles"], "faces": seen, "covered": covered,
            "places": places, "place searches": counts["places"],
            **{f"{k} s": v / n for k, v in spent.items()}}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--frames", type=int, default=300, help="frames read from each clip (default 300)")
    parser.add_argument("--faces", help="keep the faces judged on in FILE.<clip>.<frames>.json, and read them from it "
                        "if it is there (two checkouts judged on the same faces, found once)")
    parser.add_argument("--clips", nargs="+", default=list(CLIPS), help="which clips (default both)")
    parser.add_argument("--seeds", type=int, nargs="+", default=[1], help="the rng seeds to run (default 1)")
    args = parser.parse_args()
    for name, path in CLIPS.items():
        if name not in args.clips:
            continue
        if not path.is_file():
            print(f"{name}: {path} is absent; skipped")
            continue
        rgbs = frames_of(path, args.frames)
        kept = Path(f"{args.faces}.{path.stem}.{args.frames}.json") if args.faces else None
        if kept is not None and kept.is_file():
            faces = {int(k): [tuple(b) for b in v] for k, v in json.loads(kept.read_text()).items()}
        else:
            faces = small_faces(rgbs)
            if kept is not None:
                kept.write_text(json.dumps(faces))
        rows = []
        for seed in args.seeds:
            r = measure(rgbs, faces, seed)
            rows.append(r)
            print(f"{name} seed {seed}: {len(rgbs)} frames, covered share {100 * r['share']:.3f}%, frames with any "
                  f"cover {r['frames']}, CPU {r['cpu']:.3f} s a frame, whole-frame searches {r['whole']}, tiles "
                  f"{r['tiles']}, most places {r['places']}, place searches {r['place searches']}, small faces covered "
                  f"{r['covered']}/{r['faces']}; CPU a frame in whole-frame searches {r['whole s']:.4f} s, tiles "
                  f"{r['tiles s']:.4f} s, places {r['places s']:.4f} s",
                  flush=True)
        print(f"{name} mean: CPU {np.mean([r['cpu'] for r in rows]):.4f} s a frame, whole-frame searches "
              f"{np.mean([r['whole'] for r in rows]):.1f}, small faces covered "
              f"{sum(r['covered'] for r in rows)}/{sum(r['faces'] for r in rows)}", flush=True)


if __name__ == "__main__":
    main()
