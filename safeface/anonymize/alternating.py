"""Video frames with lines inverted in a pattern: every other row, column or pixel (period 2), or
rows or columns inverted two on, two off (period 4). HOG cannot see such a face (every edge is
broken), and keeping half the lines, those of one polarity, gives it back. Photos search every
phase of the 2x2 grid (views.crafted_views); a video frame cannot pay for four more searches, so
a cheap test finds such a region first and only then is the frame's half searched
(FaceFinder._search), and its negative.

The test: across an inverted line, a pixel differs from its neighbour by about |2v - 255|, while
from the pixel one period away (inverted alike) only as much as a photo does. Natural pixels
differ less from near pixels than from far ones, so a block of the frame where the lines `lag`
apart differ far more than those `2 * lag` apart was written this way: lag 1 finds period 2,
lag 2 period 4. Rows inverted by a key (a pseudo-random set) show no period: line_polarity.py."""

from __future__ import annotations

from typing import Optional

import numpy as np

# Blocks of this many pixels a side are judged; a face searched in video is at least 80 px, so
# a face-sized region of inverted lines fills a block whatever its place.
BLOCK = 32
# A block is alternating where lines `lag` apart differ by at least ALTERNATING_LEVELS on
# average, and ALTERNATING_RATIO times as much as lines twice as far apart. A face squeezed into
# 32 mid-grey levels before its lines are inverted differs by about 18 (and HOG finds it in half
# the lines); no frame of vtest.avi or of the stage clip is flagged at these bars.
ALTERNATING_LEVELS = 8
ALTERNATING_RATIO = 3.0
# Rows judged at a time (a whole number of blocks).
BAND = 16 * BLOCK
# The inversion periods looked for, as the lag of the test (half the period).
LAGS = (1, 2)


def _block_means(diff: np.ndarray) -> np.ndarray:
    """The mean of each BLOCK x BLOCK block of `diff` (any whole blocks), the largest of its
    channels', in whole levels."""
    import cv2

    h, w = diff.shape[:2]
    rows, cols = h // BLOCK, w // BLOCK
    means = cv2.resize(diff[:rows * BLOCK, :cols * BLOCK], (cols, rows), interpolation=cv2.INTER_AREA)
    out: np.ndarray = np.asarray(means, np.float32).reshape(rows, cols, -1).max(axis=-1)
    return out


def _period(image: np.ndarray, axis: int) -> int:
    """The period (2 or 4) of the lines along `axis` (0: rows, 1: columns) inverted in some
    block of `image`, 0 for none. Judged in bands of rows, so a 50-megapixel photo takes a few
    megabytes of differences at a time, not two copies of itself."""
    import cv2

    h, w = image.shape[:2]
    for lag in LAGS:
        if (h, w)[axis] < BLOCK + 2 * lag or (w, h)[axis] < BLOCK:
            break
        for y in range(0, h - (2 * lag if axis == 0 else 0), BAND):
            if axis == 0:
                m = min(BAND, h - 2 * lag - y)
                base, near, far = image[y:y + m], image[y + lag:y + lag + m], image[y + 2 * lag:y + 2 * lag + m]
            else:
                band = image[y:y + BAND]
                m = w - 2 * lag
                base, near, far = band[:, :m], band[:, lag:lag + m], band[:, 2 * lag:]
            if base.shape[0] < BLOCK:
                continue
            one = _block_means(cv2.absdiff(near, base))
            two = _block_means(cv2.absdiff(far, base))
            if bool(np.any((one >= ALTERNATING_LEVELS) & (one >= ALTERNATING_RATIO * two))):
                return 2 * lag
    return 0


def _kept(image: np.ndarray, period: int, axis: int) -> np.ndarray:
    """The indices of half the lines of `image` along `axis`, all of one polarity for lines
    inverted with `period` (every other line where there is none, to keep the half's shape)."""
    import cv2

    n = image.shape[axis]
    if period != 4:
        return np.arange(0, n, 2)
    # Two of every four lines: those of a pair inside which neighbours differ least (the pairs
    # start where the two smaller of the four phases' neighbour differences are). Summed a band
    # of rows at a time, as _period judges.
    diff = np.zeros(n - 1)
    for y in range(0, image.shape[0], BAND):
        if axis == 0:
            band = image[y:y + BAND + 1]
            d = cv2.absdiff(band[1:], band[:-1])
            diff[y:y + d.shape[0]] = d.reshape(d.shape[0], -1).sum(axis=1)
        else:
            band = image[y:y + BAND]
            diff += cv2.absdiff(band[:, 1:], band[:, :-1]).reshape(band.shape[0], n - 1, -1).sum(axis=(0, 2))
    phase = [float(diff[q::4].mean() + diff[q + 2::4].mean()) for q in (0, 1)]
    q = int(np.argmin(phase))
    lines = np.arange(n)
    return lines[(lines - q) % 4 < 2]


def line_periods(image: np.ndarray) -> tuple[int, int]:
    """The periods (2 or 4; 0 for none) of the rows and of the columns inverted in some block of
    `image` (a pixel grid inverted in both ways is both)."""
    return _period(image, 0), _period(image, 1)


def has_alternating_lines(image: np.ndarray) -> bool:
    """Whether some block of `image` has rows or columns inverted every other line or two on,
    two off."""
    return any(line_periods(image))


def halves(image: np.ndarray, periods: Optional[tuple[int, int]] = None) -> tuple[np.ndarray, np.ndarray]:
    """Half the rows and half the columns of `image`, each of one polarity (`periods`:
    line_periods' answer, found again if not given), and its negative: whichever lines were
    inverted, one of the two shows the face upright."""
    rp, cp = periods if periods is not None else line_periods(image)
    half = np.ascontiguousarray(image[_kept(image, rp, 0)][:, _kept(image, cp, 1)])
    return half, 255 - half
