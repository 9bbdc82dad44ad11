"""What an admin pastes where `apikey revoke` or the console wants a key's id: a whole key with
something around it, or mangled in the pasting, is refused without its secret being repeated
back; an id no text can hold is an argument refused, not a store failure."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
from policy_support import open_sf  # noqa: E402
from service_support import console_login, csrf_of, keyed_client  # noqa: E402


PASTINGS = {"bearer": "Bearer {}", "bom": "\ufeff{}", "header line": "X-API-Key: {}", "upper case": "{}"}


@pytest.mark.parametrize("how", [*PASTINGS, "dashes"])
def test_a_whole_key_pasted_with_text_around_it_is_never_repeated_back(tmp_path: Path, how: str) -> None:
    """An admin pastes a key with "Bearer " or an invisible character before it, upper-cased or with
    '-' for '_', as the id to revoke: refused, and the error holds no part of the key's secret."""
    from safeface.errors import InvalidArgument

    _, ws, (op,) = keyed_client(tmp_path, "operator")
    pasted = op.replace("_", "-") if how == "dashes" else PASTINGS[how].format(op)
    pasted = pasted.upper() if how == "upper case" else pasted
    with open_sf(ws) as sf:
        with pytest.raises(InvalidArgument) as e:
            sf.revoke_api_key(pasted)
    start = pasted.upper().index("SFK") + len("sfk_0123456789ab_")
    assert pasted[start:start + 8] not in str(e.value), str(e.value)  # the secret's head, as pasted


def test_a_whole_key_after_bearer_in_the_consoles_revoke_form_is_never_repeated_back(tmp_path: Path) -> None:
    """An operator pastes "Bearer <key>" into the console's revoke form: 422, and the answer does
    not carry the key's secret (to the screen, a proxy's log, the browser's history)."""
    client, ws, (op,) = keyed_client(tmp_path, "operator", rate=1000)
    secret = op.split("_", 2)[2]
    with client:
        assert console_login(client, op).status_code == 303
        form = {"csrf": csrf_of(client.get("/keys").text), "key_id": f"Bearer {op}"}
        r = client.post("/keys/revoke", data=form, follow_redirects=False)
    assert r.status_code == 422 and secret[:8] not in r.text, r.text[:200]


def test_a_key_id_holding_a_lone_surrogate_is_an_argument_refused(tmp_path: Path) -> None:
    """`apikey revoke` is given bytes the command line could not decode (a lone surrogate): an
    InvalidArgument, not a store failure telling the admin to check an image."""
    from safeface.errors import InvalidArgument

    _, ws, _ = keyed_client(tmp_path, "operator")
    with open_sf(ws) as sf:
        with pytest.raises(InvalidArgument, match="no API key has that id"):
            sf.revoke_api_key("0a1b2c3d4e5\udcff")
