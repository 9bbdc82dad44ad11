"""Settings that would weaken protection, and the floors under every profile: the matching and
filing thresholds, the assessment digest, ended purposes, private spaces and minors. Each test
tries what an operator editing deployment.json by hand could do. No images here, except the
one facade test of an ended purpose."""

from __future__ import annotations

import datetime as dt
import math
import re
import sys
from pathlib import Path
from typing import Any, Callable

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

sys.path.insert(0, str(Path(__file__).resolve().parent))
from policy_support import (  # noqa: E402
    Clock, EmptyStore, authorize, consent, demo_deployment, images, make_workspace, open_sf,
)

from safeface.errors import ConfigError, PolicyViolation  # noqa: E402
from safeface.policy import deployment as deployment_pkg  # noqa: E402
from safeface.policy.deployment import Deployment, guardian_age, private_space  # noqa: E402
from safeface.policy.guard import Guard  # noqa: E402
from safeface.policy.issuer import issue_consent  # noqa: E402
from safeface.policy.tokens import key_id  # noqa: E402
from safeface.workspace.state import PolicyState  # noqa: E402

NOW = dt.datetime(2026, 6, 15, 12, 0, tzinfo=dt.timezone.utc)
TODAY = NOW.date()
PROFILES = (("cn-2025",), ("eu",), ("us-bipa",))


def deployment(profiles: tuple[str, ...] = ("cn-2025",), edit: Callable[[dict[str, Any]], None] | None = None,
               reassess: bool = True) -> Deployment:
    return demo_deployment(TODAY - dt.timedelta(days=10), profiles, edit, reassess, deployment_id="floors-test")


@pytest.fixture(scope="module")
def issuer() -> Ed25519PrivateKey:
    return Ed25519PrivateKey.generate()


class G:
    """The guard, called as the facade calls it, by an operator."""

    def __init__(self, guard: Guard) -> None:
        self.guard = guard
        self.deployment = guard.deployment

    def authorize(self, operation: str, purpose: str, now: dt.datetime, **kw: Any) -> Any:
        return authorize(self.guard, operation, purpose, now, **kw)


@pytest.fixture()
def make_guard(tmp_path: Path, issuer: Ed25519PrivateKey) -> Any:
    states: list[PolicyState] = []

    def make(dep: Deployment) -> G:
        state = PolicyState(tmp_path / f"policy{len(states)}.db")
        states.append(state)
        return G(Guard(dep, {key_id(issuer.public_key()): issuer.public_key()}, {}, state, lambda s: "p-" + s,
                       lambda tid: "t-" + tid, EmptyStore()))

    yield make
    for s in states:
        s.close()


def token(issuer: Ed25519PrivateKey, dep: Deployment, subject: str = "alice", **kw: Any) -> str:
    return issue_consent(issuer, dep, subject, ["demo"], now=NOW - dt.timedelta(hours=1), **kw)[0]


def refused(rule: str, fn: Callable[[], Any]) -> PolicyViolation:
    with pytest.raises(PolicyViolation) as info:
        fn()
    assert info.value.rule == rule, info.value
    return info.value


def failing(dep: Deployment, today: dt.date = TODAY) -> dict[str, str]:
    return {f.rule: f.message for f in dep.problems(today)}


# -- the split: one package, the public names where they were ----------------------------------
def test_deployment_package_keeps_its_public_names() -> None:
    from safeface.policy.deployment import calendar, model, samples, validation

    assert deployment_pkg.Deployment is model.Deployment and deployment_pkg.demo_config is samples.demo_config
    assert deployment_pkg.Finding is validation.Finding
    assert deployment_pkg.working_days_after is calendar.working_days_after
    assert deployment_pkg.working_days_after(dt.date(2026, 6, 12), 1) == dt.date(2026, 6, 15)  # Friday -> Monday


# -- matching thresholds (plain, masked, both masked): finite, in (0, 1] ------------------------
THRESHOLDS = {"threshold": "match_threshold", "masked_threshold": "masked_threshold",
              "both_masked_threshold": "both_masked_threshold"}


@pytest.mark.parametrize("bad", [math.nan, -1, 0, 2, math.inf, -math.inf, 1.0000001, True, "0.9"])
@pytest.mark.parametrize("profiles", PROFILES)
@pytest.mark.parametrize("key", sorted(THRESHOLDS))
def test_matching_threshold_outside_0_1_refuses_every_call(make_guard, issuer, bad, profiles, key) -> None:
    # A threshold of -1, 0 or NaN lets a stranger verify as anyone (on the masked path, anyone
    # wearing a mask); 2 lets nobody match.
    dep = deployment(profiles, lambda r: r["matching"].__setitem__(key, bad))
    assert f"matching.{key}" in failing(dep).get("CN-16", "")
    with pytest.raises(ConfigError, match=f"matching.{key}"):
        getattr(dep, THRESHOLDS[key])
    g = make_guard(dep)
    for op in ("enroll", "verify", "identify"):
        e = refused("CN-16", lambda: g.authorize(op, "demo", NOW, subject="alice", consent=token(issuer, dep)))
        assert f"matching.{key}" in e.message


