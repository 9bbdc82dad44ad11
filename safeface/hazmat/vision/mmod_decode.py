"""dlib's MMOD detector around the convolutional part: the tiled image pyramid the network reads,
and the sliding-window decoding with non-maximum suppression of its scores, in NumPy.

Follows dlib (dnn/input.h input_rgb_image_pyramid, image_transforms/image_pyramid.h
compute_tiled_image_pyramid_details and tiled_pyramid_to_image with pyramid_down<6>, dnn/loss.h
loss_mmod_::to_label) so that boxes match dlib's cnn_face_detection_model_v1."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence

import numpy as np

from ...errors import ModelError
from ...modelstore.dlib_format import Conv, MmodLoss, Network, Pool

Rect = tuple[int, int, int, int]  # dlib rectangle: left, top, right, bottom (inclusive)

PYRAMID_N = 6  # dlib's face detector uses pyramid_down<6>
MIN_LEVEL_HEIGHT = 5


@dataclass(frozen=True)
class Detection:
    rect: Rect
    score: float


def _lround(v: float) -> int:
    """C's lround: halves away from zero."""
    return int(math.floor(abs(v) + 0.5)) * (1 if v >= 0 else -1)


# -- the tiled pyramid ----------------------------------------------------------------------------

def tiled_pyramid_layout(nr: int, nc: int, padding: int, outer_padding: int,
                         n: int = PYRAMID_N) -> tuple[list[Rect], int, int]:
    """Where each pyramid level sits in the tiled image, and that image's (rows, cols)."""
    if nr * nc == 0:
        return [], 0, 0
    rate = (n - 1.0) / n
    sizes = [(nc, nr)]  # (width, height)
    while True:
        nr = int(math.floor(rate * nr))
        nc = int(math.floor(rate * nc))
        if nr * nc == 0 or nr < MIN_LEVEL_HEIGHT:
            break
        sizes.append((nc, nr))

    total_height = sum(h + padding for _, h in sizes) - padding * 2
    height = 0
    prev_width = 0
    w0, h0 = sizes[0]
    for w, h in sizes:
        if w <= w0 - prev_width - padding and (height - h0) * 2 >= (total_height - h0):
            break
        height += h + padding
        prev_width = w
    height -= padding
    width = w0
    out_nr = height + outer_padding * 2
    out_nc = width + outer_padding * 2

    rects: list[Rect] = []
    y = outer_padding
    i = 0
    while y < height + outer_padding and i < len(sizes):
        w, h = sizes[i]
        rects.append((outer_padding, y, outer_padding + w - 1, y + h - 1))
        y += h + padding
        i += 1
    y -= padding
    while i < len(sizes):
        w, h = sizes[i]
        p1x, p1y = outer_padding + width - 1, y - 1
        rect = (p1x - (w - 1), p1y - (h - 1), p1x, p1y)
        if not _is_empty(_intersect(rects[0], rect)):
            break
        rects.append(rect)
        y -= h + padding
        i += 1
    return rects, out_nr, out_nc


def resize_bilinear(src: np.ndarray, rows: int, cols: int) -> np.ndarray:
    """dlib's resize_image (bilinear, corner-aligned) over (C, h, w) float32 planes."""
    c, h, w = src.shape
    ys = np.arange(rows, dtype=np.float64) * ((h - 1) / max(rows - 1, 1))
    xs = np.arange(cols, dtype=np.float64) * ((w - 1) / max(cols - 1, 1))
    top = np.floor(ys).astype(np.intp)
    left = np.floor(xs).astype(np.intp)
    bottom = np.minimum(top + 1, h - 1)
    right = np.minimum(left + 1, w - 1)
    ty = (ys - top).astype(np.float32)[None, :, None]
    tx = (xs - left).astype(np.float32)[None, None, :]
    one = np.float32(1)
    # separable: rows first, then columns (the same weights as dlib's four-corner formula)
    tmp = (one - ty) * src[:, top, :] + ty * src[:, bottom, :]
    out: np.ndarray = ((one - tx) * tmp[:, :, left] + tx * tmp[:, :, right]).astype(np.float32, copy=False)
    return out


def build_pyramid(image: np.ndarray, net: Network) -> tuple[np.ndarray, list[Rect]]:
    """The (1, 3, H, W) float32 tensor dlib's input_rgb_image_pyramid makes from an RGB image."""
    inp = net.input
    nr, nc = image.shape[:2]
    rects, out_nr, out_nc = tiled_pyramid_layout(nr, nc, inp.pyramid_padding, inp.pyramid_outer_padding)
    data = np.zeros((3, out_nr, out_nc), dtype=np.float32)
    if not rects:
        return data[None], rects
    mean = np.asarray(inp.mean_rgb, dtype=np.float32).reshape(3, 1, 1)
    l0, t0, r0, b0 = rects[0]
    data[:, t0:b0 + 1, l0:r0 + 1] = (image.transpose(2, 0, 1).astype(np.float32) - mean) / np.float32(256.0)
    for prev, cur in zip(rects, rects[1:]):
        src = data[:, prev[1]:prev[3] + 1, prev[0]:prev[2] + 1]
        data[:, cur[1]:cur[3] + 1, cur[0]:cur[2] + 1] = resize_bilinear(src, cur[3] - cur[1] + 1, cur[2] - cur[0] + 1)
    return data[None], rects


# -- decoding ------------------------------------------------------------------------------------------

