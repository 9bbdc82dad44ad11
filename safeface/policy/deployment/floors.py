"""Floors under every profile: protections that hold whatever the deployment's profiles say.

Private spaces (CN-15): no face recognition in toilets, baths, changing rooms, hotel rooms and the
like. The catalogue holds this rule only under cn-2025, but no profile permits it (GDPR 9 and BIPA
have no exemption that would make a camera in a toilet lawful), so it applies to all of them.
Location names are compared after normalisation, so "Changing Room", "changing_rooms" and
fullwidth "Ｃｈａｎｇｉｎｇ Ｒｏｏｍ" are all the same place; so are names that only print as one
(lookalike.skeletons): "Rеstroom" with a Cyrillic е, "Hotel rοom" with a Greek ο, "R00M" with
zeros. A location word that mixes scripts, or a word of another script drawn only in Latin
shapes beside Latin words, is refused outright (check_location_names): such a name says one
thing to a reader and another to any list of words.

Minors (CN-06): a child's consent must come from a parent or guardian under every profile; the
age differs: 14 (cn-2025, Measures art. 7), 16 (eu, GDPR 8, which lets a member state choose
13 to 16), 13 (us-bipa, following COPPA). A stacked deployment uses the highest.
"""

from __future__ import annotations

import datetime as dt
import unicodedata
from typing import Any, Mapping, Optional, Sequence

from ...errors import ConfigError
from ...lookalike import (describe, hidden_char, latin_lookalike_word, mixed_word, script_of, shows_nothing, skeletons,
                          slipped_in)

# Singular forms (plurals are reduced before comparing), matched as whole words however they are
# spaced: "rest room" is "restroom".
PRIVATE_SPACES = (
    "toilet", "restroom", "bathroom", "washroom", "lavatory", "wc", "public bath", "bathhouse",
    "changing room", "locker room", "fitting room", "dressing room", "sauna", "steam room", "shower",
    "hotel room", "guest room", "dormitory",
)
# Chinese names are matched as substrings: Chinese writes no spaces between words.
PRIVATE_SPACES_ZH = ("厕所", "卫生间", "洗手间", "盥洗室", "更衣室", "试衣间", "浴室", "澡堂", "桑拿", "淋浴",
                     "客房", "宿舍")

GUARDIAN_AGES = {"cn-2025": 14, "eu": 16, "us-bipa": 13}
EU_GUARDIAN_AGES = range(13, 17)  # GDPR 8(1): member states may lower 16 to no less than 13


def _singular(word: str) -> str:
    if len(word) <= 2 or word.endswith("ss"):
        return word
    if word.endswith("ies") and len(word) > 4:
        return word[:-3] + "y"
    if word.endswith(("shes", "ches", "xes", "sses")):
        return word[:-2]
    if word.endswith("s"):
        return word[:-1]
    return word


def location_words(name: object, singular: bool = True) -> tuple[str, ...]:
    """A location name as lower-case words (singular unless told): Unicode NFKC (fullwidth
    letters become ASCII), case folded, every character that is not a letter or digit a space."""
    text = unicodedata.normalize("NFKC", str(name or "")).casefold()
    cleaned = "".join(c if unicodedata.category(c)[0] in "LN" else " " for c in text)
    return tuple(_singular(w) if singular else w for w in cleaned.split())


def normalize_location(name: object) -> str:
    """The name as a hyphenated key: "Public Place" and "public_place" are "public-place"."""
    return "-".join(location_words(name, singular=False))


_COMPACT = {"".join(t.split()): t for t in PRIVATE_SPACES}
_LONGEST = max(len(t.split()) for t in PRIVATE_SPACES) + 1  # "rest room", "public bath house"
# The catalogue as each of the two readings of skeletons draws it (by capitals, by small letters):
# a letter's two cases pass for different Latin letters (Cyrillic "Т" for T, "т" for none).
_DRAWN = tuple({skeletons(k)[reading]: t for k, t in _COMPACT.items()} for reading in (0, 1))


def _catalogued(words: Sequence[str], catalogue: Mapping[str, str]) -> Optional[str]:
    # Word runs written together: "changing room", "changingroom" and "changing-room" alike.
    for i in range(len(words)):
        for n in range(1, _LONGEST + 1):
            if i + n <= len(words) and "".join(words[i:i + n]) in catalogue:
                return catalogue["".join(words[i:i + n])]
    return None


