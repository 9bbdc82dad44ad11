"""SafeFace: the facade. Every public call is guard -> pipeline -> store -> audit.

The guard (policy/guard.py) decides every rule; this object only sequences, through one audited
wrapper (`_run`): a refusal raises PolicyViolation naming its rule, stores nothing and is
audited; a failure inside an authorised call is audited as failed and raised as a SafeFaceError.
The store's write transaction calls the guard again (`recheck_at_write`) under the lock that
erasure and revocation take, and writes the "enroll allowed" audit entry naming the new rows
before it commits.

A SafeFace is built only by :meth:`SafeFace.open`. The store is private to it: nothing in the safe
namespace hands out a store, and a row written behind this object is named by `audit verify`.
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import datetime as dt
import hashlib
import hmac
import itertools
import logging
import os
import re
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator, Mapping, NamedTuple, Optional, Sequence, TypeVar, Union

import numpy as np

from ..atomicfile import exclusive_lock, shared_lock
from ..errors import (AuthenticationError, BackendError, ConfigError, EyesCovered, ImageError, IntegrityError, InvalidArgument,
                      LoginFormTaken, PolicyViolation, SafeFaceError, SchemaOwnerNeeded, WorkspaceBusy, WorkspaceUnwritable)
from ..hazmat.templates.pseudonym import new_subject_problem, token_pseudonym, usual_spelling
from ..imageio import ImageInput, load_image
from ..lookalike import not_plain_char, shows_nothing
from ..policy.attributes import MAX_ATTRIBUTES
from ..policy.deployment import Deployment, Finding, working_days_after
from ..policy.guard import CLOCK_SKEW_S, BatchItem, CaptureFacts, Decision, Guard, Operation, Request
from ..policy.receipts import ErasureReceipt, issue_receipt, receipt_key, verify_receipt
from ..policy.rules import rule_for
from ..policy.tokens import is_whole_token
from ..sqlite_store import raise_if_damaged, raise_if_unwritable
from ..storage.rows import ErasureResult, keys_from_meta, rekey_mark_holds
from ..workspace.anchor import missing_anchor
from ..workspace.apikeys import (KEY_ID, PREFIX as KEY_PREFIX, ApiKey, ApiKeys, hashing_key, session_ref,
                                 session_until)
from ..workspace.assessment import (ASSESSMENT_OPERATIONS, audit_section_problem, names_an_assessment,
                                   recorded_purge_times, recorded_roles, shown_assessment, unrecorded_problem)
from ..workspace.audit import (JUDGED_AFTER, KEPT_AT_MOST, STORE_TRANSACTION, WITHDRAWN_AT, AuditEntry, AuditLog,
                               AuditReport, RowsOnRecord, entry_time, key_versions_named, rows_named, store_transaction)
from ..workspace.keys import ASSESSMENT_MAC, derived_key, is_demo, receipt_file_problem
from ..workspace.owed_marks import SESSION_ENDS_BASE, OwedMarks, session_end_row
from ..workspace.passphrase import open_keyring
from ..workspace.paths import WorkspacePaths
from ..workspace.session import (follow_witnesses, open_apikeys, open_audit, open_state, workspace_anchors,
                                 write_config)
from ..workspace.trust import OPERATIONS as TRUST_OPERATIONS, TrustStore, load_trust
from ..workspace.state import PolicyState
from ..workspace.storecheck import (CONSENT_OF, COMMITTED, EXPIRY_KEPT, TOKEN_ISSUED, UNCOMMITTED, WITHDRAWAL_SKEW,
                                    StoreReport, check_store, key_actor, key_issue_prefix, key_issued_note,
                                    key_revoked_note, session_ended_note)
from .nonces import RecordedNonces, evidence_ref, nonce_ref
from .revocations import RecordedRevocations
from .results import Candidate, Enrollment, Export, Record, Verification

log = logging.getLogger("safeface.sdk")
Clock = Callable[[], dt.datetime]
T = TypeVar("T")
FILING_WORKING_DAYS = 30
REPORT_WRITTEN = "compliance report written; sha256"  # report's note, before compliance.json's digest
EVALUATION_ON_RECORD = "evaluation summary sha256"  # record_evaluation's note, before the digest
FILING_CROSSED = "filing-threshold"  # the entry recording the crossing, which dates it
# Per purge audit entry, within the log's field limits (99 subjects, a 64 KiB note).
PURGE_ENTRY_SUBJECTS = 90
PURGE_ENTRY_ROWS = 4000
RECIPIENT_MAX_CHARS = 200  # an export's recipient, written whole into its entry's note
_OPENER = object()


def utc_now() -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc)


@dataclass(frozen=True)
class _Probe:
    """What the pipeline made of the one face of a call's image. `masked`: the mask detector
    called its lower face covered (None: the pipeline has no mask detector); `visible`: the raw
    visible-region embedding (synthetic masks drawn over the face, see visible.py), made for an
    enrolment, which seals it into its row, and for a masked probe, which is matched by it."""

    vec: np.ndarray
    masked: Optional[bool] = None
    mask_confidence: Optional[float] = None
    visible: Optional[np.ndarray] = None
    # A bare probe's visible-region embedding, made only when it meets a masked enrolment (four
    # more chips to embed): None when the pipeline cannot make one.
    bare_visible: Optional[Callable[[], np.ndarray]] = field(default=None, repr=False, compare=False)


_REGION_PATHS = ("visible", "visible-masked")  # the store paths that score visible-region templates
_TOKEN_REF = re.compile(r"t-[0-9a-f]{32}")
# Calls recorded when their work ends, not where they were judged (enrolment is judged again under
# the store's write lock, where its entry is written): their entries name the judging point.
_JUDGED_AHEAD = frozenset({Operation.VERIFY, Operation.IDENTIFY, Operation.EXPORT})


class _Route(NamedTuple):
    """A store path a probe is matched on (storage.rows.PATHS), with its threshold; whether its
    templates come from masked enrolments."""

    path: Optional[str]
    threshold: float
    masked_enrolment: bool


@dataclass(frozen=True)
class _Note:
    """What the "allowed" audit entry of a call says (None: the call wrote its own entry)."""

    subjects: Sequence[str]
    text: Optional[str]
    # The answer as it stands once the call is decided again before it is given (verify,
    # identify, export; `_run`): a template matched or a record read, then erased by another
    # process whose receipt is signed, is not answered.
    settle: Optional[Callable[[], tuple[Any, "_Note"]]] = None




class SafeFace:
    """Open a workspace with :meth:`open`; close it (or use ``with``) when done."""

    def __init__(self, opener: object, paths: WorkspacePaths, deployment: Deployment, keyring: Any, gallery: Any,
                 audit: AuditLog, state: PolicyState, apikeys: ApiKeys, trust_store: TrustStore, role: str,
                 clock: Clock, pipeline: Any) -> None:
        if opener is not _OPENER:
            raise ConfigError("a SafeFace is built only by SafeFace.open(workspace, ...), which checks the keyring, "
                              "the audit log and the trust store.")
        self._paths = paths
        self._deployment = deployment
        # Unknown, not the file's digest now: open read the file before deriving the keys (a
        # second or more), and an edit landing meanwhile was taken as already judged, so the
        # handle judged by the old file for good. The first call reads the file again.
        self._config_digest = ""
        self._assessment_seq = -1  # the audit entry _check_assessment last judged by (-1: none yet)
        self._keyring = keyring
        self._gallery = gallery
        self._audit = audit
        self._audit_lock = threading.Lock()
        # Held across reading deployment.json and judging a call by it, so that no thread judges
        # by a configuration whose assessment another thread has not checked yet.
        self._judge_lock = threading.RLock()
        self._state = state
        self._role = role
        self._actor: Optional[str] = None  # the credential acting (an API key id), recorded in each entry
        self._key: Optional[ApiKey] = None  # the API key a view acts as (acting_as_key), checked again per call
        self._is_view = False
        self._root = self  # a view's state that can change (the deployment read, caches) lives here
        self._closed = False
        self._pad_cache: Optional[tuple[str, Any]] = None
        self._clock = clock
        self._pipeline = pipeline
        self._receipt_key = receipt_key(keyring.key("pseudonym"))
        self._token_key = keyring.key("pseudonym")
        self._assessment_key = derived_key(keyring, ASSESSMENT_MAC)
        # The trust store checked against the log's last trust change, and that change (_sync_trust);
        # every reader of the trusted keys (the guard, the store check, the report) reads this one.
        self._trust_store = trust_store
        self._trust = trust = trust_store.for_guard()
        self._trust_seq = trust_store.audit_seq
        from ..capture.evidence import EvidenceKeys

        self._evidence_keys = EvidenceKeys(keyring.key("pseudonym"),
                                           int(deployment.section("matching").get("dim") or 128))
        self._guard = Guard(deployment, trust["consent_issuers"], trust["authorities"],
                            RecordedRevocations(state, audit), gallery.pseudonym,
                            self.token_ref, gallery, evidence=self._evidence_keys,
                            nonces=RecordedNonces(state, audit))
        self._apikeys = apikeys
        # Rows this handle stored whose commit mark the disk refused (settled by whoever writes it).
        self._owed = OwedMarks(paths.owed_marks)
        # Console sessions whose logout no store took, held ended for every process of this host
        # while this handle lives (end_session), by their byte's row and the session's end: locks
        # on the keys folder, which need no write where the disk refused every one.
        self._owed_ends = OwedMarks(paths.keys, base=SESSION_ENDS_BASE, shared=True)
        self._ends_owed: dict[str, int] = {}  # each session's reference -> its end

    # -- opening ----------------------------------------------------------------------------
    @classmethod
    def open(cls, workspace: Union[str, Path], passphrase: Optional[str] = None, *,
             passphrase_file: Optional[Path] = None, keyring: Any = None, role: Optional[str] = None,
             pipeline: Any = None, clock: Optional[Clock] = None) -> "SafeFace":
        """Open a workspace. `keyring` takes any keyring (a HostKeyring backed by a KMS or secure
        element); otherwise the workspace's passphrase-wrapped keyring file is opened.

        `pipeline` is hazmat: a host-supplied pipeline is trusted to say how many faces an image
        holds and what their embeddings are; its use is recorded in the audit log. `clock` is
        for --demo workspaces only (tests and trials): a real workspace always uses the system
        clock, so tokens and audit entries cannot be backdated."""
        from ..storage.factory import StorageConfig, open_store

        paths = WorkspacePaths(_workspace_root(workspace))
        deployment = Deployment.load(paths.config)
        storage = StorageConfig.from_section(deployment.section("storage"))
        if keyring is None:
            keyring = open_keyring(paths, passphrase, passphrase_file)
        if clock is not None and not is_demo(paths, keyring):
            raise ConfigError("a clock can be set only for a workspace created with --demo (its keys/"
                              f"{paths.demo_mark.name} verifies under its keyring); a real workspace uses the "
                              "system clock.")
        audit = open_audit(paths, keyring, deployment)  # the head checked against itself and its anchors
        try:
            trust = load_trust(paths, keyring, audit)  # MACed, and the store the log's last trust change made
        except BaseException:
            audit.close()
            raise
        opened: list[Any] = [audit]
        try:
            state = open_state(paths, deployment, keyring)
            opened.append(state)
            apikeys = open_apikeys(paths, deployment, hashing_key(keyring.key("pseudonym")))
            opened.append(apikeys)
            dim = int(deployment.section("matching").get("dim") or 128)
            gallery = open_store(storage, paths.root, paths.gallery, keyring, dim)
        except BaseException:
            for part in opened:
                part.close()
            raise
        sf = cls(_OPENER, paths, deployment, keyring, gallery, audit, state, apikeys, trust,
                 role or deployment.default_role, clock or utc_now, pipeline)
        if pipeline is not None:
            kind = f"{type(pipeline).__module__}.{type(pipeline).__qualname__}"
            sf._append("open", "allowed", note=f"host pipeline {kind[:120]} (hazmat: its face counts and "
                       "embeddings are trusted)")
        try:
            sf._check_assessment(deployment)
            if role is None and sf._guard.sealed_roles is not None:
                sf._role = sf._guard.sealed_roles[1]  # the default role as last recorded, not as edited since
            sf._settle_uncommitted()
            sf._finish_rekey()
            sf.purge_expired()  # expired templates go as soon as anyone opens the workspace
        except BaseException:
            sf.close()
            raise
        return sf

    def _finish_rekey(self) -> None:
        """A re-key killed after the store moved to the new keys, before the old versions were
        retired and the call recorded: the old versions, which protect nothing now, are retired
        here, and the log says so (a leaked old key must not keep opening a backup of the rows).
        A store under older key versions than the log's last re-key moved it to is refused."""
        with self._gallery.locked():  # a re-key in progress holds it from rotation to retirement
            in_use = self._gallery.key_versions
            # The newest as the signed head names it (an entry edited by hand is refused there),
            # then the log's table, for a newest re-key entry that failed and names none.
            last = self._audit.last_entry(("rekey",))
            seq, recorded = next(((e.seq, named) for e in itertools.chain([last] if last else [],
                                                                         self._audit.newest_first(("rekey",)))
                                  if e.decision == "allowed" and (named := key_versions_named(e.note))), (0, {}))
            # The store and the keyring put back together from a copy made before a re-key: both
            # genuine, so everything opened, and the templates (new ones too) were sealed again
            # under the keys that re-key retired, perhaps because they leaked. A re-key never
            # lowers the versions; the log keeps what it moved to.
            older = {p: v for p, v in recorded.items() if in_use.get(p, v) < v}
            if older:
                raise IntegrityError(f"the templates are under key versions {in_use}, older than the versions {older} "
                                     f"audit entry {seq} records a re-key moved them to: gallery.db and the keyring "
                                     "were put back from a copy made before that re-key, under keys it retired. "
                                     "Put back the newest copies of both; nothing was opened.")
            if getattr(self._keyring, "retire", None) is None:
                return
            # Only a store a re-key moved: one made new under the newest keys (its file deleted,
            # or moved aside for a restore, after a re-key that died before its move) would
            # otherwise retire the keys every real template, and its backup, are under.
            if not rekey_mark_holds(self._keyring, self._gallery.meta()):
                return
            retired = self._retire_below(in_use)
            # Also a re-key stopped after its retirement, before its entry: the log must name the
            # versions the templates moved to, or a copy from before it would open unnoticed.
            if retired or recorded != in_use:
                self._append("rekey", "allowed", note=f"an interrupted re-key finished: templates under keys "
                                                      f"{in_use}; {retired} old key version(s) retired")

    def _retire_below(self, in_use: dict[str, int]) -> int:
        """Retire every key version older than the one the store is under, as the keyring file is
        now (another process may have retired some already); how many went. A host keyring
        (a KMS) has no retirement here: its versions are the host's to delete."""
        retire = getattr(self._keyring, "retire", None)
        if retire is None:
            return 0
        refresh = getattr(self._keyring, "refresh", None)  # not part of the Keyring protocol
        if refresh is not None:
            refresh()
        old = [(p, v) for p, now in in_use.items() for v in self._keyring.versions(p) if v < now]
        for p, v in old:
            retire(p, v)
        return len(old)

    def _settle_uncommitted(self) -> None:
        """An enrolment whose "enroll allowed" entry committed but whose store transaction did not
        (the process was killed between the two commits) is recorded as not stored, in an entry of
        its own, so the store check does not take it for a row deleted behind the guard. Only the
        enrolment entries after the newest "enroll-committed" entry can be such (each enrolment
        writes one after its store commit, under the store's write lock, held here too), and only
        rows above the store's committed id counter: a row deleted, or a store restored from an
        older copy after a later enrolment committed, stays a problem. Each store keeps a ceiling
        that commits with its rows (TemplateStore.never_committed)."""
        with self._gallery.locked():
            self._settle_locked()

    def _settle_locked(self, why: str = "the process stopped between the two commits") -> None:
        """:meth:`_settle_uncommitted`'s work, its caller holding the store's write lock."""
        pending: set[int] = set()
        xacts: dict[int, str] = {}  # the store transaction each entry names (PostgreSQL)
        for e in self._audit.newest_first(("enroll", COMMITTED, UNCOMMITTED)):
            if e.operation != "enroll":
                break
            pending.update(rows_named(e.note))
            if (xact := store_transaction(e.note)) is not None:
                xacts.update((r, xact) for r in rows_named(e.note))
        # Rows this handle owed a mark for that another handle has settled since.
        self._owed.settled(self._owed.owed() - pending)
        # (No commit mark in the whole log: the first enrolment was killed between its two
        # commits, or marks came after these entries. Only ids above the ceiling are settled.)
        # A row a live process stored and owes the mark for is stored whatever the ceiling says:
        # deleted by hand with the counter set back, it read as never committed.
        # And a row whose entry names a store transaction the store says committed is stored, the
        # ceiling set back or not (a kill -9 before the mark, then the row deleted by hand).
        below = self._gallery.never_committed(sorted(pending), xacts)
        alive = self._owed.stored_by_a_live_process(below)
        lost = [r for r in below if r not in alive]
        if lost:
            self._append(UNCOMMITTED, "allowed", note=f"rows={','.join(map(str, lost))}; their enrolment entries "
                         f"were committed but the store's transaction was not ({why}): nothing was stored, nothing "
                         "acknowledged")
            self._gallery.skip_ids(lost[-1])
        stored = sorted(pending - set(lost))
        if stored:  # committed, their mark not written (the disk refused it, or a kill): written now
            # With what else the enrolment writes after its commit, before the mark (once it is
            # written these rows are not settled again): a crossing of the filing threshold it
            # made, which no later enrolment (refused past it) would record.
            self._note_filing()
            self._append(COMMITTED, "allowed", note=f"rows={','.join(map(str, stored))}; stored (mark written late)")
        self._owed.settled(pending)

    def _settle_after_failure(self) -> None:
        """_settle_locked after a store write that failed in this process, where it can be written."""
        try:
            if self._audit.newest_seq("enroll") > self._audit.newest_seq(COMMITTED):
                self._settle_locked("the store's commit failed")
        except SafeFaceError:
            pass  # the log refuses it too: the next enrolment, or the next open, settles them

    def _ids_past_the_log(self) -> None:
        """Before an enrolment, under the store's write lock: the store hands out no row id the
        log already named. Ids only grow, so the newest enrolment entry names the highest. A store
        restored from an older copy, or its counter set back by hand, gave a new row the id of one
        it had lost, and the log's entries for the two then explained each other; the counter is
        raised past them, and that is recorded (the lost row stays missing, and named)."""
        newest = next(self._audit.newest_first(("enroll",)), None)
        if newest is None:
            return
        top = max(rows_named(newest.note), default=0)
        if top and self._gallery.never_committed([top]):
            self._gallery.skip_ids(top)
            self._append("store-counter", "allowed", note=f"the store's row counter stood below row {top}, which "
                         f"audit entry {newest.seq} named: raised past it (the store was restored from an older "
                         "copy or its counter set back by hand)")

    def close(self) -> None:
        if self._is_view:  # the workspace belongs to the object the view was made from
            return
        self._closed = True
        if self._owed.owed():
            # Its locks go with the handle (a service restarted): the marks it owes are written
            # first where the disk takes them now, or a row deleted by hand meanwhile, its counter
            # set back, would be settled by the ceiling as never committed.
            with contextlib.suppress(SafeFaceError):
                self._settle_uncommitted()
        self._owed.close()
        self._record_owed_ends()  # before their locks go with the handle
        self._owed_ends.close()
        self._gallery.close()
        self._audit.close()
        self._state.close()
        self._apikeys.close()

    def acting_as(self, role: str, actor: str) -> "SafeFace":
        """A view of this open workspace whose calls run as `role` and are recorded as made by
        `actor` (the service passes the role and id of the caller's API key). It shares this
        object's store, log, guard and pipeline, so it needs no closing; every call still goes
        through the one audited wrapper."""
        if not isinstance(role, str) or not role or not isinstance(actor, str) or not actor:
            raise InvalidArgument("acting_as needs a role and an actor (non-empty strings).")
        root = self._root
        root._pipe()  # loaded now, so that every view shares this pipeline
        view = copy.copy(root)
        view._role, view._actor, view._is_view, view._key = role, actor[:64], True, None
        return view

    def acting_as_key(self, key: ApiKey) -> "SafeFace":
        """A view acting as an authenticated API key (see :meth:`authenticate`): its role, and
        entries that name the key with the point of the log at which it was found unrevoked, so
        `audit verify` tells a use after a hidden revocation from a call in flight during one."""
        view = self.acting_as(key.role, key_actor(key.key_id, key.checked_after))
        view._key = key
        return view

    @property
    def role(self) -> str:
        return self._role

    def __enter__(self) -> "SafeFace":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def deployment(self) -> Deployment:
        """A copy of the configuration the guard judges by: changing it changes nothing judged
        (the guard's own reading changes only with deployment.json, under its assessment)."""
        return copy.deepcopy(self._deployment)

    @property
    def index_state(self) -> str:
        """How the store answers searches now (storage.base.TemplateStore.index_state): "local",
        "up", "opening" or "down"; the last two answer from the records and refuse enrolments."""
        return str(self._gallery.index_state())

    def check_records(self) -> None:
        """Raise what refuses every call of this handle now, as a call would find it: the audit
        log's signed head and every anchor (a witness the log records as started that is missing,
        a log rolled back), IntegrityError. For a readiness probe: deployment.json is read first, as
        a call reads it, so a witness moved on record is followed (else the probe said 503 over the
        old path until a call came, which a balancer then sent nowhere)."""
        self._sync_deployment()
        self._audit.check_head()

    @property
    def paths(self) -> WorkspacePaths:
        return self._paths

    @property
    def threshold(self) -> float:
        from ..hazmat.vision import DEFAULT_THRESHOLD

        t = self._deployment.match_threshold
        return DEFAULT_THRESHOLD if t is None else t

    @property
    def masked_threshold(self) -> float:
        """The threshold of the masked path: a probe the mask detector calls masked, against the
        visible-region templates. Its default is set where masked impostors reach the plain
        threshold's FMR (README, "Masked faces"), and follows a stricter plain threshold
        (`masked_default`): a mask must not buy a stranger a looser bar."""
        return self._masked_thresholds()[0]

    @property
    def both_masked_threshold(self) -> float:
        """The threshold of a masked probe against the visible-region templates of rows enrolled
        from a masked image (two masked strangers look more alike): `matching.both_masked_threshold`,
        default `DEFAULT_BOTH_MASKED_THRESHOLD`, following a stricter plain threshold as the masked
        one does, and never looser than the masked one (README, "Masked faces")."""
        return self._masked_thresholds()[1]

    def _masked_thresholds(self) -> tuple[float, float]:
        from ..hazmat.vision import masked_thresholds

        return masked_thresholds(self.threshold, self._deployment.masked_threshold,
                                 self._deployment.both_masked_threshold)

    def _masked_routes(self) -> tuple[_Route, ...]:
        """The store paths a masked probe's visible-region embedding takes, each with its threshold."""
        return (_Route("visible", self.masked_threshold, False),
                _Route("visible-masked", self.both_masked_threshold, True))

    def _bare_routes(self) -> tuple[_Route, _Route]:
        """The store paths of a probe not called masked: the main templates of rows enrolled bare,
        and the visible-region templates of masked enrolments, which meet the probe's own
        visible-region embedding at the masked threshold (the same kind of pair as a masked probe
        against a bare enrolment, sides swapped). A masked enrolment is never matched whole: two
        masked faces look alike, so a probe whose covering the detector missed would pass."""
        return _Route("plain-bare", self.threshold, False), _Route("visible-masked", self.masked_threshold, True)

    def pseudonym(self, subject: str) -> str:
        return str(self._gallery.pseudonym(subject))

    def token_ref(self, token_id: str) -> str:
        """A token id as this workspace stores and logs it: a keyed pseudonym."""
        return token_pseudonym(self._token_key, token_id)

    # -- reading the record (descriptions only) -----------------------------------------------
    def records(self, subject: Optional[str] = None) -> list[Record]:
        """The stored templates' descriptions, all of them or one subject's: pseudonym, purposes,
        expiry, provenance, token reference. Never an image, a vector or the token itself."""
        self._recheck_read()
        rows = self._gallery.rows() if subject is None else self._gallery.rows_for(subject)
        return [Record(r.row_id, r.pseudonym, r.purposes, r.token_id, r.provenance, r.expires_at, r.created_at,
                       r.last_interaction, r.masked_template, r.masked_enrolment) for r in rows]

    def audit_entries(self) -> list[AuditEntry]:
        self._recheck_read()
        return list(self._audit.entries())

    # -- the guarded calls ------------------------------------------------------------------
    def enroll(self, image: ImageInput, subject: str, purpose: str, consent: Optional[str] = None, *,
               legal_basis: Optional[str] = None, liveness: Optional[str] = None) -> Enrollment:
        """Enrol the one face of `image`. `liveness`: the evidence of a passed liveness check, for a
        purpose that requires it (PA-01); a purpose that requires capture quality refuses a poor
        capture naming what to fix (PA-02)."""
        now = self._clock()
        with self._naming("enroll", purpose):
            pseud = self.pseudonym(subject)
        request = Request(Operation.ENROLL, self._role, now, purpose=purpose, subject=subject, consent=consent,
                          legal_basis=legal_basis, evidence=liveness)

        def body(d: Decision) -> tuple[Enrollment, None]:
            _check_new_subject(subject)  # inside the audited call: a look-alike id refused is on record
            vec = self._embed_single(image, d)
            return self._store(d, [(subject, vec)], now)[0], None

        return self._run(request, [pseud], body)

    def enroll_many(self, items: Sequence[tuple[ImageInput, str, Optional[str]]], purpose: str) -> list[Enrollment]:
        """Bulk enrolment of (image, subject, consent token) items. Every item needs its own
        person's consent: a batch with any item lacking one is refused whole and nothing is
        stored (EU-02: no database built by untargeted collection)."""
        with self._naming("enroll", purpose):  # a batch refused for its shape or an id is on record too
            if isinstance(items, (str, bytes)) or not isinstance(items, Sequence) or not items or any(
                    not isinstance(item, (tuple, list)) or len(item) != 3 for item in items):
                raise InvalidArgument("enroll_many takes a non-empty list of (image, subject, consent token) items.")
            pseuds = [self.pseudonym(s) for _, s, _ in items]
        items = [tuple(item) for item in items]  # type: ignore[misc]  # checked above: three each
        now = self._clock()
        request = Request(Operation.ENROLL, self._role, now, purpose=purpose,
                          batch=tuple(BatchItem(s, c) for _, s, c in items))

        def body(d: Decision) -> tuple[list[Enrollment], None]:
            for _, subject, _ in items:  # inside the audited call, as enroll's
                _check_new_subject(subject)
            vecs = [(subject, self._embed_single(image, d)) for image, subject, _ in items]
            return self._store(d, vecs, now), None

        return self._run(request, pseuds, body)

    def verify(self, image: ImageInput, subject: str, purpose: str, consent: Optional[str] = None, *,
               legal_basis: Optional[str] = None, liveness: Optional[str] = None) -> Verification:
        now = self._clock()
        with self._naming("verify", purpose):
            pseud = self.pseudonym(subject)
        request = Request(Operation.VERIFY, self._role, now, purpose=purpose, subject=subject, consent=consent,
                          legal_basis=legal_basis, evidence=liveness)

        def body(d: Decision) -> tuple[Verification, _Note]:
            probe = self._embed_single(image, d)
            # A masked probe meets the visible-region templates, those of bare and of masked
            # enrolments each with its own threshold; a subject whose rows predate them is matched
            # the plain way until the next enrolment. Any other probe meets bare enrolments whole
            # and masked ones by its visible region (`_bare_routes`). The widest margin decides.
            scored: list[tuple[float, _Route]] = []
            # Rows the log does not explain (put back since their removal, or never enrolled
            # here): the log's word (_not_removed).
            removed = self._unexplained(subject, pseud)

            def meet(vec: np.ndarray, r: _Route) -> None:
                s = self._gallery.verify(subject, vec, purpose, now=now, path=r.path, exclude=removed)
                if s is not None:
                    scored.append((s, r))

            plain = _Route(None, self.threshold, False)
            if probe.masked and probe.visible is not None:
                for r in self._masked_routes():
                    meet(probe.visible, r)
                if not scored:
                    meet(probe.vec, _Route("plain-only", self.threshold, False))
            else:
                whole, by_visible = self._bare_routes()
                meet(probe.vec, whole)
                # Rows the log records removed take no part here either: a put-back masked
                # enrolment cost a visible-region embedding and one more read of the records.
                if probe.bare_visible is not None and self._gallery.may_hold(by_visible.path, purpose, now,
                                                                             subject_id=subject, exclude=removed):
                    meet(probe.bare_visible(), by_visible)
            score: Optional[float] = None
            route = plain
            if scored:
                score, route = max(scored, key=lambda sr: sr[0] - sr[1].threshold)
            match = score is not None and score >= route.threshold
            moved = f"; {EXPIRY_KEPT}" if match else ""
            if match:
                expiry = self._guard.interaction_expiry(pseud, purpose, now)
                if expiry is not None:
                    self._gallery.touch(subject, now, new_expiry=expiry, purpose=purpose)
                    # The expiry the interaction moved to, which the store check holds the row to.
                    moved = f"; expires {expiry.astimezone(dt.timezone.utc).date().isoformat()}"
            by_region = route.path in _REGION_PATHS
            note = (("no template" if score is None else ("match" if match else "no match"))
                    + _path_note(probe, by_region, route.masked_enrolment) + moved)

            answer = (Verification(match, score, route.threshold, pseud, by_region, probe.mask_confidence,
                                   route.masked_enrolment, by_region and not probe.masked), _Note([pseud], note))

            def settle() -> tuple[Verification, _Note]:
                # A subject whose templates another process erased (its receipt signed) since
                # they were matched has no template to match (_run).
                if match and not self._held_now(pseud):
                    return (Verification(False, None, route.threshold, pseud, False, probe.mask_confidence),
                            _Note([pseud], "no template" + _path_note(probe, False, False)))
                return answer

            return answer[0], dataclasses.replace(answer[1], settle=settle)

        return self._run(request, [pseud], body)

    def identify(self, image: ImageInput, purpose: str, consent: Optional[str] = None,
                 legal_basis: Optional[str] = None, top_k: int = 5, *, liveness: Optional[str] = None
                 ) -> list[Candidate]:
        """The enrolled subjects (pseudonyms) that match, best first. Only templates whose
        purposes include `purpose` and that have not expired take part."""
        if isinstance(top_k, bool) or not isinstance(top_k, int) or top_k < 1:
            raise InvalidArgument(f"top_k must be a positive integer, got {top_k!r}.")
        now = self._clock()
        request = Request(Operation.IDENTIFY, self._role, now, purpose=purpose, consent=consent,
                          legal_basis=legal_basis, evidence=liveness)

        def body(d: Decision) -> tuple[list[Candidate], _Note]:
            pipe = self._pipe()
            pixels = _pixels(pipe, image)
            result = pipe.embed(pixels)
            if result.embedding is None or result.face is None:
                raise ImageError("no face was found in the image.")
            vec = np.asarray(result.embedding, dtype=np.float32)
            _refuse_hidden_eyes(pipe, pixels, result.face, vec)
            self._guard.check_capture(d, CaptureFacts(vec, None, self.threshold))
            probe = _probe(pipe, pixels, result.face, vec, _mask_check(pipe, pixels, result.face, vec), enrol=False)
            plain = _Route(None, self.threshold, False)

            def search(exclude: frozenset[int], k: int) -> list[tuple[Any, _Route]]:
                if not probe.masked or probe.visible is None:
                    # Bare enrolments whole; masked ones by the probe's visible region (`_bare_routes`).
                    whole, by_visible = self._bare_routes()
                    found = [(m, whole) for m in self._gallery.search(
                        vec, purpose, k=k, threshold=whole.threshold, now=now, path=whole.path, exclude=exclude)]
                    if probe.bare_visible is not None and self._gallery.may_hold(by_visible.path, purpose, now,
                                                                                 exclude=exclude):
                        found += [(m, by_visible) for m in self._gallery.search(
                            probe.bare_visible(), purpose, k=k, threshold=by_visible.threshold, now=now,
                            path=by_visible.path, exclude=exclude)]
                    return found
                # Each row by its own path: its visible-region template with the masked threshold
                # (or the both-masked one, for a masked enrolment), or (a row enrolled before those
                # were made) its main template the plain way.
                found = [(m, r) for r in self._masked_routes() for m in self._gallery.search(
                    probe.visible, purpose, k=k, threshold=r.threshold, now=now, path=r.path, exclude=exclude)]
                return found + [(m, plain) for m in self._gallery.search(
                    vec, purpose, k=k, threshold=self.threshold, now=now, path="plain-only", exclude=exclude)]

            # Rows the log records removed (put back since) are left out of the search itself, not
            # of its answer: dropped after ranking, enough of them pushed a genuine match out of a
            # small top_k, or hid their subject's genuine row behind its put-back best. The search
            # is asked again, less each such row it proposed, until it proposes none (once, where
            # no row was put back), each time for top_k more than the rows left out so far: many
            # put-back rows are found in a few rounds, not one a round. (Asking for more changes
            # nothing: the best top_k of each path are among the best k, and the answer is cut.)
            # Each subject proposed has all its removed rows left out at once: the search answers
            # one row a subject, so leaving out only the one proposed took a round for each of a
            # subject's put-back rows nearer the probe than its genuine one.
            left_out: frozenset[int] = frozenset()
            removed: dict[str, RowsOnRecord] = {}
            while True:
                proposed = search(left_out, top_k + len(left_out))
                found = self._not_removed(proposed, removed)
                kept = {id(m) for m, _ in found}
                dropped = [m for m, _ in proposed if id(m) not in kept]
                back = frozenset(int(m.row_id) for m in dropped).union(
                    *(removed[m.pseudonym].removed for m in dropped),
                    *(self._never_enrolled(m.pseudonym, removed[m.pseudonym]) for m in dropped)) - left_out
                if not back:
                    break
                left_out |= back
            best: dict[str, tuple[Any, _Route]] = {}
            for m, r in sorted(found, key=lambda f: f[1].threshold - f[0].score):  # the widest margin first
                best.setdefault(m.pseudonym, (m, r))
            ranked = list(best.values())[:top_k]
            # The entry's subjects are the candidates; whose consent let the call in is named apart,
            # so the store check judges a withdrawal by that person only (storecheck.read_log).
            giver = (f"; {CONSENT_OF} {self.pseudonym(d.consent.subject)}"
                     if d.consent is not None and d.consent.subject else "")

            def answer(matches: list[tuple[Any, _Route]]) -> tuple[list[Candidate], _Note]:
                out = [Candidate(m.pseudonym, float(m.score), r.path in _REGION_PATHS, r.masked_enrolment,
                                 r.masked_enrolment and not probe.masked) for m, r in matches]
                # Before the candidates' details, which a long list could have cut at the log's limit.
                return out, _Note([c.subject for c in out],
                                  f"{len(out)} candidate(s)" + giver + _candidates_note(probe, out))

            def settle() -> tuple[list[Candidate], _Note]:
                # A candidate whose matched template another process erased since the search
                # (its receipt signed) is not answered (_run).
                return answer([(m, r) for m, r in ranked if int(m.row_id) in self._held_now(m.pseudonym)])

            out, entry = answer(ranked)
            return out, dataclasses.replace(entry, settle=settle)

        return self._run(request, [], body)

    def _not_removed(self, found: list[tuple[Any, "_Route"]],
                     removed: Optional[dict[str, RowsOnRecord]] = None) -> list[tuple[Any, "_Route"]]:
        """`found` (matches, with their routes) less the rows the audit log does not explain
        (AuditLog.rows_on_record). Those it records removed and not enrolled again since: put
        back behind the guard, with the store's own notes of their erasure (a PostgreSQL `rows`
        and `erased` table restored together from a dump taken before it), they were matched
        again until `audit verify` named them. And those no enrolment of their subject names: a
        row sealed behind the guard by a host with the keys, or copied without any key from a
        copy of the workspace (which shares its keys) where that person was enrolled after the
        copy, was matched until `audit verify` named it. The log, anchored outside the store, is
        the record. Index probes for each candidate subject. `removed`: each subject's record,
        as read so far (filled here)."""
        removed = {} if removed is None else removed
        kept = []
        for m, r in found:
            if m.pseudonym not in removed:
                removed[m.pseudonym] = self._audit.rows_on_record(m.pseudonym)
            record = removed[m.pseudonym]
            if int(m.row_id) in record.removed:
                log.warning("gallery row %s is stored, but the audit log records its removal: it was put back "
                            "(restored from an older copy?) and is not matched. `safeface audit verify` names it; "
                            "erase the subject again to remove it", m.row_id)
                continue
            if not record.explains(int(m.row_id), str(m.token_id)):
                log.warning("gallery row %s is stored, but no enrolment in the audit log names it: it was added "
                            "behind the guard (or copied from a copy of this workspace) and is not matched. "
                            "`safeface audit verify` names it", m.row_id)
                continue
            kept.append((m, r))
        return kept

    def _held_now(self, pseudonym: str) -> set[int]:
        """The subject's row ids the store holds now, read once a verify's, identify's or
        export's work is done (its settled answer, _run): one seam, as _not_removed is one."""
        return set(self._gallery.row_ids_of(pseudonym))

    def _never_enrolled(self, pseud: str, record: RowsOnRecord) -> frozenset[int]:
        """The subject's stored rows at ids none of its enrolments names (identify): left out all
        at once, as its removed rows are. The search answers one row a subject, so a subject's
        rows copied in from a copy of the workspace were dropped one a round, each round one more
        search (41 searches for 40 such rows)."""
        if record.enrolled is None:
            return frozenset()
        return frozenset(r for r in self._gallery.row_ids_of(pseud) if r not in record.enrolled)

    def _unexplained(self, subject: str, pseud: str) -> frozenset[int]:
        """The subject's stored rows the audit log does not explain (_not_removed), for a verify:
        left out of it."""
        record = self._audit.rows_on_record(pseud)
        if record.enrolled is None:
            return record.removed
        return record.removed | frozenset(r.row_id for r in self._gallery.rows_for(subject)
                                          if not record.explains(int(r.row_id), str(r.token_id)))

    def export(self, subject: str, purpose: str, recipient: str, consent: Optional[str] = None, *,
               legal_basis: Optional[str] = None) -> Export:
        """Disclose a subject's stored records to `recipient`: refused unless the consent allows
        `transmit` for this purpose or a legal basis is given (CN-07, US-03)."""
        now = self._clock()
        with self._naming("export", purpose):
            pseud = self.pseudonym(subject)
            # The recipient is written into the audit note operators read: a right-to-left
            # override or a newline in it would change what they read there.
            if not isinstance(recipient, str) or not_plain_char(recipient) is not None:
                raise InvalidArgument("the recipient is plain text: no control, format (such as a right-to-left "
                                      "override) or line-separator characters.")
            # Recorded whole: a blank name (spaces, or a Hangul filler that str.strip keeps)
            # disclosed to no one on record, and one cut short in the note ("Acme HR", spaces,
            # "and data-broker.example") to someone else than the log said.
            if shows_nothing(recipient) or len(recipient) > RECIPIENT_MAX_CHARS:
                raise InvalidArgument(f"the recipient is named in 1 to {RECIPIENT_MAX_CHARS} characters, not blank; "
                                      "name who receives the records, as the audit log will show it.")
        request = Request(Operation.EXPORT, self._role, now, purpose=purpose, subject=subject, consent=consent,
                          legal_basis=legal_basis)

        def body(d: Decision) -> tuple[Export, _Note]:
            record = self._audit.rows_on_record(pseud)  # rows it does not explain: never disclosed (_not_removed)
            rows = [r for r in self._gallery.rows_for(subject)
                    if purpose in r.purposes and record.explains(int(r.row_id), str(r.token_id))]

            def disclose(shown: list[Any]) -> tuple[Export, _Note]:
                records = [{"subject": r.pseudonym, "purposes": list(r.purposes), "provenance": r.provenance,
                            "expires_at": r.expires_at.isoformat(timespec="seconds")} for r in shown]
                return (Export(recipient, str(d.basis), records),
                        _Note([pseud], f"disclosed {len(records)} record(s) to {recipient}"))

            def settle() -> tuple[Export, _Note]:
                # Records another process removed since they were read (its receipt signed) are
                # not disclosed (_run).
                held = self._held_now(pseud)
                return disclose([r for r in rows if r.row_id in held])

            out, entry = disclose(rows)
            return out, dataclasses.replace(entry, settle=settle)

        return self._run(request, [pseud], body)

    # -- liveness (PA-01) ------------------------------------------------------------------------
    def liveness_challenge(self, steps: Optional[Sequence[str]] = None, *, mirrored: bool = False) -> Any:
        """Issue a random challenge (head turns) with a nonce; it expires in seconds and can be
        answered once, by :meth:`liveness_check`. `mirrored`: the clip answering it will be
        recorded mirrored (a selfie preview); it is fixed here, with the steps, never by the
        check. `steps` fixes the moves, for --demo workspaces only (tests and trials): a real
        challenge must be unpredictable."""
        from ..capture.challenge import new_challenge, with_steps

        if not isinstance(mirrored, bool):
            raise InvalidArgument(f"mirrored is True or False, got {mirrored!r}.")

        now = self._clock()
        try:
            self._judge_capture(now)
        except PolicyViolation as exc:
            self._append("liveness-challenge", "refused", rule=exc.rule, note=exc.message[:120])
            raise
        ch = new_challenge(now.timestamp(), mirrored)
        if steps is not None:
            if not is_demo(self._paths, self._keyring):
                raise ConfigError("challenge steps can be chosen only in a --demo workspace; a real challenge is random.")
            ch = with_steps(ch, steps)
        self._state.add_challenge(ch.nonce, ",".join(ch.steps), ch.issued_at, ch.expires_at, ch.mirrored)
        self._append("liveness-challenge", "allowed", note=f"steps {','.join(ch.steps)}"
                     f"{'; mirrored' if ch.mirrored else ''}; valid {ch.expires_at - ch.issued_at:.0f} s")
        return ch

    def liveness_check(self, clip: Any, challenge: str, *, mirrored: Optional[bool] = None, fps: float = 10.0) -> Any:
        """Check a 1-3 s clip of the person answering `challenge` (its nonce): physics, replay
        cues and the moves asked (exactly those turns). The clip is read as mirrored or not as the
        challenge was issued; a `mirrored` given here that differs is refused. When live, the result
        carries evidence signed by this workspace, bound to the nonce, the clip's SHA-256, the time
        and the live face (sealed protected template), valid for seconds and for one call. The
        check is audited; neither the clip nor any frame is stored."""
        from ..capture.evidence import DEFAULT_VALIDITY_S
        from ..capture.liveness import bind_face, check_clip, default_engine
        from .results import LivenessCheck

        now = self._clock()
        rule = self._rule("liveness")
        try:
            self._judge_capture(now)
            steps, mirrored = self._open_challenge(str(challenge), now, mirrored)
        except PolicyViolation as exc:
            self._append("liveness", "refused", rule=exc.rule, note=exc.message[:120])
            raise
        except InvalidArgument as exc:
            self._append("liveness", "refused", rule=rule, note=str(exc)[:120])
            raise
        pipe = self._pipe()
        engine = getattr(pipe, "engine", None) or default_engine()
        try:
            result, decoded = check_clip(clip, engine, steps, mirrored, fps, self._pad_model())
        except SafeFaceError as exc:
            self._append("liveness", "failed", rule=rule, note=type(exc).__name__)
            raise
        except Exception as exc:  # a failure of ours or a library's: recorded, and raised as one of ours
            self._append("liveness", "failed", rule=rule, note=f"backend error: {type(exc).__name__}")
            raise BackendError(f"the liveness check failed inside the pipeline ({type(exc).__name__}); no evidence "
                               "was issued. Record the clip again.") from exc
        evidence = expires = None
        checks = dict(result.checks)
        # The live face: the mean embedding of the most frontal frames, shown to be the face whose
        # turns were judged (liveness.bind_face).
        face, identity = bind_face(result, decoded.frames, lambda f, b, p: self._tracked_face(pipe, f, b, p),
                                   self.threshold)
        if identity:
            checks["identity"] = identity
        if face is not None:
            evidence = self._evidence_keys.issue(
                nonce=str(challenge), clip_sha256=result.clip_sha256, now=now.timestamp(), decision="live",
                score=result.score, challenge=tuple(steps), embedding=face, validity_s=DEFAULT_VALIDITY_S)
            expires = now + dt.timedelta(seconds=DEFAULT_VALIDITY_S)
        decision, score = result.decision, result.score
        if result.live and evidence is None:
            score = min(score, 0.49)  # score >= 0.5 if and only if live
            if identity.get("consistent") is False and "similarity" in identity:
                decision = "attack"
                checks["reason"] = ("the face that turned is not the face shown frontally (another face in some "
                                    "frames): the person who moves must be the one presented")
            else:
                decision = "inconclusive"
                checks["reason"] = "the face could not be recognised in the clip's frames: face the camera in good light"
        issued = f"evidence {evidence_ref(evidence)}; " if evidence is not None else ""
        self._append("liveness", "allowed" if evidence is not None else "refused", rule=rule,
                     note=f"{decision}; score {score:.2f}; steps {','.join(steps)}; clip sha256 "
                          f"{result.clip_sha256[:16]}; {issued}liveness {nonce_ref(str(challenge))}")
        return LivenessCheck(decision, score, checks, result.clip_sha256, evidence, expires)

    def _judge_capture(self, now: dt.datetime) -> None:
        """A liveness challenge or check belongs to an enrolment or a match: the role must allow
        one, and the deployment must be able to process (its assessment in force), so the PAD
        model that judges the clip is the assessed one."""
        with self._root._judge_lock:
            self._recheck_key()
            self._sync_deployment()
            self._guard.check_capture_role(self._role)
            self._guard.check_deployment(now)

    def _pad_model(self) -> Any:
        """The deployment's optional PAD model (liveness_model), loaded once per configuration."""
        raw = self._deployment.raw.get("liveness_model")
        if not raw:
            return None
        cached = self._root._pad_cache
        if cached is not None and cached[0] == self._config_digest:
            return cached[1]
        from ..capture.pad_model import PadModel, PadModelSpec

        model = PadModel(PadModelSpec.from_mapping(raw, self._paths.root))
        self._root._pad_cache = (self._config_digest, model)
        return model

    @staticmethod
    def _tracked_face(pipe: Any, frame: np.ndarray, box: Any, points: np.ndarray) -> Optional[np.ndarray]:
        """The embedding of the tracked face itself (not of whoever else is in the frame); a host
        pipeline without embed_faces embeds the frame's subject instead."""
        from ..hazmat.vision import Face

        if hasattr(pipe, "embed_faces"):
            face = Face(tuple(float(v) for v in box), 0.0, np.asarray(points, np.float32), "track")  # type: ignore[arg-type]
            return np.asarray(pipe.embed_faces(frame, [face])[0], np.float32)
        found = pipe.embed(frame)
        return None if found.embedding is None else np.asarray(found.embedding, np.float32)

    def _open_challenge(self, nonce: str, now: dt.datetime, mirrored: Optional[bool]) -> tuple[tuple[str, ...], bool]:
        """The steps of an issued, unexpired, unanswered challenge, and whether its clip is
        mirrored (as issued: a differing `mirrored` is refused, before the challenge is used);
        it is answered from now on."""
        rule = self._rule("liveness")
        row = self._state.issued_challenge(nonce)
        if row is None:
            raise PolicyViolation(rule, "this workspace issued no such challenge; ask for one with "
                                  "`safeface liveness challenge`.")
        steps, issued_mirrored, _, expires_at = row
        if now.timestamp() >= expires_at:
            raise PolicyViolation(rule, "the challenge expired; ask for a new one and answer it within seconds.")
        if mirrored is not None and bool(mirrored) != issued_mirrored:
            raise InvalidArgument(
                f"this challenge was issued for a clip recorded {'mirrored' if issued_mirrored else 'not mirrored'}, "
                "and the check says otherwise: leave `mirrored` out of the check (the challenge decides it), or ask "
                f"for a new challenge {'without' if issued_mirrored else 'with'} `mirrored` if that is how the "
                "camera records.")
        until = dt.datetime.fromtimestamp(expires_at, dt.timezone.utc)
        if not self._state.use_nonce("challenge:" + nonce, until):
            raise PolicyViolation(rule, "this challenge was already answered; each challenge is answered once.")
        return tuple(steps.split(",")), issued_mirrored

    def analyze(self, image: ImageInput, attributes: Sequence[str] = ("faces",)) -> dict[str, Any]:
        """Technical facts about the faces in an image (count, boxes, landmarks, detector
        scores). Any personal attribute (race, religion, health, emotion, gender, age, ...) is
        refused: safeface infers none (CN-18, EU-01, EU-03)."""
        # Whatever was passed reaches the guard, which refuses inside the audited call what is no
        # list of names (None, a number, a list of numbers); an endless iterable is cut past the
        # most the guard takes, so that it is refused, not read for ever.
        if isinstance(attributes, str) or not isinstance(attributes, Iterable):
            attributes = (attributes,)
        names = tuple(itertools.islice(attributes, MAX_ATTRIBUTES + 1))
        request = Request(Operation.ANALYZE, self._role, self._clock(), attributes=names)

        def body(d: Decision) -> tuple[dict[str, Any], _Note]:
            faces = self._pipe().detect(image)
            wanted = set(d.attributes)
            out: dict[str, Any] = {}
            if "faces" in wanted:
                out["faces"] = len(faces)
            if "box" in wanted:
                out["boxes"] = [f.to_dict()["box"] for f in faces]
            if "landmarks" in wanted:
                out["landmarks"] = [f.to_dict()["landmarks"] for f in faces]
            if "score" in wanted:
                out["scores"] = [f.to_dict()["score"] for f in faces]
            return out, _Note([], f"{len(faces)} face(s); {','.join(sorted(wanted))}")

        return self._run(request, [], body)

    def anonymize(self, image: ImageInput, out: Optional[Union[str, Path]] = None, *, mode: str = "blur",
                  margin: Optional[float] = None, detector: str = "hog") -> Any:
        """Cover every face of an image (or, with `out`, of an image or video file) so that nobody
        can be recognised. No embedding is computed, no gallery touched and no consent needed;
        the run is audited with the input's SHA-256 and the face count. Returns (pixels, report)
        for an image, or the report when `out` is given."""
        from ..anonymize import DEFAULT_MARGIN, anonymize_file, anonymize_image

        m = DEFAULT_MARGIN if margin is None else margin
        if out is not None:
            if not isinstance(image, (str, Path)):
                raise ImageError("anonymizing to a file needs the input as a path.")
            report = anonymize_file(image, out, mode, m, detector)
            result: Any = report
        else:
            pixels, report = anonymize_image(image, mode, m, detector)
            result = (pixels, report)
        self.record_anonymization(report)
        return result

    def track(self, video: Union[str, Path], purpose: str, out: Optional[Union[str, Path]] = None, *,
              options: Any = None, describe: Optional[str] = None) -> Any:
        """Follow people through a video by clothing and motion, faces covered first (see
        safeface.tracking). A declared, open purpose is required; no consent token, as no
        biometric is processed; audited with the input's SHA-256 and the track count. Returns a
        TrackResult whose descriptors live only in memory; search it with `.search(text)`. A run
        made for a search passes its description as `describe`: it is checked before the video is
        read and named in the audit entry (a search for a child was recorded as a plain run)."""
        from ..tracking import parse, track_video

        request = Request(Operation.TRACK, self._role, self._clock(), purpose=purpose)

        def body(d: Decision) -> tuple[Any, _Note]:
            asked = "" if describe is None else f"; for a search: {parse(describe).text}"
            # Faces under the video search's reach show where the head zones are not covered.
            bare = "; head zones not covered" if options is not None and not options.cover_heads else ""
            result = track_video(video, out, options)
            return result, _Note([], f"video sha256={result.report.input_sha256}; {len(result.people)} track(s); "
                                     f"{result.report.face_count} face(s) covered{bare}; no face recognised{asked}")

        result = self._run(request, [], body)
        result.record_searches(self._track_searches(purpose, result.report.input_sha256))
        return result

    def _track_searches(self, purpose: str, sha: str) -> Callable[[str], None]:
        """What records each search of a tracking result: a call of its own, judged again (the
        purpose may have ended meanwhile) and recorded, or not made (also once this handle is
        closed). The one the run was made for too: named in the run's entry, it was exempted once,
        whenever it came, and made unjudged days after the purpose ended."""

        def record(text: str) -> None:
            if self._root._closed:
                raise ConfigError("the workspace this tracking run was made in is closed; a search is recorded "
                                  "there or not made: open it and track the video again to search.")
            self._run(Request(Operation.TRACK, self._role, self._clock(), purpose=purpose), [],
                      lambda d: (None, _Note([], f"search of the tracks of video sha256={sha}: {text}")))

        return record

    def record_anonymization(self, report: Any) -> None:
        """Audit an anonymization run: what was covered, never who."""
        self._append("anonymize", "allowed", note=f"{report.kind} sha256={report.input_sha256}; "
                                                   f"{report.face_count} face(s) covered ({report.mode})")

    # -- rights and housekeeping ------------------------------------------------------------
    def erase(self, subject: Optional[str] = None, *, pseudonym: Optional[str] = None) -> ErasureReceipt:
        """Remove every template of the subject (by id, or by pseudonym as an operator sees it) at
        once and withdraw the consents given so far; returns a signed receipt (CN-05, EU-06). Under
        the store's write lock: once the receipt exists, no enrolment that was in flight can store
        a row of this subject."""
        now = self._clock()
        with self._naming("erase"):
            pseuds = [self._pseudonym_of(subject, pseudonym)] + self._usual_pseudonym(subject)
        request = Request(Operation.ERASE, self._role, now)

        def body(d: Decision) -> tuple[ErasureReceipt, None]:
            at = self._withdrawal_time(now)
            with self._gallery.locked():
                results = self._withdraw_subjects(pseuds, at)
                result = _merged(results)
                receipt = self._receipt("erase", pseuds, None, _receipt_rows(results), at, result.vectors)
                for res in results:  # one entry a subject: the withdrawal lookups find it by subject
                    self._removal_entries("erase", None, [str(res.pseudonym)], res, receipt, at)
            return receipt, None

        return self._run(request, pseuds, body)

    def _usual_pseudonym(self, subject: Optional[str]) -> list[str]:
        """The pseudonym of the spelling enrolment asks for, when `subject` is one it refuses (a
        full-width letter, a no-break space, a zero-width space) and nobody is enrolled under it:
        the person was enrolled under the usual spelling, and a request in the source system's
        spelling must not miss them."""
        if subject is None:
            return []
        usual = usual_spelling(str(subject))
        # An id an earlier release enrolled under that spelling ("user²") names its own subject,
        # who may be another person than the usual spelling's ("user2"): only its own rows go,
        # now and at any later erasure (a retry finds no rows, but the log names the first).
        if usual is None or self._gallery.has_subject(str(subject)) or \
                self._audit.names_removed(self.pseudonym(str(subject))):
            return []
        return [self.pseudonym(usual)]

    def _withdrawal_time(self, asked: dt.datetime) -> dt.datetime:
        """When a withdrawal (an erasure, a revocation) asked for at `asked` counts from, as the
        policy state and its entry record it: on the system clock never before the log's last
        entry, whose time the log's own order vouches for (a clock a little behind, within the
        log's tolerance, dated the withdrawal before entries already recorded). Read before the
        store's lock is waited for: a consent given while the withdrawal waits is given after it.
        A demo's clock is the caller's time, which the log's entries do not share."""
        if self._clock is not utc_now:
            return asked
        last = self._audit.last_time()
        return max(asked, last) if last is not None else asked

    def _withdraw_subjects(self, pseuds: Sequence[str], now: dt.datetime) -> list[ErasureResult]:
        """Withdraw each subject's consents and remove their rows (under the store's lock)."""
        results = []
        for p in pseuds:
            self._state.revoke_subject(p, now)
            # Also the rows the log says are the subject's: one whose pseudonym column was edited
            # by hand (no key needed) escaped the erasure's WHERE and got a receipt for 0 removed.
            logged = self._audit.rows_left(p)
            res = self._gallery.erase_pseudonym(p, rows=logged)
            # A process stopped between an earlier erasure's store commit and its entry left rows
            # the log lists as stored and the store does not hold; this erasure names them, so
            # the store check does not take them for rows deleted behind the guard.
            # (None of the subject's rows is left in the store now, under its write lock.)
            left = logged - set(res.row_ids) - set(res.not_found)  # not found: kept, not gone
            if left:
                res = dataclasses.replace(res, settled=tuple(sorted(left)))
            results.append(res)
            self._state.forget_subject(p)
        return results

    def revoke(self, token_id: Optional[str] = None, subject: Optional[str] = None, *,
               token_ref: Optional[str] = None) -> ErasureReceipt:
        """Withdraw a consent (by token id, or by the reference the store and log show) or all of a
        subject's consents: processing under them stops at once and the templates enrolled under
        them are erased."""
        now = self._clock()
        request = Request(Operation.REVOKE, self._role, now)
        with self._naming("revoke"):  # every argument refused here is on record, as a subject id is
            if sum(x is not None for x in (token_id, subject, token_ref)) != 1:
                raise InvalidArgument("revoke needs exactly one of token_id, token_ref or subject.")
            # Exactly as token_ref writes it: a variant would get a receipt but match no stored reference.
            if token_ref is not None and (not isinstance(token_ref, str) or not _TOKEN_REF.fullmatch(token_ref)):
                raise InvalidArgument("a token reference reads t- and 32 lowercase hex digits, as the records and "
                                      "the audit log show it.")
            # The token pasted whole was withdrawn under a reference no token has: a signed
            # receipt, and the consent went on working.
            if is_whole_token(token_id):
                raise InvalidArgument("revoke takes the token's id (its jti claim, or token_id in an sf1 token), not "
                                      "the whole token; or revoke by subject.")
            # Read from a file or a form with its line break: a receipt for a reference no token
            # has. An id that truly carries spaces is revoked by its reference (token_ref).
            if isinstance(token_id, str) and token_id != token_id.strip():
                raise InvalidArgument("the token id has spaces or a line break around it: pass it without them (a "
                                      "token whose id truly has them is revoked by the reference, t-..., that the "
                                      "records show).")
            pseuds = [self.pseudonym(subject)] + self._usual_pseudonym(subject) if subject is not None else []
            ref = self.token_ref(token_id) if token_id is not None else token_ref

        def body(d: Decision) -> tuple[ErasureReceipt, None]:
            at = self._withdrawal_time(now)
            with self._gallery.locked():
                if pseuds:
                    results = self._withdraw_subjects(pseuds, at)
                    subjects = list(pseuds)
                    # One entry a subject: the withdrawal lookups find it by subject.
                    parts = [([str(r.pseudonym)], r) for r in results]
                else:
                    self._state.revoke_token(str(ref), at)
                    # With the rows the log says are stored under it (a token column edited by hand
                    # hid one); not those removed already, which the store, finding them gone, had to
                    # look for as moved rows, reading its table whole and refusing the revocation
                    # for any other row failing its check.
                    stored = self._audit.rows_left_under(str(ref))
                    res = self._gallery.remove_token(str(ref), rows=stored)  # whose each row is, by the log
                    # Rows the log still lists as stored that were already gone: a revocation whose
                    # entry a full disk refused (or a kill) after its store commit; the retry names
                    # them, as an erasure's does, or the store check called them deleted behind the guard.
                    left = {r: p for r, p in stored.items() if r not in res.row_ids and r not in res.not_found}
                    if left:
                        ps = {*left.values(), *([res.pseudonym] if res.pseudonym else [])}
                        res = dataclasses.replace(res, settled=tuple(sorted(left)),
                                                  pseudonym=ps.pop() if len(ps) == 1 else None)
                    results = [res]
                    subjects = [results[0].pseudonym] if results[0].pseudonym else []
                    parts = [(subjects, results[0])]
                merged = _merged(results)
                receipt = self._receipt("revoke", subjects, ref, _receipt_rows(results), at, merged.vectors)
                for named, res in parts:
                    self._removal_entries("revoke", ref, named, res, receipt, at)
            return receipt, None

        return self._run(request, pseuds, body)

    def _removal_entries(self, op: str, ref: Optional[str], subjects: list[str], result: ErasureResult, receipt: Any,
                         now: dt.datetime) -> None:
        """The entries of one erasure or revocation: the store check reads the rows each names and
        a note is bounded, so a removal of many rows is recorded in parts of PURGE_ENTRY_ROWS, each
        a whole withdrawal entry (the time the policy state withdrew at comes first)."""
        settled = set(result.settled)
        ids = list(result.row_ids) + sorted(settled)
        parts = [ids[i:i + PURGE_ENTRY_ROWS] for i in range(0, len(ids), PURGE_ENTRY_ROWS)] or [[]]
        for n, part in enumerate(parts, 1):
            of = f" (part {n} of {len(parts)})" if len(parts) > 1 else ""
            before = [r for r in part if r in settled]
            gone = (f"; rows {_rows(before)} already gone (an erasure stopped before its entry)" if before else "")
            self._append(op, "allowed", token_id=ref, subjects=subjects, rule=self._rule("withdrawal"),
                         note=f"{WITHDRAWN_AT} {int(now.timestamp())}; {len(part) - len(before)} template(s) removed"
                              f"{of}; rows={_rows(part)}{gone}{_not_found_note(result) if n == 1 else ''}; "
                              f"receipt {receipt.receipt_id}{_vec_note(result.vectors, result.copies)}")

    def _pseudonym_of(self, subject: Optional[str], pseudonym: Optional[str]) -> str:
        if (subject is None) == (pseudonym is None):
            raise InvalidArgument("erase needs exactly one of subject or pseudonym.")
        if subject is not None:
            # A number names the subject its text does; anything else that is no string is refused
            # (str() made b"alice" "b'alice'": a signed receipt for no one, alice's rows kept).
            number = isinstance(subject, int) and not isinstance(subject, bool)
            return self.pseudonym(str(subject) if number else subject)
        if not isinstance(pseudonym, str) or len(pseudonym) != 64 or any(c not in "0123456789abcdef"
                                                                       for c in pseudonym):
            raise InvalidArgument("a pseudonym is 64 lowercase hex characters, as the records show it.")
        return pseudonym

    def purge(self) -> Optional[ErasureReceipt]:
        """:meth:`purge_expired` as a caller's call: its role must allow purge."""
        return self._run(Request(Operation.PURGE, self._role, self._clock()), [], lambda d: (self._purge_expired(), None))

    def purge_expired(self) -> Optional[ErasureReceipt]:
        """Remove every expired template (CN-08, US-01); a receipt when anything was removed. A
        purge that fails (the store refused its delete) is on record too, as purge's own call is."""
        try:
            return self._purge_expired()
        except SafeFaceError as exc:
            self._append("purge", "failed", rule=self._rule("retention"), note=type(exc).__name__)
            raise

    def _purge_expired(self) -> Optional[ErasureReceipt]:
        now = self._clock()
        with self._gallery.locked():
            # The rows a purge removed whose entries a full disk refused after its delete committed
            # (no later purge finds them, and the store check named them deleted behind the guard):
            # kept in the policy state from inside the delete's transaction until the entries are in.
            owed = self._owed_rows(now)

            def owe(found: list[tuple[int, str]]) -> None:
                end = self._audit.end()
                self._state.owe_purge(sorted({**owed, **dict(found)}.items()), int(now.timestamp()),
                                      (end, self._audit.hash_at(end) or ""))

            results = self._gallery.purge_expired(now, ended=self._ended_purposes(now), before_commit=owe)
            taken = {r for res in results for r in res.row_ids}
            # A row still stored is not gone, whatever the note says (its delete never committed).
            stored = self._gallery.stored_ids([r for r in owed if r not in taken])
            left: dict[str, list[int]] = {}
            for r, p in sorted(owed.items()):
                if r not in taken and r not in stored:
                    left.setdefault(p, []).append(r)
            results += [ErasureResult(p, (), 0, settled=tuple(rs)) for p, rs in left.items()]
            if not results:
                return None
            rows = _receipt_rows(results)
            subjects = [res.pseudonym for res in results if res.pseudonym]
            receipt = self._receipt("purge", subjects, None, rows, now, _vectors(results))
            # The store check reads the rows each removal entry names, and an entry's note and
            # subject list are bounded: a large purge is recorded in several entries.
            batch: list[Any] = []
            for res in results + [None]:
                if res is not None and (not batch or (len(batch) < PURGE_ENTRY_SUBJECTS and
                                                      sum(len(b.row_ids) + len(b.settled) for b in batch)
                                                      + len(res.row_ids) + len(res.settled) <= PURGE_ENTRY_ROWS)):
                    batch.append(res)
                    continue
                ids = [r for b in batch for r in b.row_ids]
                before = [r for b in batch for r in b.settled]
                gone = f"; rows {_rows(before)} already gone (a purge stopped before its entry)" if before else ""
                self._append("purge", "allowed", subjects=[b.pseudonym for b in batch if b.pseudonym],
                             rule=self._rule("retention"),
                             note=f"{len(ids)} expired template(s) removed; rows={_rows(ids + before)}{gone}; "
                                  f"receipt {receipt.receipt_id}"
                                  f"{_vec_note(receipt.vectors, _merged(batch).copies)}")
                batch = [res] if res is not None else []
            self._state.purge_paid()
        return receipt

    def _owed_rows(self, now: dt.datetime) -> dict[int, str]:
        """The rows an earlier purge of this workspace noted (PolicyState.owe_purge). A note from
        elsewhere excuses nothing: one dated ahead of this clock (a copy of the workspace purged
        years later) or written after an entry this log does not hold (a copy whose log went on
        apart), put in policy.db by hand beside a row deleted by hand, had the row recorded as
        already gone and the store check passing. Such a note is dropped: it cannot hold later."""
        note = self._state.purge_owed()
        if note is None:
            return {}
        if note.at > now.timestamp() + CLOCK_SKEW_S or (self._audit.hash_at(note.seq) or "") != note.head:
            self._state.purge_paid()
            return {}
        return note.rows

    def _ended_purposes(self, now: dt.datetime) -> list[str]:
        """The purposes whose every template must be gone by `now`: an end date (plus us-bipa's
        grace) passed, in deployment.json as it is or in the assessment the audit log names last.
        A row enrolled before an end date was set, or brought forward, keeps the expiry it was
        given; the purge takes it at the end all the same. An end date removed, moved later or
        its purpose renamed by hand stops processing (the assessment no longer covers the file)
        and, by the log's record, purges all the same."""
        last = self._audit.last_entry(ASSESSMENT_OPERATIONS)
        times = recorded_purge_times(last.note if last is not None else None)
        for name, t in self._deployment.purge_times().items():
            times[name] = min(t, times.get(name, t))
        return sorted(name for name, t in times.items() if t <= now.timestamp())

    def rekey(self) -> dict[str, Any]:
        """Rotate the template transform and seal keys and move every template to them, without
        any image (ST-01 renewability)."""
        request = Request(Operation.REKEY, self._role, self._clock())

        def body(d: Decision) -> tuple[dict[str, Any], _Note]:
            # Rotation, move and retirement as one step under the store's write lock: a second
            # re-key (another process) that rotated in between would otherwise retire the very
            # version this one is moving to, or this one the version it finds the rows under.
            with self._gallery.locked():
                self._check_keys_current()
                versions = self._keyring.rotate("transform", "seal")
                result = self._gallery.rekey()
                # One gallery per workspace: once it has moved, the old versions protect nothing
                # and go, so a leaked old key no longer links or opens anything.
                retired = self._retire_below(versions)
            return ({"templates": result.rows, "versions": versions, "retired": retired},
                    _Note([], f"{result.rows} template(s) moved to keys {versions}; {retired} old key version(s) "
                              "retired"))

        return self._run(request, [], body)

    def _check_keys_current(self) -> None:
        """Under the store's write lock, before a rotation: this keyring holds the keys the store
        is under (rows.keys_from_meta). A handle whose keys are older (another process re-keyed
        since it loaded them) would otherwise number its new key as the one the store is under,
        and a host that keeps keys by version would overwrite that key: every template lost."""
        try:
            keys_from_meta(self._gallery.meta(), self._keyring, self._gallery.dim, "the templates")
        except ConfigError as exc:
            raise ConfigError(f"{exc} This keyring does not hold the keys the templates are under (another process "
                              "re-keyed them since these keys were loaded): load the current keys and re-key again; "
                              "nothing was changed.") from None

    def rebuild_index(self) -> dict[str, Any]:
        """Rebuild the external vector index (Milvus) from the sealed records, under the write
        lock; audited. A store searched in process rebuilds its in-memory index."""
        with self._gallery.locked():
            n = self._gallery.rebuild_index()
            count = len(self._gallery) if n is None else int(n)
            self._append("index-rebuild", "allowed", note=f"{count} vector(s) rebuilt from the records")
        return {"vectors": count}

    def check_index(self, repair: bool = False) -> dict[str, Any]:
        """Compare the external vector index (Milvus) with the sealed records: rows missing there,
        orphan vectors (no live row), vectors that differ from their record; with `repair`, fix
        them from the records. Audited, with the row ids found."""
        check = getattr(self._gallery, "check_index", None)
        if check is None:
            raise ConfigError("this workspace searches its templates in process, from the records themselves "
                              "(storage.vectors is 'local'): there is no external index to check.")
        with self._gallery.locked():
            found = check(repair)
            ids = ", ".join(f"{k} {list(v)[:200]}" for k, v in (("missing", found.missing), ("orphans", found.orphans),
                                                                  ("stale", found.stale)) if v)
            lost = f"; found behind its confirmed writes and rebuilt {found.losses} time(s)" if found.losses else ""
            self._append("index-check", "allowed",
                         note=f"{found.rows} row(s), {found.vectors} vector(s): "
                              f"{'consistent' if found.consistent else found.summary()}"
                              f"{' (' + ids + ')' if ids else ''}{'; repaired' if repair and not found.consistent else ''}"
                              f"{lost}")
        return dict(found.to_dict())

    def migrate_storage(self, section: dict[str, Any]) -> dict[str, Any]:
        """Move a local workspace to PostgreSQL and Milvus (`section` is the new deployment.json
        "storage" section, without credentials): copy the sealed rows, the audit chain and the
        policy state, check the copies, point deployment.json at them, then erase the local
        files. The chain continues there with this migration's entry. Audited."""
        import json

        from ..storage.factory import StorageConfig
        from ..storage.gallery import Gallery
        from ..workspace.migrate import (check_local_names, copy_to_server, erase_local_files, move_policy_records,
                                         retire_local_files)
        from ..workspace.storage_seal import sealed_storage

        if not isinstance(self._gallery, Gallery):
            return self._finish_migration()
        dim = int(self._deployment.section("matching").get("dim") or 128)

        def point_deployment_at_servers(still_held: Callable[[], None]) -> None:
            still_held()
            before = self._config_bytes()
            raw = json.loads(before)
            raw["storage"] = sealed_storage(self._keyring, section)
            write_config(self._paths, json.dumps(raw, indent=2) + "\n")
            try:
                retire_local_files(self._paths)  # still under every lock the local files have
            except BaseException:
                # Still under the locks: the local files are the workspace's again before any
                # queued call reads deployment.json, which would otherwise name copies it never writes.
                write_config(self._paths, before)
                raise

        # The judging lock first, as every call takes it before the log's (_sync_deployment below).
        with self._root._judge_lock, self._gallery.locked(), self._audit_lock:
            # Another process's migration may have ended while this one waited for the lock (its
            # files are gone then: the file, not this handle's reading of it, says so first).
            now = Deployment.load_bytes(self._config_bytes(), self._paths.config)
            if StorageConfig.from_section(now.section("storage")).server:
                raise ConfigError("another process moved this workspace to the server backends meanwhile; open "
                                  "it again (nothing was copied).")
            check_local_names(self._paths)
            target, n = copy_to_server(self._gallery, section, self._paths.root, self._keyring, dim,
                                       lambda seq, h: self._audit.hash_at(seq) == h)
            try:
                # The lock `safeface assess` writes deployment.json under, from what it read there:
                # one that read the file before this migration named the servers wrote it back
                # after, naming the local files this migration then erased (the workspace opened
                # no more). Before the log's, as assess takes them.
                with exclusive_lock(self._paths.config_lock, self._paths.lock_guard) as still_held:
                    seq, head = move_policy_records(self._audit, self._state, self._apikeys,
                                                    self._keyring.key("audit"), section,
                                                    lambda: point_deployment_at_servers(still_held))
            except BaseException:
                target.close()
                raise
            old, self._gallery = self._gallery, target
            self._guard._store = target
            self._sync_deployment()
            old.close()
        self._append("storage-migrate", "allowed",
                     note=f"{n} sealed template(s), the audit chain (entries 1-{seq}, head {head[:16]}...), the "
                          f"policy state and the API keys copied to {target.where} and {target.vectors.where}, checked; local files "
                          "erased")
        gone = erase_local_files(self._paths)
        return {"templates": n, "audit_entries": seq, "records": target.where, "vectors": target.vectors.where,
                "erased": gone}

    def _finish_migration(self) -> dict[str, Any]:
        """`storage migrate` run again on a workspace already on the servers: a migration killed
        after deployment.json named them left the local files (every sealed template, also of
        people erased since) and perhaps no entry of its own; erase them, on record."""
        from ..workspace.migrate import erase_local_files, leftover_problem

        if leftover_problem(self._paths, self._deployment.section("storage")) is None:
            raise ConfigError("this workspace's templates are already on the server backends.")
        with self._gallery.locked():
            gone = erase_local_files(self._paths)
            self._append("storage-migrate", "allowed",
                         note=f"an interrupted migration to {self._gallery.where} finished: local files erased "
                              f"({', '.join(gone)})")
        return {"templates": 0, "audit_entries": 0, "records": self._gallery.where,
                "vectors": self._gallery.vectors.where, "erased": gone}

    # -- the service's API keys -------------------------------------------------------------
    def issue_api_key(self, role: str, *, label: str = "", expires: Optional[dt.date] = None,
                      rate: Optional[float] = None) -> tuple[ApiKey, str]:
        """A new service API key for `role` (a role of deployment.json): (its description, the key,
        to be shown once; only a keyed hash of it is stored)."""
        request = Request(Operation.APIKEY, self._role, self._clock())

        def body(d: Decision) -> tuple[tuple[ApiKey, str], _Note]:
            # The roles judged now: while the assessment is not in force, those it last recorded,
            # so a role added to deployment.json by hand gets no key until it is assessed.
            roles = self._guard.roles()
            if role not in roles:
                raise InvalidArgument(f"role {role!r} is not defined in this deployment's assessed roles; defined "
                                      f"roles: {', '.join(sorted(roles))}.")
            info, key = self._apikeys.issue(role, label, expires, rate, request.now)
            return (info, key), _Note([], key_issued_note(info.key_id, role, info.expires, info.rate,
                                                          self._apikeys.row_ref(info.key_id)))

        return self._run(request, [], body)

    def revoke_api_key(self, key_id: str) -> ApiKey:
        request = Request(Operation.APIKEY, self._role, self._clock())
        kid = str(key_id)
        known: list[bool] = []  # set once the body found the key: the table is marked then, whatever follows

        def body(d: Decision) -> tuple[None, _Note]:
            # Never repeated in the answer: its secret is in it, also where something is pasted
            # around it ("Bearer sfk_...", an invisible character copied from a web page first).
            if f"{KEY_PREFIX}_" in kid.lower():
                raise InvalidArgument(f"that is a whole API key, its secret included, not a key id: revoke it by its "
                                      f"id, the 12 hex digits after '{KEY_PREFIX}_' (`safeface apikey list`).")
            issued = self._audit.records_start(Operation.APIKEY.value, key_issue_prefix(kid))
            if not (issued or self._apikeys.listed(kid)):
                if KEY_ID.fullmatch(kid):
                    raise InvalidArgument(f"no API key has the id {kid!r}; `safeface report` lists them.")
                # Not repeated: what has no key id's shape may hold a secret (a key mangled in the pasting).
                raise InvalidArgument("no API key has that id, which is not repeated (a key id is 12 hex digits); "
                                      "`safeface apikey list` lists them.")
            known.append(True)
            return None, _Note([], key_revoked_note(kid))

        # On the log first, then in the table: the log's entry alone stops the key whatever the
        # table holds, and a thief able to write the table (its row deleted, or the file held
        # locked, while the key was revoked; put back afterwards) kept it off the log when the
        # table's update came first, and the key worked again. The table is marked even when the
        # log refused the entry (a full disk), so the key stops now all the same.
        try:
            self._run(request, [], body)
        finally:
            if known:
                self._apikeys.revoke(kid, request.now)
        # Described once the revocation is on the log: a row edited out of its types is named
        # (IntegrityError) then, with the key revoked for good.
        info = self._apikeys.get(kid)
        if info is None:
            raise IntegrityError(f"the API key {kid[:64]} was revoked (the audit log records it), but the key table "
                                 "has no row for it (deleted by hand); check who edits that table.")
        return info

    def trusted_keys(self) -> dict[str, list[str]]:
        """The ids of the public keys trusted to sign consents and legal bases, by kind."""
        self._recheck_read()
        with self._root._judge_lock:
            self._sync_trust()  # a removal from another process since the last call
        return {kind: sorted(keys) for kind, keys in self._trust.items()}

    def api_keys(self) -> list[ApiKey]:
        """The service's API keys, described (never a secret), each saying whether the audit log
        records its revocation: a `revoked` mark set by hand is not one, and is revoked again."""
        self._recheck_read()
        return [dataclasses.replace(k, revocation_logged=self._audit.records(
            Operation.APIKEY.value, key_revoked_note(k.key_id))) for k in self._apikeys.list()]

    def authenticate(self, api_key: Optional[str]) -> ApiKey:
        """The description of a genuine, unrevoked, unexpired API key; AuthenticationError else."""
        return self._not_revoked(self._apikeys.authenticate(api_key, self._clock()))

    def open_session(self, api_key: Optional[str], form: Optional[str] = None,
                     held: Optional[str] = None, until: Optional[float] = None) -> tuple[ApiKey, str]:
        """Exchange an API key for a console session value (see workspace/apikeys.py); `form`: the
        login form's token, which gives out one session for the key, however often it is posted,
        and sessions of one key at a time: LoginFormTaken while the session it gave out to another
        key is live, unless that session is `held` (the session cookie the posting browser sent,
        which the caller then ends: a login as another key). `until`: a time.monotonic() past which
        the form's record waits no more for a key store another process holds (WorkspaceBusy)."""
        replaces: Optional[str] = None
        for _ in range(3):  # another key may take the form between the check and the retry
            try:
                return self._form_session(api_key, form, replaces, until)
            except LoginFormTaken as exc:
                other = self._apikeys.form_cookie(str(form), exc.key_id, self._clock())
                if other is not None and not (held is not None and hmac.compare_digest(
                        other.encode(), held.encode())) and self._live(other):
                    raise
                replaces, taken = exc.key_id, exc
        raise taken

    def _form_session(self, api_key: Optional[str], form: Optional[str],
                      replaces: Optional[str], until: Optional[float] = None) -> tuple[ApiKey, str]:
        info, value = self._apikeys.open_session(api_key, self._clock(), form, replaces=replaces,
                                                 until=until)  # authenticates
        if form is not None and not self._live(value):  # logged out since: a new one in its place
            info, value = self._apikeys.open_session(api_key, self._clock(), form, ended=value, replaces=replaces,
                                                     until=until)
        return self._not_revoked(info), value

    def form_gave_out(self, form: str, key_id: str) -> Optional[str]:
        """The cookie of the live session the login form whose token is `form` gave out for the
        key `key_id` (posted again, it gives out that one); None when there is none."""
        value = self._apikeys.form_cookie(form, key_id, self._clock())
        return value if value is not None and self._live(value) else None

    def _live(self, value: str) -> bool:
        """Whether the console session `value` is live (the check is no use of it)."""
        try:
            self.session(value, use=False)
        except AuthenticationError:
            return False
        return True

    def end_session(self, value: Optional[str]) -> bool:
        """End a console session (logout), so that a copy of its cookie opens nothing more; False
        when it was not a live session. Recorded on the audit log first, which every process's
        session check reads and an older copy of the key table cannot roll back: from then on the
        session is over everywhere. Then in the key table, the quick check, if no other process
        is writing it now (not waited for: the service checks sessions on its event loop). The
        table first let a table another process held locked (or one refusing writes) fail the
        logout after its busy timeout, and every copy of the cookie stayed live until the key was
        revoked; a table that cannot take the row now leaves the session ended all the same. A
        log that refuses the entry (its disk, its head) leaves the table's row, waited for then,
        to end it; the log's error is raised only when neither took the end."""
        try:
            self.session(value, use=False, owed_counts=False)  # an end owed is still to be recorded
        except AuthenticationError:
            return False
        ref, until = session_ref(str(value)), session_until(str(value))
        note = session_ended_note(ref)
        # The log decides: of two logouts of one session racing, only the first appends, so the
        # log names each session ended once.
        try:
            with self._audit_lock:
                entry = self._audit.append_unless(lambda: self._audit.records(Operation.APIKEY.value, note),
                                                  Operation.APIKEY.value, "allowed", note=note, actor=self._actor)
        except SafeFaceError:
            try:
                if self._apikeys.end_session_ref(ref, until, self._clock()):
                    return True
            except SafeFaceError:
                # Neither store took it: a file of its own in a local workspace, which every process
                # of it reads (ApiKeys.end_session_in_file), else (on servers, where other hosts
                # read no file) the session's row of uses, which every process's check reads.
                fallbacks: tuple[Callable[[], bool], ...] = (
                    lambda: self._apikeys.end_session_in_file(value, self._clock()),
                    lambda: self._apikeys.end_session_in_uses(ref, until, self._clock()))
                for kept in fallbacks:
                    try:
                        if kept():
                            return True
                    except SafeFaceError:
                        pass
                self._owe_end(ref, until)
                raise
            raise
        try:
            self._apikeys.end_session_ref(ref, until, self._clock(), wait=False)
        # Held past its wait, full, replaced, a trigger, a right revoked: the log's entry ended it.
        except (WorkspaceBusy, WorkspaceUnwritable, IntegrityError, SchemaOwnerNeeded):
            pass
        return entry is not None

    def session(self, value: Optional[str], use: bool = True, owed_counts: bool = True) -> ApiKey:
        """The key behind a console session; AuthenticationError once it or its key has ended.
        `use`: False for a check that opens no page, which must not keep the session from idling
        out (workspace/apikeys.py). `owed_counts`: False for the checks of a logout, to which a
        session whose end is owed (no store took it: _owe_end) is live, its end still to record."""
        info = self._apikeys.session(value, self._clock(), use=use)
        ref = session_ref(str(value))
        if self._audit.records(Operation.APIKEY.value, session_ended_note(ref)):
            raise AuthenticationError("the console session was ended (logged out; the audit log records it), though "
                                      "the key table does not list it as ended: the logout could not write that table, "
                                      "or it was restored from an older copy. Log in again.")
        if owed_counts and self.session_end_owed(value):
            raise AuthenticationError("the console session was ended by a logout that no store could record yet (a "
                                      "process of the service holds its end until it is recorded); log in again.")
        return self._not_revoked(info)

    def session_end_owed(self, value: Optional[str]) -> bool:
        """Whether a process of this host holds the end of the console session `value` as owed
        (its logout no store took): refused by every page, yet still to be ended on record."""
        return bool(self._owed_ends.stored_by_a_live_process([session_end_row(session_ref(str(value)))]))

    def _owe_end(self, ref: str, until: int) -> None:
        """Hold the session `ref` (ending at `until`) ended for every process of this host while
        this handle lives: its logout was refused by every store (workspace/owed_marks.py). Held
        in the memory of the asked process alone, other workers read a copy of its cookie on. Sessions over anyway
        are let go first, so the bytes held stay those of sessions opened in SESSION_SECONDS."""
        now = int(self._clock().timestamp())
        over = [r for r, end in self._ends_owed.items() if end < now]
        self._owed_ends.settled([session_end_row(r) for r in over])
        for r in over:
            del self._ends_owed[r]
        self._owed_ends.owe([session_end_row(ref)])
        self._ends_owed[ref] = until

    def _record_owed_ends(self) -> None:
        """At close, record where a store takes it now the end of each live session this handle
        owes (_owe_end): its lock goes with the handle, and a service restarted once the disk
        took writes again let such a session live on. Not waited for; one refused stays owed
        only until this handle's locks go (the logout page said to log out again)."""
        now = self._clock()
        for ref, until in list(self._ends_owed.items()):
            if until < now.timestamp():
                continue
            note = session_ended_note(ref)
            with contextlib.suppress(SafeFaceError):
                with self._audit_lock:
                    self._audit.append_unless(lambda: self._audit.records(Operation.APIKEY.value, note),
                                              Operation.APIKEY.value, "allowed", note=note, actor=self._actor)
                continue
            with contextlib.suppress(SafeFaceError):
                self._apikeys.end_session_ref(ref, until, now, wait=False)

    def _recheck_read(self) -> None:
        """A view's read of the record (the console's pages) is judged as a report is, when it
        runs: its key checked again (a page queued behind others may run after the key was
        revoked), and its role, as the deployment stands now, allowed to read the report (a
        session opened under a role that has since lost that right read on). A refusal is
        recorded; the host's own handle reads freely (it holds the keys)."""
        if self._is_view:
            self._run(Request(Operation.REPORT, self._role, self._clock()), [], lambda d: (None, None), reading=True)

    def _recheck_key(self) -> None:
        """Check the caller's API key again where a call is judged: a request's body (an image,
        a clip) may arrive long after its key was checked, and the key be revoked, or expire,
        meanwhile (a body held back past the key's last day was judged under it)."""
        if self._key is not None:
            if self._key.expired(self._clock()):
                raise AuthenticationError(f"the API key {self._key.key_id} expired on {self._key.expires}.")
            self._key = self._not_revoked(self._key)
            self._actor = key_actor(self._key.key_id, self._key.checked_after)

    def _not_revoked(self, info: ApiKey) -> ApiKey:
        # Revoking clears the key's digest, but a key table restored from an older copy brings it
        # back; the anchored audit chain still records the revocation. The log's end is read
        # first: a revocation at or before it was in the log when the key was checked.
        point = self._audit.end()
        if self._audit.records(Operation.APIKEY.value, key_revoked_note(info.key_id)):
            raise AuthenticationError(f"the API key {info.key_id} was revoked (the audit log records it), though the "
                                      "key table lists it as live: that table looks restored from an older copy. "
                                      "Issue a new key; check who restored the table.")
        # A key works only if the log issued it: one written into the table behind
        # issue_api_key (by someone holding the passphrase) left no entry to answer for it, and
        # one whose row was rewritten since (its secret, rate, label or issue time) no longer
        # matches the entry.
        # Keys issued by earlier releases have entries binding less (the stored hash but not the
        # label; before that its id, role and expiry only): accepted so deployed keys keep working,
        # but such a key is not bound to the rest until it is reissued.
        bound = (key_issued_note(info.key_id, info.role, info.expires, info.rate,
                                 self._apikeys.row_ref(info.key_id, described=d)) for d in (True, False))
        if not (any(self._audit.records(Operation.APIKEY.value, note) for note in bound) or self._audit.records(
                Operation.APIKEY.value, key_issued_note(info.key_id, info.role, info.expires))):
            raise AuthenticationError(f"the API key {info.key_id} was never issued on the audit log as its row stands "
                                      "(the row was written or edited in the key table directly: its secret, role, "
                                      "expiry, rate, label or issue time); issue keys with `safeface apikey new`, and "
                                      "check who wrote that row.")
        return dataclasses.replace(info, checked_after=point)

    def csrf_token(self, session: str) -> str:
        return self._apikeys.csrf_token(session)

    def audit_verify(self) -> AuditReport:
        """Check the audit chain, then the store against it (see :meth:`verify_store`); raise
        IntegrityError naming the first problems. Reading the evidence needs a role that may
        read the report; the check itself writes nothing to the log it judges."""
        self._run(Request(Operation.REPORT, self._role, self._clock()), [], lambda d: (None, None))
        problem = self._evidence_problem()
        if problem is not None:
            raise IntegrityError(problem)
        rows, end = self._store_snapshot()
        report = self._audit.verify(through=end)
        self._check_rows(rows, end[0]).raise_for_problems()
        return report

    def _evidence_problem(self) -> Optional[str]:
        """What `audit verify` checks besides the chain and the rows, or None: the log's witnesses
        as the last assessment covers them, each present (a handle's own appends refuse to write
        again one whose start the log records), and the receipt key file. The report asks this too:
        it called the records verified while `audit verify` failed on any of them (a rolled-back
        log, its witness deleted)."""
        last = self._audit.last_entry(ASSESSMENT_OPERATIONS)
        problem = audit_section_problem(self._assessment_key, self._deployment, last.note if last is not None else None)
        for anchor in workspace_anchors(self._paths, self._keyring, self._deployment, strict=True):
            try:
                if problem is None and anchor.read() is None:
                    problem = str(missing_anchor(anchor))
            except IntegrityError as exc:  # no regular file, or no anchor
                problem = problem or str(exc)
        from ..workspace.migrate import leftover_problem

        return (problem or receipt_file_problem(self._paths, self._receipt_public())
                or leftover_problem(self._paths, self._deployment.section("storage")))

    def check_receipt(self, receipt: Mapping[str, Any]) -> None:
        """IntegrityError unless `receipt` (as a dict) is signed by this workspace's receipt key,
        taken from the keyring, not from the public key file beside it, which anyone who can
        write the folder can swap."""
        verify_receipt(receipt, self._receipt_key.public_key())

    def _receipt_public(self) -> str:
        from ..policy.tokens import public_key_text

        return public_key_text(self._receipt_key.public_key())

    def may(self, operation: str) -> bool:
        """Whether this caller's role may call `operation` (the guard's role rule) as the
        deployment stands now, e.g. for a console deciding whom to let in: a role that lost the
        right at a new assessment is let in no more."""
        with self._root._judge_lock:
            try:
                self._sync_deployment()
            except (ConfigError, PolicyViolation):
                pass  # judged by the roles last in force, as the calls an assessment does not gate are
        try:
            self._guard.check_role(self._role, str(operation))
        except PolicyViolation:
            return False
        return True

    def verify_store(self) -> StoreReport:
        """Every row explained by the log and carrying a genuinely signed token; every row the
        log says is stored present (workspace/storecheck.py). A view reads it only while its role
        may read the report, as it does the records."""
        self._recheck_read()
        rows, end = self._store_snapshot()
        return self._check_rows(rows, end[0])

    def _store_snapshot(self) -> tuple[list[Any], tuple[int, str]]:
        """The rows and the log's signed end, read under the store's write lock, which every
        enrolment, erasure and purge holds around its entries and its rows: read apart, one
        landing between them looks like a row deleted behind the guard or restored after its
        erasure. The lock covers these two reads only, not the check."""
        try:
            with self._gallery.locked():
                return list(self._gallery.rows()), self._audit.signed_end()
        except IntegrityError:
            self._audit.verify()  # names the break, outside the locks (it reads the whole log)
            raise

    def _check_rows(self, rows: list[Any], upto: int) -> StoreReport:
        """The store check of `rows` against the log up to entry `upto` (later entries are calls
        made since, and an unsigned tail is not evidence)."""
        entries = itertools.takewhile(lambda e: int(e.seq) <= upto, self._audit.entries())
        # Read once, and checked against the log as an open does: a handle's own copy would not
        # see the file swapped since, and a second read could meet another file.
        store = load_trust(self._paths, self._keyring, self._audit)
        trust = store.for_guard()
        return check_store(rows, entries, trust["consent_issuers"], trust["authorities"], self.token_ref,
                           self._token_key, store.no_longer_trusted())

    def report(self, out_dir: Union[str, Path], quote: Optional[Callable[[str], str]] = None,
               within: Optional[Path] = None) -> dict[str, Path]:
        """Write the compliance report into `out_dir`; `quote`: how a failed check's text is shown
        (workspace/report.py build_report); `within`: a folder above `out_dir` below which no link
        is followed (the console's reports/)."""
        from ..workspace.report import write_report

        now = self._clock()
        request = Request(Operation.REPORT, self._role, now)

        def body(d: Decision) -> tuple[dict[str, Path], _Note]:
            digest: dict[str, str] = {}
            files = write_report(self, Path(out_dir), now, quote, within, digest)
            # The SHA-256 of compliance.json on record: a copy saved for the console is shown only
            # while the log names it (report_on_record), not one written there by other hands.
            return files, _Note([], f"{REPORT_WRITTEN} {digest['json']}")

        return self._run(request, [], body)

    def report_on_record(self, data: bytes) -> Optional[str]:
        """Whether `data` is a compliance.json this workspace's `report` wrote (the audit entry of
        the call names its SHA-256): "newest" (the last report written), "older" (an earlier one:
        copied back over a newer report, which may say the deployment cannot process), or None."""
        return self._on_record(REPORT_WRITTEN, hashlib.sha256(bytes(data)).hexdigest())

    def record_evaluation(self, summary: bytes) -> str:
        """Put the SHA-256 of an evaluation summary (`safeface eval ... --workspace`'s latest.json,
        these bytes) on record in the audit log, as a report call: the compliance report then says
        whether the summary it embeds is the one on record, or was written or changed by other
        hands. Returns the digest."""
        digest = hashlib.sha256(bytes(summary)).hexdigest()
        request = Request(Operation.REPORT, self._role, self._clock())

        def body(d: Decision) -> tuple[str, _Note]:
            return digest, _Note([], f"{EVALUATION_ON_RECORD} {digest}")

        return self._run(request, [], body)

    def evaluation_on_record(self, digest: str) -> Optional[str]:
        """Whether `record_evaluation` put this summary digest on record: "newest" (the last summary
        put on record), "older" (an earlier one: a summary copied back over a newer run), or None
        (the chain that keeps the entries is checked by `audit verify` and by the report itself)."""
        return self._on_record(EVALUATION_ON_RECORD, digest)

    def _on_record(self, kind: str, digest: str) -> Optional[str]:
        """Whether a report entry's note names `digest` after `kind` ("newest": the last such entry
        names it; "older": an earlier one does), or None."""
        self._recheck_read()
        note = f"{kind} {digest}"
        if not self._audit.records(Operation.REPORT.value, note):
            return None
        return "newest" if self._audit.newest_start(Operation.REPORT.value, kind + " ") == note else "older"

    # -- facts for the report ---------------------------------------------------------------
    def facts(self) -> dict[str, Any]:
        """What the compliance report states (counts, keys, trusted keys, API keys, roles): a
        view reads it only while its role may read the report."""
        self._recheck_read()
        return {
            "subjects": self._gallery.subject_count(),
            "templates": len(self._gallery),
            "revocations": self._state.revoked_count(),
            **self._filing_dates(),
            # Before the counts: they are read from the rows as they stand, which anyone who can
            # write audit.db can edit (a refusal turned into an allowed call); only the chain tells.
            "audit_chain": self._chain_facts(),
            "audit": self._audit.counts(),
            "key_versions": self._gallery.key_versions,
            "store": self._store_facts(),
            "trusted_keys": self._checked_trust().listing(),
            # From the keyring, not the file beside it, which anyone who can write the folder can swap.
            "receipt_public_key": self._receipt_public(),
            "api_keys": [k.to_dict() for k in self._apikeys.list()],
            "roles_in_force": self._roles_in_force(),
        }

    def _filing_dates(self) -> dict[str, Optional[str]]:
        """When the filing threshold was crossed and the filing is due, from the log's first
        crossing entry: dates in policy.db could be edited by anyone who can write the folder."""
        crossings = list(self._audit.newest_first((FILING_CROSSED,)))
        if not crossings:
            return {"filing_crossed": None, "filing_deadline": None}
        crossed = entry_time(crossings[-1].seq, crossings[-1].time).date()
        return {"filing_crossed": crossed.isoformat(),
                "filing_deadline": working_days_after(crossed, FILING_WORKING_DAYS).isoformat()}

    def _roles_in_force(self) -> Optional[dict[str, list[str]]]:
        """The roles calls are judged by (the last assessment's while it is not in force); None
        when no assessment records them."""
        try:
            return {role: list(ops) for role, ops in self._guard.roles().items()}
        except PolicyViolation:
            return None

    def _chain_facts(self) -> dict[str, Any]:
        """Whether the whole audit chain holds (AuditLog.verify), its witnesses and receipt key as `audit
        verify` checks them (_evidence_problem), and the first problem if not."""
        try:
            r = self._audit.verify()
        except IntegrityError as exc:
            return {"intact": False, "entries": None, "problem": str(exc)}
        problem = self._evidence_problem()
        return {"intact": problem is None, "entries": r.entries, "problem": problem}

    def _store_facts(self) -> dict[str, Any]:
        s = self.verify_store()
        return {"rows": s.rows, "digest": s.digest, "problems": list(s.problems)}

    # -- internals --------------------------------------------------------------------------
    def _rule(self, concept: str) -> str:
        rule = rule_for(concept, self._deployment.profiles)
        if rule is None:
            raise ConfigError(f"the deployment's profiles carry no rule for {concept}.")
        return rule

    def _pipe(self) -> Any:
        if self._pipeline is None:
            from ..hazmat.vision import DEFAULT_ENGINE, Pipeline, get_engine

            # "dlib" or "onnx": the same dlib networks, so the same templates and assessment.
            engine = str(self._deployment.section("matching").get("engine") or DEFAULT_ENGINE)
            self._pipeline = Pipeline(get_engine(engine))
        return self._pipeline

    def _sync_deployment(self) -> None:
        """A changed deployment.json takes effect at the next call: the guard judges the file as it
        is now, so a workspace whose configuration no longer validates refuses calls."""
        raw = self._config_bytes()
        digest = hashlib.sha256(raw).hexdigest()
        root = self._root  # the object views were made from: they all judge by its reading
        with root._judge_lock:
            if digest != root._config_digest:  # first, as the log's head is read against the witnesses
                with shared_lock(self._paths.config_lock, self._paths.lock_guard):
                    follow_witnesses(self._audit, self._paths, self._keyring,
                                     Deployment.load_bytes(self._config_bytes(), self._paths.config))
            # Judged again when the file or the log's last assessment changed: an older file
            # copied back over one a newer assessment replaced has bytes this handle read before.
            last = self._audit.last_entry(ASSESSMENT_OPERATIONS)
            if digest != root._config_digest or (last.seq if last is not None else 0) != root._assessment_seq \
                    or root._guard.unrecorded_assessment is not None:
                # `safeface assess` writes the file, then its entry, under this lock: read between
                # the two, an honest assessment would look like an older file put back.
                with shared_lock(self._paths.config_lock, self._paths.lock_guard):
                    raw = self._config_bytes()
                    deployment = Deployment.load_bytes(raw, self._paths.config)
                    root._check_assessment(deployment)  # before the new reading is published
                root._deployment = deployment
                root._guard.deployment = deployment
                root._config_digest = hashlib.sha256(raw).hexdigest()
            self._deployment, self._config_digest = root._deployment, root._config_digest

    def _config_bytes(self) -> bytes:
        return Deployment.read_file(self._paths.config)

    def _sync_trust(self) -> None:
        """A trust change recorded since this workspace read its trusted keys (`safeface keys
        remove` run from another process: a stolen issuer key) takes effect at the next call, as
        a changed deployment.json does; a running service's workers judged by the keys of their
        open. One index probe a call. The caller holds the judging lock."""
        root = self._root
        last = self._audit.last_entry(TRUST_OPERATIONS)
        seq = last.seq if last is not None else 0
        if seq != root._trust_seq:
            store = load_trust(self._paths, self._keyring, self._audit)  # MACed, and the store that change made
            trust = store.for_guard()
            root._guard.trust(trust["consent_issuers"], trust["authorities"])
            root._trust_store, root._trust, root._trust_seq = store, trust, store.audit_seq
        self._trust = root._trust

    def _trust_at_write(self) -> Optional[dict[str, Any]]:
        """The keys trusted as the log stands now, if a trust change was recorded since the guard
        was given its keys (`safeface keys remove` from another process while this call worked);
        None when the guard's keys are current. Read under the store's write lock, without
        publishing them: the next call's judging does that."""
        last = self._audit.last_entry(TRUST_OPERATIONS)
        if (last.seq if last is not None else 0) == self._root._trust_seq:
            return None
        return load_trust(self._paths, self._keyring, self._audit).for_guard()

    def _checked_trust(self) -> TrustStore:
        """The trust store the log's last trust change made, as of now."""
        with self._root._judge_lock:
            self._sync_trust()
            return self._root._trust_store

    def _check_assessment(self, deployment: Deployment) -> None:
        """Process only under a sealed assessment that the audit log names last and that covers
        the configuration. `safeface assess` needs the passphrase, seals the section and names it
        there; a section written, edited or removed by hand (to put a weakened setting into
        force) fails its seal, and one restored with an older copy of the file is not the newest
        named: every call is refused until it is recorded again. Meanwhile roles are judged as
        the last recorded assessment set them, so roles widened by hand do not reach the calls
        the assessment does not gate (erasure, revocation, the report)."""
        a = deployment.section("assessment")
        last = self._audit.last_entry(ASSESSMENT_OPERATIONS)
        self._assessment_seq = last.seq if last is not None else 0
        named = last.note if last is not None else None
        # Neither the file nor the log names an assessment (a new workspace): the deployment's
        # own findings refuse every call until one is recorded.
        problem = unrecorded_problem(self._assessment_key, a, named)
        assessed = bool(a.get("covers") or names_an_assessment(named))
        if problem is None and assessed and a.get("covers") != deployment.config_digest():
            problem = (f"the impact assessment {shown_assessment(a)} does not cover the configuration as it is now (a "
                       "covered setting changed since); record it again with `safeface assess`.")
        self._guard.sealed_roles = recorded_roles(named) if problem is not None else None
        self._guard.unrecorded_assessment = problem

    def findings(self, today: dt.date) -> list[Finding]:
        """The deployment's findings (Deployment.findings), the assessment failing where the audit
        log does not name it: what every call is judged by."""
        out = self._deployment.findings(today)
        problem = self._root._guard.unrecorded_assessment
        if problem is None:
            return out
        rule = rule_for("assessment", self._deployment.profiles)  # a floor: never None
        return [Finding(f.rule, False, problem) if f.rule == rule and f.ok else f for f in out]

    def _append(self, operation: str, decision: str, **fields: Any) -> AuditEntry:
        with self._audit_lock:
            return self._audit.append(operation, decision, actor=self._actor, **fields)

    def _record(self, d: Decision, outcome: str, subjects: Sequence[str], note: Optional[str]) -> None:
        if d.evidence is not None:  # which liveness check let the call in (the check's entry names it too)
            note = f"{note}; liveness {nonce_ref(d.evidence.nonce)}" if note else f"liveness {nonce_ref(d.evidence.nonce)}"
        if outcome == "allowed" and d.token is not None:  # last, after any caller text (audit.last_mention)
            # The skew the guard applied after a withdrawal, so the audit judges this entry by it.
            issued = f"{TOKEN_ISSUED} {int(d.token.issued_at)}; {WITHDRAWAL_SKEW} {CLOCK_SKEW_S} s"
            note = f"{note}; {issued}" if note else issued
        self._append(d.operation.value, outcome, purpose=d.purpose.name if d.purpose else None,
                     token_id=d.token_ref, basis=d.basis, subjects=subjects, rule=d.rule, note=note)

    def _run(self, request: Request, subjects: Sequence[str], body: Callable[[Decision], tuple[T, Optional[_Note]]],
             *, reading: bool = False) -> T:
        """The one audited call: guard, then the body; every outcome lands in the audit log.
        `reading`: a view's read of the record, which an erasure may need first."""
        op = request.operation.value
        try:
            with self._root._judge_lock:
                self._recheck_key()
                try:
                    self._sync_deployment()
                except ConfigError:
                    # A deployment.json that no longer loads (a broken edit) stops processing, not a
                    # person's erasure or withdrawal, nor the reads that find what to erase: those
                    # go on under the last reading that did.
                    if not reading and request.operation not in (Operation.ERASE, Operation.REVOKE):
                        raise
                self._sync_trust()
                # Read before judging: a withdrawal whose entry is at or before this point had
                # changed the policy state already, so the store check can tell a call judged
                # before a withdrawal (and recorded after it) from one let in despite it.
                # The head check, not the last row alone: entries moved out of the log for the
                # length of this call would otherwise move its judging point back with them.
                judged = self._audit.check_head() if request.operation in _JUDGED_AHEAD else None
                decision = self._guard.authorize(request)
        except PolicyViolation as exc:
            self._refused(request, subjects, exc)
            raise
        except ConfigError as exc:
            self._append(op, "failed", purpose=request.purpose, subjects=subjects, note=f"ConfigError: {str(exc)[:120]}")
            raise
        except SafeFaceError as exc:  # an argument or a token the guard could not read (a key already refused above)
            if not isinstance(exc, AuthenticationError):
                self._append(op, "failed", purpose=request.purpose, subjects=subjects, note=type(exc).__name__)
            raise
        except Exception as exc:
            self._append(op, "failed", purpose=request.purpose, subjects=subjects,
                         note=f"guard error: {type(exc).__name__}")
            raise_if_damaged(exc, "the workspace", *self._paths.databases)
            raise_if_unwritable(exc, "the workspace")
            raise BackendError(f"{op} could not be judged ({type(exc).__name__}); nothing was done.") from exc
        try:
            result, note = body(decision)
            if note is not None and note.settle is not None:
                # The answer as the store stands once the work is done: an erasure or revocation
                # commits the rows' removal before its entries and receipt are written, so a
                # template matched or a record read, then removed by one whose receipt exists
                # now, is not answered. The call stays allowed, judged before the withdrawal (no
                # lock: readers never wait for a long erasure or purge, and one committing after
                # this reading is ordered after the answer).
                result, note = note.settle()
        except PolicyViolation as exc:  # decided again at the write
            self._refused(request, subjects, exc)
            raise
        except SafeFaceError as exc:
            self._record(decision, "failed", subjects, type(exc).__name__)
            raise
        except Exception as exc:
            # A backend (ONNX Runtime, SQLite, NumPy) failing inside an authorised call: audited
            # as failed and raised as one of ours; nothing was stored.
            self._record(decision, "failed", subjects, f"backend error: {type(exc).__name__}")
            # A disk that refused a write (full, read-only) or failed a read is no fault of the
            # pipeline's or the store's: the same call works once the disk works again. A page
            # damaged by hand, met outside the stores' own checks, is named as damage (it was a 500).
            raise_if_damaged(exc, "the workspace", *self._paths.databases)
            raise_if_unwritable(exc, "the workspace")
            raise BackendError(f"{op} failed inside the pipeline or the store ({type(exc).__name__}); nothing was "
                               "stored. Check the image and the workspace, then try again.") from exc
        if note is not None:
            self._record(decision, "allowed", note.subjects,
                         note.text if judged is None else f"{note.text}; {JUDGED_AFTER} {judged}")
        return result

    @contextlib.contextmanager
    def _naming(self, op: str, purpose: Any = None) -> Iterator[None]:
        """Around naming a call's subjects, before its audited run: an id refused there (a NUL in
        it, too long, no string) is on record as a failed call naming no one, as a look-alike id
        refused inside the call is; otherwise such attempts left no trace."""
        try:
            yield
        except SafeFaceError as exc:
            if not isinstance(exc, AuthenticationError):
                self._append(op, "failed", purpose=purpose if isinstance(purpose, str) else None, subjects=[],
                             note=type(exc).__name__)
            raise

    def _refused(self, request: Request, subjects: Sequence[str], exc: PolicyViolation) -> None:
        legal = request.legal_basis is not None
        self._append(request.operation.value, "refused", purpose=request.purpose, subjects=subjects, rule=exc.rule,
                     token_id=self._guard.token_ref_of(request.consent, request.legal_basis),
                     basis="legal-basis" if legal else ("consent" if request.consent else None),
                     note=f"role {self._role}" if exc.rule == rule_for("security", self._deployment.profiles) else None)

    def _embed_single(self, image: ImageInput, d: Decision) -> _Probe:
        """The embedding of the one face in the image: several faces are refused, so that a
        bystander is never enrolled or verified in the subject's place. The guard then judges
        the capture rules on what the pipeline found (PA-01, PA-02). Whether the face is masked
        is checked too, and an enrolment also gets its visible-region embedding."""
        pipe = self._pipe()
        image = _pixels(pipe, image)
        result = pipe.embed(image, count_all=True)  # faces of every detector step
        if result.embedding is None or result.face is None:
            raise ImageError("no face was found in the image; use a clear, frontal photo of the person.")
        if len(result.faces) > 1:
            raise ImageError(f"the image shows {len(result.faces)} faces; use a photo of the consenting person "
                             "alone, so that no bystander is processed.")
        vec = np.asarray(result.embedding, dtype=np.float32)
        _refuse_hidden_eyes(pipe, image, result.face, vec)
        check = _mask_check(pipe, image, result.face, vec)
        quality = None
        if d.purpose is not None and d.purpose.capture_quality and d.operation is Operation.ENROLL:
            from ..capture.quality import QualityThresholds, assess

            floor = QualityThresholds.from_mapping(dict(d.purpose.quality), f"purpose {d.purpose.name!r} quality")
            quality = assess(load_image(image), result.face.landmarks, len(result.faces), floor,
                             mask_confidence=None if check is None else float(check.confidence))
        self._guard.check_capture(d, CaptureFacts(vec, quality, self.threshold))
        return _probe(pipe, image, result.face, vec, check, enrol=d.operation is Operation.ENROLL)

    def _store(self, d: Decision, items: Sequence[tuple[str, _Probe]], now: dt.datetime) -> list[Enrollment]:
        """Store the templates in one transaction. Inside it, under the write lock, the guard
        decides again and the "enroll allowed" entries naming the new rows are written, so no
        row exists without its entry and none appears after an erasure or revocation. The
        visible-region template is sealed into its enrolment's row: one consent, expiry, erasure."""
        from ..storage.rows import Enrollment as Row

        parts = d.batch or (d,)
        if d.purpose is None:
            raise ConfigError("an enrolment decision without a purpose.")
        purpose = d.purpose
        expires = self._deployment.expiry(purpose, now)
        # An enrolment image the mask detector called masked is recorded so (sealed with the
        # visible-region template): masked probes meet that template with the both-masked threshold.
        rows = [Row(subject, pr.vec, [purpose.name], str(part.token_ref), expires, provenance=part.provenance,
                    token=part.raw_token, visible=pr.visible, visible_masked=bool(pr.masked) and pr.visible is not None)
                for (subject, pr), part in zip(items, parts)]
        bulk = "bulk; " if d.batch else ""
        limit = self._guard.interaction_limit(purpose, now)
        kept = f"; {KEPT_AT_MOST} {limit.astimezone(dt.timezone.utc).isoformat()}" if limit is not None else ""

        seen: list[int] = []

        def decide() -> None:
            # The log's end before the guard decides again (under the store's write lock, which
            # every withdrawal takes): a use recorded after this point was not in what it read.
            seen.append(self._audit.end())
            self._guard.recheck_at_write(d, [s for s, _ in items], self._clock(), self._trust_at_write())

        def before_commit(stored: Sequence[Any]) -> None:
            judged = seen[-1]
            xact = self._gallery.writing_transaction()
            named = f"; {STORE_TRANSACTION} {xact}" if xact is not None else ""
            for g, part in zip(stored, parts):
                vis = ("; visible-region template" + (" (masked enrolment)" if g.masked_enrolment else "")
                       if g.masked_template else "")
                self._record(part, "allowed", [g.pseudonym], f"{bulk}rows={g.row_id}; expires "
                             f"{g.expires_at.date().isoformat()}{vis}{kept}{named}; {JUDGED_AFTER} {judged}")

        with self._gallery.locked():  # the commit mark follows the store's commit before any other write
            # An enrolment killed between its entry's commit and its store's (in another process,
            # since this one opened) is settled before this one writes: a later row would raise
            # the store's ceiling past the lost ids, and they would read as deleted behind the guard.
            # (A settled enrolment's "uncommitted" entry is not asked for: rare, so a scan for it
            # could read the whole log; settling again finds nothing and the next mark ends it.)
            if self._audit.newest_seq("enroll") > self._audit.newest_seq(COMMITTED):
                self._settle_locked()
            self._ids_past_the_log()
            try:
                stored = self._gallery.add_many(rows, decide=decide, before_commit=before_commit)
            except Exception:
                # Its entries committed and the store's transaction failed (a full disk refused the
                # store's commit, the log's own having room): settled now, or the store check read
                # the rows as deleted behind the guard (a 409 from audit verify) until the next one.
                self._settle_after_failure()
                raise
            # The rows and their "enroll allowed" entries are durable now: the enrolment happened.
            # A disk that refuses what follows (the filing entry, the mark) must not fail the call,
            # or the caller retries and stores a second template of the person. A mark left
            # pending is written by the next enrolment or open (_settle_locked), with the filing
            # entry: so the mark comes last, or a filing entry refused after it was never written.
            mark = "written"
            try:
                self._note_filing()
                self._append(COMMITTED, "allowed", note=f"rows={','.join(str(g.row_id) for g in stored)}; stored")
            except WorkspaceUnwritable:
                mark = "pending"
                self._owed.owe(g.row_id for g in stored)
        # The caller's own token id comes back to it; the store and the log hold only its reference.
        return [Enrollment(g.pseudonym, g.row_id, purpose.name, g.expires_at, str(part.token.token_id if part.token else ""),
                           mark) for g, part in zip(stored, parts)]

    def _note_filing(self) -> None:
        if rule_for("filing", self._deployment.profiles) is None:
            return
        if self._gallery.subject_count() >= self._deployment.filing_threshold:
            if not self._audit.newest_seq(FILING_CROSSED):  # the report dates the crossing by this entry
                self._append(FILING_CROSSED, "allowed", rule=self._rule("filing"),
                             note=f"threshold {self._deployment.filing_threshold} reached")

    def _receipt(self, reason: str, subjects: Sequence[str], token_ref: Optional[str], rows: Sequence[int],
                 now: dt.datetime, vectors: Optional[str] = None) -> ErasureReceipt:
        return issue_receipt(self._receipt_key, reason=reason, subjects=subjects, token_id=token_ref, rows=rows,
                             deployment=str(self._deployment.raw.get("name") or self._paths.root.name), now=now,
                             vectors=vectors)


