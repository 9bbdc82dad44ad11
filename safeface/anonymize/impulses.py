"""Video frames under heavy impulse noise: a large share of pixels set to black, white or any
value, which hides a face from HOG while a median filter gives it back. Photos search a 5x5
median (views.crafted_views); a video frame cannot pay for one more search of every frame, so a
cheap test finds such a region first and only then is the median searched (FaceFinder._search),
and, for impulses over half the pixels, where a median is an impulse too, the mean of the pixels
not near black or white (filled_view; photos search it where the test flags them).

The test: an impulse differs far from the median of its 3x3 neighbourhood, which follows edges
and smooth shading, so in a natural frame few pixels do; a block where many do was written
that way. Natural edges count too (a one-pixel stroke of text differs from its median), so the
bar is a tenth of a block; a lower one (ISOLATED_SHARE) counts only impulses that differ from
each pixel beside, above and below them as well, which natural frames hardly hold: 8% of a
face's pixels set to black or white read under the first bar and hid it."""

from __future__ import annotations

import numpy as np

# Blocks of this many pixels a side of the frame as decoded are judged (the scaled copy blends
# impulses into their neighbours).
BLOCK = 32
# A pixel is an impulse where some channel is this far from its 3x3 median...
IMPULSE_LEVELS = 64
# ... and a block is under impulse noise where at least this share of its pixels are...
IMPULSE_SHARE = 0.1
# ... or this share are impulses that no pixel beside, above or below them is within
# IMPULSE_LEVELS of in every channel. Honest frames: at most 0.036 (an interlaced frame whose
# fields differ, text compressed as JPEG); 8% of a face's pixels set to black or white: about
# 0.09. (Impulses in clumps pass this count, not the first.)
ISOLATED_SHARE = 0.06
# The median searched, as the photos' view.
MEDIAN_SIDE = 5
# Over about half the pixels black or white, the median of any window is an impulse (5x5: 5 of
# 8 sampled faces found at 60%, none at 70% or with 60% mostly black): where the test flags a
# frame, the mean of each channel over a MEDIAN_SIDE window, of the pixels not within
# FILL_LEVELS of black or white in it, is searched too (8 of 8 found at 60-80%, also with
# impulses written at 30 and 225 or in each channel apart; 3 of 8 at 90%)...
FILL_LEVELS = 32
# ... nor at a level far more frequent than those around it (impulses at 40 and 215 or 60 and
# 195: 1-2 of 8 found without this, 8 with it). Impulses spread over a band of levels each are
# not told from the face this way.
SPIKE_SHARE = 0.02
SPIKE_RATIO = 4.0
# Rows tested or filled at a time (a whole number of blocks): a photo takes a few copies of a
# band, not of itself.
FILL_BAND = 4 * BLOCK


def has_impulses(image: np.ndarray) -> bool:
    """Whether some block of `image` (H, W, 3 uint8) has IMPULSE_SHARE of its pixels far from
    their neighbourhood's median, or ISOLATED_SHARE far from their neighbours too. Judged
    FILL_BAND rows at a time (with a row above and below, so each row is judged as in one
    pass): photos are tested too, and a whole photo's median and differences took a copy of it
    each."""
    h, w = image.shape[:2]
    rows, cols = h // BLOCK, w // BLOCK
    if rows == 0 or cols == 0:
        return False
    for y in range(0, rows * BLOCK, FILL_BAND):
        top, stop = max(0, y - 1), min(rows * BLOCK, y + FILL_BAND + 1)
        if _band_has_impulses(np.ascontiguousarray(image[top:stop, :cols * BLOCK]), y - top,
                              min(FILL_BAND, rows * BLOCK - y)):
            return True
    return False


def _band_has_impulses(part: np.ndarray, first: int, n: int) -> bool:
    """has_impulses' test of the `n` rows of `part` from row `first` (whole blocks; the rows
    around them are their neighbours only)."""
    import cv2

    rows, cols = n // BLOCK, part.shape[1] // BLOCK
    # 255 where a pixel is an impulse, so a block's mean is 255 times its share of them.
    marked = cv2.compare(_largest(cv2.absdiff(part, cv2.medianBlur(part, 3))), IMPULSE_LEVELS, cv2.CMP_GE)
    if bool(np.any(cv2.resize(marked[first:first + n], (cols, rows), interpolation=cv2.INTER_AREA)
                   >= 255 * IMPULSE_SHARE)):
        return True
    isolated = marked
    for a, b in (((slice(None), slice(1, None)), (slice(None), slice(None, -1))),
                 ((slice(1, None), slice(None)), (slice(None, -1), slice(None)))):
        # Two pixels this close beside (or above) each other are both no isolated impulse.
        near = cv2.compare(_largest(cv2.absdiff(part[a], part[b])), IMPULSE_LEVELS, cv2.CMP_LT)
        isolated[a] = cv2.bitwise_and(isolated[a], cv2.bitwise_not(near))
        isolated[b] = cv2.bitwise_and(isolated[b], cv2.bitwise_not(near))
    share = cv2.resize(np.ascontiguousarray(isolated[first:first + n]), (cols, rows), interpolation=cv2.INTER_AREA)
    return bool(np.any(share >= 255 * ISOLATED_SHARE))


