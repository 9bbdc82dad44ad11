"""The store audit: every stored row must be explained by the audit log, and every row the log
says is stored must be there.

Checked for each row of the template store:
- the token sealed with it verifies against a trusted consent-issuer or authority key, and its
  id's keyed reference is the one the row is filed under;
- an "enroll allowed" audit entry names the row (written inside the row's own write
  transaction, so a row without one was added behind the guard);
- no erase, revoke or purge entry removed it since (a row that comes back was restored from an
  older copy of the store);
- what it is held for, whom it is filed under and how long it is kept are what the log and its
  token allow: its purposes within the token's and its enrolment's, its pseudonym its
  enrolment's (and its consent's subject's), its expiry no later than its enrolment recorded or
  an interaction since moved it to (a row re-sealed with the keys binds what the host chose).
And for the log: every row an "enroll allowed" entry names, and no later entry removed, is
still in the store (a missing one was deleted behind the guard, the store was restored from an
older copy, or a crash fell between the log's commit and the store's); and no call was let in
under a withdrawn consent: a token reference used after its own "revoke" entry, or after an
erasure or revocation of its subject when it was already in use before it (the policy state's
revocations can be rolled back, and a log entry edited for a while and put back; this shows it).
Also from the log alone: no row id named by two enrolments (the store's id counter was set back,
so a lost row's id was handed out again and the loss hidden), and no identification finding a
subject erased before it was judged and not enrolled again since (the store, or an open
handle's index, kept the erased template).

A keyed digest over the set of rows (HMAC-SHA256 under the pseudonym key) is reported, so an
assessor can compare two checks of the same workspace without seeing any row.
"""

from __future__ import annotations

import bisect
import datetime as dt
import hashlib
import hmac
import re
import sys
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, Mapping, Optional, Sequence

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from ..capture.evidence import DEFAULT_VALIDITY_S
from ..errors import IntegrityError, InvalidArgument
from ..hashing import same_digest
from ..hazmat.templates.pseudonym import pseudonymize
from ..policy.guard import BIPA_INTERACTION_DAYS, CLOCK_SKEW_S
from ..policy.tokens import TokenError, decode_consent, decode_legal_basis, key_id
from .audit import (LIVENESS_SPENT, entry_time, judged_after, kept_at_most, last_mention, liveness_ref, rows_named,
                    withdrawal_time)

# The expiry an enrolment stored its row with ("expires 2026-01-31"), or an interaction moved it to.
_EXPIRES = re.compile(r"\bexpires ([0-9]{4}-[0-9]{2}-[0-9]{2})\b")
# A match entry's note when the match moved no expiry (SafeFace.verify).
EXPIRY_KEPT = "expiry kept"
# How long after its judging an enrolment's entry may be written (the face is found and embedded
# between): a token that expired in between was valid when judged.
ENROL_WORK_S = 600
# An identify entry's subjects are its candidates; the note names whose consent let it in.
CONSENT_OF = "consent of"
_CONSENT_OF = re.compile(CONSENT_OF + r" ([0-9a-f]{64})\b")
# A trust change's entry names its key by RFC 7638 thumbprint (trust._record).
_TRUST_KEY = re.compile(r"(?:consent-issuer|authority) key ([A-Za-z0-9_-]{43})\b")
# When the consent that let a call in was issued, by its issuer's clock (Unix seconds): the guard
# refuses a consent issued at or before its subject's withdrawal, so the audit can tell one issued
# before an erasure and first used after it from a consent given afresh.
TOKEN_ISSUED = "token issued"
_ISSUED = re.compile(TOKEN_ISSUED + r" (-?[0-9]+)\b")  # an issuer may date a token before 1970
# After "token issued" in an allowed call's entry: the guard that let it in counted a token dated
# up to this many seconds after its subject's withdrawal as withdrawn (guard.CLOCK_SKEW_S). An
# entry an earlier safeface wrote says nothing: its guard let such tokens in, so none is named.
# Read only where it follows the SDK's own (last) "token issued": caller text before it (an
# export's recipient) in an earlier release's entry must not make that entry judged by a skew.
WITHDRAWAL_SKEW = "withdrawal skew"
_ISSUED_SKEW = re.compile(TOKEN_ISSUED + r" -?[0-9]+(?:; " + WITHDRAWAL_SKEW + r" ([0-9]+) s)?\b")
# A service key's revocation (the note authentication looks for, exactly), and the actor of an
# entry made under a key: its id and the last entry when the key was found unrevoked.
_KEY_REVOKED = re.compile(r"API key ([0-9a-f]{1,64}) revoked")
_KEY_ACTOR = re.compile(r"([0-9a-f]{1,64}) \(key checked after entry ([0-9]+)\)")


