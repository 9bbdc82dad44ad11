"""Text that prints as other text: what makes a name (a subject id, a purpose) a look-alike of
another. One place for the checks, so that an id the gallery refuses and a purpose name the
deployment refuses are judged alike.

Unicode's own answer (UTS #39: confusable skeletons, Script_Extensions) needs data Python does
not ship; these checks take the cases that need none: invisible code points, compatibility
forms, scripts mixed within a word, Latin's phonetic letters and marks that draw nothing new."""

from __future__ import annotations

import re
import unicodedata
from typing import Optional, Sequence

from idna.core import valid_contextj  # Unicode's joining types, which Python's unicodedata lacks

# Code points that show nothing (Unicode's Default_Ignorable_Code_Point, and the blank fillers):
# zero-width space and joiners, direction marks and overrides, variation selectors, byte-order
# mark, soft hyphen. "alice" with one of them prints as alice.
_IGNORABLE = ((0x00AD, 0x00AD), (0x034F, 0x034F), (0x061C, 0x061C), (0x115F, 0x1160), (0x17B4, 0x17B5),
              (0x180B, 0x180F), (0x200B, 0x200F), (0x202A, 0x202E), (0x2060, 0x206F), (0x2800, 0x2800),
              (0x3164, 0x3164), (0xFE00, 0xFE0F), (0xFEFF, 0xFEFF), (0xFFA0, 0xFFA0), (0xFFF0, 0xFFF8),
              (0x1BCA0, 0x1BCA3), (0x1D173, 0x1D17A), (0xE0000, 0xE0FFF))

# Scripts whose letters pass for Latin ones ("dеmo" with a Cyrillic е reads as "demo").
CONFUSABLE_WITH_LATIN = ("CYRILLIC", "GREEK", "ARMENIAN", "CHEROKEE")
# Letters of those scripts, and of Lisu and Coptic, drawn as Latin ones in common fonts: a word
# of nothing else, beside a Latin word, reads as Latin ("bob-ο" with a Greek omicron is "bob-o").
_DRAWN_AS_LATIN = frozenset(
    "аеорсухіјѕԁԛԝүһѵӏАВЕКМНОРСТХІЈЅԚԜҮѴӀ"  # Cyrillic
    "οανρτικυϳΑΒΕΖΗΙΚΜΝΟΡΤΥΧ"  # Greek (accented letters left out: Greek and Russian names use them)
    "օսհոցզՕՍ"  # Armenian
    "ᎪᏴᏟᎠᎬᏀᎻᏆᏦᏞᎷᏃᎤᏢᏚᏙᏔᏩᎳᏒᏕᏫ"  # Cherokee
    "ⲟⲞⲣⲢⲥⲤ"  # Coptic
    + "".join(map(chr, range(0xA4D0, 0xA4F8))))  # Lisu: capitals of Latin's shapes, upright or turned
_DRAWN_AS_LATIN_SCRIPTS = frozenset(CONFUSABLE_WITH_LATIN + ("LISU", "COPTIC"))

# Latin letters for phonetics, not for names, many of them drawn as ordinary ones (ɑ for a, ɡ
# for g, ᴀ for A, ꜱ for s): IPA Extensions, Phonetic Extensions (and their supplement), Latin
# Extended-E, the small capitals of Latin Extended-D, the length marks (ː for a colon); and the
# click letters drawn as l and ll (ǀ, ǁ; ǂ and ǃ do not pass for letters).
_PHONETIC_LATIN = ((0x01C0, 0x01C1), (0x0250, 0x02AF), (0x02D0, 0x02D1), (0x1D00, 0x1DBF), (0xA730, 0xA731),
                   (0xA7AE, 0xA7AF), (0xAB30, 0xAB6F))
# Compatibility characters that are ordinary letters of their orthography: Armenian "և" (as in
# the name Գևորգ) is written so, not as the two letters NFKC makes of it.
_ORTHOGRAPHIC = frozenset("\u0587")

# Scripts that are written together within one word: Japanese mixes Han, hiragana and katakana,
# Korean hangul and Han, Chinese Han and bopomofo; each takes Latin letters too ("VIP识别",
# "IDカード"), none of which looks like them.
_WRITTEN_TOGETHER = ({"LATIN", "CJK", "HIRAGANA", "KATAKANA", "KATAKANA-HIRAGANA"}, {"LATIN", "HANGUL", "CJK"},
                     {"LATIN", "CJK", "BOPOMOFO"})
