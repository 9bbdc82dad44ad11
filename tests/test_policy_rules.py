"""The guard on its own: tokens, deployment rules, sensitive attributes, the rule catalogue.
No images here; the facade and the CLI are tested in test_sdk.py and test_cli_policy.py."""

from __future__ import annotations

import copy
import dataclasses
import datetime as dt
import re
import sys
from pathlib import Path
from typing import Any, Callable

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

sys.path.insert(0, str(Path(__file__).resolve().parent))
from policy_support import EmptyStore, authorize, datasets, demo_deployment  # noqa: E402

from safeface.errors import PolicyViolation  # noqa: E402
from safeface.policy.attributes import classify, rule_for_category  # noqa: E402
from safeface.policy.deployment import PRIVATE_SPACES, Deployment, working_days_after  # noqa: E402
from safeface.policy.guard import Guard  # noqa: E402
from safeface.policy.issuer import issue_consent, issue_legal_basis  # noqa: E402
from safeface.policy.rules import CONCEPTS, RULES_BY_ID, active_rules, rule_for  # noqa: E402
from safeface.workspace.state import PolicyState  # noqa: E402
from safeface.policy.tokens import b64d, b64e, decode_consent, key_id, sign  # noqa: E402

NOW = dt.datetime(2026, 6, 15, 12, 0, tzinfo=dt.timezone.utc)
TODAY = NOW.date()
DEPLOYMENT_ID = "0b7f4c1e-test-deployment-a"


@pytest.fixture(scope="module")
def keys() -> dict[str, Ed25519PrivateKey]:
    return {"issuer": Ed25519PrivateKey.generate(), "authority": Ed25519PrivateKey.generate(),
            "stranger": Ed25519PrivateKey.generate()}


def deployment(profiles: tuple[str, ...] = ("cn-2025",), edit: Callable[[dict[str, Any]], None] | None = None,
               reassess: bool = True) -> Deployment:
    return demo_deployment(TODAY - dt.timedelta(days=10), profiles, edit, reassess, deployment_id=DEPLOYMENT_ID)


@pytest.fixture()
def make_guard(tmp_path: Path, keys: dict[str, Ed25519PrivateKey]) -> Callable[..., Guard]:
    states: list[PolicyState] = []

    def make(dep: Deployment | None = None, state: PolicyState | None = None) -> Guard:
        if state is None:
            state = PolicyState(tmp_path / f"policy{len(states)}.db")
            states.append(state)
        dep = dep or deployment()
        return Guard(dep, {key_id(keys["issuer"].public_key()): keys["issuer"].public_key()},
                     {key_id(keys["authority"].public_key()): keys["authority"].public_key()}, state,
                     lambda s: "p-" + s, lambda tid: "t-" + tid, EmptyStore())

    yield make
    for s in states:
        s.close()


def token(keys: dict[str, Ed25519PrivateKey], dep: Deployment, subject: str = "alice", **kw: Any) -> str:
    kw.setdefault("now", NOW - dt.timedelta(hours=1))
    signer = keys[kw.pop("signer", "issuer")]
    purposes = tuple(kw.pop("purposes", ["demo"]))
    wire, minted = issue_consent(signer, dep, subject, ["demo"], **kw)
    # Other code (any JOSE library) can name a purpose the deployment lacks; ours refuses to.
    return wire if purposes == ("demo",) else sign(dataclasses.replace(minted, purposes=purposes), signer)


def refused(rule: str, fn: Callable[[], Any]) -> PolicyViolation:
    with pytest.raises(PolicyViolation) as info:
        fn()
    assert info.value.rule == rule, info.value
    assert len(info.value.message) > 20
    return info.value


# -- consent tokens (CN-04, CN-02, CN-05, CN-06, CN-01) ----------------------------------------
def test_valid_consent_is_allowed(make_guard, keys) -> None:
    g = make_guard()
    d = authorize(g, "enroll", "demo", NOW, subject="alice", consent=token(keys, g.deployment))
    assert d.consent is not None and d.consent.subject == "alice" and d.basis == "consent"
    assert d.consent.screen_version == "demo-screen-1"  # CN-13: the consent screen is bound in


def test_missing_consent_refused_cn04(make_guard) -> None:
    g = make_guard()
    refused("CN-04", lambda: authorize(g, "verify", "demo", NOW, subject="alice"))


