"""The issuing side of consent and legal-basis tokens: what an operator's consent service (or an
authority) runs, holding the private key. The SDK itself only verifies (guard.py); `safeface
consent issue` uses this with a key file, or with the demo key of a --demo workspace. Any JOSE
library can mint the same tokens (README, "Tokens"); this is only the one that ships."""

from __future__ import annotations

import datetime as dt
import math
from typing import Any, Optional, Sequence

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from ..errors import ConfigError, InvalidArgument
from ..hazmat.templates.pseudonym import new_subject_problem, normalize_subject
from ..lookalike import shows_nothing
from .deployment import Deployment
from .tokens import ConsentToken, LegalBasisToken, check_operations, default_issuer, key_id, new_token_id, sign

DEFAULT_OPERATIONS = ("enroll", "verify", "identify")


MAX_DAYS = 36525  # a hundred years: longer than any consent or legal basis runs


def _common(key: Ed25519PrivateKey, audience: str, issuer: str, now: Optional[dt.datetime],
            days: float) -> dict[str, Any]:
    """The fields every minted token shares: audience, issuer, signing key id and validity."""
    # A number of days, not anything float() reads: nan, inf and 1e12 failed deep in datetime,
    # and a negative count signed a token that expired before it was issued. (0 gives a token
    # expired at issue, which a deployment's refusal of it can be shown with.)
    if not (isinstance(days, (int, float)) and math.isfinite(days) and 0 <= days <= MAX_DAYS):
        raise InvalidArgument(f"a token's validity is from 0 to {MAX_DAYS} days, not {days!r}.")
    now = now or dt.datetime.now(dt.timezone.utc)
    return {"token_id": new_token_id(), "audience": (audience,), "kid": key_id(key.public_key()),
            "issuer": issuer or default_issuer(key.public_key()), "issued_at": int(now.timestamp()),
            "expires_at": int((now + dt.timedelta(days=days)).timestamp())}


def issue_consent(key: Ed25519PrivateKey, deployment: Deployment, subject: str, purposes: Sequence[str], *,
                  operations: Sequence[str] = DEFAULT_OPERATIONS, days: float = 365,
                  birth_date: Optional[str] = None, guardian: Optional[str] = None,
                  now: Optional[dt.datetime] = None, notice_hash: Optional[str] = None,
                  screen_version: Optional[str] = None, issuer: str = "") -> tuple[str, ConsentToken]:
    """A signed consent token for `deployment` (its id is the audience), binding its current
    notice. Returns (wire form, token)."""
    if not subject:
        raise ConfigError("a consent names its subject (a pseudonymous id of the person).")
    subject = normalize_subject(subject)  # as the gallery will pseudonymise it
    # A consent to enrol under an id the SDK will not enrol (a look-alike of another id) is
    # refused here, where the person is still in front of the screen; verify-only consents
    # still serve subjects enrolled under such ids before enrolment refused them.
    problem = new_subject_problem(subject) if "enroll" in operations else None
    if problem is not None:
        raise InvalidArgument(problem)
    if isinstance(purposes, str):  # read letter by letter, it named purposes 'd', 'e', ...
        raise InvalidArgument(f"purposes is a list of purpose names: pass [{purposes!r}], not the string {purposes!r}.")
    if not purposes:
        raise ConfigError("a consent names at least one purpose.")
    # The guard would refuse it at use, but the person would have been shown a consent to a
    # purpose (a typo, say) that the deployment does not have.
    undeclared = [p for p in purposes if deployment.purpose(p) is None]
    if undeclared:
        raise ConfigError(f"the deployment declares no purpose {undeclared[0]!r}; a consent names declared purposes "
                          f"only ({', '.join(sorted(deployment.purposes))}).")
    if birth_date is not None:
        try:
            dt.date.fromisoformat(birth_date)
        except ValueError:
            raise ConfigError(f"--birth-date must be YYYY-MM-DD, not {birth_date!r}.") from None
    token = ConsentToken(
        subject=subject, purposes=tuple(purposes), operations=check_operations(operations),
        notice_hash=notice_hash or deployment.notice_hash,
        screen_version=screen_version or str(deployment.section("consent_screen").get("version") or "unversioned"),
        birth_date=birth_date, guardian=guardian, **_common(key, deployment.deployment_id, issuer, now, days),
    )
    return sign(token, key), token


def issue_legal_basis(key: Ed25519PrivateKey, *, audience: str, authority: str, provision: str, reference: str,
                      purposes: Sequence[str], operations: Sequence[str] = ("identify",), days: float = 30,
                      now: Optional[dt.datetime] = None, issuer: str = "") -> tuple[str, LegalBasisToken]:
    """A signed legal-basis token for the deployment whose id is `audience`."""
    if shows_nothing(provision) or shows_nothing(authority):  # as the guard reads them
        raise ConfigError("a legal basis names the authority and the legal provision.")
    token = LegalBasisToken(authority=authority, provision=provision, reference=reference, purposes=tuple(purposes),
                            operations=check_operations(operations), **_common(key, audience, issuer, now, days))
    return sign(token, key), token