def output_to_input_map(net: Network) -> tuple[float, float, float, float]:
    """(ax, bx, ay, by): an output cell (c, r) sits at input (ax*c + bx, ay*r + by), composed as dlib's
    layers' map_output_to_input."""
    ax, bx, ay, by = 1.0, 0.0, 1.0, 0.0
    for layer in reversed(net.layers):
        if isinstance(layer, Conv):
            kh, kw = layer.kernel
            sy, sx = layer.stride
            py, px = layer.padding
        elif isinstance(layer, Pool) and layer.window != (0, 0):
            kh, kw = layer.window
            sy, sx = layer.stride
            py, px = layer.padding
        else:
            continue
        # p_in = p_out * stride - padding + k // 2, applied from the output layer down
        ax, bx = ax * sx, bx * sx - px + kw // 2
        ay, by = ay * sy, by * sy - py + kh // 2
    return ax, bx, ay, by


def _is_empty(r: Rect) -> bool:
    return r[0] > r[2] or r[1] > r[3]


def _intersect(a: Rect, b: Rect) -> Rect:
    return (max(a[0], b[0]), max(a[1], b[1]), min(a[2], b[2]), min(a[3], b[3]))


def _area(r: Rect) -> int:
    return 0 if _is_empty(r) else (r[2] - r[0] + 1) * (r[3] - r[1] + 1)


def _overlaps(a: Rect, b: Rect, iou: float, covered: float) -> bool:
    """dlib's test_box_overlap on rectangles (its 'outer' is the bounding box of both)."""
    inner = _area(_intersect(a, b))
    if inner == 0:
        return False
    outer = _area((min(a[0], b[0]), min(a[1], b[1]), max(a[2], b[2]), max(a[3], b[3])))
    return inner / outer > iou or inner / _area(a) > covered or inner / _area(b) > covered


def _nearest_rect(rects: Sequence[Rect], x: int, y: int) -> int:
    best, best_d = 0, math.inf
    for i, (l, t, r, b) in enumerate(rects):
        if l <= x <= r and t <= y <= b:
            return i
        nx, ny = min(max(x, l), r), min(max(y, t), b)
        d = math.hypot(nx - x, ny - y)
        if d < best_d:
            best, best_d = i, d
    return best


def _point_up(v: float, levels: int, n: int = PYRAMID_N) -> float:
    ratio = n / (n - 1.0)
    for _ in range(levels):
        v = v * ratio + 0.3
    return v


# The windows over the bar decoded at most (the best by score; ties at the last score kept).
MAX_CANDIDATES = 4096


def decode(scores: np.ndarray, rects: Sequence[Rect], net: Network, threshold: float = 0.0) -> list[Detection]:
    """Boxes in the pyramid's base image from (windows, h, w) scores: every cell above the threshold
    is a window centred on the cell's input position, mapped back through the pyramid, then dlib's
    greedy non-maximum suppression in descending score order."""
    loss = net.loss
    if not isinstance(loss, MmodLoss):
        raise ModelError(f"MMOD decoding needs a loss_mmod network, not one ending in {type(loss).__name__}.")
    if not rects:
        return []
    ax, bx, ay, by = output_to_input_map(net)
    cands: list[tuple[float, Rect]] = []
    above = [np.nonzero(scores[k] > threshold) for k in range(len(loss.windows))]
    total = sum(len(rr) for rr, _ in above)
    if total > MAX_CANDIDATES:
        # Only the best: a flat strip of a million rows had millions of windows over a weak bar,
        # and their suppression, one by one in Python, ran for minutes.
        bar = np.partition(np.concatenate([scores[k][rr, cc] for k, (rr, cc) in enumerate(above)]),
                           total - MAX_CANDIDATES)[total - MAX_CANDIDATES]
        above = [np.nonzero(scores[k] >= bar) for k in range(len(loss.windows))]  # bar is over the threshold
    for k, window in enumerate(loss.windows):
        rr, cc = above[k]
        for r, c in zip(rr.tolist(), cc.tolist()):
            px, py = ax * c + bx, ay * r + by
            hw, hh = (window.width - 1) / 2, (window.height - 1) / 2
            l, t, rt, b = px - hw, py - hh, px + hw, py + hh
            idx = _nearest_rect(rects, int(math.floor((l + rt) / 2 + 0.5)), int(math.floor((t + b) / 2 + 0.5)))
            ox, oy = rects[idx][0], rects[idx][1]
            rect = (_lround(_point_up(l - ox, idx)), _lround(_point_up(t - oy, idx)),
                    _lround(_point_up(rt - ox, idx)), _lround(_point_up(b - oy, idx)))
            cands.append((float(scores[k, r, c]), rect))
    cands.sort(key=lambda d: d[0], reverse=True)
    final: list[Detection] = []
    for score, rect in cands:
        if any(_overlaps(d.rect, rect, loss.nms_iou, loss.nms_covered) for d in final):
            continue
        final.append(Detection(rect, score))
    return final


def rect_down_2(rect: Rect, levels: int) -> Rect:
    """pyramid_down<2>.rect_down applied `levels` times, rounded as dlib assigns it to a rectangle."""
    vals = [float(v) for v in rect]
    for _ in range(levels):
        vals = [vals[0] / 2 - 1.25, vals[1] / 2 - 0.75, vals[2] / 2 - 1.25, vals[3] / 2 - 0.75]
    return (_lround(vals[0]), _lround(vals[1]), _lround(vals[2]), _lround(vals[3]))


def upsampled_size_2(rows: int, cols: int) -> tuple[int, int]:
    """Image size after dlib's pyramid_up with pyramid_down<2> (rect_up of the image rectangle)."""
    bottom = _lround((rows - 1 + 0.75) * 2)
    right = _lround((cols - 1 + 1.25) * 2)
    return bottom + 1, right + 1
