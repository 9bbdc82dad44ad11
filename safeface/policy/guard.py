"""The guard: the whole policy. ``authorize(request) -> Decision`` decides every rule for every
call (role, deployment, purpose, consent or legal basis, minors, filing, bulk provenance, attribute
requests); ``recheck_at_write`` decides again, inside the store's write transaction and under the
lock that erasure and revocation take, the facts that can change while an image is embedded
(revocation, erasure, the filing count, the purpose end).

It raises PolicyViolation(rule, sentence) at the first failure. It stores nothing and audits
nothing itself: the facade audits both outcomes (safeface/sdk/facade.py).
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field, replace
from enum import Enum
from typing import Any, Callable, Mapping, Optional, Protocol, Sequence

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from ..errors import InvalidArgument, PolicyViolation, SafeFaceError
from ..lookalike import shows_nothing
from .attributes import MAX_ATTRIBUTE_NAME, MAX_ATTRIBUTES, classify, rule_for_category
from ..hazmat.templates.pseudonym import same_subject
from .deployment import Deployment, Purpose
from .deployment.floors import guardian_problem
from .rules import rule_for
from .tokens import (ConsentToken, LegalBasisToken, TokenError, decode_consent, decode_legal_basis,
                     verified_token_id)

CLOCK_SKEW_S = 120
BIPA_INTERACTION_DAYS = 3 * 365


class Operation(str, Enum):
    """Every call the guard decides on."""

    ENROLL = "enroll"
    VERIFY = "verify"
    IDENTIFY = "identify"
    EXPORT = "export"
    ANALYZE = "analyze"
    ERASE = "erase"
    REVOKE = "revoke"
    PURGE = "purge"
    REKEY = "rekey"
    REPORT = "report"
    ANONYMIZE = "anonymize"
    APIKEY = "apikey"  # issue or revoke a service API key
    TRACK = "track"  # people followed by clothing, faces covered: no biometric, so no token

    @property
    def token_operation(self) -> str:
        """The operation a consent or legal-basis token must name for this call."""
        return "transmit" if self is Operation.EXPORT else self.value


# A person's rights and the operator's housekeeping need only the role, even when the deployment may
# not process. (Purging at open and anonymizing, which touches no template, need no role at all.)
# The calls that take a probe from a camera, which the capture rules judge.
CAPTURED = frozenset({Operation.ENROLL, Operation.VERIFY, Operation.IDENTIFY})
HOUSEKEEPING = frozenset({Operation.ERASE, Operation.REVOKE, Operation.PURGE, Operation.REKEY, Operation.REPORT,
                          Operation.APIKEY})


@dataclass(frozen=True)
class BatchItem:
    subject: str
    consent: Optional[str]


@dataclass(frozen=True)
class Request:
    """One call as the guard sees it. `subject` is the raw id (already normalised); it is only
    compared with the token's subject and never stored."""

    operation: Operation
    role: str
    now: dt.datetime
    purpose: Optional[str] = None
    subject: Optional[str] = None
    consent: Optional[str] = None
    legal_basis: Optional[str] = None
    attributes: tuple[str, ...] = ()
    batch: tuple[BatchItem, ...] = ()
    evidence: Optional[str] = field(default=None, repr=False)  # signed liveness evidence (PA-01)


@dataclass(frozen=True)
class CaptureFacts:
    """What the pipeline found in the probe, for the capture rules decided after it ran: the
    probe's embedding (compared with the live face of the evidence) and the capture quality."""

    probe: Optional[Any] = field(default=None, repr=False)
    quality: Optional["QualityFacts"] = None
    threshold: float = 0.0  # the workspace's match threshold


class QualityFacts(Protocol):
    """A capture quality report (safeface/capture/quality.py)."""

    @property
    def ok(self) -> bool: ...

    @property
    def advice(self) -> str: ...

    @property
    def score(self) -> float: ...


class LiveEvidence(Protocol):
    nonce: str
    issued_at: float
    expires_at: float

    @property
    def live(self) -> bool: ...


