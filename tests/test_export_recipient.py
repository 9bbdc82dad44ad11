"""An export's recipient: free text a caller writes into the audit log that operators read."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
from policy_support import consent, images, legal_basis, make_workspace, open_sf  # noqa: E402
from service_support import keyed_client  # noqa: E402

from safeface.errors import InvalidArgument  # noqa: E402


BAD = ["Acme HR\u202e; judged after entry 1\u202c", "Acme HR\n\x1b[2J", "Acme HR\u2028entry 2", "Acme\u200bHR"]


def test_an_export_recipient_with_bidi_or_control_characters_is_refused_on_record(tmp_path: Path) -> None:
    """A key holder names a recipient with a bidi override, a control, a line separator or a
    zero-width space: each 422 and on record; a plain recipient is served."""
    client, ws, (op,) = keyed_client(tmp_path, "operator")
    with open_sf(ws) as sf:
        sf.enroll(images() / "obama.jpg", "alice", "demo", consent(ws, "alice"))
    lb = legal_basis(ws, operations=["transmit"])
    with client:
        refused = [client.post("/v1/export", headers={"X-API-Key": op}, json={
            "subject": "alice", "purpose": "demo", "recipient": bad, "legal_basis": lb}) for bad in BAD]
        ok = client.post("/v1/export", headers={"X-API-Key": op},
                         json={"subject": "alice", "purpose": "demo", "recipient": "Acme HR", "legal_basis": lb})
    for bad, r in zip(BAD, refused):
        assert r.status_code == 422 and r.json()["error"] == "InvalidArgument", (bad, r.text[:200])
    assert ok.status_code == 200, ok.text[:200]
    with open_sf(ws) as sf:
        entries = [e for e in sf.audit_entries() if e.operation == "export"]
    assert [e.decision for e in entries] == ["failed"] * len(BAD) + ["allowed"]
    assert all(e.note == "InvalidArgument" for e in entries[:-1])


def test_a_blank_recipient_or_one_too_long_to_record_whole_is_refused_on_record(tmp_path: Path) -> None:
    """An app names a blank recipient (spaces, a Hangul filler, a braille blank), or "Acme HR", 200
    spaces, "and data-broker.example": each refused on record; one that is served is recorded whole."""
    ws = make_workspace(tmp_path / "ws")
    lb = legal_basis(ws, operations=["transmit"])
    padded = "Acme HR" + " " * 90 + "and data-broker.example"
    with open_sf(ws) as sf:
        sf.enroll(images() / "obama.jpg", "alice", "demo", consent(ws, "alice"))
        blanks = ("", "   ", "\u3164", "\u2800 \u3164")
        for bad in (*blanks, "Acme HR" + " " * 200 + "and data-broker.example"):
            with pytest.raises(InvalidArgument):
                sf.export("alice", "demo", bad, legal_basis=lb)
        assert sf.export("alice", "demo", padded, legal_basis=lb).recipient == padded
        entries = [e for e in sf.audit_entries() if e.operation == "export"]
    assert [e.decision for e in entries] == ["failed"] * (len(blanks) + 1) + ["allowed"]
    assert f"to {padded};" in str(entries[-1].note)
