"""Video frames with a face drawn in one colour channel under noise in the others. HOG follows
each pixel's strongest channel, so random blocks in green and blue hide a grey face in red, and
taking red gives it back. Photos search each channel (views.crafted_views); a video frame cannot
pay for three more searches, so a cheap test finds such regions first and only they are searched
in that channel alone (FaceFinder._search).

The test: light and shade move a natural frame's channels together, so a block where one
channel's texture follows neither other channel, while some other is textured, may hide a face.
Ordinary footage has such blocks too (a coloured sign, chroma noise in old video): only the
region around them is searched, a small part of a frame's search."""

from __future__ import annotations

import numpy as np

# Blocks of this many pixels a side of the searched copy are judged: a face searched in video
# is at least 40 px there.
BLOCK = 32
# A channel hides a face's texture where its standard deviation in a block is at least
# HIDING_LEVELS (random blocks of 14 levels hid faces in one channel from HOG; of 10, not), and
# the face's channel holds texture of at least FACE_LEVELS...
FACE_LEVELS = 12.0
HIDING_LEVELS = 10.0
# ... that follows neither other channel: correlation under this with each textured one. Faces
# under independent noise measured -0.27 to 0.1.
ALONE_CORRELATION = 0.25

Region = tuple[int, int, int, int]
PAIRS = ((0, 1), (0, 2), (1, 2))


def _block_stats(x: np.ndarray, rows: int, cols: int) -> tuple[np.ndarray, np.ndarray]:
    """Per block of `x` (float32, H, W, 3): each channel's variance, and the covariances of the
    pairs (0, 1), (0, 2), (1, 2)."""
    import cv2

    def means(a: np.ndarray) -> np.ndarray:
        m: np.ndarray = cv2.resize(a, (cols, rows), interpolation=cv2.INTER_AREA).reshape(rows, cols, -1)
        return m

    planes = cv2.split(x)
    mean = means(x)
    var = np.maximum(means(cv2.multiply(x, x)) - mean * mean, 0.0)
    cross = means(cv2.merge([cv2.multiply(planes[a], planes[b]) for a, b in PAIRS]))
    cov = cross - np.stack([mean[..., a] * mean[..., b] for a, b in PAIRS], axis=-1)
    return var, cov


def lone_channel_regions(image: np.ndarray) -> list[tuple[int, Region]]:
    """(channel, region (x1, y1, x2, y2) of `image`) for each place where a channel's texture
    follows no other textured channel: the blocks found there, grown by their own size and at
    least two blocks each way (a face's texture is at its eyes, mouth and outline, not
    everywhere on it; under noise, every block of the face is found)."""
    import cv2

    h, w = image.shape[:2]
    rows, cols = h // BLOCK, w // BLOCK
    if rows == 0 or cols == 0 or image.ndim != 3 or image.shape[2] != 3:
        return []
    x = np.ascontiguousarray(image[:rows * BLOCK, :cols * BLOCK], dtype=np.float32)
    var, cov = _block_stats(x, rows, cols)
    found: list[tuple[int, Region]] = []
    for c in range(3):
        others = [d for d in range(3) if d != c]
        alone = var[..., c] >= FACE_LEVELS ** 2
        hidden = np.zeros_like(alone)
        for d in others:
            textured = var[..., d] >= HIDING_LEVELS ** 2
            k = PAIRS.index((min(c, d), max(c, d)))
            corr = cov[..., k] / np.sqrt(np.maximum(var[..., c] * var[..., d], 1e-6))
            alone &= ~textured | (corr < ALONE_CORRELATION)
            hidden |= textured
        blocks = (alone & hidden).astype(np.uint8)
        if not blocks.any():
            continue
        n, _, stats, _ = cv2.connectedComponentsWithStats(cv2.dilate(blocks, np.ones((3, 3), np.uint8)), connectivity=8)
        regions: list[Region] = []
        for bx, by, bw, bh, _ in stats[1:n]:
            # The component is dilated by a block each way: grown by its blocks' own size more.
            grow = BLOCK * max(1, int(bw) - 2, int(bh) - 2)
            regions.append((max(0, int(bx) * BLOCK - grow), max(0, int(by) * BLOCK - grow),
                            min(w, int(bx + bw) * BLOCK + grow), min(h, int(by + bh) * BLOCK + grow)))
        # Blocks scattered over the frame (a sender's, to multiply the searches): the channel is
        # searched whole once, where its regions would add up to half the frame or more.
        if 2 * sum((x1 - x0) * (y1 - y0) for x0, y0, x1, y1 in regions) >= w * h:
            regions = [(0, 0, w, h)]
        found += [(c, r) for r in regions]
    return found