def key_issued_note(key_id: str, role: str, expires: Optional[str], rate: Optional[float] = None,
                    row: Optional[str] = None) -> str:
    """The audit note of a key's issue, which authentication looks for: the role, expiry and rate
    the key's row holds, and `row`, a keyed digest of its stored hash, label and issue time
    (ApiKeys.row_ref; of the hash alone in the previous release's notes). Without
    `rate` and `row`, the note earlier releases wrote (kept so their keys still work)."""
    note = f"{key_issue_prefix(key_id)}{role}{'; expires ' + expires if expires else ''}"
    return note if rate is None or row is None else f"{note}; rate {rate!r}; row {row}"


def key_issue_prefix(key_id: str) -> str:
    """How every issue note of `key_id` begins, whichever release wrote it (key_issued_note)."""
    return f"API key {key_id} issued for role "


def key_revoked_note(key_id: str) -> str:
    """The audit note of a key's revocation, which authentication looks for."""
    return f"API key {key_id} revoked"


def session_ended_note(ref: str) -> str:
    """The audit note of a console logout, which a session check looks for (`ref`: apikeys.session_ref)."""
    return f"console session {ref[:32]} ended"


def key_actor(key_id: str, checked_after: Optional[int]) -> str:
    """How an entry made under an API key names it (at most 64 characters, the log's limit)."""
    return key_id if checked_after is None else f"{key_id} (key checked after entry {int(checked_after)})"


REMOVALS = ("erase", "revoke", "purge")
USES = ("enroll", "verify", "identify", "export")  # calls a consent or legal basis lets in
# Rows an "enroll allowed" entry named whose store transaction never committed (the process
# stopped between the log's commit and the store's); see SafeFace.open. They count as removed,
# so one that appears later is flagged.
UNCOMMITTED = "uncommitted"
# Written after the store's commit, under its write lock: enrolment entries older than the newest
# of these were stored, so a row they name that is missing was deleted or rolled back.
COMMITTED = "enroll-committed"


@dataclass(frozen=True)
class StoreReport:
    rows: int
    digest: str
    problems: tuple[str, ...] = field(default=())

    @property
    def ok(self) -> bool:
        return not self.problems

    def raise_for_problems(self) -> None:
        """IntegrityError naming the first problems, if there are any."""
        if self.problems:
            more = f" (and {len(self.problems) - 5} more)" if len(self.problems) > 5 else ""
            raise IntegrityError("the template store does not match the audit log: " + " ".join(self.problems[:5])
                                 + more)


@dataclass(frozen=True)
class _Enrolment:
    """The "enroll allowed" entry that stored a row: what the row may be."""

    seq: int
    purpose: Optional[str]
    subjects: tuple[str, ...]
    expires: Optional[dt.date]  # None: written before entries named it
    at: float = 0.0  # the entry's time (Unix seconds), the log's own clock (it refuses one set back)
    token: str = ""  # the token reference the entry was let in under


def _recorded_expiry(note: Optional[str]) -> Optional[dt.date]:
    found = _EXPIRES.findall(note or "")
    try:
        return dt.date.fromisoformat(found[-1]) if found else None
    except ValueError:
        return None


def _utc(t: dt.datetime) -> dt.datetime:
    """`t` in UTC (a time without a zone taken as UTC already)."""
    return t.replace(tzinfo=dt.timezone.utc) if t.tzinfo is None else t.astimezone(dt.timezone.utc)


def _entry_time(e: Any) -> dt.datetime:
    """An audit entry's time (ISO 8601, the log's own clock), in UTC."""
    return entry_time(e.seq, e.time)


