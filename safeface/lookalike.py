"""Text that prints as other text: what makes a name (a subject id, a purpose) a look-alike of
another. One place for the checks, so that an id the gallery refuses and a purpose name the
deployment refuses are judged alike."""

from __future__ import annotations

import unicodedata
from typing import Optional

# Code points that show nothing (Unicode's Default_Ignorable_Code_Point, and the blank fillers):
# zero-width space and joiners, direction marks and overrides, variation selectors, byte-order
# mark, soft hyphen. "alice" with one of them prints as alice.
_IGNORABLE = ((0x00AD, 0x00AD), (0x034F, 0x034F), (0x061C, 0x061C), (0x115F, 0x1160), (0x17B4, 0x17B5),
              (0x180B, 0x180F), (0x200B, 0x200F), (0x202A, 0x202E), (0x2060, 0x206F), (0x2800, 0x2800),
              (0x3164, 0x3164), (0xFE00, 0xFE0F), (0xFEFF, 0xFEFF), (0xFFA0, 0xFFA0), (0xFFF0, 0xFFF8),
              (0x1BCA0, 0x1BCA3), (0x1D173, 0x1D17A), (0xE0000, 0xE0FFF))

# Scripts whose letters pass for Latin ones ("dеmo" with a Cyrillic е reads as "demo").
CONFUSABLE_WITH_LATIN = ("CYRILLIC", "GREEK", "ARMENIAN", "CHEROKEE")


def hidden_char(text: str) -> Optional[str]:
    """The first code point of `text` that shows nothing (or any other format character)."""
    for c in text:
        if unicodedata.category(c) == "Cf" or any(lo <= ord(c) <= hi for lo, hi in _IGNORABLE):
            return c
    return None


def compatibility_char(text: str) -> Optional[str]:
    """The first code point that Unicode's compatibility normalisation (NFKC) writes otherwise (a
    full-width "ａ" is "a", the ligature "ﬁ" is "fi", a superscript "²" is "2"), or None."""
    if unicodedata.normalize("NFKC", text) == text:
        return None
    # The first place where the text stops being its own normal form (a decomposed accent only
    # shows there, with the letter before it).
    return next(text[i] for i in range(len(text)) if unicodedata.normalize("NFKC", text[:i + 1]) != text[:i + 1])


def lookalike_scripts(text: str) -> list[str]:
    """The scripts other than Latin whose letters `text` mixes with Latin ones, where they look
    alike ("CYRILLIC" for "аlice" with a Cyrillic а); empty when it is written in one of them, or
    in any other script (a Chinese name)."""
    scripts = {unicodedata.name(c, "").split(" ")[0] for c in text if c.isalpha()}
    if "LATIN" not in scripts:
        return []
    return sorted(scripts & set(CONFUSABLE_WITH_LATIN))


def first_of_script(text: str, script: str) -> str:
    """The first letter of `text` in `script` (to name it in an error)."""
    return next(c for c in text if c.isalpha() and unicodedata.name(c, "").startswith(script + " "))


def describe(c: str) -> str:
    """A code point as a person can look it up: "U+0430 CYRILLIC SMALL LETTER A"."""
    name = unicodedata.name(c, "")
    return f"U+{ord(c):04X}" + (f" {name}" if name else "")
