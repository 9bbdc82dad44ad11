"""Subject pseudonyms: the gallery keys rows by HMAC-SHA256(subject id) under the deployment's
pseudonym key, so the subject's identifier itself is never stored.

A subject id is normalised first (normalize_subject): the same person typed two ways must get
the same pseudonym, or an erasure would miss the rows enrolled under the other spelling."""

from __future__ import annotations

import hashlib
import hmac
import unicodedata
from typing import Optional

from ...errors import ConfigError, InvalidArgument
from ...hashing import same_digest
from ...lookalike import (LOOK_VERSION, as_latin, compatibility_char, describe, foreign_digit, hidden_char,
                          latin_lookalike_word, mark_that_draws_nothing, mixed_word, other_space, phonetic_latin,
                          script_of, skeletons, slipped_in, spelling_joiners_dropped)

# Domain separation: the same key used for anything else would give unrelated digests.
_LABEL = b"safeface pseudonym v1\x00"
# Look digests of each version of lookalike.skeletons, under their own labels: a digest of one
# version never equals one of another.
_LOOK_LABELS = {1: b"safeface look v1\x00", 2: b"safeface look v2\x00", 3: b"safeface look v3\x00"}
MAX_SUBJECT_CHARS = 256
# Control characters, line and paragraph separators, unassigned and private-use code points,
# lone surrogates: never part of a name or an account id, and invisible in a log.
_REFUSED_CATEGORIES = frozenset({"Cc", "Zl", "Zp", "Cs", "Co", "Cn"})
# A new enrolment under an id that prints as another is refused (new_subject_problem): it would
# be a second person whom an erasure of the other id misses. Ids are pseudonymised as written, so
# subjects enrolled under one before keep their pseudonym.


def normalize_subject(subject_id: object) -> str:
    """The subject id as it is pseudonymised: Unicode NFC ("José" typed with a combining accent
    is "José"), leading and trailing white space removed ("bob " is "bob"). Case is kept:
    ids are the caller's and may be case-sensitive. Raises InvalidArgument for a non-string,
    an empty id, or one holding control characters."""
    if not isinstance(subject_id, str):
        raise InvalidArgument(f"a subject id must be a string, not {type(subject_id).__name__}.")
    s = unicodedata.normalize("NFC", subject_id).strip()
    if not s:
        raise InvalidArgument("a subject id must be a non-empty string (white space alone is empty).")
    if len(s) > MAX_SUBJECT_CHARS:
        raise InvalidArgument(f"a subject id may have at most {MAX_SUBJECT_CHARS} characters, not {len(s)}.")
    bad = [c for c in s if unicodedata.category(c) in _REFUSED_CATEGORIES]
    if bad:
        raise InvalidArgument(f"a subject id may not contain control or unassigned characters "
                              f"(found U+{ord(bad[0]):04X}); pass the id as printable text.")
    return s


def new_subject_problem(subject_id: object) -> Optional[str]:
    """Why an id may not name a new enrolment (a sentence naming the code point), or None: one
    that would print as another id (lookalike): a code point that shows nothing, a compatibility
    form (a full-width letter, a ligature, a no-break space), a space other than the plain one, a
    word mixing scripts (a Cyrillic а among Latin letters), a Latin letter made for phonetics (ɑ,
    ɡ), or a combining mark that draws nothing new (a dot above an i)."""
    s = normalize_subject(subject_id)
    why = ("it would print as another id and be a second person an erasure of that id misses. "
           "Enrol under the id as it is usually written")
    hidden = hidden_char(s, spelling_joiners=True)
    if hidden is not None:
        return (f"the subject id holds {describe(hidden)}, which shows nothing: {why}, without invisible characters "
                "(zero-width spaces and joiners, direction marks, variation selectors, byte-order marks).")
    compat = compatibility_char(s)
    if compat is not None:
        return (f"the subject id holds {describe(compat)}, a compatibility form of "
                f"{ascii(unicodedata.normalize('NFKC', compat))}: {why}, in plain characters.")
    space = other_space(s)
    if space is not None:
        return f"the subject id holds {describe(space)}, a space other than the plain one: {why}, with plain spaces."
    if "  " in s:  # a page shows two spaces as one ("alice  smith" beside "alice smith")
        return f"the subject id holds two spaces in a row: {why}, with single spaces between words."
    words = spelling_joiners_dropped(s)  # a joiner taken as spelling splits no word
    mixed = mixed_word(words)
    if mixed is not None:
        word, scripts = mixed
        c = slipped_in(word, scripts)
        return (f"a word of the subject id mixes {' and '.join(x.title() for x in scripts)} characters, such as "
                f"{describe(c)}: {why}, each word in one script.")
    drawn = latin_lookalike_word(words)
    if drawn is not None:
        c = next(ch for ch in drawn if script_of(ch) is not None)
        return (f"a word of the subject id is written in {str(script_of(c)).title()} letters that are drawn as Latin "
                f"ones, such as {describe(c)}, beside Latin words: {why}, in one script.")
    digit = foreign_digit(s)
    if digit is not None:
        return (f"the subject id holds {describe(digit)} beside the digits 0-9 or Latin letters: {why}, with one "
                "kind of digit.")
    odd = phonetic_latin(s) or mark_that_draws_nothing(s)
    if odd is not None:
        return (f"the subject id holds {describe(odd)}, which draws like a plain letter (or adds nothing to it): "
                f"{why}, in the letters of the language.")
    return None


