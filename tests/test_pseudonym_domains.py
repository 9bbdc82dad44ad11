"""Subject and token pseudonyms: refused ids, domain separation between digests, and subject matching."""

from __future__ import annotations

import pytest

from safeface.errors import ConfigError, InvalidArgument
from safeface.hazmat.templates.pseudonym import (look_digests, normalize_subject, pseudonymize, same_pseudonym,
                                                 same_subject, token_pseudonym)

KEY = b"k" * 32


def test_a_paragraph_separator_in_a_subject_id_is_invalid() -> None:
    """A subject id holding a paragraph separator (U+2029, which breaks a log line) is refused."""
    with pytest.raises(InvalidArgument, match="U\\+2029"):
        normalize_subject("alice\u2029bob")


def test_look_digests_of_different_versions_never_coincide() -> None:
    """A look digest of one lookalike version never equals one of another version for the same id."""
    seen = [set(look_digests(KEY, "alice", v)) for v in (1, 2, 3)]
    assert not (seen[0] & seen[1]) and not (seen[0] & seen[2]) and not (seen[1] & seen[2])


def test_a_token_pseudonym_is_not_a_subject_pseudonym() -> None:
    """A token id digested for the records does not equal the subject pseudonym of the same text."""
    assert token_pseudonym(KEY, "alice")[2:] != pseudonymize(KEY, "alice")[:32]


def test_a_token_id_with_a_lone_surrogate_gets_a_digest() -> None:
    """A token id holding a lone surrogate is digested like any other, not an encoding crash."""
    ref = token_pseudonym(KEY, "tok\ud800")
    assert ref.startswith("t-") and len(ref) == 34 and ref != token_pseudonym(KEY, "tok")


@pytest.mark.parametrize("a,b", [("", ""), ("bo\x00b", "bo\x00b"), ("alice", "ali\u0378ce"), (None, None)])
def test_invalid_subject_ids_never_name_the_same_subject(a: object, b: object) -> None:
    """An invalid subject id (empty, control or unassigned characters, not a string) matches no
    subject, itself included."""
    assert same_subject(a, b) is False


def test_a_token_reference_needs_a_full_length_key() -> None:
    """Token references are keyed like pseudonyms: a short key is refused, not used."""
    with pytest.raises(ConfigError, match="at least 32 bytes"):
        token_pseudonym(b"k" * 16, "token-1")


def test_pseudonyms_compare_equal_only_when_every_character_is() -> None:
    """Two strings that differ only in non-ASCII characters are not the same pseudonym."""
    p = pseudonymize(KEY, "alice")
    assert same_pseudonym(p, p) and not same_pseudonym(p, p[:-1] + "0" if p[-1] != "0" else p[:-1] + "1")
    assert not same_pseudonym("é", "?") and not same_pseudonym(p[:-1] + "é", p[:-1] + "è")
