"""A deployment: who processes faces, for which purposes, where, under which notice and
assessment, and under which policy profiles. Read from the workspace's ``deployment.json``.

`findings()` judges the whole configuration against its profiles: a deployment with any failing
enforced rule cannot process, and every call is refused with the first failing rule.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping, Optional

from ..atomicfile import write_atomic
from ..errors import ConfigError
from .rules import DEFAULT_PROFILE, check_profiles, rule_for

FORMAT = "safeface-deployment/1"
NOTICE_FIELDS = ("controller", "purpose", "method", "retention", "necessity", "effects", "rights")
LOCATION_CLASSES = ("personal-device", "premises", "public-place")
# CN-15: private spaces within public places, where no device may be installed at all.
PRIVATE_SPACES = ("hotel-room", "public-bath", "changing-room", "toilet")
ALL_OPERATIONS = ("enroll", "verify", "identify", "erase", "export", "analyze", "revoke", "purge", "report",
                  "rekey")
DEFAULT_FILING_THRESHOLD = 100_000
BIPA_YEARS_DAYS = 3 * 365
TEXAS_MAX_GRACE_DAYS = 365
ASSESSMENT_REVIEW_DAYS = 366
MAX_RETENTION_DAYS = 36_500
MAX_ID_CHARS = 128


@dataclass(frozen=True)
class Purpose:
    name: str
    description: str
    necessity: str
    retention_days: int
    end_date: Optional[dt.date] = None
    public_safety: bool = False
    alternatives: tuple[str, ...] = ()
    mandatory_by_law: Optional[str] = None  # the provision that makes face recognition mandatory
    liveness: bool = False  # "liveness": "required" (PA-01)
    capture_quality: bool = False  # "capture_quality": "required" (PA-02)
    quality: tuple[tuple[str, float], ...] = ()  # "quality": {floor: value}, over the defaults (PA-02)


@dataclass(frozen=True)
class Finding:
    rule: str
    ok: bool
    message: str


@dataclass
class Deployment:
    raw: dict[str, Any]
    profiles: tuple[str, ...]
    purposes: dict[str, Purpose]
    method: str = "dlib-resnet-128"

    # -- reading ----------------------------------------------------------------------------
    @classmethod
    def from_dict(cls, raw: Mapping[str, Any]) -> "Deployment":
        if not isinstance(raw, Mapping):
            raise ConfigError("deployment.json must hold a JSON object.")
        profiles = check_profiles(raw.get("profiles") or [DEFAULT_PROFILE])
        purposes: dict[str, Purpose] = {}
        pconf = raw.get("purposes") or {}
        if not isinstance(pconf, Mapping):
            raise ConfigError("'purposes' must map each purpose name to its description.")
        for name, p in pconf.items():
            if not isinstance(p, Mapping):
                raise ConfigError(f"purpose {name!r} must be an object.")
            try:
                retention = int(p.get("retention_days") or 0)
            except (TypeError, ValueError):
                raise ConfigError(f"purpose {name!r}: retention_days must be a whole number of days.") from None
            purposes[str(name)] = Purpose(
                name=str(name), description=str(p.get("description") or ""),
                necessity=str(p.get("necessity") or ""), retention_days=retention,
                end_date=_date(p.get("end_date"), f"purpose {name!r} end_date"),
                public_safety=bool(p.get("public_safety", False)),
                alternatives=tuple(str(a) for a in (p.get("alternatives") or []) if str(a).strip()),
                mandatory_by_law=_provision(p.get("mandatory_by_law")),
                liveness=_required(p.get("liveness"), f"purpose {name!r} liveness"),
                capture_quality=_required(p.get("capture_quality"), f"purpose {name!r} capture_quality"),
                quality=_quality(p.get("quality"), f"purpose {name!r} quality"),
            )
        method = str((raw.get("matching") or {}).get("method") or "dlib-resnet-128")
        return cls(raw=dict(raw), profiles=profiles, purposes=purposes, method=method)

    @classmethod
    def load(cls, path: Path) -> "Deployment":
        try:
            raw = json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise ConfigError(f"{path} is missing: is this a safeface workspace? Create one with `safeface init`.") from None
        except (OSError, ValueError) as exc:
            raise ConfigError(f"{path} is not readable JSON ({exc}).") from None
        return cls.from_dict(raw)

    def save(self, path: Path) -> None:
        # Atomic: a running process re-reading the deployment never sees half a file.
        write_atomic(path, json.dumps(self.raw, indent=2) + "\n")

    # -- fields -----------------------------------------------------------------------------
    def section(self, name: str) -> dict[str, Any]:
        v = self.raw.get(name)
        return dict(v) if isinstance(v, Mapping) else {}

    @property
    def deployment_id(self) -> str:
        """This deployment's id: the audience every token for it names, so that a token minted
        for another deployment is refused here. `safeface init` writes a random one."""
        v = self.raw.get("id")
        if isinstance(v, str) and v and v == v.strip() and len(v) <= MAX_ID_CHARS:
            return v
        raise ConfigError(f"deployment.json has no usable \"id\" (tokens name it as their audience): add a line such "
                          f"as \"id\": \"{new_deployment_id()}\" (random, unique to this deployment, at most "
                          f"{MAX_ID_CHARS} characters, no surrounding spaces) and mint new tokens for it.")

    @property
    def controller(self) -> dict[str, Any]:
        return self.section("controller")

    @property
    def notice(self) -> dict[str, Any]:
        return self.section("notice")

    @property
    def notice_hash(self) -> str:
        """SHA-256 of the notice as shown to people (canonical JSON). Bound into every consent:
        when the notice changes, consents given under the old one are stale (CN-02)."""
        canon = json.dumps(self.notice, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
        return hashlib.sha256(canon.encode("utf-8")).hexdigest()

    @property
    def location(self) -> dict[str, Any]:
        return self.section("location")

    @property
    def filing_threshold(self) -> int:
        try:
            return int(self.section("filing").get("threshold") or DEFAULT_FILING_THRESHOLD)
        except (TypeError, ValueError):
            raise ConfigError("filing.threshold must be a whole number of people.") from None

    @property
    def filing_reference(self) -> Optional[str]:
        ref = self.section("filing").get("reference")
        return str(ref) if ref else None

    @property
    def match_threshold(self) -> Optional[float]:
        t = self.section("matching").get("threshold")
        return float(t) if t is not None else None

    @property
    def roles(self) -> dict[str, tuple[str, ...]]:
        roles = self.section("roles")
        if not roles:
            return {"operator": ALL_OPERATIONS}
        return {str(k): tuple(str(o) for o in (v or [])) for k, v in roles.items()}

    @property
    def default_role(self) -> str:
        return str(self.raw.get("default_role") or next(iter(self.roles)))

    @property
    def bipa(self) -> dict[str, Any]:
        return self.section("bipa")

    def purpose(self, name: str) -> Optional[Purpose]:
        return self.purposes.get(name)

    def expiry(self, purpose: Purpose, start: dt.datetime) -> dt.datetime:
        """When a template enrolled at `start` for `purpose` must be gone.

        cn-2025/eu: start + the purpose's retention, or the purpose's end date if sooner (CN-08).
        us-bipa: min(purpose end, last interaction + 3 years) (US-01), plus the configured grace
        after the purpose end (Texas CUBI: at most 365 days, US-04)."""
        end = self.purpose_end(purpose, start)
        if "us-bipa" in self.profiles:
            grace = dt.timedelta(days=int(self.bipa.get("grace_days_after_purpose") or 0))
            return min(end + grace, start + dt.timedelta(days=BIPA_YEARS_DAYS))
        return end

    def purpose_end(self, purpose: Purpose, start: dt.datetime) -> dt.datetime:
        end = start + dt.timedelta(days=purpose.retention_days)
        if purpose.end_date is not None:
            end = min(end, dt.datetime.combine(purpose.end_date, dt.time(23, 59, 59), tzinfo=dt.timezone.utc))
        return end

    def config_digest(self) -> str:
        """What an impact assessment covers: purposes, method, location and profiles."""
        covered = {
            "purposes": sorted(self.purposes), "method": self.method,
            "location_class": self.location.get("class"), "profiles": list(self.profiles),
        }
        return hashlib.sha256(json.dumps(covered, sort_keys=True).encode()).hexdigest()

    # -- judging ----------------------------------------------------------------------------
    def findings(self, today: dt.date) -> list[Finding]:
        """Every configuration rule of the active profiles, passed or failed, in check order."""
        out: list[Finding] = []

        def add(concept: str, problem: Optional[str], ok_text: str) -> None:
            rule = rule_for(concept, self.profiles)
            if rule is not None:
                out.append(Finding(rule, problem is None, problem or ok_text))

        loc = self.location
        cls_ = str(loc.get("class") or "")
        kind = str(loc.get("kind") or "")
        private = cls_ in PRIVATE_SPACES or kind in PRIVATE_SPACES
        add("private-space",
            f"the location is a private space within a public place ({kind or cls_}); face recognition may "
            "not be installed there at all." if private else None,
            "the location is not a private space.")
        problem = None
        if not private and cls_ not in LOCATION_CLASSES:
            problem = (f"location.class is {cls_ or 'missing'}; set it to one of {', '.join(LOCATION_CLASSES)}.")
        elif cls_ == "public-place":
            not_safety = [p.name for p in self.purposes.values() if not p.public_safety]
            if not_safety:
                problem = (f"a device in a public place may serve public safety only; purposes {not_safety} are "
                           "not marked public_safety.")
            elif not str(loc.get("capture_area") or "").strip():
                problem = "a device in a public place needs location.capture_area describing the area it captures."
            elif loc.get("signage_attested") is not True:
                problem = "a device in a public place needs conspicuous signs: set location.signage_attested to true once they are up."
        add("public-place", problem, f"location class {cls_}.")

        ctrl = self.controller
        problem = None
        if not str(ctrl.get("name") or "").strip() or not str(ctrl.get("contact") or "").strip():
            problem = "controller.name and controller.contact must say who processes faces and how to reach them."
        elif not self.purposes:
            problem = "the deployment declares no purpose; add one under 'purposes' with its necessity rationale."
        else:
            bad = [p.name for p in self.purposes.values() if not p.necessity.strip()]
            if bad:
                problem = f"purposes {bad} have no necessity rationale; say why face recognition is necessary for each."
        add("purpose", problem, f"{len(self.purposes)} purpose(s), each with a necessity rationale.")

        missing = [f for f in NOTICE_FIELDS if not str(self.notice.get(f) or "").strip()]
        add("notice", f"the notice lacks {missing}; people must be told all of {list(NOTICE_FIELDS)}." if missing else None,
            f"notice {self.notice.get('version', '?')} with all fields, hash {self.notice_hash[:12]}.")

        bad_ret = [p.name for p in self.purposes.values() if not 0 < p.retention_days <= MAX_RETENTION_DAYS]
        add("retention", f"purposes {bad_ret} need a retention period of 1 to {MAX_RETENTION_DAYS} days "
            "(retention_days)." if bad_ret else None,
            "every purpose has a retention period.")
        if "us-bipa" in self.profiles:
            problem = None
            if not str(self.bipa.get("retention_schedule_url") or "").strip():
                problem = "BIPA 15(a) needs a public written retention schedule: set bipa.retention_schedule_url."
            out.append(Finding("US-01", problem is None, problem or "public retention schedule published."))
            grace = int(self.bipa.get("grace_days_after_purpose") or 0)
            texas = bool(self.bipa.get("texas"))
            limit = TEXAS_MAX_GRACE_DAYS if texas else None
            add("texas", f"bipa.grace_days_after_purpose is {grace}; Texas allows at most {limit} days after the "
                "purpose ends." if limit is not None and grace > limit else None,
                f"grace after purpose end {grace} days" + (" (Texas limit 365)." if texas else "."))

        add("assessment", self._assessment_problem(today), "impact assessment current and covering this configuration.")

        no_alt = [p.name for p in self.purposes.values() if not p.alternatives and not p.mandatory_by_law]
        add("alternative", f"purposes {no_alt} register no non-biometric alternative; people who refuse face "
            "recognition need one (e.g. a PIN, a card, a staff check)." if no_alt else None,
            "every purpose has a non-biometric alternative.")

        # PA-01, PA-02: judged only where a purpose asks; the guard checks every call (safeface/capture).
        for concept, field_, what in (("liveness", "liveness", "fresh signed liveness evidence bound to the probe's face"),
                                      ("capture-quality", "capture_quality", "an enrolment capture above the quality floor")):
            asking = [p.name for p in self.purposes.values() if getattr(p, field_)]
            if asking:
                add(concept, None, f"purposes {asking} require {what}")

        roles = self.roles
        unknown = sorted({o for ops in roles.values() for o in ops} - set(ALL_OPERATIONS))
        add("security", f"roles name unknown operations {unknown}." if unknown else None,
            f"roles: {', '.join(sorted(roles))}.")
        return out

    def _assessment_problem(self, today: dt.date) -> Optional[str]:
        a = self.section("assessment")
        if not str(a.get("reference") or "").strip() or not a.get("date"):
            return "no impact assessment is recorded: set assessment.reference and assessment.date before processing."
        try:
            done = _date(a.get("date"), "assessment.date")
            reviewed = _date(a.get("reviewed"), "assessment.reviewed")
            go_live = _date(self.raw.get("go_live"), "go_live")
        except ConfigError as exc:
            return str(exc)
        if done is None:
            return "no impact assessment date is recorded: set assessment.date before processing."
        if done > today:
            return f"the impact assessment is dated {done}, in the future; processing may start only after it."
        if go_live is not None and done > go_live:
            return f"the impact assessment ({done}) postdates go-live ({go_live}); it must come before processing."
        last = max(done, reviewed or done)
        if (today - last).days > ASSESSMENT_REVIEW_DAYS:
            return f"the impact assessment was last reviewed on {last}; it must be reviewed every year."
        covers = a.get("covers")
        if covers != self.config_digest():
            return ("the impact assessment does not cover the current configuration (purposes, method, location or "
                    "profiles changed); redo it and record it with `safeface assess`.")
        return None

    def problems(self, today: dt.date) -> list[Finding]:
        return [f for f in self.findings(today) if not f.ok]


def _provision(value: Any) -> Optional[str]:
    """CN-11's exemption holds only when it names the provision: `true` or blank names none."""
    return value.strip() if isinstance(value, str) and value.strip() else None