def test_forged_signature_refused(make_guard, keys) -> None:
    g = make_guard()
    t = token(keys, g.deployment)
    head, payload, sig = t.split(".")
    body = b64d(payload).replace(b'"alice"', b'"mallory"')
    forged = ".".join([head, b64e(body), sig])
    e = refused("CN-04", lambda: authorize(g, "enroll", "demo", NOW, subject="mallory", consent=forged))
    assert "signature" in e.message
    bad_sig = ".".join([head, payload, b64e(b"\0" * 64)])
    refused("CN-04", lambda: authorize(g, "enroll", "demo", NOW, subject="alice", consent=bad_sig))
    refused("CN-04", lambda: authorize(g, "enroll", "demo", NOW, subject="alice", consent="not a token"))


def test_untrusted_key_refused(make_guard, keys) -> None:
    g = make_guard()
    t = token(keys, g.deployment, signer="stranger")
    e = refused("CN-04", lambda: authorize(g, "enroll", "demo", NOW, subject="alice", consent=t))
    assert "does not trust" in e.message


def test_expired_and_not_yet_valid_refused(make_guard, keys) -> None:
    g = make_guard()
    old = token(keys, g.deployment, now=NOW - dt.timedelta(days=10), days=5)
    assert "expired" in refused("CN-04", lambda: authorize(g, "verify", "demo", NOW, subject="alice", consent=old)).message
    future = token(keys, g.deployment, now=NOW + dt.timedelta(days=1))
    assert "not valid yet" in refused(
        "CN-04", lambda: authorize(g, "verify", "demo", NOW, subject="alice", consent=future)).message


def test_wrong_subject_purpose_operation_refused(make_guard, keys) -> None:
    g = make_guard(deployment(edit=lambda r: r["purposes"].__setitem__("shop", copy.deepcopy(r["purposes"]["demo"]))))
    t = token(keys, g.deployment, operations=["verify"])
    refused("CN-04", lambda: authorize(g, "verify", "demo", NOW, subject="bob", consent=t))
    refused("CN-04", lambda: authorize(g, "verify", "shop", NOW, subject="alice", consent=t))
    refused("CN-04", lambda: authorize(g, "enroll", "demo", NOW, subject="alice", consent=t))
    assert authorize(g, "verify", "demo", NOW, subject="alice", consent=t).consent is not None


def test_undeclared_purpose_refused_cn01(make_guard, keys) -> None:
    g = make_guard()
    t = token(keys, g.deployment, purposes=["marketing"])
    refused("CN-01", lambda: authorize(g, "enroll", "marketing", NOW, subject="alice", consent=t))


def test_a_look_alike_purpose_is_refused_and_shown_apart(make_guard, keys) -> None:
    """"d\u0435mo" (a Cyrillic "e") reads like the declared "demo": refused, and the message spells
    the difference out so the person reading it can see why."""
    g = make_guard()
    look_alike = "d\u0435mo"
    t = token(keys, g.deployment, purposes=[look_alike])
    exc = refused("CN-01", lambda: authorize(g, "enroll", look_alike, NOW, subject="alice", consent=t))
    assert "\\u0435" in exc.message


def test_stale_notice_refused_cn02(make_guard, keys) -> None:
    old = deployment()
    t = token(keys, old)
    newer = deployment(edit=lambda r: r["notice"].__setitem__("retention", "60 days"))
    g = make_guard(newer)
    e = refused("CN-02", lambda: authorize(g, "enroll", "demo", NOW, subject="alice", consent=t))
    assert "notice" in e.message
    assert authorize(g, "enroll", "demo", NOW, subject="alice", consent=token(keys, newer)).consent


def test_revoked_token_and_subject_refused_cn05(make_guard, keys, tmp_path) -> None:
    state = PolicyState(tmp_path / "revocations.db")
    g = make_guard(state=state)
    t1 = token(keys, g.deployment)
    state.revoke_token("t-" + decode_consent(t1, {key_id(keys["issuer"].public_key()): keys["issuer"].public_key()}
                                      ).token_id, NOW)
    refused("CN-05", lambda: authorize(g, "verify", "demo", NOW, subject="alice", consent=t1))
    t2 = token(keys, g.deployment, subject="bob")
    state.revoke_subject("p-bob", NOW)
    refused("CN-05", lambda: authorize(g, "verify", "demo", NOW, subject="bob", consent=t2))
    # A consent given after the withdrawal, past the clock skew, is a new consent.
    t3 = token(keys, g.deployment, subject="bob", now=NOW + dt.timedelta(seconds=121))
    assert authorize(g, "verify", "demo", NOW + dt.timedelta(seconds=125), subject="bob", consent=t3).consent
    state.close()