def _not_found_note(result: ErasureResult) -> str:
    """What an erasure's entry says of the rows the log names that it found stored nowhere
    (moved and edited by hand): kept, so the store check goes on naming them until they are
    erased after a restore. Says no "rows=": the entry's own row list is the rows it removed."""
    failing = ", ".join(map(str, result.failing[:5])) + (", ..." if len(result.failing) > 5 else "")
    if not result.not_found:  # each logged row found (one failing its check at its own id): others fail
        return f"; rows {failing} fail their integrity check (edited by hand), kept" if failing else ""
    return (f"; rows {_rows(list(result.not_found))} not found (edited by hand: rows {failing} fail their "
            "integrity check and may be them), kept")


def _workspace_root(workspace: Any) -> Path:
    """The workspace folder as a Path; InvalidArgument for what names none (a number, bytes, a
    NUL inside, which the operating system would refuse with a bare ValueError)."""
    root = os.fspath(workspace) if isinstance(workspace, (str, os.PathLike)) else None
    if not isinstance(root, str) or not root or "\x00" in root:
        raise InvalidArgument("the workspace must be a folder's path (a str or os.PathLike, no NUL character).")
    # Made absolute now: a relative name looked up again after the app changed its working folder
    # named other files (every call refused as if the audit log had been replaced).
    return Path(root).absolute()


