"""The public API against a hostile app developer: odd arguments that skipped the audited call,
other spellings of a sensitive attribute, an embedding cache slipped into a workspace, an image
that changes between reads, and a view reading what its role may not."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any, Callable

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
from policy_support import consent, images, last_call, make_workspace, open_sf  # noqa: E402

from safeface import InvalidArgument, PolicyViolation, SafeFaceError  # noqa: E402


@pytest.fixture(scope="module")
def imgs() -> Path:
    return images()


def test_a_subject_id_refused_as_malformed_is_on_record(tmp_path: Path, imgs: Path) -> None:
    """The app passes a subject id the SDK refuses (a NUL in it, 300 characters) to
    enroll, verify, export, erase, revoke and a batch enrolment. Each must be refused with
    InvalidArgument and leave an entry in the audit log, as a look-alike id's refusal does
    (test_one_door::test_an_id_refused_as_a_look_alike_is_on_record): a refusal made before
    the audited call began leaves no trace of the attempt."""
    ws = make_workspace(tmp_path / "ws")
    with open_sf(ws) as sf:
        t = consent(ws, "alice")
        unrecorded: list[str] = []
        for bad in ("alice\x00", "u" * 300):
            calls: list[tuple[str, Callable[[], Any]]] = [
                ("enroll", lambda: sf.enroll(imgs / "obama.jpg", bad, "demo", t)),  # type: ignore[arg-type]
                ("verify", lambda: sf.verify(imgs / "obama.jpg", bad, "demo", t)),  # type: ignore[arg-type]
                ("export", lambda: sf.export(bad, "demo", "x.example", t)),  # type: ignore[arg-type]
                ("erase", lambda: sf.erase(bad)),  # type: ignore[arg-type]
                ("revoke", lambda: sf.revoke(subject=bad)),  # type: ignore[arg-type]
                ("enroll", lambda: sf.enroll_many([(imgs / "obama.jpg", bad, t)], "demo")),  # type: ignore[list-item]
            ]
            for op, call in calls:
                before = len(sf.audit_entries())
                with pytest.raises((InvalidArgument, PolicyViolation)):
                    call()
                if len(sf.audit_entries()) != before + 1 or last_call(sf).operation != op:
                    unrecorded.append(f"{op}({bad!r:.12})")
        assert not unrecorded, f"refused with no audit entry: {unrecorded}"
        assert sf.records() == []
        assert sf.audit_verify().entries == len(sf.audit_entries())


def test_a_revocation_or_batch_refused_for_a_malformed_argument_is_on_record(tmp_path: Path) -> None:
    """The app calls revoke with a malformed token reference or a token id that is no string, and
    enroll_many with items that are no triples: each is refused typed and leaves a failed entry."""
    ws = make_workspace(tmp_path / "ws")
    with open_sf(ws) as sf:
        calls: list[tuple[str, Callable[[], Any]]] = [
            ("revoke(token_ref='t-BAD')", lambda: sf.revoke(token_ref="t-BAD")),
            ("revoke(token_id=5)", lambda: sf.revoke(token_id=5)),  # type: ignore[arg-type]
            ("revoke()", lambda: sf.revoke()),
            ("enroll_many([('a',)])", lambda: sf.enroll_many([("a",)], "demo")),  # type: ignore[list-item]
        ]
        unrecorded: list[str] = []
        for name, call in calls:
            before = len(sf.audit_entries())
            with pytest.raises(SafeFaceError):
                call()
            if len(sf.audit_entries()) != before + 1:
                unrecorded.append(name)
        assert not unrecorded, f"refused with no audit entry: {unrecorded}"


@pytest.mark.parametrize("attributes", [None, 5, 3.5])
def test_analyze_with_attributes_that_are_no_list_is_a_typed_error_on_record(tmp_path: Path, imgs: Path,
                                                                             attributes: Any) -> None:
    """The app calls analyze with `attributes` that are not a list of names (None, a number).
    It must get InvalidArgument (never a bare TypeError), and the attempt must be recorded
    like any other analyze refusal."""
    ws = make_workspace(tmp_path / "ws")
    with open_sf(ws) as sf:
        before = len(sf.audit_entries())
        with pytest.raises(SafeFaceError):
            sf.analyze(imgs / "obama.jpg", attributes)
        assert len(sf.audit_entries()) == before + 1 and last_call(sf).operation == "analyze"


@pytest.mark.parametrize("profile,plain,odd", [
    ("cn-2025", "age", "\uff21\uff27\uff25"),            # full-width AGE
    ("cn-2025", "age", "a\u200bge"),                     # a zero-width space inside
    ("eu", "emotion", "\uff45\uff4d\uff4f\uff54\uff49\uff4f\uff4e"),  # full-width emotion
    ("eu", "mood", "m\u00adood"),                        # a soft hyphen inside
])
def test_a_sensitive_attribute_in_another_unicode_form_is_refused_under_its_own_rule(
        tmp_path: Path, imgs: Path, profile: str, plain: str, odd: str) -> None:
    """The app asks analyze for age or emotion written in full-width letters or with an
    invisible character inside. The request must be refused (nothing inferred) and the refusal
    must name the same rule as the plain spelling (CN-06 for age, EU-03 for emotion), so the
    compliance report counts it where it belongs rather than as an 'unlisted attribute'."""
    ws = make_workspace(tmp_path / "ws", profiles=(profile,))
    with open_sf(ws) as sf:
        with pytest.raises(PolicyViolation) as usual:
            sf.analyze(imgs / "obama.jpg", [plain])
        with pytest.raises(PolicyViolation) as other:
            sf.analyze(imgs / "obama.jpg", [odd])
        assert other.value.rule == usual.value.rule, (odd, other.value.rule, usual.value.rule)
        assert last_call(sf).rule == usual.value.rule


def test_an_evaluation_cache_pointed_into_a_workspace_is_refused(tmp_path: Path) -> None:
    """The README says the evaluation's embedding cache "is refused inside a workspace". A
    script points `eval verify --cache` into a workspace folder without naming the workspace
    (--workspace): it must be refused all the same, and a folder beside the workspace taken."""
    from safeface.errors import ConfigError
    from safeface.evaluate.embedcache import check_cache_location

    ws = make_workspace(tmp_path / "ws")
    for inside in (ws.root, ws.root / "evalcache", ws.root / "reports" / "cache"):
        with pytest.raises(ConfigError, match="inside the workspace"):
            check_cache_location(inside, None)
    check_cache_location(tmp_path / "evalcache", None)
    check_cache_location(tmp_path / "evalcache", ws.root)


class _Shifty:
    """A path object (os.PathLike) that names one file for its first `first` reads and
    another after: what a hostile app passes, or what a file rewritten between reads gives."""

    def __init__(self, first_path: Path, then_path: Path, first: int) -> None:
        self.first_path, self.then_path, self.first, self.calls = first_path, then_path, first, 0

    def __fspath__(self) -> str:
        self.calls += 1
        return str(self.first_path if self.calls <= self.first else self.then_path)


def test_an_image_that_changes_between_reads_cannot_slip_a_masked_reference_past_pa02(tmp_path: Path) -> None:
    """A purpose requires capture quality (PA-02), which refuses a masked reference. The app
    passes enroll a path object that names a masked photo while the face is embedded and the
    bare photo when the SDK reads the image again for its mask and quality checks (the same
    happens with a file rewritten between reads). The SDK reads the image once and judges the
    very pixels it embeds: the enrolment is refused PA-02 and nothing is stored."""
    from PIL import Image

    from policy_support import PASSPHRASE, masked_image
    from safeface import SafeFace

    def edit(r: dict[str, Any]) -> None:
        r["purposes"]["demo"]["capture_quality"] = "required"

    ws = make_workspace(tmp_path / "ws", edit=edit)
    masked = tmp_path / "masked.png"
    Image.fromarray(masked_image(images() / "obama.jpg", "n95")).save(masked)
    bare = images() / "obama.jpg"
    with SafeFace.open(ws.root, PASSPHRASE) as sf:  # the default pipeline
        t = consent(ws, "alice")
        with pytest.raises(PolicyViolation) as plain:
            sf.enroll(masked, "alice", "demo", t)
        assert plain.value.rule == "PA-02"
        # The masked photo for the read that makes the template, the bare one for any read after.
        shifty = _Shifty(masked, bare, 1)
        with pytest.raises(PolicyViolation) as swapped:
            sf.enroll(shifty, "alice", "demo", t)  # type: ignore[arg-type]
        assert swapped.value.rule == "PA-02" and shifty.calls == 1  # read once, judged on what was read
        assert sf.records() == []


def test_a_view_whose_role_may_not_read_the_report_reads_no_key_table_or_trusted_keys(tmp_path: Path) -> None:
    """A view acting as the kiosk role (as the service makes one for a kiosk's API key) is
    refused `api_keys()`, `trusted_keys()` and `records()` (README, roles: a view reads the key
    table, the trusted keys and the records only while its role may read the report). The
    attacker asks the same view for `facts()` and `verify_store()`, which hold the key table,
    the trusted keys, the subject count and the store's problems. Each must be
    refused too, and recorded, as the other reads are."""
    ws = make_workspace(tmp_path / "ws")
    with open_sf(ws) as sf:
        sf.issue_api_key("operator", label="back office")
        kiosk = sf.acting_as("kiosk", "gate 3")
        with pytest.raises(PolicyViolation):
            kiosk.api_keys()
        leaked: list[str] = []
        for name, read in (("facts", kiosk.facts), ("verify_store", kiosk.verify_store)):
            try:
                out = read()
            except PolicyViolation:
                continue
            leaked.append(f"{name} -> {str(out)[:80]}")
        assert not leaked, leaked


@pytest.mark.parametrize("twin", ["ALICE", "\u0441\u043e\u0441\u043e\u0430"])  # an all-Cyrillic "сосоа" beside "cocoa"
def test_two_ids_that_print_alike_in_one_batch_enrol_no_one(tmp_path: Path, imgs: Path, twin: str) -> None:
    """The app puts "alice" and "ALICE" (or "cocoa" and an all-Cyrillic "сосоа") in the same
    bulk enrolment, each with a genuine consent, so that neither is yet in the store to clash
    with. The second would be a person an erasure of the first misses. The whole batch must
    be refused, nothing stored, and the attempt recorded."""
    plain = "alice" if twin == "ALICE" else "cocoa"
    ws = make_workspace(tmp_path / "ws")
    with open_sf(ws) as sf:
        before = len(sf.audit_entries())
        with pytest.raises(InvalidArgument, match="same batch"):
            sf.enroll_many([(imgs / "obama.jpg", plain, consent(ws, plain)),
                            (imgs / "biden.jpg", twin, consent(ws, twin))], "demo")
        assert sf.records() == []
        assert len(sf.audit_entries()) > before and last_call(sf).decision in ("failed", "refused")