# Name prefixes that are one script under another name.
_SAME_SCRIPT = {"ARABIC-INDIC": "ARABIC", "EXTENDED": "ARABIC", "IDEOGRAPHIC": "CJK"}  # 々 and 〇 are Han
_DOT_ABOVE = "\u0307"


_ZWNJ, _ZWJ = "\u200c", "\u200d"
_VIRAMA = 9  # the canonical combining class of a virama (Indic scripts' vowel killer)
_SINHALA_AL_LAKUNA = "\u0dca"
_SINHALA_CONSONANTS = (0x0D9A, 0x0DC6)


def _sinhala_consonant(c: str) -> bool:
    return _SINHALA_CONSONANTS[0] <= ord(c) <= _SINHALA_CONSONANTS[1]


def joiner_shows(text: str, i: int) -> bool:
    """Whether the joiner at text[i] is spelling that shows, in the two cases names need and no
    other spelling draws alike: a ZWNJ between two letters of a cursive script (Arabic, Syriac,
    N'Ko, ...) that would otherwise join, by Unicode's joining types (RFC 5892's rule, from the
    `idna` package's data: the Persian "مهدی‌زاده"); and a ZWJ between a Sinhala consonant with
    its al-lakuna and the next consonant (the "ශ්‍රී" of many Sinhala names). After a virama in
    other scripts a joiner is not taken: there another spelling can draw the same (Malayalam's
    atomic chillu letters, Marathi's eyelash ra), or it draws nothing (Thai)."""
    c = text[i]
    if c == _ZWJ:
        return (1 < i < len(text) - 1 and text[i - 1] == _SINHALA_AL_LAKUNA and _sinhala_consonant(text[i - 2])
                and _sinhala_consonant(text[i + 1]))
    if c != _ZWNJ or (i > 0 and unicodedata.combining(text[i - 1]) == _VIRAMA):
        return False
    try:
        return bool(valid_contextj(text, i))
    except ValueError:  # idna names its neighbours, and Python names no Tangut ideograph: no joining to keep
        return False


def spelling_joiners_dropped(text: str) -> str:
    """`text` without the joiners joiner_shows takes, so that the letters either side are read
    as one word (a ZWNJ between an Arabic and a Syriac letter is no word break)."""
    return "".join(c for i, c in enumerate(text) if not (c in (_ZWNJ, _ZWJ) and joiner_shows(text, i)))


# Text operators read in a listing or the audit log (a key's label, an export's recipient): no
# control, format (a right-to-left override), surrogate or line-separator character changes what
# they read of it, or of what follows it.
_NOT_PLAIN = frozenset({"Cc", "Cf", "Cs", "Zl", "Zp"})


def not_plain_char(text: str) -> Optional[str]:
    """The first control, format, surrogate or line-separator character of `text`, if any."""
    return next((c for c in text if unicodedata.category(c) in _NOT_PLAIN), None)


def hidden_char(text: str, *, spelling_joiners: bool = False) -> Optional[str]:
    """The first code point of `text` that shows nothing (or any other format character). With
    `spelling_joiners`, a joiner that changes how its neighbours are drawn (joiner_shows) is not
    one."""
    for i, c in enumerate(text):
        if unicodedata.category(c) == "Cf" or any(lo <= ord(c) <= hi for lo, hi in _IGNORABLE):
            if spelling_joiners and joiner_shows(text, i):
                continue
            return c
    return None


def shows_nothing(text: str) -> bool:
    """Whether `text` prints as nothing at all: empty, or only white space, control characters,
    lone surrogates and code points that show nothing (a zero-width space, a Hangul filler, a
    braille blank). A name written so names no one, though a check for an empty string (or
    str.strip) lets it pass."""
    return all(c.isspace() or unicodedata.category(c) in ("Cc", "Cs") or hidden_char(c) is not None for c in text)


