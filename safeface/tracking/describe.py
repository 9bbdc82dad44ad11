"""Search by description: a closed vocabulary, parsed and scored against tracks.

The vocabulary (documented in the README):

- colours: black, white, grey, red, orange, yellow, green, blue, purple, pink, brown (and the
  synonyms in colours.COLOUR_SYNONYMS: gray, navy, beige, ...);
- garments that name the top: top, shirt, t-shirt, jacket, coat, jumper, sweater, hoodie, blouse;
- garments that name the bottom: trousers, pants, jeans, skirt, shorts, bottom, bottoms, leggings;
- sizes: child (or kid), adult, tall.

"red top, blue trousers, child" asks for red on the upper body, blue on the lower body and a
small person. A colour with no garment after it ("in red") applies to the whole figure. Every
other word is refused with this list: the search can never be asked about a face, skin, hair,
age, sex or anything else about who a person is.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np

from ..errors import InvalidArgument
from ..lookalike import as_latin, describe, spelled
from .colours import COLOUR_SYNONYMS, COLOURS

TOPS = ("top", "shirt", "t-shirt", "tshirt", "jacket", "coat", "jumper", "sweater", "hoodie", "blouse")
BOTTOMS = ("trousers", "pants", "jeans", "skirt", "shorts", "bottom", "bottoms", "leggings")
SIZES = {"child": "child", "kid": "child", "adult": "adult", "tall": "tall"}
FILLER = ("a", "an", "and", "in", "with", "wearing", "the", "person", "someone", "small", "dark", "light")
_WORDS = re.compile(r"[\s,;.]+")
# Height relative to the scene's typical person at the same place (perspective fitted per video).
CHILD_BELOW = 0.8
TALL_ABOVE = 1.1


@dataclass(frozen=True)
class Query:
    top: tuple[str, ...] = ()
    bottom: tuple[str, ...] = ()
    anywhere: tuple[str, ...] = ()
    size: str = ""

    def __post_init__(self) -> None:
        # A query made by hand (and ranked through `TrackResult.looks`) is held to the closed
        # vocabulary too: its text is what the audit log records before the search is made.
        for part in (self.top, self.bottom, self.anywhere):
            if not isinstance(part, tuple) or not all(isinstance(c, str) and c in COLOURS for c in part):
                raise InvalidArgument(f"a query's garments take colour names only, as a tuple: {', '.join(COLOURS)}.")
        if self.size not in ("",) + tuple(set(SIZES.values())):
            raise InvalidArgument(f"a query's size is one of: {', '.join(sorted(set(SIZES.values())))}.")
        if self.empty:
            raise InvalidArgument("a query names at least one colour or a size.")

    @property
    def empty(self) -> bool:
        return not (self.top or self.bottom or self.anywhere or self.size)

    @property
    def text(self) -> str:
        """The query in its closed words, as the audit log names a search."""
        parts = [f"{name} {'/'.join(v)}" for name, v in (("top", self.top), ("bottom", self.bottom),
                                                         ("anywhere", self.anywhere)) if v]
        return ", ".join(parts + ([f"size {self.size}"] if self.size else []))


def vocabulary() -> dict[str, list[str]]:
    return {"colours": list(COLOURS) + sorted(COLOUR_SYNONYMS), "tops": list(TOPS), "bottoms": list(BOTTOMS),
            "sizes": sorted(SIZES)}


def parse(text: str) -> Query:
    """The query a description asks for; InvalidArgument naming any word outside the vocabulary."""
    if not isinstance(text, str) or not text.strip():
        raise InvalidArgument("describe the person with colours and garments, e.g. \"red top, blue trousers, child\".")
    _check_plain_letters(text)
    s = text.lower()
    for phrase, name in COLOUR_SYNONYMS.items():
        if " " in phrase:
            s = s.replace(phrase, name)
    words = [w for w in _WORDS.split(s) if w]
    top: list[str] = []
    bottom: list[str] = []
    anywhere: list[str] = []
    pending: list[str] = []
    size = ""
    unknown: list[str] = []
    for w in words:
        w = COLOUR_SYNONYMS.get(w, w)
        if w in COLOURS:
            pending.append(w)
        elif w in TOPS:
            top += pending
            pending = []
        elif w in BOTTOMS:
            bottom += pending
            pending = []
        elif w in SIZES:
            size = SIZES[w]
        elif w not in FILLER:
            unknown.append(w)
    anywhere += pending
    if unknown:
        v = vocabulary()
        raise InvalidArgument(f"the description can use only colours, garments and sizes; not understood: "
                              f"{', '.join(repr(u[:32]) for u in unknown[:5])}. Colours: {', '.join(COLOURS)}; "
                              f"tops: {', '.join(TOPS)}; bottoms: {', '.join(BOTTOMS)}; sizes: {', '.join(v['sizes'])}.")
    if not (top or bottom or anywhere or size):
        raise InvalidArgument("the description names no colour, garment colour or size.")
    return Query(tuple(dict.fromkeys(top)), tuple(dict.fromkeys(bottom)), tuple(dict.fromkeys(anywhere)), size)


def _check_plain_letters(text: str) -> None:
    """Refuse a word holding a character outside ASCII (spaces of any kind still part words). The
    vocabulary is plain ASCII words, and the words are judged as written, before lower():
    "тор" in Cyrillic, which prints as "top", was refused as not understood: 'тор', a refusal
    nobody could act on, while a Kelvin sign, which lower() makes a "k", read as "kid"."""
    for word in _WORDS.split(text):
        odd = next((c for c in word if not c.isascii()), None)
        if odd is not None:
            drawn = as_latin(word)
            like = f", which prints like {drawn!r}" if drawn != word and drawn.isascii() else ""
            raise InvalidArgument(f"the description is read in plain ASCII letters: the word {spelled(word[:32])} "
                                  f"holds {describe(odd)}{like}; type it again in ASCII.")


# How much a pixel of each name counts for an asked colour. CCTV greys out colour: navy and dark
# brown read as black, a red jacket in shade as brown, a faded blue as grey. A region that is
# mostly the asked colour still scores highest; a near colour earns partial credit instead of
# none, so one dim frame does not sink the right person below a stranger.
CONFUSION: dict[str, dict[str, float]] = {
    "black": {"grey": 0.3, "blue": 0.3, "brown": 0.3, "purple": 0.2},
    "white": {"grey": 0.4, "yellow": 0.2, "pink": 0.2},
    "grey": {"white": 0.4, "black": 0.4, "blue": 0.2, "brown": 0.2},
    "red": {"pink": 0.5, "orange": 0.4, "brown": 0.4, "purple": 0.3},
    "orange": {"red": 0.4, "yellow": 0.4, "brown": 0.4},
    "yellow": {"orange": 0.4, "white": 0.2, "green": 0.2, "brown": 0.2},
    "green": {"blue": 0.3, "yellow": 0.2, "grey": 0.2},
    "blue": {"black": 0.35, "grey": 0.3, "purple": 0.3, "green": 0.2},
    "purple": {"blue": 0.3, "pink": 0.3, "red": 0.3, "black": 0.2},
    "pink": {"red": 0.5, "purple": 0.3, "white": 0.2},
    "brown": {"black": 0.3, "orange": 0.4, "red": 0.3, "grey": 0.2, "yellow": 0.2},
}
_WEIGHTS = {c: np.array([1.0 if n == c else CONFUSION[c].get(n, 0.0) for n in COLOURS], np.float32)
            for c in COLOURS}


def _share(shares: np.ndarray, names: tuple[str, ...]) -> float:
    """The share of a region that fits the asked colours, near colours counting in part. Several
    colours for one garment (a "red and white top") share it: each counts."""
    w = np.max([_WEIGHTS[n] for n in names], axis=0)
    return min(1.0, float(w @ shares) * (1.0 if len(names) == 1 else 1.2))


def score(q: Query, upper: np.ndarray, lower: np.ndarray, relative_height: float) -> float:
    """0 to 1: how well a track's clothing shares and height fit the query. Top and bottom are
    scored apart and both must fit: the geometric mean lets no part make up for a miss."""
    parts: list[float] = []
    if q.top:
        parts.append(_share(upper, q.top))
    if q.bottom:
        parts.append(_share(lower, q.bottom))
    if q.anywhere:
        parts.append(_share((upper + lower) / 2, q.anywhere))
    if q.size:
        if q.size == "child":
            fit = 1.0 if relative_height < CHILD_BELOW else max(0.0, 1.0 - (relative_height - CHILD_BELOW) * 4)
        elif q.size == "tall":
            fit = 1.0 if relative_height > TALL_ABOVE else max(0.0, 1.0 - (TALL_ABOVE - relative_height) * 4)
        else:
            fit = 1.0 if relative_height >= CHILD_BELOW else max(0.0, 1.0 - (CHILD_BELOW - relative_height) * 4)
        parts.append(fit)
    if not parts:
        return 0.0
    return float(np.exp(np.mean(np.log(np.maximum(parts, 0.02)))))


def shrink(shares: np.ndarray, observations: int, scene: np.ndarray, prior: float = 10.0) -> np.ndarray:
    """A track's colour shares pulled toward the scene's average by `prior` frames' weight: a
    track seen in three frames has an unsure summary and should not outrank one seen in three
    hundred on the strength of a lucky frame."""
    return (observations * shares + prior * scene) / (observations + prior)