@dataclass
class _Log:
    """What the store check reads off the log in one pass."""

    live: set[int] = field(default_factory=set)  # rows the log says are stored now
    removed: set[int] = field(default_factory=set)  # rows the log says were removed
    late: list[str] = field(default_factory=list)  # calls let in under a withdrawn consent
    enrolled_at: dict[int, tuple[int, int]] = field(default_factory=dict)  # row -> (seq, judging point) of its
    # judged "enroll" entry
    withdrawals: dict[str, list[tuple[int, int]]] = field(default_factory=dict)  # subject -> [(seq, when)]
    # token reference -> [(seq, judging point of the earliest use recorded up to that entry)], a
    # step each time that earliest point moves back: what the guard could see when it judged.
    uses: dict[str, list[tuple[int, int]]] = field(default_factory=dict)
    revoked_refs: dict[str, int] = field(default_factory=dict)  # token reference -> seq of its "revoke" entry
    untrusted: dict[str, int] = field(default_factory=dict)  # key thumbprint -> seq of its latest "trust-remove"
    found: list[str] = field(default_factory=list)  # what the log alone shows the store did
    enrolment: dict[int, _Enrolment] = field(default_factory=dict)  # row -> the latest entry that named it
    last_enrolled: dict[str, int] = field(default_factory=dict)  # pseudonym -> seq of its latest enrolment
    # (pseudonym, purpose) -> [(seq, date)]: a match under the purpose, which may move the expiry
    # of the subject's rows held for it alone to that date (SafeFace.verify, Gallery.touch).
    touched: dict[tuple[str, str], list[tuple[int, dt.date]]] = field(default_factory=dict)
    # nonce ref -> (time of the check that issued evidence for it, that evidence's ref or None)
    liveness: dict[str, tuple[float, Optional[str]]] = field(default_factory=dict)
    _latest: dict[tuple[str, str], list[dt.date]] = field(default_factory=dict)

    def first_use(self, ref: str, seen_by: int) -> Optional[int]:
        """The judging point of the token's earliest use among the entries up to `seen_by` (a
        call's judging point): a use judged earlier but recorded later (calls are recorded when
        their work ends) was not in the log the guard read, so it cannot have been hidden from it."""
        steps = self.uses.get(ref, ())
        i = bisect.bisect_right(steps, (seen_by, sys.maxsize))
        return steps[i - 1][1] if i else None

    def kept_until(self, row: Any, enrolled: _Enrolment) -> Optional[dt.date]:
        """The latest expiry the log allows the row: its enrolment's, or one an interaction
        recorded after it moved it to, never past the limit the subject's enrolments for the
        purpose recorded (read_log). An interaction moves only the expiry of a row held for
        its purpose alone (rows.moved_expiry). None when the enrolment recorded none."""
        if enrolled.expires is None:
            return None
        if len(row.purposes) != 1:
            return enrolled.expires
        key = (str(row.pseudonym), str(row.purposes[0]))
        steps = self.touched.get(key)
        if not steps:
            return enrolled.expires
        latest = self._latest.get(key)
        if latest is None:  # the latest date from each step on, once per key: the check stays linear
            latest = [d for _, d in steps]
            for i in range(len(latest) - 2, -1, -1):
                latest[i] = max(latest[i], latest[i + 1])
            self._latest[key] = latest
        i = bisect.bisect_right(steps, (enrolled.seq, dt.date.max))
        return max(enrolled.expires, latest[i]) if i < len(steps) else enrolled.expires


