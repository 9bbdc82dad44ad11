"""A deployment: who processes faces, for which purposes, where, under which notice and
assessment, and under which policy profiles. Read from the workspace's ``deployment.json``.

This module reads and holds the configuration; validation.py judges it (a deployment with any
failing enforced rule cannot process); samples.py writes the blank and demo configurations.

Fields are read as JSON writes them, never coerced: a flag is true or false, a list is a list
of strings, a number of days a whole number. Coercion reads "false" as true, and the string
"none" as the four alternatives n, o, n, e; a field written otherwise is refused (ConfigError)
with what to write instead.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import os
import unicodedata
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Mapping, Optional

from ...atomicfile import DISK_FAILED, write_atomic
from ...errors import ConfigError, ImageError
from ...jsondepth import TooDeep, loads
from ...jsonnum import finite_number
from ...lookalike import compatibility_char, lookalike_scripts, mark_that_draws_nothing, mixed_word, skeletons
from ...regularfile import open_regular
from ...sqlite_store import disk_failed
from ..rules import DEFAULT_PROFILE, check_profiles
from .floors import EU_GUARDIAN_AGES, GUARDIAN_AGES, guardian_age

if TYPE_CHECKING:
    from .validation import Finding

FORMAT = "safeface-deployment/1"
NOTICE_FIELDS = ("controller", "purpose", "method", "retention", "necessity", "effects", "rights")
LOCATION_CLASSES = ("personal-device", "premises", "public-place")
ALL_OPERATIONS = ("enroll", "verify", "identify", "erase", "export", "analyze", "revoke", "purge", "report",
                  "rekey", "apikey", "track")
DEFAULT_FILING_THRESHOLD = 100_000
# Far above any deployment file (a few KB; tens with many roles): a sparse file of gigabytes at
# its name would be read whole at every call.
MAX_DEPLOYMENT_BYTES = 1 << 20
# Far deeper than any deployment (4 levels; an operator's notes get room): counted before parsing,
# so a file nested past Python's stack is refused alike from any caller (jsondepth.py).
MAX_DEPLOYMENT_DEPTH = 64
# CN-17 (Measures art. 15): filing is due at 100,000 people; a deployment may file earlier, never later.
CN_MAX_FILING_THRESHOLD = 100_000
# The names the matching section may hold: any other ("threshоld" with a Cyrillic о, a misspelt
# masked_threshold) would be read by nobody, leaving a default in force while the file shows a bar.
MATCHING_KEYS = ("engine", "method", "dim", "threshold", "masked_threshold", "both_masked_threshold")
BIPA_YEARS_DAYS = 3 * 365
TEXAS_MAX_GRACE_DAYS = 365
ASSESSMENT_REVIEW_DAYS = 366
MAX_RETENTION_DAYS = 36_500
MAX_ID_CHARS = 128
# Bumped whenever the digest covers more fields: an assessment recorded by an older safeface does
# not cover what it never saw.
DIGEST_VERSION = 4


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

    def end(self) -> Optional[dt.datetime]:
        """The last moment of the purpose (the end of its end date, UTC), or None if open-ended."""
        if self.end_date is None:
            return None
        return dt.datetime.combine(self.end_date, dt.time(23, 59, 59), tzinfo=dt.timezone.utc)


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
        folded: dict[str, str] = {}
        for name, p in pconf.items():
            _check_name("purpose", name, folded)
            if not isinstance(p, Mapping):
                raise ConfigError(f"purpose {name!r} must be an object.")
            what = f"purposes.{name}"
            capture_quality = _required(p.get("capture_quality"), f"purpose {name!r} capture_quality")
            purposes[str(name)] = Purpose(
                name=str(name), description=_text(p.get("description"), f"{what}.description"),
                necessity=_text(p.get("necessity"), f"{what}.necessity"),
                retention_days=_whole(p.get("retention_days"), f"{what}.retention_days", "days"),
                end_date=_date(p.get("end_date"), f"purpose {name!r} end_date"),
                public_safety=_flag(p.get("public_safety"), f"{what}.public_safety"),
                alternatives=tuple(a for a in _strings(p.get("alternatives"), f"{what}.alternatives",
                                                       '["PIN code at the counter"]') if a.strip()),
                mandatory_by_law=_provision(p.get("mandatory_by_law")),
                liveness=_required(p.get("liveness"), f"purpose {name!r} liveness"),
                capture_quality=capture_quality,
                quality=_quality(p.get("quality"), capture_quality, f"purpose {name!r}"),
            )
        _check_sections(raw)
        method = str((raw.get("matching") or {}).get("method") or "dlib-resnet-128")
        return cls(raw=dict(raw), profiles=profiles, purposes=purposes, method=method)

    @classmethod
    def load(cls, path: Path) -> "Deployment":
        return cls.load_bytes(cls.read_file(path), path)

    @staticmethod
    def read_file(path: Path) -> bytes:
        """The bytes of the deployment file `path` (a link to a regular file is followed);
        ConfigError unless it is a regular file of at most MAX_DEPLOYMENT_BYTES. A FIFO put in
        its place made every reading wait for ever: each call of an open workspace, erasures
        included, which go on under the last reading when the file no longer loads."""
        try:
            with open_regular(path, str(path)) as fh:
                size = os.fstat(fh.fileno()).st_size  # read by its size: each call reads the file
                data = b"" if size > MAX_DEPLOYMENT_BYTES else fh.read(size + 1)
        except ImageError as exc:
            if not os.path.lexists(path):
                raise ConfigError(f"{path} is missing: is this a safeface workspace? Create one with "
                                  "`safeface init`.") from None
            raise ConfigError(f"{exc} The deployment file must be a regular file (or a link to one); restore "
                              "it.") from None
        except OSError as exc:
            if exc.errno in DISK_FAILED:  # the device failed, not the file: no restore is called for
                raise disk_failed(str(path), exc.strerror or "I/O error", path) from None
            raise ConfigError(f"{path} could not be read ({exc.strerror}); restore it.") from None
        if size > MAX_DEPLOYMENT_BYTES or len(data) > MAX_DEPLOYMENT_BYTES:
            raise ConfigError(f"{path} is larger than {MAX_DEPLOYMENT_BYTES >> 20} MiB, so no deployment file; "
                              "restore it.")
        return data

    @classmethod
    def load_bytes(cls, data: bytes, path: Path) -> "Deployment":
        """The deployment in `data`, the bytes read from `path` (named in errors): a caller that
        digests the file judges the very bytes it digested."""
        return cls.from_dict(cls.parse(data, path))

    @staticmethod
    def parse(data: bytes, path: Path) -> Any:
        """The JSON value in `data`, the bytes of `path` (named in errors): ConfigError for text
        that is no JSON, a member written twice, or nesting deeper than any deployment (a broken
        edit as any other, which erasure must outlive)."""
        try:
            return loads(data, MAX_DEPLOYMENT_DEPTH, object_pairs_hook=_members_once)
        except TooDeep:
            raise ConfigError(f"{path} is not readable JSON (nested deeper than any deployment).") from None
        except ValueError as exc:  # UnicodeDecodeError and JSONDecodeError alike
            raise ConfigError(f"{path} is not readable JSON ({exc}).") from None

    def save(self, path: Path) -> None:
        # Atomic: a running process re-reading the deployment never sees half a file.
        write_atomic(path, self.text())

    def text(self) -> str:
        """The file's text, as `save` writes it."""
        return json.dumps(self.raw, indent=2) + "\n"

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
        """People stored before filing is due (CN-17). Missing: the default; otherwise a whole
        number of at least 1 (validation caps it under cn-2025)."""
        value = self.section("filing").get("threshold")
        if value is None:
            return DEFAULT_FILING_THRESHOLD
        if not finite_number(value) or value != int(value) or value < 1:
            raise ConfigError(f"filing.threshold must be a whole number of people of at least 1, not {value!r}.")
        return int(value)

    @property
    def filing_reference(self) -> Optional[str]:
        ref = self.section("filing").get("reference")
        return str(ref) if ref else None

    @property
    def match_threshold(self) -> Optional[float]:
        """The cosine score from which two faces match, or None for the engine's default. A value
        outside (0, 1] would let strangers match (-1, 0, NaN) or nobody (2), so it is refused."""
        return self._score_threshold("threshold")

    @property
    def masked_threshold(self) -> Optional[float]:
        """The threshold of the masked path (a masked probe against the visible-region templates
        of bare enrolments), or None for the engine's default; (0, 1] as the plain one."""
        return self._score_threshold("masked_threshold")

    @property
    def both_masked_threshold(self) -> Optional[float]:
        """The threshold of a masked probe against the visible-region templates of masked
        enrolments (two masked strangers look more alike), or None for the engine's default;
        (0, 1] as the plain one."""
        return self._score_threshold("both_masked_threshold")

    def _score_threshold(self, key: str) -> Optional[float]:
        """matching.<key>: a cosine score in (0, 1], or None (null or absent) for the default."""
        t = self.section("matching").get(key)
        if t is None:
            return None
        if not finite_number(t) or not 0 < t <= 1:
            raise ConfigError(f"matching.{key} must be a number in (0, 1] (or null for the default), not {t!r}.")
        return float(t)

    @property
    def guardian_age(self) -> int:
        """Below this age consent comes from a parent or guardian, whatever the profiles (floors.py);
        eu takes minors.eu_guardian_age (13 to 16, default 16)."""
        eu = self.section("minors").get("eu_guardian_age", GUARDIAN_AGES["eu"])
        if isinstance(eu, bool) or not isinstance(eu, int) or eu not in EU_GUARDIAN_AGES:
            raise ConfigError(f"minors.eu_guardian_age must be a whole number from 13 to 16 (GDPR art. 8), not {eu!r}.")
        return guardian_age(self.profiles, eu)

    @property
    def roles(self) -> dict[str, tuple[str, ...]]:
        return roles_of(self.section("roles"))

    @property
    def default_role(self) -> str:
        return default_role_of(self.raw.get("default_role"), self.roles)

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
        last = purpose.end()
        return end if last is None else min(end, last)

    def purge_times(self) -> dict[str, int]:
        """When each purpose with an end date has its last template purged (its end, plus the
        us-bipa grace), in Unix seconds: what an assessment records, so that an end date later
        removed or moved by hand still purges at the time assessed."""
        out: dict[str, int] = {}
        for p in self.purposes.values():
            end = p.end()
            if end is None:
                continue
            try:
                out[p.name] = int(self.expiry(p, end).timestamp())
            except OverflowError:  # a retention past the calendar (refused by validation): never ends
                continue
        return out

    def config_digest(self) -> str:
        """The digest of `covered_settings`, which an assessment records as `covers`."""
        canon = json.dumps(self.covered_settings(), sort_keys=True, separators=(",", ":"), ensure_ascii=False,
                           default=str)
        return hashlib.sha256(canon.encode("utf-8")).hexdigest()

    def covered_settings(self) -> dict[str, Any]:
        """What an impact assessment covers: every setting that can weaken protection. Changing
        any of them (a longer retention, a later end date, a lower matching threshold, a higher
        filing threshold, another location, wider roles, another profile or purpose, another
        deployment id, a witness removed from the audit section, the PAD model's veto, go-live)
        leaves the assessment stale until it is redone (`safeface assess`). The notice has its own
        hash (CN-02); the filing reference, recorded after filing, is deliberately not covered, nor
        are the storage backend (`safeface storage migrate` moves it; the store is checked against
        the audit log) and the consent screen's version (recorded in each token, CN-13)."""
        covered: dict[str, Any] = {
            "digest": DIGEST_VERSION,
            "profiles": list(self.profiles),
            "purposes": self.raw.get("purposes") or {},
            "method": self.method,
            # The engine is left out: "dlib" and "onnx" run the same networks (same templates).
            "matching": {k: v for k, v in self.section("matching").items() if k != "engine"},
            "filing_threshold": self.section("filing").get("threshold"),
            "location": self.location,
            "roles": self.section("roles"),
            # The role a caller gets without naming one: when the file names none it is the first
            # role listed, an order a sorted digest would not see.
            "default_role": self.default_role,
            "bipa": self.bipa,
            "minors": self.section("minors"),
            # Tokens are bound to this id (their audience): borrowing another deployment's id
            # would accept its tokens. A witness dropped from the audit section weakens the log.
            "id": self.raw.get("id"),
            "audit": self.section("audit"),
            # The PAD model's veto (its file, pinned hash, threshold, live output) and go-live,
            # which the assessment must predate.
            "liveness_model": self.raw.get("liveness_model"),
            "go_live": self.raw.get("go_live"),
        }
        plain: dict[str, Any] = json.loads(json.dumps(covered, default=str))  # JSON values, as a file holds them
        return plain

    # -- judging (validation.py) ------------------------------------------------------------
    def findings(self, today: dt.date) -> list["Finding"]:
        """Every configuration rule of the active profiles, passed or failed, in check order."""
        from .validation import findings

        return findings(self, today)

    def problems(self, today: dt.date) -> list["Finding"]:
        return [f for f in self.findings(today) if not f.ok]