def _pixels(pipe: Any, image: ImageInput) -> ImageInput:
    """The call's image decoded once, into memory the caller cannot reach: every step (the
    embedding, the mask and quality checks, the visible-region template) judges the same pixels,
    where a path read again, a file rewritten or an array changed by another thread between
    reads let a masked face be embedded and a bare one judged (a masked reference past PA-02).
    A host pipeline (hazmat, trusted) is handed the input as given: it reads its own inputs."""
    from ..hazmat.vision import Pipeline

    if not isinstance(pipe, Pipeline):
        return image
    pixels = load_image(image)
    return pixels.copy() if isinstance(image, np.ndarray) and np.shares_memory(pixels, image) else pixels


def _mask_check(pipe: Any, image: ImageInput, face: Any, vec: np.ndarray) -> Any:
    """The mask detector's verdict on a call's face (MaskCheck); None from a pipeline without
    one (a caller's own, or an engine it was not trained for)."""
    check_fn = getattr(pipe, "mask_check", None)
    return None if check_fn is None else check_fn(image, face, vec)


def _refuse_hidden_eyes(pipe: Any, image: ImageInput, face: Any, vec: np.ndarray) -> None:
    """Refuse a face whose eyes the eye-cover check finds hidden (eye_cover.py): with dark glasses,
    and a mask too, too little of it is left to tell people apart, and strangers covered alike
    matched each other. A pipeline without the check (a caller's own, or an engine it was not
    trained for) skips it."""
    check_fn = getattr(pipe, "eye_check", None)
    check = None if check_fn is None else check_fn(image, face, vec)
    if check is not None and check.covered:
        raise EyesCovered(f"the eyes of this face are hidden (eye-cover confidence {check.confidence:.2f}): dark "
                          "glasses or a cover leave too little to recognize the person by. Ask them to take the "
                          "glasses off and look at the camera, then try again.")