class EvidenceReader(Protocol):
    """Reads this workspace's liveness evidence (safeface/capture/evidence.py): `read` raises on
    a token the workspace did not sign; `similarity` is the cosine of its live face and a probe."""

    def read(self, token: str) -> Any: ...

    def similarity(self, evidence: Any, probe: Any) -> float: ...


class NonceLedger(Protocol):
    def use_nonce(self, nonce: str, until: dt.datetime) -> bool: ...

    def spend(self, nonce: str, token: str) -> bool:
        """Record in the audit log that this evidence (`token`, of `nonce`) is spent, unless an entry already did
        (False): the anchored chain keeps that even when the used-nonce table is restored from an
        older copy or its row deleted, and decides a race atomically."""
        ...


class StoreFacts(Protocol):
    """What the guard reads of the store to decide filing (CN-17)."""

    def has_subject(self, subject_id: str) -> bool: ...

    def subject_count(self) -> int: ...


class RevocationState(Protocol):
    def is_revoked(self, token_id: str, pseudonym: Optional[str], issued_at: int) -> bool: ...

    def interaction_limit(self, pseudonym: str, purpose: str) -> Optional[dt.datetime]:
        """What the subject's latest enrolment for `purpose` recorded of `Guard.interaction_limit`."""
        ...


@dataclass(frozen=True)
class Decision:
    """Why a call may go ahead: a consent or a legal basis, for one purpose and operation."""

    operation: Operation
    purpose: Optional[Purpose] = None
    consent: Optional[ConsentToken] = None
    legal_basis: Optional[LegalBasisToken] = None
    token_ref: Optional[str] = None  # keyed pseudonym of the token id; the id itself is never stored
    attributes: tuple[str, ...] = ()  # analyze: the technical facts asked for
    batch: tuple["Decision", ...] = field(default=())
    rule: Optional[str] = None  # the rule the call proceeds under, for the audit (legal basis)
    raw_token: Optional[str] = field(default=None, repr=False)  # sealed with the row it lets in
    evidence: Optional[Any] = field(default=None, repr=False)  # verified liveness evidence (PA-01)

    @property
    def token(self) -> Optional[ConsentToken | LegalBasisToken]:
        return self.consent if self.consent is not None else self.legal_basis

    @property
    def basis(self) -> Optional[str]:
        if self.legal_basis is not None:
            return f"legal-basis: {self.legal_basis.provision} ({self.legal_basis.authority}, {self.legal_basis.reference})"
        return "consent" if self.consent is not None else None

    @property
    def provenance(self) -> str:
        return "legal-basis" if self.legal_basis is not None else "consent"