def _largest(diff: np.ndarray) -> np.ndarray:
    """The largest channel of a difference, per pixel (a grey one as it is)."""
    import cv2

    if diff.ndim != 3:
        return diff
    planes = cv2.split(diff)
    out: np.ndarray = cv2.max(cv2.max(planes[0], planes[1]), planes[2])
    return out


def median_view(image: np.ndarray) -> np.ndarray:
    """The MEDIAN_SIDE x MEDIAN_SIDE median of `image`, at its size."""
    import cv2

    out: np.ndarray = cv2.medianBlur(np.ascontiguousarray(image), MEDIAN_SIDE)
    return out


def _kept_levels(image: np.ndarray) -> np.ndarray:
    """Per channel of `image` (256 levels each, (channels, 256) float32): 1 where a level is no
    impulse's, 0 within FILL_LEVELS of black or white, or within a level of one far more
    frequent than the levels around it (SPIKE_SHARE of the pixels, SPIKE_RATIO times the
    median count of the levels 3 to 8 away): impulses written at one level each (40 and
    215) are neither black nor white."""
    histograms = _histograms(image)
    pixels = image.shape[0] * image.shape[1]
    kept = np.ones((histograms.shape[0], 256), np.float32)
    kept[:, :FILL_LEVELS + 1] = 0
    kept[:, 255 - FILL_LEVELS:] = 0
    for c, counts in enumerate(histograms):
        windows = np.lib.stride_tricks.sliding_window_view(np.pad(counts, 8, mode="edge"), 17)
        around = np.median(np.concatenate([windows[:, :6], windows[:, 11:]], axis=1), axis=1)
        for level in np.flatnonzero((counts >= SPIKE_SHARE * pixels)
                                    & (counts >= SPIKE_RATIO * np.maximum(around, 1.0))):
            kept[c, max(0, level - 1):level + 2] = 0
    return kept


def _histograms(image: np.ndarray) -> np.ndarray:
    """Each channel's count of pixels at each level, (channels, 256) float64, counted FILL_BAND
    rows at a time: np.bincount widens what it counts to 64-bit integers, and a whole channel
    of a 50-megapixel photo so took 400 MB (2.7 copies of the photo)."""
    channels = image.shape[2] if image.ndim == 3 else 1
    counts = np.zeros((channels, 256), np.float64)
    for y in range(0, image.shape[0], FILL_BAND):
        part = image[y:y + FILL_BAND].reshape(-1, channels)
        for c in range(channels):
            counts[c] += np.bincount(part[:, c], minlength=256)
    return counts


def filled_view(image: np.ndarray) -> np.ndarray:
    """`image` with each pixel's channel the mean of that channel over its MEDIAN_SIDE x
    MEDIAN_SIDE window, of the pixels not at an impulse's level there (_kept_levels), or the
    window's median where none is: what a heavy salt and pepper (also one drawn in each channel
    apart, or at two levels short of black and white) leaves of a face. Made FILL_BAND rows at
    a time."""
    import cv2

    r = MEDIAN_SIDE // 2
    window = (MEDIAN_SIDE, MEDIAN_SIDE)
    levels = _kept_levels(image)
    out = np.empty_like(image)
    for y in range(0, image.shape[0], FILL_BAND):
        top = max(0, y - r)
        part = np.ascontiguousarray(image[top:y + FILL_BAND + r])
        kept = (np.stack([levels[c][part[..., c]] for c in range(part.shape[2])], axis=-1) if part.ndim == 3
                else levels[0][part])
        weight = cv2.blur(kept, window, borderType=cv2.BORDER_REFLECT)
        total = cv2.blur(part.astype(np.float32) * kept, window, borderType=cv2.BORDER_REFLECT)
        mean = np.clip(np.rint(total / np.maximum(weight, 1e-6)), 0, 255).astype(np.uint8)
        filled = np.where(weight > 1e-6, mean, cv2.medianBlur(part, MEDIAN_SIDE))
        out[y:y + FILL_BAND] = filled[y - top:y - top + FILL_BAND]
    return out
