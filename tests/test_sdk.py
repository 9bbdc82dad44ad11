"""The SafeFace facade on real images: guard -> pipeline -> store -> audit, refusals store
nothing and are audited, erasure and revocation with signed receipts, retention, filing,
roles, export, legal bases, bulk enrolment, and no image or raw embedding on disk."""

from __future__ import annotations

import datetime as dt
import json
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parent))
from policy_support import (  # noqa: E402
    PASSPHRASE, Clock, CachedPipeline, consent, edit_config, foreign_consent, images, last_call, legal_basis, make_workspace, open_sf,
)

from safeface.hazmat.templates.keyring import PassphraseKeyring  # noqa: E402
from safeface.errors import ConfigError, ImageError, IntegrityError, InvalidArgument, PolicyViolation  # noqa: E402
from safeface.policy.receipts import verify_receipt  # noqa: E402
from safeface.policy.tokens import public_key_from_text  # noqa: E402


@pytest.fixture(scope="module")
def imgs() -> Path:
    return images()


def refused(rule: str, fn: Any) -> PolicyViolation:
    with pytest.raises(PolicyViolation) as info:
        fn()
    assert info.value.rule == rule, info.value
    return info.value


def last(sf: Any) -> Any:
    return last_call(sf)


def templates(sf: Any) -> int:
    return len(sf.records())


def test_enroll_verify_identify(tmp_path: Path, imgs: Path) -> None:
    ws = make_workspace(tmp_path / "ws")
    with open_sf(ws) as sf:
        t = consent(ws, "alice")
        e = sf.enroll(imgs / "obama.jpg", "alice", "demo", t)
        assert e.pseudonym == sf.pseudonym("alice") and "alice" not in e.pseudonym
        assert last(sf).operation == "enroll" and last(sf).decision == "allowed" and last(sf).token_id == sf.token_ref(e.token_id) != e.token_id
        v = sf.verify(imgs / "obama2.jpg", "alice", "demo", t)
        assert v.match and v.score is not None and v.score >= v.threshold
        other = sf.verify(imgs / "biden.jpg", "alice", "demo", t)
        assert not other.match and other.score is not None and other.score < other.threshold
        sf.enroll(imgs / "biden.jpg", "joe", "demo", consent(ws, "joe"))
        found = sf.identify(imgs / "obama3.jpg", "demo", consent(ws, "walk-in", operations=["identify"]))
        assert [c.subject for c in found] == [sf.pseudonym("alice")]
        assert last(sf).subjects == (sf.pseudonym("alice"),)
        assert sf.audit_verify().entries == len(sf.audit_entries())
        # The public view of the store: descriptions of every row, never a template.
        recs = sf.records()
        assert [(r.pseudonym, r.purposes, r.provenance) for r in recs] == [
            (sf.pseudonym(s), ("demo",), "consent") for s in ("alice", "joe")]
        assert recs[0].token_ref == sf.token_ref(e.token_id) and recs[0].expires_at == e.expires_at
        assert sf.records("joe") == recs[1:] and sf.records("nobody") == []
        assert not any(isinstance(v, (np.ndarray, bytes)) for r in recs for v in vars(r).values())


def test_refused_calls_store_nothing_and_are_audited(tmp_path: Path, imgs: Path) -> None:
    ws = make_workspace(tmp_path / "ws")
    with open_sf(ws) as sf:
        before = len(sf.audit_entries())
        refused("CN-04", lambda: sf.enroll(imgs / "obama.jpg", "alice", "demo", None))
        refused("CN-04", lambda: sf.enroll(imgs / "obama.jpg", "alice", "demo", consent(ws, "bob")))
        refused("CN-01", lambda: sf.enroll(imgs / "obama.jpg", "alice", "shop", foreign_consent(ws, "alice", ["shop"])))
        assert templates(sf) == 0 and sf.facts()["subjects"] == 0
        entries = sf.audit_entries()[before:]
        assert [(e.operation, e.decision, e.rule) for e in entries] == [
            ("enroll", "refused", "CN-04"), ("enroll", "refused", "CN-04"), ("enroll", "refused", "CN-01")]
        assert entries[0].subjects == (sf.pseudonym("alice"),)


def test_identify_without_consent_or_basis_refused(tmp_path: Path, imgs: Path) -> None:
    ws = make_workspace(tmp_path / "ws")
    with open_sf(ws) as sf:
        refused("CN-04", lambda: sf.identify(imgs / "obama.jpg", "demo"))
        assert last(sf).decision == "refused"


def test_legal_basis_identify_is_logged_as_such_cn16b(tmp_path: Path, imgs: Path) -> None:
    ws = make_workspace(tmp_path / "ws")
    with open_sf(ws) as sf:
        sf.enroll(imgs / "obama.jpg", "alice", "demo", consent(ws, "alice"))
        found = sf.identify(imgs / "obama2.jpg", "demo", legal_basis=legal_basis(ws))
        assert found and found[0].subject == sf.pseudonym("alice")
        e = last(sf)
        assert e.rule == "CN-16b" and e.basis is not None and e.basis.startswith("legal-basis: PIPL art. 13")
        forged = legal_basis(ws).rsplit(".", 1)[0] + ".AAAA"
        refused("CN-16b", lambda: sf.identify(imgs / "obama2.jpg", "demo", legal_basis=forged))
        assert sf.facts()["audit"]["legal_basis_calls"] == 2