def test_minor_needs_guardian_cn06(make_guard, keys) -> None:
    g = make_guard()
    child = (TODAY - dt.timedelta(days=365 * 10)).isoformat()
    t = token(keys, g.deployment, birth_date=child)
    refused("CN-06", lambda: authorize(g, "enroll", "demo", NOW, subject="alice", consent=t))
    ok = token(keys, g.deployment, birth_date=child, guardian="Parent Name")
    assert authorize(g, "enroll", "demo", NOW, subject="alice", consent=ok).consent.guardian == "Parent Name"
    fourteen = TODAY.replace(year=TODAY.year - 14).isoformat()  # 14 today: no guardian needed
    assert authorize(g, "enroll", "demo", NOW, subject="alice", consent=token(keys, g.deployment, birth_date=fourteen))


def test_guardian_rule_is_a_floor_under_every_profile(make_guard, keys) -> None:
    # Once only under cn-2025: a 10-year-old enrolled alone under eu or us-bipa.
    child = (TODAY - dt.timedelta(days=365 * 10)).isoformat()
    for profiles in (("eu",), ("us-bipa",)):
        g = make_guard(deployment(profiles))
        refused("CN-06", lambda: authorize(g, "enroll", "demo", NOW, subject="alice",
                                           consent=token(keys, g.deployment, birth_date=child)))
        ok = token(keys, g.deployment, birth_date=child, guardian="Parent Name")
        assert authorize(g, "enroll", "demo", NOW, subject="alice", consent=ok).consent.guardian == "Parent Name"


def test_transmit_needs_its_own_consent_cn07_us03(make_guard, keys) -> None:
    g = make_guard()
    t = token(keys, g.deployment)
    refused("CN-07", lambda: authorize(g, "transmit", "demo", NOW, subject="alice", consent=t))
    refused("CN-07", lambda: authorize(g, "transmit", "demo", NOW, subject="alice"))
    ok = token(keys, g.deployment, operations=["verify", "transmit"])
    assert authorize(g, "transmit", "demo", NOW, subject="alice", consent=ok).consent
    us = make_guard(deployment(("us-bipa",)))
    refused("US-03", lambda: authorize(us, "transmit", "demo", NOW, subject="alice", consent=token(keys, us.deployment)))


def test_legal_basis_cn16b(make_guard, keys) -> None:
    g = make_guard()
    lb, _ = issue_legal_basis(keys["authority"], audience=DEPLOYMENT_ID, authority="Bureau",
                              provision="PIPL 13(1)(3)", reference="r1", purposes=["demo"],
                              now=NOW - dt.timedelta(hours=1))
    d = authorize(g, "identify", "demo", NOW, legal_basis=lb)
    assert d.legal_basis is not None and "PIPL 13(1)(3)" in d.basis
    forged, _ = issue_legal_basis(keys["stranger"], audience=DEPLOYMENT_ID, authority="Bureau",
                                  provision="PIPL 13", reference="r", purposes=["demo"],
                                  now=NOW - dt.timedelta(hours=1))
    refused("CN-16b", lambda: authorize(g, "identify", "demo", NOW, legal_basis=forged))
    # A consent key cannot sign a legal basis, and a legal basis covers only its operations.
    refused("CN-16b", lambda: authorize(g, "identify", "demo", NOW, legal_basis=token(keys, g.deployment)))
    refused("CN-16b", lambda: authorize(g, "enroll", "demo", NOW, legal_basis=lb))


def test_stacked_profiles_report_first_profile_rule(make_guard, keys) -> None:
    g = make_guard(deployment(("eu", "cn-2025")))
    refused("EU-05", lambda: authorize(g, "verify", "demo", NOW, subject="alice"))
    g2 = make_guard(deployment(("us-bipa",)))
    refused("US-02", lambda: authorize(g2, "verify", "demo", NOW, subject="alice"))