@pytest.mark.parametrize("good", [0.5, 0.91, 1, 1.0, None])
def test_matching_threshold_in_range_is_allowed(make_guard, issuer, good) -> None:
    dep = deployment(edit=lambda r: r["matching"].__setitem__("threshold", good))
    assert failing(dep) == {}
    assert dep.match_threshold == (None if good is None else float(good))
    assert make_guard(dep).authorize("verify", "demo", NOW, subject="alice", consent=token(issuer, dep))


# -- filing threshold: cn-2025 files at 100,000 at the latest ----------------------------------
@pytest.mark.parametrize("bad", [100_001, 10**9, math.inf, math.nan, 0, -5, 2.5, "lots", True])
def test_cn_filing_threshold_cannot_exceed_100000(make_guard, issuer, bad) -> None:
    dep = deployment(edit=lambda r: r["filing"].__setitem__("threshold", bad))
    assert "filing.threshold" in failing(dep).get("CN-17", "")
    refused("CN-17", lambda: make_guard(dep).authorize("enroll", "demo", NOW, subject="a", consent=token(issuer, dep)))


def test_filing_threshold_within_the_cap_is_allowed() -> None:
    for value in (100_000, 10_000, 1, None):
        dep = deployment(edit=lambda r: r["filing"].__setitem__("threshold", value))
        assert failing(dep) == {} and dep.filing_threshold == (value or 100_000)
    # Filing is a cn-2025 rule: elsewhere the threshold has no legal meaning and is not capped.
    assert failing(deployment(("eu",), lambda r: r["filing"].__setitem__("threshold", 10**6))) == {}


def test_report_is_written_for_a_deployment_with_invalid_thresholds(tmp_path: Path) -> None:
    import json

    def edit(r: dict[str, Any]) -> None:
        r["filing"]["threshold"] = 0
        r["matching"]["threshold"] = -1

    ws = make_workspace(tmp_path / "ws", edit=edit)
    with open_sf(ws) as sf:
        paths = sf.report(tmp_path / "report")
    report = json.loads(Path(paths["json"]).read_text())
    assert report["can_process"] is False and report["filing"]["threshold"] == 0
    states = {r["id"]: r["state"] for r in report["rules"]}
    assert states["CN-16"] == states["CN-17"] == "failing"


def test_report_lists_the_floors_under_every_profile(tmp_path: Path) -> None:
    import json

    ws = make_workspace(tmp_path / "ws", profiles=("eu",))
    with open_sf(ws) as sf:
        paths = sf.report(tmp_path / "report")
    states = {r["id"]: r["state"] for r in json.loads(Path(paths["json"]).read_text())["rules"]}
    assert states["CN-15"] == states["CN-06"] == "satisfied"  # not "profile cn-2025 is not active"


# -- the assessment digest covers every setting that weakens protection -----------------------
WEAKENING = {
    "longer retention": lambda r: r["purposes"]["demo"].__setitem__("retention_days", 3650),
    "later end date": lambda r: r["purposes"]["demo"].__setitem__("end_date", "2030-01-01"),
    "lower matching threshold": lambda r: r["matching"].__setitem__("threshold", 0.5),
    "higher filing threshold": lambda r: r["filing"].__setitem__("threshold", 50_000),
    "location kind": lambda r: r["location"].__setitem__("kind", "shop floor"),
    "location class": lambda r: r["location"].update({"class": "public-place", "capture_area": "hall",
                                                      "signage_attested": True}),
    "wider role": lambda r: r["roles"]["kiosk"].append("enroll"),
    "default role": lambda r: r.__setitem__("default_role", "kiosk"),
    "added profile": lambda r: r.__setitem__("profiles", ["cn-2025", "eu"]),
    "added purpose": lambda r: r["purposes"].__setitem__("marketing", dict(r["purposes"]["demo"])),
    "no alternative, by law": lambda r: r["purposes"]["demo"].__setitem__("mandatory_by_law", "some act"),
    "public safety": lambda r: r["purposes"]["demo"].__setitem__("public_safety", True),
    "method": lambda r: r["matching"].__setitem__("method", "arcface-512"),
    "bipa grace": lambda r: r["bipa"].__setitem__("grace_days_after_purpose", 300),
    "eu guardian age": lambda r: r["minors"].__setitem__("eu_guardian_age", 13),
    # Tokens are bound to the id: a borrowed id would accept another deployment's tokens.
    "another deployment's id": lambda r: r.__setitem__("id", "0f1e2d3c-4b5a-4968-8776-a5b4c3d2e1f0"),
    "audit witness moved": lambda r: r.__setitem__("audit", {"witness": "/mnt/elsewhere/ws.anchor"}),
    # The masked path's thresholds weaken it as the plain one does (masked impostors match).
    "lower masked threshold": lambda r: r["matching"].__setitem__("masked_threshold", 0.5),
    "lower both-masked threshold": lambda r: r["matching"].__setitem__("both_masked_threshold", 0.5),
}


