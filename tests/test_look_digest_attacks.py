"""Look digests (columns look, look_small) are what refuses a look-alike id ("ALICE" beside
"alice", a Cyrillic letter for a Latin one), which would escape the erasure of the subject it
prints as. They are bound into each row's seal (rows.LOOKS_MAGIC): someone who can write the
database but holds no key, and blanks or changes them, makes the row fail its integrity check
where it is opened, and a new subject's enrolment opens every row that keeps none first, so
"ALICE" stays refused beside "alice". Rows sealed before the binding stay open (their look
columns blank, or two digests), and get bound at a touch that moves their expiry or a re-key.
Both stores: the SQLite gallery and the PostgreSQL record store."""

from __future__ import annotations

import os
import sqlite3
import uuid
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any, Optional

import numpy as np
import pytest

from safeface.errors import IntegrityError, InvalidArgument
from safeface.hazmat.templates import PassphraseKeyring, ScryptParams
from safeface.storage.gallery import Gallery
from safeface.storage.rows import ROW_COLS, Enrollment, seal_row, unseal_row

DIM = 128
FAST = ScryptParams(n=2**10, r=8, p=1)
LATER = datetime.now(timezone.utc) + timedelta(days=365)
EVEN_LATER = LATER + timedelta(days=30)
BACKENDS = ["sqlite", "postgresql"]


def unit_rows(n: int, seed: int = 0) -> np.ndarray:
    x = np.random.default_rng(seed).standard_normal((n, DIM)).astype(np.float32)
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


