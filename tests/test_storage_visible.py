"""Visible-region templates (masked probes) in both stores: sealed into their enrolment's own row
(storage/rows.py), matched only on the "visible" path ("visible-masked" for a row enrolled from a
masked image, whose flag is sealed too), carried by touch and rekey, erased with the row; and the
attacks a hostile operator would try on the file (swap the sealed blob from another row, strip
the visible part, restore a row sealed without one under another row, flip the masked flag)."""

from __future__ import annotations

import sqlite3
import sys
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any, Callable

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

from safeface.errors import ConfigError, IntegrityError  # noqa: E402
from safeface.hazmat.templates import PassphraseKeyring, ScryptParams  # noqa: E402
from safeface.storage.gallery import Gallery  # noqa: E402
from safeface.aead import NONCE_BYTES  # noqa: E402
from safeface.hazmat.templates import RowBinding, Sealer, TemplateTransform  # noqa: E402
from safeface.storage.rows import (ROW_COLS, VISIBLE_MAGIC, VISIBLE_MAGIC_MASKED, Enrollment, Keys,  # noqa: E402
                                   blob, unseal_row)

DIM = 128
FAST = ScryptParams(n=2**10, r=8, p=1)
LATER = datetime.now(timezone.utc) + timedelta(days=365)


def unit_rows(n: int, seed: int = 0) -> np.ndarray:
    x = np.random.default_rng(seed).standard_normal((n, DIM)).astype(np.float32)
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


@pytest.fixture
def keyring(tmp_path: Path) -> PassphraseKeyring:
    return PassphraseKeyring.create(tmp_path / "keys.json", "pw", FAST)


@pytest.fixture
def server(pg: Any, milvus: Any) -> tuple[Any, Any]:
    """The session's PostgreSQL cluster and Milvus Lite (conftest.py): each test takes a database
    and a collection of its own in them."""
    return pg, milvus


def _opener(kind: str, tmp_path: Path, keyring: Any, request: pytest.FixtureRequest) -> Callable[[], Any]:
    if kind == "sqlite":
        return lambda: Gallery.open(tmp_path / "gallery.db", keyring, DIM)
    import uuid

    from server_support import PG_PASSWORD

    from safeface.storage.server import ServerStore
    from safeface.storage.vectors import MilvusVectors

    pg, srv = request.getfixturevalue("server")
    dsn, coll = pg.new_database(), "c_" + uuid.uuid4().hex[:10]
    return lambda: ServerStore.open(dsn, PG_PASSWORD, lambda: MilvusVectors.connect(f"milvus:{srv.uri}", tmp_path, coll,
                                                                                    DIM), keyring, DIM)


@pytest.fixture(params=["sqlite", "server"])
def opener(request: pytest.FixtureRequest, tmp_path: Path, keyring: Any) -> Callable[[], Any]:
    return _opener(request.param, tmp_path, keyring, request)


def _enrol(store: Any, subject: str, main: np.ndarray, visible: Any, masked: bool = False) -> Any:
    return store.add_many([Enrollment(subject, main, ("access",), f"tok-{subject}", LATER, visible=visible,
                                      visible_masked=masked)])[0]


def test_visible_template_is_matched_on_its_own_path_and_goes_with_its_row(opener: Callable[[], Any]) -> None:
    x, v = unit_rows(3), unit_rows(3, seed=1)
    with opener() as s:
        assert _enrol(s, "a", x[0], v[0]).masked_template
        assert not _enrol(s, "old", x[1], None).masked_template  # a row from before masked matching
        _enrol(s, "b", x[2], v[2])
        assert [r.masked_template for r in s.rows()] == [True, False, True]
        # The visible path scores the visible-region template, never the main one.
        assert s.verify("a", v[0], "access", path="visible") == pytest.approx(1.0, abs=1e-5)
        assert s.verify("a", x[0], "access", path="visible") == pytest.approx(float(x[0] @ v[0]), abs=1e-4)
        assert s.verify("a", v[0], "access") == pytest.approx(float(x[0] @ v[0]), abs=1e-4)
        assert s.verify("old", x[1], "access", path="visible") is None
        hits = s.search(v[2], "access", k=3, path="visible")
        assert hits[0].pseudonym == s.pseudonym("b") and s.pseudonym("old") not in [m.pseudonym for m in hits]
        assert [m.pseudonym for m in s.search(x[1], "access", k=3, path="plain-only")] == [s.pseudonym("old")]
        with pytest.raises(ConfigError):
            s.verify("a", v[0], "access", path="masked")
        # A new expiry re-seals the row; its visible-region template stays inside the seal.
        s.touch("a", new_expiry=LATER + timedelta(days=1), purpose="access")
        assert s.verify("a", v[0], "access", path="visible") == pytest.approx(1.0, abs=1e-5)
        rows = [r.row_id for r in s.rows_for("a")]
        assert s.erase_subject("a").row_ids == tuple(rows)
        assert s.verify("a", v[0], "access", path="visible") is None
        assert s.pseudonym("a") not in [m.pseudonym for m in s.search(v[0], "access", k=3, path="visible")]
    with opener() as s:  # reopened: the erased row's template is gone from the visible path too
        assert s.pseudonym("a") not in [m.pseudonym for m in s.search(v[0], "access", k=3, path="visible")]
        assert s.verify("b", v[2], "access", path="visible") == pytest.approx(1.0, abs=1e-5)