def test_erase_removes_at_once_with_signed_receipt(tmp_path: Path, imgs: Path) -> None:
    ws = make_workspace(tmp_path / "ws")
    with open_sf(ws) as sf:
        t = consent(ws, "alice")
        sf.enroll(imgs / "obama.jpg", "alice", "demo", t)
        sf.enroll(imgs / "obama2.jpg", "alice", "demo", t)
        receipt = sf.erase("alice")
        assert receipt.templates_removed == 2 and receipt.subjects == (sf.pseudonym("alice"),)
        verify_receipt(receipt.to_dict(), public_key_from_text(ws.receipt_public.read_text().strip()))
        altered = {**receipt.to_dict(), "templates_removed": 1}
        with pytest.raises(IntegrityError):
            verify_receipt(altered, public_key_from_text(ws.receipt_public.read_text().strip()))
        assert templates(sf) == 0
        # The old consent is withdrawn with the erasure: verify is refused, nothing is matched.
        refused("CN-05", lambda: sf.verify(imgs / "obama2.jpg", "alice", "demo", t))
        found = sf.identify(imgs / "obama2.jpg", "demo", consent(ws, "walk-in"))
        assert found == []


def test_revoke_token_stops_processing_cn05(tmp_path: Path, imgs: Path) -> None:
    ws = make_workspace(tmp_path / "ws")
    with open_sf(ws) as sf:
        t = consent(ws, "alice")
        e = sf.enroll(imgs / "obama.jpg", "alice", "demo", t)
        keep = consent(ws, "joe")
        sf.enroll(imgs / "biden.jpg", "joe", "demo", keep)
        receipt = sf.revoke(token_id=e.token_id)
        assert receipt.reason == "revoke" and receipt.templates_removed == 1 and receipt.token_id == sf.token_ref(e.token_id)
        refused("CN-05", lambda: sf.verify(imgs / "obama2.jpg", "alice", "demo", t))
        assert templates(sf) == 1 and sf.verify(imgs / "biden.jpg", "joe", "demo", keep).match
        # A new consent after the withdrawal works again.
        assert sf.enroll(imgs / "obama.jpg", "alice", "demo", consent(ws, "alice")).row_id > 0



@pytest.mark.parametrize("given", ["the whole token", "the whole token, legacy sf1 form"])
def test_a_revocation_naming_a_whole_token_is_refused_not_receipted(tmp_path: Path, imgs: Path, given: str) -> None:
    """An operator pastes the token itself where its id (jti) is asked for (`consent revoke
    --token-id "$T"`): that was a signed receipt withdrawing a token that does not exist, while
    the consent went on working. Refused, on record, and the consent is left as it was."""
    ws = make_workspace(tmp_path / "ws")
    with open_sf(ws) as sf:
        t = consent(ws, "alice")
        sf.enroll(imgs / "obama.jpg", "alice", "demo", t)
        pasted = t if given == "the whole token" else "sf1." + t.split(".", 1)[1]
        with pytest.raises(InvalidArgument, match="jti"):
            sf.revoke(token_id=pasted)
        assert (last(sf).operation, last(sf).decision) == ("revoke", "failed")
        assert templates(sf) == 1 and sf.verify(imgs / "obama2.jpg", "alice", "demo", t).match


@pytest.mark.parametrize("around", ["\n", " ", "\t", "\r\n"])
def test_a_token_id_with_a_space_or_line_break_around_it_is_refused_not_receipted(tmp_path: Path, imgs: Path,
                                                                                   around: str) -> None:
    """An id read from a file or a form with its line break kept: a signed receipt withdrew a
    reference no token has, naming 0 templates, and the consent went on working."""
    ws = make_workspace(tmp_path / "ws")
    with open_sf(ws) as sf:
        t = consent(ws, "alice")
        e = sf.enroll(imgs / "obama.jpg", "alice", "demo", t)
        for given in (e.token_id + around, around + e.token_id):
            with pytest.raises(InvalidArgument, match="around it"):
                sf.revoke(token_id=given)
        assert templates(sf) == 1 and sf.verify(imgs / "obama2.jpg", "alice", "demo", t).match
        assert sf.revoke(token_id=e.token_id).templates_removed == 1


def test_eu_withdrawal_and_erasure_rules(tmp_path: Path, imgs: Path) -> None:
    ws = make_workspace(tmp_path / "ws", profiles=("eu",))
    with open_sf(ws) as sf:
        t = consent(ws, "alice")
        sf.enroll(imgs / "obama.jpg", "alice", "demo", t)
        receipt = sf.erase("alice")
        assert receipt.templates_removed == 1 and last(sf).rule == "EU-06"
        refused("EU-06", lambda: sf.verify(imgs / "obama.jpg", "alice", "demo", t))
        refused("EU-05", lambda: sf.verify(imgs / "obama.jpg", "alice", "demo", None))


