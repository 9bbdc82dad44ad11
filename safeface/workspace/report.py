"""The compliance report an assessor reads: JSON and HTML.

Records of processing (GDPR 30 / M 9), purposes and retention, counts, the filing status,
refusals by rule, security measures, and every rule of the catalogue with its state for this
deployment. When the evaluation tool has written ``WS/reports/evaluation/latest.json``, its
figures are embedded and its plots copied next to the report and linked.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import html
import json
import math
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Optional

from ..atomicfile import MAX_COPY_BYTES, make_dirs, write_atomic
from ..errors import ConfigError
from ..jsonnum import finite_json
from ..policy.deployment import DEFAULT_FILING_THRESHOLD, Finding
from ..policy.rules import FLOOR_RULES, RULES, rule_for
from ..regularfile import read_no_link

if TYPE_CHECKING:
    from ..sdk import SafeFace

PLOT_SUFFIXES = (".png", ".svg", ".jpg", ".pdf")

# How each call-time rule is enforced, for the rule table (configuration rules come from findings).
CALL_TIME = {
    "CN-04": "checked at every enroll, verify and identify",
    "CN-05": "revocation erases at once; signed receipts",
    "CN-06": "checked on each consent with a declared birth date",
    "CN-07": "export refused without transmit consent or legal basis",
    "CN-08": "expiry on every template; expired never matched, purged with receipt",
    "CN-10": "every call appended to the hash-chained log",
    "CN-16b": "legal-basis tokens verified against trusted authority keys",
    "CN-17": "deduplicated count checked before each new enrolment",
    "CN-18": "analyze() refuses; no attribute model exists",
    "EU-01": "analyze() refuses; no attribute model exists",
    "EU-02": "every template records its provenance; no enrolment without a consent or legal basis",
    "EU-03": "analyze() refuses emotion; no emotion model exists",
    "EU-05": "checked at every enroll, verify and identify",
    "EU-06": "erasure at once with a signed receipt",
    "US-01": "expiry = min(purpose end, last interaction + 3 years)",
    "US-02": "checked at every enroll, verify and identify",
    "US-03": "export refused without consent or legal basis; disclosures logged",
    "PA-01": "checked at every enroll, verify and identify of those purposes (signature, freshness, single use, face)",
    "PA-02": "checked at every enrolment of those purposes, naming what to fix",
}

# The `safeface eval` runs whose summary measures each standard rule (evaluate/report.py KINDS).
# PAD (ST-03) writes pad.json to its own folder only: no workspace summary measures it.
MEASURED_BY = {"ST-02": ("protection",), "ST-03": ("pad",), "ST-04": ("verify", "identify"),
               "ST-05": ("demographics",)}

NOT_ON_RECORD = ("NOT ON RECORD: no audit entry names this summary's SHA-256 (written by another tool, by "
                 "`safeface eval --workspace` without the workspace's passphrase, or changed since); its figures "
                 "are its writer's, not safeface's measurement")
OLDER_ON_RECORD = ("NOT THE SUMMARY ON RECORD: an earlier evaluation summary, put back over a newer one that "
                   "the audit log names; its figures are not the latest measurement")
RECORDS_FAIL = "THE RECORDS FAIL VERIFICATION (see the rule table)"


def _rule_table(sf: "SafeFace", findings: list[Finding], refusals: dict[str, int], evaluation: Any,
                in_force: Optional[dict[str, Any]] = None, on_record: bool = False) -> list[dict[str, Any]]:
    dep = sf.deployment
    in_force = in_force or {}
    by_rule: dict[str, list[Finding]] = {}
    for f in findings:
        by_rule.setdefault(f.rule, []).append(f)
    rows = []
    for r in RULES:
        # A capture rule applies only where a purpose asks for it (deployment findings say so).
        active = r.profile in dep.profiles or r.profile == "standard" or r.id in FLOOR_RULES \
            or (r.profile == "capture" and r.id in by_rule)
        entry: dict[str, Any] = {"id": r.id, "profile": r.profile, "mode": r.mode, "title": r.title,
                                 "refusals": refusals.get(r.id, 0)}
        if not active:
            entry.update(state="not applicable", detail="no purpose requires it" if r.profile == "capture"
                         else f"profile {r.profile} is not active")
        elif r.id in by_rule:
            bad = [f for f in by_rule[r.id] if not f.ok]
            entry.update(state="failing" if bad else "satisfied",
                         detail="; ".join(f.message for f in (bad or by_rule[r.id])))
            if r.id in CALL_TIME:
                entry["detail"] += f"; {CALL_TIME[r.id]}"
        elif r.mode == "enforce":
            entry.update(state="enforced", detail=CALL_TIME.get(r.id, r.how))
        elif r.mode == "record":
            entry.update(state="recorded", detail=_record_detail(sf, r.id))
        elif r.id == "ST-01":
            entry.update(state="implemented", detail="keyed orthogonal transform per deployment, AES-GCM sealed rows, "
                         "re-keying without images (`safeface rekey`); unlinkability measured under ST-02")
        elif _measured(r.id, evaluation) and _elsewhere(r.id, evaluation, in_force):
            entry.update(state="not measured", detail="the evaluation summary's run for it was not measured in this "
                         f"deployment's configuration: {_elsewhere(r.id, evaluation, in_force)}; run `safeface eval ... "
                         "--workspace WS` with the threshold in force")
        elif _measured(r.id, evaluation):
            entry.update(state="measured", detail="see the assessment section" + ("" if on_record else
                                                                                   "; the summary is not on record"))
        else:
            entry.update(state="not measured", detail="run `safeface eval ... --workspace WS` to measure it")
        rows.append(entry)
    return rows


def _measured(rule: str, evaluation: Any) -> bool:
    """Whether the evaluation summary holds a run that measures `rule` (MEASURED_BY): a verification
    run alone had every standard rule called measured, demographics and PAD included, and so had an
    unreadable latest.json. A summary naming no kind (an operator's own tool) counts for all."""
    if not isinstance(evaluation, dict) or "error" in evaluation:
        return False
    runs = evaluation.get("runs")
    kinds = {k for k in [evaluation.get("kind"), *(runs if isinstance(runs, dict) else ())] if isinstance(k, str)}
    return not kinds or any(k in kinds for k in MEASURED_BY.get(rule, ()))


def _runs(evaluation: Any) -> dict[str, dict[str, Any]]:
    """The runs of the summary by kind: the top level, and each of "runs"."""
    if not isinstance(evaluation, dict) or "error" in evaluation:
        return {}
    out: dict[str, dict[str, Any]] = {}
    runs = evaluation.get("runs")
    for kind, run in (runs.items() if isinstance(runs, dict) else ()):
        if isinstance(kind, str) and isinstance(run, dict):
            out[kind] = run
    if isinstance(evaluation.get("kind"), str):
        out[evaluation["kind"]] = evaluation
    return out


def _measured_with(run: dict[str, Any]) -> dict[str, Any]:
    """What a run says it was measured with: the deployment and the thresholds (`options`, as
    `safeface eval` writes them; an older verification summary names its threshold in its figures)."""
    def part(d: dict[str, Any], key: str) -> dict[str, Any]:
        v = d.get(key)
        return v if isinstance(v, dict) else {}

    opts = part(run, "options")
    at = part(part(run, "metrics"), "at_default_threshold")
    return {"deployment": run.get("deployment"), "threshold": opts.get("threshold", at.get("threshold")),
            "masked_threshold": opts.get("masked_threshold"),
            "both_masked_threshold": opts.get("both_masked_threshold")}


def _differences(run: dict[str, Any], in_force: dict[str, Any]) -> list[str]:
    """How a run's stated configuration differs from the one in force: a summary measured at another
    threshold, or copied from another deployment, was shown as this deployment's measurement."""
    said = _measured_with(run)
    out = []
    if said["deployment"] is not None and said["deployment"] != in_force.get("deployment"):
        out.append(f"measured for deployment {said['deployment']!r}, not this one ({in_force.get('deployment')!r})")
    for name in ("threshold", "masked_threshold", "both_masked_threshold"):
        v = said[name]
        if v is None or name not in in_force:
            continue
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isclose(v, in_force[name], abs_tol=1e-9):
            out.append(f"{name.replace('_', ' ')} {v!r}, not the {in_force[name]!r} in force")
    return out


def _elsewhere(rule: str, evaluation: Any, in_force: dict[str, Any]) -> str:
    """Why the runs that measure `rule` do not measure this deployment as configured ('' if they do)."""
    runs = _runs(evaluation)
    found = [f"{kind}: {'; '.join(d)}" for kind in MEASURED_BY.get(rule, ()) if kind in runs
             for d in [_differences(runs[kind], in_force)] if d]
    return " / ".join(found)


def _in_force(sf: "SafeFace") -> dict[str, Any]:
    """The deployment and thresholds calls are matched with (a threshold deployment.json states
    invalidly is left out: the findings say what is wrong with it)."""
    out: dict[str, Any] = {"deployment": sf.deployment.raw.get("id")}
    for name in ("threshold", "masked_threshold", "both_masked_threshold"):
        try:
            out[name] = float(getattr(sf, name))
        except (ConfigError, TypeError, ValueError):
            continue
    return out


def _plot_digests(evaluation: Any) -> Optional[dict[str, str]]:
    """The SHA-256 of each plot of the summary's runs (`safeface eval --workspace` writes them), or
    None where the summary names none (an operator's own tool: its plots are shown as they are)."""
    found: Optional[dict[str, str]] = None
    for run in _runs(evaluation).values():
        named = run.get("plot_sha256")
        if isinstance(named, dict):
            found = found or {}
            found.update({k: v for k, v in named.items() if isinstance(k, str) and isinstance(v, str)})
    return found


def _record_detail(sf: "SafeFace", rule: str) -> str:
    dep = sf.deployment
    if rule == "CN-03":
        a = dep.section("accessibility")
        return f"attested: {bool(a.get('attested'))}; {a.get('note') or 'no note'}"
    if rule == "CN-12":
        s = dep.section("identity_service")
        return f"identity service: {s.get('name') or 'not stated'}; {s.get('note') or ''}".strip("; ")
    if rule == "CN-13":
        return f"consent-screen version bound into each token: {dep.section('consent_screen').get('version') or 'not stated'}"
    if rule == "EU-07":
        return "this report's records of processing"
    return ""


def _finite_json(text: str) -> Any:
    """The evaluation summary with NaN and infinities (which Python's json writes, and no JSON
    reader takes: compliance.json and /v1/report would not be JSON) shown as null, and said so."""
    dropped: list[str] = []

    def drop(name: str) -> None:
        dropped.append(name)

    def number(text: str) -> Optional[float]:
        v = float(text)
        if math.isfinite(v):
            return v
        dropped.append(text)  # 1e999
        return None

    doc = json.loads(text, parse_constant=drop, parse_float=number)
    if dropped and isinstance(doc, dict):
        doc["non_finite"] = (f"{len(dropped)} value(s) of latest.json were not finite numbers "
                             f"({', '.join(sorted(set(dropped))[:3])}); they are shown as null.")
    return doc


def build_report(sf: "SafeFace", now: dt.datetime, quote: Optional[Callable[[str], str]] = None) -> dict[str, Any]:
    """The report's content. `quote`: how a failed check's text is shown (the service gives its
    callers a log reference instead, as for `audit verify`: the text names entries and, on a
    server workspace, the record store's host, user and database)."""
    dep = sf.deployment
    facts = sf.facts()
    findings = sf.findings(now.date())
    shown = quote or (lambda text: text)
    chain = dict(facts["audit_chain"])
    if chain["problem"] is not None:
        chain["problem"] = shown(chain["problem"])
    problems = [shown(p) for p in facts["store"]["problems"]]
    # The guard reads neither the whole chain nor every row at each call, so can_process may still
    # say yes; but the report must not call the records rule met while `audit verify` fails.
    records_rule = rule_for("records", dep.profiles)  # a baseline: never None
    records: list[Finding] = []
    if records_rule is not None and not chain["intact"]:
        records.append(Finding(records_rule, False, "the audit log fails verification, so the counts and refusals "
                               f"below cannot be trusted: {chain['problem']} Run `safeface audit verify` and "
                               "restore the log from a backup"))
    if records_rule is not None and problems:
        records.append(Finding(records_rule, False, f"the template store does not match the audit log "
                               f"({len(problems)} problem(s)), the first: {problems[0]} Run `safeface audit verify`"))
    evaluation = None
    digest: Optional[str] = None
    if sf.paths.evaluation.is_file():
        try:
            raw = sf.paths.evaluation.read_bytes()  # read once: the bytes shown are the bytes checked
            digest = hashlib.sha256(raw).hexdigest()
            evaluation = _finite_json(raw.decode("utf-8"))
        except (OSError, ValueError):
            evaluation = {"error": "reports/evaluation/latest.json is not readable JSON"}
    refusals = facts["audit"]["refusals_by_rule"]
    in_force = _in_force(sf)
    check = None
    if evaluation is not None:
        record = sf.evaluation_on_record(digest) if digest is not None else None
        on_record = record == "newest"
        check = {"sha256": digest, "on_record": on_record,
                 "provenance": "written by `safeface eval --workspace`, its SHA-256 on record in the audit log"
                 if on_record else OLDER_ON_RECORD if record == "older" else NOT_ON_RECORD,
                 "in_force": in_force,
                 "runs": {kind: {**_measured_with(run), "differs": _differences(run, in_force)}
                          for kind, run in _runs(evaluation).items()}}
    purposes = [{"name": p.name, "description": p.description, "necessity": p.necessity,
                 "retention_days": p.retention_days, "end_date": p.end_date.isoformat() if p.end_date else None,
                 "public_safety": p.public_safety, "alternatives": list(p.alternatives),
                 "mandatory_by_law": p.mandatory_by_law} for p in dep.purposes.values()]
    filing_rule = rule_for("filing", dep.profiles)
    return {
        "format": "safeface-compliance-report/1",
        "generated": now.isoformat(timespec="seconds"),
        "deployment": dep.raw.get("name"),
        "profiles": list(dep.profiles),
        "can_process": all(f.ok for f in findings),
        "records_verified": not records,  # what `audit verify` would say of the log and the store
        "audit_log": chain,
        "records_of_processing": {
            "controller": dep.controller,
            "purposes": purposes,
            "categories_of_data": "face templates (keyed transform, sealed), pseudonymous subject ids, consent token ids",
            "categories_of_subjects": "people who gave consent, or named in a legal-basis order",
            "recipients": "none unless a transmit consent or legal basis allows export; each disclosure is logged",
            "transfers": "none by the SDK (CN-07)",
            "retention": {p.name: f"{p.retention_days} days" for p in dep.purposes.values()},
            "location": dep.location,
            "notice": {"version": dep.notice.get("version"), "hash": dep.notice_hash},
            "assessment": dep.section("assessment"),
            "go_live": dep.raw.get("go_live"),
        },
        "counts": {"subjects": facts["subjects"], "templates": facts["templates"],
                   "revocations": facts["revocations"], "calls": facts["audit"]["by_operation"],
                   "legal_basis_calls": facts["audit"]["legal_basis_calls"]},
        "filing": {"applies": filing_rule is not None, "threshold": _as_written(dep.section("filing").get("threshold")),
                   "stored_people": facts["subjects"], "reference": dep.filing_reference,
                   "crossed_on": facts["filing_crossed"], "deadline": facts["filing_deadline"],
                   "note": "deadline counts 30 working days (Monday to Friday); public holidays are not deducted"},
        "refusals_by_rule": refusals,
        "trusted_keys": facts["trusted_keys"],
        "security_measures": {
            "templates": "keyed orthogonal transform (revocable) and AES-GCM sealing bound to each row",
            "keys": "keyring wrapped with AES-256-GCM under a scrypt-derived passphrase key, apart from the data",
            "key_versions": facts["key_versions"],
            "pseudonyms": "HMAC-SHA256 of subject ids under the pseudonym key; raw ids are never stored",
            # What is enforced: a role added to deployment.json by hand counts only once assessed.
            "access_control": facts["roles_in_force"],
            "access_control_as_written": {role: list(ops) for role, ops in dep.roles.items()},
            "api_keys": facts["api_keys"],
            "audit": "SHA-256 hash chain with an HMAC-signed head, anchored outside the log (keys/audit-anchor.json "
                     "and any witness in deployment.json audit.witness); signed checkpoints; `safeface audit verify`",
            "trust_store": "MACed with a keyring key; every change audited (trust-add / trust-remove)",
            "receipts": f"Ed25519 erasure receipts, public key {facts['receipt_public_key']}",
            "images": "never written to disk",
            "store_audit": {"rows": facts["store"]["rows"], "digest": facts["store"]["digest"],
                            "problems": problems,
                            "checks": "every row has a verified sealed token and an enroll entry; every enrolled, "
                                      "unremoved row is present"},
        },
        "rules": _rule_table(sf, findings + records, refusals, evaluation, in_force,
                             bool(check and check["on_record"])),
        "audit_period": {"first": facts["audit"]["first"], "last": facts["audit"]["last"]},
        "assessment": evaluation,
        # What each run of the summary says it was measured with, against this deployment's.
        "assessment_check": check,
    }


def write_report(sf: "SafeFace", out: Path, now: dt.datetime,
                 quote: Optional[Callable[[str], str]] = None, within: Optional[Path] = None,
                 digest: Optional[dict[str, str]] = None) -> dict[str, Path]:
    """The report's files in `out`; `within`: a folder above it below which no link is followed
    (atomicfile.write_atomic), where its writer does not choose `out` itself (the console);
    `digest` gets the SHA-256 of compliance.json as written ("json")."""
    if within is None:
        make_dirs(out)  # none of it writable by others, who could swap the report
    report = build_report(sf, now, quote)
    plots: list[str] = []
    left_out: list[str] = []
    copied: dict[str, str] = {}
    eval_dir = sf.paths.evaluation.parent
    expected = _plot_digests(report["assessment"])
    if report["assessment"] is not None and eval_dir.is_dir():
        dest = out / "assessment"
        for f in sorted(eval_dir.iterdir()):
            if f.suffix.lower() in PLOT_SUFFIXES and (f.is_file() or f.is_symlink()):
                data = read_no_link(f, MAX_COPY_BYTES)  # the bytes checked are the bytes copied
                if expected is not None and expected.get(f.name) != hashlib.sha256(data).hexdigest():
                    left_out.append(f.name)  # not a plot of the summary shown: swapped or left over
                    continue
                if within is None:
                    make_dirs(dest)
                write_atomic(dest / f.name, data, within=within)
                plots.append(f"assessment/{f.name}")
                copied[f"assessment/{f.name}"] = hashlib.sha256(data).hexdigest()
    report["assessment_plots"] = plots
    # The SHA-256 of each copy, in the report whose own digest goes on record: the console serves
    # a copy only while it is the one listed (whoever may write reports/ could replace it after).
    report["assessment_plot_sha256"] = copied
    if report["assessment_check"] is not None:
        report["assessment_check"]["plots_left_out"] = left_out
    # Numbers read from files a person edits (deployment.json's filing threshold) may be NaN.
    report = finite_json(report)
    json_path = out / "compliance.json"
    text = json.dumps(report, indent=2, default=str, allow_nan=False) + "\n"
    write_atomic(json_path, text, within=within)
    if digest is not None:
        digest["json"] = hashlib.sha256(text.encode("utf-8")).hexdigest()
    html_path = out / "compliance.html"
    write_atomic(html_path, _html(report), within=within)
    return {"json": json_path, "html": html_path}


def _e(v: Any) -> str:
    return html.escape("" if v is None else str(v))


def _kv(d: dict[str, Any]) -> str:
    rows = "".join(f"<tr><th>{_e(k)}</th><td>{_e(json.dumps(v, default=str) if isinstance(v, (dict, list)) else v)}</td></tr>"
                   for k, v in d.items())
    return f"<table>{rows}</table>"


def _html(r: dict[str, Any]) -> str:
    state_class = {"failing": "bad", "satisfied": "ok", "enforced": "ok", "recorded": "ok", "measured": "ok"}
    rules = "".join(
        f"<tr class='{state_class.get(x['state'], 'na')}'><td>{_e(x['id'])}</td><td>{_e(x['title'])}</td>"
        f"<td>{_e(x['mode'])}</td><td>{_e(x['state'])}</td><td>{_e(x['detail'])}</td><td>{x['refusals']}</td></tr>"
        for x in r["rules"])
    purposes = "".join(
        f"<tr><td>{_e(p['name'])}</td><td>{_e(p['description'])}</td><td>{_e(p['necessity'])}</td>"
        f"<td>{p['retention_days']} days</td><td>{_e(', '.join(p['alternatives']))}</td></tr>"
        for p in r["records_of_processing"]["purposes"])
    refusals = "".join(f"<tr><td>{_e(k)}</td><td>{v}</td></tr>" for k, v in r["refusals_by_rule"].items()) or \
        "<tr><td colspan=2>none</td></tr>"
    trusted = "".join(
        f"<tr><td>{_e(k['kind'])}</td><td><code>{_e(k['thumbprint'])}</code></td><td>{_e(k['label'])}</td>"
        f"<td>{_e(k['added'])}</td><td>{_e(k['removed'] or '')}</td></tr>" for k in r["trusted_keys"]) or \
        "<tr><td colspan=5>none: every consent and legal-basis token is refused</td></tr>"
    assessment = "<p>No evaluation yet: run <code>safeface eval ... --workspace WS</code>.</p>"
    if r["assessment"] is not None:
        scalars = {k: v for k, v in r["assessment"].items() if not isinstance(v, (dict, list))}
        nested = {k: v for k, v in r["assessment"].items() if isinstance(v, (dict, list))}
        assessment = _kv(scalars) + "".join(f"<h3>{_e(k)}</h3><pre>{_e(json.dumps(v, indent=1, default=str))}</pre>"
                                            for k, v in nested.items())
        check = r.get("assessment_check") or {}
        differs = [f"{kind}: {d}" for kind, run in (check.get("runs") or {}).items() for d in run.get("differs", [])]
        if check.get("plots_left_out"):
            assessment = (f"<p><b>Plots left out, not those of this summary (their SHA-256 differs): "
                          f"{_e(', '.join(check['plots_left_out']))}.</b></p>") + assessment
        if check and not check.get("on_record"):
            assessment = f"<p><b>{_e(check.get('provenance'))}.</b></p>" + assessment
        if differs:
            assessment = ("<p><b>NOT MEASURED IN THIS DEPLOYMENT'S CONFIGURATION:</b> "
                          f"{_e('; '.join(differs))}.</p>") + assessment
        assessment += "<h3>measured with, against what is in force</h3>" + _kv(check)
        assessment += "".join(f"<p><a href='{_e(p)}'><img src='{_e(p)}' alt='{_e(p)}' style='max-width:640px'></a></p>"
                              for p in r.get("assessment_plots", []))
    status = "may process" if r["can_process"] else "CANNOT PROCESS: a rule is failing (see the rule table)"
    if not r["records_verified"]:
        status += f"; {RECORDS_FAIL}"
    return f"""<!doctype html><html><head><meta charset="utf-8"><title>Compliance report: {_e(r['deployment'])}</title>
<style>body{{font-family:sans-serif;max-width:1100px;margin:2em auto}}table{{border-collapse:collapse;margin:1em 0}}
td,th{{border:1px solid #ccc;padding:4px 8px;text-align:left;vertical-align:top}}tr.bad{{background:#fdd}}
tr.ok{{background:#efe}}tr.na{{color:#888}}</style></head><body>
<h1>Compliance report</h1>
<p>Deployment <b>{_e(r['deployment'])}</b>, profiles {_e(', '.join(r['profiles']))}; generated {_e(r['generated'])}.
Status: <b>{_e(status)}</b>.</p>
<h2>Records of processing (GDPR 30, M 9)</h2>{_kv({k: v for k, v in r['records_of_processing'].items() if k != 'purposes'})}
<h2>Purposes and retention</h2><table><tr><th>purpose</th><th>description</th><th>necessity</th><th>retention</th>
<th>alternatives</th></tr>{purposes}</table>
<h2>Counts</h2>{_kv(r['counts'])}
<h2>Filing (CN-17)</h2>{_kv(r['filing'])}
<h2>Refusals by rule</h2><table><tr><th>rule</th><th>refusals</th></tr>{refusals}</table>
<h2>Trusted keys</h2><table><tr><th>kind</th><th>thumbprint (RFC 7638)</th><th>label</th><th>added</th>
<th>removed</th></tr>{trusted}</table>
<h2>Security measures (CN-16)</h2>{_kv(r['security_measures'])}
<h2>Rules</h2><table><tr><th>rule</th><th>title</th><th>mode</th><th>state</th><th>detail</th><th>refusals</th></tr>
{rules}</table>
<h2>Assessment (evaluation)</h2>{assessment}
</body></html>
"""


def _as_written(threshold: Any) -> Any:
    """The filing threshold as configured, even when invalid: the report must still be written
    for a deployment that cannot process, and its findings say what is wrong."""
    return DEFAULT_FILING_THRESHOLD if threshold is None else threshold
