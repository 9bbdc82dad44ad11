"""SafeFace: the facade. Every public call is guard -> pipeline -> store -> audit.

The guard (policy/guard.py) decides; a refusal raises PolicyViolation naming its rule, stores
nothing and is audited. There is no public method that embeds and stores without the guard:
the gallery is private to this object and the pipeline hands embeddings only to it.

Erasure, revocation, purging and reports are never blocked by an incomplete deployment: a
person's rights and the operator's housekeeping must work even when processing may not.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Optional, Sequence, Union

import numpy as np

from ..workspace.audit import AuditEntry, AuditLog, AuditReport
from .results import Candidate, Enrollment, Export, Verification
from ..errors import ConfigError, ImageError, IntegrityError, PolicyViolation, SafeFaceError
from ..imageio import ImageInput
from ..policy.attributes import classify, rule_for_category
from ..policy.deployment import Deployment, working_days_after
from ..policy.guard import Decision, Guard
from ..policy.receipts import ErasureReceipt, issue_receipt, receipt_key
from ..policy.rules import rule_for
from ..workspace.state import PolicyState
from ..workspace.layout import WorkspacePaths, load_trust, resolve_passphrase

if TYPE_CHECKING:
    from ..storage.gallery import GalleryRow

Clock = Callable[[], dt.datetime]
FILING_WORKING_DAYS = 30


def utc_now() -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc)


class SafeFace:
    """Open a workspace with :meth:`open`; close it (or use ``with``) when done."""

    def __init__(self, paths: WorkspacePaths, deployment: Deployment, keyring: Any, gallery: Any,
                 audit: AuditLog, state: PolicyState, guard: Guard, role: str, clock: Clock,
                 pipeline: Any = None) -> None:
        self._paths = paths
        self._deployment = deployment
        self._keyring = keyring
        self._gallery = gallery
        self._audit = audit
        self._state = state
        self._guard = guard
        self._role = role
        self._clock = clock
        self._pipeline = pipeline
        self._receipt_key = receipt_key(keyring.key("pseudonym"))

    # -- opening ----------------------------------------------------------------------------
    @classmethod
    def open(cls, workspace: Union[str, Path], passphrase: Optional[str] = None, *,
             passphrase_file: Optional[Path] = None, role: Optional[str] = None, pipeline: Any = None,
             clock: Optional[Clock] = None) -> "SafeFace":
        from ..storage.gallery import Gallery
        from ..hazmat.templates.keyring import PassphraseKeyring

        paths = WorkspacePaths(Path(workspace))
        deployment = Deployment.load(paths.config)
        if not paths.keyring.is_file():
            raise ConfigError(f"{paths.keyring} is missing: the workspace has no keys. Restore it from a backup.")
        keyring = PassphraseKeyring.open(paths.keyring, resolve_passphrase(paths.root, passphrase, passphrase_file))
        trust = load_trust(paths)
        if not paths.audit.is_file():
            raise IntegrityError(f"the audit log {paths.audit} is missing: it was deleted. Restore it before processing.")
        state = PolicyState(paths.policy)
        audit = AuditLog(paths.audit, keyring.key("audit"))
        try:
            audit.check_head()
        except IntegrityError:
            audit.close()
            state.close()
            raise
        dim = int(deployment.section("matching").get("dim") or 128)
        gallery = Gallery.open(paths.gallery, keyring, dim)
        guard = Guard(deployment, trust["consent_issuers"], trust["authorities"], state, gallery.pseudonym)
        sf = cls(paths, deployment, keyring, gallery, audit, state, guard, role or deployment.default_role,
                 clock or utc_now, pipeline)
        sf.purge_expired()  # expired templates go as soon as anyone opens the workspace
        return sf

    def close(self) -> None:
        self._gallery.close()
        self._audit.close()
        self._state.close()

    def __enter__(self) -> "SafeFace":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def deployment(self) -> Deployment:
        return self._deployment

    @property
    def paths(self) -> WorkspacePaths:
        return self._paths

    @property
    def threshold(self) -> float:
        from ..hazmat.vision import DEFAULT_THRESHOLD

        t = self._deployment.match_threshold
        return DEFAULT_THRESHOLD if t is None else t

    def pseudonym(self, subject: str) -> str:
        return str(self._gallery.pseudonym(subject))

    # -- the guarded calls ------------------------------------------------------------------
    def enroll(self, image: ImageInput, subject: str, purpose: str, consent: Optional[str] = None, *,
               legal_basis: Optional[str] = None) -> Enrollment:
        now = self._clock()
        pseud = self.pseudonym(subject)
        decision = self._authorize("enroll", purpose, now, subject=subject, consent=consent,
                                   legal_basis=legal_basis, subjects=[pseud],
                                   extra=lambda _d, t: self._check_filing(subject, t))
        vec = self._embed_single(image, "enroll", decision, [pseud], now)
        expires = self._deployment.expiry(decision.purpose, now)
        # Recorded before the store: a crash between the two leaves an over-record, never an
        # unrecorded template.
        self._log(decision, "allowed", [pseud], now, note=f"expires {expires.date()}")
        try:
            row = self._gallery.add(subject, vec, [purpose], str(decision.token_id), expires,
                                    provenance="consent" if decision.consent is not None else "legal-basis")
        except SafeFaceError as exc:
            self._log(decision, "failed", [pseud], now, note=type(exc).__name__)
            raise
        self._state.set_purpose_end(pseud, purpose, self._deployment.purpose_end(decision.purpose, now))
        self._note_filing(now)
        return Enrollment(row.pseudonym, row.row_id, purpose, expires, str(decision.token_id))

    def enroll_many(self, items: Sequence[tuple[ImageInput, str, Optional[str]]], purpose: str) -> list[Enrollment]:
        """Bulk enrolment of (image, subject, consent token) items. Every item needs its own
        person's consent: a batch with any item lacking one is refused whole and nothing is
        stored (EU-02: no database built by untargeted collection)."""
        now = self._clock()
        lacking = [subject for _, subject, consent in items if not consent]
        if lacking:
            rule = rule_for("provenance", self._deployment.profiles) or self._rule("consent")
            self._audit.append("enroll", "refused", purpose=purpose, subjects=[self.pseudonym(s) for s in lacking],
                               rule=rule, note=f"bulk enrolment: {len(lacking)} of {len(items)} without consent", now=now)
            raise PolicyViolation(rule, f"bulk enrolment refused: {len(lacking)} of {len(items)} items carry no consent "
                                  "of their own; every template needs its person's consent (no untargeted collection).")
        decisions = [self._authorize("enroll", purpose, now, subject=subject, consent=consent,
                                     subjects=[self.pseudonym(subject)])
                     for _, subject, consent in items]  # all checked before anything is stored
        filing = rule_for("filing", self._deployment.profiles)
        new_people = {s for _, s, _ in items if not self._gallery.has_subject(s)}
        total = self._gallery.subject_count() + len(new_people)
        if filing is not None and not self._deployment.filing_reference and new_people and \
                total > self._deployment.filing_threshold:
            self._audit.append("enroll", "refused", purpose=purpose, rule=filing,
                               note=f"bulk enrolment would store {total} people", now=now)
            raise PolicyViolation(filing, f"this batch would bring the stored people to {total}, beyond the filing "
                                  f"threshold of {self._deployment.filing_threshold}; record filing.reference first.")
        from ..storage.gallery import Enrollment as Row

        rows = []
        for (image, subject, _), decision in zip(items, decisions):
            vec = self._embed_single(image, "enroll", decision, [self.pseudonym(subject)], now)
            rows.append(Row(subject, vec, [purpose], str(decision.token_id),
                            self._deployment.expiry(decision.purpose, now), provenance="consent"))
        for row, decision in zip(rows, decisions):
            self._log(decision, "allowed", [self.pseudonym(row.subject_id)], now, note=f"bulk; expires {row.expires_at.date()}")
        try:
            stored = self._gallery.add_many(rows)  # one transaction: all or none
        except SafeFaceError as exc:
            self._audit.append("enroll", "failed", purpose=purpose, note=f"bulk: {type(exc).__name__}", now=now)
            raise
        p = self._deployment.purpose(purpose)
        assert p is not None
        for g in stored:
            self._state.set_purpose_end(g.pseudonym, purpose, self._deployment.purpose_end(p, now))
        self._note_filing(now)
        return [Enrollment(g.pseudonym, g.row_id, purpose, g.expires_at, g.token_id) for g in stored]

    def verify(self, image: ImageInput, subject: str, purpose: str, consent: Optional[str] = None, *,
               legal_basis: Optional[str] = None) -> Verification:
        now = self._clock()
        pseud = self.pseudonym(subject)
        decision = self._authorize("verify", purpose, now, subject=subject, consent=consent,
                                   legal_basis=legal_basis, subjects=[pseud])
        vec = self._embed_single(image, "verify", decision, [pseud], now)
        score = self._gallery.verify(subject, vec, purpose, now=now)
        match = score is not None and score >= self.threshold
        if match:
            self._interaction(subject, pseud, purpose, now)
        self._log(decision, "allowed", [pseud], now,
                  note="no template" if score is None else ("match" if match else "no match"))
        return Verification(match, score, self.threshold, pseud)

    def identify(self, image: ImageInput, purpose: str, consent: Optional[str] = None,
                 legal_basis: Optional[str] = None, top_k: int = 5) -> list[Candidate]:
        """The enrolled subjects (pseudonyms) that match, best first. Only templates whose
        purposes include `purpose` and that have not expired take part."""
        now = self._clock()
        decision = self._authorize("identify", purpose, now, consent=consent, legal_basis=legal_basis, subjects=[])
        vec = self._embed_subject(image, "identify", decision, now)
        matches = self._gallery.search(vec, purpose, k=max(1, int(top_k)), threshold=self.threshold, now=now)
        out = [Candidate(m.pseudonym, float(m.score)) for m in matches]
        self._log(decision, "allowed", [c.subject for c in out], now, note=f"{len(out)} candidate(s)")
        return out

    def export(self, subject: str, purpose: str, recipient: str, consent: Optional[str] = None, *,
               legal_basis: Optional[str] = None) -> Export:
        """Disclose a subject's stored records to `recipient`: refused unless the consent allows
        `transmit` for this purpose or a legal basis is given (CN-07, US-03)."""
        now = self._clock()
        pseud = self.pseudonym(subject)
        self._check_role("export", purpose, [pseud], now)
        decision = self._authorize("transmit", purpose, now, subject=subject, consent=consent,
                                   legal_basis=legal_basis, subjects=[pseud])
        rows = [r for r in self._gallery.rows_for(subject) if purpose in r.purposes]
        records = [{"subject": r.pseudonym, "purposes": list(r.purposes), "provenance": r.provenance,
                    "expires_at": r.expires_at.isoformat(timespec="seconds")} for r in rows]
        self._log(decision, "allowed", [pseud], now, note=f"disclosed {len(records)} record(s) to {recipient}",
                  operation="export")
        return Export(recipient, decision.basis, records)

    def analyze(self, image: ImageInput, attributes: Sequence[str] = ("faces",)) -> dict[str, Any]:
        """Technical facts about the faces in an image (count, boxes, landmarks, detector
        scores). Any personal attribute (race, religion, health, emotion, gender, age, ...) is
        refused: safeface infers none (CN-18, EU-01, EU-03)."""
        now = self._clock()
        self._check_role("analyze", None, [], now)
        wanted: list[str] = []
        for a in attributes:
            req = classify(a)
            if req.category is not None:
                rule = rule_for_category(req.category, self._deployment.profiles)
                exc = PolicyViolation(rule, f"safeface does not infer {req.category} (asked: {a!r}) and never will; "
                                      "no attribute model exists or is loaded.")
                self._audit.append("analyze", "refused", rule=rule, note=f"attribute category: {req.category}", now=now)
                raise exc
            assert req.allowed is not None
            wanted.append(req.allowed)
        try:
            self._guard.check_deployment(now)
        except PolicyViolation as exc:
            self._audit.append("analyze", "refused", rule=exc.rule, now=now)
            raise
        faces = self._pipe().detect(image)
        self._audit.append("analyze", "allowed", note=f"{len(faces)} face(s); {','.join(sorted(set(wanted)))}", now=now)
        out: dict[str, Any] = {}
        if "faces" in wanted:
            out["faces"] = len(faces)
        if "box" in wanted:
            out["boxes"] = [f.to_dict()["box"] for f in faces]
        if "landmarks" in wanted:
            out["landmarks"] = [f.to_dict()["landmarks"] for f in faces]
        if "score" in wanted:
            out["scores"] = [f.to_dict()["score"] for f in faces]
        return out

    def anonymize(self, image: ImageInput, out: Optional[Union[str, Path]] = None, *, mode: str = "blur",
                  margin: Optional[float] = None, detector: str = "hog") -> Any:
        """Cover every face of an image (or, with `out`, of an image or video file) so that nobody
        can be recognised. No embedding is computed, no gallery touched and no consent needed;
        the run is audited with the input's SHA-256 and the face count. Returns (pixels, report)
        for an image, or the report when `out` is given."""
        from ..anonymize import DEFAULT_MARGIN, anonymize_file, anonymize_image

        now = self._clock()
        m = DEFAULT_MARGIN if margin is None else margin
        if out is not None:
            if not isinstance(image, (str, Path)):
                raise ImageError("anonymizing to a file needs the input as a path.")
            report = anonymize_file(image, out, mode, m, detector)
            result: Any = report
        else:
            pixels, report = anonymize_image(image, mode, m, detector)
            result = (pixels, report)
        self.record_anonymization(report, now)
        return result

    def record_anonymization(self, report: Any, now: Optional[dt.datetime] = None) -> None:
        """Audit an anonymization run: what was covered, never who."""
        self._audit.append("anonymize", "allowed", now=now or self._clock(),
                           note=f"{report.kind} sha256={report.input_sha256}; "
                                f"{report.face_count} face(s) covered ({report.mode})")

    # -- rights and housekeeping ------------------------------------------------------------
    def erase(self, subject: str) -> ErasureReceipt:
        """Remove every template of the subject at once and withdraw the consents given so far;
        returns a signed receipt (CN-05, EU-06)."""
        now = self._clock()
        pseud = self.pseudonym(subject)
        self._check_role("erase", None, [pseud], now)
        result = self._gallery.erase_subject(subject)
        self._state.revoke_subject(pseud, now)
        self._state.forget_subject(pseud)
        receipt = self._receipt("erase", [pseud], None, result.row_ids, now)
        self._audit.append("erase", "allowed", subjects=[pseud], rule=self._rule("withdrawal"),
                           note=f"{result.count} template(s) removed; receipt {receipt.receipt_id}", now=now)
        return receipt

    def revoke(self, token_id: Optional[str] = None, subject: Optional[str] = None) -> ErasureReceipt:
        """Withdraw a consent (by token id) or all of a subject's consents: processing under them
        stops at once and the templates enrolled under them are erased."""
        if (token_id is None) == (subject is None):
            raise ConfigError("revoke needs exactly one of token_id or subject.")
        now = self._clock()
        self._check_role("revoke", None, [], now)
        if subject is not None:
            pseud = self.pseudonym(subject)
            self._state.revoke_subject(pseud, now)
            result = self._gallery.erase_subject(subject)
            self._state.forget_subject(pseud)
            subjects = [pseud]
        else:
            assert token_id is not None
            self._state.revoke_token(token_id, now)
            result = self._gallery.remove_token(token_id)
            subjects = [result.pseudonym] if result.pseudonym else []
        receipt = self._receipt("revoke", subjects, token_id, result.row_ids, now)
        self._audit.append("revoke", "allowed", token_id=token_id, subjects=subjects, rule=self._rule("withdrawal"),
                           note=f"{result.count} template(s) removed; receipt {receipt.receipt_id}", now=now)
        return receipt

    def purge_expired(self) -> Optional[ErasureReceipt]:
        """Remove every expired template (CN-08, US-01); a receipt when anything was removed."""
        now = self._clock()
        results = self._gallery.purge_expired(now)
        if not results:
            return None
        rows = [r for res in results for r in res.row_ids]
        subjects = [res.pseudonym for res in results if res.pseudonym]
        receipt = self._receipt("purge", subjects, None, rows, now)
        self._audit.append("purge", "allowed", subjects=subjects, rule=self._rule("retention"),
                           note=f"{len(rows)} expired template(s) removed; receipt {receipt.receipt_id}", now=now)
        return receipt

    def rekey(self) -> dict[str, Any]:
        """Rotate the template transform and seal keys and move every template to them, without
        any image (ST-01 renewability)."""
        now = self._clock()
        self._check_role("rekey", None, [], now)
        versions = self._keyring.rotate("transform", "seal")
        result = self._gallery.rekey()
        # One gallery per workspace: once it has moved, the old versions protect nothing and go,
        # so a leaked old key no longer links or opens anything.
        retired = 0
        for purpose, newest in versions.items():
            for v in list(self._keyring.versions(purpose)):
                if v < newest:
                    self._keyring.retire(purpose, v)
                    retired += 1
        self._audit.append("rekey", "allowed", note=f"{result.rows} template(s) moved to keys {versions}; "
                           f"{retired} old key version(s) retired", now=now)
        return {"templates": result.rows, "versions": versions, "retired": retired}

    def audit_verify(self) -> AuditReport:
        return self._audit.verify()

    def report(self, out_dir: Union[str, Path]) -> dict[str, Path]:
        from ..workspace.report import write_report

        now = self._clock()
        self._check_role("report", None, [], now)
        paths = write_report(self, Path(out_dir), now)
        self._audit.append("report", "allowed", note="compliance report written", now=now)
        return paths

    # -- read-only views ---------------------------------------------------------------------
    def records(self, subject: Optional[str] = None) -> "list[GalleryRow]":
        """The stored templates' descriptions (pseudonym, purposes, expiry, provenance, token
        id), all of them or one subject's; never a template or an embedding."""
        return self._gallery.rows() if subject is None else self._gallery.rows_for(subject)

    def audit_entries(self) -> list[AuditEntry]:
        """Every audit entry, oldest first (pseudonyms only, no image or template)."""
        return list(self._audit.entries())

    # -- facts for the report ---------------------------------------------------------------
    def facts(self) -> dict[str, Any]:
        return {
            "subjects": self._gallery.subject_count(),
            "templates": len(self._gallery),
            "revocations": self._state.revoked_count(),
            "filing_crossed": self._state.fact("filing_crossed"),
            "filing_deadline": self._state.fact("filing_deadline"),
            "audit": self._audit.counts(),
            "key_versions": self._gallery.key_versions,
            "receipt_public_key": self._paths.receipt_public.read_text().strip()
            if self._paths.receipt_public.is_file() else None,
        }

    # -- internals --------------------------------------------------------------------------
    def _rule(self, concept: str) -> str:
        rule = rule_for(concept, self._deployment.profiles)
        assert rule is not None
        return rule

    def _pipe(self) -> Any:
        if self._pipeline is None:
            from ..hazmat.vision import DEFAULT_ENGINE, Pipeline, get_engine

            # "dlib" or "onnx": the same dlib networks, so the same templates and assessment.
            engine = str(self._deployment.section("matching").get("engine") or DEFAULT_ENGINE)
            self._pipeline = Pipeline(get_engine(engine))
        return self._pipeline

    def _check_role(self, operation: str, purpose: Optional[str], subjects: Sequence[str], now: dt.datetime) -> None:
        try:
            self._guard.check_role(self._role, operation)
        except PolicyViolation as exc:
            self._audit.append(operation, "refused", purpose=purpose, subjects=subjects, rule=exc.rule,
                               note=f"role {self._role}", now=now)
            raise

    def _authorize(self, operation: str, purpose: str, now: dt.datetime, *, subjects: Sequence[str],
                   subject: Optional[str] = None, consent: Optional[str] = None,
                   legal_basis: Optional[str] = None, extra: Optional[Callable[[Decision, dt.datetime], None]] = None
                   ) -> Decision:
        op_name = "export" if operation == "transmit" else operation
        try:
            if op_name != "export":
                self._guard.check_role(self._role, op_name)
            decision = self._guard.authorize(operation, purpose, now, subject=subject, consent=consent,
                                             legal_basis=legal_basis)
            if extra is not None:
                extra(decision, now)
        except PolicyViolation as exc:
            self._audit.append(op_name, "refused", purpose=purpose, subjects=subjects, rule=exc.rule,
                               token_id=self._guard.token_id_of(consent, legal_basis),
                               basis="legal-basis" if legal_basis is not None else ("consent" if consent else None),
                               now=now)
            raise
        return decision

    def _log(self, decision: Decision, outcome: str, subjects: Sequence[str], now: dt.datetime, *,
             note: Optional[str] = None, operation: Optional[str] = None) -> None:
        rule = self._rule("legal-basis") if decision.legal_basis is not None else None
        self._audit.append(operation or decision.operation, outcome, purpose=decision.purpose.name,
                           token_id=decision.token_id, basis=decision.basis, subjects=subjects, rule=rule,
                           note=note, now=now)

    def _embed_single(self, image: ImageInput, operation: str, decision: Decision, subjects: Sequence[str],
                      now: dt.datetime) -> np.ndarray:
        """The embedding of the one face in the image: several faces are refused, so that a
        bystander is never enrolled or verified in the subject's place."""
        try:
            result = self._pipe().embed(image)
            if result.embedding is None:
                raise ImageError("no face was found in the image; use a clear, frontal photo of the person.")
            if len(result.faces) > 1:
                raise ImageError(f"the image shows {len(result.faces)} faces; use a photo of the consenting person "
                                 "alone, so that no bystander is processed.")
        except SafeFaceError as exc:
            self._log(decision, "failed", subjects, now, note=type(exc).__name__)
            raise
        return np.asarray(result.embedding, dtype=np.float32)

    def _embed_subject(self, image: ImageInput, operation: str, decision: Decision, now: dt.datetime) -> np.ndarray:
        try:
            result = self._pipe().embed(image)
            if result.embedding is None:
                raise ImageError("no face was found in the image.")
        except SafeFaceError as exc:
            self._log(decision, "failed", [], now, note=type(exc).__name__)
            raise
        return np.asarray(result.embedding, dtype=np.float32)

    def _check_filing(self, subject: str, now: dt.datetime) -> None:
        """CN-17: once the count of stored people reaches the threshold, a new person may be
        enrolled only after the filing reference is recorded."""
        rule = rule_for("filing", self._deployment.profiles)
        if rule is None or self._deployment.filing_reference:
            return
        if self._gallery.has_subject(subject):
            return
        count = self._gallery.subject_count()
        threshold = self._deployment.filing_threshold
        if count >= threshold:
            self._note_filing(now)
            raise PolicyViolation(rule, f"{count} people are stored, the filing threshold is {threshold}: file with the "
                                  f"provincial authority (deadline {self._state.fact('filing_deadline')}) and record "
                                  "filing.reference in deployment.json before enrolling anyone new.")

    def _note_filing(self, now: dt.datetime) -> None:
        if rule_for("filing", self._deployment.profiles) is None:
            return
        if self._gallery.subject_count() >= self._deployment.filing_threshold:
            if self._state.set_fact_once("filing_crossed", now.date().isoformat()):
                self._state.set_fact_once("filing_deadline",
                                          working_days_after(now.date(), FILING_WORKING_DAYS).isoformat())
                self._audit.append("filing-threshold", "allowed", rule=self._rule("filing"),
                                   note=f"threshold {self._deployment.filing_threshold} reached", now=now)

    def _interaction(self, subject: str, pseud: str, purpose: str, now: dt.datetime) -> None:
        """BIPA: a match is an interaction; expiry = min(purpose end, now + 3 years) (US-01)."""
        if "us-bipa" not in self._deployment.profiles:
            return
        end = self._state.purpose_end(pseud, purpose)
        p = self._deployment.purpose(purpose)
        if end is None or p is None:
            return
        grace = dt.timedelta(days=int(self._deployment.bipa.get("grace_days_after_purpose") or 0))
        self._gallery.touch(subject, now, new_expiry=min(end + grace, now + dt.timedelta(days=3 * 365)))

    def _receipt(self, reason: str, subjects: Sequence[str], token_id: Optional[str], rows: Sequence[int],
                 now: dt.datetime) -> ErasureReceipt:
        return issue_receipt(self._receipt_key, reason=reason, subjects=subjects, token_id=token_id, rows=rows,
                             deployment=str(self._deployment.raw.get("name") or self._paths.root.name), now=now)