def read_log(entries: Iterable[Any]) -> _Log:
    out = _Log()
    revoked_refs = out.revoked_refs
    giver: dict[str, set[str]] = {}  # token reference -> the subject whose consent it is
    revoked_keys: dict[str, int] = {}  # API key id -> seq of its revocation
    # (pseudonym, purpose) -> the limit its newest enrolment so far recorded (audit.KEPT_AT_MOST):
    # no match may move an expiry past it. date.max once one recorded none (an earlier safeface).
    limits: dict[tuple[str, str], dt.date] = {}
    for e in entries:
        acted = _KEY_ACTOR.fullmatch(e.actor or "")
        if acted and revoked_keys.get(acted[1], int(acted[2]) + 1) <= int(acted[2]):
            out.late.append(f"entry {e.seq} ({e.operation}) was made under API key {acted[1]}, found unrevoked after "
                            f"its revocation in entry {revoked_keys[acted[1]]}: the revocation was hidden from the "
                            "key check.")
        if e.decision != "allowed":
            continue
        if e.operation == "trust-remove":
            key = _TRUST_KEY.search(e.note or "")
            if key:
                out.untrusted[key[1]] = int(e.seq)
        if e.operation in ("liveness", LIVENESS_SPENT):
            _liveness_entry(out, e)
        if e.operation == "apikey":
            revoked = _KEY_REVOKED.fullmatch(e.note or "")
            if revoked:
                revoked_keys.setdefault(revoked[1], int(e.seq))
        # The last entry before the guard judged this call (SafeFace._run; an enrolment's, where it
        # is judged again under the store's write lock). None for an entry written before entries
        # named it, under the rules of its day: not judged by these.
        judged = judged_after(e.note)
        if e.operation in USES and e.token_id:
            ref = str(e.token_id)
            # A use counts where it was judged: one judged before a withdrawal may be recorded after it.
            point = judged if judged is not None else int(e.seq)
            steps = out.uses.setdefault(ref, [])
            if not steps or point < steps[-1][1]:
                steps.append((int(e.seq), point))
            # Enroll, verify and export name the consent's own subject; identify names its
            # candidates, so only the note's "consent of" (or what other calls taught) counts.
            if e.operation != "identify":
                giver.setdefault(ref, set()).update(str(s) for s in e.subjects)
            else:
                giver.setdefault(ref, set()).update(_CONSENT_OF.findall(e.note or ""))
            if judged is not None and revoked_refs.get(ref, judged + 1) <= judged:
                out.late.append(f"entry {e.seq} ({e.operation}) let in token {ref[:14]}... after its revocation in "
                                f"entry {revoked_refs[ref]}: the withdrawal was hidden from the guard.")
            elif judged is not None and (e.basis == "consent" or e.operation == "enroll"):
                # Withdrawn if used before the withdrawal, or issued at or before it (as the guard
                # judges: PolicyState.is_revoked, AuditLog.records_withdrawal). An erasure withdraws
                # consents; a legal basis it does not withdraw, but it enrols no one erased after it
                # was issued or used (judged for the enrolled subject only: one legal basis may
                # cover many people).
                issued = last_mention(_ISSUED, e.note)  # None: written before entries named it
                skews = _ISSUED_SKEW.findall(e.note or "")
                skew = min(int(skews[-1] or 0), CLOCK_SKEW_S) if skews else 0
                whose = giver[ref] if e.basis == "consent" else {str(s) for s in e.subjects}
                used = out.first_use(ref, judged)
                after = [w for s in whose for w, when in out.withdrawals.get(s, ())
                         if w <= judged and ((used is not None and used < w)
                                             or (issued is not None and issued <= when + skew))]
                if after:
                    out.late.append(f"entry {e.seq} ({e.operation}) let in token {ref[:14]}..., issued or used before "
                                    f"its subject's withdrawal in entry {max(after)}: the withdrawal was hidden from the "
                                    "guard.")
        if e.operation == "identify" and judged is not None:
            _matched_after_withdrawal(out, e, judged)
        if e.operation == "enroll":
            enrolled = _Enrolment(int(e.seq), e.purpose, tuple(str(s) for s in e.subjects), _recorded_expiry(e.note),
                                  _entry_time(e).timestamp(), str(e.token_id or ""))
            for row in rows_named(e.note):
                earlier = out.enrolment.get(row)
                if earlier is not None:
                    # Ids are never handed out twice (an enrolment that never committed has its ids
                    # skipped; a migration copies rows with their ids and the counter): the
                    # counter was set back, by a hand edit or a restored older copy of the store.
                    out.found.append(f"row {row} is named by two enrolments, entries {earlier.seq} and {e.seq}: the "
                                     "store handed out its id twice (its id counter was set back by a hand edit or "
                                     f"a restored older copy), so the row of entry {earlier.seq} was lost and hidden.")
                out.enrolment[row] = enrolled
                out.live.add(row)
                if judged is not None:
                    out.enrolled_at[row] = (int(e.seq), judged)
            limit = kept_at_most(e.note)
            for s in enrolled.subjects:
                out.last_enrolled[s] = int(e.seq)
                held = (s, str(e.purpose))
                # The newest enrolment's limit, as the guard reads it (AuditLog.interaction_limit): an
                # erased enrolment's longer one must not widen the cap on the rows enrolled since.
                limits[held] = limit.date() if limit else dt.date.max
        elif e.operation == "verify" and (e.note or "").startswith("match") and e.purpose \
                and EXPIRY_KEPT not in (e.note or ""):
            # A match may move the expiry (US-01): to the date the entry records. One that says it
            # kept the expiry moves nothing (any match gave a key holder 3 years, again at each
            # match); one written before match entries said either, at most the interaction's
            # length from the day it was made. Never past the limit the subject's enrolments for the
            # purpose recorded: a later date was read from a purpose end stretched by hand.
            until = _recorded_expiry(e.note) or (_entry_time(e).date() + dt.timedelta(days=BIPA_INTERACTION_DAYS))
            for s in e.subjects:
                held = (str(s), str(e.purpose))
                out.touched.setdefault(held, []).append((int(e.seq), min(until, limits.get(held, dt.date.max))))
        elif e.operation in REMOVALS or e.operation == UNCOMMITTED:
            gone = rows_named(e.note)
            out.live.difference_update(gone)
            out.removed.update(gone)
            if e.operation == "revoke" and e.token_id:
                revoked_refs.setdefault(str(e.token_id), e.seq)
            elif e.operation in ("erase", "revoke"):
                for s in e.subjects:
                    out.withdrawals.setdefault(str(s), []).append((int(e.seq), withdrawal_time(e.note, e.time, e.seq)))
    return out