def compatibility_char(text: str) -> Optional[str]:
    """The first code point that Unicode's compatibility normalisation (NFKC) writes otherwise (a
    full-width "ａ" is "a", the ligature "ﬁ" is "fi", a superscript "²" is "2"), or None."""
    text = "".join(c for c in text if c not in _ORTHOGRAPHIC)
    if unicodedata.normalize("NFKC", text) == text:
        return None
    # The first place where the text stops being its own normal form (a decomposed accent only
    # shows there, with the letter before it).
    return next(text[i] for i in range(len(text)) if unicodedata.normalize("NFKC", text[:i + 1]) != text[:i + 1])


def script_of(c: str) -> Optional[str]:
    """The script a letter or digit is written in, read from its name ("CYRILLIC SMALL LETTER A"
    is Cyrillic); None for what every script shares (ASCII digits, modifier letters such as the
    ʻokina) and for marks, which take their letter's script."""
    if unicodedata.category(c)[0] not in "LN" or "0" <= c <= "9":
        return None
    first = unicodedata.name(c, "").split(" ")[0]
    if first in ("", "MODIFIER", "DIGIT"):
        return None
    return _SAME_SCRIPT.get(first, first)


def mixed_word(text: str) -> Optional[tuple[str, list[str]]]:
    """The first word (letters, marks and digits between other characters) that mixes scripts not
    written together, with those scripts: "аlice" (a Cyrillic а among Latin letters), "b၀b"
    (a Myanmar zero), "Πетров" (a Greek Π in a Cyrillic name). None when every word keeps to
    one script, so "EMP-0042 Дмитрий" and "Σοφία García" pass."""
    word: list[str] = []
    for c in text + " ":
        if unicodedata.category(c)[0] in "LMN":
            word.append(c)
            continue
        scripts = {s for s in map(script_of, word) if s is not None}
        if len(scripts) > 1 and not any(scripts <= together for together in _WRITTEN_TOGETHER):
            return "".join(word), sorted(scripts)
        word = []
    return None


def latin_lookalike_word(text: str) -> Optional[str]:
    """In text with a Latin word, a word written in another script only in letters drawn as
    Latin ones ("bob-ο", "alice асе", "ꓙ.Smith"), or None."""
    words = re.findall(r"[^\W_]+", text)
    if not any("LATIN" in map(script_of, w) for w in words):
        return None
    return next((w for w in words if set(map(script_of, w)) & _DRAWN_AS_LATIN_SCRIPTS
                 and all(c in _DRAWN_AS_LATIN for c in w if script_of(c) is not None)), None)


def foreign_digit(text: str) -> Optional[str]:
    """A decimal digit other than 0-9 in text that also holds ASCII letters or digits ("EMP-၀၀42"
    with Myanmar zeros, "user١"), or None: digits of one kind only (an Arabic name with its own
    digits) pass."""
    if not any(c.isascii() and c.isalnum() for c in text):
        return None
    return next((c for c in text if unicodedata.category(c) == "Nd" and not "0" <= c <= "9"), None)


def lookalike_scripts(text: str) -> list[str]:
    """The scripts other than Latin whose letters `text` mixes with Latin ones anywhere, where
    they look alike ("CYRILLIC" for "dеmo" with a Cyrillic е); empty when it is written in one
    of them, or in any other script (a Chinese name)."""
    scripts = {s for s in map(script_of, text) if s is not None}
    if "LATIN" not in scripts:
        return []
    return sorted(scripts & set(CONFUSABLE_WITH_LATIN))


def phonetic_latin(text: str) -> Optional[str]:
    """The first Latin letter made for phonetics rather than names (ɑ, ɡ, ᴀ, ǀ), or None."""
    return next((c for c in text if any(lo <= ord(c) <= hi for lo, hi in _PHONETIC_LATIN)), None)


def mark_that_draws_nothing(text: str) -> Optional[str]:
    """A combining mark that changes no letter's look, or makes it another letter's: a dot above
    on i or j (also behind marks below it), a mark above on the dotless ı or ȷ (ı with an acute is í), or the same mark twice
    in a row (counted decomposed: é and an acute is e with two). None otherwise."""
    decomposed = unicodedata.normalize("NFD", text)
    if _dot_of_i_dropped(decomposed) != decomposed:  # also behind marks below: "ị" and a dot
        return _DOT_ABOVE
    for prev, c in zip(text, text[1:]):
        if prev in "ıȷ" and unicodedata.combining(c) == 230:
            return c
    return next((c for prev, c in zip(decomposed, decomposed[1:]) if unicodedata.combining(c) and c == prev), None)