def test_rekey_carries_the_visible_template(opener: Callable[[], Any], keyring: Any) -> None:
    x, v = unit_rows(2), unit_rows(2, seed=1)
    with opener() as s:
        _enrol(s, "a", x[0], v[0])
        keyring.rotate()
        s.rekey()
        assert s.verify("a", v[0], "access", path="visible") == pytest.approx(1.0, abs=1e-5)
    with opener() as s:
        assert s.verify("a", v[0], "access", path="visible") == pytest.approx(1.0, abs=1e-5)


def test_the_visible_template_is_protected_not_raw(tmp_path: Path, keyring: Any) -> None:
    """No 16-byte window of the raw visible-region embedding is in any file of the store."""
    x, v = unit_rows(1), unit_rows(1, seed=1)
    with Gallery.open(tmp_path / "gallery.db", keyring, DIM) as g:
        _enrol(g, "a", x[0], v[0])
    blobs = b"".join(p.read_bytes() for p in tmp_path.rglob("*") if p.is_file())
    raw = v[0].astype("<f4").tobytes()
    assert not [i for i in range(0, len(raw) - 15, 4) if raw[i:i + 16] in blobs]
    assert VISIBLE_MAGIC not in blobs  # the marker too sits inside the encrypted seal


def _sealed(db: Path) -> list[bytes]:
    with sqlite3.connect(db) as c:
        return [bytes(r[0]) for r in c.execute("SELECT sealed FROM rows ORDER BY row_id")]


def _put(db: Path, row: int, sealed: bytes) -> None:
    with sqlite3.connect(db) as c:
        c.execute("UPDATE rows SET sealed = ? WHERE row_id = (SELECT row_id FROM rows ORDER BY row_id LIMIT 1 OFFSET ?)",
                  (sealed, row))


@pytest.mark.parametrize("attack", ["swap from another row", "row without one over it", "cut the tail",
                                    "flip a byte"])
def test_a_tampered_visible_template_is_caught_by_the_seal(tmp_path: Path, keyring: Any, attack: str) -> None:
    """A hostile operator edits the file so that a masked probe would meet another person's
    visible-region template (or none, pushing the subject onto the plain path): every such row
    fails its seal, which binds the row id, subject and the whole blob."""
    x, v = unit_rows(2), unit_rows(2, seed=1)
    db = tmp_path / "gallery.db"
    with Gallery.open(db, keyring, DIM) as g:
        _enrol(g, "a", x[0], v[0])
        _enrol(g, "b", x[1], v[1])
        _enrol(g, "c", x[1], None)
    a, b, c = _sealed(db)
    forged = {"swap from another row": b, "row without one over it": c,
              "cut the tail": a[:-(4 * DIM + len(VISIBLE_MAGIC))],
              "flip a byte": a[:60] + bytes([a[60] ^ 1]) + a[61:]}[attack]
    _put(db, 0, forged)
    with pytest.raises(IntegrityError, match="row"):
        Gallery.open(db, keyring, DIM)


def _pseudonyms(hits: Any) -> list[str]:
    return [m.pseudonym for m in hits]


