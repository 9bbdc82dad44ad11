"""Templates that are no unit vector, sealed into the store (gallery.db, PostgreSQL) by a host
holding the keys.

Every template safeface seals is a unit vector. A key holder who re-seals a row's template
scaled by 1e30 made that person the best candidate for every face (identify and verify score
by inner product), a NaN template passed every threshold test, and a zero one hid the person.
Each such row must fail its integrity check, naming it, wherever it is opened."""

from __future__ import annotations

import datetime as dt
import sqlite3
import sys
import uuid
from pathlib import Path
from typing import Any

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
from policy_support import PASSPHRASE, consent, images, make_workspace, open_sf  # noqa: E402

from safeface import IntegrityError  # noqa: E402
from safeface.hazmat.templates import PassphraseKeyring, ScryptParams  # noqa: E402
from safeface.storage.gallery import Enrollment, Gallery  # noqa: E402
from safeface.storage.rows import OPEN_COLS, seal_row, unseal_row  # noqa: E402
from safeface.workspace.passphrase import open_keyring  # noqa: E402

DIM = 128
IMG = images()
SCALES = [1e30, float("nan"), float("inf"), 0.0, 3.0]
EXP = dt.datetime(2100, 1, 1, tzinfo=dt.timezone.utc)


def _unit(seed: int) -> np.ndarray:
    x = np.random.default_rng(seed).standard_normal(DIM)
    return x / np.linalg.norm(x)


def _reseal_scaled(db: Path, keyring: object, row_id: int, scale: float, *, visible: bool = False) -> None:
    """What a host holding the keys can do: re-seal the row with its template times `scale`."""
    g = Gallery.open(db, keyring, DIM)  # type: ignore[arg-type]
    keys = g._require_keys()
    g.close()
    with sqlite3.connect(db) as con:
        r = con.execute(f"SELECT {OPEN_COLS} FROM rows WHERE row_id = ?", (row_id,)).fetchone()
        entry, vec, token = unseal_row(keys, r, DIM)
        with np.errstate(all="ignore"):
            main = vec if visible else (vec * scale).astype(np.float32)
            side = (vec * scale).astype(np.float32) if visible else entry.visible
        con.execute("UPDATE rows SET sealed = ? WHERE row_id = ?", (seal_row(
            keys, r[0], entry.pseudonym, sorted(entry.purposes), entry.token_id, r[4], entry.expires_us, main, token,
            visible=side, masked_enrolment=entry.masked_enrolment, looks=(r[9], r[10])), r[0]))
        con.execute("INSERT INTO changes (row_id, op) VALUES (?, 'upsert')", (row_id,))


@pytest.mark.parametrize("scale", SCALES)
def test_a_resealed_template_that_is_no_unit_vector_fails_the_row_at_open_and_in_open_handles(
        tmp_path: Path, scale: float) -> None:
    """A key holder re-seals alice's template scaled (1e30, NaN, inf, 0, 3): the open refuses the
    gallery naming her row, and a handle open before the re-seal refuses to search past it."""
    keyring = PassphraseKeyring.create(tmp_path / "keys.json", "not secret", ScryptParams(n=2**10, r=8, p=1))
    db = tmp_path / "gallery.db"
    with Gallery.open(db, keyring, DIM) as g:
        row = g.add("alice", _unit(1), ["demo"], "tok-a", EXP)
        g.add("bob", _unit(2), ["demo"], "tok-b", EXP)
    with Gallery.open(db, keyring, DIM) as service:
        _reseal_scaled(db, keyring, row.row_id, scale)
        with pytest.raises(IntegrityError, match=f"row {row.row_id} .*not a unit vector"):
            service.search(_unit(2), "demo", k=2)
    with pytest.raises(IntegrityError, match=f"row {row.row_id} .*not a unit vector"):
        Gallery.open(db, keyring, DIM)