def usual_spelling(subject_id: object) -> Optional[str]:
    """The id as a new enrolment must write it, for an id a new enrolment refuses, where that can
    be told from the id alone: without the code points that show nothing, compatibility forms
    written plainly (NFKC) and every space a plain one. None for an id a new enrolment takes (it
    is its own spelling, whatever NFKC makes of it: Armenian "և"), or where the usual spelling
    cannot be told (mixed scripts)."""
    s = normalize_subject(subject_id)
    if new_subject_problem(s) is None:
        return None
    plain = unicodedata.normalize("NFKC", "".join(c for c in s if hidden_char(c) is None))
    plain = " ".join(w for w in "".join(" " if unicodedata.category(c) == "Zs" else c for c in plain).split(" ") if w)
    try:
        usual = normalize_subject(plain)
    except InvalidArgument:  # nothing but invisible characters
        return None
    if new_subject_problem(usual) is not None:
        # A letter of another script drawn as a Latin one among Latin letters (a Cyrillic а), a
        # phonetic ɑ, a dot above an i: written as the Latin letter it is drawn as.
        usual = normalize_subject(as_latin(usual))
    return usual if usual != s and new_subject_problem(usual) is None else None


def pseudonymize(key: bytes, subject_id: str) -> str:
    """The subject's pseudonym: 64 hex digits of HMAC-SHA256(key, label || utf-8 normalised id)."""
    return _keyed(key, _LABEL, normalize_subject(subject_id))


def _keyed(key: bytes, label: bytes, text: str) -> str:
    """64 hex digits of HMAC-SHA256(key, label || utf-8 text), under a pseudonym key."""
    if len(key) < 32:
        raise ConfigError("the pseudonym key must be at least 32 bytes.")
    return hmac.new(key, label + text.encode("utf-8"), hashlib.sha256).hexdigest()


def look_digests(key: bytes, subject_id: str, version: int = LOOK_VERSION) -> tuple[str, str]:
    """Keyed digests of how the id prints (lookalike.skeletons, read by its capitals and by its
    small letters): two ids that differ only in case or in look-alike letters share one of them.
    A store keeps them beside each row so that a new subject whose id prints as an enrolled one
    can be refused; like the pseudonym, they reveal no id without the key. A row keeps the
    digests of the version it was stored under: it cannot be digested again (the id is not
    stored), so a new id is compared with older rows by their version's digests."""
    big, small = skeletons(normalize_subject(subject_id), version)
    return _keyed(key, _LOOK_LABELS[version], big), _keyed(key, _LOOK_LABELS[version], small)


def same_subject(a: object, b: object) -> bool:
    """Whether two subject ids name the same subject once normalised; False if either is invalid."""
    try:
        return normalize_subject(a) == normalize_subject(b)
    except InvalidArgument:
        return False


def same_pseudonym(a: str, b: str) -> bool:
    """Constant-time equality of two pseudonyms (they are keyed digests: compare them as secrets).
    Every character counts: an "ascii/replace" encoding made any two non-ASCII strings of one
    length equal ("é" and "?"); same_digest compares their UTF-8 bytes."""
    return same_digest(a, b)


_TOKEN_LABEL = b"safeface token ref v1\x00"


def token_pseudonym(key: bytes, token_id: str) -> str:
    """A consent or legal-basis token's id as stored and logged: a keyed digest under the
    pseudonym key, so a token id seen in one workspace cannot be found in another's records."""
    if not isinstance(token_id, str) or not token_id:
        raise ConfigError("a token id must be a non-empty string.")
    if len(key) < 32:
        raise ConfigError("the pseudonym key must be at least 32 bytes.")
    # surrogatepass: a lone surrogate (no token has one) digests instead of raising an untyped error.
    return "t-" + hmac.new(key, _TOKEN_LABEL + token_id.encode("utf-8", "surrogatepass"), hashlib.sha256).hexdigest()[:32]