# -- deployment rules --------------------------------------------------------------------------
DEPLOYMENT_CASES = [
    ("CN-01", ("cn-2025",), lambda r: r["purposes"]["demo"].__setitem__("necessity", "")),
    ("CN-01", ("cn-2025",), lambda r: r["controller"].__setitem__("contact", "")),
    ("CN-02", ("cn-2025",), lambda r: r["notice"].__setitem__("rights", "")),
    ("CN-08", ("cn-2025",), lambda r: r["purposes"]["demo"].__setitem__("retention_days", 0)),
    ("CN-11", ("cn-2025",), lambda r: r["purposes"]["demo"].__setitem__("alternatives", [])),
    ("CN-14", ("cn-2025",), lambda r: r["location"].update({"class": "public-place", "capture_area": "gate 3",
                                                            "signage_attested": True})),
    ("CN-14", ("cn-2025",), lambda r: (r["location"].update({"class": "public-place", "signage_attested": True}),
                                       r["purposes"]["demo"].__setitem__("public_safety", True))),
    ("CN-14", ("cn-2025",), lambda r: (r["location"].update({"class": "public-place", "capture_area": "gate 3"}),
                                       r["purposes"]["demo"].__setitem__("public_safety", True))),
    ("CN-16", ("cn-2025",), lambda r: r["roles"].__setitem__("kiosk", ["verify", "launch-missiles"])),
    ("US-01", ("us-bipa",), lambda r: r["bipa"].__setitem__("retention_schedule_url", "")),
    ("US-04", ("us-bipa",), lambda r: r["bipa"].update({"texas": True, "grace_days_after_purpose": 400})),
    ("CN-08", ("eu",), lambda r: r["purposes"]["demo"].__setitem__("retention_days", -1)),
] + [("CN-15", ("cn-2025",), (lambda k: lambda r: r["location"].update({"class": k}))(k)) for k in PRIVATE_SPACES] \
  + [("CN-15", ("cn-2025",), lambda r: r["location"].update({"class": "public-place", "kind": "toilet"}))]


@pytest.mark.parametrize("rule,profiles,edit", DEPLOYMENT_CASES)
def test_deployment_rule_refuses_every_call(make_guard, keys, rule, profiles, edit) -> None:
    g = make_guard(deployment(profiles, edit))
    t = token(keys, g.deployment)
    for op in ("enroll", "verify", "identify"):
        e = refused(rule, lambda: authorize(g, op, "demo", NOW, subject="alice", consent=t))
        assert "cannot process" in e.message


def test_public_place_complete_is_allowed(make_guard, keys) -> None:
    def edit(r: dict[str, Any]) -> None:
        r["location"].update({"class": "public-place", "capture_area": "station hall, gates 1-4",
                              "signage_attested": True})
        r["purposes"]["demo"]["public_safety"] = True

    g = make_guard(deployment(edit=edit))
    assert authorize(g, "identify", "demo", NOW, consent=token(keys, g.deployment))


def test_texas_grace_within_a_year_is_allowed_and_sets_expiry(make_guard, keys) -> None:
    dep = deployment(("us-bipa",), lambda r: r["bipa"].update({"texas": True, "grace_days_after_purpose": 200}))
    g = make_guard(dep)
    assert authorize(g, "enroll", "demo", NOW, subject="alice", consent=token(keys, dep))
    p = dep.purposes["demo"]
    assert dep.expiry(p, NOW) == NOW + dt.timedelta(days=30 + 200)


def test_bipa_expiry_is_capped_at_three_years(keys) -> None:
    dep = deployment(("us-bipa",), lambda r: r["purposes"]["demo"].__setitem__("retention_days", 5000))
    assert dep.expiry(dep.purposes["demo"], NOW) == NOW + dt.timedelta(days=3 * 365)
    cn = deployment(("cn-2025",), lambda r: r["purposes"]["demo"].__setitem__("retention_days", 5000))
    assert cn.expiry(cn.purposes["demo"], NOW) == NOW + dt.timedelta(days=5000)
    ended = deployment(edit=lambda r: r["purposes"]["demo"].__setitem__("end_date", "2026-06-20"))
    assert ended.expiry(ended.purposes["demo"], NOW).date() == dt.date(2026, 6, 20)


ASSESSMENT_CASES = [
    ("missing", lambda r: r["assessment"].update({"reference": "", "date": None}), True),
    ("future", lambda r: r["assessment"].update({"date": (TODAY + dt.timedelta(days=3)).isoformat()}), True),
    ("after go-live", lambda r: r.update({"go_live": (TODAY - dt.timedelta(days=30)).isoformat()}), True),
    ("no annual review", lambda r: (r.update({"go_live": "2024-01-01"}),
                                    r["assessment"].update({"date": "2024-01-01"})), True),
    ("configuration changed", lambda r: r["purposes"].__setitem__("shop", copy.deepcopy(r["purposes"]["demo"])), False),
]


