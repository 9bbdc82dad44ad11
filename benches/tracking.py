"""Tracking benchmark on the OpenCV pedestrian clip (vtest.avi, 768x576, 10 fps).

1. Speed: a segment cut from the clip, tracked with faces covered (safeface.tracking), against a
   plain decode+encode of the same file measured in the same run; frames/s and the ratio to real
   time. Run it on two cores (`taskset -c 0,1`) for the issue's figure.
2. No face left: the anonymizer's own no-face check (anonymize.detectable_frames, the video
   search's definition of a detectable face, at dlib's bar) on every output frame. With
   --photo-check, also HOG as photos are searched (full size, upsample 1 and 2: faces from about
   20 px, which the video search does not claim to reach), reported apart.
3. With --annotation (a JSON of hand-drawn boxes and identities on sampled frames, see
   tests/data/README.md): MOTA, IDF1, ID switches (motmetrics, IoU >= 0.5), and the top-3 hit
   rate of searching for each described person.

Run: PYTHONPATH=$PWD python3 benches/tracking.py [--start 100] [--seconds 30] [--annotation FILE]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import av

from safeface.anonymize import FaceFinder, VideoOptions, detectable_frames
from safeface.anonymize.detect import DetectionEngine, iou
from safeface.tracking import TrackOptions, TrackResult, track_video
from tests.video_fixtures import cut

DATASETS = Path(os.environ.get("SAFEFACE_DATASETS", Path(__file__).resolve().parents[1].parent / "shared" / "datasets"))
VTEST = DATASETS / "opencv" / "vtest.avi"
MIN_HEIGHT = 40


def plain_transcode(src: Path, dst: Path) -> int:
    with av.open(str(src)) as inp, av.open(str(dst), "w") as out:
        vin = inp.streams.video[0]
        vs = out.add_stream("libx264", rate=vin.average_rate, options={"preset": "veryfast", "crf": "20"})
        vs.width, vs.height, vs.pix_fmt = vin.codec_context.width, vin.codec_context.height, "yuv420p"
        n = 0
        for n, f in enumerate(inp.decode(vin), 1):
            g = av.VideoFrame.from_ndarray(f.to_ndarray(format="rgb24"), format="rgb24")
            g.pts, g.time_base = n - 1, 1 / vin.average_rate
            for p in vs.encode(g):
                out.mux(p)
        for p in vs.encode(None):
            out.mux(p)
    return n


CPU: dict[str, float] = {}


def timed(fn: Any, name: str = "") -> tuple[Any, float]:
    """Wall time; CPU time (all threads) goes to CPU[name]: on a shared machine wall time
    measures the other tenants too, CPU time much less."""
    t, c = time.perf_counter(), time.process_time()
    out = fn()
    CPU[name] = time.process_time() - c
    return out, time.perf_counter() - t


def photo_check(path: Path) -> list[tuple[int, list[tuple[int, ...]]]]:
    """Frames in which HOG at photo strength (full size, upsample 1 and 2) finds a face: boxes."""
    finder = FaceFinder("hog", engine=DetectionEngine())
    hits = []
    with av.open(str(path)) as c:
        for i, f in enumerate(c.decode(video=0)):
            boxes = finder.find(f.to_ndarray(format="rgb24"), upsample=[1, 2])
            if boxes:
                hits.append((i, [tuple(int(round(v)) for v in b) for b in boxes]))
    return hits


def mot(result: TrackResult, ann: dict[str, Any], start: int) -> dict[str, float]:
    import motmetrics as mm

    acc = mm.MOTAccumulator(auto_id=True)
    for key, people in sorted(ann["frames"].items(), key=lambda kv: int(kv[0])):
        frame = int(key) - start
        gt_ids = [p["id"] for p in people]
        gt = [p["box"] for p in people]
        hyp = [(p.track_id, p.box_at(frame)) for p in result.people]
        # People under MIN_HEIGHT px are not annotated (tests/data/README.md); neither side counts them.
        hyp = [(i, b) for i, b in hyp if b is not None and b[3] - b[1] >= MIN_HEIGHT]
        dist = [[1 - iou(tuple(g), h) if iou(tuple(g), h) >= 0.5 else float("nan") for _, h in hyp] for g in gt]
        # motmetrics wants numbers for ids: the annotation's "P7" is 7, a track's hex id its value.
        acc.update([int(g.lstrip("P")) for g in gt_ids], [int(i, 16) for i, _ in hyp], dist)
    mh = mm.metrics.create()
    s = mh.compute(acc, metrics=["mota", "idf1", "num_switches", "precision", "recall", "num_objects"], name="x")
    return {k: float(s[k].iloc[0]) for k in s.columns}


def search_rate(result: TrackResult, ann: dict[str, Any], start: int) -> tuple[int, int, list[str]]:
    """A described person is found when a top-3 track covers at least a third of their boxes."""
    hits, lines = 0, []
    described = ann.get("descriptions", {})
    for pid, text in described.items():
        boxes = [(int(k) - start, p["box"]) for k, ps in ann["frames"].items() for p in ps if p["id"] == pid]
        if not boxes:  # not in view in the frames cut
            continue
        ok = set()
        for p in result.people:
            covered = sum(1 for f, b in boxes if (h := p.box_at(f)) is not None and iou(tuple(b), h) >= 0.5)
            if boxes and covered >= len(boxes) / 3:
                ok.add(p.track_id)
        top = [h.track_id for h in result.search(text, 3)]
        found = bool(ok & set(top))
        hits += found
        lines.append(f"  {'hit ' if found else 'miss'} {pid:>4}: {text}")
    return hits, len(lines), lines


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--start", type=int, default=100, help="first frame of the segment")
    ap.add_argument("--seconds", type=float, default=30.0)
    ap.add_argument("--annotation", type=Path, default=None)
    ap.add_argument("--detector", default="motion")
    ap.add_argument("--photo-check", action="store_true", help="also search the output as photos are searched")
    a = ap.parse_args()
    if not VTEST.is_file():
        print(f"{VTEST} is absent; set SAFEFACE_DATASETS", file=sys.stderr)
        return 2
    count = int(round(a.seconds * 10))
    with tempfile.TemporaryDirectory() as tmp:
        seg = cut(VTEST, Path(tmp) / "seg.mp4", a.start, count)
        n, t_plain = timed(lambda: plain_transcode(seg, Path(tmp) / "plain.mp4"), "plain")
        out = Path(tmp) / "tracked.mp4"
        _, t_fast = timed(lambda: track_video(seg, Path(tmp) / "fast.mp4",
                                              TrackOptions(detector=a.detector, video=VideoOptions.fast(progress=False))), "fast")
        opts = TrackOptions(detector=a.detector)
        result, t_track = timed(lambda: track_video(seg, out, opts), "track")
        print(f"segment: frames {a.start}-{a.start + count - 1} of vtest.avi, 768x576 @10 fps, {os.cpu_count()} cores")
        print(f"{'plain decode+encode':34s} {n / t_plain:7.1f} fps  {n / t_plain / 10:5.2f}x real time")
        print(f"{'track, faces covered (' + a.detector + ')':34s} {n / t_track:7.1f} fps  {n / t_track / 10:5.2f}x real time"
              f"  ({t_track / t_plain:.2f}x the plain time)")
        print(f"{'track --fast face search':34s} {n / t_fast:7.1f} fps  {n / t_fast / 10:5.2f}x real time"
              f"  ({t_fast / t_plain:.2f}x the plain time)")
        for name, label in (("plain", "plain decode+encode"), ("track", "track"), ("fast", "track --fast")):
            cpu = CPU[name] / n
            print(f"{label:34s} {1000 * cpu:7.1f} CPU-ms/frame: {2 / cpu:6.1f} fps on 2 busy cores, "
                  f"{1 / cpu:6.1f} on one")
        print(f"load average: {open('/proc/loadavg').read().split()[0]}")
        print(f"tracks: {len(result.people)}; faces covered: {result.report.face_count}")
        search = opts.video.search
        faces = detectable_frames(out, search)
        frames = result.report.frames
        clean = frames - len(faces)
        print(f"no-face check (HOG at {search.max_side} px, upsample {search.upsample}: faces from about "
              f"{search.smallest_face(768, 576):.0f} px): {clean}/{frames} output frames with no detectable face "
              f"({100 * clean / frames:.1f}%)" + (f"; faces in frames {faces}" if faces else ""))
        if a.photo_check:
            hits = photo_check(out)
            print(f"photo-strength check (full size, upsample 1 and 2: faces from about 20 px): "
                  f"{frames - len(hits)}/{frames} frames with no face found" + "".join(f"; frame {i}: {b}" for i, b in hits))
        if a.annotation is not None:
            ann = json.loads(a.annotation.read_text())
            # Only the annotated frames inside the segment cut count (a shorter run scores its part).
            ann["frames"] = {k: v for k, v in ann["frames"].items() if a.start <= int(k) < a.start + count}
            m = mot(result, ann, a.start)
            print("MOT: " + ", ".join(f"{k} {v:.3f}" if isinstance(v, float) and v < 10 else f"{k} {v:.0f}"
                                      for k, v in m.items()))
            hits, total, lines = search_rate(result, ann, a.start)
            print(f"search top-3: {hits}/{total}")
            print("\n".join(lines))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
