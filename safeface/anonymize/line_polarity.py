"""Rows or columns inverted by a key: a pseudo-random set of lines, with no period for the line
test (alternating.py) to find, hides a face from HOG, and whoever holds the key inverts those
lines back. Without the key, the lines are put back by their neighbours: a natural line is far
closer to the one next to it than to that line's negative, so wherever a line is closer to its
neighbour's negative, one of the two was inverted.

The test: in a block of a natural frame few neighbouring lines are closer inverted (an edge from
dark to its negative's level: at most 6% of a block's pairs in vtest.avi and the stage clip);
lines inverted at random make about half of them so. The repair: each block of BLOCK px across
is followed down its lines, each line inverted where it is closer to the line above once
inverted. An edge in the face can be read as an inversion, inverting the rest of its block
below it; the repaired view is searched with its negative."""

from __future__ import annotations

from typing import Iterator

import numpy as np

# Blocks of this many pixels a side are judged; lines are followed in strips this wide.
BLOCK = 32
# A pair of neighbouring lines reads as inverted where, across a block, the pair differs by at
# least KEYED_LEVELS on average, and KEYED_RATIO times as much as the first line and the
# second's negative...
KEYED_LEVELS = 8
KEYED_RATIO = 3.0
# ... and a block holds lines inverted by a key where at least this share of its pairs read so:
# with a tenth of a face's rows inverted at random (HOG found 3 of 8 LFW faces), 0.22-0.38 of a
# block's; with half, 0.56-0.69; every other row, all. Natural footage: at most 0.03.
KEYED_SHARE = 0.1
# Bands of lines inverted (8 rows in every 32: two pairs of a block read inverted, 0.0625) hid
# faces under that share. A pair reading inverted by a wider margin is rarer in natural footage
# (at most one of a block's 32, 0.031, in vtest.avi, the stage clip and LFW): two such pairs in
# a block are enough.
BAND_LEVELS = 16
BAND_RATIO = 6.0
BAND_SHARE = 0.06
# Lines judged at a time (a whole number of blocks): a 50-megapixel photo takes a few megabytes
# of differences at a time.
BAND = 16 * BLOCK


def _pairs(image: np.ndarray, axis: int) -> Iterator[tuple[tuple[int, int], np.ndarray, np.ndarray]]:
    """For each band of rows: ((first pair, first block across), same, inverted), where same[i, k]
    is the mean difference of neighbouring lines i and i + 1 along `axis` (0: rows, 1: columns)
    over block k across them, and inverted[i, k] the same with line i + 1 inverted."""
    import cv2

    h, w = image.shape[:2]
    for start in range(0, h - 1 if axis == 0 else h, BAND):
        if axis == 0:
            part = image[start:start + BAND + 1, :w // BLOCK * BLOCK]
            a, b = part[:-1], part[1:]
            size = (w // BLOCK, a.shape[0])
        else:
            part = image[start:start + BAND]
            part = part[:part.shape[0] // BLOCK * BLOCK]
            if part.shape[0] == 0:
                break
            a, b = part[:, :-1], part[:, 1:]
            size = (a.shape[1], part.shape[0] // BLOCK)
        means = [np.asarray(cv2.resize(np.ascontiguousarray(cv2.absdiff(a, other)), size,
                                       interpolation=cv2.INTER_AREA), np.float32)
                 for other in (b, cv2.bitwise_not(b))]
        if axis == 1:
            means = [m.transpose(1, 0, *range(2, m.ndim)) for m in means]
        same, inverted = (m.reshape(m.shape[0], m.shape[1], -1).mean(axis=-1) for m in means)
        yield ((start, 0) if axis == 0 else (0, start // BLOCK)), same, inverted


def has_keyed_lines(image: np.ndarray, axis: int) -> bool:
    """Whether some block of `image` has its lines along `axis` (0: rows) inverted in no order."""
    if min(image.shape[:2]) < BLOCK + 1:
        return False
    for _, same, inverted in _pairs(image, axis):
        blocks = same.shape[0] // BLOCK
        if not blocks:
            continue
        for levels, ratio, share in ((KEYED_LEVELS, KEYED_RATIO, KEYED_SHARE), (BAND_LEVELS, BAND_RATIO, BAND_SHARE)):
            reads = (same >= levels) & (same >= ratio * inverted)
            if bool(np.any(reads[:blocks * BLOCK].reshape(blocks, BLOCK, -1).mean(axis=1) >= share)):
                return True
    return False


def repaired(image: np.ndarray, axis: int) -> np.ndarray:
    """A copy of `image` with the lines along `axis` of each strip BLOCK px across put back to
    the polarity of the strip's first line, each inverted where it is closer to the one before
    once inverted (the rest of the image, under a block across, as it is)."""
    h, w = image.shape[:2]
    n, strips = (h, w // BLOCK) if axis == 0 else (w, h // BLOCK)
    flips = np.zeros((n, strips), np.uint8)  # row i: line i reads inverted from line i - 1
    for (line, block), same, inverted in _pairs(image, axis):
        flips[line + 1:line + 1 + same.shape[0], block:block + same.shape[1]] = inverted < same
    parity = (np.cumsum(flips, axis=0) % 2).astype(bool)
    out = np.array(image, copy=True)
    for y in range(0, strips * BLOCK if axis == 1 else h, BAND):
        band = out[y:y + BAND]
        mask: np.ndarray
        if axis == 0:
            mask = np.zeros(band.shape[:2], bool)
            mask[:, :strips * BLOCK] = np.repeat(parity[y:y + band.shape[0]], BLOCK, axis=1)
        else:
            mask = np.repeat(parity[:, y // BLOCK:(y + band.shape[0]) // BLOCK].T, BLOCK, axis=0)
            band = band[:mask.shape[0]]
        band[mask] = 255 - band[mask]
    return out


def keyed_views(image: np.ndarray) -> Iterator[np.ndarray]:
    """`image` with rows, then columns, put back where a block of either reads as inverted in no
    order, then its negative, made in place of it (one copy of a 50-megapixel photo, not two: a
    caller keeping the first keeps a copy); nothing where no block reads so."""
    rows, cols = has_keyed_lines(image, 0), has_keyed_lines(image, 1)
    if not (rows or cols):
        return
    view = repaired(image, 0) if rows else image
    if cols or has_keyed_lines(view, 1):
        view = repaired(view, 1)
    elif view is image:
        view = np.array(image, copy=True)
    yield view
    np.subtract(255, view, out=view)
    yield view