class Store:
    """One test's store of either kind, and its table as someone without keys edits it."""

    def __init__(self, kind: str, tmp_path: Path, request: pytest.FixtureRequest) -> None:
        self.kind = kind
        self.keyring = PassphraseKeyring.create(tmp_path / "keys.json", "pw", FAST)
        self.db = tmp_path / "ws" / "gallery.db"
        if kind == "postgresql":
            from server_support import PG_PASSWORD

            self.password = PG_PASSWORD
            self.dsn = request.getfixturevalue("pg").new_database()
            self.uri = request.getfixturevalue("milvus").uri
            self.root, self.collection = tmp_path, "c_" + uuid.uuid4().hex[:10]

    def open(self) -> Any:
        if self.kind == "sqlite":
            return Gallery.open(self.db, self.keyring, DIM)
        from safeface.storage.server import ServerStore
        from safeface.storage.vectors import MilvusVectors

        return ServerStore.open(self.dsn, self.password, lambda: MilvusVectors.connect(
            f"milvus:{self.uri}", self.root, self.collection, DIM, timeout=10.0, wait=False), self.keyring, DIM)

    def sql(self, query: str, args: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
        """`query` on the rows table ("rows", "?" marks), as the database's owner runs it."""
        if self.kind == "sqlite":
            with sqlite3.connect(self.db) as c:
                return c.execute(query, args).fetchall()
        import psycopg

        with psycopg.connect(self.dsn, password=self.password, autocommit=True) as c:
            cur = c.execute(query.replace(" rows", " safeface.rows").replace("?", "%s"), args)
            return cur.fetchall() if cur.description else []

    def blank(self) -> Optional[str]:
        """What a row stored before look digests holds: NULL in SQLite, "" in PostgreSQL."""
        return None if self.kind == "sqlite" else ""

    def seal_as_before(self, keys: Any) -> None:
        """Re-seal every row as a release before the binding did (no look digests inside the
        seal), with the keys: the rows such a release left behind."""
        for r in self.sql(f"SELECT {ROW_COLS} FROM rows"):
            entry, vec, token = unseal_row(keys, r, DIM)
            sealed = seal_row(keys, r[0], entry.pseudonym, sorted(entry.purposes), entry.token_id, r[4],
                              entry.expires_us, vec, token, visible=entry.visible,
                              masked_enrolment=entry.masked_enrolment)
            self.sql("UPDATE rows SET sealed = ? WHERE row_id = ?", (bytes(sealed), r[0]))


@pytest.fixture(params=BACKENDS)
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Store:
    return Store(request.param, tmp_path, request)


def _keys(s: Any) -> Any:
    return s._require_keys() if isinstance(s, Gallery) else s._keys_now()


def _refused_where_opened(st: Store, row_id: int) -> None:
    """The row fails its integrity check, naming it: the SQLite gallery at its open (it opens
    every row), the record store wherever the row is read (it reads none at its open)."""
    match = f"gallery row {row_id} failed its integrity check"
    if st.kind == "sqlite":
        with pytest.raises(IntegrityError, match=match):
            st.open()
        return
    with st.open() as s:
        for read in (s.rows, lambda: s.rows_for("alice"), lambda: s.verify("alice", unit_rows(1)[0], "access"),
                     s.check_index):
            with pytest.raises(IntegrityError, match=match):
                read()


EDITS = {
    "blanked": lambda st, other: (st.blank(), st.blank()),
    "emptied": lambda st, other: ("", ""),
    "garbage": lambda st, other: ("x", "x"),
    "another subject's": lambda st, other: other,
    "half another subject's": lambda st, other: None,
}


@pytest.mark.parametrize("edit", list(EDITS))
def test_look_columns_edited_by_hand_fail_the_row_at_open(store: Store, edit: str) -> None:
    x = unit_rows(2)
    with store.open() as s:
        alice = s.add_many([Enrollment("alice", x[0], ["access"], "t0", LATER)])[0].row_id
        s.add_many([Enrollment("bob", x[1], ["access"], "t1", LATER)])
    own, other = store.sql("SELECT look, look_small FROM rows ORDER BY row_id")
    new = EDITS[edit](store, other) or (own[0], other[1])
    store.sql("UPDATE rows SET look = ?, look_small = ? WHERE row_id = ?", (*new, alice))
    _refused_where_opened(store, alice)
    store.sql("UPDATE rows SET look = ?, look_small = ? WHERE row_id = ?", (*own, alice))  # put back: opens
    with store.open() as s:
        assert [r.row_id for r in s.rows_for("alice")] == [alice]


@pytest.mark.parametrize("twin", ["ALICE", "\u0430lice"])  # the second with a Cyrillic "а"
def test_a_lookalike_stays_refused_beside_a_subject_whose_look_columns_were_blanked(store: Store,
                                                                                     twin: str) -> None:
    """The attack: blank alice's look digests, enrol "ALICE" (nothing to clash with), erase
    "alice": ALICE's row, the same face, would stay. The enrolment opens the rows that keep no
    look digest and is refused, by a handle open since before the edit too; nothing is stored."""
    x = unit_rows(2, 3)
    with store.open() as s:
        alice = s.add_many([Enrollment("alice", x[0], ["access"], "t0", LATER)])[0].row_id
        with pytest.raises(InvalidArgument, match="prints as"):
            s.add_many([Enrollment(twin, x[0], ["access"], "t1", LATER)])
        store.sql("UPDATE rows SET look = ?, look_small = ?", (store.blank(), store.blank()))
        with pytest.raises(IntegrityError, match=f"gallery row {alice} failed its integrity check: its look digest"):
            s.add_many([Enrollment(twin, x[0], ["access"], "t1", LATER)])
        assert not s.rows_for(twin) if store.kind == "postgresql" else not s.has_subject(twin)
    assert store.sql("SELECT count(*) FROM rows")[0][0] == 1
    if store.kind == "postgresql":  # a fresh handle refuses it the same way
        with store.open() as s:
            with pytest.raises(IntegrityError, match=f"gallery row {alice}"):
                s.add_many([Enrollment(twin, x[0], ["access"], "t1", LATER)])
            assert s.erase_subject("alice").count == 1
            assert len(s) == 0 and not s.has_subject(twin)
    else:
        with pytest.raises(IntegrityError, match=f"gallery row {alice}"):
            store.open()


def test_a_touch_and_a_rekey_seal_the_look_digests_again(store: Store) -> None:
    x = unit_rows(2, 5)
    with store.open() as s:
        alice = s.add_many([Enrollment("alice", x[0], ["access"], "t0", LATER)])[0].row_id
        assert s.touch("alice", new_expiry=EVEN_LATER, purpose="access") == 1
    for step in ("touched", "rekeyed"):
        if step == "rekeyed":
            store.keyring.rotate("transform", "seal")
            with store.open() as s:
                assert s.rekey().rows == 1
        own = store.sql("SELECT look, look_small FROM rows")[0]
        assert all(len(v) == 64 for v in own), step
        store.sql("UPDATE rows SET look = '', look_small = ''")
        _refused_where_opened(store, alice)
        store.sql("UPDATE rows SET look = ?, look_small = ?", own)
        with store.open() as s:
            with pytest.raises(InvalidArgument, match="prints as"):
                s.add_many([Enrollment("ALICE", x[1], ["access"], "t1", LATER)])


def test_rows_sealed_before_the_binding_stay_open_and_are_bound_at_a_touch(store: Store) -> None:
    """The remaining gap, and how it closes: a row an earlier release sealed binds no look
    digest. Blank (as a release before look digests stored it) it opens, and a look-alike of its
    subject is not refused (nothing says whose it is); with two digests it opens; with anything
    else ("x") it is refused, since safeface never stored that. A touch that moves its expiry
    re-seals it with its subject's digests: from then on it refuses the look-alike, and blanking
    it again is refused."""
    x = unit_rows(3, 7)
    with store.open() as s:
        alice = s.add_many([Enrollment("alice", x[0], ["access"], "t0", LATER)])[0].row_id
        keys = _keys(s)
    own = store.sql("SELECT look, look_small FROM rows")[0]
    store.seal_as_before(keys)
    with store.open() as s:  # two digests, unbound: as the release before this one stored them
        with pytest.raises(InvalidArgument, match="prints as"):
            s.add_many([Enrollment("ALICE", x[1], ["access"], "t1", LATER)])
    store.sql("UPDATE rows SET look = 'x', look_small = 'x'")
    _refused_where_opened(store, alice)
    store.sql("UPDATE rows SET look = ?, look_small = ?", (store.blank(), store.blank()))
    with store.open() as s:
        assert [r.row_id for r in s.rows_for("alice")] == [alice]
        s.add_many([Enrollment("\u0430lice", x[2], ["access"], "t2", LATER)])  # the gap: nothing to clash with
        assert s.touch("alice", new_expiry=EVEN_LATER, purpose="access") == 1
        with pytest.raises(InvalidArgument, match="prints as"):
            s.add_many([Enrollment("ALICE", x[1], ["access"], "t1", LATER)])
    assert store.sql("SELECT look, look_small FROM rows WHERE row_id = ?", (alice,))[0] == own
    store.sql("UPDATE rows SET look = '', look_small = '' WHERE row_id = ?", (alice,))
    _refused_where_opened(store, alice)


# ------------------------------------------------------------------- through the SDK (SQLite)

def test_a_workspace_whose_look_digests_were_edited_refuses_to_open_and_audit_verify_names_the_row(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The reviewers' repro: "alice" enrolled, the gallery's look columns set to 'x' with
    sqlite3 (no key), then "ALICE" enrolled beside her and `audit verify` said nothing."""
    from policy_support import PASSPHRASE, consent, images, make_workspace, open_sf
    from safeface.workspace.admin import audit_verify

    ws = make_workspace(tmp_path / "ws")
    imgs = images()
    with open_sf(ws) as sf:
        sf.enroll(imgs / "obama.jpg", "alice", "demo", consent(ws, "alice"))
        with pytest.raises(InvalidArgument, match="prints as"):
            sf.enroll(imgs / "biden.jpg", "ALICE", "demo", consent(ws, "ALICE"))
    with sqlite3.connect(ws.gallery) as db:
        db.execute("UPDATE rows SET look = 'x', look_small = 'x'")
    with pytest.raises(IntegrityError, match="look digest"):
        with open_sf(ws) as sf:
            sf.enroll(imgs / "biden.jpg", "ALICE", "demo", consent(ws, "ALICE"))
    monkeypatch.setenv("SAFEFACE_PASSPHRASE", PASSPHRASE)
    with pytest.raises(IntegrityError, match="look digest"):
        audit_verify(ws.root)
    with sqlite3.connect(ws.gallery) as db:
        assert db.execute("SELECT count(*) FROM rows").fetchone()[0] == 1
    assert os.path.exists(ws.gallery)