def test_a_resealed_visible_region_template_that_is_no_unit_vector_fails_the_row(tmp_path: Path) -> None:
    """The same with the visible-region template that masked probes meet: the row is refused."""
    keyring = PassphraseKeyring.create(tmp_path / "keys.json", "not secret", ScryptParams(n=2**10, r=8, p=1))
    db = tmp_path / "gallery.db"
    with Gallery.open(db, keyring, DIM) as g:
        row, = g.add_many([Enrollment("alice", _unit(1), ("demo",), "tok-a", EXP, visible=_unit(3))])
        assert row.masked_template
    _reseal_scaled(db, keyring, row.row_id, 1e30, visible=True)
    with pytest.raises(IntegrityError, match="visible-region template is not a unit vector"):
        Gallery.open(db, keyring, DIM)


def test_a_template_scaled_by_a_key_holder_no_longer_makes_everyone_its_person(tmp_path: Path) -> None:
    """Through the SDK: alice's template re-sealed times 1e30 made her the first candidate for
    bob's face. The workspace must refuse to open instead, naming her row."""
    ws = make_workspace(tmp_path / "ws")
    bob = consent(ws, "bob", operations=["enroll", "verify", "identify"])
    with open_sf(ws) as sf:
        sf.enroll(IMG / "obama.jpg", "alice", "demo", consent(ws, "alice"))
        sf.enroll(IMG / "biden.jpg", "bob", "demo", bob)
    _reseal_scaled(ws.gallery, open_keyring(ws, PASSPHRASE), 1, 1e30)  # alice's row
    with pytest.raises(IntegrityError, match="not a unit vector"):
        with open_sf(ws) as sf:
            alice = sf.pseudonym("alice")
            found = sf.identify(IMG / "biden.jpg", "demo", bob)
            assert not found or found[0].subject != alice


def test_a_scaled_template_in_the_server_store_is_refused_where_the_search_opens_it(
        pg: Any, milvus: Any, tmp_path: Path) -> None:
    """PostgreSQL and Milvus: alice's sealed row and her Milvus vector re-written times 1e30 by a
    key holder: the search that opens her record must refuse it, not rank her first for bob."""
    import psycopg

    from server_support import PG_PASSWORD
    from safeface.storage.server import ServerStore
    from safeface.storage.vectors import MilvusVectors

    keyring = PassphraseKeyring.create(tmp_path / "keys.json", "not secret", ScryptParams(n=2**10, r=8, p=1))
    dsn, collection = pg.new_database(), "c_" + uuid.uuid4().hex[:10]

    def vectors() -> MilvusVectors:
        return MilvusVectors.connect(f"milvus:{milvus.uri}", tmp_path, collection, DIM, timeout=10.0, wait=False)

    bob = _unit(2)
    with ServerStore.open(dsn, PG_PASSWORD, vectors, keyring, DIM) as store:
        near = _unit(1) + 0.3 * bob  # a stranger to bob's probe (about 0.3), on his side of the sphere
        alice, _ = store.add_many([Enrollment("alice", near / np.linalg.norm(near), ("demo",), "tok-a", EXP),
                                   Enrollment("bob", bob, ("demo",), "tok-b", EXP)])
        keys = store._keys_now()
        with psycopg.connect(dsn, password=PG_PASSWORD, autocommit=True) as c:
            r = c.execute(f"SELECT {OPEN_COLS} FROM safeface.rows WHERE row_id = %s", (alice.row_id,)).fetchone()
            entry, vec, token = unseal_row(keys, r, DIM)
            scaled = (vec * 1e30).astype(np.float32)
            c.execute("UPDATE safeface.rows SET sealed = %s WHERE row_id = %s", (seal_row(
                keys, r[0], entry.pseudonym, sorted(entry.purposes), entry.token_id, r[4], entry.expires_us,
                scaled, token, visible=entry.visible, masked_enrolment=entry.masked_enrolment, looks=(r[9], r[10])),
                r[0]))
        # The same template written to Milvus (as `index check --repair` would copy it from the record).
        store.vectors.upsert([alice.row_id], scaled.reshape(1, -1), [["demo"]], [entry.expires_us])
        try:
            found = store.search(bob, "demo", k=2, threshold=0.5)
        except IntegrityError as exc:
            assert f"row {alice.row_id} " in str(exc) and "not a unit vector" in str(exc)
            return
        assert [m.pseudonym for m in found] == [store.pseudonym("bob")], f"alice matched bob's face: {found}"
        pytest.fail("a row whose template is no unit vector was opened and scored")