def roles_of(section: Mapping[str, Any]) -> dict[str, tuple[str, ...]]:
    """The roles a "roles" section defines (none: one operator who may do everything)."""
    if not section:
        return {"operator": ALL_OPERATIONS}
    return {str(k): tuple(str(o) for o in (v or [])) for k, v in section.items()}


def default_role_of(named: Any, roles: Mapping[str, Any]) -> str:
    return str(named or next(iter(roles)))


def new_deployment_id() -> str:
    return str(uuid.uuid4())


def _check_name(what: str, name: Any, folded: dict[str, str]) -> None:
    """A purpose or role name a person reading the assessment, a consent, the console or the
    audit log cannot take for another: no invisible, control or compatibility characters, no
    Latin mixed with a look-alike script, and no two names of one kind that print alike (the
    same but for case, spaces, a Unicode dash or letters of another script drawn as Latin ones:
    `folded` holds the readings of the names seen so far). Other scripts (a Chinese name) are
    fine."""
    if not isinstance(name, str) or not name or name != name.strip() or len(name) > 128:
        raise ConfigError(f"{what} name {name!r} must be 1-128 characters with no spaces at either end.")
    if compatibility_char(name) is not None or any(unicodedata.category(c)[0] in "CZ" and c != " " for c in name):
        raise ConfigError(f"{what} name {ascii(name)} holds invisible, control or compatibility characters; "
                          f"write it in plain characters.")
    scripts = lookalike_scripts(name)
    if scripts:
        raise ConfigError(f"{what} name {ascii(name)} mixes Latin letters with {'/'.join(scripts)} "
                          f"ones that look alike; write it in one script.")
    mixed = mixed_word(name)  # a Greek "Γ" in a Cyrillic word draws "Гость", which skeletons keep apart
    if mixed is not None:
        raise ConfigError(f"{what} name {ascii(name)}: the word {ascii(mixed[0])} mixes "
                          f"{' and '.join(s.title() for s in mixed[1])} letters; write each word in one script.")
    # Only the checks that no honest name trips: a deployment that loaded before must load
    # after an upgrade (a purpose "Giriş nəzarəti" or "door-٣" is someone's real name).
    odd = mark_that_draws_nothing(name)
    if odd is not None:
        raise ConfigError(f"{what} name {ascii(name)} holds U+{ord(odd):04X}, which draws nothing new or makes "
                          f"another letter; write it in plain letters.")
    readings = {name.casefold()} | {" ".join(r.split()) for r in skeletons(name)}
    twin = next((folded[r] for r in readings if r in folded), None)
    if twin is not None:
        raise ConfigError(f"{what} names {ascii(twin)} and {ascii(name)} print alike (case, spaces, dashes or "
                          "letters of another script); use one name, or two that read apart.")
    folded.update((r, name) for r in readings)


