"""Requests a key holder shapes to cost the service more than their call is worth, and a stolen
console cookie. Each test is a review's finding: a JSON body of many keys parsed on the event
loop, an attribute list classified name by name, console pages that did not spend the key's
rate, and session cookies without Secure behind a TLS-terminating proxy."""

from __future__ import annotations

import base64
import sys
from pathlib import Path
from typing import Any

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
from policy_support import images, make_workspace, open_sf  # noqa: E402
from service_support import console_login, csrf_of  # noqa: E402

from safeface.errors import InvalidArgument  # noqa: E402
from safeface.policy.attributes import MAX_ATTRIBUTES  # noqa: E402
from safeface.service.bodies import MAX_JSON_MEMBERS, check_json_size  # noqa: E402


def _client(tmp_path: Path, role: str, base_url: str = "https://testserver", **key: Any) -> tuple[Any, str]:
    from fastapi.testclient import TestClient
    from service_support import in_process_app

    ws = make_workspace(tmp_path / "ws")
    with open_sf(ws) as sf:
        _, secret = sf.issue_api_key(role, label=role, **key)
    return TestClient(in_process_app(ws.root, tmp_path), base_url=base_url), secret


def test_a_json_body_of_many_keys_is_refused_before_it_is_parsed(tmp_path: Path) -> None:
    """One object of 845,000 short keys (8 MiB, one container, so the container bound let it
    through) held the worker's event loop for about 0.9 s in json.loads, every route with it,
    from a key whose role may not even make the call."""
    many = ("{" + ",".join(f'"{i:x}":0' for i in range(5000)) + "}").encode()
    with pytest.raises(InvalidArgument, match="commas and colons"):
        check_json_size(many)
    check_json_size(b'{"subject": "alice", "purpose": "demo", "recipient": "Acme, Inc.: HR (Berlin: 2nd floor)"}')
    check_json_size(b"{" + b",".join(b'"f%d":"x"' % i for i in range(MAX_JSON_MEMBERS // 2)) + b"}")
    client, key = _client(tmp_path, "auditor")
    with client:
        r = client.post("/v1/erase", headers={"X-API-Key": key, "content-type": "application/json"}, content=many)
    assert r.status_code == 422 and "commas and colons" in r.json()["message"]


def test_a_long_attribute_list_is_refused_before_any_name_is_classified(tmp_path: Path) -> None:
    """`attributes` was read without the fields' length bound, and each name was classified
    against every category before duplicates went: 250,000 names held a worker thread 18 s."""
    client, key = _client(tmp_path, "operator")
    photo = (images() / "obama2.jpg").read_bytes()
    with client:
        form = client.post("/v1/analyze", headers={"X-API-Key": key}, files={"image": ("p.jpg", photo, "image/jpeg")},
                           data={"attributes": "faces," * 5000})
        listed = client.post("/v1/analyze", headers={"X-API-Key": key},
                             json={"attributes": ["faces"] * (MAX_ATTRIBUTES + 1),
                                   "image_base64": base64.b64encode(photo).decode()})
        fine = client.post("/v1/analyze", headers={"X-API-Key": key}, files={"image": ("p.jpg", photo, "image/jpeg")},
                           data={"attributes": "faces, boxes"})
    assert form.status_code == 422 and "at most" in form.json()["message"]
    assert listed.status_code == 422 and f"at most {MAX_ATTRIBUTES}" in listed.json()["message"]
    assert fine.status_code == 200, fine.text
    # In process too: many distinct names are refused whole; the same name many times is one.
    ws = make_workspace(tmp_path / "ws2")
    with open_sf(ws) as sf:
        with pytest.raises(InvalidArgument, match=f"at most {MAX_ATTRIBUTES} attributes"):
            sf.analyze(images() / "obama2.jpg", ["faces"] + [f"name{i}" for i in range(MAX_ATTRIBUTES)])
        with pytest.raises(InvalidArgument, match="characters"):
            sf.analyze(images() / "obama2.jpg", ["faces" + " " * 100])
        assert sf.analyze(images() / "obama2.jpg", ["faces"] * 1000) == {"faces": 1}


def test_every_console_page_spends_the_keys_rate(tmp_path: Path) -> None:
    """A stolen console session of a key limited to 1 request a second: the audit page answered
    429 past the rate, but the root, receipts and report downloads answered every request."""
    client, key = _client(tmp_path, "auditor", rate=1)
    with client:
        assert console_login(client, key).status_code == 303
        for path in ("/", "/receipts/aaaaaaaaaaaa", "/receipts/aaaaaaaaaaaa.json", "/report/compliance.json"):
            statuses = [client.get(path, follow_redirects=False).status_code for _ in range(4)]
            assert 429 in statuses, (path, statuses)


def test_console_cookies_are_secure_whatever_the_listener(tmp_path: Path) -> None:
    """Behind a proxy that terminates TLS (`serve --plain-http`) the session cookie had no Secure
    attribute, so the browser also sent it to any http:// address of the host, where a thief on
    the network read it and held the console for 8 hours."""
    client, key = _client(tmp_path, "operator", base_url="http://testserver")
    with client:
        form = client.get("/login")
        # The client keeps no Secure cookie from http://: send the login cookie back as a proxy's
        # browser on HTTPS would.
        client.cookies.set("__Host-sf_login", form.headers["set-cookie"].split("=", 1)[1].split(";")[0])
        r = client.post("/login", data={"csrf": csrf_of(form.text),
                                        "api_key": key}, follow_redirects=False)
    cookies = [v for k, v in list(form.headers.multi_items()) + list(r.headers.multi_items())
               if k == "set-cookie" and "max-age=0" not in v.lower()]  # not the login cookie's removal
    assert {c.split("=", 1)[0] for c in cookies} == {"__Host-sf_login", "__Host-sf_session"}, cookies
    assert all("; secure" in c.lower() and "httponly" in c.lower() for c in cookies), cookies
