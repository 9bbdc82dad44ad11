"""The closed colour vocabulary: eleven basic colour terms (Berlin and Kay), each a region of
HSV space. A pixel gets one name; a clothing region gets the share of each name among its
pixels. Nothing else about a person is named: no skin, hair or face words exist here."""

from __future__ import annotations

import numpy as np

COLOURS = ("black", "white", "grey", "red", "orange", "yellow", "green", "blue", "purple", "pink", "brown")
# Words people use for these; every other colour word is refused with the list.
COLOUR_SYNONYMS = {"gray": "grey", "navy": "blue", "dark blue": "blue", "light blue": "blue", "violet": "purple",
                   "beige": "brown", "tan": "brown", "khaki": "brown", "maroon": "red", "burgundy": "red",
                   "silver": "grey", "cream": "white", "olive": "green", "turquoise": "blue"}

# OpenCV HSV: hue 0-179, saturation and value 0-255. Outdoor CCTV colours are muted, so the
# saturation floor for a chromatic name is low.
DARK_V = 55
GREY_S = 45
WHITE_V = 185
# Below DARK_V a pixel is black, except a garment in shade whose hue stays warm (red to orange)
# and clearly saturated from SHADE_V up: a brown jacket in shade. Measured on vtest.avi's
# annotated people: such pixels are a tenth of the brown jacket's upper body, at most a twentieth
# of a black jacket's (their dark pixels are neutral or purple-pink).
SHADE_V = 25
SHADE_S = 60


def colour_names(hsv: np.ndarray) -> np.ndarray:
    """Index into COLOURS for each pixel of an (..., 3) uint8 HSV array."""
    h = hsv[..., 0].astype(np.int16)
    s = hsv[..., 1].astype(np.int16)
    v = hsv[..., 2].astype(np.int16)
    out = np.full(h.shape, COLOURS.index("grey"), np.int8)
    chroma = (s >= GREY_S) & (v >= DARK_V)
    out[(~chroma) & (v >= WHITE_V)] = COLOURS.index("white")
    hue_names = [(0, 8, "red"), (8, 20, "orange"), (20, 33, "yellow"), (33, 85, "green"), (85, 130, "blue"),
                 (130, 150, "purple"), (150, 170, "pink"), (170, 180, "red")]
    for lo, hi, name in hue_names:
        out[chroma & (h >= lo) & (h < hi)] = COLOURS.index(name)
    # Dark orange and dark red-orange read as brown.
    out[chroma & (h < 22) & (v < 140) & (s < 200)] = COLOURS.index("brown")
    out[v < DARK_V] = COLOURS.index("black")
    # A brown garment in shade: too dark for a colour name above, but its hue stays warm (red to
    # orange) and clearly saturated, where a black garment's dark pixels are neutral or cool.
    out[(v >= SHADE_V) & (v < DARK_V) & (s >= SHADE_S) & ((h < 22) | (h >= 170))] = COLOURS.index("brown")
    return out


# A dark garment's colour shows only where light falls on it. Measured on vtest.avi's annotated
# people: the lit pixels of dark jeans are blue (median saturation 75), those of black trousers
# grey (saturation 11-16). So when at least this share of a region is lit, its dark pixels take
# the lit part's dominant chromatic name in proportion to how much of the lit part it covers.
LIT_FLOOR = 0.25


def colour_shares(hsv: np.ndarray) -> np.ndarray:
    """The share of each colour name among the pixels (sums to 1; zeros when empty), with the
    dark pixels of a coloured garment given its colour (LIT_FLOOR)."""
    names = colour_names(hsv).ravel()
    counts = np.bincount(names, minlength=len(COLOURS)).astype(np.float32)
    total: np.float32 = counts.sum()
    if not total:
        return counts
    black = COLOURS.index("black")
    lit = total - counts[black]
    if counts[black] and lit >= LIT_FLOOR * total:
        chromatic = counts.copy()
        chromatic[[black, COLOURS.index("grey"), COLOURS.index("white")]] = 0
        hue = int(np.argmax(chromatic))
        moved = counts[black] * chromatic[hue] / lit
        counts[hue] += moved
        counts[black] -= moved
    return counts / total


def summary(shares: np.ndarray, floor: float = 0.2) -> list[str]:
    """The names covering at least `floor` of a region, most first (at least the top one)."""
    order = np.argsort(-shares)
    names = [COLOURS[i] for i in order if shares[i] >= floor]
    return names or ([COLOURS[order[0]]] if shares.sum() else [])