def other_space(text: str) -> Optional[str]:
    """A space other than the plain one that compatibility normalisation leaves as it is (the
    Ogham space mark), or None."""
    return next((c for c in text if unicodedata.category(c) == "Zs" and c != " "), None)


def first_of_script(text: str, script: str) -> str:
    """The first letter or digit of `text` in `script` (to name it in an error)."""
    return next(c for c in text if script_of(c) == script)


def slipped_in(word: str, scripts: Sequence[str]) -> str:
    """The letter to name in a word that mixes `scripts` (mixed_word): the first of the script
    the word has least of, the one slipped in."""
    return first_of_script(word, min(scripts, key=lambda x: sum(script_of(ch) == x for ch in word)))


def spelled(value: object) -> str:
    """A value as an error shows it: repr, and escapes too where it is text outside ASCII, so a
    look-alike letter shows where it differs ("'bⅼur' ('b\\u217cur')")."""
    if isinstance(value, str) and not value.isascii():
        return f"{value!r} ({ascii(value)})"
    return repr(value)


def describe(c: str) -> str:
    """A code point as a person can look it up: "U+0430 CYRILLIC SMALL LETTER A"."""
    name = unicodedata.name(c, "")
    return f"U+{ord(c):04X}" + (f" {name}" if name else "")


# The Latin letter (or digit) each letter of _DRAWN_AS_LATIN, and other letters drawn as Latin
# ones, is written as for `skeletons`: Cyrillic, Greek, Armenian, Cherokee, Coptic, and Latin's own
# phonetic and historic twins of plain letters. A letter takes its accents along (decomposed
# first: "ё" is "ë"). Lisu is left out: its letters are Latin capitals upright or turned, and a
# turned one is no plain letter; so are the dotless "ı" and "ȷ", which Turkish and others write
# for another sound ("Aydın" is not "Aydin").
_AS_LATIN = dict(zip(
    "аеорсухіјѕԁԛԝүһѵӏѡгҽбꙇАВЕКМНОРСТХІЈЅԚԜҮѴӀҺѠУЬԌЗӠꙄ"
    "οανρτικυϳγσΑΒΕΖΗΙΚΜΝΟΡΤΥΧͿϜϺ"
    "օսհոցզագռքՕՍՏ"
    "ᎪᏴᏟᎠᎬᏀᎻᏆᏦᏞᎷᏃᏢᏚᏙᏔᏩᎳᏒᎡᎢᎩᎫᎽᏕᏳᎥᏂᏎᏏᏧᏮ"
    "ⲟⲞⲣⲢⲥⲤⲎⲔⲘⲚⲦⲨⲬⲒⲄϨⳌ"
    "ɑɡɩɪʏᴀᴄᴅᴇᴊᴋᴍᴏᴘᴛᴜᴠᴡᴢꜱǀƖƦƧƷƼȜꞴꞳꞲ",
    "aeopcyxijsdqwyhvlwre6iABEKMHOPCTXIJSQWYVlHWYbG332"
    "oavptikujyoABEZHIKMNOPTYXJFM"
    "ouhngqwqnfOUS"
    "ABCDEGHIKLMZPSVWWWRRTYJYSGiH4bd6"
    "oOpPcCHKMNTYXlr23"
    "agiiyacdejkmoptuvwzsllR235" "3BXJ"))
# Punctuation drawn as ASCII's ("EMP‐0042" with a Unicode hyphen, "O’Brien", "j·smith").
_AS_ASCII = {**{c: "-" for c in "\u2010\u2011\u2012\u2013\u2014\u2015\u2043\u2212\u2796\ufe58\u02d7"},
             **{c: "'" for c in "\u2018\u2019\u201b\u2032\u02b9\u02bc\u02bb\u00b4\u0060"},
             **{c: '"' for c in "\u201c\u201d\u201f\u2033\u02ba"},
             **{c: "." for c in "\u00b7\u2027\u2219\u22c5\u30fb"},
             **{c: "/" for c in "\u2215\u2044\u29f8"}}
# Letters case mapping would make another spelling: German "ß" is not "ss" ("Strauß" and
# "Strauss" are two surnames); Armenian "և" (see _ORTHOGRAPHIC); the dotless "ı" and "ȷ", whose
# capitals are the plain I and J ("Aydın" is not "Aydin").
_KEEP_CASE = frozenset("ß\u0587\u0131\u0237")


