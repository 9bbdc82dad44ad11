"""A credential header spelled with '_' for '-' (X_API_Key, X_Legal_Basis) is the same header to a
CGI or WSGI gateway (HTTP_X_API_KEY): sent beside the real one, it is a second copy a gateway may
act on while the service acts on the other, so the request is refused."""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from policy_support import consent, images, open_sf  # noqa: E402
from service_support import keyed_client  # noqa: E402


def test_an_api_key_header_spelled_with_underscores_beside_a_bearer_is_401(tmp_path: Path) -> None:
    """A gateway that lets only auditor keys in reads X_API_Key (an auditor key) while a stolen
    operator key rides as a Bearer token: 401, and nobody is erased."""
    client, ws, (op, aud) = keyed_client(tmp_path, "operator", "auditor")
    with open_sf(ws) as sf:
        sf.enroll(images() / "obama.jpg", "alice", "demo", consent(ws, "alice"))
    with client:
        both = [("Authorization", f"Bearer {op}"), ("X_API_Key", aud)]
        r = client.post("/v1/erase", headers=both, json={"subject": "alice"})
    assert r.status_code == 401, r.text[:200]
    with open_sf(ws) as sf:
        assert len(sf.records()) == 1