def test_expired_templates_never_match_and_are_purged_cn08(tmp_path: Path, imgs: Path) -> None:
    clock = Clock()
    ws = make_workspace(tmp_path / "ws", edit=lambda r: r["purposes"]["demo"].__setitem__("retention_days", 2))
    with open_sf(ws, clock) as sf:
        t = consent(ws, "alice", days=30, now=clock.now)
        e = sf.enroll(imgs / "obama.jpg", "alice", "demo", t)
        assert e.expires_at == clock.now + dt.timedelta(days=2)
        clock.advance(days=2, seconds=1)
        v = sf.verify(imgs / "obama2.jpg", "alice", "demo", t)
        assert not v.match and v.score is None
        assert sf.identify(imgs / "obama2.jpg", "demo", t) == []
        receipt = sf.purge_expired()
        assert receipt is not None and receipt.reason == "purge" and receipt.templates_removed == 1
        assert templates(sf) == 0 and last(sf).rule == "CN-08"
        assert sf.purge_expired() is None


def test_a_purge_the_store_refuses_is_on_record_and_an_open_that_fails_leaves_nothing_open(
        tmp_path: Path, imgs: Path) -> None:
    """`purge_expired` (what `safeface purge` and every open call) ran outside the audited path:
    a purge the store refused (a trigger another process added keeps the expired row) raised,
    but the log said nothing of it; and when it failed inside an open, the workspace half
    opened was never closed. Both are mended."""
    import sqlite3

    clock = Clock()
    ws = make_workspace(tmp_path / "ws", edit=lambda r: r["purposes"]["demo"].__setitem__("retention_days", 2))
    with open_sf(ws, clock) as sf:
        sf.enroll(imgs / "obama.jpg", "alice", "demo", consent(ws, "alice", days=30, now=clock.now))
        clock.advance(days=2, seconds=1)
        with sqlite3.connect(ws.gallery) as other:
            other.execute("CREATE TRIGGER keep BEFORE DELETE ON rows BEGIN SELECT RAISE(IGNORE); END")
        before = len(sf.audit_entries())
        with pytest.raises(IntegrityError, match="holds triggers safeface did not make"):
            sf.purge_expired()
        added = [(e.operation, e.decision, e.note) for e in sf.audit_entries()[before:]]
        assert added == [("purge", "failed", "IntegrityError")]
        with pytest.raises(IntegrityError):
            sf.purge()  # the caller's call, audited once
        assert [(e.operation, e.decision) for e in sf.audit_entries()[before + 1:]] == [("purge", "failed")]
    with pytest.raises(IntegrityError):
        open_sf(ws, clock)
    with sqlite3.connect(ws.gallery) as other:
        other.execute("DROP TRIGGER keep")
    with open_sf(ws, clock) as sf:  # the open's purge goes through now
        assert templates(sf) == 0 and sf.audit_verify().entries > 0


def test_bipa_interaction_moves_expiry_us01(tmp_path: Path, imgs: Path) -> None:
    clock = Clock()
    ws = make_workspace(tmp_path / "ws", profiles=("us-bipa",),
                        edit=lambda r: r["purposes"]["demo"].__setitem__("retention_days", 5000))
    with open_sf(ws, clock) as sf:
        t = consent(ws, "alice", days=5000, now=clock.now)
        start = clock.now
        e = sf.enroll(imgs / "obama.jpg", "alice", "demo", t)
        assert e.expires_at == start + dt.timedelta(days=3 * 365)  # min(purpose end, 3 years)
        clock.advance(days=300)  # within the assessment's year (a floor under us-bipa too)
        assert sf.verify(imgs / "obama2.jpg", "alice", "demo", t).match
        row = sf.records("alice")[0]
        assert row.expires_at == clock.now + dt.timedelta(days=3 * 365)  # last interaction + 3 years
        refused("US-02", lambda: sf.verify(imgs / "obama2.jpg", "alice", "demo", None))


@pytest.mark.parametrize("verified", ["demo", "short"])
def test_an_interaction_moves_only_its_own_purposes_rows_us01(tmp_path: Path, imgs: Path, verified: str) -> None:
    """A match under one purpose is an interaction for that purpose only: verified under the long
    purpose, the short purpose's row still goes at its own end; verified under the short one,
    the long purpose's row is not cut short."""
    clock = Clock()

    def add_short(r: dict) -> None:
        r["purposes"]["short"] = dict(r["purposes"]["demo"], retention_days=5, description="a short purpose")

    ws = make_workspace(tmp_path / "ws", profiles=("us-bipa",), edit=add_short)
    with open_sf(ws, clock) as sf:
        tokens = {p: consent(ws, "alice", (p,), now=clock.now) for p in ("short", "demo")}
        ends = {p: sf.enroll(imgs / "obama.jpg", "alice", p, tokens[p]).expires_at for p in ("short", "demo")}
        clock.advance(days=1)
        assert sf.verify(imgs / "obama2.jpg", "alice", verified, tokens[verified]).match
        after = {r.purposes: r.expires_at for r in sf.records("alice")}
        other = "demo" if verified == "short" else "short"
        assert after[(other,)] == ends[other]
        assert after[(verified,)] >= ends[verified]
        clock.advance(days=5)  # past the short purpose's retention, well inside the long one's
        sf.purge_expired()
        assert [r.purposes for r in sf.records("alice")] == [("demo",)]