def _each(text: str, change: str) -> str:
    out = []
    for c in text:
        if c in _KEEP_CASE or c == "\u1e9e":  # capital ẞ is ß
            out.append("ß" if c == "\u1e9e" else c)
        else:
            out.append(c.upper() if change == "upper" else c.casefold())
    return "".join(out)


# Version 2 of the look (skeletons): what version 1 did not fold. Latin letters and digits drawn
# alike in common fonts (Unicode's confusables: "0" as O, "1" as l or I, "rn" as m, "vv" as w),
# read by small letters (where a capital drawn as I, in any script and with its accents, is read
# as "l", and a capital L kept apart from both) or by capitals (where "1" is I and "rn" is no M).
# "m" and "w" are written out as "rn" and "vv", so that "vw", "wv" and "vvv" read alike whatever
# the order. Also the dot of a Turkish capital "İ" (or any dot above an i or j, past marks below),
# which the small "i" draws anyway; Arabic letters that Arabic, Persian and Urdu keyboards write as
# different code points drawn alike (yeh, Farsi yeh and alef maksura; kaf and keheh; heh, ae and
# heh goal; teh marbuta and its Urdu form), the tatweel that only stretches a joint, and Persian
# digits written as Arabic-Indic ones.
#
# Version 3: Lisu's letters that are Latin capitals upright (its turned ones are no plain letter)
# and its tone letters drawn as a full stop and a comma; the Arabic-Indic one and the alef, both
# a stroke, as "1", and the Arabic-Indic seven, a V in Arabic and Persian alike, as "v". Each is
# written so before anything else, so version 3 reads alike all that version 2 did. Not folded,
# by choice: a small "cl" as "d", which would refuse honest ids by the dozen in a large gallery
# of initials and surnames ("clim" and "dim", "cloh" and "doh"); and words that mix case and
# script (an all-Greek "ΙΑΝ" beside "lAN"), which reading each letter at its own case would
# catch at the cost of pairs version 2 caught ("КӀАНТ" beside "к1ант").
LOOK_VERSION = 3
_LOOK_VERSIONS = (1, 2, 3)
_LISU_AS_LATIN = dict(zip("".join(map(chr, (0xA4D0, 0xA4D1, 0xA4D3, 0xA4D4, 0xA4D6, 0xA4D7, 0xA4D9, 0xA4DA, 0xA4DC, 0xA4DD,
                                            0xA4DF, 0xA4E0, 0xA4E1, 0xA4E2, 0xA4E3, 0xA4E6, 0xA4E7, 0xA4EA, 0xA4EB, 0xA4EC,
                                            0xA4EE, 0xA4F0, 0xA4F2, 0xA4F3, 0xA4F4))),
                          "BPDTGKJCZFMNLSRVHWXYAEIOU"))
_LISU_AS_LATIN["\ua4f8"], _LISU_AS_LATIN["\ua4f9"] = ".", ","
_ARABIC_AS_LATIN = {"\u0627": "1", "\u0661": "1", "\u06f1": "1", "\u0667": "v", "\u06f7": "v"}
_DRAWN_ALIKE_SMALL = (("m", "rn"), ("w", "vv"), ("0", "o"), ("1", "l"))
_DRAWN_ALIKE_CAPITALS = (("w", "vv"), ("0", "o"), ("1", "i"))  # read folded: "W" is "w", "I" is "i"
_ARABIC_ALIKE = {**dict.fromkeys("\u0649\u06cc", "\u064a"), "\u06a9": "\u0643", **dict.fromkeys("\u06d5\u06c1", "\u0647"),
                 "\u06c3": "\u0629", "\u0640": "", **{chr(0x06F0 + d): chr(0x0660 + d) for d in range(10)}}
# Capitals drawn as I (Latin's own, its capital iota, and those of other scripts), and a
# placeholder for a capital L in the small-letter reading: folded, it would meet them as "l".
_CAPITAL_I = frozenset("I\u0196") | frozenset(c for c, v in _AS_LATIN.items() if v in "Il" and c.isupper())
_CAPITAL_L = "\ue04c"  # a private-use code point: never in an id that passes the checks