@pytest.mark.parametrize("what", sorted(WEAKENING))
def test_assessment_goes_stale_when_a_weakening_setting_changes(what) -> None:
    dep = deployment(edit=WEAKENING[what], reassess=False)
    assert "CN-09" in failing(dep), f"{what} changed without a new assessment and the deployment still validates"
    assert "CN-09" not in failing(deployment(edit=WEAKENING[what], reassess=True))


CAPTURE_RELAXED = {
    "masked references accepted": lambda p: p["quality"].__setitem__("max_mask_confidence", 1),
    "lower eye-distance floor": lambda p: p["quality"].__setitem__("min_eye_distance", 10),
    "capture quality dropped": lambda p: (p.pop("quality"), p.__setitem__("capture_quality", "none")),
}


@pytest.mark.parametrize("what", sorted(CAPTURE_RELAXED))
def test_relaxing_capture_quality_after_assessment_makes_it_stale(what) -> None:
    """PA-02's floors (the mask bar among them) are covered by the assessment like the matching
    threshold: relaxing one by hand leaves the deployment unable to process until reassessed."""
    def edit(r: dict[str, Any]) -> None:
        r["purposes"]["demo"].update(capture_quality="required", quality={"max_mask_confidence": 0.9})
        r["assessment"]["covers"] = Deployment.from_dict(r).config_digest()
        CAPTURE_RELAXED[what](r["purposes"]["demo"])

    assert "CN-09" in failing(deployment(edit=edit, reassess=False))


def test_the_report_names_a_relaxed_mask_bar_and_the_masked_thresholds() -> None:
    """What the assessor reads: a purpose accepting masked references, and masked thresholds set
    by hand, are named in the findings, not hidden behind "default"."""
    dep = deployment(edit=lambda r: (
        r["purposes"]["demo"].update(capture_quality="required", quality={"max_mask_confidence": 1}),
        r["matching"].update(masked_threshold=0.93, both_masked_threshold=0.96)))
    said = {f.rule: f.message for f in dep.findings(TODAY)}
    assert "'max_mask_confidence': 1.0" in said["PA-02"]
    assert "masked 0.93, both masked 0.96" in said["CN-16"]


def test_filing_reference_and_notice_do_not_need_a_new_assessment() -> None:
    # Recording the filing reference after filing must not stop processing; the notice has its
    # own hash bound into every consent (CN-02).
    dep = deployment(edit=lambda r: (r["filing"].__setitem__("reference", "Filed 2026-123"),
                                     r["notice"].__setitem__("text", "reworded")), reassess=False)
    assert failing(dep) == {}


def test_raising_retention_after_assessment_refuses_until_reassessed(make_guard, issuer) -> None:
    dep = deployment()
    assert make_guard(dep).authorize("enroll", "demo", NOW, subject="alice", consent=token(issuer, dep))
    raised = deployment(edit=lambda r: r["purposes"]["demo"].__setitem__("retention_days", 365), reassess=False)
    e = refused("CN-09", lambda: make_guard(raised).authorize("enroll", "demo", NOW, subject="alice",
                                                              consent=token(issuer, raised)))
    assert "assess" in e.message
    again = deployment(edit=lambda r: r["purposes"]["demo"].__setitem__("retention_days", 365))
    assert make_guard(again).authorize("enroll", "demo", NOW, subject="alice", consent=token(issuer, again))


# -- an ended purpose processes nothing; its templates expire at its end ----------------------
@pytest.mark.parametrize("profiles,rule", [(("cn-2025",), "CN-08"), (("eu",), "CN-08"), (("us-bipa",), "US-01")])
def test_purpose_past_its_end_date_is_refused(make_guard, issuer, profiles, rule) -> None:
    yesterday = (TODAY - dt.timedelta(days=1)).isoformat()
    dep = deployment(profiles, lambda r: r["purposes"]["demo"].__setitem__("end_date", yesterday))
    g = make_guard(dep)
    for op in ("enroll", "verify"):
        e = refused(rule, lambda: g.authorize(op, "demo", NOW, subject="alice", consent=token(issuer, dep)))
        assert "ended" in e.message and yesterday in e.message
    # Up to the end of its end date it still runs.
    last_day = deployment(profiles, lambda r: r["purposes"]["demo"].__setitem__("end_date", TODAY.isoformat()))
    assert make_guard(last_day).authorize("enroll", "demo", NOW, subject="alice", consent=token(issuer, last_day))
    end = dt.datetime.combine(TODAY, dt.time(23, 59, 59), tzinfo=dt.timezone.utc)
    assert last_day.expiry(last_day.purposes["demo"], NOW) == end