def _check_sections(raw: Mapping[str, Any]) -> None:
    """The flags, lists and numbers outside the purposes, checked as they are written, so that
    every reader of the raw sections (validation, the guard, the report) sees what they say."""
    location, bipa, accessibility = (raw.get(k) for k in ("location", "bipa", "accessibility"))
    # What people are told and who answers them: text, or `true` would pass the rules as written.
    notice, controller, filing = (raw.get(k) for k in ("notice", "controller", "filing"))
    if isinstance(notice, Mapping):
        for f in NOTICE_FIELDS:
            _text(notice.get(f), f"notice.{f}")
    if isinstance(controller, Mapping):
        for f in ("name", "contact", "address", "dpo"):
            _text(controller.get(f), f"controller.{f}")
    if isinstance(filing, Mapping):
        _text(filing.get("reference"), "filing.reference")
    if isinstance(location, Mapping):
        _flag(location.get("signage_attested"), "location.signage_attested")
    if isinstance(bipa, Mapping):
        _flag(bipa.get("texas"), "bipa.texas")
        _whole(bipa.get("grace_days_after_purpose"), "bipa.grace_days_after_purpose", "days")
    if isinstance(accessibility, Mapping):
        _flag(accessibility.get("attested"), "accessibility.attested")
    matching = raw.get("matching")
    if matching is not None and not isinstance(matching, Mapping):
        # Read as {} by section(), but `method` and the open read it as an object: a bare error
        # there stopped even an open workspace's erasures.
        raise ConfigError(f"matching must be an object, e.g. {{\"threshold\": 0.95}}, not {matching!r}.")
    unknown = sorted(repr(k) for k in (matching or {}) if k not in MATCHING_KEYS)
    if unknown:
        raise ConfigError(f"matching names {', '.join(unknown)}, which no setting reads (its default would apply): "
                          f"write one of {', '.join(MATCHING_KEYS)}.")
    roles = raw.get("roles")
    if roles is not None and not isinstance(roles, Mapping):
        # Read as no section at all, a list of roles would be one operator allowed everything.
        raise ConfigError(f"roles must be an object naming each role's operations, e.g. {{\"kiosk\": [\"verify\"]}}, "
                          f"not {roles!r}.")
    seen: dict[str, str] = {}
    for role, ops in (roles or {}).items():
        # Shown in the console, API key listings and audit notes as written: a look-alike of a
        # weaker role ("аuditor" with a Cyrillic а, "auditor\u200b") would pass for it.
        _check_name("role", role, seen)
        _strings(ops, f"roles.{role}", '["verify", "identify"]')


