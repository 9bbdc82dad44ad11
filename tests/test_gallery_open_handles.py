"""An open gallery handle (a service) kept current with gallery.db while another process writes
and someone who can write the file, without a key, edits it.

A failed reload: another process enrols "alice"; the attacker empties the change log (so the
service must read the store whole) and edits a column of alice's row (so that read fails its
check). The service's next call fails, as it must; an earlier release's handle then counted
itself current, went on with the rows it had before alice, and let "ALICE" in beside her (and
past the filing count). A change-log row whose row id was edited into text stopped every later
search of an open handle with a bare ValueError, while a new handle opened fine. A byte-for-byte
copy of gallery.db renamed over it left the open handle on the old file: another process erased
alice in the new one, and the handle went on finding her after her receipt."""

from __future__ import annotations

import datetime as dt
import os
import shutil
import sqlite3
import subprocess
import sys
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
from child_process import child_env  # noqa: E402

from safeface.errors import IntegrityError  # noqa: E402
from safeface.hazmat.templates import PassphraseKeyring, ScryptParams  # noqa: E402
from safeface.storage.gallery import Gallery  # noqa: E402

DIM = 128
PASS = "not a secret"
EXP = dt.datetime(2100, 1, 1, tzinfo=dt.timezone.utc)


def _unit(seed: int) -> np.ndarray:
    x = np.random.default_rng(seed).standard_normal(DIM)
    return x / np.linalg.norm(x)


def _fresh(tmp_path: Path) -> tuple[Path, PassphraseKeyring, Path]:
    """A new keyring file, its keyring and where the gallery goes."""
    keys = tmp_path / "keys.json"
    return keys, PassphraseKeyring.create(keys, PASS, ScryptParams(n=2**10, r=8, p=1)), tmp_path / "gallery.db"


def _in_another_process(keys: Path, db: Path, subject: str, erase: bool = False) -> None:
    """Enrol (or erase) `subject` through a gallery handle of a child process."""
    code = ("import sys, datetime as dt, numpy as np\n"
            "from safeface.hazmat.templates import PassphraseKeyring\n"
            "from safeface.storage.gallery import Gallery\n"
            "k = PassphraseKeyring.open(sys.argv[1], sys.argv[2])\n"
            "v = np.random.default_rng(7).standard_normal(128)\n"
            "with Gallery.open(sys.argv[3], k, 128) as g:\n"
            "    if sys.argv[5] == 'erase':\n"
            "        assert g.erase_subject(sys.argv[4]).count == 1\n"
            "    else:\n"
            "        g.add(sys.argv[4], v / np.linalg.norm(v), ['demo'], 'tok-x', "
            "dt.datetime(2100, 1, 1, tzinfo=dt.timezone.utc))\n")
    subprocess.run([sys.executable, "-c", code, str(keys), PASS, str(db), subject, "erase" if erase else "add"],
                   env=child_env(), cwd="/", check=True, timeout=120, capture_output=True)


@contextmanager
def _bob_here_alice_elsewhere(tmp_path: Path) -> Iterator[tuple[Gallery, PassphraseKeyring, Path]]:
    """An open handle that enrolled bob, and alice enrolled meanwhile by another process:
    (the handle, its keyring, the gallery's path)."""
    keys, keyring, db = _fresh(tmp_path)
    with Gallery.open(db, keyring, DIM) as service:
        service.add("bob", _unit(1), ["demo"], "tok-b", EXP)
        _in_another_process(keys, db, "alice")
        yield service, keyring, db


def test_a_failed_reload_leaves_no_stale_handle_to_judge_look_alikes_and_the_filing_count(tmp_path: Path) -> None:
    """Alice enrolled by another process, the change log emptied and her row edited, no key:
    every later call of the open handle must fail until the store reads whole, never judge by the
    rows it had (ALICE let in beside alice, zero people counted)."""
    with _bob_here_alice_elsewhere(tmp_path) as (service, keyring, db):
        with sqlite3.connect(db) as con:
            con.execute("DELETE FROM changes")
            con.execute("UPDATE rows SET provenance = 'edited' WHERE row_id = 2")
        with pytest.raises(IntegrityError, match="row 2"):
            service.subject_count()
        with pytest.raises(IntegrityError, match="row 2"):
            service.subject_count()
        with pytest.raises(IntegrityError, match="row 2"):
            service.has_subject("alice")
        with pytest.raises(IntegrityError, match="row 2"):
            service.add("ALICE", _unit(3), ["demo"], "tok-c", EXP)
        with sqlite3.connect(db) as con:  # the edit put back: nothing would show it any more
            con.execute("UPDATE rows SET provenance = 'consent' WHERE row_id = 2")
        assert service.subject_count() == 2
    with Gallery.open(db, keyring, DIM) as g:
        assert len({r.pseudonym for r in g.rows()}) == 2


def test_a_change_log_row_id_edited_into_text_does_not_stop_an_open_handle(tmp_path: Path) -> None:
    """A change-log row naming row id 'x' (no key needed): the open handle reads the store whole
    and goes on finding bob, and a row enrolled elsewhere meanwhile, instead of a bare ValueError."""
    with _bob_here_alice_elsewhere(tmp_path) as (service, keyring, db):
        with sqlite3.connect(db) as con:
            con.execute("INSERT INTO changes (row_id, op) VALUES ('x', 'upsert')")
        found = service.search(_unit(1), "demo", k=5)
        assert found[0].pseudonym == service.pseudonym("bob") and len(found) == 2
        assert service.subject_count() == 2


def test_a_gallery_file_replaced_under_an_open_handle_cannot_keep_an_erased_person_matched(tmp_path: Path) -> None:
    """A copy of gallery.db renamed over it (no key), then alice erased by another process in the
    new file: the open handle must refuse to search, enrol or erase in its old file, not go on
    finding her (nor sign receipts for erasures the new file never saw)."""
    keys, keyring, db = _fresh(tmp_path)
    with Gallery.open(db, keyring, DIM) as service:
        service.add("alice", _unit(1), ["demo"], "tok-a", EXP)
        service.add("bob", _unit(2), ["demo"], "tok-b", EXP)
        assert service.search(_unit(1), "demo", k=1)[0].pseudonym == service.pseudonym("alice")
        shutil.copy(db, tmp_path / "copy.db")
        os.replace(tmp_path / "copy.db", db)
        _in_another_process(keys, db, "alice", erase=True)
        with pytest.raises(IntegrityError, match="replaced"):
            service.search(_unit(1), "demo", k=5)
        with pytest.raises(IntegrityError, match="replaced"):
            service.add("carol", _unit(3), ["demo"], "tok-c", EXP)
        with pytest.raises(IntegrityError, match="replaced"):  # a receipt for the old file's rows alone
            service.erase_subject("bob")
    with Gallery.open(db, keyring, DIM) as g:
        assert [m.pseudonym for m in g.search(_unit(1), "demo", k=5)] == [g.pseudonym("bob")]