def test_ended_purpose_through_the_facade(tmp_path: Path) -> None:
    imgs = images()
    clock = Clock()
    end = clock.now.date() + dt.timedelta(days=3)
    ws = make_workspace(tmp_path / "ws", edit=lambda r: r["purposes"]["demo"].__setitem__("end_date", end.isoformat()),
                        today=clock.now.date() - dt.timedelta(days=1))
    t = consent(ws, "alice")
    with open_sf(ws, clock) as sf:
        e = sf.enroll(imgs / "obama.jpg", "alice", "demo", t)
        assert e.expires_at == dt.datetime.combine(end, dt.time(23, 59, 59), tzinfo=dt.timezone.utc)
        clock.advance(days=4)
        refused("CN-08", lambda: sf.verify(imgs / "obama2.jpg", "alice", "demo", t))
        refused("CN-08", lambda: sf.enroll(imgs / "obama2.jpg", "alice", "demo", t))
        receipt = sf.purge_expired()
        assert receipt is not None and receipt.templates_removed == 1


def test_a_purpose_that_ends_while_an_enrolment_is_processed_stores_nothing(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The store's write decided the purpose's end again with the time the call started, which
    could never refuse: an enrolment judged before midnight of the purpose's last day and
    written after it stored a row for an ended purpose. The write reads the clock itself."""
    from safeface.sdk.facade import SafeFace

    imgs = images()
    clock = Clock()
    end = clock.now.date()
    ws = make_workspace(tmp_path / "ws", edit=lambda r: r["purposes"]["demo"].__setitem__("end_date", end.isoformat()),
                        today=clock.now.date() - dt.timedelta(days=1))
    embed = SafeFace._embed_single
    monkeypatch.setattr(SafeFace, "_embed_single",
                        lambda self, *a, **k: (embed(self, *a, **k), clock.advance(days=1))[0])
    with open_sf(ws, clock) as sf:
        refused("CN-08", lambda: sf.enroll(imgs / "obama.jpg", "alice", "demo", consent(ws, "alice")))
        assert sf.records() == []


# -- private spaces: a floor under every profile, names normalised -----------------------------
PRIVATE = ["Changing Room", "restroom", "Hotel-Rooms", "locker room", "Ｃｈａｎｇｉｎｇ Ｒｏｏｍ", "ＲＥＳＴＲＯＯＭ",
           "rest rooms", "toilets", "Public_Baths", "sauna", "dormitories", "fitting-room", "guest room 12",
           "women's dressing rooms", "shower", "washroom", "Lavatory", "bathroom", "WC", "更衣室", "酒店客房"]
NOT_PRIVATE = ["premises", "office lobby", "showroom", "classroom", "hotel lobby", "bathroom supplies aisle"]


@pytest.mark.parametrize("name", PRIVATE)
@pytest.mark.parametrize("profiles", PROFILES)
def test_private_space_refused_under_every_profile(make_guard, issuer, name, profiles) -> None:
    for field in ("class", "kind"):
        dep = deployment(profiles, lambda r: r["location"].__setitem__(field, name))
        assert "CN-15" in failing(dep), (name, field, profiles)
        refused("CN-15", lambda: make_guard(dep).authorize("verify", "demo", NOW, subject="alice",
                                                           consent=token(issuer, dep)))


def test_private_space_names_and_look_alikes() -> None:
    assert private_space("Ｈｏｔｅｌ－Ｒｏｏｍｓ") == "hotel room"  # fullwidth letters and hyphen
    assert private_space("LOCKER\u00a0ROOM") == "locker room"  # no-break space
    assert private_space("changingroom") == private_space("changing_room") == "changing room"
    # Only the exact catalogue words once counted; the old spelling still does.
    assert private_space("hotel-room") == "hotel room" and private_space("public-bath") == "public bath"


@pytest.mark.parametrize("name", NOT_PRIVATE[:-1])
def test_ordinary_places_are_not_private(name) -> None:
    assert private_space(name) is None
    assert failing(deployment(edit=lambda r: r["location"].__setitem__("kind", name))) == {}


def test_location_class_is_normalised() -> None:
    assert failing(deployment(edit=lambda r: r["location"].__setitem__("class", "Personal_Device"))) == {}
    assert "CN-14" in failing(deployment(edit=lambda r: r["location"].__setitem__("class", "PUBLIC PLACE")))


def test_floor_rules_are_active_under_every_profile() -> None:
    from safeface.policy.rules import active_rules, rule_for

    for profiles in PROFILES:
        assert {"CN-06", "CN-15"} <= {r.id for r in active_rules(profiles)}
        assert rule_for("private-space", profiles) == "CN-15" and rule_for("guardian", profiles) == "CN-06"


# -- guardian consent for minors: a floor under every profile ----------------------------------
def years_ago(years: int, days: int = 1) -> str:
    """A birth date that makes the subject `years` old today (a day past the birthday)."""
    return (TODAY.replace(year=TODAY.year - years) - dt.timedelta(days=days)).isoformat()


@pytest.mark.parametrize("profiles,age", [(("cn-2025",), 14), (("eu",), 16), (("us-bipa",), 13),
                                          (("us-bipa", "cn-2025"), 14), (("cn-2025", "eu"), 16),
                                          (("us-bipa", "eu", "cn-2025"), 16)])
def test_guardian_age_per_profile_strictest_wins(make_guard, issuer, profiles, age) -> None:
    dep = deployment(profiles)
    assert dep.guardian_age == age == guardian_age(profiles)
    g = make_guard(dep)
    e = refused("CN-06", lambda: g.authorize("enroll", "demo", NOW, subject="kid",
                                             consent=token(issuer, dep, "kid", birth_date=years_ago(age - 1))))
    assert f"under {age}" in e.message
    assert g.authorize("enroll", "demo", NOW, subject="kid",
                       consent=token(issuer, dep, "kid", birth_date=years_ago(age - 1), guardian="A Parent"))
    assert g.authorize("enroll", "demo", NOW, subject="kid", consent=token(issuer, dep, "kid", birth_date=years_ago(age)))


def test_eu_guardian_age_is_configurable_from_13_to_16(make_guard, issuer) -> None:
    dep = deployment(("eu",), lambda r: r["minors"].__setitem__("eu_guardian_age", 13))
    assert dep.guardian_age == 13
    assert make_guard(dep).authorize("enroll", "demo", NOW, subject="kid",
                                     consent=token(issuer, dep, "kid", birth_date=years_ago(13)))
    # Stacked with cn-2025, 14 still holds.
    assert deployment(("eu", "cn-2025"), lambda r: r["minors"].__setitem__("eu_guardian_age", 13)).guardian_age == 14
    for bad in (12, 17, 0, "16", 15.5, None, True):
        dep = deployment(("eu",), lambda r: r["minors"].__setitem__("eu_guardian_age", bad))
        assert "eu_guardian_age" in failing(dep).get("CN-06", ""), bad
        refused("CN-06", lambda: make_guard(dep).authorize("enroll", "demo", NOW, subject="a",
                                                           consent=token(issuer, dep, "a")))


def test_malformed_birth_date_is_refused_under_every_profile(make_guard, issuer) -> None:
    for profiles in PROFILES:
        dep = deployment(profiles)
        wire, tok = issue_consent(issuer, dep, "kid", ["demo"], now=NOW - dt.timedelta(hours=1))
        assert tok.birth_date is None
        from safeface.policy.deployment.floors import guardian_problem

        assert guardian_problem(dep.guardian_age, "2020-13-45", None, TODAY) is not None
        assert guardian_problem(dep.guardian_age, None, None, TODAY) is None


@pytest.mark.parametrize("name", ["d\u0435mo",  # Cyrillic е
                                  "dem\u03bf",  # Greek ο
                                  "de\u200bmo",  # zero-width space
                                  "\uff44\uff45\uff4d\uff4f",  # fullwidth
                                  "ent\u0131\u0301",  # dotless ı with an acute, as "entí"
                                  "demo ", "DEMO", ""])
def test_a_purpose_that_passes_for_another_is_refused(name: str) -> None:
    """An operator adds a purpose that reads as "demo" in the assessment, a consent and the audit
    log (a look-alike letter, an invisible one, fullwidth letters, another case) with laxer rules:
    the deployment does not load."""
    def add(raw: dict[str, Any]) -> None:
        raw["purposes"][name] = dict(raw["purposes"]["demo"], liveness="none")

    with pytest.raises(ConfigError, match="purpose name"):
        deployment(edit=add)


def test_purpose_names_in_one_script_load() -> None:
    def add(raw: dict[str, Any]) -> None:
        for name in ("门禁", "контроль доступа", "access control", "staff-entry.v2", "门禁A区", "IDカード認証",
                     "Giriş nəzarəti"):
            raw["purposes"][name] = dict(raw["purposes"]["demo"])

    assert {"demo", "门禁", "контроль доступа", "access control", "staff-entry.v2", "门禁A区", "IDカード認証",
            "Giriş nəzarəti"} <= set(deployment(edit=add).purposes)


@pytest.mark.parametrize("first,second", [("door-1", "door\u20101"),  # a Unicode hyphen
                                          ("door 2", "door  2"),  # two spaces
                                          ("cocoa", "\u0441\u043e\u0441\u043e\u0430"),  # all Cyrillic
                                          ("\u0441\u043e\u0441\u043e\u0430", "cocoa"),  # the look-alike first
                                          ("Stra\u00dfe", "STRASSE")])  # case alone: ß is SS in capitals
def test_two_purposes_that_print_alike_are_refused(first: str, second: str) -> None:
    """Each name alone is fine, but side by side, with different retention, an assessor or a
    reader of the report cannot tell which is which."""
    def add(raw: dict[str, Any]) -> None:
        raw["purposes"][first] = dict(raw["purposes"]["demo"], retention_days=30)
        raw["purposes"][second] = dict(raw["purposes"]["demo"], retention_days=3650)

    with pytest.raises(ConfigError, match="print alike"):
        deployment(edit=add)


@pytest.mark.parametrize("name", ["auditor\u200b", "\u0430uditor", "\u202eauditor\u202c", "auditor\x1b[8m-all",
                                  "auditor\nkiosk", "auditor ", "Auditor", "audit\u043er",
                                  "\u0393\u043e\u0441\u0442\u044c"])  # "Гость" with a Greek Γ
def test_a_role_that_passes_for_another_is_refused(name: str) -> None:
    """Role names were never checked: a role with every operation, named to print as the
    report-only "auditor" (an invisible, Cyrillic or direction-changing character, a terminal
    escape, a newline, a trailing space, another case), showed as "auditor" in the console's
    key list and in the audit note of the key issued for it."""
    def add(raw: dict[str, Any]) -> None:
        raw.setdefault("roles", {"operator": ["enroll", "verify", "identify", "erase", "report"]})
        raw["roles"]["auditor"] = ["report"]
        raw["roles"]["\u0413\u043e\u0441\u0442\u044c"] = ["verify"]  # "Гость", a guest
        raw["roles"][name] = ["enroll", "verify", "identify", "erase", "export", "report"]

    with pytest.raises(ConfigError, match="role name"):
        deployment(edit=add)


@pytest.mark.parametrize("name", ["\u05e7\u05e0\u05d9\u05d5\u05df \u05e2\u05d6\u05e8\u05d9\u05d0\u05dc\u05d9 "
                                  "(\u05e7\u05d5\u05de\u05d4 2)\u200f",  # a mall, with a right-to-left mark
                                  "\u0645\u0631\u0643\u0632 \u062a\u0633\u0648\u0642\u061c"])  # with an Arabic letter mark
def test_an_honest_right_to_left_location_with_a_direction_mark_loads(name: str) -> None:
    """A direction mark moves no letter, only where neutral punctuation sits; right-to-left
    editors write them. Refusing every format character refused these, and stopped processing."""
    assert "CN-15" not in failing(deployment(edit=lambda r: r["location"].__setitem__("kind", name)))


@pytest.mark.parametrize("name,hidden", [("\u202emoortser\u202c", None),  # "restroom", drawn right to left
                                         ("To\u0131let", "toilet")])  # a dotless ı
def test_a_location_that_prints_as_a_private_space_by_direction_or_a_dotless_i_is_refused(
        name: str, hidden: str | None) -> None:
    if hidden is not None:
        assert private_space(name) == hidden
    assert "CN-15" in failing(deployment(edit=lambda r: r["location"].__setitem__("kind", name)))


# -- look-alike letters in a location name ------------------------------------------------------
LOOKALIKE_PRIVATE = {"R\u0435stroom": "restroom",  # Cyrillic е
                     "Changing r\u043eom": "changing room",  # Cyrillic о
                     "Hotel r\u03bfom": "hotel room",  # Greek ο
                     "\u0422oilets": "toilet",  # Cyrillic Т
                     "W\u0421": "wc",  # Cyrillic С
                     "\u0405\u0430un\u0430": "sauna"}  # Cyrillic Ѕ and а


@pytest.mark.parametrize("name", sorted(LOOKALIKE_PRIVATE))
def test_a_private_space_spelt_with_look_alike_letters_is_still_refused(make_guard, issuer, name) -> None:
    """An operator spells a private space with one Cyrillic or Greek letter that prints as the
    Latin one ("Rеstroom"), as location.kind or class: it used to miss the catalogue, so the
    assessment was recorded and enrolment allowed. Now the word is read as it prints (CN-15),
    and a word mixing scripts is named with the letter that does not belong."""
    assert private_space(name) == LOOKALIKE_PRIVATE[name]
    for field in ("class", "kind"):
        dep = deployment(edit=lambda r: r["location"].__setitem__(field, name))
        assert "CN-15" in failing(dep), (name, field)
        refused("CN-15", lambda: make_guard(dep).authorize("enroll", "demo", NOW, subject="alice",
                                                           consent=token(issuer, dep)))


@pytest.mark.parametrize("name,hidden", [("Hotel R00M", "hotel room"),  # zeros for the o's
                                         ("\u0422\u041e\u0406\u04c0\u0415\u0422\u0405", "toilet"),  # all Cyrillic
                                         ("\u051c\u0421", "wc")])  # Cyrillic Ԝ and С
def test_a_private_space_written_wholly_in_look_alike_letters_is_refused(name, hidden) -> None:
    """A name in which every letter is drawn as a Latin one, of one script ("ТОІӀЕТЅ" in
    Cyrillic) or with digits for letters ("R00M"), mixes nothing, but prints as a private space:
    it is read as the Latin word it shows."""
    assert private_space(name) == hidden
    message = failing(deployment(edit=lambda r: r["location"].__setitem__("kind", name)))["CN-15"]
    assert f"private space ({hidden})" in message


@pytest.mark.parametrize("name,letter", [("L\u043ebby", "U+043E CYRILLIC SMALL LETTER O"),
                                         ("Office \u0455\u0430\u0441\u0435", "U+0455 CYRILLIC SMALL LETTER DZE"),
                                         ("p\u0433emises", "U+0433 CYRILLIC SMALL LETTER GHE")])
def test_a_location_word_that_mixes_scripts_is_refused_naming_the_letter(make_guard, issuer, name, letter) -> None:
    """A location name that prints as another without naming a catalogued place ("Lоbby" with a
    Cyrillic о) could hide one the catalogue does not draw: CN-15 refuses it and names the
    letter, so the operator sees what to rewrite."""
    from safeface.policy.deployment.floors import check_location_names

    with pytest.raises(ConfigError, match=re.escape(letter)):
        check_location_names({"kind": name})
    dep = deployment(edit=lambda r: r["location"].__setitem__("kind", name))
    assert letter in failing(dep)["CN-15"]
    refused("CN-15", lambda: make_guard(dep).authorize("verify", "demo", NOW, subject="alice",
                                                       consent=token(issuer, dep)))


@pytest.mark.parametrize("name", ["\u0422\u0443\u0430\u043b\u0435\u0442 \u21162",  # Russian "toilet" No. 2
                                  "\u03a3\u03ac\u03bf\u03c5\u03bd\u03b1",  # Greek "sauna"
                                  "\u041f\u0440\u0438\u0451\u043c\u043d\u0430\u044f", "office lobby", "Hotel lobby"])
def test_a_location_name_in_one_script_is_not_refused_for_its_script(name) -> None:
    """A genuine word wholly in Cyrillic or Greek is its own name: no letter of it is refused for
    its script (the catalogue is of English and Chinese names)."""
    from safeface.policy.deployment.floors import check_location_names

    check_location_names({"class": "premises", "kind": name})
    assert "CN-15" not in failing(deployment(edit=lambda r: r["location"].__setitem__("kind", name)))


# -- flags and lists read as JSON writes them --------------------------------------------------
def public_place(public_safety: Any) -> Callable[[dict[str, Any]], None]:
    def edit(r: dict[str, Any]) -> None:
        r["location"] = {"class": "public-place", "capture_area": "station concourse", "signage_attested": True}
        r["purposes"]["demo"]["public_safety"] = public_safety
    return edit


@pytest.mark.parametrize("value", ["false", "no", "0", "", 0, 1, "true", [], {}])
def test_public_safety_must_be_a_json_boolean(value) -> None:
    """A marketing purpose in a public place writes "public_safety": "false": bool() counted the
    string as true, so CN-14 (public places serve public safety only) passed. Now any value but
    true or false is refused when the deployment is read, naming the field."""
    with pytest.raises(ConfigError, match=r"purposes\.demo\.public_safety must be true or false"):
        deployment(edit=public_place(value))
    assert "CN-14" in failing(deployment(edit=public_place(False)))
    assert "CN-14" not in failing(deployment(edit=public_place(True)))


@pytest.mark.parametrize("value", ["none", "PIN code", "staff check", [1], [None], {"pin": True},
                                   ["PIN", 2], True])
def test_alternatives_must_be_a_list_of_strings(value) -> None:
    """"alternatives": "none" became ('n', 'o', 'n', 'e'), four alternatives, so CN-11 (a
    non-biometric alternative for people who refuse) passed for a purpose that has none. Now
    only a list of strings is read; anything else is refused, naming the field."""
    with pytest.raises(ConfigError, match=r"purposes\.demo\.alternatives must be a list of strings"):
        deployment(edit=lambda r: r["purposes"]["demo"].__setitem__("alternatives", value))
    assert "CN-11" in failing(deployment(edit=lambda r: r["purposes"]["demo"].__setitem__("alternatives", [])))
    assert "CN-11" in failing(deployment(edit=lambda r: r["purposes"]["demo"].__setitem__("alternatives", ["  "])))


@pytest.mark.parametrize("field,edit,message", [
    ("signage_attested", lambda r: r["location"].__setitem__("signage_attested", "true"),
     "location.signage_attested must be true or false"),
    ("texas", lambda r: r["bipa"].__setitem__("texas", "no"), "bipa.texas must be true or false"),
    ("grace", lambda r: r["bipa"].__setitem__("grace_days_after_purpose", "400"),
     "bipa.grace_days_after_purpose must be a whole number"),
    ("attested", lambda r: r["accessibility"].__setitem__("attested", "false"),
     "accessibility.attested must be true or false"),
    ("retention string", lambda r: r["purposes"]["demo"].__setitem__("retention_days", "30"),
     "retention_days must be a whole number"),
    ("retention true", lambda r: r["purposes"]["demo"].__setitem__("retention_days", True),
     "retention_days must be a whole number"),
    ("retention fraction", lambda r: r["purposes"]["demo"].__setitem__("retention_days", 30.5),
     "retention_days must be a whole number"),
    ("necessity", lambda r: r["purposes"]["demo"].__setitem__("necessity", True), "necessity must be text"),
    ("description", lambda r: r["purposes"]["demo"].__setitem__("description", ["a"]), "description must be text"),
    ("role string", lambda r: r["roles"].__setitem__("kiosk", "verify"), "roles.kiosk must be a list of strings"),
    ("roles list", lambda r: r.__setitem__("roles", ["kiosk"]), "roles must be an object"),
])
def test_every_flag_list_and_number_is_read_as_written(field, edit, message) -> None:
    """Every other field read with bool(), tuple(), int() or str() took a value that says one
    thing as another ("texas": "no" as true, "roles": ["kiosk"] as no roles section, hence one
    operator allowed everything). Each is now refused when the deployment is read, with the field
    named and what to write."""
    with pytest.raises(ConfigError, match=message.replace(".", r"\.")):
        deployment(edit=edit)


def test_the_shipped_configurations_still_load() -> None:
    """The demo and blank configurations write every flag, list and number as JSON does; the
    stricter reading takes them as before, and null reads as absent."""
    from safeface.policy.deployment import blank_config, demo_config

    dep = Deployment.from_dict(demo_config(TODAY))
    assert dep.purposes["demo"].alternatives == ("PIN code at the counter", "identity check by staff")
    assert dep.purposes["demo"].public_safety is False and dep.purposes["demo"].retention_days == 30
    assert Deployment.from_dict(blank_config()).purposes["PURPOSE-NAME"].alternatives == ()
    nulls = deployment(edit=lambda r: r["purposes"]["demo"].update({"public_safety": None, "alternatives": None,
                                                                     "retention_days": 30.0}))
    assert nulls.purposes["demo"].public_safety is False and nulls.purposes["demo"].alternatives == ()
    assert nulls.purposes["demo"].retention_days == 30


@pytest.mark.parametrize("kind", ["HoteI room", "Iocker room", "Iavatory", "toiIet"])
def test_a_private_space_with_a_capital_i_for_a_small_l_is_refused(kind: str) -> None:
    """A capital I is drawn as a small l in most sans-serif fonts; a word of mixed case escaped
    both readings of the look-alike check."""
    from safeface.policy.deployment.floors import private_space

    assert private_space(kind) is not None


@pytest.mark.parametrize("field", ["notice", "controller", "filing"])
def test_what_people_are_told_must_be_text(field: str) -> None:
    """The notice's fields, the controller's name and contact and the filing reference loaded as
    `true` and passed their rules."""
    import datetime as dt

    from safeface.policy.deployment import Deployment, demo_config

    raw = demo_config(dt.date(2026, 12, 1))
    key = {"notice": "retention", "controller": "name", "filing": "reference"}[field]
    raw.setdefault(field, {})[key] = True
    with pytest.raises(ConfigError, match=f"{field}.{key}"):
        Deployment.from_dict(raw)


@pytest.mark.parametrize("name", ["Sports hall\rGym", "Lobby\x08\x08\x08\x08\x08Gym", "Lobby\x1b[8m annex", "Lobby\x85"])
@pytest.mark.parametrize("field", ["kind", "class"])
def test_a_control_character_in_a_location_name_is_refused(name: str, field: str) -> None:
    """A carriage return, backspaces or a terminal code can show an operator another name than
    the one the private-space floor read."""
    dep = demo_deployment(TODAY, ("cn-2025",), lambda r: r["location"].__setitem__(field, name),
                          deployment_id="controls")
    failing = {f.rule: f.message for f in dep.problems(TODAY)}
    assert "CN-15" in failing and "without being seen" in failing["CN-15"], failing


@pytest.mark.parametrize("name,term", [("Dor-mi-tory", "dormitory"), ("Bath ro om", "bathroom"),
                                       ("Locker Ro om", "locker room")])
def test_a_private_space_split_into_three_pieces_is_still_found(name: str, term: str) -> None:
    assert private_space(name) == term


def _bounds_problems(profiles: tuple[str, ...], edit: Callable[[dict[str, Any]], None],
                     assessed: dt.date = TODAY) -> list[str]:
    return [f.rule for f in demo_deployment(assessed, profiles, edit, deployment_id="bounds-test").problems(TODAY)]


@pytest.mark.parametrize("profiles, setting, limit", [
    (("cn-2025",), lambda n: lambda r: r["purposes"]["demo"].__setitem__("retention_days", n), "MAX_RETENTION_DAYS"),
    (("us-bipa",), lambda n: lambda r: r["bipa"].update({"texas": True, "grace_days_after_purpose": n}),
     "TEXAS_MAX_GRACE_DAYS"),
    (("cn-2025",), lambda n: lambda r: r.setdefault("filing", {}).__setitem__("threshold", n),
     "CN_MAX_FILING_THRESHOLD"),
], ids=["retention", "texas-grace", "filing"])
def test_each_bound_is_held_to_the_day(profiles: tuple[str, ...], setting: Any, limit: str) -> None:
    """The suite tried values far past each limit; one past it must be refused too, and the
    yearly review is due the day after its limit."""
    from safeface.policy.deployment import model

    n = getattr(model, limit)
    assert _bounds_problems(profiles, setting(n)) == []
    assert _bounds_problems(profiles, setting(n + 1)) != []


def test_the_yearly_review_is_due_the_day_after_its_limit() -> None:
    from safeface.policy.deployment.model import ASSESSMENT_REVIEW_DAYS

    def no_review(r: dict[str, Any]) -> None:
        r["assessment"].pop("reviewed", None)

    assert _bounds_problems(("cn-2025",), no_review, TODAY - dt.timedelta(days=ASSESSMENT_REVIEW_DAYS)) == []
    assert _bounds_problems(("cn-2025",), no_review, TODAY - dt.timedelta(days=ASSESSMENT_REVIEW_DAYS + 1)) != []