def _flag(value: Any, what: str) -> bool:
    """A true/false field; absent or null is false. bool() would take the string "false" as true."""
    if value is None:
        return False
    if not isinstance(value, bool):
        raise ConfigError(f"{what} must be true or false, written without quotes (a JSON boolean), not {value!r}.")
    return value


def _strings(value: Any, what: str, example: str) -> tuple[str, ...]:
    """A list of strings; absent or null is none. tuple() would make "none" four entries."""
    if value is None:
        return ()
    if not isinstance(value, (list, tuple)) or not all(isinstance(v, str) for v in value):
        raise ConfigError(f"{what} must be a list of strings, e.g. {example} ([] for none), not {value!r}.")
    return tuple(value)


def _text(value: Any, what: str) -> str:
    """A text field; absent or null is empty. str() would take a list or true as a rationale."""
    if value is None:
        return ""
    if not isinstance(value, str):
        raise ConfigError(f"{what} must be text in quotes, not {value!r}.")
    return value


def _whole(value: Any, what: str, unit: str) -> int:
    """A whole number; absent or null is 0 (which validation judges where it matters). A string,
    a fraction or true is refused: int() reads "30" and true as numbers and cuts 30.9 to 30."""
    if value is None:
        return 0
    if not finite_number(value) or value != int(value):
        raise ConfigError(f"{what} must be a whole number of {unit}, written without quotes, not {value!r}.")
    return int(value)


