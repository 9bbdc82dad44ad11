"""One datum, one value: a field and its header, a header sent twice, two API keys, a console
form naming a field twice, or a look-alike field name. A gateway, a log or a reviewer reading one
copy must never see another value than the one the service acts on."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
from policy_support import consent, images, legal_basis, open_sf  # noqa: E402
from service_support import console_login, csrf_of, keyed_client  # noqa: E402


def _exports(ws: Any) -> list[str]:
    with open_sf(ws) as sf:
        return [e.decision for e in sf.audit_entries() if e.operation == "export"]


def test_a_legal_basis_given_as_a_field_and_a_different_header_is_refused(tmp_path: Path) -> None:
    """A key holder exports with one legal basis in the body and another in X-Legal-Basis (the one
    a gateway checked): 422, nothing exported, rather than acting on the body's."""
    client, ws, (op,) = keyed_client(tmp_path, "operator")
    with open_sf(ws) as sf:
        sf.enroll(images() / "obama.jpg", "alice", "demo", consent(ws, "alice"))
    lb = legal_basis(ws, operations=["transmit"])
    with client:
        r = client.post("/v1/export", headers={"X-API-Key": op, "X-Legal-Basis": "gateway-checked-this-one"},
                        json={"subject": "alice", "purpose": "demo", "recipient": "Acme HR", "legal_basis": lb})
    assert r.status_code == 422 and r.json()["error"] == "InvalidArgument", r.text[:200]
    assert "allowed" not in _exports(ws)


@pytest.mark.parametrize("copy", ["X-Legal-Basis", "X_Legal_Basis"])
def test_a_legal_basis_header_sent_twice_is_refused(tmp_path: Path, copy: str) -> None:
    """X-Legal-Basis sent twice, a genuine basis then another value (a proxy keeping the last one
    sees something else), or the copy spelled X_Legal_Basis (a CGI or WSGI gateway reads it as the
    same header): 422, nothing exported."""
    client, ws, (op,) = keyed_client(tmp_path, "operator")
    with open_sf(ws) as sf:
        sf.enroll(images() / "obama.jpg", "alice", "demo", consent(ws, "alice"))
    lb = legal_basis(ws, operations=["transmit"])
    with client:
        r = client.post("/v1/export", headers=[("X-API-Key", op), ("X-Legal-Basis", lb),
                                               (copy, "the-one-the-proxy-logged")],
                        json={"subject": "alice", "purpose": "demo", "recipient": "Acme HR"})
    assert r.status_code == 422 and r.json()["error"] == "InvalidArgument", r.text[:200]
    assert "allowed" not in _exports(ws)


@pytest.mark.parametrize("second", ["bearer", "header"])
def test_two_different_api_keys_in_one_request_are_refused(tmp_path: Path, second: str) -> None:
    """A request carries an operator key in X-API-Key and an auditor key as a Bearer token or a
    second X-API-Key (what a gateway may authorize by): 401, nobody erased."""
    client, ws, (op, aud) = keyed_client(tmp_path, "operator", "auditor")
    with open_sf(ws) as sf:
        sf.enroll(images() / "obama.jpg", "alice", "demo", consent(ws, "alice"))
    extra = ("Authorization", f"Bearer {aud}") if second == "bearer" else ("X-API-Key", aud)
    with client:
        r = client.post("/v1/erase", headers=[("X-API-Key", op), extra], json={"subject": "alice"})
    with open_sf(ws) as sf:
        assert r.status_code == 401 and len(sf.records()) == 1, r.text[:200]


def test_a_console_form_naming_its_pseudonym_twice_erases_nobody(tmp_path: Path) -> None:
    """The console's erase form is posted with `pseudonym` twice, alice's then bob's (a reviewer
    reads the first): refused, nobody erased, as /v1 refuses it."""
    client, ws, (op,) = keyed_client(tmp_path, "operator", rate=1000)
    with open_sf(ws) as sf:
        sf.enroll(images() / "obama.jpg", "alice", "demo", consent(ws, "alice"))
        sf.enroll(images() / "biden.jpg", "bob", "demo", consent(ws, "bob"))
        pa, pb = sf.pseudonym("alice"), sf.pseudonym("bob")
    with client:
        assert console_login(client, op).status_code == 303
        page = client.get("/subjects").text
        client.post("/subjects/erase", content=f"csrf={csrf_of(page)}&pseudonym={pa}&pseudonym={pb}",
                    headers={"content-type": "application/x-www-form-urlencoded"}, follow_redirects=False)
    with open_sf(ws) as sf:
        assert {rec.pseudonym for rec in sf.records()} == {pa, pb}


@pytest.mark.parametrize("name", ["Subject", "\u0455ubject", "subject\u200b"])
def test_a_field_name_spelled_like_another_in_one_body_is_refused(tmp_path: Path, name: str) -> None:
    """An erasure body holds "subject" (bob) and a look-alike name (case, a Cyrillic letter, a
    zero-width space) a gateway or reviewer reads as the subject: 422, bob not erased."""
    client, ws, (op,) = keyed_client(tmp_path, "operator")
    with open_sf(ws) as sf:
        sf.enroll(images() / "biden.jpg", "bob", "demo", consent(ws, "bob"))
    with client:
        r = client.post("/v1/erase", headers={"X-API-Key": op}, json={name: "alice", "subject": "bob"})
    with open_sf(ws) as sf:
        assert r.status_code == 422 and len(sf.records()) == 1, r.text[:200]
