"""Re-keying under attack: a re-key that died before its move, a store file away for a moment,
and a change log emptied by hand never cost the keys the templates are under."""

from __future__ import annotations

import shutil
import sqlite3
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
from policy_support import PASSPHRASE, consent, images, make_workspace, open_sf  # noqa: E402

from safeface.hazmat.templates import PassphraseKeyring  # noqa: E402


def _die(point: str) -> None:
    if point == "rekey:row":
        raise KeyboardInterrupt("stopped while moving the rows")


def test_a_store_made_new_after_a_failed_rekey_does_not_retire_the_keys_of_its_backup(tmp_path: Path) -> None:
    """A re-key writes its new key versions before it moves the rows; one that died in the move
    left them unused. An open that then found gallery.db away (deleted, or moved aside while a
    backup was put back) made an empty store under the newest versions and "finished the
    interrupted re-key" by retiring the versions every real template was under: the backup could
    never be opened again. Only a store a re-key moved now leads to retirement."""
    ws = make_workspace(tmp_path / "ws")
    imgs = images()
    t = consent(ws, "alice")
    with open_sf(ws) as sf:
        sf.enroll(imgs / "obama.jpg", "alice", "demo", t)
        sf._gallery._hook = _die
        with pytest.raises(KeyboardInterrupt):
            sf.rekey()
    assert list(PassphraseKeyring.open(ws.keyring, PASSPHRASE).versions("transform")) == [1, 2]
    backup = tmp_path / "gallery.bak"
    shutil.move(str(ws.gallery), backup)
    for extra in ("-wal", "-shm"):
        Path(str(ws.gallery) + extra).unlink(missing_ok=True)
    with open_sf(ws) as sf:  # a worker starting while the file is away
        assert not sf.records()
    assert 1 in PassphraseKeyring.open(ws.keyring, PASSPHRASE).versions("transform")
    # The re-key's mark, written by hand into the new store (it needs no key to write), is no mark.
    with sqlite3.connect(ws.gallery) as db:
        db.execute("INSERT OR REPLACE INTO meta (k, v) VALUES ('rekeyed_from', '1/1')")
    with open_sf(ws):
        pass
    assert 1 in PassphraseKeyring.open(ws.keyring, PASSPHRASE).versions("transform")
    for extra in ("-wal", "-shm"):
        Path(str(ws.gallery) + extra).unlink(missing_ok=True)
    shutil.move(str(backup), ws.gallery)
    with open_sf(ws) as sf:
        assert sf.verify(imgs / "obama2.jpg", "alice", "demo", t).match
        sf.rekey()  # an honest re-key moves the rows and retires what is left over
    assert list(PassphraseKeyring.open(ws.keyring, PASSPHRASE).versions("transform")) == [3]


def test_a_handle_that_missed_a_rekey_in_an_emptied_change_log_seals_under_the_new_keys(tmp_path: Path) -> None:
    """A worker opened before another process re-keyed learns of it from the store's change
    log; with that log emptied by hand it went on sealing new rows under the retired keys, and
    the next open of the workspace failed on them. The worker now reads the store's key
    versions from its meta before each write."""
    ws = make_workspace(tmp_path / "ws")
    imgs = images()
    with open_sf(ws) as sf:
        sf.enroll(imgs / "obama.jpg", "alice", "demo", consent(ws, "alice"))
    worker = open_sf(ws)
    try:
        with open_sf(ws) as admin:
            admin.rekey()
        with sqlite3.connect(ws.gallery) as db:
            db.execute("DELETE FROM changes")
        carol = consent(ws, "carol")
        worker.enroll(imgs / "biden.jpg", "carol", "demo", carol)
    finally:
        worker.close()
    with open_sf(ws) as sf:
        assert sf.verify(imgs / "biden.jpg", "carol", "demo", carol).match
        assert sf.audit_verify().entries > 0