def test_a_purpose_that_is_not_a_string_is_refused_and_audited(tmp_path: Path, imgs: Path) -> None:
    ws = make_workspace(tmp_path / "ws")
    with open_sf(ws) as sf:
        t = consent(ws, "alice")
        for bad in (5, ["demo"], b"demo"):
            before = len(sf.audit_entries())
            e = refused("CN-01", lambda: sf.verify(imgs / "obama2.jpg", "alice", bad, t))  # type: ignore[arg-type]
            assert "string" in e.message and "demo" in e.message
            refused("CN-01", lambda: sf.enroll(imgs / "obama.jpg", "alice", bad, t))  # type: ignore[arg-type]
            got = sf.audit_entries()[before:]
            assert [(x.operation, x.decision, x.rule) for x in got] == [("verify", "refused", "CN-01"),
                                                                         ("enroll", "refused", "CN-01")]
        # A lone surrogate (a JSON "\\ud800") cannot be written as UTF-8: the refusal failed to
        # be recorded and an untyped UnicodeEncodeError came out instead. It is recorded, escaped.
        before = len(sf.audit_entries())
        refused("CN-01", lambda: sf.identify(imgs / "obama2.jpg", "de\ud800mo", t))
        got = sf.audit_entries()[before:]
        assert [(x.operation, x.decision, x.rule, x.purpose) for x in got] == [
            ("identify", "refused", "CN-01", "de\\ud800mo")]
        # Malformed batches: an untyped ValueError or TypeError came out before the guard.
        for bad_items in ([(imgs / "obama.jpg", "alice")], None, [], "abc", [None]):
            with pytest.raises(InvalidArgument, match="enroll_many takes"):
                sf.enroll_many(bad_items, "demo")  # type: ignore[arg-type]
        sf.revoke(token_id="\ud800")  # names no token: nothing revoked, and no untyped error
        for label in ("gate\ud800", "gate\n", "gate\u202eexe.jpg", "gate\x85", "g" * 81):  # shown to operators
            with pytest.raises(InvalidArgument, match="label"):
                sf.issue_api_key("operator", label=label)
        assert sf.audit_verify().entries == len(sf.audit_entries())
        assert sf.records("alice") == []


def test_filing_threshold_cn17(tmp_path: Path, imgs: Path) -> None:
    ws = make_workspace(tmp_path / "ws", edit=lambda r: r["filing"].__setitem__("threshold", 2))
    with open_sf(ws) as sf:
        sf.enroll(imgs / "obama.jpg", "alice", "demo", consent(ws, "alice"))
        assert sf.facts()["filing_crossed"] is None
        sf.enroll(imgs / "biden.jpg", "joe", "demo", consent(ws, "joe"))
        facts = sf.facts()
        assert facts["filing_crossed"] == dt.date.today().isoformat() and facts["filing_deadline"] > facts["filing_crossed"]
        e = refused("CN-17", lambda: sf.enroll(imgs / "obama2.jpg", "carol", "demo", consent(ws, "carol")))
        assert "filing" in e.message and templates(sf) == 2
        # A person already stored is no new person: a second template is allowed.
        sf.enroll(imgs / "obama2.jpg", "alice", "demo", consent(ws, "alice"))
    edit_config(ws, lambda r: r["filing"].__setitem__("reference", "GA-FILING-2026-001"))
    with open_sf(ws) as sf:
        sf.enroll(imgs / "obama3.jpg", "carol", "demo", consent(ws, "carol"))
        assert sf.facts()["subjects"] == 3


def test_roles_cn16(tmp_path: Path, imgs: Path) -> None:
    ws = make_workspace(tmp_path / "ws")
    with open_sf(ws) as sf:
        t = consent(ws, "alice")
        sf.enroll(imgs / "obama.jpg", "alice", "demo", t)
    with open_sf(ws, role="kiosk") as kiosk:
        assert kiosk.verify(imgs / "obama2.jpg", "alice", "demo", t).match
        refused("CN-16", lambda: kiosk.enroll(imgs / "obama.jpg", "alice", "demo", t))
        refused("CN-16", lambda: kiosk.erase("alice"))
        refused("CN-16", lambda: kiosk.export("alice", "demo", "acme", consent(ws, "alice", operations=["transmit"])))
        assert last(kiosk).rule == "CN-16" and last(kiosk).decision == "refused"


def test_export_needs_transmit_consent_cn07(tmp_path: Path, imgs: Path) -> None:
    ws = make_workspace(tmp_path / "ws")
    with open_sf(ws) as sf:
        t = consent(ws, "alice")
        sf.enroll(imgs / "obama.jpg", "alice", "demo", t)
        refused("CN-07", lambda: sf.export("alice", "demo", "acme", t))
        refused("CN-07", lambda: sf.export("alice", "demo", "acme"))
        out = sf.export("alice", "demo", "acme", consent(ws, "alice", operations=["transmit"]))
        assert out.recipient == "acme" and len(out.records) == 1
        assert set(out.records[0]) == {"subject", "purposes", "provenance", "expires_at"}
        assert last(sf).operation == "export" and "acme" in (last(sf).note or "")
        assert sf.export("alice", "demo", "police", legal_basis=legal_basis(ws, operations=["transmit"])).records