def _probe(pipe: Any, image: ImageInput, face: Any, vec: np.ndarray, check: Any, *, enrol: bool) -> _Probe:
    """The probe of a call's face with its mask check (`_mask_check`), and the visible-region
    embedding for an enrolment or a masked probe: drawn over a masked face, the synthetic masks
    hide its own mask, so probe and template wear the same ones. Without a mask check, neither:
    the call takes the plain path."""
    if check is None:
        return _Probe(vec)
    visible_fn = getattr(pipe, "visible_embedding", None)
    visible = (visible_fn(image, face, masked=bool(check.masked))
               if (enrol or check.masked) and visible_fn is not None else None)
    later = (None if visible_fn is None or check.masked or enrol
             else (lambda: np.asarray(visible_fn(image, face, masked=False), dtype=np.float32)))
    return _Probe(vec, bool(check.masked), float(check.confidence), visible, later)


def _path_note(probe: _Probe, by_region: bool, masked_enrolment: bool = False) -> str:
    """What a verification's audit entry says about the mask: the path taken (by the visible
    region or whole), whether a masked enrolment's template decided, and the detector's
    confidence. A probe not called masked says so only when it met a masked enrolment."""
    if probe.mask_confidence is None:
        return ""
    conf = f"(mask {probe.mask_confidence:.2f})"
    detail = ", masked enrolment" if masked_enrolment else ""
    if by_region and probe.masked:
        return f"; masked path{detail} {conf}"
    if by_region:
        return f"; bare probe by its visible region{detail} {conf}"
    if probe.masked:
        return f"; masked probe, no visible-region template: plain path {conf}"
    return ""