@pytest.mark.parametrize("case,edit,reassess", ASSESSMENT_CASES, ids=[c[0] for c in ASSESSMENT_CASES])
@pytest.mark.parametrize("profile,rule", [("cn-2025", "CN-09"), ("eu", "EU-08")])
def test_assessment_rule(make_guard, keys, case, edit, reassess, profile, rule) -> None:
    g = make_guard(deployment((profile,), edit, reassess=reassess))
    refused(rule, lambda: authorize(g, "verify", "demo", NOW, subject="alice", consent=token(keys, g.deployment)))


def test_reviewed_assessment_is_allowed(make_guard, keys) -> None:
    dep = deployment(edit=lambda r: (r.update({"go_live": "2024-01-01"}),
                                     r["assessment"].update({"date": "2024-01-01",
                                                             "reviewed": (TODAY - dt.timedelta(days=30)).isoformat()})))
    g = make_guard(dep)
    assert authorize(g, "verify", "demo", NOW, subject="alice", consent=token(keys, dep))


def test_the_assessment_is_a_floor_under_the_bipa_profile_too(make_guard, keys) -> None:
    """BIPA names no impact assessment, but the assessment is what authenticates the settings
    that can weaken protection: a deployment switched to us-bipa alone must not shed it."""
    g = make_guard(deployment(("us-bipa",), lambda r: r["assessment"].update({"reference": "", "date": None})))
    refused("CN-09", lambda: authorize(g, "verify", "demo", NOW, subject="alice", consent=token(keys, g.deployment)))
    g = make_guard(deployment(("us-bipa",)))
    assert authorize(g, "verify", "demo", NOW, subject="alice", consent=token(keys, g.deployment))


def test_roles_cn16(make_guard) -> None:
    g = make_guard()
    g.check_role("kiosk", "verify")
    refused("CN-16", lambda: g.check_role("kiosk", "enroll"))
    refused("CN-16", lambda: g.check_role("nobody", "verify"))


def test_working_days() -> None:
    # Friday 2026-11-20 + 30 working days: six weeks later, on a Friday.
    assert working_days_after(dt.date(2026, 11, 20), 30) == dt.date(2027, 1, 1)
    assert working_days_after(dt.date(2026, 11, 16), 5) == dt.date(2026, 11, 23)


# -- sensitive attributes (CN-18, EU-01, EU-03) --------------------------------------------------
SENSITIVE = {
    "race or ethnicity": ["race", "Race", "RACES", "ethnicity", "Ethnic origin", "skin tone", "Skin-Tones", "skinTone",
                          "skin_colour", "complexion"],
    "religion or belief": ["religion", "Religious beliefs", "faith", "wears hijab"],
    "health": ["health", "Health status", "disability", "disease", "illnesses", "is_pregnant"],
    "social class": ["social class", "Social-Class", "caste", "income", "wealth"],
    "political opinion": ["political opinion", "politics", "party affiliation", "trade union membership"],
    "sex life or sexual orientation": ["sexual orientation", "Sexuality", "gender", "Genders", "sex", "SEX", "is_gay"],
    "emotion": ["emotion", "Emotions", "mood", "MOODS", "facial expression", "expressions", "smile", "smiling",
                "happiness", "anger", "sentiment", "emotional_state"],
    "age": ["age", "Ages", "age range", "birth year"],
}


@pytest.mark.parametrize("category,name", [(c, n) for c, names in SENSITIVE.items() for n in names])
def test_sensitive_spellings_are_caught(category: str, name: str) -> None:
    req = classify(name)
    assert req.category == category and req.allowed is None


@pytest.mark.parametrize("name", ["banana", "identity", "Gesichtsausdruck", "attractiveness"])
def test_unlisted_attributes_are_refused_too(name: str) -> None:
    req = classify(name)
    assert req.allowed is None and req.category is not None
    assert rule_for_category(req.category, ("cn-2025",)) == "CN-18"


@pytest.mark.parametrize("name,allowed", [("faces", "faces"), ("face_count", "faces"), ("box", "box"),
                                          ("boxes", "box"), ("landmarks", "landmarks"), ("score", "score")])
