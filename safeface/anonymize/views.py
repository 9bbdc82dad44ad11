"""Other views of a photo, in which a face the upright search misses may show.

HOG finds upright faces in ordinary exposure. A photo can hold a face it misses and a person sees,
or gets back with one step anyone can take:
- turned a quarter or upside down, with no orientation tag to say so (a scan put in turned, a
  phone photo whose tag a messenger stripped): turning the output back shows the face;
- a negative: inverting the output gives the face back;
- nearly black (an underexposed night shot, or values squeezed to 0-7 on purpose), or a face in
  shadow in a photo with bright parts: brightening the output gives it back (exposure.py);
- squeezed into a narrow band anywhere else (nearly white, a few mid-grey levels): stretching
  the output gives it back (exposure.narrow_view), also where only the face's region is
  squeezed (exposure.local_contrast_view);
- written to defeat the search (crafted_views, at half size, so faces from about 80 px): a face
  in one colour channel under strong edges in the others (taking that channel gives it back);
  every other row, column or pixel inverted, or rows or columns two on, two off (keeping half
  the lines gives it back), or by a key, inverted or moved in level (putting each line back by
  its neighbours does); heavy impulse noise (a median filter gives it back, or, over half the
  pixels, the mean of the pixels not at an impulse's level).
Each view is searched too, and its boxes are mapped back onto the photo's pixels. Views are made
one at a time: a turned copy of a 50-megapixel photo is 150 MB."""

from __future__ import annotations

from typing import Callable, Iterator

import numpy as np

from ..imageio import c_order
from .alternating import halves, line_periods
from .detect import Box, FaceFinder
from .exposure import dark_view, local_contrast_view, narrow_view
from .impulses import filled_view, has_impulses
from .line_polarity import keyed_views


def _turned_back(k: int, w: int, h: int) -> Callable[[Box], Box]:
    """Maps a box found in np.rot90(photo, k) back onto the photo (w x h)."""
    def back(b: Box) -> Box:
        left, top, right, bottom = b
        if k == 1:
            return (w - bottom, left, w - top, right)
        if k == 2:
            return (w - right, h - bottom, w - left, h - top)
        return (top, h - right, bottom, h - left)
    return back


def views(pixels: np.ndarray) -> Iterator[tuple[np.ndarray, Callable[[Box], Box]]]:
    """(view, map back to the photo's coordinates) for each other view worth a search."""
    h, w = pixels.shape[:2]
    for k in (1, 2, 3):
        yield c_order(np.rot90(pixels, k)), _turned_back(k, w, h)
    same: Callable[[Box], Box] = lambda b: b  # noqa: E731
    yield np.ascontiguousarray(255 - pixels), same
    # Made one at a time, as each is searched: a tuple of both held two copies of the photo.
    for make in (dark_view, narrow_view):
        view = make(pixels)
        if view is not None:
            yield view, same
        del view
    # A region squeezed into a few levels inside a full-range photo (a border, a background):
    # the tests above judge the whole photo. Photos only: a video frame searched once more
    # would take the anonymizer further below real time.
    yield local_contrast_view(pixels), same
    yield from crafted_views(pixels)


def crafted_views(pixels: np.ndarray) -> Iterator[tuple[np.ndarray, Callable[[Box], Box]]]:
    """Views of faces hidden by how the pixels were written, each a quarter of the photo's
    pixels (the eight together cost about two searches of the photo): HOG follows each pixel's
    strongest channel, so random blocks in two channels hid a grey face in the third (0.99 to
    its original once that channel was taken); a negative on every other row, column or pixel
    breaks every edge, and one phase of the 2x2 grid is clean (two on, two off: the half of
    one polarity, and its negative, where alternating.py finds it); and 45% of pixels set to
    black or white hides a face that a 5x5 median restores. Video frames search these only
    where a test finds them (FaceFinder._search)."""
    import cv2

    h, w = pixels.shape[:2]
    if min(h, w) < 4:
        return
    size = (w // 2, h // 2)
    fx, fy = w / size[0], h / size[1]
    back: Callable[[Box], Box] = lambda b: (b[0] * fx, b[1] * fy, b[2] * fx, b[3] * fy)  # noqa: E731
    for c in range(3):
        grey = cv2.resize(np.ascontiguousarray(pixels[..., c]), size, interpolation=cv2.INTER_AREA)
        yield c_order(np.repeat(grey[..., None], 3, axis=2)), back
    yield c_order(cv2.resize(cv2.medianBlur(np.ascontiguousarray(pixels), 5), size,
                             interpolation=cv2.INTER_AREA)), back
    # Over half the pixels black or white, every window's median is one of them: where the
    # video's test (impulses.py) finds impulses, the mean of the others too.
    if pixels.ndim == 3 and has_impulses(pixels):
        yield c_order(cv2.resize(filled_view(pixels), size, interpolation=cv2.INTER_AREA)), back
    for dy in (0, 1):
        for dx in (0, 1):
            yield c_order(pixels[dy:dy + 2 * size[1]:2, dx:dx + 2 * size[0]:2]), back
    # Rows or columns inverted two on, two off leave no phase of the 2x2 grid clean: where the
    # video's test (alternating.py) finds them, the half of one polarity and its negative.
    periods = line_periods(pixels)
    if 4 in periods:
        for half in halves(pixels, periods):
            hy, hx = h / half.shape[0], w / half.shape[1]

            def from_half(b: Box, hx: float = hx, hy: float = hy) -> Box:
                return (b[0] * hx, b[1] * hy, b[2] * hx, b[3] * hy)

            yield half, from_half
            del half
    # Rows or columns inverted by a key (line_polarity.py): put back, at half size like the rest.
    for view in keyed_views(pixels):
        yield c_order(cv2.resize(view, size, interpolation=cv2.INTER_AREA)), back
        del view


def find_in_views(finder: FaceFinder, pixels: np.ndarray) -> list[Box]:
    """Faces found in the other views (HOG at upsampling 1, no masked search), on the photo;
    unmerged (the caller merges them with its own)."""
    found: list[Box] = []
    for view, back in views(pixels):
        found += [back(b) for b in finder.find(view, [1], masked=False)]
        # Let go before the next view is made: the loop's name held each view while the next
        # was computed, two copies of the photo at once.
        del view
    return found
