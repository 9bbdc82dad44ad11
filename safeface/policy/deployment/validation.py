"""Judging a deployment against its profiles: one finding per configuration rule, passed or
failed. A deployment with any failing finding processes nothing; every call is refused with the
first failing rule (guard.check_deployment)."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import TYPE_CHECKING, Callable, Optional

from ...errors import ConfigError
from ..rules import rule_for
from .floors import check_location_names, normalize_location, private_space
from .model import (ALL_OPERATIONS, ASSESSMENT_REVIEW_DAYS, CN_MAX_FILING_THRESHOLD, LOCATION_CLASSES,
                    MAX_RETENTION_DAYS, NOTICE_FIELDS, TEXAS_MAX_GRACE_DAYS, _date)

if TYPE_CHECKING:
    from .model import Deployment


@dataclass(frozen=True)
class Finding:
    rule: str
    ok: bool
    message: str


def findings(dep: "Deployment", today: dt.date) -> list[Finding]:
    """Every configuration rule of the deployment's profiles (and the floors under all of them),
    passed or failed, in check order."""
    out: list[Finding] = []

    def add(concept: str, problem: Optional[str], ok_text: str) -> None:
        rule = rule_for(concept, dep.profiles)
        if rule is not None:
            out.append(Finding(rule, problem is None, problem or ok_text))

    loc = dep.location
    cls_ = normalize_location(loc.get("class"))
    kind = str(loc.get("kind") or "")
    private = private_space(loc.get("class"), kind)
    # A name that prints as another could hide a private space the catalogue does not draw.
    add("private-space",
        f"the location ({kind or loc.get('class')}) is a private space ({private}); face recognition may not be "
        "installed there at all." if private else _error_of(lambda: check_location_names(loc)),
        "the location is not a private space.")
    problem = None
    if not private and cls_ not in LOCATION_CLASSES:
        problem = f"location.class is {loc.get('class') or 'missing'}; set it to one of {', '.join(LOCATION_CLASSES)}."
    elif cls_ == "public-place":
        not_safety = [p.name for p in dep.purposes.values() if not p.public_safety]
        if not_safety:
            problem = (f"a device in a public place may serve public safety only; purposes {not_safety} are "
                       "not marked public_safety.")
        elif not str(loc.get("capture_area") or "").strip():
            problem = "a device in a public place needs location.capture_area describing the area it captures."
        elif loc.get("signage_attested") is not True:
            problem = "a device in a public place needs conspicuous signs: set location.signage_attested to true once they are up."
    add("public-place", problem, f"location class {cls_}.")

    ctrl = dep.controller
    problem = None
    if not str(ctrl.get("name") or "").strip() or not str(ctrl.get("contact") or "").strip():
        problem = "controller.name and controller.contact must say who processes faces and how to reach them."
    elif not dep.purposes:
        problem = "the deployment declares no purpose; add one under 'purposes' with its necessity rationale."
    else:
        bad = [p.name for p in dep.purposes.values() if not p.necessity.strip()]
        if bad:
            problem = f"purposes {bad} have no necessity rationale; say why face recognition is necessary for each."
    add("purpose", problem, f"{len(dep.purposes)} purpose(s), each with a necessity rationale.")

    missing = [f for f in NOTICE_FIELDS if not str(dep.notice.get(f) or "").strip()]
    add("notice", f"the notice lacks {missing}; people must be told all of {list(NOTICE_FIELDS)}." if missing else None,
        f"notice {dep.notice.get('version', '?')} with all fields, hash {dep.notice_hash[:12]}.")

    bad_ret = [p.name for p in dep.purposes.values() if not 0 < p.retention_days <= MAX_RETENTION_DAYS]
    add("retention", f"purposes {bad_ret} need a retention period of 1 to {MAX_RETENTION_DAYS} days "
        "(retention_days)." if bad_ret else None,
        "every purpose has a retention period.")
    if "us-bipa" in dep.profiles:
        problem = None
        if not str(dep.bipa.get("retention_schedule_url") or "").strip():
            problem = "BIPA 15(a) needs a public written retention schedule: set bipa.retention_schedule_url."
        out.append(Finding("US-01", problem is None, problem or "public retention schedule published."))
        grace = int(dep.bipa.get("grace_days_after_purpose") or 0)
        texas = dep.bipa.get("texas") is True  # a flag, checked as written when read (model._flag)
        limit = TEXAS_MAX_GRACE_DAYS if texas else None
        add("texas", f"bipa.grace_days_after_purpose is {grace}; Texas allows at most {limit} days after the "
            "purpose ends." if limit is not None and grace > limit else None,
            f"grace after purpose end {grace} days" + (" (Texas limit 365)." if texas else "."))

    add("filing", _filing_problem(dep), f"filing threshold {_or_none(lambda: dep.filing_threshold)} people.")
    add("guardian", _error_of(lambda: dep.guardian_age), f"guardian consent below {_or_none(lambda: dep.guardian_age)}.")

    add("assessment", _assessment_problem(dep, today), "impact assessment current and covering this configuration.")

    no_alt = [p.name for p in dep.purposes.values() if not p.alternatives and not p.mandatory_by_law]
    add("alternative", f"purposes {no_alt} register no non-biometric alternative; people who refuse face "
        "recognition need one (e.g. a PIN, a card, a staff check)." if no_alt else None,
        "every purpose has a non-biometric alternative.")

    # PA-01, PA-02: judged only where a purpose asks; the guard checks every call (safeface/capture).
    # The floors set over the defaults (only a purpose requiring capture quality may set them) are
    # named, so that the assessor sees a relaxed one: a mask bar of 1 accepts masked references.
    floors = {p.name: dict(p.quality) for p in dep.purposes.values() if p.quality}
    for concept, field_, what in (("liveness", "liveness", "fresh signed liveness evidence bound to the probe's face"),
                                  ("capture-quality", "capture_quality", "an enrolment capture above the quality floor"
                                   + (f" (over the defaults: {floors})" if floors else ""))):
        asking = [p.name for p in dep.purposes.values() if getattr(p, field_)]
        if asking:
            add(concept, None, f"purposes {asking} require {what}")

    roles = dep.roles
    unknown = sorted({o for ops in roles.values() for o in ops} - set(ALL_OPERATIONS))
    problem = (f"roles name unknown operations {unknown}." if unknown
               else _error_of(lambda: dep.match_threshold) or _error_of(lambda: dep.masked_threshold)
               or _error_of(lambda: dep.both_masked_threshold))
    add("security", problem, f"roles: {', '.join(sorted(roles))}; matching threshold "
        f"{_or_none(lambda: dep.match_threshold) or 'default'}, masked "
        f"{_or_none(lambda: dep.masked_threshold) or 'default'}, both masked "
        f"{_or_none(lambda: dep.both_masked_threshold) or 'default'}.")
    return out


def _error_of(read: Callable[[], object]) -> Optional[str]:
    try:
        read()
    except ConfigError as exc:
        return str(exc)
    return None


def _or_none(read: Callable[[], object]) -> object:
    try:
        return read()
    except ConfigError:
        return None


def _filing_problem(dep: "Deployment") -> Optional[str]:
    try:
        threshold = dep.filing_threshold
    except ConfigError as exc:
        return str(exc)
    if "cn-2025" in dep.profiles and threshold > CN_MAX_FILING_THRESHOLD:
        return (f"filing.threshold is {threshold}; the Measures (art. 15) require filing once {CN_MAX_FILING_THRESHOLD:,} "
                "people are stored, so it may not be higher.")
    return None


def _assessment_problem(dep: "Deployment", today: dt.date) -> Optional[str]:
    a = dep.section("assessment")
    if not str(a.get("reference") or "").strip() or not a.get("date"):
        return "no impact assessment is recorded: set assessment.reference and assessment.date before processing."
    try:
        done = _date(a.get("date"), "assessment.date")
        reviewed = _date(a.get("reviewed"), "assessment.reviewed")
        go_live = _date(dep.raw.get("go_live"), "go_live")
    except ConfigError as exc:
        return str(exc)
    if done is None:
        return "assessment.date is empty; record the date of the impact assessment."
    if done > today:
        return f"the impact assessment is dated {done}, in the future; processing may start only after it."
    if reviewed is not None and not done <= reviewed <= today:
        return (f"assessment.reviewed ({reviewed}) must fall between the assessment's date ({done}) and today: a "
                "review in the future would put off the yearly review.")
    if go_live is not None and done > go_live:
        return f"the impact assessment ({done}) postdates go-live ({go_live}); it must come before processing."
    last = max(done, reviewed or done)
    if (today - last).days > ASSESSMENT_REVIEW_DAYS:
        return f"the impact assessment was last reviewed on {last}; it must be reviewed every year."
    if a.get("covers") != dep.config_digest():
        return ("the impact assessment does not cover the current configuration (a purpose, its retention or end "
                "date, the matching or filing threshold, the location, roles, profiles or method changed); redo it "
                "and record it with `safeface assess`.")
    return None


__all__ = ["Finding", "findings"]