def _liveness_entry(out: _Log, e: Any) -> None:
    """A check that issued evidence, or the spending of one where a call was judged: evidence
    spent must come from a check this log records, within its validity (by the log's clock). A
    host holding the keys can sign evidence no check issued (or date one back): the call it let
    in is named afterwards."""
    named, at = liveness_ref(e.note), _entry_time(e).timestamp()
    if named is None:
        return
    ref, evidence = named
    if e.operation == "liveness":
        out.liveness[ref] = (at, evidence)
        return
    issued = out.liveness.get(ref)
    if issued is None:
        out.late.append(f"entry {e.seq} spent liveness evidence {ref} that no liveness check in this log issued: "
                        "it was made with the workspace's keys outside a check.")
    elif issued[1] is not None and evidence is not None and issued[1] != evidence:
        out.late.append(f"entry {e.seq} spent liveness evidence {ref} other than the one its check issued: "
                        "another was signed for the checked challenge with the workspace's keys.")
    elif not -CLOCK_SKEW_S <= at - issued[0] <= DEFAULT_VALIDITY_S + CLOCK_SKEW_S:
        out.late.append(f"entry {e.seq} spent liveness evidence {ref} {at - issued[0]:.0f} s after the check that "
                        f"issued it, outside its {DEFAULT_VALIDITY_S} s validity: a handle's clock was set back.")


def _matched_after_withdrawal(out: _Log, e: Any, judged: int) -> None:
    """An identification's candidates erased (or revoked as a subject) at or before its judging
    point and not enrolled since: the erasure entry follows the store's delete, so the store, or
    an open handle's index, still held the erased template. A candidate erased after the call was
    judged, its entry recorded later, was found before the erasure."""
    for s in e.subjects:
        steps = out.withdrawals.get(str(s))
        if not steps:
            continue
        i = bisect.bisect_right(steps, (judged, sys.maxsize))
        if i and out.last_enrolled.get(str(s), -1) < steps[i - 1][0]:
            out.found.append(f"entry {e.seq} (identify) found {str(s)[:14]}... as a candidate after its erasure or "
                             f"revocation in entry {steps[i - 1][0]} (judged after entry {judged}), with no enrolment "
                             "since: the store or an open handle still held an erased subject's template.")


def rows_digest(key: bytes, rows: Sequence[Any]) -> str:
    h = hmac.new(key, b"safeface store digest v1\x00", hashlib.sha256)
    for r in sorted(rows, key=lambda r: r.row_id):
        h.update(f"{r.row_id}|{r.pseudonym}|{r.token_id}|{','.join(r.purposes)}|{r.expires_at.isoformat()}\n"
                 .encode())
    return h.hexdigest()


