"""The impact assessment in deployment.json, sealed and named in the audit log.

`safeface assess` (it needs the passphrase) writes the section with the settings it covers and
a MAC under a key derived from the keyring, and names it in the audit log; a demo workspace's
creation does the same. A workspace processes only under a sealed assessment that the log names
last: a section written or edited by hand fails its seal, and one restored with an older copy
of the file is not the newest named, so either refuses every call."""

from __future__ import annotations

import hashlib
import hmac
import json
from typing import Any, Mapping, Optional

from ..errors import ConfigError
from ..hashing import same_digest
from ..policy.deployment.model import Deployment, default_role_of, roles_of

# The entries that name an assessment: the newest of them is the one in force.
ASSESSMENT_OPERATIONS = ("assessment", "init")
# What the seal binds; the `covered` settings let the next assessment say what changed since.
SEALED_FIELDS = ("reference", "date", "reviewed", "covers", "covered")
MAX_REFERENCE = 200
ENDS = "; purposes end "
ROLES = "; roles "


def assessment_note(section: Mapping[str, Any], *, ends: bool = True) -> str:
    """What an entry says of the assessment in deployment.json's "assessment" section: its
    reference, date, the configuration digest it covers and, once reviewed, the review's date;
    when its purposes end, when each one's templates are purged (`ends`: an older safeface's
    entries say nothing of it)."""
    reference = str(section.get("reference") or "")[:MAX_REFERENCE]
    note = f"impact assessment {reference!r} of {section.get('date')} covers configuration {section.get('covers')}"
    reviewed = section.get("reviewed")
    if reviewed:
        note += f"; reviewed {str(reviewed)[:40]}"
    covered = section.get("covered")
    times = _purge_times(covered) if ends else {}
    if times:  # before the roles, which are read as the note's last part
        note += ENDS + json.dumps(times, sort_keys=True, separators=(",", ":"), ensure_ascii=True)
    if isinstance(covered, dict):  # so a workspace can judge roles by it while the file is not in force
        roles = {"roles": covered.get("roles") or {}, "default_role": covered.get("default_role")}
        note += ROLES + json.dumps(roles, sort_keys=True, separators=(",", ":"), ensure_ascii=True, default=str)
    return note


def _purge_times(covered: Any) -> dict[str, int]:
    if not isinstance(covered, dict):
        return {}
    raw = {k: covered.get(k) for k in ("profiles", "purposes", "bipa") if covered.get(k) is not None}
    try:
        return Deployment.from_dict(raw).purge_times()
    except ConfigError:  # what was assessed always loaded; an older digest's settings may not
        return {}


def _json_tail(text: str, marker: str) -> Optional[tuple[Any, int]]:
    """The JSON object after the `marker` whose JSON runs exactly to the end of `text`, and where
    that marker starts; None if none does. Names, roles and the reference are free text and may
    spell a marker: only the part that ends the text is the note's own."""
    at = text.rfind(marker)
    while at >= 0:
        try:
            got, stop = json.JSONDecoder().raw_decode(text, at + len(marker))
        except ValueError:
            got, stop = None, -1
        if stop == len(text) and isinstance(got, dict):
            return got, at
        at = text.rfind(marker, 0, at)
    return None


def _parts(note: str) -> tuple[Optional[dict[str, Any]], Optional[dict[str, Any]]]:
    """The purge times and the roles a note records (each None when it records none): the roles
    last, the times just before them."""
    roles = _json_tail(note, ROLES)
    head = note[:roles[1]] if roles is not None else note
    ends = _json_tail(head, ENDS)
    return (ends[0] if ends is not None else None), (roles[0] if roles is not None else None)


def recorded_purge_times(note: Optional[str]) -> dict[str, int]:
    """When the purposes of the assessment an entry's note names end (their templates purged),
    in Unix seconds, by purpose name: empty where none ends or the note does not say."""
    got = _parts(note or "")[0] or {}
    return {str(k): v for k, v in got.items() if isinstance(v, int) and not isinstance(v, bool)}


def recorded_roles(note: Optional[str]) -> Optional[tuple[dict[str, tuple[str, ...]], str]]:
    """The roles and default role an assessment entry's note records, or None (none recorded)."""
    got = _parts(note or "")[1]
    if got is None:
        return None
    try:
        roles = roles_of(got["roles"] if isinstance(got["roles"], dict) else {})
        return roles, default_role_of(got.get("default_role"), roles)
    except (ValueError, KeyError, TypeError, AttributeError):
        return None


def names_an_assessment(note: Optional[str]) -> bool:
    """Whether an entry of ASSESSMENT_OPERATIONS names an assessment at all (a workspace created
    without one has an "init" entry that names none)."""
    return "impact assessment " in (note or "")


def assessment_recorded(section: Mapping[str, Any], newest_note: Optional[str]) -> bool:
    """Whether the newest note naming an assessment names this one: the whole note of an
    "assessment" entry, or the last part of a demo workspace's creation entry."""
    note = str(newest_note or "")
    for own in (assessment_note(section), assessment_note(section, ends=False)):  # recorded before ends were
        if note == own or note.endswith("; " + own):
            return True
    return False