def _dot_of_i_dropped(decomposed: str) -> str:
    """A dot above (U+0307) on i or j dropped, also behind marks below ("ị" with a dot)."""
    out: list[str] = []
    base = ""
    for c in decomposed:
        klass = unicodedata.combining(c)
        if klass == 0:
            base = c
        elif c == _DOT_ABOVE and base in "ij":
            continue
        elif klass == 230:
            base = ""  # a mark above between them: the dot is drawn above that
        out.append(c)
    return "".join(out)


def _drawn_alike(folded: str, pairs: tuple[tuple[str, str], ...]) -> str:
    """Version 2's folds of a reading (decomposed, case folded): Arabic letters, the dot of "i"
    and "j", then Latin's pairs."""
    out = _dot_of_i_dropped("".join(_ARABIC_ALIKE.get(c, c) for c in folded))
    for a, b in pairs:
        out = out.replace(a, b)
    return out


def as_latin(text: str) -> str:
    """`text` with each letter of another script drawn as a Latin one written as that Latin
    letter, in its own case ("аlice" with a Cyrillic а is "alice", "ХІѴ" is "XIV"), and a dot
    above an i or j dropped: the id a refused spelling was most likely meant as. Nothing else is
    folded ("rn" stays "rn", "0" stays "0")."""
    decomposed = _dot_of_i_dropped(unicodedata.normalize("NFD", text))
    return unicodedata.normalize("NFC", "".join(_AS_LATIN.get(c, c) for c in decomposed))


def skeletons(text: str, version: int = LOOK_VERSION) -> tuple[str, str]:
    """What `text` looks like, for telling two names that print alike, twice: read by its
    capitals and by its small letters, since a letter's two cases are drawn as different Latin
    letters (Cyrillic "Н" as H, "н" not; Greek "ν" as v, "Ν" as N; Latin "I" as l). Two names
    print alike when either reading is equal. Each reading: compatibility forms written plainly
    (NFKC), code points that show nothing dropped, every space a plain one, punctuation drawn as
    ASCII's written so, letters of other scripts drawn as Latin ones written as those ("сосоа" is
    "cocoa", "АННА" is "ahha"), case folded ("ALICE" is "alice"), and from `version` 2 the folds
    of LOOK_VERSION's comment ("EMP-O042" is "EMP-0042", "Ian" is "lan", "rnary" is "mary").
    Accents stay: "José" and "Jose" are told apart; so do "ß" and "ss", and an orthographic
    form NFKC would rewrite (Armenian "և"). Version 1 is kept to compare with rows stored
    under it."""
    shown = [_AS_ASCII.get(c, c) for c in unicodedata.normalize("NFC", text) if hidden_char(c) is None]
    plain = "".join(c if c in _ORTHOGRAPHIC else unicodedata.normalize("NFKC", c) for c in shown)
    # Again after NFKC, which writes some compatibility forms as these marks (a small hyphen).
    plain = "".join(" " if unicodedata.category(c) == "Zs" else _AS_ASCII.get(c, c) for c in plain)

    def latin(t: str) -> str:
        return "".join(_AS_LATIN.get(c, c) for c in unicodedata.normalize("NFD", t))

    if version not in _LOOK_VERSIONS:
        raise ValueError(f"look version must be one of {_LOOK_VERSIONS}, got {version!r}")
    if version >= 3:
        plain = unicodedata.normalize("NFD", plain)  # an alef under a hamza or madda is an alef too
        plain = "".join(_LISU_AS_LATIN.get(c, _ARABIC_AS_LATIN.get(c, c)) for c in plain)
    big = _each(latin(_each(plain, "upper")), "fold")
    if version < 2:
        return unicodedata.normalize("NFC", big), unicodedata.normalize("NFC", _each(latin(_each(plain, "fold")), "fold"))
    lettered = "".join("l" if c in _CAPITAL_I else _CAPITAL_L if c == "L" else c
                       for c in unicodedata.normalize("NFD", plain))
    small = _each(latin(_each(lettered, "fold")), "fold")
    return (unicodedata.normalize("NFC", _drawn_alike(big, _DRAWN_ALIKE_CAPITALS)),
            unicodedata.normalize("NFC", _drawn_alike(small, _DRAWN_ALIKE_SMALL)))