class Guard:
    def __init__(self, deployment: Deployment, consent_keys: Mapping[str, Ed25519PublicKey],
                 authority_keys: Mapping[str, Ed25519PublicKey], state: RevocationState,
                 pseudonym: Callable[[str], str], token_ref: Callable[[str], str], store: StoreFacts,
                 evidence: Optional[EvidenceReader] = None, nonces: Optional[NonceLedger] = None) -> None:
        self.deployment = deployment
        # Set by the workspace that holds the audit log: why the assessment in the deployment is
        # not the one the log names last (None when it is). The guard holds no log of its own.
        self.unrecorded_assessment: Optional[str] = None
        # Meanwhile, the roles (and default role) of the last assessment the log names, if known.
        self.sealed_roles: Optional[tuple[dict[str, tuple[str, ...]], str]] = None
        self._consent_keys = consent_keys
        self._authority_keys = authority_keys
        self._state = state
        self._pseudonym = pseudonym
        self._token_ref = token_ref
        self._store = store
        self._evidence = evidence
        self._nonces = nonces

    def trust(self, consent_keys: Mapping[str, Ed25519PublicKey], authority_keys: Mapping[str, Ed25519PublicKey]
              ) -> None:
        """Judge by these keys from now on (a trust change recorded since the workspace opened)."""
        self._consent_keys, self._authority_keys = consent_keys, authority_keys

    def _rule(self, concept: str) -> str:
        rule = rule_for(concept, self.deployment.profiles)
        if rule is None:
            raise PolicyViolation("CN-01", f"the deployment's profiles carry no rule for {concept}; this is a "
                                  "configuration the guard cannot judge, so the call is refused.")
        return rule

    def token_ref_of(self, consent: Optional[str], legal_basis: Optional[str]) -> Optional[str]:
        """For the audit of a refusal: the keyed pseudonym of a genuinely signed token's id, else None."""
        if legal_basis is not None:
            tid = verified_token_id(legal_basis, self._authority_keys, "legal-basis")
        else:
            tid = verified_token_id(consent, self._consent_keys, "consent")
        return None if tid is None else self._token_ref(tid)

    # -- the one decision ---------------------------------------------------------------------
    def authorize(self, request: Request) -> Decision:
        """Decide every rule for one call; raise PolicyViolation at the first that refuses."""
        op = request.operation
        self.check_role(request.role, op.value)
        if op in HOUSEKEEPING:
            return Decision(op)
        if op is Operation.ANALYZE:
            wanted = self.check_attributes(request.attributes)
            self.check_deployment(request.now)
            return Decision(op, attributes=wanted)
        self.check_deployment(request.now)
        if op is Operation.TRACK:
            return Decision(op, self._track_purpose(request))
        if request.purpose is None:
            raise PolicyViolation(self._rule("purpose"), f"{op.value} needs a declared purpose.")
        p = self.check_purpose(request.purpose)
        if request.batch:
            return self._authorize_batch(request, p)
        decision = self._token_decision(op, p, request.now, request.subject, request.consent, request.legal_basis)
        if op is Operation.ENROLL and request.subject is not None:
            self.check_filing([request.subject], request.now)
        if p.liveness and op in CAPTURED:
            # Last, so that a call refused for any other reason does not use up the evidence.
            decision = replace(decision, evidence=self.check_liveness(request.evidence, request.now))
        return decision

    def _track_purpose(self, request: Request) -> Purpose:
        """Tracking processes no biometric, so it needs no consent token; it is still a declared,
        open purpose with its retention, under the deployment's notice and location rules."""
        if request.purpose is None:
            raise PolicyViolation(self._rule("purpose"), "track needs a declared purpose (its retention and notice "
                                  "tell people why they are followed); pass one declared in deployment.json.")
        p = self.check_purpose(request.purpose)
        self.check_purpose_open(p, request.now)
        return p

    def _token_decision(self, op: Operation, p: Purpose, now: dt.datetime, subject: Optional[str],
                        consent: Optional[str], legal_basis: Optional[str]) -> Decision:
        # Identify and export too: a template kept through a grace period after the end (us-bipa),
        # or enrolled before an end date set early, is kept for its destruction, not for use.
        self.check_purpose_open(p, now)
        token_op = op.token_operation
        if legal_basis is not None:
            lb = self.legal_basis(legal_basis, p.name, token_op, now)
            return Decision(op, p, legal_basis=lb, token_ref=self._token_ref(lb.token_id),
                            rule=self._rule("legal-basis"), raw_token=legal_basis)
        if consent is None:
            raise PolicyViolation(self._rule("transmit") if token_op == "transmit" else self._rule("consent"),
                                  f"{op.value} needs the person's signed consent token for purpose {p.name!r} "
                                  "(or a legal-basis token); none was given.")
        c = self.consent(consent, p.name, token_op, now, subject=subject)
        return Decision(op, p, consent=c, token_ref=self._token_ref(c.token_id), raw_token=consent)

    def _authorize_batch(self, request: Request, p: Purpose) -> Decision:
        """Bulk enrolment: every item needs its own person's consent (EU-02: no database built by
        untargeted collection), and the whole batch must fit under the filing threshold."""
        items = request.batch
        if p.liveness:
            raise PolicyViolation(self._rule("liveness"), f"purpose {p.name!r} requires liveness evidence per person; "
                                  "a bulk enrolment cannot carry it. Enrol each person with their own liveness check.")
        lacking = [i.subject for i in items if not i.consent]
        if lacking:
            rule = rule_for("provenance", self.deployment.profiles) or self._rule("consent")
            raise PolicyViolation(rule, f"bulk enrolment refused: {len(lacking)} of {len(items)} items carry no "
                                  "consent of their own; every template needs its person's consent (no untargeted "
                                  "collection).")
        decisions = tuple(self._token_decision(request.operation, p, request.now, i.subject, i.consent, None)
                          for i in items)
        self.check_filing([i.subject for i in items], request.now)
        return Decision(request.operation, p, batch=decisions)

    # -- the capture rules (PA-01, PA-02) -------------------------------------------------------
    def check_capture_role(self, role: str) -> None:
        """A liveness challenge or check is part of an enrolment or a match: the role must be
        allowed one of those."""
        allowed = self.roles().get(role, ())
        if not any(op.value in allowed for op in CAPTURED):
            raise PolicyViolation(self._rule("security"), f"role {role!r} may not enroll, verify or identify, so it "
                                  "may not run liveness checks either.")

    def check_liveness(self, token: Optional[str], now: dt.datetime) -> Any:
        """PA-01 before any image is read: the evidence is this workspace's, says live, is fresh,
        and its nonce has not been used; the nonce is used up here."""
        rule = self._rule("liveness")
        if not token:
            raise PolicyViolation(rule, "this purpose requires a live person: run a liveness check (a challenge, "
                                  "then a short clip of the person) and pass its evidence with the call.")
        if self._evidence is None or self._nonces is None:
            raise PolicyViolation(rule, "this workspace cannot check liveness evidence; open it with SafeFace.open.")
        try:
            ev = self._evidence.read(token)
        except SafeFaceError as exc:
            raise PolicyViolation(rule, str(exc)) from None
        if not ev.live:
            raise PolicyViolation(rule, "the liveness check behind this evidence did not find a live person.")
        ts = now.timestamp()
        if ev.issued_at > ts + CLOCK_SKEW_S:
            raise PolicyViolation(rule, "the liveness evidence is dated in the future; check the clocks.")
        if ts >= ev.expires_at:
            raise PolicyViolation(rule, f"the liveness evidence is stale ({ts - ev.issued_at:.0f} s old; valid "
                                  f"{ev.expires_at - ev.issued_at:.0f} s): run the liveness check again.")
        until = dt.datetime.fromtimestamp(ev.expires_at, dt.timezone.utc) + dt.timedelta(seconds=CLOCK_SKEW_S)
        if not self._nonces.use_nonce("evidence:" + ev.nonce, until):
            raise PolicyViolation(rule, "this liveness evidence was already used: each check proves presence for "
                                  "one call. Run the liveness check again.")
        # The table can be rolled back by whoever holds its file; the anchored chain cannot.
        if not self._nonces.spend(ev.nonce, token):
            raise PolicyViolation(rule, "this liveness evidence was already used: the audit log records a call it let "
                                  "in, though the policy state does not (it was restored from an older copy or edited). "
                                  "Run the liveness check again, and check the workspace with `safeface audit verify`.")
        return ev

    def check_capture(self, decision: Decision, facts: CaptureFacts) -> None:
        """PA-01 and PA-02 once the pipeline has seen the probe: the live face of the evidence is
        this probe's face, and an enrolment capture meets the purpose's quality floor."""
        p = decision.purpose
        if p is None:
            return
        if p.capture_quality and decision.operation is Operation.ENROLL:
            q = facts.quality
            if q is None or not q.ok:
                advice = q.advice if q is not None else "the capture was not assessed."
                raise PolicyViolation(self._rule("capture-quality"), "this capture is not fit for enrolment "
                                      f"(quality {0.0 if q is None else q.score:.0f}/100): {advice}")
        if p.liveness and decision.operation in CAPTURED:
            if decision.evidence is None or self._evidence is None or facts.probe is None:
                raise PolicyViolation(self._rule("liveness"), "the call carries no checked liveness evidence.")
            score = self._evidence.similarity(decision.evidence, facts.probe)
            if score < facts.threshold:
                raise PolicyViolation(self._rule("liveness"), "the liveness evidence was made with another face than "
                                      "this probe: the live person must be the one presented. Run the check again "
                                      "with the person themself.")

    # -- decided again at the write -------------------------------------------------------------
    def recheck_at_write(self, decision: Decision, subjects: Sequence[str], now: dt.datetime,
                         trusted: Optional[Mapping[str, Mapping[str, Ed25519PublicKey]]] = None) -> None:
        """Called inside the store's write transaction, under the lock erasure and revocation
        take: what may have changed since `authorize` (revocation, erasure, the signer's trust,
        filing, purpose end) is decided again, so no row can appear after an erasure receipt or
        a key's removal, and concurrent enrolments can never pass the filing threshold.
        `now`: the time of the write, not of the call's start. `trusted`: the trust store's keys
        as of now (`TrustStore.for_guard()`), when a change was recorded since this guard was
        given its keys."""
        parts = decision.batch or (decision,)
        for d, subject in zip(parts, subjects):
            self._check_signer_trusted(d, trusted)
            t = d.token
            if t is not None and int(now.timestamp()) >= t.expires_at:  # as `consent` reads it, at the write
                what = "legal basis" if d.legal_basis is not None else "consent"
                raise PolicyViolation(self._rule("legal-basis") if d.legal_basis is not None else self._rule("consent"),
                                      f"the {what} expired at {_shown_time(t.expires_at)}, while the image was "
                                      f"processed; nothing was stored. Ask for a new {what}.")
            # A consent's subject is the call's (checked by `consent`); a legal basis names none,
            # so the erasure of the call's subject is what counts for both.
            if t is not None:
                what = "consent" if d.consent is not None else "legal basis"
                self._check_not_withdrawn(d.token_ref or "", self._pseudonym(subject), t, what,
                                          self._rule("withdrawal") if d.consent is not None else self._rule("legal-basis"),
                                          "the consent or legal basis was withdrawn, or the person erased, while the "
                                          "image was processed; nothing was stored.")
            if d.purpose is not None:
                # The purpose as the guard reads it now (an assessed change another call of this
                # workspace published meanwhile), at the time of the write: one ending while the
                # image was processed stores nothing.
                current = self.deployment.purpose(d.purpose.name)
                if current is None:
                    raise PolicyViolation(self._rule("purpose"), f"purpose {d.purpose.name!r} stopped being declared "
                                          "while the image was processed; nothing was stored.")
                self.check_purpose_open(current, now)
        if decision.operation is Operation.ENROLL:
            self.check_filing(list(subjects), now)

    def _check_signer_trusted(self, d: Decision, trusted: Optional[Mapping[str, Mapping[str, Ed25519PublicKey]]]
                              ) -> None:
        if d.raw_token is None or d.token is None:
            return
        legal = d.legal_basis is not None
        if trusted is None:
            keys = self._authority_keys if legal else self._consent_keys
        else:
            keys = trusted["authorities" if legal else "consent_issuers"]
        try:
            (decode_legal_basis if legal else decode_consent)(d.raw_token, keys)
        except TokenError:
            what = "legal basis" if legal else "consent"
            raise PolicyViolation(self._rule("legal-basis") if legal else self._rule("consent"),
                                  f"the key that signed the {what} stopped being trusted while the image was "
                                  f"processed (`safeface keys remove`); nothing was stored. Ask for a {what} signed "
                                  "by a key this deployment trusts.") from None

    def _check_not_withdrawn(self, token_ref: str, pseudonym: str, t: ConsentToken | LegalBasisToken, what: str,
                             rule: str, withdrawn: str) -> None:
        """PolicyViolation(rule) when the token, or its subject's consent, was withdrawn (`withdrawn`
        says so), or when it is dated within CLOCK_SKEW_S after its subject's last erasure or
        withdrawal: an issuer whose clock runs ahead, within the skew tolerated, dates a consent
        given before a withdrawal after it, and one never used before the withdrawal cannot be told
        from one given afresh (it enrolled the person again). An honest new consent waits that long."""
        if self._state.is_revoked(token_ref, pseudonym, t.issued_at):
            raise PolicyViolation(rule, withdrawn)
        if self._state.is_revoked(token_ref, pseudonym, t.issued_at - CLOCK_SKEW_S):
            raise PolicyViolation(rule, f"this {what} is dated less than {CLOCK_SKEW_S} s after its subject was "
                                  "erased or withdrew consent: within the clock difference tolerated between its "
                                  f"issuer and this workspace, it cannot be told from a {what} given before, so it "
                                  f"counts as withdrawn. Ask for a new {what} issued after "
                                  f"{_shown_time(t.issued_at + CLOCK_SKEW_S)} and retry with it.")

    # -- the rules ------------------------------------------------------------------------------
    def check_deployment(self, now: dt.datetime) -> None:
        """A deployment that fails any enforced rule of its profiles processes nothing."""
        problems = self.deployment.problems(now.date())
        if problems:
            first = problems[0]
            raise PolicyViolation(first.rule, f"this deployment cannot process: {first.message}")
        if self.unrecorded_assessment:
            raise PolicyViolation(self._rule("assessment"), f"this deployment cannot process: {self.unrecorded_assessment}")

    def roles(self) -> dict[str, tuple[str, ...]]:
        """The roles calls are judged by: the deployment's, or while its assessment is not the one
        in force, the last recorded assessment's (roles widened by hand would otherwise reach the
        calls the assessment does not gate, erasure among them); none when those are unknown."""
        if self.unrecorded_assessment is None:
            return self.deployment.roles
        if self.sealed_roles is None:
            raise PolicyViolation(self._rule("assessment"), f"no role can be judged: {self.unrecorded_assessment}")
        return self.sealed_roles[0]

    def check_role(self, role: str, operation: str) -> None:
        allowed = self.roles().get(role)
        if allowed is None:
            raise PolicyViolation(self._rule("security"), f"role {role!r} is not defined in this deployment; "
                                  f"defined roles: {', '.join(sorted(self.roles()))}.")
        if operation not in allowed:
            raise PolicyViolation(self._rule("security"), f"role {role!r} may not {operation}; ask someone whose "
                                  "role allows it.")

    def check_purpose(self, purpose: str) -> Purpose:
        if not isinstance(purpose, str):
            raise PolicyViolation(self._rule("purpose"), f"the purpose must be the name of a declared purpose (a "
                                  f"string), not a {type(purpose).__name__}; declared: "
                                  f"{', '.join(sorted(self.deployment.purposes)) or 'none'}.")
        p = self.deployment.purpose(purpose)
        if p is None:
            # Spelled out in escapes too, so a look-alike letter shows where it differs.
            shown = repr(purpose) if purpose.isascii() else f"{purpose!r} ({ascii(purpose)})"
            raise PolicyViolation(self._rule("purpose"), f"purpose {shown} is not declared by this deployment "
                                  f"(declared: {', '.join(sorted(self.deployment.purposes)) or 'none'}).")
        return p

    def check_purpose_open(self, p: Purpose, now: dt.datetime) -> None:
        """An ended purpose enrols, verifies, identifies and exports no one."""
        if p.end_date is not None and now.date() > p.end_date:
            raise PolicyViolation(self._rule("retention"), f"purpose {p.name!r} ended on {p.end_date.isoformat()}; "
                                  "nobody can be enrolled, verified, identified or exported for it any more.")

    def check_attributes(self, attributes: Sequence[str]) -> tuple[str, ...]:
        """Only technical facts (count, boxes, landmarks, detector scores); any personal attribute
        is refused (CN-18, EU-01, EU-03). At most MAX_ATTRIBUTES names, each read once: each
        is classified against every category's stems, and a service caller's list of 250,000
        held a worker for 18 s."""
        if isinstance(attributes, str) or not all(isinstance(a, str) for a in attributes):
            raise InvalidArgument("attributes must be a list of names (strings).")
        names = list(dict.fromkeys(attributes))
        if len(names) > MAX_ATTRIBUTES or any(len(a) > MAX_ATTRIBUTE_NAME for a in names):
            raise InvalidArgument(f"ask for at most {MAX_ATTRIBUTES} attributes, each a name of at most "
                                  f"{MAX_ATTRIBUTE_NAME} characters.")
        wanted: list[str] = []
        for a in names:
            req = classify(a)
            if req.category is not None or req.allowed is None:
                rule = rule_for_category(str(req.category), self.deployment.profiles)
                raise PolicyViolation(rule, f"safeface does not infer {req.category} (asked: {a[:64]!r}) and never "
                                      "will; no attribute model exists or is loaded.")
            wanted.append(req.allowed)
        return tuple(sorted(set(wanted)))

    def check_filing(self, subjects: Sequence[str], now: dt.datetime) -> None:
        """CN-17: once the count of stored people reaches the threshold, a new person may be
        enrolled only after the filing reference is recorded."""
        rule = rule_for("filing", self.deployment.profiles)
        if rule is None or self.deployment.filing_reference:
            return
        new_people = {s for s in subjects if not self._store.has_subject(s)}
        if not new_people:
            return
        count = self._store.subject_count()
        threshold = self.deployment.filing_threshold
        if count + len(new_people) > threshold:
            raise PolicyViolation(rule, f"{count} people are stored and the filing threshold is {threshold}: file "
                                  "with the provincial authority and record filing.reference in deployment.json "
                                  "before enrolling anyone new.")

    def interaction_limit(self, purpose: Purpose, start: dt.datetime) -> Optional[dt.datetime]:
        """BIPA: the latest any interaction may keep a template enrolled at `start`, its purpose's
        end plus the grace (US-01), which the enrolment's audit entry records; None without the rule."""
        if "us-bipa" not in self.deployment.profiles:
            return None
        grace = dt.timedelta(days=int(self.deployment.bipa.get("grace_days_after_purpose") or 0))
        return self.deployment.purpose_end(purpose, start) + grace

    def interaction_expiry(self, pseudonym: str, purpose: str, now: dt.datetime) -> Optional[dt.datetime]:
        """BIPA: a match is an interaction; expiry = min(purpose end + grace, now + 3 years) (US-01).
        None when the profile has no such rule or the enrolment recorded no limit. The limit is
        read from the anchored log, never from policy.db, where a hand edit could stretch it."""
        if "us-bipa" not in self.deployment.profiles:
            return None
        limit = self._state.interaction_limit(pseudonym, purpose)
        if limit is None or self.deployment.purpose(purpose) is None:
            return None
        return min(limit, now + dt.timedelta(days=BIPA_INTERACTION_DAYS))

    def _check_audience(self, t: ConsentToken | LegalBasisToken, rule: str, what: str) -> None:
        # A legacy sf1 token names no audience; it is accepted until it expires (tokens_sf1.py).
        if t.audience and self.deployment.deployment_id not in t.audience:
            raise PolicyViolation(rule, f"the {what} token was issued for another deployment, not this one (id "
                                  f"{self.deployment.deployment_id}); ask its issuer for a token naming this "
                                  "deployment's id as its audience.")

    def consent(self, token: str, purpose: str, operation: str, now: dt.datetime, *,
                subject: Optional[str]) -> ConsentToken:
        rule = self._rule("transmit") if operation == "transmit" else self._rule("consent")
        try:
            t = decode_consent(token, self._consent_keys)
        except TokenError as exc:
            raise PolicyViolation(rule, f"the consent token is not valid: {exc}") from None
        self._check_audience(t, rule, "consent")
        ts = int(now.timestamp())
        if max(t.issued_at, t.not_before or 0) > ts + CLOCK_SKEW_S:
            raise PolicyViolation(rule, "the consent token is not valid yet (issued in the future); check the clocks.")
        if ts >= t.expires_at:
            raise PolicyViolation(rule, f"the consent token expired at {_shown_time(t.expires_at)}; ask the person "
                                  "for a new consent.")
        if shows_nothing(t.subject):
            # A consent of nobody: identify names no subject to compare it with, and no person's
            # erasure or withdrawal could ever reach it.
            raise PolicyViolation(rule, "the consent token names no subject (its sub is empty or prints as nothing); "
                                  "ask its issuer for a token naming the person who consented.")
        try:
            pseud = self._pseudonym(t.subject)
        except InvalidArgument as exc:  # signed by a trusted issuer, yet no id enrolment would take
            raise PolicyViolation(rule, f"the consent token's subject is not a usable id ({exc}); ask its issuer "
                                  "for a token naming the person as enrolled.") from None
        self._check_not_withdrawn(self._token_ref(t.token_id), pseud, t, "consent", self._rule("withdrawal"),
                                  "this consent was withdrawn; processing has stopped and needs a new consent.")
        if subject is not None and not same_subject(t.subject, subject):
            raise PolicyViolation(rule, "the consent token was given by another person than the subject of this call.")
        if purpose not in t.purposes:
            raise PolicyViolation(rule, f"the consent covers purposes {list(t.purposes)}, not {purpose!r}; consent is "
                                  "given per purpose.")
        if operation not in t.operations:
            raise PolicyViolation(rule, f"the consent covers {list(t.operations)}, not {operation}.")
        if t.notice_hash != self.deployment.notice_hash:
            raise PolicyViolation(self._rule("notice"), "the consent was given under a notice that has since "
                                  "changed; show the current notice and ask for consent again.")
        # A floor under every profile; the age is the deployment's (floors.guardian_age).
        minor = guardian_problem(self.deployment.guardian_age, t.birth_date, t.guardian, now.date())
        if minor is not None:
            raise PolicyViolation(self._rule("guardian"), minor)
        return t

    def legal_basis(self, token: str, purpose: str, operation: str, now: dt.datetime) -> LegalBasisToken:
        rule = self._rule("legal-basis")
        try:
            t = decode_legal_basis(token, self._authority_keys)
        except TokenError as exc:
            raise PolicyViolation(rule, f"the legal-basis token is not valid: {exc}") from None
        self._check_audience(t, rule, "legal-basis")
        ts = int(now.timestamp())
        if shows_nothing(t.provision) or shows_nothing(t.authority):  # a zero-width space names no law
            raise PolicyViolation(rule, "the legal-basis token must name the authority and the legal provision.")
        if max(t.issued_at, t.not_before or 0) > ts + CLOCK_SKEW_S or ts >= t.expires_at:
            raise PolicyViolation(rule, "the legal-basis token is outside its validity period.")
        if self._state.is_revoked(self._token_ref(t.token_id), None, t.issued_at):
            raise PolicyViolation(rule, "this legal-basis token was revoked.")
        if purpose not in t.purposes or operation not in t.operations:
            raise PolicyViolation(rule, f"the legal basis covers {list(t.operations)} for {list(t.purposes)}, not "
                                  f"{operation} for {purpose!r}.")
        return t


def _shown_time(unix: int) -> str:
    """A token's time for a message: a signed token may carry one no calendar date holds."""
    try:
        return dt.datetime.fromtimestamp(unix, dt.timezone.utc).isoformat(timespec="seconds")
    except (ValueError, OverflowError, OSError):
        return f"{unix} (Unix seconds)"