def test_export_refused_us03(tmp_path: Path, imgs: Path) -> None:
    ws = make_workspace(tmp_path / "ws", profiles=("us-bipa",))
    with open_sf(ws) as sf:
        sf.enroll(imgs / "obama.jpg", "alice", "demo", consent(ws, "alice"))
        refused("US-03", lambda: sf.export("alice", "demo", "data broker", consent(ws, "alice")))
        assert sf.export("alice", "demo", "acme", consent(ws, "alice", operations=["transmit"])).records


def test_bulk_enrolment_needs_each_consent_eu02(tmp_path: Path, imgs: Path) -> None:
    ws = make_workspace(tmp_path / "ws", profiles=("eu",))
    with open_sf(ws) as sf:
        items = [(imgs / "obama.jpg", "alice", consent(ws, "alice")), (imgs / "biden.jpg", "joe", None)]
        refused("EU-02", lambda: sf.enroll_many(items, "demo"))
        assert templates(sf) == 0
        blank = np.full((200, 200, 3), 255, dtype=np.uint8)  # no face: the whole batch fails, nothing stored
        with pytest.raises(ImageError):
            sf.enroll_many([(imgs / "obama.jpg", "alice", consent(ws, "alice")), (blank, "joe", consent(ws, "joe"))],
                           "demo")
        assert templates(sf) == 0
        done = sf.enroll_many([(imgs / "obama.jpg", "alice", consent(ws, "alice")),
                               (imgs / "biden.jpg", "joe", consent(ws, "joe"))], "demo")
        assert len(done) == 2
        assert {r.provenance for s in ("alice", "joe") for r in sf.records(s)} == {"consent"}


@pytest.mark.parametrize("profile,attribute,rule", [
    ("cn-2025", "Skin Tone", "CN-18"), ("cn-2025", "religions", "CN-18"), ("cn-2025", "health", "CN-18"),
    ("cn-2025", "social class", "CN-18"), ("cn-2025", "age", "CN-06"), ("eu", "ETHNICITY", "EU-01"),
    ("eu", "sexual orientation", "EU-01"), ("eu", "gender", "EU-01"), ("eu", "political opinions", "EU-01"),
    ("eu", "mood", "EU-03"), ("eu", "Facial Expression", "EU-03"), ("cn-2025", "emotion", "CN-18"),
])
def test_analyze_refuses_sensitive_attributes(tmp_path: Path, imgs: Path, profile: str, attribute: str,
                                              rule: str) -> None:
    ws = make_workspace(tmp_path / "ws", profiles=(profile,))
    with open_sf(ws) as sf:
        e = refused(rule, lambda: sf.analyze(imgs / "obama.jpg", ["faces", attribute]))
        assert "never" in e.message
        assert (last(sf).operation, last(sf).decision, last(sf).rule) == ("analyze", "refused", rule)


def test_analyze_technical_facts_allowed(tmp_path: Path, imgs: Path) -> None:
    ws = make_workspace(tmp_path / "ws")
    with open_sf(ws) as sf:
        out = sf.analyze(imgs / "obama.jpg", ["faces", "box", "landmarks"])
        assert out["faces"] == 1 and len(out["boxes"]) == 1 and len(out["landmarks"][0]) == 5


def test_invalid_deployment_refuses_every_call_but_erasure_works(tmp_path: Path, imgs: Path) -> None:
    ws = make_workspace(tmp_path / "ws")
    with open_sf(ws) as sf:
        t = consent(ws, "alice")
        sf.enroll(imgs / "obama.jpg", "alice", "demo", t)
    # Not assessed again: `safeface assess` refuses a private space (CN-15), which comes first.
    edit_config(ws, lambda r: r["location"].__setitem__("class", "changing-room"), reassess=False)
    with open_sf(ws) as sf:
        refused("CN-15", lambda: sf.verify(imgs / "obama2.jpg", "alice", "demo", t))
        refused("CN-15", lambda: sf.identify(imgs / "obama2.jpg", "demo", t))
        refused("CN-15", lambda: sf.analyze(imgs / "obama2.jpg", ["faces"]))
        assert sf.erase("alice").templates_removed == 1


@pytest.mark.slow
def test_several_faces_refused_for_enrolment(tmp_path: Path, imgs: Path) -> None:
    from PIL import Image

    a, b = Image.open(imgs / "obama.jpg").convert("RGB"), Image.open(imgs / "biden.jpg").convert("RGB")
    h = max(a.height, b.height)
    both = Image.new("RGB", (a.width + b.width, h), "white")
    both.paste(a, (0, 0))
    both.paste(b, (a.width, 0))
    ws = make_workspace(tmp_path / "ws")
    with open_sf(ws) as sf:
        with pytest.raises(ImageError, match="faces"):
            sf.enroll(np.asarray(both), "alice", "demo", consent(ws, "alice"))
        assert templates(sf) == 0 and last(sf).decision == "failed"