def private_space(*names: object) -> Optional[str]:
    """The private space that one of `names` (location class, kind, ...) names, or None: as
    written, or as it prints, each word read by skeletons (then made singular), so that a
    look-alike letter of another script, or a digit drawn as a letter, hides nothing."""
    # Also with each capital I read as a small l, one glyph in most sans-serif fonts: a word of
    # mixed case ("HoteI room", "toiIet") escapes both readings, each of one case.
    names = names + tuple(str(n).replace("I", "l") for n in names if isinstance(n, str) and "I" in n)
    # And with a dotless ı read as i ("Toılet"), which no fold of either case writes so.
    names = names + tuple(str(n).replace("ı", "i") for n in names if isinstance(n, str) and "ı" in n)
    for name in names:
        found = _catalogued(location_words(name), _COMPACT)
        plain = location_words(name, singular=False)
        for reading, catalogue in enumerate(_DRAWN):
            found = found or _catalogued([_singular(skeletons(w)[reading]) for w in plain], catalogue)
        if found:
            return found
        text = unicodedata.normalize("NFKC", str(name or ""))
        for term in PRIVATE_SPACES_ZH:
            if term in text:
                return term
    return None


DIRECTION_MARKS = frozenset("\u200e\u200f\u061c")  # left-to-right, right-to-left, Arabic letter mark


def check_location_names(location: Mapping[str, Any]) -> None:
    """Raise ConfigError when location.class or location.kind holds a word that prints as
    another: letters of scripts not written together mixed in one word ("Rеstroom" with a
    Cyrillic е), or, beside Latin words, a word of another script made only of letters drawn as
    Latin ones ("Hotel ѕаunа"). A name wholly in another script ("Туалет", "Σάουνα") is its own
    and passes."""
    for field in ("class", "kind"):
        value = location.get(field)
        text = unicodedata.normalize("NFKC", value if isinstance(value, str) else str(value or ""))
        # A direction override draws "\u202emoortser" as "restroom", which no reading of the
        # letters in their stored order finds; a control or invisible code point hides a word.
        # The direction marks (LRM, RLM, ALM) move no letter, only where neutral punctuation sits,
        # and right-to-left editors write them in honest names.
        hidden = hidden_char("".join(c for c in text if c not in DIRECTION_MARKS), spelling_joiners=True) or next(
            (c for c in text if unicodedata.category(c) == "Cc"), None)
        if hidden is not None:
            raise ConfigError(f"location.{field} {ascii(text)} holds {describe(hidden)}, which changes how it "
                              "prints without being seen; write it plainly.")
        mixed = mixed_word(text)
        if mixed is not None:
            word, scripts = mixed
            named = " and ".join(s.title() for s in scripts)
            raise ConfigError(f"location.{field} {text!r}: the word {word!r} mixes {named} letters "
                              f"({describe(slipped_in(word, scripts))}), so it prints as a word it is not; write it "
                              f"in one script.")
        drawn = latin_lookalike_word(text)
        if drawn is not None:
            first = next(c for c in drawn if script_of(c) is not None)
            raise ConfigError(f"location.{field} {text!r}: the word {drawn!r} is written in "
                              f"{str(script_of(first)).title()} letters drawn as Latin ones ({describe(first)}) beside "
                              f"Latin words; write it in Latin letters.")


def guardian_age(profiles: Sequence[str], eu_age: int = GUARDIAN_AGES["eu"]) -> int:
    """Below this age a consent must be given by a parent or guardian: the highest age among the
    profiles, with `eu_age` (13-16, as the member state sets it) for eu."""
    ages = [eu_age if p == "eu" else GUARDIAN_AGES[p] for p in profiles if p in GUARDIAN_AGES]
    return max(ages) if ages else max(GUARDIAN_AGES.values())


def age_on(birth: dt.date, day: dt.date) -> int:
    return day.year - birth.year - ((day.month, day.day) < (birth.month, birth.day))


def guardian_problem(age_limit: int, birth_date: Optional[str], guardian: Optional[str],
                     today: dt.date) -> Optional[str]:
    """Why a consent cannot stand for a minor (CN-06 floor), or None. `age_limit` is the
    deployment's guardian age (guardian_age); the birth date is the one the consent declares,
    never inferred from the face. No declared birth date: the issuer vouches for an adult."""
    if not birth_date:
        return None
    try:
        born = dt.date.fromisoformat(birth_date)
    except (TypeError, ValueError):
        return "the declared birth date in the consent is not a date."
    # A guardian that prints as nothing (a zero-width space) names no one, as an empty one does.
    if age_on(born, today) < age_limit and shows_nothing(guardian or ""):
        return (f"the subject is under {age_limit}: the consent must be given by a parent or guardian and name "
                "them.")
    return None


__all__ = ["PRIVATE_SPACES", "PRIVATE_SPACES_ZH", "GUARDIAN_AGES", "EU_GUARDIAN_AGES", "location_words",
           "normalize_location", "private_space", "check_location_names", "guardian_age", "age_on", "guardian_problem"]
