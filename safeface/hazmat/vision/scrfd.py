"""SCRFD face detector, model-independent parts in NumPy: letterbox input, anchor-free decoding
of the per-stride score / box-distance / keypoint-distance maps, and non-maximum suppression."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np
from PIL import Image

from ...errors import ModelError

INPUT_MEAN = 127.5
INPUT_STD = 128.0


@dataclass(frozen=True)
class Letterbox:
    """The detector input and how it maps back: original = input / scale."""

    blob: np.ndarray  # (1, 3, H, W) float32
    scale: float


def letterbox(image: np.ndarray, input_size: tuple[int, int]) -> Letterbox:
    """Resize an RGB image to fit (width, height) keeping its aspect ratio, top-left aligned on
    black, normalized as SCRFD was trained: (x - 127.5) / 128, RGB, NCHW."""
    in_w, in_h = input_size
    h, w = image.shape[:2]
    if float(h) / w > float(in_h) / in_w:
        new_h = in_h
        new_w = max(1, int(new_h * w / h))
    else:
        new_w = in_w
        new_h = max(1, int(new_w * h / w))
    scale = new_h / h
    resized = np.asarray(Image.fromarray(image).resize((new_w, new_h), Image.Resampling.BILINEAR))
    canvas = np.zeros((in_h, in_w, 3), dtype=np.float32)
    canvas[:new_h, :new_w] = resized
    blob = ((canvas - INPUT_MEAN) / INPUT_STD).transpose(2, 0, 1)[None]
    return Letterbox(blob=np.ascontiguousarray(blob, dtype=np.float32), scale=scale)


@dataclass(frozen=True)
class Detections:
    boxes: np.ndarray  # (N, 4) x1, y1, x2, y2 in input pixels
    scores: np.ndarray  # (N,)
    kps: np.ndarray  # (N, 5, 2)


def _anchor_centers(height: int, width: int, stride: int, anchors: int) -> np.ndarray:
    ys, xs = np.mgrid[:height, :width]
    centers = np.stack([xs, ys], axis=-1).reshape(-1, 2).astype(np.float32) * stride
    return np.repeat(centers, anchors, axis=0) if anchors > 1 else centers


def _squeeze_batch(t: np.ndarray) -> np.ndarray:
    return t[0] if t.ndim == 3 else t


def decode(outputs: Sequence[np.ndarray], input_size: tuple[int, int], threshold: float) -> Detections:
    """Decode SCRFD's outputs. They come as score maps (N, 1), box distances (N, 4) and keypoint
    distances (N, 10), one of each per stride; this groups them by their last dimension and
    orders each group by size (largest map = stride 8), so output names and order do not matter."""
    in_w, in_h = input_size
    outs = [_squeeze_batch(np.asarray(o)) for o in outputs]
    groups: dict[int, list[np.ndarray]] = {1: [], 4: [], 10: []}
    for o in outs:
        if o.ndim != 2 or o.shape[1] not in groups:
            raise ModelError(f"the detector gave an output of shape {o.shape}; an SCRFD model gives (N, 1), (N, 4), (N, 10).")
        groups[o.shape[1]].append(o)
    scores_l, boxes_l, kps_l = (sorted(groups[k], key=lambda a: -a.shape[0]) for k in (1, 4, 10))
    if not scores_l or len(scores_l) != len(boxes_l):
        raise ModelError("the detector's outputs are not SCRFD's score and box maps.")
    if len(kps_l) != len(scores_l):
        raise ModelError("the detector gives no five-point landmarks (an SCRFD model *_kps is needed for alignment).")
    strides = [8, 16, 32] if len(scores_l) == 3 else [8, 16, 32, 64, 128]
    if len(scores_l) not in (3, 5):
        raise ModelError(f"the detector has {len(scores_l)} score maps; SCRFD has 3 or 5.")
    cells8 = (in_h // strides[0]) * (in_w // strides[0])
    anchors = scores_l[0].shape[0] // cells8 if cells8 else 0
    if anchors < 1 or anchors * cells8 != scores_l[0].shape[0]:
        raise ModelError(
            f"the detector's first score map has {scores_l[0].shape[0]} rows, which does not fit a "
            f"{in_w}x{in_h} input at stride 8."
        )
    all_boxes, all_scores, all_kps = [], [], []
    for s, sc, bb, kp in zip(strides, scores_l, boxes_l, kps_l):
        hh, ww = in_h // s, in_w // s
        if sc.shape[0] != hh * ww * anchors or bb.shape[0] != sc.shape[0] or kp.shape[0] != sc.shape[0]:
            raise ModelError(f"the detector's stride-{s} maps have inconsistent sizes.")
        centers = _anchor_centers(hh, ww, s, anchors)
        keep = np.where(sc[:, 0] >= threshold)[0]
        if keep.size == 0:
            continue
        c = centers[keep]
        d = bb[keep] * s
        all_boxes.append(np.stack([c[:, 0] - d[:, 0], c[:, 1] - d[:, 1], c[:, 0] + d[:, 2], c[:, 1] + d[:, 3]], axis=1))
        all_scores.append(sc[keep, 0])
        k = kp[keep].reshape(-1, 5, 2) * s
        all_kps.append(k + c[:, None, :])
    if not all_scores:
        return Detections(np.zeros((0, 4), np.float32), np.zeros((0,), np.float32), np.zeros((0, 5, 2), np.float32))
    return Detections(
        boxes=np.concatenate(all_boxes).astype(np.float32),
        scores=np.concatenate(all_scores).astype(np.float32),
        kps=np.concatenate(all_kps).astype(np.float32),
    )


def nms(boxes: np.ndarray, scores: np.ndarray, iou_threshold: float) -> np.ndarray:
    """Indices kept by greedy non-maximum suppression, best score first. Areas use the +1 pixel
    convention of the reference SCRFD code so results match it."""
    x1, y1, x2, y2 = boxes[:, 0], boxes[:, 1], boxes[:, 2], boxes[:, 3]
    areas = (x2 - x1 + 1) * (y2 - y1 + 1)
    order = np.argsort(-scores, kind="stable")
    keep = []
    while order.size > 0:
        i = order[0]
        keep.append(i)
        rest = order[1:]
        w = np.maximum(0.0, np.minimum(x2[i], x2[rest]) - np.maximum(x1[i], x1[rest]) + 1)
        h = np.maximum(0.0, np.minimum(y2[i], y2[rest]) - np.maximum(y1[i], y1[rest]) + 1)
        inter = w * h
        iou = inter / (areas[i] + areas[rest] - inter)
        order = rest[iou <= iou_threshold]
    return np.array(keep, dtype=np.int64)