@pytest.mark.slow
def test_rekey_keeps_matching(tmp_path: Path, imgs: Path) -> None:
    ws = make_workspace(tmp_path / "ws")
    with open_sf(ws) as sf:
        t = consent(ws, "alice")
        sf.enroll(imgs / "obama.jpg", "alice", "demo", t)
        before = sf.verify(imgs / "obama2.jpg", "alice", "demo", t).score
        out = sf.rekey()
        assert out["templates"] == 1 and out["retired"] == 2
        assert sf.facts()["key_versions"] == {"transform": 2, "seal": 2}
        after = sf.verify(imgs / "obama2.jpg", "alice", "demo", t).score
        assert before is not None and after is not None and abs(before - after) < 1e-4
    keyring = PassphraseKeyring.open(ws.keyring, PASSPHRASE)  # the old versions are gone from the keyring
    assert list(keyring.versions("transform")) == [2] and list(keyring.versions("seal")) == [2]
    with open_sf(ws) as sf:  # reopens under the new keys only
        assert sf.verify(imgs / "obama2.jpg", "alice", "demo", t).match


def test_two_handles_rekeying_at_once_both_finish_and_the_gallery_still_matches(tmp_path: Path, imgs: Path) -> None:
    """Two handles (a CLI run and a service worker, say) re-key at once. Each rotates, moves the
    rows and retires the older versions; interleaved, one retired the version the other had just
    moved to, and the other's call failed half done (ConfigError for a version that was gone)."""
    import threading

    ws = make_workspace(tmp_path / "ws")
    with open_sf(ws) as sf:
        t = consent(ws, "alice")
        sf.enroll(imgs / "obama.jpg", "alice", "demo", t)
    outcomes: list[Any] = []

    def rekey_thrice() -> None:
        with open_sf(ws) as h:
            for _ in range(3):
                try:
                    outcomes.append(h.rekey())
                except Exception as exc:  # noqa: BLE001
                    outcomes.append(exc)

    threads = [threading.Thread(target=rekey_thrice) for _ in range(2)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    failed = [o for o in outcomes if isinstance(o, BaseException)]
    assert not failed, f"a re-key failed while another ran: {failed[0]!r}"
    assert sorted(o["versions"]["transform"] for o in outcomes) == list(range(2, 8))
    keyring = PassphraseKeyring.open(ws.keyring, PASSPHRASE)
    assert list(keyring.versions("transform")) == [7] and list(keyring.versions("seal")) == [7]
    with open_sf(ws) as sf:
        assert sf.verify(imgs / "obama2.jpg", "alice", "demo", t).match
        assert sf.audit_verify().entries > 0


def test_a_rekey_killed_after_the_store_moved_is_finished_and_recorded_at_the_next_open(tmp_path: Path,
                                                                                       imgs: Path) -> None:
    """The process dies right after the store committed the move (as kill -9 there): the rows are
    under the new keys, the old versions still in the keyring, and nothing in the log. The next
    open retires the old versions and records it."""
    ws = make_workspace(tmp_path / "ws")
    with open_sf(ws) as sf:
        t = consent(ws, "alice")
        sf.enroll(imgs / "obama.jpg", "alice", "demo", t)
        sf._keyring.rotate("transform", "seal")
        sf._gallery.rekey()  # the move committed; the call ends here
    late = PassphraseKeyring.open(ws.keyring, PASSPHRASE)  # a worker starting now reads versions 1 and 2
    with open_sf(ws) as sf:
        keyring = PassphraseKeyring.open(ws.keyring, PASSPHRASE)
        assert list(keyring.versions("transform")) == [2] and list(keyring.versions("seal")) == [2]
        notes = [e.note for e in sf.audit_entries() if e.operation == "rekey"]
        assert len(notes) == 1 and "interrupted re-key finished" in str(notes[0])
        assert sf.verify(imgs / "obama2.jpg", "alice", "demo", t).match
        assert sf.audit_verify().entries > 0
    # ...and opens once the first open has retired version 1 (its keyring is read again first).
    from safeface.sdk import SafeFace

    with SafeFace.open(ws.root, keyring=late, pipeline=CachedPipeline()) as sf:
        assert sf.verify(imgs / "obama2.jpg", "alice", "demo", t).match


def test_a_rekey_with_a_host_keyring_moves_the_rows_and_leaves_retirement_to_the_host(tmp_path: Path,
                                                                                       imgs: Path) -> None:
    """A host keyring (a KMS) has no retirement here: the re-key moved the rows and then failed
    on the missing call, recorded as failed with "nothing was stored". A StaticKeyProvider makes
    a new key only with somewhere to keep it: the rows moved to a key that lived in memory only."""
    from safeface.hazmat.templates import PURPOSES, HostKeyring, StaticKeyProvider
    from safeface.sdk import SafeFace

    ws = make_workspace(tmp_path / "ws")
    with open_sf(ws) as sf:
        t = consent(ws, "alice")
        sf.enroll(imgs / "obama.jpg", "alice", "demo", t)
    kr = PassphraseKeyring.open(ws.keyring, PASSPHRASE)
    held = {p: {v: kr.key(p, v) for v in kr.versions(p)} for p in PURPOSES}  # the host's secrets manager
    # Keys held only in memory: a re-key to a key made here would not outlive the process.
    with SafeFace.open(ws.root, keyring=HostKeyring(StaticKeyProvider(held)), pipeline=CachedPipeline()) as sf:
        with pytest.raises(ConfigError, match="keep="):
            sf.rekey()
        assert sf.facts()["key_versions"] == {"transform": 1, "seal": 1}
        assert [e.decision for e in sf.audit_entries() if e.operation == "rekey"] == ["failed"]
    def keep(new: Any) -> None:  # all or nothing, and never over a version already held
        if any(v in held[p] for p, (v, _) in new.items()):
            raise FileExistsError("that key version is already kept")
        for p, (v, k) in new.items():
            held[p][v] = k

    stale = StaticKeyProvider({p: dict(vs) for p, vs in held.items()}, keep=keep)  # another worker's copy
    worker = SafeFace.open(ws.root, keyring=HostKeyring(stale), pipeline=CachedPipeline())
    provider = StaticKeyProvider(held, keep=keep)
    with SafeFace.open(ws.root, keyring=HostKeyring(provider), pipeline=CachedPipeline()) as sf:
        out = sf.rekey()
        assert out["versions"] == {"transform": 2, "seal": 2} and out["retired"] == 0
        assert sf.facts()["key_versions"] == {"transform": 2, "seal": 2}
        assert [e.decision for e in sf.audit_entries() if e.operation == "rekey"] == ["failed", "allowed"]
        assert sf.verify(imgs / "obama2.jpg", "alice", "demo", t).match
        assert provider.versions("transform") == [1, 2]  # the host retires its own versions
    # A worker that loaded the keys before that re-key would number its new key 2 again: it is
    # refused before anything is made or kept, and the key the templates are under stays.
    kept_before = {p: dict(vs) for p, vs in held.items()}
    with worker:
        with pytest.raises(ConfigError, match="does not hold"):
            worker.rekey()
    assert held == kept_before and stale.versions("transform") == [1]
    # The process ends; the host starts again from what it kept, and the templates open.
    with SafeFace.open(ws.root, keyring=HostKeyring(StaticKeyProvider(held)), pipeline=CachedPipeline()) as sf:
        assert sf.verify(imgs / "obama2.jpg", "alice", "demo", t).match


def test_report_lists_every_rule(tmp_path: Path, imgs: Path) -> None:
    ws = make_workspace(tmp_path / "ws", profiles=("cn-2025", "eu"))
    (ws.reports / "evaluation").mkdir(parents=True)
    (ws.reports / "evaluation" / "latest.json").write_text(json.dumps({"tar_at_far_1e-3": 0.991, "fnmr": {"x": 1}}))
    (ws.reports / "evaluation" / "roc.png").write_bytes(b"\x89PNG\r\n\x1a\nplot")
    with open_sf(ws) as sf:
        sf.enroll(imgs / "obama.jpg", "alice", "demo", consent(ws, "alice"))
        refused("CN-04", lambda: sf.verify(imgs / "obama.jpg", "alice", "demo", None))
        paths = sf.report(tmp_path / "out")
    from safeface.policy.rules import RULES

    report = json.loads(paths["json"].read_text())
    states = {r["id"]: r["state"] for r in report["rules"]}
    assert set(states) == {r.id for r in RULES}
    assert states["CN-09"] == "satisfied" and states["EU-01"] == "enforced" and states["US-01"] == "not applicable"
    assert states["ST-04"] == "measured" and report["assessment"]["tar_at_far_1e-3"] == 0.991
    assert report["refusals_by_rule"] == {"CN-04": 1} and report["counts"]["subjects"] == 1
    assert report["filing"]["threshold"] == 100000 and report["can_process"] is True
    html = paths["html"].read_text()
    assert "CN-17" in html and "assessment/roc.png" in html and (tmp_path / "out" / "assessment" / "roc.png").is_file()


def test_no_image_or_raw_embedding_in_the_workspace(tmp_path: Path, imgs: Path) -> None:
    ws = make_workspace(tmp_path / "ws")
    with open_sf(ws) as sf:
        for name, subject in (("obama.jpg", "alice"), ("biden.jpg", "joe")):
            sf.enroll(imgs / name, subject, "demo", consent(ws, subject))
        sf.verify(imgs / "obama2.jpg", "alice", "demo", consent(ws, "alice"))
        sf.report(ws.reports / "r")
    blobs = b"".join(p.read_bytes() for p in ws.root.rglob("*") if p.is_file())
    pipe = CachedPipeline()
    for name in ("obama.jpg", "biden.jpg", "obama2.jpg"):
        raw = (imgs / name).read_bytes()
        for start in range(0, len(raw) - 64, max(1, len(raw) // 16)):  # any 64-byte window of the file
            assert raw[start:start + 64] not in blobs, name
        emb = pipe.embed(imgs / name).embedding
        for arr in (emb.astype("<f4"), emb.astype("<f8"), emb.astype(">f4")):
            b = arr.tobytes()
            for i in range(0, len(b) - 16, 16):  # any 4 consecutive components
                assert b[i:i + 16] not in blobs, name
        assert json.dumps([round(float(x), 4) for x in emb[:4]])[1:-1].encode() not in blobs
    assert b"alice" not in blobs.replace(b"alice@", b"")  # subject ids are pseudonymised



def test_refusal_audit_names_only_genuine_token_ids(tmp_path: Path, imgs: Path) -> None:
    ws = make_workspace(tmp_path / "ws")
    with open_sf(ws) as sf:
        t = consent(ws, "alice", operations=["verify"])
        refused("CN-04", lambda: sf.enroll(imgs / "obama.jpg", "alice", "demo", t))
        genuine = last(sf).token_id
        assert genuine is not None and genuine.startswith("t-") and len(genuine) == 34
        head, payload, sig = t.split(".")
        refused("CN-04", lambda: sf.enroll(imgs / "obama.jpg", "alice", "demo", f"{head}.{payload}x.{sig}"))
        assert last(sf).token_id is None


def test_open_refuses_a_truncated_or_missing_audit_log(tmp_path: Path, imgs: Path) -> None:
    import sqlite3

    ws = make_workspace(tmp_path / "ws")
    with open_sf(ws) as sf:
        sf.analyze(imgs / "obama.jpg", ["faces"])
    db = sqlite3.connect(str(ws.audit))
    db.execute("DELETE FROM entries WHERE seq = (SELECT MAX(seq) FROM entries)")
    db.commit()
    db.close()
    with pytest.raises(IntegrityError, match="signed head"):
        open_sf(ws)
    ws.audit.unlink()
    with pytest.raises(IntegrityError, match="missing"):
        open_sf(ws)


def test_bulk_enrolment_beyond_filing_threshold_refused_whole(tmp_path: Path, imgs: Path) -> None:
    ws = make_workspace(tmp_path / "ws", edit=lambda r: r["filing"].__setitem__("threshold", 1))
    with open_sf(ws) as sf:
        items = [(imgs / "obama.jpg", "alice", consent(ws, "alice")), (imgs / "biden.jpg", "joe", consent(ws, "joe"))]
        refused("CN-17", lambda: sf.enroll_many(items, "demo"))
        assert templates(sf) == 0


@pytest.mark.slow
def test_anonymize_through_the_facade_is_audited_without_identity(tmp_path: Path, imgs: Path) -> None:
    """SafeFace.anonymize needs no consent, stores no template and leaves one audit record with
    the input's hash and face count."""
    import hashlib

    paths = make_workspace(tmp_path / "ws")
    src = tmp_path / "obama-half.jpg"  # a smaller copy: anonymizing searches many views of a photo
    with Image.open(imgs / "obama.jpg") as im:
        im.resize((im.width // 2, im.height // 2)).save(src, quality=95)
    with open_sf(paths) as sf:
        pixels, report = sf.anonymize(src)
        assert report.face_count == 1 and pixels.shape[2] == 3
        assert report.input_sha256 == hashlib.sha256(src.read_bytes()).hexdigest()
        entry = last(sf)
        assert entry.operation == "anonymize" and entry.decision == "allowed"
        assert report.input_sha256 in (entry.note or "") and entry.subjects == ()
        out = tmp_path / "covered.png"
        file_report = sf.anonymize(src, out)
        assert out.is_file() and file_report.face_count == 1
        assert templates(sf) == 0
        assert sf.audit_verify().entries == len(sf.audit_entries())


def test_an_export_discloses_only_the_rows_of_its_purpose(tmp_path: Path) -> None:
    """A transmit consent for one purpose discloses the subject's rows held for it, not those
    held for another (every export test had a subject of one purpose)."""
    def add_short(r: dict[str, Any]) -> None:
        r["purposes"]["short"] = dict(r["purposes"]["demo"], retention_days=5, description="a short purpose")

    ws = make_workspace(tmp_path / "ws", edit=add_short)
    with open_sf(ws) as sf:
        for p in ("short", "demo"):
            sf.enroll(images() / "obama.jpg", "alice", p, consent(ws, "alice", (p,)))
        assert sorted(r.purposes for r in sf.records("alice")) == [("demo",), ("short",)]
        out = sf.export("alice", "demo", "acme", consent(ws, "alice", ("demo",), operations=["transmit"]))
        assert [rec["purposes"] for rec in out.records] == [["demo"]], out.records


def test_revoke_needs_exactly_one_reference(tmp_path: Path) -> None:
    """With none it signed a receipt for the token reference "None"; with two it ignored one. Each
    refusal is on record as a failed revocation (test_call_refusals_on_record)."""
    from policy_support import issued_consent

    ws = make_workspace(tmp_path / "ws")
    _, tok = issued_consent(ws, "alice")
    with open_sf(ws) as sf:
        before = len(sf.audit_entries())
        with pytest.raises(InvalidArgument):
            sf.revoke()
        with pytest.raises(InvalidArgument):
            sf.revoke(token_id=tok.token_id, subject="bob")
        after = sf.audit_entries()[before:]
        assert [(e.operation, e.decision, e.subjects) for e in after] == [("revoke", "failed", ())] * 2