def test_a_masked_enrolment_is_flagged_and_matched_on_its_own_path(opener: Callable[[], Any], keyring: Any) -> None:
    """A row enrolled from a masked image holds the flag inside its seal: its visible-region
    template is matched on "visible-masked" only (the both-masked threshold's path), never on
    "visible" or "plain-only"; touch, rekey and reopening keep the flag; erasure takes it off."""
    x, v = unit_rows(3), unit_rows(3, seed=1)
    with opener() as s:
        assert _enrol(s, "m", x[0], v[0], masked=True).masked_enrolment
        assert not _enrol(s, "b", x[1], v[1]).masked_enrolment
        _enrol(s, "old", x[2], None)
        assert [(r.masked_template, r.masked_enrolment) for r in s.rows()] == [(True, True), (True, False),
                                                                             (False, False)]
        assert s.verify("m", v[0], "access", path="visible-masked") == pytest.approx(1.0, abs=1e-5)
        assert s.verify("m", v[0], "access", path="visible") is None
        assert s.verify("b", v[1], "access", path="visible-masked") is None
        assert s.verify("b", v[1], "access", path="visible") == pytest.approx(1.0, abs=1e-5)
        assert _pseudonyms(s.search(v[0], "access", k=3, path="visible-masked")) == [s.pseudonym("m")]
        assert s.pseudonym("m") not in _pseudonyms(s.search(v[0], "access", k=3, path="visible"))
        assert _pseudonyms(s.search(x[0], "access", k=3, path="plain-only")) == [s.pseudonym("old")]
        assert _pseudonyms(s.search(v[0], "access", k=1, threshold=0.99, path="visible-masked")) == [s.pseudonym("m")]
        s.touch("m", new_expiry=LATER + timedelta(days=1), purpose="access")
        keyring.rotate()
        s.rekey()
        assert s.rows_for("m")[0].masked_enrolment
        assert s.verify("m", v[0], "access", path="visible-masked") == pytest.approx(1.0, abs=1e-5)
        assert s.verify("m", v[0], "access", path="visible") is None
    with opener() as s:
        assert [r.masked_enrolment for r in s.rows()] == [True, False, False]
        assert s.erase_subject("m").count == 1
        assert s.verify("m", v[0], "access", path="visible-masked") is None
        assert s.search(v[0], "access", k=3, path="visible-masked") == []
    with opener() as s:  # reopened: nothing left on the masked-enrolment path
        assert s.search(v[0], "access", k=3, path="visible-masked") == []
        assert s.verify("b", v[1], "access", path="visible") == pytest.approx(1.0, abs=1e-5)


def test_a_masked_enrolment_is_never_met_whole(opener: Callable[[], Any], keyring: Any) -> None:
    """"plain-bare" (how the SDK matches a probe not called masked) scores the main templates of
    every row except a masked enrolment's, so two masked faces are never compared whole; may_hold
    says whether a path has any row, and for one subject it is exact in both stores."""
    x, v = unit_rows(3), unit_rows(3, seed=1)
    with opener() as s:
        _enrol(s, "b", x[1], v[1])
        assert not s.may_hold("visible-masked", "access")  # no masked enrolment yet: no visible search
        _enrol(s, "m", x[0], v[0], masked=True)
        _enrol(s, "old", x[2], None)
        assert s.verify("m", x[0], "access", path="plain-bare") is None
        assert s.verify("m", x[0], "access") == pytest.approx(1.0, abs=1e-5)  # None: every row, whole
        assert s.verify("b", x[1], "access", path="plain-bare") == pytest.approx(1.0, abs=1e-5)
        assert s.verify("old", x[2], "access", path="plain-bare") == pytest.approx(1.0, abs=1e-5)
        assert s.pseudonym("m") not in _pseudonyms(s.search(x[0], "access", k=3, path="plain-bare"))
        assert _pseudonyms(s.search(x[1], "access", k=1, threshold=0.99, path="plain-bare")) == [s.pseudonym("b")]
        assert s.may_hold("visible-masked", "access", subject_id="m")
        assert not s.may_hold("visible-masked", "access", subject_id="b")
        assert not s.may_hold("plain-bare", "access", subject_id="m")
        assert not s.may_hold("visible-masked", "other", subject_id="m")  # no row for that purpose
        assert not s.may_hold("visible-masked", "access", LATER + timedelta(days=2), subject_id="m")  # expired
        assert s.may_hold("visible-masked", "access")
        with pytest.raises(ConfigError, match="path"):
            s.may_hold("whole", "access")
        assert s.erase_subject("m").count == 1
        assert not s.may_hold("visible-masked", "access", subject_id="m")
        # SQLite knows exactly; the server store's mark is never lowered (the flag is in the seals).
        assert s.may_hold("visible-masked", "access") is not isinstance(s, Gallery)