def _provision(value: Any) -> Optional[str]:
    """CN-11's exemption holds only when it names the provision: `true` or blank names none."""
    return value.strip() if isinstance(value, str) and value.strip() else None


def _members_once(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    """A JSON object of deployment.json, each name once: with a name twice, a person (or another
    tool) reading the file takes the first value and this parser the last, so a reviewer could
    see a mask bar of 0.9 where 1 applies."""
    seen: dict[str, Any] = {}
    for name, value in pairs:
        if name in seen:
            raise ConfigError(f"deployment.json names {name!r} twice in one object; keep the one value meant "
                              f"and delete the other.")
        seen[name] = value
    return seen


def _required(value: Any, what: str) -> bool:
    if value in (None, "", "none"):
        return False
    if value == "required":
        return True
    raise ConfigError(f"{what} must be \"required\" or \"none\", not {value!r}.")


def _quality(value: Any, required: bool, purpose: str) -> tuple[tuple[str, float], ...]:
    """A purpose's quality floors, checked against the known names now (a misspelt floor must
    never fall back silently to the default), and only where capture quality is required: floors
    no capture is judged by (a max_mask_confidence meant to refuse masked references) would read
    as a protection that is not there."""
    if value in (None, {}):
        return ()
    from ...capture.quality import QualityThresholds

    QualityThresholds.from_mapping(value, f"{purpose} quality")
    if not required:
        raise ConfigError(f"{purpose} sets quality floors, but its capture_quality is not \"required\", so no "
                          f"enrolment is judged by them (PA-02); set \"capture_quality\": \"required\" or "
                          f"remove \"quality\".")
    return tuple(sorted((str(k), float(v)) for k, v in value.items()))


def _date(value: Any, what: str) -> Optional[dt.date]:
    if value in (None, ""):
        return None
    try:
        return dt.date.fromisoformat(str(value))
    except ValueError:
        raise ConfigError(f"{what} must be a date YYYY-MM-DD, not {value!r}.") from None
