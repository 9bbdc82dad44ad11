"""Workspace files replaced or removed under an open handle, by someone who can write the folder
(no key): the SQLite files a long-running handle keeps open."""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
from policy_support import consent, images, make_workspace, open_sf  # noqa: E402
from test_gallery_open_handles import DIM, EXP, _fresh, _in_another_process, _unit  # noqa: E402

from safeface.errors import IntegrityError  # noqa: E402
from safeface.storage.gallery import Gallery  # noqa: E402

IMG = images()


def _swap_for_copy(path: Path) -> None:
    shutil.copy(path, path.with_name(path.name + ".copy"))
    os.replace(path.with_name(path.name + ".copy"), path)


def test_a_gallery_log_removed_under_an_open_handle_is_refused(tmp_path: Path) -> None:
    """gallery.db-wal and -shm deleted under an open handle (other processes then see neither its
    commits nor it theirs): its next call must refuse, not go on in its own orphaned log."""
    keys, keyring, db = _fresh(tmp_path)
    with Gallery.open(db, keyring, DIM) as service:
        service.add("alice", _unit(1), ["demo"], "tok-a", EXP)
        for part in ("-wal", "-shm"):
            os.unlink(f"{db}{part}")
        _in_another_process(keys, db, "bob")
        with pytest.raises(IntegrityError, match="replaced"):
            service.search(_unit(1), "demo", k=5)


@pytest.mark.parametrize("name", ["audit", "policy"])
def test_a_workspace_database_replaced_under_an_open_handle_is_refused(tmp_path: Path, name: str) -> None:
    """A copy of audit.db or policy.db renamed over it under an open SafeFace handle (it would judge
    and record in the old file, other processes in the new): its next call must refuse."""
    ws = make_workspace(tmp_path / "ws")
    with open_sf(ws) as sf:
        t = consent(ws, "alice")
        sf.enroll(IMG / "obama.jpg", "alice", "demo", t)
        _swap_for_copy(getattr(ws, name))
        with pytest.raises(IntegrityError, match="replaced"):
            sf.verify(IMG / "obama2.jpg", "alice", "demo", t)


def test_the_api_key_store_replaced_under_an_open_handle_is_refused(tmp_path: Path) -> None:
    """A copy of apikeys.db renamed over it while the service's key store is open (a key revoked in
    the new file would still be let in by the old): its next lookup must refuse."""
    from safeface.workspace.apikeys import ApiKeys

    store = ApiKeys(tmp_path / "apikeys.db", b"k" * 32)
    try:
        store.list()
        _swap_for_copy(tmp_path / "apikeys.db")
        with pytest.raises(IntegrityError, match="replaced"):
            store.list()
    finally:
        store.close()


def test_a_gallery_replaced_while_an_erasure_runs_gets_no_receipt(tmp_path: Path) -> None:
    """A copy of gallery.db renamed over it after an erasure's start-of-call check, before its
    commit: the erasure must refuse, not commit into the old file and count alice as erased."""
    keys, keyring, db = _fresh(tmp_path)
    with Gallery.open(db, keyring, DIM) as service:
        service.add("alice", _unit(1), ["demo"], "tok-a", EXP)
        service._hook = lambda point: _swap_for_copy(db) if point == "erase:deleted" else None
        with pytest.raises(IntegrityError, match="replaced"):
            service.erase_subject("alice")
    with Gallery.open(db, keyring, DIM) as g:
        assert g.subject_count() == 1