def test_rows_left_out_take_no_part_in_may_hold(opener: Callable[[], Any]) -> None:
    """may_hold (which decides whether a probe not called masked is given a visible-region
    embedding and a search of the masked enrolments) ignored the rows the caller leaves out
    (those the log records removed, put back since): a put-back masked enrolment cost each such
    verify the embedding and, on the server store, one more read of the subject's records. It
    leaves them out as search and verify do (for the whole server store it cannot tell)."""
    x, v = unit_rows(2), unit_rows(2, seed=1)
    with opener() as s:
        back = _enrol(s, "m", x[0], v[0], masked=True).row_id
        _enrol(s, "b", x[1], v[1])
        assert s.may_hold("visible-masked", "access", subject_id="m")
        assert not s.may_hold("visible-masked", "access", subject_id="m", exclude={back})
        assert s.may_hold("visible", "access", subject_id="b", exclude={back})
        assert s.may_hold("visible-masked", "access", exclude={back}) is not isinstance(s, Gallery)


def test_the_server_stores_masked_mark_fails_closed(server: Any, tmp_path: Path, keyring: Any) -> None:
    """The server store answers may_hold for the whole store from a meta mark, set in the same
    transaction as a masked enrolment and by any verbatim copy. A store without the mark (made
    before it) may hold one; an operator who sets it back to "0" only hides masked enrolments from
    bare probes, which never meet them whole: a refusal, not a match."""
    import uuid

    import psycopg
    from server_support import PG_PASSWORD

    from safeface.storage.server import MASKED_SEEN, ServerStore
    from safeface.storage.vectors import MilvusVectors

    pg, srv = server
    dsn, coll = pg.new_database(), "c_" + uuid.uuid4().hex[:10]

    def opener() -> Any:
        return ServerStore.open(dsn, PG_PASSWORD, lambda: MilvusVectors.connect(f"milvus:{srv.uri}", tmp_path, coll,
                                                                                DIM), keyring, DIM)

    def set_mark(sql: str) -> None:
        with psycopg.connect(dsn, password=PG_PASSWORD, autocommit=True) as c:
            c.execute(sql, (MASKED_SEEN,))

    x, v = unit_rows(2), unit_rows(2, seed=1)
    with opener() as s:
        assert not s.may_hold("visible-masked", "access")
        _enrol(s, "m", x[0], v[0], masked=True)
        assert s.may_hold("visible-masked", "access")
        (row,) = s.sealed_rows()
    set_mark("DELETE FROM safeface.meta WHERE k = %s")
    with opener() as s:
        assert s.may_hold("visible-masked", "access")  # a store from before the mark: it may hold one
    set_mark("INSERT INTO safeface.meta (k, v) VALUES (%s, '0') ON CONFLICT (k) DO UPDATE SET v = '0'")
    with opener() as s:
        assert not s.may_hold("visible-masked", "access")
        assert s.may_hold("visible-masked", "access", subject_id="m")  # one subject: from its records
        assert s.pseudonym("m") not in _pseudonyms(s.search(x[0], "access", k=3, path="plain-bare"))
        assert s.erase_subject("m").count == 1
        s.import_sealed([row])  # a verbatim copy sets the mark again
        assert s.may_hold("visible-masked", "access")


def test_the_index_check_lowers_the_masked_mark_only_when_no_masked_enrolment_is_left(
        server: Any, tmp_path: Path, keyring: Any) -> None:
    """An erasure leaves the mark up (it would have to open every record); `check_index` opens
    them all under the write lock: a mark hiding a stored masked enrolment is a finding that
    `repair` raises, and a mark no row needs any more is lowered by `repair`, so bare identifies
    stop making the visible-region embedding."""
    import uuid

    import psycopg
    from server_support import PG_PASSWORD

    from safeface.storage.server import MASKED_SEEN, ServerStore
    from safeface.storage.vectors import MilvusVectors

    pg, srv = server
    dsn, coll = pg.new_database(), "c_" + uuid.uuid4().hex[:10]

    def opener() -> Any:
        return ServerStore.open(dsn, PG_PASSWORD, lambda: MilvusVectors.connect(f"milvus:{srv.uri}", tmp_path, coll,
                                                                                DIM), keyring, DIM)

    x, v = unit_rows(2), unit_rows(2, seed=1)
    with opener() as s:
        _enrol(s, "b", x[1], v[1])
        _enrol(s, "m", x[0], v[0], masked=True)
        found = s.check_index()
        assert found.consistent and found.masked and found.mark == "1"
    with psycopg.connect(dsn, password=PG_PASSWORD, autocommit=True) as c:  # hand-lowered while "m" is stored
        c.execute("UPDATE safeface.meta SET v = '0' WHERE k = %s", (MASKED_SEEN,))
    with opener() as s:
        found = s.check_index()
        assert found.mark_hides and not found.consistent and "hides" in found.summary()
        assert found.to_dict()["masked_mark"] == "0" and not found.to_dict()["consistent"]
        assert s.check_index(repair=True).repaired
        assert s.check_index().consistent and s.may_hold("visible-masked", "access")
        assert s.erase_subject("m").count == 1
        assert s.may_hold("visible-masked", "access")  # the erasure left it up
        found = s.check_index()
        assert found.consistent and not found.masked and found.mark == "1"  # a cost, not a finding
        s.check_index(repair=True)
        assert not s.may_hold("visible-masked", "access") and s.check_index().mark == "0"
        _enrol(s, "m2", x[0], v[0], masked=True)  # a new masked enrolment raises it in its transaction
        assert s.may_hold("visible-masked", "access") and s.check_index().consistent