def _required(value: Any, what: str) -> bool:
    if value in (None, "", "none"):
        return False
    if value == "required":
        return True
    raise ConfigError(f"{what} must be \"required\" or \"none\", not {value!r}.")


def _quality(value: Any, what: str) -> tuple[tuple[str, float], ...]:
    """A purpose's quality floors, checked against the known names now (a misspelt floor must
    never fall back silently to the default)."""
    if value in (None, {}):
        return ()
    from ..capture.quality import QualityThresholds

    QualityThresholds.from_mapping(value, what)
    return tuple(sorted((str(k), float(v)) for k, v in value.items()))


def _date(value: Any, what: str) -> Optional[dt.date]:
    if value in (None, ""):
        return None
    try:
        return dt.date.fromisoformat(str(value))
    except ValueError:
        raise ConfigError(f"{what} must be a date YYYY-MM-DD, not {value!r}.") from None


def new_deployment_id() -> str:
    return str(uuid.uuid4())


def demo_config(today: dt.date, profiles: tuple[str, ...] = (DEFAULT_PROFILE,),
                deployment_id: Optional[str] = None) -> dict[str, Any]:
    """A complete sample deployment with the purpose `demo`, valid under every profile."""
    raw: dict[str, Any] = {
        "format": FORMAT,
        "id": deployment_id or new_deployment_id(),
        "name": "safeface demo deployment (sample data, not for production)",
        "profiles": list(profiles),
        "go_live": today.isoformat(),
        "controller": {"name": "Demo Operator Ltd.", "contact": "privacy@demo.example",
                       "address": "1 Example Road", "dpo": "Data Protection Officer, dpo@demo.example"},
        "purposes": {
            "demo": {
                "description": "try safeface on sample photographs",
                "necessity": "demonstrates the SDK on consenting sample subjects; no other method shows it",
                "retention_days": 30,
                "public_safety": False,
                "alternatives": ["PIN code at the counter", "identity check by staff"],
            }
        },
        "location": {"class": "premises", "description": "a developer's workstation", "capture_area": "",
                     "signage_attested": False},
        "notice": {
            "version": "demo-1",
            "controller": "Demo Operator Ltd., privacy@demo.example",
            "purpose": "demo: trying safeface on sample photographs",
            "method": "a photo of your face is turned into a protected template and compared with templates you enrolled",
            "retention": "30 days from enrolment, or until you withdraw consent",
            "necessity": "the demonstration needs a face to show enrolment and matching",
            "effects": "a wrong match or non-match is possible; the PIN alternative is always available",
            "rights": "withdraw consent, erase your data, see your records: privacy@demo.example",
            "text": "We use face recognition for the demo. You can refuse and use a PIN instead.",
        },
        "accessibility": {"attested": True, "note": "staff assist elderly and disabled people; PIN alternative"},
        "identity_service": {"name": "none (demo)", "note": "CN-12: national identity authentication not used"},
        "filing": {"threshold": DEFAULT_FILING_THRESHOLD, "reference": None},
        "matching": {"engine": None, "method": "dlib-resnet-128", "threshold": None},
        "roles": {"operator": list(ALL_OPERATIONS), "kiosk": ["verify", "identify"], "auditor": ["report"]},
        "default_role": "operator",
        "bipa": {"retention_schedule_url": "https://demo.example/biometric-retention", "texas": False,
                 "grace_days_after_purpose": 0},
        "consent_screen": {"version": "demo-screen-1"},
        "assessment": {"reference": "PIA-DEMO-1", "date": today.isoformat(), "reviewed": None, "covers": None},
    }
    dep = Deployment.from_dict(raw)
    raw["assessment"]["covers"] = dep.config_digest()
    return raw


