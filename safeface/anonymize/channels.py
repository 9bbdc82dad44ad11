"""Video frames with a face drawn in one colour channel under noise in the others. HOG follows
each pixel's strongest channel, so random blocks in green and blue hide a grey face in red, and
taking red gives it back. Photos search each channel (views.crafted_views); a video frame cannot
pay for three more searches, so a cheap test finds such regions first and only they are searched
in that channel alone (FaceFinder._search).

The test: light and shade move a natural frame's channels together, so a block where one
channel's texture follows neither other channel, while some other is textured, may hide a face.
Ordinary footage has such blocks too (a coloured sign, chroma noise in old video): only the
region around them is searched, a small part of a frame's search.

A face drawn in two channels under noise in the third reads the other way round: the noise is
the lone channel, and the two that follow each other hold the face; there, their mean is
searched too."""

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
# Two channels that follow each other this closely beside a lone one may hold a face together
# (the lone one is then the noise): a face copied into two channels measures about 1; grain
# independent in each channel rarely reaches it over a block.
PAIR_CORRELATION = 0.5

Region = tuple[int, int, int, int]
# The channels whose mean is searched: one, or the two a face may be drawn in together.
Channels = tuple[int, ...]
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


def _grown(blocks: np.ndarray, w: int, h: int) -> list[Region]:
    """The regions of a `w` x `h` image around the flagged `blocks`: each component grown by its
    blocks' own size and at least two blocks each way (a face's texture is at its eyes, mouth
    and outline, not everywhere on it), or the whole image where they would add up to half of
    it or more (blocks scattered over the frame by a sender, to multiply the searches)."""
    import cv2

    n, _, stats, _ = cv2.connectedComponentsWithStats(cv2.dilate(blocks, np.ones((3, 3), np.uint8)), connectivity=8)
    regions: list[Region] = []
    for bx, by, bw, bh, _ in stats[1:n]:
        # The component is dilated by a block each way: grown by its blocks' own size more.
        grow = BLOCK * max(1, int(bw) - 2, int(bh) - 2)
        regions.append((max(0, int(bx) * BLOCK - grow), max(0, int(by) * BLOCK - grow),
                        min(w, int(bx + bw) * BLOCK + grow), min(h, int(by + bh) * BLOCK + grow)))
    if 2 * sum((x1 - x0) * (y1 - y0) for x0, y0, x1, y1 in regions) >= w * h:
        return [(0, 0, w, h)]
    return regions


def lone_channel_regions(image: np.ndarray) -> list[tuple[Channels, Region]]:
    """(channels, region (x1, y1, x2, y2) of `image`) for each place where a channel's texture
    follows no other textured channel, to be searched in the mean of `channels`: that channel
    alone, and where the other two follow each other, also their mean (a face drawn in two
    channels under noise in the third: taking either shows it, and the lone channel is the
    noise). Under noise, every block of the face is found."""
    h, w = image.shape[:2]
    rows, cols = h // BLOCK, w // BLOCK
    if rows == 0 or cols == 0 or image.ndim != 3 or image.shape[2] != 3:
        return []
    x = np.ascontiguousarray(image[:rows * BLOCK, :cols * BLOCK], dtype=np.float32)
    var, cov = _block_stats(x, rows, cols)

    def corr(a: int, b: int) -> np.ndarray:
        k = PAIRS.index((min(a, b), max(a, b)))
        out: np.ndarray = cov[..., k] / np.sqrt(np.maximum(var[..., a] * var[..., b], 1e-6))
        return out

    found: list[tuple[Channels, Region]] = []
    for c in range(3):
        others = tuple(d for d in range(3) if d != c)
        alone = var[..., c] >= FACE_LEVELS ** 2
        hidden = np.zeros_like(alone)
        for d in others:
            textured = var[..., d] >= HIDING_LEVELS ** 2
            alone &= ~textured | (corr(c, d) < ALONE_CORRELATION)
            hidden |= textured
        blocks = alone & hidden
        if not blocks.any():
            continue
        found += [((c,), r) for r in _grown(blocks.astype(np.uint8), w, h)]
        d, e = others
        pair = blocks & (var[..., d] >= FACE_LEVELS ** 2) & (var[..., e] >= FACE_LEVELS ** 2) \
            & (corr(d, e) >= PAIR_CORRELATION)
        if pair.any():
            found += [(others, r) for r in _grown(pair.astype(np.uint8), w, h)]
    return found


def channel_mean(image: np.ndarray, channels: Channels) -> np.ndarray:
    """The mean of `image`'s `channels` (one: that channel), one contiguous grey plane."""
    if len(channels) == 1:
        return np.ascontiguousarray(image[..., channels[0]])
    out: np.ndarray = np.mean(image[..., list(channels)], axis=-1, dtype=np.float32).round().astype(np.uint8)
    return out
