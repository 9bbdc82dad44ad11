"""`safeface serve` over real HTTP: a real uvicorn server on 127.0.0.1, real images, the real
guard. Every status-code path, roles from keys, revocation and expiry, the client, overload."""

from __future__ import annotations

import base64
import datetime as dt
import json
import sys
import threading
from pathlib import Path
from typing import Any, Iterator

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
from policy_support import PASSPHRASE, Clock, consent, images, make_workspace, open_sf  # noqa: E402
from service_support import Server, httpx, jpeg_640, key_header, post_image  # noqa: E402

from safeface.errors import AuthenticationError, ImageError, PolicyViolation, ServiceBusy  # noqa: E402
from safeface.service.answers import NOT_LIVE  # noqa: E402

MAX_BODY = 400_000


@pytest.fixture(scope="module")
def svc(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    root = tmp_path_factory.mktemp("service")
    paths = make_workspace(root / "ws")
    with open_sf(paths) as sf:
        keys = {role: sf.issue_api_key(role, label=f"{role} test")[1] for role in ("operator", "kiosk", "auditor")}
        keys["slow"] = sf.issue_api_key("operator", label="rate 1", rate=1)[1]
    # A key whose last day has passed: issued with the (demo-only) clock two days back.
    with open_sf(paths, clock=Clock(dt.datetime.now(dt.timezone.utc) - dt.timedelta(days=2))) as sf:
        keys["expired"] = sf.issue_api_key("operator", expires=(dt.datetime.now(dt.timezone.utc)
                                                                - dt.timedelta(days=1)).date())[1]
    server = Server(paths.root, root / "server.log",
                    ["--threads", "1", "--queue", "1", "--max-body", str(MAX_BODY)]).wait_ready()
    img = images()
    yield {"paths": paths, "url": server.url, "keys": keys, "server": server,
           "obama": jpeg_640(img / "obama.jpg"), "obama2": jpeg_640(img / "obama2.jpg"),
           "biden": jpeg_640(img / "biden.jpg")}
    server.stop()
    assert "sfk_" not in server.log(), "an API key reached the server log"


def entries(paths: Any) -> list[Any]:
    """The log, less the entries our own in-process opening writes (it names its test pipeline)."""
    with open_sf(paths) as sf:
        return [e for e in sf.audit_entries() if e.operation != "open"]


def test_enroll_verify_identify_as_the_key_and_audited_with_its_id(svc: dict[str, Any]) -> None:
    url, paths, op = svc["url"], svc["paths"], svc["keys"]["operator"]
    op_id = op.split("_")[1]
    token = consent(paths, "alice")
    r = post_image(url, "/v1/enroll", op, svc["obama"], subject="alice", purpose="demo", consent=token)
    assert r.status_code == 200, r.text
    row = r.json()["row_id"]
    # Acknowledged means stored and audited, with the key's id.
    with open_sf(paths) as sf:
        assert any(rec.row_id == row for rec in sf.records())
        e = [x for x in sf.audit_entries() if x.operation == "enroll" and x.decision == "allowed"][-1]
        assert e.actor.split(" ")[0] == op_id and f"rows={row}" in (e.note or "")
    # Base64 JSON with the token in a header.
    body = {"image_base64": base64.b64encode(svc["obama2"]).decode(), "subject": "alice", "purpose": "demo"}
    r = httpx.post(url + "/v1/verify", json=body, headers={**key_header(op), "X-Consent-Token": token}, timeout=120)
    assert r.status_code == 200 and r.json()["match"] is True and r.json()["path"] == "plain", r.text
    assert isinstance(r.json()["score"], float) and r.json()["score"] >= r.json()["threshold"]
    # The mask detector's confidence is no one's business over the network: it would guide a
    # covering past the detector, a request at a time.
    assert r.json()["mask_confidence"] is None
    # A miss does not say how near it came (a score per image would let one consent's holder
    # climb toward alice's template), nor by which path and threshold (whether alice enrolled
    # masked).
    r = post_image(url, "/v1/verify", op, svc["biden"], subject="alice", purpose="demo", consent=token)
    assert r.status_code == 200 and r.json()["match"] is False, r.text
    assert {k: r.json()[k] for k in ("score", "threshold", "path", "mask_confidence")} == dict.fromkeys(
        ("score", "threshold", "path", "mask_confidence")), r.text
    r = post_image(url, "/v1/identify", svc["keys"]["kiosk"], svc["obama2"], purpose="demo", consent=token)
    assert r.status_code == 200 and r.json()["candidates"][0]["subject"] == r.json()["candidates"][0]["subject"]
    assert len(r.json()["candidates"]) == 1 and r.json()["candidates"][0]["path"] == "plain"
    last = entries(paths)[-1]
    assert (last.operation, last.actor.split(" ")[0]) == ("identify", svc["keys"]["kiosk"].split("_")[1])


def test_missing_or_invalid_key_is_401(svc: dict[str, Any]) -> None:
    url = svc["url"]
    assert httpx.post(url + "/v1/purge").status_code == 401
    forged = "sfk_" + svc["keys"]["operator"].split("_")[1] + "_" + "A" * 43  # a real id, a guessed secret
    for headers in ({"X-API-Key": "nonsense"}, {"X-API-Key": forged}, {"Authorization": "Bearer " + forged}):
        r = httpx.post(url + "/v1/purge", headers=headers)
        assert r.status_code == 401 and r.json()["error"] == "AuthenticationError"
        assert forged not in r.text
    assert httpx.post(url + "/v1/purge", headers={"Authorization": "Bearer " + svc["keys"]["operator"]}).status_code == 200


def test_role_comes_from_the_key_never_the_request(svc: dict[str, Any]) -> None:
    url, paths, kiosk = svc["url"], svc["paths"], svc["keys"]["kiosk"]
    token = consent(paths, "bob")
    r = httpx.post(url + "/v1/enroll", headers={**key_header(kiosk), "X-Role": "operator"},
                   files={"image": ("f.jpg", svc["obama"], "image/jpeg")},
                   data={"subject": "bob", "purpose": "demo", "consent": token, "role": "operator"}, timeout=120)
    assert r.status_code == 403 and r.json() == {"error": "PolicyViolation", "rule": "CN-16",
                                                 "message": r.json()["message"]}
    assert "kiosk" in r.json()["message"]
    last = entries(paths)[-1]
    assert (last.operation, last.decision, last.rule, last.actor.split(" ")[0]) == ("enroll", "refused", "CN-16",
                                                                            kiosk.split("_")[1])
    # The auditor may read the evidence but not erase.
    aud = svc["keys"]["auditor"]
    assert httpx.get(url + "/v1/audit/verify", headers=key_header(aud), timeout=120).status_code == 200
    r = httpx.post(url + "/v1/erase", json={"subject": "bob"}, headers=key_header(aud))
    assert r.status_code == 403 and r.json()["rule"] == "CN-16"
    assert httpx.get(url + "/v1/audit/verify", headers=key_header(kiosk)).status_code == 403


def test_compliance_refusals_are_403_with_the_cli_json(svc: dict[str, Any], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SAFEFACE_PASSPHRASE", PASSPHRASE)
    url, paths, op = svc["url"], svc["paths"], svc["keys"]["operator"]
    r = post_image(url, "/v1/enroll", op, svc["obama"], subject="carol", purpose="demo",
                   consent=consent(paths, "dave"))  # someone else's consent
    assert r.status_code == 403 and set(r.json()) == {"error", "rule", "message"} and r.json()["rule"]
    r = post_image(url, "/v1/enroll", op, svc["obama"], subject="carol", purpose="demo")  # no consent at all
    assert r.status_code == 403 and r.json()["error"] == "PolicyViolation"
    r = post_image(url, "/v1/analyze", op, svc["obama"], attributes="faces,emotion")
    assert r.status_code == 403 and r.json()["rule"] == "CN-18"
    r = post_image(url, "/v1/analyze", op, svc["obama"], attributes="faces,box")
    assert r.status_code == 200 and r.json()["faces"] == 1 and len(r.json()["boxes"]) == 1
    # The same refusal as the CLI's JSON.
    from safeface.cli import main
    import contextlib
    import io

    err = io.StringIO()
    with contextlib.redirect_stderr(err):
        code = main(["analyze", str(paths.root), str(images() / "obama.jpg"), "--attribute", "emotion"])
    assert code == 3 and json.loads(err.getvalue().strip().splitlines()[-1])["rule"] == "CN-18"


def test_liveness_evidence_travels_as_a_field_or_header(svc: dict[str, Any]) -> None:
    """A purpose that requires liveness (PA-01): no evidence, or forged evidence, is refused by the
    guard behind the service exactly as in process."""
    from policy_support import edit_config, restore_config

    url, paths, op = svc["url"], svc["paths"], svc["keys"]["operator"]
    token = consent(paths, "gina")
    original = paths.config.read_text()

    def require(raw: dict[str, Any]) -> None:
        raw["purposes"]["demo"]["liveness"] = "required"

    edit_config(paths, require)
    try:
        r = post_image(url, "/v1/verify", op, svc["obama"], subject="gina", purpose="demo", consent=token)
        assert r.status_code == 403 and r.json()["rule"] == "PA-01", r.text
        r = httpx.post(url + "/v1/verify", headers={**key_header(op), "X-Liveness-Evidence": "forged.evidence"},
                       files={"image": ("f.jpg", svc["obama"], "image/jpeg")},
                       data={"subject": "gina", "purpose": "demo", "consent": token}, timeout=120)
        assert r.status_code == 403 and r.json()["rule"] == "PA-01", r.text
    finally:
        restore_config(paths, original)


def test_a_masked_reference_sent_to_the_service_is_refused_by_pa02(svc: dict[str, Any]) -> None:
    """The service's enrol endpoint is no way around PA-02: a masked capture, as a camera sends
    it, is refused with the rule and what to fix, and nothing is stored."""
    import io

    from PIL import Image
    from policy_support import edit_config, masked_image, restore_config

    url, paths, op = svc["url"], svc["paths"], svc["keys"]["operator"]
    buf = io.BytesIO()
    Image.fromarray(masked_image(images() / "obama.jpg", "n95")).save(buf, "JPEG", quality=90)
    original = paths.config.read_text()
    edit_config(paths, lambda raw: raw["purposes"]["demo"].__setitem__("capture_quality", "required"))
    try:
        r = post_image(url, "/v1/enroll", op, buf.getvalue(), subject="hana", purpose="demo",
                       consent=consent(paths, "hana"))
        assert r.status_code == 403 and r.json()["rule"] == "PA-02", r.text
        assert "take off the mask" in r.text
    finally:
        restore_config(paths, original)
    with open_sf(paths) as sf:
        assert sf.records("hana") == []


def test_malformed_input_is_422(svc: dict[str, Any]) -> None:
    url, op = svc["url"], svc["keys"]["operator"]
    h = key_header(op)
    cases = [
        httpx.post(url + "/v1/verify", json={"image_base64": "@@not base64@@", "subject": "a", "purpose": "demo"},
                   headers=h),
        httpx.post(url + "/v1/verify", content=b"{not json", headers={**h, "content-type": "application/json"}),
        httpx.post(url + "/v1/verify", content=b"x", headers={**h, "content-type": "text/plain"}),
        httpx.post(url + "/v1/verify", json={"subject": "a", "purpose": "demo"}, headers=h),  # no image
        httpx.post(url + "/v1/verify", json=["a list"], headers=h),
        post_image(url, "/v1/verify", op, svc["obama"], purpose="demo"),  # no subject
        post_image(url, "/v1/identify", op, svc["obama"], purpose="demo", top_k="many"),
        post_image(url, "/v1/verify", op, b"\xff\xd8 not really a jpeg", subject="a", purpose="demo",
                   consent=consent(svc["paths"], "a")),  # an unreadable image: ImageError
        httpx.post(url + "/v1/consent/revoke", json={}, headers=h),
        # Nested past the parser's depth (well under the size limit), and numbers JSON has not.
        httpx.post(url + "/v1/erase", content=b"[" * 100_000 + b"]" * 100_000,
                   headers={**h, "content-type": "application/json"}),
        httpx.post(url + "/v1/identify", content=b'{"image_base64": "eHg=", "purpose": "demo", "top_k": Infinity}',
                   headers={**h, "content-type": "application/json"}),
        httpx.post(url + "/v1/identify", content=b'{"image_base64": "eHg=", "purpose": "demo", "top_k": 1e999}',
                   headers={**h, "content-type": "application/json"}),
    ]
    for r in cases:
        assert r.status_code == 422, (r.request.url, r.text)
        assert r.json()["error"] in ("InvalidArgument", "ImageError") and r.json()["message"]


def test_body_over_the_limit_is_413(svc: dict[str, Any]) -> None:
    url, op = svc["url"], svc["keys"]["operator"]
    r = post_image(url, "/v1/enroll", op, b"\0" * (MAX_BODY + 10), subject="a", purpose="demo")
    assert r.status_code == 413 and r.json()["error"] == "PayloadTooLarge"

    def chunks() -> Iterator[bytes]:  # no Content-Length: the limit holds on the stream too
        for _ in range(10):
            yield b"\0" * (MAX_BODY // 4)

    r = httpx.post(url + "/v1/enroll", content=chunks(), headers={**key_header(op), "content-type": "application/json"})
    assert r.status_code == 413


def test_a_key_over_its_rate_gets_429_with_retry_after(svc: dict[str, Any]) -> None:
    url, slow = svc["url"], svc["keys"]["slow"]
    codes = [httpx.post(url + "/v1/purge", headers=key_header(slow)) for _ in range(3)]
    assert codes[0].status_code == 200
    limited = [r for r in codes if r.status_code == 429]
    assert limited and int(limited[0].headers["Retry-After"]) >= 1 and limited[0].json()["error"] == "RateLimited"
    # Another key is not slowed by it.
    assert httpx.post(url + "/v1/purge", headers=key_header(svc["keys"]["operator"])).status_code == 200


def test_revoked_and_expired_keys_are_refused(svc: dict[str, Any], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SAFEFACE_PASSPHRASE", PASSPHRASE)
    url, paths = svc["url"], svc["paths"]
    r = httpx.post(url + "/v1/purge", headers=key_header(svc["keys"]["expired"]))
    assert r.status_code == 401 and "expired" in r.json()["message"]
    with open_sf(paths) as sf:
        info, key = sf.issue_api_key("operator", label="short-lived")
    assert httpx.post(url + "/v1/purge", headers=key_header(key)).status_code == 200
    from safeface.cli import main

    assert main(["apikey", "revoke", str(paths.root), info.key_id]) == 0
    assert httpx.post(url + "/v1/purge", headers=key_header(key)).status_code == 401
    with open_sf(paths) as sf:
        listed = {k.key_id: k for k in sf.api_keys()}
        assert listed[info.key_id].revoked is not None
        assert any(e.operation == "apikey" and info.key_id in (e.note or "") and "revoked" in (e.note or "")
                   for e in sf.audit_entries())


def test_hand_edited_key_store_grants_nothing(svc: dict[str, Any]) -> None:
    """A hostile operator with the files: raising a kiosk key's role, or un-revoking a key."""
    import sqlite3

    url, paths = svc["url"], svc["paths"]
    with open_sf(paths) as sf:
        kinfo, kkey = sf.issue_api_key("kiosk", label="to promote")
        rinfo, rkey = sf.issue_api_key("operator", label="to resurrect")
        sf.revoke_api_key(rinfo.key_id)
    db = sqlite3.connect(str(paths.root / "apikeys.db"))
    db.execute("UPDATE apikeys SET role = 'operator' WHERE key_id = ?", (kinfo.key_id,))
    db.execute("UPDATE apikeys SET revoked = NULL WHERE key_id = ?", (rinfo.key_id,))
    db.commit()
    db.close()
    assert httpx.post(url + "/v1/purge", headers=key_header(kkey)).status_code == 401
    assert httpx.post(url + "/v1/purge", headers=key_header(rkey)).status_code == 401
    raw = (paths.root / "apikeys.db").read_bytes()
    assert kkey.split("_", 2)[2].encode() not in raw and rkey.split("_", 2)[2].encode() not in raw


def test_a_key_table_restored_from_before_a_revocation_grants_nothing(svc: dict[str, Any]) -> None:
    """The operator copies apikeys.db, a key is revoked, then the old copy is put back: the key
    table says the key is live again, but the anchored audit log still records its revocation."""
    import sqlite3

    url, paths = svc["url"], svc["paths"]
    with open_sf(paths) as sf:
        info, key = sf.issue_api_key("operator", label="to restore")
    assert httpx.post(url + "/v1/purge", headers=key_header(key)).status_code == 200
    db_path = str(paths.root / "apikeys.db")
    older = sqlite3.connect(":memory:")
    with sqlite3.connect(db_path) as live:
        live.backup(older)
    with open_sf(paths) as sf:
        sf.revoke_api_key(info.key_id)
    assert httpx.post(url + "/v1/purge", headers=key_header(key)).status_code == 401
    with sqlite3.connect(db_path) as live:
        older.backup(live)
    older.close()
    with sqlite3.connect(db_path) as live:  # the restore did bring the key back in its table
        assert live.execute("SELECT revoked, digest FROM apikeys WHERE key_id = ?", (info.key_id,)).fetchone()[1]
    r = httpx.post(url + "/v1/purge", headers=key_header(key))
    assert r.status_code == 401 and "restored" in r.json()["message"]
    assert key.split("_", 2)[2] not in r.text
    with open_sf(paths) as sf:
        with pytest.raises(AuthenticationError, match="revoked"):
            sf.open_session(key)


def test_rights_and_evidence_over_http(svc: dict[str, Any]) -> None:
    url, paths, op = svc["url"], svc["paths"], svc["keys"]["operator"]
    h = key_header(op)
    t_erin = consent(paths, "erin", operations=("enroll", "verify", "identify", "transmit"))
    assert post_image(url, "/v1/enroll", op, svc["biden"], subject="erin", purpose="demo", consent=t_erin).status_code == 200
    r = httpx.post(url + "/v1/export", json={"subject": "erin", "purpose": "demo", "recipient": "acme",
                                             "consent": t_erin}, headers=h)
    assert r.status_code == 200 and r.json()["recipient"] == "acme" and len(r.json()["records"]) == 1
    r = httpx.post(url + "/v1/consent/revoke", json={"subject": "erin"}, headers=h)
    assert r.status_code == 200 and r.json()["reason"] == "revoke" and r.json()["templates_removed"] == 1
    from safeface.policy.receipts import verify_receipt  # the receipt is signed and checkable
    from safeface.policy.tokens import public_key_from_text

    verify_receipt(r.json(), public_key_from_text(paths.receipt_public.read_text().strip()))
    r = httpx.post(url + "/v1/erase", json={"subject": "alice"}, headers=h)
    assert r.status_code == 200 and r.json()["reason"] == "erase"
    assert httpx.post(url + "/v1/purge", headers=h).json() == {"removed": 0}
    r = httpx.get(url + "/v1/audit/verify", headers=h, timeout=120)
    assert r.status_code == 200 and r.json()["ok"] is True and r.json()["entries"] > 5
    rep = httpx.get(url + "/v1/report", headers=h, timeout=120)
    assert rep.status_code == 200 and rep.json()["format"] == "safeface-compliance-report/1"
    listed = rep.json()["security_measures"]["api_keys"]
    assert {k["role"] for k in listed} >= {"operator", "kiosk", "auditor"} and "sfk_" not in rep.text
    assert httpx.get(url + "/v1/report?format=html", headers=h, timeout=120).text.startswith("<!doctype html>")


def test_health_ready_metrics_and_headers(svc: dict[str, Any]) -> None:
    url = svc["url"]
    r = httpx.get(url + "/v1/health")
    assert r.status_code == 200 and r.json() == {"status": "ok"}
    assert "default-src 'none'" in r.headers["content-security-policy"]
    assert httpx.get(url + "/v1/ready").json() | {"in_flight": 0} == {"status": "ready", "in_flight": 0, "index": "local"}
    m = httpx.get(url + "/metrics")
    assert m.status_code == 200 and m.headers["content-type"].startswith("text/plain")
    lines = m.text.splitlines()
    assert "# TYPE safeface_requests_total counter" in lines
    assert any(line.startswith('safeface_requests_total{route="/v1/health",status="200"}') for line in lines)
    assert any(line.startswith('safeface_request_seconds_bucket{route="/v1/health",le="+Inf"}') for line in lines)
    assert "sfk_" not in m.text


def test_openapi_schema_matches_the_copy_in_the_repository(svc: dict[str, Any]) -> None:
    served = httpx.get(svc["url"] + "/openapi.json").json()
    kept = json.loads((Path(__import__("safeface").__file__).parent / "service" / "openapi.json").read_text())
    assert served == kept, "the API changed: regenerate with `python -m safeface.service.openapi`"
    assert {"/v1/enroll", "/v1/verify", "/v1/identify", "/v1/export", "/v1/erase", "/v1/consent/revoke",
            "/v1/purge", "/v1/analyze", "/v1/audit/verify", "/v1/report", "/v1/health", "/v1/ready",
            "/metrics"} <= set(served["paths"])


def test_client_same_calls_and_errors_as_safeface(svc: dict[str, Any]) -> None:
    from safeface.client import Client

    url, paths = svc["url"], svc["paths"]
    token = consent(paths, "frank")
    with Client(url, svc["keys"]["operator"]) as c:
        assert svc["keys"]["operator"] not in repr(c)
        e = c.enroll(svc["obama"], "frank", "demo", token)
        assert e.row_id > 0 and e.purpose == "demo"
        v = c.verify(svc["obama2"], "frank", "demo", token)
        assert v.match and v.pseudonym == e.pseudonym and v.threshold is not None and v.score >= v.threshold
        miss = c.verify(svc["biden"], "frank", "demo", token)
        assert not miss.match and miss.score is None and miss.threshold is None
        assert c.identify(svc["obama2"], "demo", token)[0].subject == e.pseudonym
        assert c.analyze(svc["obama"])["faces"] == 1
        with pytest.raises(PolicyViolation) as exc:
            c.analyze(svc["obama"], ["race"])
        assert exc.value.rule == "CN-18"
        with pytest.raises(ImageError):
            c.verify(b"not an image", "frank", "demo", token)
        assert c.audit_verify().entries > 0
        assert c.erase("frank").templates_removed == 1
        assert c.health()
    with Client(url, svc["keys"]["kiosk"]) as c, pytest.raises(PolicyViolation) as exc:
        c.enroll(svc["obama"], "frank", "demo", token)
    assert exc.value.rule == "CN-16"
    with Client(url, "sfk_000000000000_" + "B" * 43) as c, pytest.raises(AuthenticationError):
        c.purge()
    with Client(url, svc["keys"]["slow"]) as c, pytest.raises(ServiceBusy) as busy:
        for _ in range(5):
            c.purge()
    assert busy.value.retry_after >= 1


def test_overload_answers_only_503_and_loses_no_acknowledged_enrolment(svc: dict[str, Any]) -> None:
    """threads 1 + queue 1: 12 enrolments at once. Each answer is 200 or 503 with Retry-After,
    and every 200 is stored and audited."""
    url, paths, op = svc["url"], svc["paths"], svc["keys"]["operator"]
    tokens = {f"load{i}": consent(paths, f"load{i}") for i in range(12)}
    results: dict[str, Any] = {}

    def one(subject: str) -> None:
        results[subject] = post_image(url, "/v1/enroll", op, svc["obama"], subject=subject, purpose="demo",
                                      consent=tokens[subject])

    threads = [threading.Thread(target=one, args=(s,)) for s in tokens]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=300)
    codes = {s: r.status_code for s, r in results.items()}
    assert set(codes.values()) <= {200, 503}, codes
    busy = [r for r in results.values() if r.status_code == 503]
    assert busy, "12 calls at once on 1 thread + 1 queue slot must overflow"
    assert all(int(r.headers["Retry-After"]) >= 1 and r.json()["error"] == "ServiceBusy" for r in busy)
    acked = {s: r.json()["row_id"] for s, r in results.items() if r.status_code == 200}
    assert acked
    with open_sf(paths) as sf:
        rows = {rec.row_id for rec in sf.records()}
        notes = " ".join(e.note or "" for e in sf.audit_entries() if e.operation == "enroll" and e.decision == "allowed")
        sf.audit_verify()
    for s, row in acked.items():
        assert row in rows and f"rows={row};" in notes + ";", s
    assert 'safeface_overload_total' in httpx.get(url + "/metrics").text


@pytest.mark.slow
def test_kill9_mid_enrolment_then_restart_loses_no_acknowledged_enrolment(tmp_path: Path) -> None:
    """Two worker processes share the workspace under an enrolment load, then every process of
    the server is killed with SIGKILL; after a restart the audit verifies and every acknowledged
    enrolment is stored and named by its entry."""
    import time

    paths = make_workspace(tmp_path / "ws")
    with open_sf(paths) as sf:
        key = sf.issue_api_key("operator", rate=1000)[1]
    image = jpeg_640(images() / "obama.jpg")
    tokens = {f"k{i}": consent(paths, f"k{i}") for i in range(40)}
    server = Server(paths.root, tmp_path / "server.log", ["--workers", "2", "--threads", "1", "--queue", "4"]).wait_ready()
    acked: dict[str, int] = {}
    failed: list[str] = []
    lock = threading.Lock()
    subjects = iter(tokens)

    def worker() -> None:
        while True:
            with lock:
                s = next(subjects, None)
            if s is None:
                return
            try:
                r = post_image(server.url, "/v1/enroll", key, image, subject=s, purpose="demo", consent=tokens[s])
            except httpx.HTTPError:
                failed.append(s)  # in flight when the server died: no answer, no promise
                continue
            if r.status_code == 200:
                with lock:
                    acked[s] = r.json()["row_id"]

    threads = [threading.Thread(target=worker) for _ in range(4)]
    for t in threads:
        t.start()
    deadline = time.monotonic() + 120
    while len(acked) < 4 and time.monotonic() < deadline:
        time.sleep(0.05)
    server.kill9()
    for t in threads:
        t.join(timeout=120)
    assert len(acked) >= 4 and failed, (len(acked), failed)
    again = Server(paths.root, tmp_path / "server2.log").wait_ready()
    try:
        r = httpx.get(again.url + "/v1/audit/verify", headers=key_header(key), timeout=120)
        assert r.status_code == 200 and r.json()["ok"] is True, r.text
    finally:
        again.stop()
    with open_sf(paths) as sf:
        sf.audit_verify()
        rows = {rec.row_id for rec in sf.records()}
        notes = " ".join(e.note or "" for e in sf.audit_entries() if e.operation == "enroll" and e.decision == "allowed")
    for s, row in acked.items():
        assert row in rows and f"rows={row};" in notes, s


def test_views_follow_a_deployment_edited_while_open(tmp_path: Path) -> None:
    """acting_as views share the workspace's reading of deployment.json: a change made through one
    view's call, and its undoing, take effect for the next view too."""
    from policy_support import edit_config, restore_config

    paths = make_workspace(tmp_path / "ws")
    original = paths.config.read_text()
    with open_sf(paths) as sf:
        assert sf.acting_as("operator", "k1").may("enroll")

        def kiosk_only(raw: dict[str, Any]) -> None:
            raw["roles"]["operator"] = ["report"]

        edit_config(paths, kiosk_only)
        with pytest.raises(PolicyViolation):
            sf.acting_as("operator", "k1").purge()
        restore_config(paths, original)
        assert sf.acting_as("operator", "k2").purge() is None  # allowed again, for a fresh view
        assert sf.purge() is None


def test_liveness_challenge_and_check_over_the_service(svc: dict[str, Any], tmp_path: Path) -> None:
    """The same calls as in process: a challenge, then a clip answering it; a waved print is not live
    and gets no evidence; a challenge answers once."""
    from safeface.client import Client
    from safeface.evaluate.pad import waved_attack, write_clip
    from safeface.imageio import load_image

    with Client(svc["url"], svc["keys"]["operator"], timeout=240) as client:
        ch = client.liveness_challenge()
        assert ch["steps"] and len(ch["challenge"]) >= 20
        # A print waved the way the challenge starts (seed 1 turns it to the person's left first,
        # seed 2 to the right), so the physics and surface judge it: one that turns the other way
        # fails the challenge first, "inconclusive" (test_liveness_challenge_attacks.py).
        seed = 1 if ch["steps"][0] == "left" else 2
        clip = write_clip(waved_attack(load_image(images() / "obama.jpg"), "print", seed=seed)[::2],
                          tmp_path / "print.mp4", fps=15)
        result = client.liveness_check(clip, ch["challenge"])
        assert not result.live and result.evidence is None
        # No cue's measurement crosses the network (each would guide the next print); the
        # operator's log has them under the clip's hash.
        assert result.decision == "attack" and result.score is None and result.checks == {"reason": NOT_LIVE}
        assert f"clip {result.clip_sha256[:16]}: attack" in svc["server"].log()
        assert "off_plane" in svc["server"].log()
        with pytest.raises(PolicyViolation) as info:
            client.liveness_check(clip, ch["challenge"])
        assert info.value.rule == "PA-01"


def test_a_live_answer_carries_no_score_nor_cue() -> None:
    """Over the network a liveness answer gives the decision and capture advice, never the
    surface measurement or the cues, live or not: they would let a key holder tune a print or
    an accomplice clip by clip."""
    from safeface.sdk.results import LivenessCheck
    from safeface.service.answers import liveness_answer

    checks = {"surface": {"off_plane": 0.31}, "physics": {"yaw": 22.0}, "reason": "the face turned ..."}
    r = LivenessCheck("live", 0.775, checks, "ab" * 32, "sflv1.x.y", dt.datetime(2026, 1, 1, tzinfo=dt.timezone.utc))
    out = liveness_answer(r)
    assert out["live"] is True and out["evidence"] == "sflv1.x.y"
    assert out["score"] is None and out["checks"] == {"reason": "live"}, out
    for decision in ("attack", "inconclusive"):
        out = liveness_answer(LivenessCheck(decision, 0.31, {**checks, "reason": "turn more"}, "ab" * 32))
        assert out["score"] is None and set(out["checks"]) == {"reason"}, out


def test_the_call_past_threads_plus_queue_is_refused_at_once(tmp_path: Path) -> None:
    import asyncio

    from safeface.service.runtime import Runtime, ServiceConfig

    ws = make_workspace(tmp_path / "ws")
    pf = tmp_path / "pass"
    pf.write_text(PASSPHRASE)
    pf.chmod(0o600)  # passphrase files must be private
    rt = Runtime(ServiceConfig(workspace=ws.root, passphrase_file=pf, threads=1, queue=2))
    release = threading.Event()

    async def main() -> list[object]:
        held = [asyncio.ensure_future(rt.call(lambda sf: release.wait(30))) for _ in range(3)]
        await asyncio.sleep(0.2)
        assert rt.in_flight == 3
        try:
            with pytest.raises(ServiceBusy):  # refused at once, not queued behind the three
                await asyncio.wait_for(rt.call(lambda sf: True), 2)
        finally:
            release.set()
        return list(await asyncio.gather(*held))

    try:
        assert asyncio.run(main()) == [True, True, True]
    finally:
        release.set()
        rt.close()
