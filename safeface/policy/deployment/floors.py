"""Floors under every profile: protections that hold whatever the deployment's profiles say.

Private spaces (CN-15): no face recognition in toilets, baths, changing rooms, hotel rooms and the
like. The catalogue holds this rule only under cn-2025, but no profile permits it (GDPR 9 and BIPA
have no exemption that would make a camera in a toilet lawful), so it applies to all of them.
Location names are compared after normalisation, so "Changing Room", "changing_rooms" and
fullwidth "Ｃｈａｎｇｉｎｇ Ｒｏｏｍ" are all the same place.

Minors (CN-06): a child's consent must come from a parent or guardian under every profile; the
age differs: 14 (cn-2025, Measures art. 7), 16 (eu, GDPR 8, which lets a member state choose
13 to 16), 13 (us-bipa, following COPPA). A stacked deployment uses the highest.
"""

from __future__ import annotations

import datetime as dt
import unicodedata
from typing import Optional, Sequence

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


def private_space(*names: object) -> Optional[str]:
    """The private space that one of `names` (location class, kind, ...) names, or None."""
    compact = {"".join(t.split()): t for t in PRIVATE_SPACES}
    longest = max(len(t.split()) for t in PRIVATE_SPACES) + 1  # "rest room", "public bath house"
    for name in names:
        words = location_words(name)
        # Word runs written together: "changing room", "changingroom" and "changing-room" alike.
        for i in range(len(words)):
            for n in range(1, longest + 1):
                if i + n <= len(words) and "".join(words[i:i + n]) in compact:
                    return compact["".join(words[i:i + n])]
        text = unicodedata.normalize("NFKC", str(name or ""))
        for term in PRIVATE_SPACES_ZH:
            if term in text:
                return term
    return None


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
    if age_on(born, today) < age_limit and not (guardian or "").strip():
        return (f"the subject is under {age_limit}: the consent must be given by a parent or guardian and name "
                "them.")
    return None


__all__ = ["PRIVATE_SPACES", "PRIVATE_SPACES_ZH", "GUARDIAN_AGES", "EU_GUARDIAN_AGES", "location_words",
           "normalize_location", "private_space", "guardian_age", "age_on", "guardian_problem"]
