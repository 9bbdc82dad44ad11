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
  squeezed (exposure.local_contrast_view).
Each view is searched too, and its boxes are mapped back onto the photo's pixels. Views are made
one at a time: a turned copy of a 50-megapixel photo is 150 MB."""

from __future__ import annotations

from typing import Callable, Iterator

import numpy as np

from ..imageio import c_order
from .detect import Box, FaceFinder
from .exposure import dark_view, local_contrast_view, narrow_view


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
    for view in (dark_view(pixels), narrow_view(pixels)):
        if view is not None:
            yield view, same
    # A region squeezed into a few levels inside a full-range photo (a border, a background):
    # the tests above judge the whole photo. Photos only: a video frame searched once more
    # would take the anonymizer further below real time.
    yield local_contrast_view(pixels), same


def find_in_views(finder: FaceFinder, pixels: np.ndarray) -> list[Box]:
    """Faces found in the other views (HOG at upsampling 1, no masked search), on the photo;
    unmerged (the caller merges them with its own)."""
    found: list[Box] = []
    for view, back in views(pixels):
        found += [back(b) for b in finder.find(view, [1], masked=False)]
    return found