def _row_problems(row: Any, consent_keys: Mapping[str, Ed25519PublicKey],
                  authority_keys: Mapping[str, Ed25519PublicKey], token_ref: Callable[[str], str],
                  pseudonym_key: bytes, log: _Log, no_longer_trusted: Sequence[tuple[str, Ed25519PublicKey]] = ()
                  ) -> list[str]:
    if not row.token:
        return [f"row {row.row_id} keeps no signed token: it was not stored through the guard."]
    legal = row.provenance == "legal-basis"
    decode = decode_legal_basis if legal else decode_consent
    try:
        tok: Any = decode(row.token, authority_keys if legal else consent_keys)
    except TokenError as exc:
        tok = _signed_while_trusted(row, decode, no_longer_trusted, log)
        if isinstance(tok, str) or tok is None:
            return [tok or f"row {row.row_id}'s sealed token does not verify against the trusted keys ({exc})."]
    if not same_digest(token_ref(tok.token_id), row.token_id):
        return [f"row {row.row_id} is filed under another token than the one sealed with it."]
    withdrawn = _withdrawal_problem(row, tok, log)
    return ([withdrawn] if withdrawn is not None else []) + _record_problems(row, tok, pseudonym_key, log)


def _signed_while_trusted(row: Any, decode: Callable[..., Any], keys: Sequence[tuple[str, Ed25519PublicKey]],
                          log: _Log) -> Any:
    """The row's token if a key no longer trusted signed it and the row was enrolled before the
    log's removal of that key (an honest removal leaves the rows it let in explained); a problem
    (str) if it was enrolled after; None if no such key signed it. A removal holds the store's
    write lock, under which an enrolment decides its signer's trust again and writes its entry,
    so the log's order is the order in which they were decided."""
    for thumbprint, public_key in keys:
        try:
            tok = decode(row.token, {key_id(public_key): public_key})
        except TokenError:
            continue
        removed, enrolled = log.untrusted.get(thumbprint), log.enrolment.get(row.row_id)
        if removed is not None and enrolled is not None and enrolled.seq < removed:
            return tok
        return (f"row {row.row_id}'s sealed token was signed by key {thumbprint}, which was no longer trusted when "
                "the row was stored" + (f" (removed in entry {removed})" if removed is not None else "") + ".")
    return None


def _record_problems(row: Any, tok: Any, pseudonym_key: bytes, log: _Log) -> list[str]:
    """A row's description against what let it in: the seal binds whatever the key holder wrote,
    so purposes, pseudonym and expiry are checked against the signed token and the log."""
    out = []
    what = "legal basis" if row.provenance == "legal-basis" else "consent"
    wider = sorted(set(row.purposes) - set(tok.purposes))
    if wider:
        out.append(f"row {row.row_id} is held for {wider}, which its {what} does not cover: its purposes were "
                   "widened behind the guard.")
    subject = getattr(tok, "subject", "")  # a legal basis names no one
    if subject:
        try:
            given_by = pseudonymize(pseudonym_key, subject)
        except InvalidArgument:
            given_by = ""
        if not same_digest(given_by, str(row.pseudonym)):
            out.append(f"row {row.row_id} is filed under another pseudonym than its consent's subject: it was "
                       "re-filed behind the guard.")
    enrolled = log.enrolment.get(row.row_id)
    if enrolled is None:
        return out
    if enrolled.purpose is not None and set(row.purposes) - {enrolled.purpose}:
        out.append(f"row {row.row_id} is held for {sorted(row.purposes)} but was enrolled for {enrolled.purpose!r} "
                   f"(entry {enrolled.seq}): its purposes were widened behind the guard.")
    if enrolled.subjects and str(row.pseudonym) not in enrolled.subjects:
        out.append(f"row {row.row_id} is filed under another pseudonym than its enrolment (entry {enrolled.seq}) "
                   "named: it was re-filed behind the guard.")
    if enrolled.token and not same_digest(enrolled.token, str(row.token_id)):
        out.append(f"row {row.row_id} is filed under another token than its enrolment (entry {enrolled.seq}) was "
                   "let in under: it was sealed elsewhere (a copy of the workspace) or re-filed behind the guard.")
    # The log's clock, not the caller's: a host that set the SDK's clock back let in a token that
    # had expired, or forward one not yet valid; the entry's own time shows it. An enrolment is
    # recorded when its work ends, so a token may expire while the face is embedded.
    if enrolled.at and not (tok.issued_at - CLOCK_SKEW_S <= enrolled.at < tok.expires_at + ENROL_WORK_S):
        out.append(f"row {row.row_id} was enrolled (entry {enrolled.seq}) outside its {what}'s validity: the "
                   "guard was given another clock than the log's.")
    until = log.kept_until(row, enrolled)
    if until is not None and _utc(row.expires_at).date() > until:
        out.append(f"row {row.row_id} is kept until {_utc(row.expires_at).date().isoformat()}, later than the log "
                   f"allows ({until.isoformat()}, from its enrolment in entry {enrolled.seq} and any interaction "
                   "since): its retention was extended behind the guard.")
    return out


