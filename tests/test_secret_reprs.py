"""What a log line, a debugger or a test report shows of an object is its repr: no object that
holds a secret (the keyring passphrase, a consent token, an API key) shows it there."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import numpy as np

from policy_support import PASSPHRASE, consent, make_workspace, open_sf
from safeface.client import Client
from safeface.storage.rows import Enrollment

API_KEY = "sfk_0123456789ab_" + "S" * 43


def test_no_repr_shows_a_passphrase_a_consent_token_or_an_api_key(tmp_path: Path) -> None:
    paths = make_workspace(tmp_path / "ws")
    token = consent(paths, "alice")
    signature = token.rsplit(".", 1)[1]
    shown = []
    with open_sf(paths) as sf:
        shown += [repr(sf), str(sf), repr(sf.deployment)]
    # The stores' input: a consent token travels with its template to be sealed into the row.
    item = Enrollment("alice", np.ones(128, np.float32), ("demo",), "t-ref", dt.datetime(2030, 1, 1,
                      tzinfo=dt.timezone.utc), token=token)
    assert item.token == token
    shown += [repr(item), str(item)]
    with Client("http://127.0.0.1:9", API_KEY) as client:
        shown += [repr(client), str(client)]
    secrets = {"passphrase": PASSPHRASE, "consent token": signature, "API key": API_KEY[16:]}
    for text in shown:
        assert [name for name, secret in secrets.items() if secret in text] == [], text
