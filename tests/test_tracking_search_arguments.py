"""Odd arguments to a track search are typed refusals, never a bare Python error."""

from __future__ import annotations

import numpy as np
import pytest

from safeface.errors import InvalidArgument
from safeface.tracking.run import Person, TrackResult
from safeface.tracking.search import Looks


def _result() -> TrackResult:
    flat = np.full(11, 1 / 11, np.float32)
    person = Person("ab12cd34", list(range(6)), [(0.0, 0.0, 10.0, 20.0)] * 6, ["grey"], ["grey"], 1.0, None)
    return TrackResult((person,), 10.0, 6, 64, 64, None, "motion", Looks([flat], [flat], [6], [1.0]))  # type: ignore[arg-type]


@pytest.mark.parametrize("top_k", [float("nan"), float("inf"), None, "3", 2.5, True])
def test_a_hit_count_that_is_no_whole_number_is_refused(top_k: object) -> None:
    """An app asks for NaN, infinity, None or text hits: a bare ValueError, OverflowError or
    TypeError escaped (text was read as a number); each is InvalidArgument."""
    with pytest.raises(InvalidArgument):
        _result().search("red top", top_k)  # type: ignore[arg-type]


@pytest.mark.parametrize("text, named", [
    ("red \u0442\u043e\u0440", "U+0442 CYRILLIC SMALL LETTER TE"),  # "тор": Cyrillic, printed as "top"
    ("\u212aid", "U+212A KELVIN SIGN"),  # lower() made it "kid", while "ｋｉｄ" was refused
    ("\uff52\uff45\uff44 top", "U+FF52 FULLWIDTH LATIN SMALL LETTER R"),
    ("red to\u200bp", "U+200B ZERO WIDTH SPACE"),
    ("P\u0130NK top", "U+0130 LATIN CAPITAL LETTER I WITH DOT ABOVE"),
])
def test_a_description_in_look_alike_letters_is_refused_naming_the_letter(text: str, named: str) -> None:
    """The vocabulary is plain ASCII words. "red тор" was refused as not understood: 'тор', which
    prints as the word it is refusing, while a Kelvin sign was taken as a "k": a description is
    judged on the letters written, and a refusal names the odd one and spells the word in escapes."""
    from safeface.tracking import parse

    with pytest.raises(InvalidArgument) as caught:
        parse(text)
    said = str(caught.value)
    assert named in said
    odd = next(w for w in text.split() if not w.isascii())
    assert ascii(odd) in said


def test_a_description_with_unicode_spaces_or_capitals_still_reads() -> None:
    """A no-break space between words is a space (pasted text), and capitals are the same words."""
    from safeface.tracking import parse

    assert parse("RED top,\u00a0blue\u2003trousers").text == "top red, bottom blue"