def _withdrawal_problem(row: Any, tok: Any, log: _Log) -> Optional[str]:
    # The guard refuses to enrol a person under a consent or legal basis issued before their
    # erasure or revocation, or used before it: a row enrolled so got past a withdrawal hidden from it.
    at, judged = log.enrolled_at.get(row.row_id, (None, None))
    # A withdrawal removes every row of its subject (or token) stored before it, under the store's
    # write lock: one still present was kept by the store (a database rule that skips the delete).
    later = [seq for seq, _ in log.withdrawals.get(str(row.pseudonym), ()) if at is not None and seq > at]
    revoked = log.revoked_refs.get(str(row.token_id))
    if later or (at is not None and revoked is not None and revoked > at):
        return (f"row {row.row_id} is still stored after its subject's erasure or its consent's revocation in entry "
                f"{min(later) if later else revoked}: the store kept a row the withdrawal removed.")
    used = log.first_use(str(row.token_id), judged) if judged is not None else None
    for seq, when in log.withdrawals.get(str(row.pseudonym), ()):
        if at is not None and seq < at and (tok.issued_at <= when or (used is not None and used < seq)):
            return (f"row {row.row_id} was enrolled under a token issued or used before its subject's withdrawal in "
                    f"entry {seq}: the withdrawal was hidden from the guard.")
    return None


def check_store(rows: Sequence[Any], entries: Iterable[Any], consent_keys: Mapping[str, Ed25519PublicKey],
                authority_keys: Mapping[str, Ed25519PublicKey], token_ref: Callable[[str], str],
                digest_key: bytes, no_longer_trusted: Mapping[str, Sequence[tuple[str, Ed25519PublicKey]]] = {}
                ) -> StoreReport:
    """`digest_key`: the pseudonym key, under which `token_ref` names tokens and the store names
    subjects (the digest, and a consent's subject's pseudonym, are keyed by it).
    `no_longer_trusted`: {"consent_issuers" or "authorities": [(thumbprint, key)]} of the keys
    removed from the trust store, by which rows enrolled before their removal are still explained."""
    log = read_log(entries)
    live, removed = log.live, log.removed
    problems: list[str] = list(log.late) + log.found
    present = {r.row_id for r in rows}
    for r in rows:
        if r.row_id in removed:
            problems.append(f"row {r.row_id} was removed (erasure, revocation or purge) but is present again: the "
                            "store was restored from an older copy or the row was re-inserted.")
        elif r.row_id not in live:
            problems.append(f"row {r.row_id} has no \"enroll allowed\" audit entry: it was added behind the guard.")
        problems += _row_problems(r, consent_keys, authority_keys, token_ref, digest_key, log,
                                  no_longer_trusted.get("authorities" if r.provenance == "legal-basis"
                                                        else "consent_issuers", ()))
    for rid in sorted(live - present):
        problems.append(f"row {rid} was enrolled (audit) but is missing from the store: it was deleted behind the "
                        "guard, the store was restored from an older copy, or a crash fell between the two commits. "
                        "If an erasure of its subject was interrupted (a process killed), erase them again: that "
                        "records the row as already gone.")
    return StoreReport(len(rows), rows_digest(digest_key, rows), tuple(problems))
