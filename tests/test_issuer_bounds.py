"""Boundaries of the issuer's and the pseudonyms' refusals: token validity in days, token
reference key length, pseudonym equality."""

from __future__ import annotations

import datetime as dt

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from safeface.errors import ConfigError, InvalidArgument
from safeface.hazmat.templates.pseudonym import same_pseudonym, token_pseudonym
from safeface.policy.issuer import MAX_DAYS, issue_legal_basis

NOW = dt.datetime(2026, 1, 1, tzinfo=dt.timezone.utc)


def _basis(days: object) -> object:
    return issue_legal_basis(Ed25519PrivateKey.generate(), audience="dep-1", authority="Court", provision="s.1",
                             reference="r-1", purposes=["investigation"], days=days, now=NOW)[1]


def test_a_token_of_exactly_the_longest_validity_is_issued_and_one_more_day_is_refused() -> None:
    """`--days 36525` (a hundred years) signs a token expiring that many days on; 36525.5 is
    refused."""
    tok = _basis(MAX_DAYS)
    assert tok.expires_at - tok.issued_at == MAX_DAYS * 86400
    with pytest.raises(InvalidArgument, match="from 0 to 36525 days"):
        _basis(MAX_DAYS + 0.5)


def test_a_token_reference_key_of_31_bytes_is_refused_and_32_is_used() -> None:
    """Token references need a key of at least 32 bytes: one byte short is refused."""
    with pytest.raises(ConfigError, match="at least 32 bytes"):
        token_pseudonym(b"k" * 31, "token-1")
    assert token_pseudonym(b"k" * 32, "token-1").startswith("t-")


def test_pseudonyms_differing_only_in_a_lone_surrogate_are_not_the_same() -> None:
    """Two strings that differ only in unpaired surrogates never compare equal as pseudonyms."""
    assert not same_pseudonym("ab\ud800", "ab\ud801")
    assert same_pseudonym("ab\ud800", "ab\ud800")