def blank_config(profiles: tuple[str, ...] = (DEFAULT_PROFILE,)) -> dict[str, Any]:
    """A configuration for an operator to fill in; it refuses every call until it is complete."""
    return {
        "format": FORMAT,
        "id": new_deployment_id(),
        "name": "",
        "profiles": list(profiles),
        "go_live": None,
        "controller": {"name": "", "contact": "", "address": "", "dpo": ""},
        "purposes": {
            "PURPOSE-NAME": {"description": "", "necessity": "", "retention_days": 0, "end_date": None,
                             "public_safety": False, "alternatives": [], "mandatory_by_law": None,
                             "liveness": "none", "capture_quality": "none"}
        },
        "location": {"class": "premises|personal-device|public-place", "kind": "", "description": "",
                     "capture_area": "", "signage_attested": False},
        "notice": {f: "" for f in ("version", *NOTICE_FIELDS, "text")},
        "accessibility": {"attested": False, "note": ""},
        "identity_service": {"name": "", "note": ""},
        "filing": {"threshold": DEFAULT_FILING_THRESHOLD, "reference": None},
        "matching": {"engine": None, "method": "dlib-resnet-128", "threshold": None},
        "roles": {"operator": list(ALL_OPERATIONS)},
        "default_role": "operator",
        "bipa": {"retention_schedule_url": "", "texas": False, "grace_days_after_purpose": 0},
        "consent_screen": {"version": ""},
        "assessment": {"reference": "", "date": None, "reviewed": None, "covers": None},
    }


def working_days_after(start: dt.date, days: int) -> dt.date:
    """The date `days` working days (Monday to Friday) after `start`. Public holidays are not
    known to the SDK; the report says so."""
    d = start
    left = days
    while left > 0:
        d += dt.timedelta(days=1)
        if d.weekday() < 5:
            left -= 1
    return d


__all__ = ["Deployment", "Finding", "Purpose", "demo_config", "blank_config", "new_deployment_id", "working_days_after",
           "PRIVATE_SPACES", "LOCATION_CLASSES", "NOTICE_FIELDS"]
