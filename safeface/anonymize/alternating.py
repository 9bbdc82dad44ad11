"""Video frames with every other row, column or pixel inverted: a face HOG cannot see (every edge
is broken) that keeping half the lines gives back. Photos search every phase of the 2x2 grid
(views.crafted_views); a video frame cannot pay for four more searches, so a cheap test finds
such a region first and only then is the frame's half searched (FaceFinder._search).

The test: next to an inverted line, a pixel differs from its neighbour by about |2v - 255|,
while from the pixel two lines away (inverted alike) only as much as a photo does. Natural
pixels differ less from their neighbour than from two lines away, so a block of the frame
where the neighbour's difference is far the larger was written this way."""

from __future__ import annotations

import numpy as np

# Blocks of this many pixels a side are judged; a face searched in video is at least 80 px, so
# a face-sized region of inverted lines fills a block whatever its place.
BLOCK = 32
# A block is alternating where its neighbours differ by at least ALTERNATING_LEVELS on average,
# and ALTERNATING_RATIO times as much as pixels two lines apart. A face squeezed into 32 mid-grey
# levels before its lines are inverted differs by about 18 (and HOG finds it in half the lines);
# no frame of vtest.avi or of the stage clip is flagged at these bars.
ALTERNATING_LEVELS = 8
ALTERNATING_RATIO = 3.0


def _block_means(diff: np.ndarray) -> np.ndarray:
    """The mean of each BLOCK x BLOCK block of `diff` (any whole blocks), over its channels."""
    import cv2

    h, w = diff.shape[:2]
    rows, cols = h // BLOCK, w // BLOCK
    means = cv2.resize(np.ascontiguousarray(diff[:rows * BLOCK, :cols * BLOCK]), (cols, rows),
                       interpolation=cv2.INTER_AREA)
    out: np.ndarray = np.asarray(means, np.float32).reshape(rows, cols, -1).max(axis=-1)
    return out


def has_alternating_lines(image: np.ndarray) -> bool:
    """Whether some block of `image` has every other row, or every other column, inverted (a
    pixel grid inverted in both is both)."""
    import cv2

    h, w = image.shape[:2]
    if h < BLOCK + 2 or w < BLOCK + 2:
        return False
    for near, far in (((image[1:-1], image[:-2]), (image[2:], image[:-2])),
                      ((image[:, 1:-1], image[:, :-2]), (image[:, 2:], image[:, :-2]))):
        one = _block_means(cv2.absdiff(*near))
        two = _block_means(cv2.absdiff(*far))
        if bool(np.any((one >= ALTERNATING_LEVELS) & (one >= ALTERNATING_RATIO * two))):
            return True
    return False


def halves(image: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """One phase of the 2x2 grid (every other row and column, from the first) and its negative:
    whichever lines were inverted, one of the two shows the face upright."""
    half = np.ascontiguousarray(image[::2, ::2])
    return half, 255 - half