def test_technical_attributes_allowed(name: str, allowed: str) -> None:
    assert classify(name).allowed == allowed and classify(name).category is None


def test_attribute_rules_by_profile() -> None:
    assert rule_for_category("race or ethnicity", ("cn-2025",)) == "CN-18"
    assert rule_for_category("race or ethnicity", ("eu",)) == "EU-01"
    assert rule_for_category("emotion", ("eu",)) == "EU-03"
    assert rule_for_category("emotion", ("cn-2025",)) == "CN-18"
    assert rule_for_category("political opinion", ("us-bipa",)) == "EU-01"  # refused whatever the profile
    assert rule_for_category("age", ("cn-2025",)) == "CN-06"


# -- the catalogue ---------------------------------------------------------------------------------
RULE_ROW = re.compile(r"^\| ([A-Z]{2}-\d+[a-z]?) \|([^|]*)\|([^|]*)\|$", re.M)
RULE_ID = re.compile(r"(?<![A-Za-z0-9-])([A-Z]{2}-\d{2}[a-z]?)(?![A-Za-z0-9])")


def requirements() -> dict[str, str]:
    """Rule ID -> its "Enforce / record" (or "How") text, for every row of every family."""
    doc = datasets().parent / "docs" / "requirements.md"
    if not doc.is_file():
        pytest.skip(f"the requirements document is absent ({doc})")
    rows = {rid: how.strip() for rid, _, how in RULE_ROW.findall(doc.read_text())}
    assert len(rows) >= 30
    return rows


def test_catalogue_holds_every_rule_of_every_family() -> None:
    rows = requirements()
    families = {rid.split("-")[0] for rid in rows}
    assert {"CN", "EU", "US", "PA", "ST"} <= families, families
    assert set(RULES_BY_ID) == set(rows), set(RULES_BY_ID) ^ set(rows)
    for rid, how in rows.items():
        mode = RULES_BY_ID[rid].mode
        expected = "enforce" if how.startswith("Enforce") else "record" if how.startswith("Record") else "measure"
        assert mode == expected, (rid, mode, how[:40])


def test_every_rule_id_in_the_code_is_in_requirements() -> None:
    """No refusal, finding or report line can name a rule an assessor cannot look up."""
    rows = requirements()
    package = Path(__file__).resolve().parents[1] / "safeface"
    seen: dict[str, str] = {}
    for path in sorted(package.rglob("*.py")):
        for rid in RULE_ID.findall(path.read_text(encoding="utf-8")):
            seen.setdefault(rid, str(path.relative_to(package)))
    unknown = {rid: where for rid, where in seen.items() if rid not in rows}
    assert not unknown, unknown
    assert {"CN-15", "CN-16b", "EU-05", "US-02", "PA-01", "PA-02"} <= set(seen)


def test_capture_rules_hold_under_every_profile() -> None:
    """PA-01 and PA-02 belong to no profile: a purpose that asks for them gets them anywhere."""
    for profiles in (("cn-2025",), ("eu",), ("us-bipa",), ("eu", "us-bipa")):
        assert rule_for("liveness", profiles) == "PA-01" and rule_for("capture-quality", profiles) == "PA-02"
    assert RULES_BY_ID["PA-01"].profile == RULES_BY_ID["PA-02"].profile == "capture"
    assert {"PA-01", "PA-02"} <= {r.id for r in active_rules(("us-bipa",))}


def test_every_concept_rule_exists() -> None:
    for concept, table in CONCEPTS.items():
        for profile, rid in table.items():
            assert rid in RULES_BY_ID and RULES_BY_ID[rid].profile == profile, (concept, rid)
    assert rule_for("filing", ("eu",)) is None and rule_for("filing", ("eu", "cn-2025")) == "CN-17"


@pytest.mark.parametrize("guardian", [None, "", " ", "\t\n", "\u3000"])
def test_a_blank_guardian_names_no_one(guardian: Any) -> None:
    """A child's consent names a guardian; a blank one (any JOSE library can sign " ") is none."""
    from safeface.policy.deployment.floors import guardian_problem

    child = (TODAY - dt.timedelta(days=365 * 10)).isoformat()
    assert guardian_problem(14, child, guardian, TODAY) is not None
    assert guardian_problem(14, child, "Parent Name", TODAY) is None
