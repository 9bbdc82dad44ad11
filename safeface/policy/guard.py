"""The one guard every biometric call passes: deployment valid, role allowed, purpose declared,
and a consent or legal-basis token that covers this subject, purpose and operation now.

It raises PolicyViolation(rule, sentence) at the first failure and returns a Decision otherwise.
It stores nothing and audits nothing itself: the facade audits both outcomes (sdk.py).
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Callable, Mapping, Optional

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from ..errors import PolicyViolation
from .deployment import Deployment, Purpose
from .rules import rule_for
from ..workspace.state import PolicyState
from .tokens import (ConsentToken, LegalBasisToken, TokenError, decode_consent, decode_legal_basis,
                     verified_token_id)

CLOCK_SKEW_S = 120
GUARDIAN_AGE = 14


@dataclass(frozen=True)
class Decision:
    """Why a call may go ahead: a consent or a legal basis, for one purpose and operation."""

    operation: str
    purpose: Purpose
    consent: Optional[ConsentToken] = None
    legal_basis: Optional[LegalBasisToken] = None

    @property
    def token_id(self) -> Optional[str]:
        if self.consent is not None:
            return self.consent.token_id
        return self.legal_basis.token_id if self.legal_basis is not None else None

    @property
    def basis(self) -> str:
        if self.legal_basis is not None:
            return f"legal-basis: {self.legal_basis.provision} ({self.legal_basis.authority}, {self.legal_basis.reference})"
        return "consent"


def age_on(birth: dt.date, day: dt.date) -> int:
    return day.year - birth.year - ((day.month, day.day) < (birth.month, birth.day))


class Guard:
    def __init__(self, deployment: Deployment, consent_keys: Mapping[str, Ed25519PublicKey],
                 authority_keys: Mapping[str, Ed25519PublicKey], state: PolicyState,
                 pseudonym: Callable[[str], str]) -> None:
        self.deployment = deployment
        self._consent_keys = consent_keys
        self._authority_keys = authority_keys
        self._state = state
        self._pseudonym = pseudonym

    def _rule(self, concept: str) -> str:
        rule = rule_for(concept, self.deployment.profiles)
        assert rule is not None, concept
        return rule

    def token_id_of(self, consent: Optional[str], legal_basis: Optional[str]) -> Optional[str]:
        """For the audit of a refusal: the id of a genuinely signed token, else None."""
        if legal_basis is not None:
            return verified_token_id(legal_basis, self._authority_keys, "legal-basis")
        return verified_token_id(consent, self._consent_keys, "consent")

    def check_deployment(self, now: dt.datetime) -> None:
        """A deployment that fails any enforced rule of its profiles processes nothing."""
        problems = self.deployment.problems(now.date())
        if problems:
            first = problems[0]
            raise PolicyViolation(first.rule, f"this deployment cannot process: {first.message}")

    def check_role(self, role: str, operation: str) -> None:
        allowed = self.deployment.roles.get(role)
        if allowed is None:
            raise PolicyViolation(self._rule("security"), f"role {role!r} is not defined in this deployment; "
                                  f"defined roles: {', '.join(sorted(self.deployment.roles))}.")
        if operation not in allowed:
            raise PolicyViolation(self._rule("security"), f"role {role!r} may not {operation}; ask someone whose "
                                  "role allows it.")

    def check_purpose(self, purpose: str) -> Purpose:
        p = self.deployment.purpose(purpose)
        if p is None:
            raise PolicyViolation(self._rule("purpose"), f"purpose {purpose!r} is not declared by this deployment "
                                  f"(declared: {', '.join(sorted(self.deployment.purposes)) or 'none'}).")
        return p

    def authorize(self, operation: str, purpose: str, now: dt.datetime, *, subject: Optional[str] = None,
                  consent: Optional[str] = None, legal_basis: Optional[str] = None) -> Decision:
        """Check everything for one call. `operation` is enroll, verify, identify or transmit."""
        self.check_deployment(now)
        p = self.check_purpose(purpose)
        if legal_basis is not None:
            return Decision(operation, p, legal_basis=self.legal_basis(legal_basis, purpose, operation, now))
        if consent is None:
            raise PolicyViolation(self._rule("transmit") if operation == "transmit" else self._rule("consent"),
                                  f"{operation} needs the person's signed consent token for purpose {purpose!r} "
                                  "(or a legal-basis token); none was given.")
        return Decision(operation, p, consent=self.consent(consent, purpose, operation, now, subject=subject))

    def consent(self, token: str, purpose: str, operation: str, now: dt.datetime, *,
                subject: Optional[str]) -> ConsentToken:
        rule = self._rule("transmit") if operation == "transmit" else self._rule("consent")
        try:
            t = decode_consent(token, self._consent_keys)
        except TokenError as exc:
            raise PolicyViolation(rule, f"the consent token is not valid: {exc}") from None
        ts = int(now.timestamp())
        if t.issued_at > ts + CLOCK_SKEW_S:
            raise PolicyViolation(rule, "the consent token is not valid yet (issued in the future); check the clocks.")
        if ts >= t.expires_at:
            when = dt.datetime.fromtimestamp(t.expires_at, dt.timezone.utc).isoformat(timespec="seconds")
            raise PolicyViolation(rule, f"the consent token expired at {when}; ask the person for a new consent.")
        pseud = self._pseudonym(t.subject) if t.subject else None
        if self._state.is_revoked(t.token_id, pseud, t.issued_at):
            raise PolicyViolation(self._rule("withdrawal"), "this consent was withdrawn; processing has stopped and "
                                  "needs a new consent.")
        if subject is not None and t.subject != subject:
            raise PolicyViolation(rule, "the consent token was given by another person than the subject of this call.")
        if purpose not in t.purposes:
            raise PolicyViolation(rule, f"the consent covers purposes {list(t.purposes)}, not {purpose!r}; consent is "
                                  "given per purpose.")
        if operation not in t.operations:
            raise PolicyViolation(rule, f"the consent covers {list(t.operations)}, not {operation}.")
        if t.notice_hash != self.deployment.notice_hash:
            raise PolicyViolation(self._rule("notice"), "the consent was given under a notice that has since "
                                  "changed; show the current notice and ask for consent again.")
        guardian_rule = rule_for("guardian", self.deployment.profiles)
        if guardian_rule is not None and t.birth_date:
            try:
                born = dt.date.fromisoformat(t.birth_date)
            except ValueError:
                raise PolicyViolation(guardian_rule, "the declared birth date in the consent is not a date.") from None
            if age_on(born, now.date()) < GUARDIAN_AGE and not (t.guardian or "").strip():
                raise PolicyViolation(guardian_rule, f"the subject is under {GUARDIAN_AGE}: the consent must be "
                                      "given by a parent or guardian and name them.")
        return t

    def legal_basis(self, token: str, purpose: str, operation: str, now: dt.datetime) -> LegalBasisToken:
        rule = self._rule("legal-basis")
        try:
            t = decode_legal_basis(token, self._authority_keys)
        except TokenError as exc:
            raise PolicyViolation(rule, f"the legal-basis token is not valid: {exc}") from None
        ts = int(now.timestamp())
        if not t.provision.strip() or not t.authority.strip():
            raise PolicyViolation(rule, "the legal-basis token must name the authority and the legal provision.")
        if t.issued_at > ts + CLOCK_SKEW_S or ts >= t.expires_at:
            raise PolicyViolation(rule, "the legal-basis token is outside its validity period.")
        if self._state.is_revoked(t.token_id, None, t.issued_at):
            raise PolicyViolation(rule, "this legal-basis token was revoked.")
        if purpose not in t.purposes or operation not in t.operations:
            raise PolicyViolation(rule, f"the legal basis covers {list(t.operations)} for {list(t.purposes)}, not "
                                  f"{operation} for {purpose!r}.")
        return t