def test_the_masked_flag_needs_a_visible_template(tmp_path: Path, keyring: Any) -> None:
    x = unit_rows(1)
    with Gallery.open(tmp_path / "gallery.db", keyring, DIM) as g:
        with pytest.raises(ConfigError, match="visible_masked"):
            _enrol(g, "a", x[0], None, masked=True)
        assert len(g) == 0


def _keys(keyring: Any) -> Keys:
    tv, sv = keyring.version("transform"), keyring.version("seal")
    return Keys(tv, sv, TemplateTransform.from_key(keyring.key("transform", tv), DIM), Sealer(keyring.key("seal", sv)))


def test_a_row_sealed_before_the_flag_opens_unchanged(keyring: Any) -> None:
    """A row sealed with the one marker there was (VISIBLE_MAGIC, laid out by hand here as the
    earlier code wrote it) still opens, as a bare enrolment; the new code seals a bare enrolment
    byte for byte the same, and a masked one under the second marker."""
    keys = _keys(keyring)
    t, v = unit_rows(1)[0], unit_rows(1, seed=1)[0]
    old = t.astype("<f4").tobytes() + VISIBLE_MAGIC + v.astype("<f4").tobytes() + b"token"
    assert blob(t, "token", v, False) == old
    assert blob(t, "token", v, True) == old.replace(VISIBLE_MAGIC, VISIBLE_MAGIC_MASKED)
    binding = RowBinding(7, "p", ("access",), "tok", "consent", 10**15, keys.transform_version, keys.seal_version)
    row = (7, "p", '["access"]', "tok", "consent", 10**15, keys.transform_version, keys.seal_version)
    for plain, masked in ((old, False), (blob(t, "token", v, True), True)):
        entry, vec, token = unseal_row(keys, row + (keys.sealer.seal(plain, binding),), DIM)
        assert entry.masked_enrolment is masked and token == "token"
        assert np.allclose(entry.visible, v) and np.allclose(vec, t)
    assert len(ROW_COLS.split(",")) == len(row) + 1


def _swap_ids(db: Path) -> None:
    with sqlite3.connect(db) as c:
        c.execute("UPDATE rows SET row_id = -row_id")
        c.execute("UPDATE rows SET row_id = CASE -row_id WHEN 1 THEN 2 WHEN 2 THEN 1 ELSE -row_id END")


@pytest.mark.parametrize("attack", ["swap the sealed blobs", "swap the row ids", "flip the marker"])
def test_lowering_a_masked_enrolment_to_the_masked_threshold_is_caught(tmp_path: Path, keyring: Any,
                                                                        attack: str) -> None:
    """A hostile operator wants a masked probe to meet a masked enrolment with the lower masked
    threshold, so that a masked stranger passes: he makes the row look enrolled bare. Its flag
    is inside the seal, which binds the row id: every edit fails the row's integrity check."""
    x, v = unit_rows(2), unit_rows(2, seed=1)
    db = tmp_path / "gallery.db"
    with Gallery.open(db, keyring, DIM) as g:
        _enrol(g, "a", x[0], v[0])  # row 1: the same person enrolled bare
        _enrol(g, "a", x[1], v[1], masked=True)  # row 2: enrolled masked
    bare, masked = _sealed(db)
    at = NONCE_BYTES + 4 * DIM + 4  # inside the marker ("sf-visible-masked-1"), as the ciphertext lies
    if attack == "swap the sealed blobs":
        _put(db, 0, masked)
        _put(db, 1, bare)
    elif attack == "swap the row ids":
        _swap_ids(db)
    else:
        _put(db, 1, masked[:at] + bytes([masked[at] ^ 1]) + masked[at + 1:])
    with pytest.raises(IntegrityError, match="row"):
        Gallery.open(db, keyring, DIM)