def _candidates_note(probe: _Probe, out: Sequence[Candidate]) -> str:
    """The same for an identification, counted over its candidates: a masked probe's candidates
    come by their visible-region templates, or whole (rows enrolled before those were made), and
    the entry names how many came each way."""
    if probe.mask_confidence is None:
        return ""
    conf = f"(mask {probe.mask_confidence:.2f})"
    by_masked = sum(c.masked_enrolment for c in out)
    of_masked = f", {by_masked} by masked enrolment" if by_masked else ""
    if probe.masked and probe.visible is not None:
        whole = sum(not c.masked for c in out)
        of_whole = f", {whole} whole on the plain path (no visible-region template)" if whole else ""
        return f"; masked path{of_masked}{of_whole} {conf}"
    if probe.masked:
        return f"; masked probe, no visible-region template: plain path {conf}"
    return f"; bare probe by its visible region{of_masked} {conf}" if by_masked else ""


def _check_new_subject(subject: object) -> None:
    """Refuse a new enrolment under an id that prints as another (pseudonym.new_subject_problem)."""
    problem = new_subject_problem(subject)
    if problem is not None:
        raise InvalidArgument(problem)


def _merged(results: Sequence[ErasureResult]) -> ErasureResult:
    """Several subjects' erasures as one (for their receipt)."""
    rows = tuple(r for res in results for r in res.row_ids)
    return ErasureResult(results[0].pseudonym if len(results) == 1 else None, rows, len(rows), _vectors(results),
                         "pending" if any(getattr(r, "copies", None) for r in results) else None)


def _receipt_rows(results: Sequence[ErasureResult]) -> list[int]:
    """The rows a removal's receipt names: those it removed and those an earlier try of it removed
    before a kill or a full disk stopped its entry (settled). The retry's receipt is the only one
    the person gets: it said 0 removed, naming none, where the log named them."""
    return [r for res in results for r in (*res.row_ids, *res.settled)]


def _vectors(results: Sequence[Any]) -> Optional[str]:
    """One status for several erasures' vectors: "pending" if any is."""
    states = {r.vectors for r in results if getattr(r, "vectors", None)}
    return "pending" if "pending" in states else (states.pop() if states else None)


def _vec_note(vectors: Optional[str], copies: Optional[str] = None) -> str:
    """What the removal left to finish: an external index's vectors, or a SQLite store's write-ahead
    log still holding the erased rows' old pages (dropped at the store's next write, open or close)."""
    return (f"; vectors {vectors}" if vectors else "") + ("; old pages pending in the write-ahead log" if copies
                                                          else "")


def _rows(ids: Sequence[int]) -> str:
    return ",".join(str(int(i)) for i in ids) or "-"
