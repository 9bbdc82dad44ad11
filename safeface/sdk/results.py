"""What the SDK's calls return: plain, frozen values holding pseudonyms, never a raw subject id,
an image or an embedding."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from typing import Any, Optional


@dataclass(frozen=True)
class Enrollment:
    pseudonym: str
    row_id: int
    purpose: str
    expires_at: dt.datetime
    token_id: str
    # "pending": the row and its entry are stored, but the disk refused the log's commit mark
    # after them; the next enrolment or open of the workspace writes it. Retrying would store
    # a second template.
    commit_mark: str = "written"

    def to_dict(self) -> dict[str, Any]:
        return {"enrolled": True, "subject": self.pseudonym, "row_id": self.row_id, "purpose": self.purpose,
                "expires_at": self.expires_at.isoformat(timespec="seconds"), "token_id": self.token_id,
                **({"commit_mark": self.commit_mark} if self.commit_mark != "written" else {})}


def path_name(masked: bool, masked_enrolment: bool, bare_probe: bool = False) -> str:
    """How a probe was matched, as results and the service name it: "plain"; "masked" (a masked
    probe against the visible-region template of a bare enrolment, the masked threshold);
    "masked-enrolment" (against that of a masked enrolment, the both-masked threshold);
    "masked-enrolment-bare-probe" (a probe not called masked, by its own visible-region
    embedding, against a masked enrolment's: the masked threshold)."""
    if masked and masked_enrolment:
        return "masked-enrolment-bare-probe" if bare_probe else "masked-enrolment"
    return "masked" if masked else "plain"


@dataclass(frozen=True)
class Verification:
    """`masked`: the probe was matched on its visible region, against the visible-region
    templates, with the masked threshold (`threshold`); `masked_enrolment`: the template that
    decided came from a masked enrolment image, and `threshold` is the both-masked one, unless
    `bare_probe`: the probe's lower face was not called covered (a masked enrolment is met only
    by the visible region), and `threshold` is the masked one. Over the service (client.py) a
    miss carries no score and no threshold (None): see service/answers.py."""

    match: bool
    score: Optional[float]
    threshold: Optional[float]
    pseudonym: str
    masked: bool = False
    mask_confidence: Optional[float] = None  # the mask detector's; None where the pipeline has none
    masked_enrolment: bool = False
    bare_probe: bool = False

    @property
    def path(self) -> str:
        return path_name(self.masked, self.masked_enrolment, self.bare_probe)

    def to_dict(self) -> dict[str, Any]:
        return {"match": self.match, "score": None if self.score is None else round(self.score, 4),
                "threshold": self.threshold, "path": self.path,
                "mask_confidence": None if self.mask_confidence is None else round(self.mask_confidence, 4)}


@dataclass(frozen=True)
class Candidate:
    subject: str  # pseudonym
    score: float
    masked: bool = False  # found through the visible-region templates (the masked path)
    masked_enrolment: bool = False  # through the visible-region template of a masked enrolment
    bare_probe: bool = False  # ... by a probe not called masked (its own visible region)

    @property
    def path(self) -> str:
        return path_name(self.masked, self.masked_enrolment, self.bare_probe)


@dataclass(frozen=True)
class Export:
    """A disclosure of a subject's stored records to a named recipient (CN-07, US-03): their
    descriptions (pseudonym, purposes, expiry, provenance), never an image or a raw embedding."""

    recipient: str
    basis: str
    records: list[dict[str, Any]] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {"recipient": self.recipient, "basis": self.basis, "records": self.records}


@dataclass(frozen=True)
class Record:
    """One stored template, described: never its vector or the token itself."""

    row_id: int
    pseudonym: str
    purposes: tuple[str, ...]
    token_ref: str
    provenance: str
    expires_at: dt.datetime
    created_at: dt.datetime
    last_interaction: Optional[dt.datetime]
    masked_template: bool = False  # a visible-region template for masked probes is sealed with it
    masked_enrolment: bool = False  # the enrolment image was masked (sealed; the both-masked threshold)


@dataclass(frozen=True)
class LivenessCheck:
    """A liveness check's answer. `evidence` (only when live) goes with the next enroll, verify or
    identify call of a purpose that requires liveness; it is valid for seconds and for one call."""

    decision: str  # "live", "attack", "inconclusive"
    score: Optional[float]  # None from the service, which keeps the cues' measurements to itself
    checks: dict[str, Any]
    clip_sha256: str
    evidence: Optional[str] = field(default=None, repr=False)
    expires_at: Optional[dt.datetime] = None

    @property
    def live(self) -> bool:
        return self.decision == "live"

    def to_dict(self) -> dict[str, Any]:
        out = {"live": self.live, "decision": self.decision,
               "score": None if self.score is None else round(self.score, 3), "checks": self.checks,
               "clip_sha256": self.clip_sha256}
        if self.evidence is not None:
            out["evidence"] = self.evidence
            out["expires_at"] = self.expires_at.isoformat(timespec="seconds") if self.expires_at else None
        return out