def shown_assessment(section: Mapping[str, Any]) -> str:
    """How a message names the assessment: its reference (escaped where not ASCII) and date."""
    ref = str(section.get("reference") or "")[:80]
    named = repr(ref) if ref.isascii() else f"{ref!r} ({ascii(ref)})"
    return f"({named} of {section.get('date')})"


def unrecorded_problem(key: bytes, section: Mapping[str, Any], newest_note: Optional[str]) -> Optional[str]:
    """Why the assessment section is not the sealed one the log names last (`newest_note`: the
    newest entry of ASSESSMENT_OPERATIONS), or None; None too where neither names one (a new
    workspace, which its own findings hold back)."""
    if not (section.get("covers") or names_an_assessment(newest_note)):
        return None
    shown = shown_assessment(section)
    if not seal_holds(key, section):
        return (f"the impact assessment in deployment.json {shown} is not sealed by this workspace's keys: it was "
                "written, edited or removed without the passphrase, or by a safeface that did not seal it. Record "
                "it with `safeface assess` (needs the passphrase).")
    if not assessment_recorded(section, newest_note):
        return (f"the impact assessment in deployment.json {shown} is not the one this workspace's audit log names "
                "last: deployment.json was restored from an older copy, or `safeface assess` stopped before its "
                "audit entry. Restore the current deployment.json, or record the assessment with `safeface assess` "
                "(needs the passphrase).")
    return None


def audit_section_problem(key: bytes, deployment: Deployment, newest_note: Optional[str]) -> Optional[str]:
    """Why the audit section (its witnesses) cannot be trusted, or None. The witnesses are read from
    deployment.json, which a hand edit could point away from a witness that shows a rollback: only
    the section the last sealed assessment covers counts. Both `audit verify`s call this."""
    a = deployment.section("assessment")
    problem = unrecorded_problem(key, a, newest_note)
    covered = a.get("covered")
    if problem is None and isinstance(covered, dict) and covered.get("audit") != deployment.section("audit"):
        problem = (f"the audit section of deployment.json (its witnesses) is not the one the impact assessment "
                   f"{shown_assessment(a)} covers: it was changed by hand. Restore it, or record the change with "
                   "`safeface assess`, then verify again.")
    return None if problem is None else f"{problem} The log's witnesses cannot be trusted until then."


def _mac(key: bytes, section: Mapping[str, Any]) -> str:
    body = {k: section.get(k) for k in SEALED_FIELDS}
    canon = json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str)
    return hmac.new(key, canon.encode("utf-8"), hashlib.sha256).hexdigest()


def sealed(key: bytes, section: Mapping[str, Any], covered: Mapping[str, Any]) -> dict[str, Any]:
    """The section with the settings it covers and its seal."""
    out = {**section, "covered": dict(covered)}
    out["seal"] = _mac(key, out)
    return out


def seal_holds(key: bytes, section: Mapping[str, Any]) -> bool:
    got = section.get("seal")
    return isinstance(got, str) and same_digest(_mac(key, section), got)


def changed_settings(before: Any, after: Any, prefix: str = "") -> list[str]:
    """Every covered setting that differs, as a path with both values: what an operator
    recording a new assessment signs off. Settings are compared as written (1, 1.0, true and "1"
    differ); a list says which items it lost and gained; a long value is cut with its hash, so
    two values never look alike; key names are escaped, so none can hide the rest."""
    if isinstance(before, dict) and isinstance(after, dict):
        out: list[str] = []
        for k in sorted(set(before) | set(after), key=str):
            out += changed_settings(before.get(k), after.get(k), f"{prefix}.{_key(k)}" if prefix else _key(k))
        return out
    where = prefix or "settings"
    if _text(before) == _text(after):
        return []
    if isinstance(before, list) and isinstance(after, list):
        gone = [_shown(x) for x in before if _text(x) not in {_text(y) for y in after}]
        new = [_shown(x) for x in after if _text(x) not in {_text(y) for y in before}]
        if not gone and not new:
            return [f"{where}: reordered"]
        return [f"{where}: " + ", ".join([f"lost {g}" for g in gone] + [f"gained {n}" for n in new])]
    return [f"{where}: {_shown(before)} -> {_shown(after)}"]


def _text(v: Any) -> str:
    return json.dumps(v, default=str, ensure_ascii=True, sort_keys=True)


def _shown(v: Any) -> str:
    if v is None:
        return "(not set)"
    t = _text(v)
    return t if len(t) <= 80 else f"{t[:60]}...(sha256 {hashlib.sha256(t.encode()).hexdigest()[:12]})"


def _key(k: Any) -> str:
    k = str(k)
    return k if k.isascii() and k.replace("_", "").replace("-", "").isalnum() else json.dumps(k, ensure_ascii=True)
