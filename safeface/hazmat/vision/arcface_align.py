"""ArcFace alignment in NumPy: the 5-point similarity transform (Umeyama's least-squares estimate)
onto ArcFace's 112x112 template, and a bilinear affine warp with a black border, the geometry
insightface's norm_crop gives with OpenCV, without depending on OpenCV or scikit-image."""

from __future__ import annotations

import numpy as np

CHIP_SIZE = 112

# Where ArcFace models expect the eyes, nose tip and mouth corners in a 112x112 chip.
ARCFACE_DST = np.array(
    [
        [38.2946, 51.6963],
        [73.5318, 51.5014],
        [56.0252, 71.7366],
        [41.5493, 92.3655],
        [70.7299, 92.2041],
    ],
    dtype=np.float64,
)


def umeyama(src: np.ndarray, dst: np.ndarray) -> np.ndarray:
    """The similarity transform (rotation, uniform scale, translation) that maps `src` points
    onto `dst` in the least-squares sense (Umeyama 1991). Returns a (2, 3) matrix M with
    dst ~= M @ [x, y, 1]."""
    src = np.asarray(src, dtype=np.float64)
    dst = np.asarray(dst, dtype=np.float64)
    if src.shape != dst.shape or src.ndim != 2 or src.shape[1] != 2 or len(src) < 2:
        raise ValueError(f"expected two (N, 2) point sets with N >= 2, got {src.shape} and {dst.shape}.")
    n = src.shape[0]
    src_mean = src.mean(axis=0)
    dst_mean = dst.mean(axis=0)
    src_c = src - src_mean
    dst_c = dst - dst_mean
    cov = dst_c.T @ src_c / n
    d = np.ones(2)
    if np.linalg.det(cov) < 0:
        d[1] = -1.0
    u, s, vt = np.linalg.svd(cov)
    rank = np.linalg.matrix_rank(cov)
    if rank == 0:
        raise ValueError("the source points are all the same point; no transform exists.")
    if rank == 1:
        # Collinear points: the rotation is fixed by the sign of det(U)det(V), not by det(cov).
        r = u @ vt if np.linalg.det(u) * np.linalg.det(vt) > 0 else u @ np.diag([1.0, -1.0]) @ vt
    else:
        r = u @ np.diag(d) @ vt
    var = src_c.var(axis=0).sum()
    if var <= 0:
        raise ValueError("the source points are all the same point; no transform exists.")
    scale = float(s @ d) / var
    m = np.empty((2, 3), dtype=np.float64)
    m[:, :2] = scale * r
    m[:, 2] = dst_mean - scale * (r @ src_mean)
    return m


def warp_affine(image: np.ndarray, m: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Warp an (H, W, C) uint8 image with the forward affine `m` (pixel-index coordinates, as
    OpenCV's warpAffine takes it) into an output of `size` = (width, height); bilinear
    sampling, zero outside the image."""
    out_w, out_h = size
    full = np.vstack([np.asarray(m, dtype=np.float64), [0.0, 0.0, 1.0]])
    inv = np.linalg.inv(full)[:2]
    ys, xs = np.mgrid[0:out_h, 0:out_w].astype(np.float64)
    sx = inv[0, 0] * xs + inv[0, 1] * ys + inv[0, 2]
    sy = inv[1, 0] * xs + inv[1, 1] * ys + inv[1, 2]
    x0 = np.floor(sx).astype(np.int64)
    y0 = np.floor(sy).astype(np.int64)
    fx = (sx - x0)[..., None]
    fy = (sy - y0)[..., None]
    h, w = image.shape[:2]
    src = image.astype(np.float32)

    def tap(yy: np.ndarray, xx: np.ndarray) -> np.ndarray:
        inside = (xx >= 0) & (xx < w) & (yy >= 0) & (yy < h)
        vals = src[np.clip(yy, 0, h - 1), np.clip(xx, 0, w - 1)]
        return np.where(inside[..., None], vals, 0.0)

    top = tap(y0, x0) * (1 - fx) + tap(y0, x0 + 1) * fx
    bottom = tap(y0 + 1, x0) * (1 - fx) + tap(y0 + 1, x0 + 1) * fx
    out: np.ndarray = np.clip(np.rint(top * (1 - fy) + bottom * fy), 0, 255).astype(np.uint8)
    return out


def norm_crop(image: np.ndarray, landmarks: np.ndarray, size: int = CHIP_SIZE) -> np.ndarray:
    """The aligned (size, size, 3) chip of the face whose five points are `landmarks`."""
    dst = ARCFACE_DST * (size / CHIP_SIZE)
    m = umeyama(np.asarray(landmarks, dtype=np.float64).reshape(5, 2), dst)
    return warp_affine(image, m, (size, size))
