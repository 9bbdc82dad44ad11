"""What `analyze` may report about a face, and the sensitive attributes it refuses.

safeface infers no attribute of a person. `analyze` reports only technical facts about the
faces found (count, boxes, landmarks, detector score): an allow-list, so an attribute spelt in a
way the lexicon below misses is still refused (as unknown) and nothing is inferred. The lexicon
only decides which rule a refusal names, and catches the many spellings of sensitive requests:
case, punctuation, plurals and synonyms ("Skin-Tones", "ethnic origin", "mood", "smile").

Decisions (documented in the README): gender and sex are refused under every profile (EU-01 /
CN-18: inferring them is categorisation on a trait close to sex life and orientation, and no
attribute model is ever loaded); age is refused under CN-06 because an age must be declared,
never read from a face.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass
from typing import Optional, Sequence

from .rules import CONCEPTS

UNLISTED = "unlisted personal attribute"
ALLOWED = ("faces", "box", "landmarks", "score")
_ALLOWED_ALIASES = {"face": "faces", "count": "faces", "face_count": "faces", "faces": "faces", "box": "box",
                    "boxes": "box", "bbox": "box", "landmarks": "landmarks", "landmark": "landmarks",
                    "score": "score", "scores": "score", "detection_score": "score"}

# category -> (word stems that mark it, rule IDs by profile preference)
_CATEGORIES: dict[str, tuple[tuple[str, ...], dict[str, str]]] = {
    "race or ethnicity": (("race", "racial", "racist", "ethnic", "ethnicit", "skin", "skintone", "complexion", "ancestr",
                           "origin", "nationalit", "tribe", "tribal", "caucasian", "asian", "african", "hispanic",
                           "latino", "white", "black", "colour", "color"), CONCEPTS["sensitive"]),
    "religion or belief": (("religio", "faith", "belief", "believ", "philosoph", "muslim", "christian", "jewish",
                            "hindu", "buddhis", "atheis", "veil", "hijab", "turban", "spiritual"),
                           CONCEPTS["sensitive"]),
    "health": (("health", "disease", "illness", "ill", "sick", "medical", "disab", "pregnan", "syndrome",
                "disorder", "condition", "bmi", "weight", "obes", "genetic", "blind", "handicap"),
               {"cn-2025": "CN-18", "eu": "EU-01"}),
    "social class": (("class", "social", "caste", "income", "wealth", "rich", "poor", "poverty", "status",
                      "socioeconomic", "education"), {"cn-2025": "CN-18", "eu": "EU-01"}),
    "political opinion": (("politic", "party", "vote", "voter", "opinion", "ideolog", "union"),
                          {"eu": "EU-01", "cn-2025": "CN-18"}),
    "sex life or sexual orientation": (("orientation", "sexual", "sexuality", "gay", "lesbian", "homosex", "bisex",
                                        "heterosex", "queer", "lgbt", "transgender", "sex", "gender", "male",
                                        "female", "man", "woman"), {"eu": "EU-01", "cn-2025": "CN-18"}),
    "emotion": (("emotion", "mood", "feeling", "expression", "smil", "happ", "sad", "anger", "angry", "fear",
                 "disgust", "surprise", "sentiment", "affect", "stress", "anxi", "attention", "engagement",
                 "lie", "decepti", "frown", "joy"), {"eu": "EU-03", "cn-2025": "CN-18"}),
    "age": (("age", "aged", "ages", "old", "young", "minor", "child", "adult", "birth", "year"),
            {"cn-2025": "CN-06", "eu": "EU-01", "us-bipa": "CN-06"}),
    # Anything else that is not on the allow-list: refused as an attribute safeface never infers.
    UNLISTED: ((), CONCEPTS["sensitive"]),
}


@dataclass(frozen=True)
class AttributeRequest:
    requested: str
    allowed: Optional[str]  # the allowed attribute it names, or None
    category: Optional[str]  # the sensitive category it names, or None


def _words(text: str) -> list[str]:
    # Full-width letters and invisible characters (a zero-width space, a soft hyphen) read as
    # the plain word, so "ＡＧＥ" or "a\u200bge" is refused under age's own rule, not as unlisted.
    text = "".join(c for c in unicodedata.normalize("NFKC", text) if unicodedata.category(c) != "Cf")
    # Split camelCase too ("skinTone"), then on anything that is not a letter or digit.
    text = re.sub(r"([a-z])([A-Z])", r"\1 \2", text)
    return [w for w in re.split(r"[^a-z0-9]+", text.lower()) if w]


def _forms(w: str) -> set[str]:
    """The word and its possible singulars."""
    out = {w}
    for suf, rep in (("ies", "y"), ("es", ""), ("s", "")):
        if w.endswith(suf) and len(w) - len(suf) >= 2:
            out.add(w[: -len(suf)] + rep)
    return out


# What one analyze call may ask for: the technical facts are a handful of names.
MAX_ATTRIBUTES = 32
MAX_ATTRIBUTE_NAME = 64


def classify(name: str) -> AttributeRequest:
    words = _words(str(name))
    joined = "_".join(words)
    for category, (stems, _) in _CATEGORIES.items():
        for w in words:
            for form in _forms(w):
                for stem in stems:
                    short = len(stem) <= 3
                    if (short and form == stem) or (not short and form.startswith(stem)):
                        return AttributeRequest(name, None, category)
        # glued words ("skintone", "sexualorientation")
        glued = "".join(words)
        if any(len(stem) >= 5 and stem in glued for stem in stems):
            return AttributeRequest(name, None, category)
    allowed = _ALLOWED_ALIASES.get(joined)
    return AttributeRequest(name, allowed, None if allowed else UNLISTED)


def rule_for_category(category: str, profiles: Sequence[str]) -> str:
    """The refusing rule: the first active profile's rule for the category, else the catalogue's
    first (safeface refuses these whatever the profile)."""
    table = _CATEGORIES[category][1]
    for p in profiles:
        if p in table:
            return table[p]
    return next(iter(table.values()))
