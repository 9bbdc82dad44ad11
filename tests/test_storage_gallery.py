"""The gallery store: sealed protected templates in SQLite, filtered search, erasure, purge,
tamper detection, several processes, crashes, and the absence of raw embeddings on disk."""

from __future__ import annotations

import json
import multiprocessing
import signal
import sqlite3
import subprocess
import sys
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
from child_process import child_env  # noqa: E402

from safeface.errors import ConfigError, IntegrityError
from safeface.storage.gallery import Enrollment, Gallery
from safeface.hazmat.templates import (
    HostKeyring,
    PassphraseKeyring,
    ScryptParams,
    Sealer,
    StaticKeyProvider,
    TemplateTransform,
)
from safeface.hazmat.templates.sealing import RowBinding

DIM = 128
PASS = "correct horse battery staple"
FAST = ScryptParams(n=2**10, r=8, p=1)
T0 = datetime(2026, 1, 1, tzinfo=timezone.utc)
LATER = T0 + timedelta(days=365)


def unit_rows(n: int, seed: int = 0) -> np.ndarray:
    x = np.random.default_rng(seed).standard_normal((n, DIM)).astype(np.float32)
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


@pytest.fixture
def keyring(tmp_path: Path) -> PassphraseKeyring:
    return PassphraseKeyring.create(tmp_path / "keys.json", PASS, FAST)


@pytest.fixture
def db(tmp_path: Path) -> Path:
    return tmp_path / "ws" / "gallery.db"


def seal_as_before_looks_were_bound(db: Path, keyring: Any) -> None:
    """Re-seal every row as a release before the look digests were bound into the seal laid them
    out (what such a release left behind): their look columns then carry no seal's word, and a
    test may set them as an earlier release stored them."""
    from safeface.storage.rows import ROW_COLS, seal_row, unseal_row

    with Gallery.open(db, keyring, DIM) as g:
        keys = g._require_keys()
    with sqlite3.connect(db) as con:
        for r in con.execute(f"SELECT {ROW_COLS} FROM rows").fetchall():
            entry, vec, token = unseal_row(keys, r, DIM)
            con.execute("UPDATE rows SET sealed = ? WHERE row_id = ?", (seal_row(
                keys, r[0], entry.pseudonym, sorted(entry.purposes), entry.token_id, r[4], entry.expires_us, vec, token,
                visible=entry.visible, masked_enrolment=entry.masked_enrolment), r[0]))


def fill(g: Gallery, x: np.ndarray, purposes: tuple[str, ...] = ("access",), prefix: str = "s") -> None:
    for i, v in enumerate(x):
        g.add(f"{prefix}{i}", v, purposes, f"tok-{prefix}{i}", LATER)


def test_add_search_verify_roundtrip(db: Path, keyring: PassphraseKeyring) -> None:
    x = unit_rows(20)
    with Gallery.open(db, keyring, DIM) as g:
        row = g.add("alice", x[0], ["access", "payment"], "tok-a", LATER)
        fill(g, x[1:], prefix="o")
        assert row.pseudonym == g.pseudonym("alice") and len(row.pseudonym) == 64
        assert g.has_subject("alice") and not g.has_subject("bob")
        assert len(g) == 20 and g.subject_count() == 20
        m = g.search(x[0], "access", k=3, now=T0)
        assert m[0].pseudonym == row.pseudonym and m[0].row_id == row.row_id and m[0].token_id == "tok-a"
        assert abs(m[0].score - 1.0) < 1e-5
        assert [mm.score for mm in m] == sorted((mm.score for mm in m), reverse=True)
        # Scores through the gallery equal raw cosine scores.
        raw = sorted((float(x[0] @ v) for v in x[1:]), reverse=True)[:2]
        np.testing.assert_allclose([mm.score for mm in m[1:]], raw, atol=1e-5)
        assert g.search(x[0], "payment", k=3, now=T0)[0].pseudonym == row.pseudonym
        assert len(g.search(x[0], "payment", k=3, now=T0)) == 1  # the only payment row
        assert g.verify("alice", x[0], "access", now=T0) == pytest.approx(1.0, abs=1e-5)
        assert g.verify("alice", x[1], "access", now=T0) == pytest.approx(float(x[0] @ x[1]), abs=1e-5)
        assert g.verify("alice", x[0], "marketing", now=T0) is None
        assert g.verify("nobody", x[0], "access", now=T0) is None
        assert g.search(x[0], "access", k=5, threshold=0.99, now=T0)[0].row_id == row.row_id
        assert len(g.search(x[0], "access", k=5, threshold=0.99, now=T0)) == 1
    # Reopen: the index is rebuilt from the store.
    with Gallery.open(db, keyring, DIM) as g:
        assert len(g) == 20
        assert g.search(x[5], "access", k=1, now=T0)[0].pseudonym == g.pseudonym("o4")


def test_one_match_per_subject(db: Path, keyring: PassphraseKeyring) -> None:
    x = unit_rows(6)
    with Gallery.open(db, keyring, DIM) as g:
        for i in range(4):  # alice enrolled four times with near-identical templates
            g.add("alice", x[0] + 0.01 * x[i + 1], ["access"], f"tok-a{i}", LATER)
        g.add("bob", x[5], ["access"], "tok-b", LATER)
        m = g.search(x[0], "access", k=2, now=T0)
        assert [mm.pseudonym for mm in m] == [g.pseudonym("alice"), g.pseudonym("bob")]
        assert [r.token_id for r in g.rows_for("alice")] == [f"tok-a{i}" for i in range(4)]


def test_expiry_purpose_erase_never_return_disallowed_rows(db: Path, keyring: PassphraseKeyring) -> None:
    rng = np.random.default_rng(1)
    x = unit_rows(60, seed=2)
    purposes_all = ["access", "payment", "boarding"]
    truth: dict[int, tuple[str, set[str], datetime]] = {}
    with Gallery.open(db, keyring, DIM) as g:
        for i in range(60):
            ps = {p for p in purposes_all if rng.random() < 0.5} or {"access"}
            exp = T0 + timedelta(days=int(rng.integers(1, 30)))
            r = g.add(f"s{i}", x[i], sorted(ps), f"tok{i}", exp)
            truth[r.row_id] = (f"s{i}", ps, exp)
        erased = g.erase_subject("s7")
        assert erased.count == 1 and erased.pseudonym == g.pseudonym("s7")
        del truth[erased.row_ids[0]]
        removed = g.remove_token("tok8")
        assert removed.count == 1
        del truth[removed.row_ids[0]]
        assert g.erase_subject("s7").count == 0
        for day in (0, 5, 15, 29):
            now = T0 + timedelta(days=day)
            for purpose in purposes_all:
                allowed = {rid for rid, (_, ps, exp) in truth.items() if purpose in ps and exp > now}
                for q in x[::7]:
                    got = g.search(q, purpose, k=100, now=now)
                    ids = {m.row_id for m in got}
                    assert ids <= allowed
                    assert ids == allowed  # and every allowed subject is found (one row each)
        assert g.verify("s7", x[7], "access", now=T0) is None
        # Expired at now: never returned, then purged from store and index.
        now = T0 + timedelta(days=10)
        purged = g.purge_expired(now)
        gone = {rid for res in purged for rid in res.row_ids}
        assert gone == {rid for rid, (_, _, exp) in truth.items() if exp <= now}
        assert len(g) == len(truth) - len(gone)
        for rid in gone:
            del truth[rid]
        got = g.search(x[0], "access", k=100, now=T0)
        assert {m.row_id for m in got} == {rid for rid, (_, ps, _) in truth.items() if "access" in ps}


def test_touch_moves_only_the_rows_held_for_its_purpose(db: Path, keyring: PassphraseKeyring) -> None:
    x = unit_rows(3)
    with Gallery.open(db, keyring, DIM) as g:
        g.add("alice", x[0], ["short"], "t1", T0 + timedelta(days=5))
        g.add("alice", x[1], ["long"], "t2", T0 + timedelta(days=30))
        g.add("alice", x[2], ["long", "short"], "t3", T0 + timedelta(days=5))
        assert g.touch("alice", T0, T0 + timedelta(days=90), purpose="long") == 2
        got = {r.purposes: r.expires_at for r in g.rows_for("alice")}
        assert got[("short",)] == T0 + timedelta(days=5)  # another purpose's row: untouched
        assert got[("long",)] == T0 + timedelta(days=90)
        assert got[("long", "short")] == T0 + timedelta(days=5)  # never later than it was
        with pytest.raises(ConfigError, match="purpose"):
            g.touch("alice", T0, T0 + timedelta(days=90))
        assert g.touch("alice", T0) == 3  # an interaction without a moved expiry
    with Gallery.open(db, keyring, DIM) as g:  # the re-sealed rows open
        assert sum(r.count for r in g.purge_expired(T0 + timedelta(days=6))) == 2 and len(g) == 1


def test_touch_moves_expiry_and_reseals(db: Path, keyring: PassphraseKeyring) -> None:
    x = unit_rows(2)
    with Gallery.open(db, keyring, DIM) as g:
        g.add("alice", x[0], ["access"], "tok", T0 + timedelta(days=1))
        assert g.touch("alice", T0, T0 + timedelta(days=90), purpose="access") == 1
        assert g.rows_for("alice")[0].expires_at == T0 + timedelta(days=90)
        assert g.rows_for("alice")[0].last_interaction == T0
        assert g.search(x[0], "access", now=T0 + timedelta(days=30))
        assert g.touch("nobody", T0) == 0
    with Gallery.open(db, keyring, DIM) as g:  # the re-sealed row opens
        assert g.purge_expired(T0 + timedelta(days=30)) == []
        assert len(g.purge_expired(T0 + timedelta(days=90))) == 1 and len(g) == 0


def test_input_checks(db: Path, keyring: PassphraseKeyring) -> None:
    x = unit_rows(1)
    with Gallery.open(db, keyring, DIM) as g:
        with pytest.raises(ConfigError, match="timezone-aware"):
            g.add("a", x[0], ["access"], "t", datetime(2030, 1, 1))
        with pytest.raises(ConfigError, match="dimension"):
            g.add("a", x[0][:64], ["access"], "t", LATER)
        with pytest.raises(ConfigError, match="purpose"):
            g.add("a", x[0], [], "t", LATER)
        with pytest.raises(ConfigError, match="NaN"):
            g.add("a", np.full(DIM, np.nan, np.float32), ["access"], "t", LATER)
        assert len(g) == 0
    with pytest.raises(ConfigError, match="dim=64"):
        Gallery.open(db, keyring, 64)
    g.close()
    with pytest.raises(ConfigError, match="closed"):
        len(g)
    junk = db.parent / "junk.db"
    junk.write_bytes(b"not a database " * 100)
    with pytest.raises(ConfigError, match="not a usable gallery database"):
        Gallery.open(junk, keyring, DIM)


def _tamper(db: Path, sql: str, *args: object) -> None:
    c = sqlite3.connect(db)
    c.execute(sql, args)
    c.commit()
    c.close()


@pytest.mark.parametrize("how", ["flip_blob", "purposes", "expiry", "swap_blobs", "pseudonym", "token",
                                 "version"])
def test_tampered_row_is_detected(db: Path, keyring: PassphraseKeyring, how: str) -> None:
    x = unit_rows(3)
    with Gallery.open(db, keyring, DIM) as g:
        g.add("a", x[0], ["access"], "ta", LATER)
        g.add("b", x[1], ["access"], "tb", LATER)
        g.add("c", x[2], ["access"], "tc", LATER)
    c = sqlite3.connect(db)
    blob1, blob2 = (c.execute("SELECT sealed FROM rows WHERE row_id = ?", (i,)).fetchone()[0] for i in (1, 2))
    c.close()
    if how == "flip_blob":
        b = bytearray(blob2)
        b[len(b) // 2] ^= 0x01
        _tamper(db, "UPDATE rows SET sealed = ? WHERE row_id = 2", bytes(b))
    elif how == "purposes":
        _tamper(db, "UPDATE rows SET purposes = ? WHERE row_id = 2", json.dumps(["access", "payment"]))
    elif how == "expiry":
        _tamper(db, "UPDATE rows SET expires_us = expires_us + 86400000000 WHERE row_id = 2")
    elif how == "swap_blobs":
        _tamper(db, "UPDATE rows SET sealed = ? WHERE row_id = 1", blob2)
        _tamper(db, "UPDATE rows SET sealed = ? WHERE row_id = 2", blob1)
    elif how == "pseudonym":
        _tamper(db, "UPDATE rows SET pseudonym = (SELECT pseudonym FROM rows WHERE row_id = 3) WHERE row_id = 2")
    elif how == "token":
        _tamper(db, "UPDATE rows SET token_id = 'tc' WHERE row_id = 2")
    elif how == "version":
        _tamper(db, "UPDATE rows SET transform_version = 2 WHERE row_id = 2")
    with pytest.raises(IntegrityError, match=r"gallery row [12] "):
        Gallery.open(db, keyring, DIM)


def test_wrong_keyring_is_refused(db: Path, keyring: PassphraseKeyring) -> None:
    x = unit_rows(1)
    with Gallery.open(db, keyring, DIM) as g:
        g.add("a", x[0], ["access"], "t", LATER)
    other = HostKeyring(StaticKeyProvider.generate())
    with pytest.raises(ConfigError, match="open it with the keyring it was made with") as err:
        Gallery.open(db, other, DIM)
    for purpose in ("transform", "seal", "pseudonym"):
        assert other.key(purpose).hex() not in str(err.value)
        assert keyring.key(purpose).hex() not in str(err.value)


def _file_bytes(db: Path) -> bytes:
    return b"".join(p.read_bytes() for p in sorted(db.parent.glob(db.name + "*")))


def test_store_holds_no_raw_or_transformed_embedding(db: Path, keyring: PassphraseKeyring) -> None:
    x = unit_rows(12, seed=5)
    t = TemplateTransform.from_key(keyring.key("transform"), DIM)
    with Gallery.open(db, keyring, DIM) as g:
        for i, v in enumerate(x):
            g.add(f"subject-{i}@example.org", v, ["access"], f"tok{i}", LATER)
        g.erase_subject("subject-0@example.org")
        # Scan while open (database file, WAL and shared-memory file) and after closing.
        for phase in ("open", "closed"):
            if phase == "closed":
                g.close()
            data = _file_bytes(db)
            assert len(data) > 0
            for i, v in enumerate(x):
                raw = v.astype("<f4").tobytes()
                prot = t.apply(v).astype("<f4").tobytes()
                for needle in (raw, prot, raw[:16], raw[-16:], prot[:16], prot[-16:],
                               v.astype("<f8").tobytes()[:16]):
                    assert needle not in data, (phase, i)
                assert f"subject-{i}@example.org".encode() not in data
    # The sealed blob holds the protected template: unsealing it gives exactly the transform.
    c = sqlite3.connect(db)
    r = c.execute("SELECT row_id, pseudonym, purposes, token_id, provenance, expires_us, transform_version, "
                  "seal_version, sealed FROM rows WHERE row_id = 2").fetchone()
    c.close()
    plain = Sealer(keyring.key("seal")).open(r[8], RowBinding(r[0], r[1], tuple(json.loads(r[2])), r[3], r[4],
                                                             r[5], r[6], r[7]))
    # (then the row's look digests behind their marker, which the seal binds too)
    np.testing.assert_allclose(np.frombuffer(plain[:4 * DIM], "<f4"), t.apply(x[1]), atol=1e-6)


# ---------------------------------------------------------------- several processes


def _writer(db: str, keys: str, prefix: str, n: int, seed: int) -> None:
    kr = PassphraseKeyring.open(keys, PASS)
    x = unit_rows(n, seed)
    with Gallery.open(Path(db), kr, DIM) as g:
        for i in range(n):
            g.add(f"{prefix}{i}", x[i], ["access"], f"tok-{prefix}{i}", LATER)


@pytest.mark.slow
def test_two_processes_writing_lose_nothing(db: Path, keyring: PassphraseKeyring) -> None:
    with Gallery.open(db, keyring, DIM) as watcher:
        assert len(watcher) == 0
        ctx = multiprocessing.get_context("fork")
        procs = [ctx.Process(target=_writer, args=(str(db), str(keyring.path), p, 30, s))
                 for p, s in (("a", 11), ("b", 12))]
        for p in procs:
            p.start()
        for p in procs:
            p.join(120)
            assert p.exitcode == 0
        assert len(watcher) == 60 and watcher.subject_count() == 60
        # The already-open gallery catches up with the other processes' commits before searching.
        for prefix, seed in (("a", 11), ("b", 12)):
            x = unit_rows(30, seed)
            for i in (0, 17, 29):
                m = watcher.search(x[i], "access", k=1, now=T0)
                assert m[0].pseudonym == watcher.pseudonym(f"{prefix}{i}")
        # An erasure in another process reaches this one's index.
        p = ctx.Process(target=_erase_in_child, args=(str(db), str(keyring.path), "a0"))
        p.start()
        p.join(60)
        assert p.exitcode == 0
        x = unit_rows(30, 11)
        assert watcher.pseudonym("a0") not in {m.pseudonym for m in watcher.search(x[0], "access", k=60, now=T0)}
        assert watcher.verify("a0", x[0], "access", now=T0) is None


def _erase_in_child(db: str, keys: str, subject: str) -> None:
    with Gallery.open(Path(db), PassphraseKeyring.open(keys, PASS), DIM) as g:
        assert g.erase_subject(subject).count == 1


CHILD = """
import os, sys
from pathlib import Path
from datetime import datetime, timedelta, timezone
import numpy as np
from safeface.storage.gallery import Gallery
from safeface.hazmat.templates import PassphraseKeyring
db, keys, mode, n = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
kr = PassphraseKeyring.open(keys, {pw!r})
exp = datetime(2027, 1, 1, tzinfo=timezone.utc)
g = Gallery.open(Path(db), kr, {dim})
rng = np.random.default_rng(99)
count = {{"n": 0}}
def die_at(point, want):
    def hook(p):
        if p == point:
            count["n"] += 1
            if count["n"] >= n:
                os._exit(7)
    return hook
if mode == "add":
    g._hook = die_at("add:sealed", n)
    for i in range(n + 5):
        g.add(f"c{{i}}", rng.standard_normal({dim}), ["access"], f"ct{{i}}", exp)
elif mode == "forever":
    i = 0
    while True:
        g.add(f"f{{i}}", rng.standard_normal({dim}), ["access"], f"ft{{i}}", exp)
        i += 1
        if i == 20:
            print("ready", flush=True)
elif mode in ("rekey-row", "rekey-meta"):
    kr.rotate()
    g._hook = die_at("rekey:row" if mode == "rekey-row" else "rekey:meta", n)
    g.rekey()
elif mode == "rekey":
    kr.rotate()
    g.rekey()
print("finished", flush=True)
""".format(pw=PASS, dim=DIM)


def _run_child(db: Path, keys: Path, mode: str, n: int) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-c", CHILD, str(db), str(keys), mode, str(n)], env=child_env(), cwd=db.parent,
                          capture_output=True, text=True, timeout=120)


def _all_rows_open(db: Path, keys: Path) -> Gallery:
    return Gallery.open(db, PassphraseKeyring.open(keys, PASS), DIM)  # unseals every row


def test_exit_mid_add_leaves_consistent_store(db: Path, keyring: PassphraseKeyring) -> None:
    Gallery.open(db, keyring, DIM).close()
    r = _run_child(db, keyring.path, "add", 3)
    assert r.returncode == 7, r.stderr
    with _all_rows_open(db, keyring.path) as g:
        assert len(g) == 2  # the third add died before COMMIT: gone, not half-written
        assert g.has_subject("c0") and g.has_subject("c1") and not g.has_subject("c2")
        g.add("after", unit_rows(1)[0], ["access"], "t", LATER)
        assert len(g) == 3


@pytest.mark.slow
def test_sigkill_mid_writes_leaves_consistent_store(db: Path, keyring: PassphraseKeyring) -> None:
    Gallery.open(db, keyring, DIM).close()
    p = subprocess.Popen([sys.executable, "-c", CHILD, str(db), str(keyring.path), "forever", "0"], env=child_env(),
                         cwd=db.parent,
                         stdout=subprocess.PIPE, text=True)
    try:
        assert p.stdout is not None and p.stdout.readline().strip() == "ready"
        time.sleep(0.2)
    finally:
        p.send_signal(signal.SIGKILL)
        p.wait(30)
    assert p.returncode == -signal.SIGKILL
    with _all_rows_open(db, keyring.path) as g:
        n = len(g)
        assert n >= 20
        assert {g.has_subject(f"f{i}") for i in range(n)} == {True}
        assert not g.has_subject(f"f{n}")


# ---------------------------------------------------------------- re-keying


def _scores(g: Gallery, x: np.ndarray) -> np.ndarray:
    return np.array([[g.verify(f"s{j}", x[i], "access", now=T0) for j in range(len(x))] for i in range(len(x))])


def test_rekey_keeps_scores_and_drops_old_key(db: Path, keyring: PassphraseKeyring) -> None:
    x = unit_rows(8, seed=3)
    with Gallery.open(db, keyring, DIM) as g:
        fill(g, x)
        before = _scores(g, x)
        old_t = TemplateTransform.from_key(keyring.key("transform", 1), DIM)
        assert keyring.rotate() == {"transform": 2, "seal": 2}
        res = g.rekey()
        assert res.rows == 8 and res.transform_version == (1, 2) and res.seal_version == (1, 2)
        assert g.key_versions == {"transform": 2, "seal": 2}
        np.testing.assert_allclose(_scores(g, x), before, atol=1e-5)
        np.testing.assert_allclose(np.diag(before), 1.0, atol=1e-5)
        assert g.rekey().rows == 0  # nothing newer: nothing to do
    keyring.retire("transform", 1)
    keyring.retire("seal", 1)
    with Gallery.open(db, PassphraseKeyring.open(keyring.path, PASS), DIM) as g:
        np.testing.assert_allclose(_scores(g, x), before, atol=1e-5)
    # Stored templates are now under the new key only: the old key's templates do not match them,
    # and the old seal key no longer opens any row.
    new_t = TemplateTransform.from_key(keyring.key("transform", 2), DIM)
    c = sqlite3.connect(db)
    rows = c.execute("SELECT row_id, pseudonym, purposes, token_id, provenance, expires_us, transform_version, "
                     "seal_version, sealed FROM rows ORDER BY row_id").fetchall()
    c.close()
    stored = []
    for r in rows:
        b = RowBinding(r[0], r[1], tuple(json.loads(r[2])), r[3], r[4], r[5], r[6], r[7])
        stored.append(np.frombuffer(Sealer(keyring.key("seal", 2)).open(r[8], b)[:4 * DIM], "<f4"))
    stored_a = np.stack(stored)
    np.testing.assert_allclose(stored_a, new_t.apply(x), atol=1e-5)
    old_scores = np.diag(old_t.apply(x) @ stored_a.T)
    assert np.abs(old_scores).max() < 0.5  # same-subject scores across keys: chance level (~N(0, 1/128))
    data = _file_bytes(db)
    for v in x:
        assert old_t.apply(v).astype("<f4").tobytes()[:16] not in data


def test_rekey_to_a_new_host_keyring(db: Path, keyring: PassphraseKeyring) -> None:
    x = unit_rows(5, seed=4)
    with Gallery.open(db, keyring, DIM) as g:
        fill(g, x)
        before = _scores(g, x)
        with pytest.raises(ConfigError, match="pseudonym key"):
            g.rekey(HostKeyring(StaticKeyProvider.generate()))
        fresh = StaticKeyProvider.generate()
        moved = StaticKeyProvider({**{p: {v: fresh.key(p, v) for v in fresh.versions(p)}
                                      for p in ("transform", "seal", "audit")},
                                   "pseudonym": {1: keyring.key("pseudonym", 1)}})
        host = HostKeyring(moved)
        assert g.rekey(host).rows == 5
        np.testing.assert_allclose(_scores(g, x), before, atol=1e-5)
    with pytest.raises(ConfigError):
        Gallery.open(db, keyring, DIM)  # the old keyring no longer fits
    with Gallery.open(db, host, DIM) as g:
        np.testing.assert_allclose(_scores(g, x), before, atol=1e-5)


@pytest.mark.parametrize("mode,n", [("rekey-row", 4), ("rekey-meta", 1)])
def test_rekey_crash_leaves_old_state_then_rekey_completes(db: Path, keyring: PassphraseKeyring,
                                                           mode: str, n: int) -> None:
    x = unit_rows(8, seed=6)
    with Gallery.open(db, keyring, DIM) as g:
        fill(g, x)
        before = _scores(g, x)
    r = _run_child(db, keyring.path, mode, n)
    assert r.returncode == 7, r.stderr
    kr = PassphraseKeyring.open(keyring.path, PASS)
    assert kr.versions("transform") == [1, 2]  # the rotation reached the keyring before the crash
    with Gallery.open(db, kr, DIM) as g:  # every row opens, all still under version 1
        assert g.key_versions == {"transform": 1, "seal": 1}
        np.testing.assert_allclose(_scores(g, x), before, atol=1e-5)
        assert g.rekey().rows == 8
        assert g.key_versions == {"transform": 2, "seal": 2}
        np.testing.assert_allclose(_scores(g, x), before, atol=1e-5)


def test_rekey_in_another_process_reaches_open_gallery(db: Path, keyring: PassphraseKeyring) -> None:
    x = unit_rows(6, seed=8)
    with Gallery.open(db, keyring, DIM) as g:
        fill(g, x)
        before = _scores(g, x)
        r = _run_child(db, keyring.path, "rekey", 0)
        assert r.returncode == 0 and "finished" in r.stdout, r.stderr
        # This process's keyring object had only version 1; the gallery re-reads it and reloads.
        np.testing.assert_allclose(_scores(g, x), before, atol=1e-5)
        assert g.key_versions == {"transform": 2, "seal": 2}
        g.add("late", x[0], ["access"], "tl", LATER)
        assert g.verify("late", x[0], "access", now=T0) == pytest.approx(1.0, abs=1e-5)


def test_keyring_with_one_key_for_all_purposes_is_refused(db: Path) -> None:
    same = HostKeyring.from_callback(lambda purpose, version: b"\x11" * 32)
    with pytest.raises(ConfigError, match="independent"):
        Gallery.open(db, same, DIM)


def test_erased_rows_leave_no_sealed_bytes_behind(db: Path, keyring: PassphraseKeyring) -> None:
    x = unit_rows(6, seed=9)
    with Gallery.open(db, keyring, DIM) as g:
        fill(g, x)
        c = sqlite3.connect(db)
        blobs = [bytes(b) for (b,) in c.execute("SELECT sealed FROM rows WHERE pseudonym = ?", (g.pseudonym("s2"),))]
        c.close()
        assert len(blobs) == 1 and blobs[0][:24] in _file_bytes(db)
        assert g.erase_subject("s2").count == 1
        # secure_delete zeroes the freed page; the truncating checkpoint drops the WAL frames.
        data = _file_bytes(db)
        assert blobs[0][:24] not in data and blobs[0][-24:] not in data
        assert g.pseudonym("s2").encode() not in data
        assert g.pseudonym("s3").encode() in data


def _reading(db: Path) -> sqlite3.Connection:
    """A connection holding a read transaction open: it holds the write-ahead log."""
    reader = sqlite3.connect(db)
    reader.execute("BEGIN")
    reader.execute("SELECT count(*) FROM rows").fetchone()
    return reader


def _done(reader: sqlite3.Connection) -> None:
    reader.rollback()
    reader.close()


def test_an_erasure_while_another_connection_reads_finishes_its_scrub_at_the_next_write(
        db: Path, keyring: PassphraseKeyring) -> None:
    """A reader holding the write-ahead log (another worker mid-search, a backup, a shell) made
    the truncating checkpoint fail in silence: the erased row's sealed bytes stayed in
    gallery.db-wal after the receipt, through later writes and a close. Now the erasure says so
    ("copies": "pending") and the scrub is owed: done after the next write, or at close or open."""
    x = unit_rows(6, seed=11)
    g = Gallery.open(db, keyring, DIM)
    fill(g, x)
    c = sqlite3.connect(db)
    blob = bytes(c.execute("SELECT sealed FROM rows WHERE pseudonym = ?", (g.pseudonym("s2"),)).fetchone()[0])
    c.close()
    reader = _reading(db)
    res = g.erase_subject("s2")
    assert res.count == 1 and res.copies == "pending"
    assert blob[:24] in _file_bytes(db)  # still in the log while the reader holds it
    g.touch("s3", purpose="access")  # a write while it still reads: still owed, no wait
    _done(reader)
    g.touch("s3", purpose="access")
    assert blob[:24] not in _file_bytes(db) and blob[-24:] not in _file_bytes(db)
    assert g.erase_subject("s4").copies is None
    # Owed at close: done there.
    reader = _reading(db)
    blob5 = bytes(reader.execute("SELECT sealed FROM rows WHERE pseudonym = ?", (g.pseudonym("s5"),)).fetchone()[0])
    assert g.erase_subject("s5").copies == "pending"
    _done(reader)
    g.close()
    assert blob5[:24] not in _file_bytes(db)
    # Another process erased while the log was held, then ended (its owed scrub with it): a
    # process that sees its deletions owes the scrub, and does it after its next write. So does
    # a purge of expired rows, which says so too.
    worker, short = Gallery.open(db, keyring, DIM), Gallery.open(db, keyring, DIM)
    c = sqlite3.connect(db)
    blob3 = bytes(c.execute("SELECT sealed FROM rows WHERE pseudonym = ?", (worker.pseudonym("s3"),)).fetchone()[0])
    c.close()
    reader = _reading(db)
    assert short.erase_subject("s3").copies == "pending"
    short.close()
    _done(reader)
    assert blob3[:24] in _file_bytes(db)
    worker.search(x[0], "access", k=1, now=T0)  # reads the other process's deletion
    worker.touch("s0", purpose="access")
    assert blob3[:24] not in _file_bytes(db)
    reader = _reading(db)
    purged = worker.purge_expired(datetime(9999, 1, 1, tzinfo=timezone.utc))
    assert purged and {r.copies for r in purged} == {"pending"}
    _done(reader)
    worker.close()


def test_index_factory_sees_the_gallery_size(db: Path, keyring: PassphraseKeyring) -> None:
    from safeface.hazmat.index import ExactIndex

    sizes: list[int] = []

    def factory(dim: int, size: int) -> ExactIndex:
        sizes.append(size)
        return ExactIndex(dim)

    x = unit_rows(7, seed=10)
    with Gallery.open(db, keyring, DIM, index_factory=factory) as g:
        fill(g, x)
        g.rebuild_index()
        assert sizes[-1] == 7
        assert g.search(x[6], "access", k=1, now=T0)[0].pseudonym == g.pseudonym("s6")
    with Gallery.open(db, keyring, DIM, index_factory=factory) as g:
        assert sizes[-1] == 7 and len(g) == 7


def test_gallery_moves_to_the_approximate_index_as_it_grows(db: Path, keyring: PassphraseKeyring) -> None:
    from safeface.hazmat.index import ExactIndex, FaissIndex, make_index

    x = unit_rows(100, seed=14)
    with Gallery.open(db, keyring, DIM, index_factory=lambda d, n: make_index(d, n, approx_above=70, kind="flat")) as g:
        fill(g, x[:60])
        assert isinstance(g._index, ExactIndex)
        fill(g, x[60:90], purposes=("payment",), prefix="p")
        # Past the factory's threshold the index was rebuilt as FAISS, holding every row.
        assert isinstance(g._index, FaissIndex) and len(g._index) == 90
        assert g.search(x[5], "access", k=1, now=T0)[0].pseudonym == g.pseudonym("s5")
        assert g.search(x[70], "payment", k=1, now=T0)[0].pseudonym == g.pseudonym("p10")
        assert g.pseudonym("p10") not in {m.pseudonym for m in g.search(x[70], "access", k=90, now=T0)}
        fill(g, x[90:], prefix="t")
        assert len(g._index) == 100 and g.search(x[95], "access", k=1, now=T0)[0].pseudonym == g.pseudonym("t5")
    with Gallery.open(db, keyring, DIM, index_factory=lambda d, n: ExactIndex(d)) as g:
        kept = g._index
        fill(g, unit_rows(40, seed=15), prefix="u")
        # A factory that keeps giving the same kind of index keeps the one in use.
        assert g._index is kept and len(kept) == 140


def test_faiss_index_plugs_in(db: Path, keyring: PassphraseKeyring) -> None:
    import safeface.hazmat.index as index_pkg

    if not hasattr(index_pkg, "FaissIndex"):
        pytest.skip("safeface.hazmat.index.FaissIndex is not in this checkout (it comes with the matching core)")
    x = unit_rows(40, seed=12)
    with Gallery.open(db, keyring, DIM) as g:
        fill(g, x[:20])
        fill(g, x[20:], purposes=("payment",), prefix="p")
    with Gallery.open(db, keyring, DIM, index_factory=lambda d, n: index_pkg.FaissIndex(d, "flat")) as g:
        assert type(g._index).__name__ == "FaissIndex"
        assert g.search(x[3], "access", k=1, now=T0)[0].pseudonym == g.pseudonym("s3")
        assert g.pseudonym("s3") not in {m.pseudonym for m in g.search(x[3], "payment", k=40, now=T0)}
        g.erase_subject("s3")
        assert g.pseudonym("s3") not in {m.pseudonym for m in g.search(x[3], "access", k=40, now=T0)}


def test_add_many_is_one_transaction(db: Path, keyring: PassphraseKeyring) -> None:
    from safeface.storage.gallery import Enrollment

    x = unit_rows(5, seed=13)
    with Gallery.open(db, keyring, DIM) as g:
        rows = g.add_many([Enrollment(f"m{i}", x[i], ["access"], f"tm{i}", LATER) for i in range(5)])
        assert [r.row_id for r in rows] == [1, 2, 3, 4, 5] and len(g) == 5
        assert g.search(x[4], "access", k=1, now=T0)[0].row_id == 5
        bad = [Enrollment("n0", x[0], ["access"], "tn0", LATER), Enrollment("n1", x[1], ["access"], "tn1",
                                                                           datetime(2030, 1, 1))]
        with pytest.raises(ConfigError):
            g.add_many(bad)
        assert len(g) == 5 and not g.has_subject("n0")
        assert g.add_many([]) == []

        def fail(point: str) -> None:
            raise RuntimeError(f"failure injected at {point}")

        g._hook = fail  # a failure after the rows were written: rolled back, memory untouched
        with pytest.raises(RuntimeError):
            g.add_many([Enrollment(f"r{i}", x[i], ["access"], f"tr{i}", LATER) for i in range(2)])
        g._hook = None
        assert len(g) == 5 and not g.has_subject("r0")
        assert {m.row_id for m in g.search(x[0], "access", k=10, now=T0)} == {1, 2, 3, 4, 5}


# ---------------------------------------------------------------- ids that print alike

def _add_or_refuse(db: str, keys: str, subject: str, seed: int, go: Any) -> None:
    from safeface.errors import InvalidArgument

    with Gallery.open(Path(db), PassphraseKeyring.open(keys, PASS), DIM) as g:
        go.wait(30)
        try:
            g.add(subject, unit_rows(1, seed)[0], ["access"], f"tok-{seed}", LATER)
        except InvalidArgument:
            sys.exit(3)


def test_a_new_subject_whose_id_prints_as_an_enrolled_one_is_refused(db: Path, keyring: PassphraseKeyring) -> None:
    """"ALICE" beside "alice", "сосоа" (Cyrillic) beside "cocoa": second persons an erasure of the
    first id misses. A new one is refused; the enrolled subject enrols again; once it is erased
    the other spelling is free; a batch cannot slip both in at once."""
    from safeface.errors import InvalidArgument

    x = unit_rows(8, 5)
    with Gallery.open(db, keyring, DIM) as g:
        g.add("alice", x[0], ["access"], "t0", LATER)
        g.add("cocoa", x[1], ["access"], "t1", LATER)
        for twin in ("ALICE", "Alice", "\u0441\u043e\u0441\u043e\u0430", "COCOA", "\uff41lice",
                     "\u1c83\u1c82\u1c83\u1c82\u0430"):
            with pytest.raises(InvalidArgument, match="prints as the id of a subject already enrolled") as info:
                g.add(twin, x[2], ["access"], "t2", LATER)
            assert twin not in str(info.value)
        assert len(g) == 2
        g.add("alice", x[3], ["access"], "t3", LATER)  # the same subject again
        g.add("alice b", x[4], ["access"], "t4", LATER)  # another id
        assert len(g) == 4
        g.erase_subject("alice")
        g.add("Alice", x[5], ["access"], "t5", LATER)
        with pytest.raises(InvalidArgument, match="prints as"):
            g.add_many([Enrollment("dana", x[6], ["access"], "t6", LATER),
                        Enrollment("DANA", x[7], ["access"], "t7", LATER)])
        assert not g.rows_for("dana") and not g.rows_for("DANA")
        assert len(g) == 3
    # The look digests are keyed: the stored columns name no id, and they go with the row.
    with sqlite3.connect(db) as con:
        looks = con.execute("SELECT look, look_small FROM rows ORDER BY row_id").fetchall()
    assert len(looks) == 3 and all(len(v) == 64 and "alice" not in v for pair in looks for v in pair)
    assert looks[0] != looks[1]


@pytest.mark.parametrize("version", [1, 2])
def test_rows_stored_under_an_earlier_look_version_still_block_what_it_folded(
        db: Path, keyring: PassphraseKeyring, version: int) -> None:
    """Each look version folds what the one before did not ("EMP-O042" prints as "EMP-0042").
    Rows cannot be digested again (the id is not stored), so rows stored under an earlier
    version are compared by that version's digests of the new id: "ALICE" beside such an
    "alice" is still refused. A subject's next enrolment stores the new digests, which then refuse the new
    folds too, also within that enrolment's batch."""
    from safeface.errors import InvalidArgument
    from safeface.hazmat.templates.pseudonym import look_digests

    x = unit_rows(6, 13)
    with Gallery.open(db, keyring, DIM) as g:
        for i, sid in enumerate(("alice", "EMP-0042")):
            g.add(sid, x[i], ["access"], f"t{i}", LATER)
        key = keyring.key("pseudonym", g._pseudonym_version)
    seal_as_before_looks_were_bound(db, keyring)
    with sqlite3.connect(db) as con:  # as an earlier release stored them
        for sid in ("alice", "EMP-0042"):
            old = look_digests(key, sid, version)
            assert old != look_digests(key, sid)
            con.execute("UPDATE rows SET look = ?, look_small = ? WHERE look = ?", (*old, look_digests(key, sid)[0]))
        assert con.total_changes == 2
    with Gallery.open(db, keyring, DIM) as g:
        with pytest.raises(InvalidArgument, match="prints as"):
            g.add("ALICE", x[2], ["access"], "t2", LATER)
        # One batch of the look-alike and the subject again: refused whatever the order (the
        # look-alike was checked only against the items before it, so it passed when first).
        for order in ((("EMP-O042", 4), ("EMP-0042", 3)), (("EMP-0042", 3), ("EMP-O042", 4))):
            with pytest.raises(InvalidArgument, match="prints as"):
                g.add_many([Enrollment(sid, x[i], ["access"], f"t{i}", LATER) for sid, i in order])
        assert len(g) == 2
        g.add("EMP-0042", x[3], ["access"], "t3", LATER)  # the same subject: its new row has the present version's look
        for twin in ("EMP-O042", "emp-oo42"):
            with pytest.raises(InvalidArgument, match="prints as"):
                g.add(twin, x[4], ["access"], "t4", LATER)
        assert len(g) == 3


def test_rows_stored_before_look_digests_block_no_one_and_an_older_safeface_cannot_add_rows(
        db: Path, keyring: PassphraseKeyring) -> None:
    """A gallery written by an earlier release has no look columns: opening adds them, its rows
    keep none, and subjects enrolled under ids that print alike before both enrol again. From
    then on an older safeface (whose INSERT names no look digest) can add no row: pinning an old
    release would otherwise store "ALICE" beside "alice" unchecked, and make it "enrolled"."""
    x = unit_rows(4, 9)
    with Gallery.open(db, keyring, DIM) as g:
        g.add("Eve", x[0], ["access"], "t0", LATER)
    seal_as_before_looks_were_bound(db, keyring)
    with sqlite3.connect(db) as con:
        con.execute("DROP TRIGGER rows_need_looks")
        for col in ("look", "look_small"):
            con.execute(f"DROP INDEX rows_{col}")
            con.execute(f"ALTER TABLE rows DROP COLUMN {col}")
    with Gallery.open(db, keyring, DIM) as g:
        assert g._db().execute("SELECT look, look_small FROM rows").fetchall() == [(None, None)]
        g.add("eve", x[1], ["access"], "t1", LATER)  # "Eve" has no look digest to clash with
        g.add("Eve", x[2], ["access"], "t2", LATER)  # enrolled already: not new
        assert len(g) == 3
    with sqlite3.connect(db) as con:  # the previous release's INSERT, word for word
        with pytest.raises(sqlite3.IntegrityError, match="upgrade safeface"):
            con.execute("INSERT INTO rows (pseudonym, purposes, token_id, provenance, expires_us, created_at, "
                        "last_interaction, transform_version, seal_version, sealed) SELECT 'x', purposes, token_id, "
                        "provenance, expires_us, created_at, last_interaction, transform_version, seal_version, "
                        "sealed FROM rows LIMIT 1")
        assert con.execute("SELECT count(*) FROM rows").fetchone()[0] == 3


def test_two_processes_enrolling_ids_that_print_alike_at_once_store_one(db: Path,
                                                                         keyring: PassphraseKeyring) -> None:
    """The check and the insert are one step under the store's write lock: of "carol" and "CAROL"
    sent at the same moment from two processes, exactly one is stored."""
    with Gallery.open(db, keyring, DIM) as g:
        assert len(g) == 0
    ctx = multiprocessing.get_context("fork")
    for n, (a, b) in enumerate((("carol", "CAROL"), ("ann", "Ann"),
                                ("pop", "\u0440\u043e\u0440"))):
        go = ctx.Event()
        procs = [ctx.Process(target=_add_or_refuse, args=(str(db), str(keyring.path), s, 10 * n + i, go))
                 for i, s in enumerate((a, b))]
        for p in procs:
            p.start()
        time.sleep(1.0)
        go.set()
        for p in procs:
            p.join(60)
        assert sorted(p.exitcode for p in procs) == [0, 3], (a, b)
    with Gallery.open(db, keyring, DIM) as g:
        assert len(g) == 3 and g.subject_count() == 3


@pytest.mark.parametrize("trigger", [
    "CREATE TRIGGER keep_rows BEFORE DELETE ON rows BEGIN SELECT RAISE(IGNORE); END",
    "CREATE TRIGGER put_back AFTER DELETE ON rows BEGIN INSERT INTO rows VALUES (OLD.row_id, OLD.pseudonym, "
    "OLD.purposes, OLD.token_id, OLD.provenance, OLD.expires_us, OLD.created_at, OLD.last_interaction, "
    "OLD.transform_version, OLD.seal_version, OLD.sealed, OLD.look, OLD.look_small); END",
    # a review's pair: the row copied aside, then put back from the change log's own write
    "CREATE TABLE aside AS SELECT * FROM rows WHERE 0; CREATE TRIGGER copy_aside BEFORE DELETE ON rows BEGIN "
    "INSERT INTO aside SELECT * FROM rows WHERE row_id = OLD.row_id; END; CREATE TRIGGER put_back AFTER INSERT ON "
    "changes WHEN NEW.op = 'delete' BEGIN INSERT INTO rows SELECT * FROM aside WHERE row_id = NEW.row_id; END",
])
def test_a_trigger_that_keeps_rows_through_an_erasure_fails_it_and_the_open(
        db: Path, keyring: PassphraseKeyring, trigger: str) -> None:
    """Someone with write access to gallery.db (no passphrase) adds a trigger that skips the
    erasure's delete, or puts the row back: the erasure's receipt said the row was removed
    while it stayed stored and, in every other process, searchable. Now an erasure refuses a
    trigger safeface did not make (a review's trigger on the change log put the row back after
    a check of the delete alone), and checks its delete last, inside its transaction, with
    nothing erased when either fails; and a gallery holding such a trigger is refused at open."""
    x = unit_rows(2, seed=91)
    with Gallery.open(db, keyring, DIM) as g:
        fill(g, x)
        with sqlite3.connect(db) as other:  # added while the gallery is open
            other.executescript(trigger)
        with pytest.raises(IntegrityError, match="holds triggers safeface did not make .'keep_rows'|'put_back'"):
            g.erase_subject("s0")
        assert [m.row_id for m in g.search(x[0], "access", k=1, threshold=0.9)] == [1]  # nothing half done
    with pytest.raises(IntegrityError, match="holds triggers safeface did not make .'copy_aside'|'keep_rows'|'put_back'"):
        Gallery.open(db, keyring, DIM)
    with sqlite3.connect(db) as other:
        for name, in other.execute("SELECT name FROM sqlite_master WHERE type = 'trigger' AND name != 'rows_need_looks'"
                                   ).fetchall():
            other.execute(f"DROP TRIGGER {name}")
    with Gallery.open(db, keyring, DIM) as g:
        assert g.erase_subject("s0").count == 1 and g.search(x[0], "access", k=1, threshold=0.9) == []


def test_safefaces_own_trigger_replaced_by_hand_is_made_again_at_open(db: Path, keyring: PassphraseKeyring) -> None:
    """The trigger that refuses a row without look digests (an older release's, which would
    escape the look-alike check), replaced under its own name by one that lets everything in:
    the next open makes it again."""
    with Gallery.open(db, keyring, DIM) as g:
        fill(g, unit_rows(1, seed=92))
    with sqlite3.connect(db) as other:
        other.execute("DROP TRIGGER rows_need_looks")
        other.execute("CREATE TRIGGER rows_need_looks BEFORE INSERT ON rows WHEN 0 BEGIN SELECT 1; END")
    with Gallery.open(db, keyring, DIM):
        pass
    with sqlite3.connect(db) as other:
        with pytest.raises(sqlite3.IntegrityError, match="look digests only"):
            other.execute("INSERT INTO rows (pseudonym, purposes, token_id, provenance, expires_us, created_at, "
                          "transform_version, seal_version, sealed) SELECT 'x', purposes, token_id, provenance, "
                          "expires_us, created_at, transform_version, seal_version, sealed FROM rows LIMIT 1")


def test_an_index_whose_entries_are_not_its_definition_cannot_hide_a_row_from_an_erasure(
        db: Path, keyring: PassphraseKeyring) -> None:
    """Whoever may write gallery.db rebuilds the pseudonym index over another column, then
    (writable_schema) writes its old definition back: the erasure's lookup and its check both
    went through the index, found nothing, and the receipt said 0 removed while the row stayed
    and matched. The check reads the table itself now, whatever the lookup found; the erasure
    also takes the rows its handle opened for the subject, and the delete meets the bent index."""
    x = unit_rows(1, seed=93)
    with Gallery.open(db, keyring, DIM) as g:
        fill(g, x)
    with sqlite3.connect(db, isolation_level=None) as other:
        other.execute("DROP INDEX rows_pseudonym")
        other.execute("CREATE INDEX rows_pseudonym ON rows (look)")
        other.execute("PRAGMA writable_schema = ON")
        other.execute("UPDATE sqlite_master SET sql = 'CREATE INDEX rows_pseudonym ON rows (pseudonym)' "
                      "WHERE name = 'rows_pseudonym'")
    with Gallery.open(db, keyring, DIM) as g:
        with pytest.raises(IntegrityError, match="is damaged"):
            g.erase_subject("s0")
        assert [m.row_id for m in g.search(x[0], "access", k=1, threshold=0.9)] == [1]


def test_a_row_held_for_several_purposes_goes_when_all_of_them_end(db: Path, keyring: PassphraseKeyring) -> None:
    """The purge took the rows of an ended purpose by their purposes column reading that one
    purpose: a row held for two purposes that had both ended stayed to its own expiry."""
    x = unit_rows(3)
    with Gallery.open(db, keyring, DIM) as g:
        g.add("alice", x[0], ["short", "long"], "t1", LATER)
        g.add("bob", x[1], ["short"], "t2", LATER)
        g.add("carol", x[2], ["long", "other"], "t3", LATER)
        assert sum(r.count for r in g.purge_expired(T0, ended=["short"])) == 1  # bob; alice is held for long too
        gone = g.purge_expired(T0, ended=["short", "long"])
        assert [r.pseudonym for r in gone] == [g.pseudonym("alice")]  # carol is held for other too
        assert len(g) == 1


def test_an_erasure_hidden_from_the_change_log_leaves_no_subject_verifiable(db: Path, keyring: Any) -> None:
    """An operator deletes an erasure's entries from the change log and sets its counter back: an
    open handle's verify confirms its best row against the store, as search does, and finds
    the subject gone."""
    x = unit_rows(3, seed=5)
    with Gallery.open(db, keyring, DIM) as admin:
        for i, v in enumerate(x):
            admin.add(f"s{i}", v, ("access",), f"tok-s{i}", LATER)
    worker = Gallery.open(db, keyring, DIM)
    try:
        assert worker.verify("s1", x[1], "access", now=T0) == pytest.approx(1.0, abs=1e-4)
        with Gallery.open(db, keyring, DIM) as admin:
            assert admin.erase_subject("s1").count == 1
        with sqlite3.connect(db) as con:
            con.execute("DELETE FROM changes WHERE op = 'delete'")
            con.execute("UPDATE sqlite_sequence SET seq = (SELECT MAX(seq) FROM changes) WHERE name = 'changes'")
        with Gallery.open(db, keyring, DIM) as admin:  # honest traffic afterwards
            admin.add("s9", unit_rows(1, seed=77)[0], ("access",), "tok-s9", LATER)
        assert worker.verify("s1", x[1], "access", now=T0) is None
        assert worker.verify("s0", x[0], "access", now=T0) is not None
    finally:
        worker.close()


def test_a_handle_further_behind_than_the_kept_change_log_reads_the_store_whole(
        db: Path, keyring: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    import safeface.storage.gallery as gallery_module

    monkeypatch.setattr(gallery_module, "CHANGE_LOG_KEEP", 2)
    x = unit_rows(6, seed=3)
    worker = Gallery.open(db, keyring, DIM)
    try:
        assert worker.search(x[0], "access", k=1, now=T0) == []
        with Gallery.open(db, keyring, DIM) as admin:  # another process enrols while the worker idles
            for i, v in enumerate(x):
                admin.add(f"s{i}", v, ("access",), f"tok-s{i}", LATER)
        assert len({m.pseudonym for m in worker.search(x[0], "access", k=6, now=T0)}) == 6
        assert worker.verify("s0", x[0], "access", now=T0) is not None
    finally:
        worker.close()


def test_a_transform_key_changed_under_its_version_is_refused_at_rekey(db: Path) -> None:
    """Other handles follow key versions: a host whose provider hands out another transform key
    under the same version would leave them probing under the old one."""
    import os

    provider = StaticKeyProvider.generate()
    x = unit_rows(3, seed=51)
    with Gallery.open(db, HostKeyring(provider), DIM) as g:
        fill(g, x)
        provider._keys["transform"][1] = os.urandom(32)
        with pytest.raises(ConfigError, match="changed without a new version number"):
            g.rekey()


def test_verify_and_search_agree_that_a_row_is_gone_at_its_expiry_instant(db: Path, keyring: Any) -> None:
    x = unit_rows(2, seed=21)
    with Gallery.open(db, keyring, DIM) as g:
        g.add("s0", x[0], ("access",), "tok-s0", LATER)
        g.add("s1", x[1], ("access",), "tok-s1", LATER + timedelta(days=1))
        assert g.verify("s0", x[0], "access", now=LATER - timedelta(microseconds=1)) is not None
        assert [m.pseudonym for m in g.search(x[0], "access", k=2, threshold=0.9, now=LATER)] == []
        assert g.verify("s0", x[0], "access", now=LATER) is None
        assert not g.may_hold(None, "access", now=LATER, subject_id="s0")


def test_an_erasure_drops_the_visible_region_template_from_every_handles_memory(db: Path, keyring: Any) -> None:
    x, v = unit_rows(2, seed=41), unit_rows(2, seed=42)
    with Gallery.open(db, keyring, DIM) as g:
        other = Gallery.open(db, keyring, DIM)
        try:
            g.add_many([Enrollment(f"s{i}", x[i], ("access",), f"tok-s{i}", LATER, visible=v[i], visible_masked=i == 0)
                        for i in range(2)])
            other.search(x[0], "access", k=1)  # the other handle follows the enrolment
            assert len(g._vindex) == len(other._vindex) == 2
            rid = g.rows_for("s0")[0].row_id
            g.erase_subject("s0")
            other.search(x[1], "access", k=1)  # ... and the erasure
            for h in (g, other):
                assert len(h._vindex) == 1 and rid not in h._visible_ids and rid not in h._masked_ids
        finally:
            other.close()


def test_skipping_ids_never_sets_the_row_counter_back(db: Path, keyring: Any) -> None:
    x = unit_rows(4, seed=31)
    with Gallery.open(db, keyring, DIM) as g:
        for i in range(3):
            g.add(f"s{i}", x[i], ("access",), f"tok-s{i}", LATER)
        g.erase_subject("s2")  # row 3 goes; its id stays used
        assert g.id_ceiling() == 3
        g.skip_ids(1)
        assert g.id_ceiling() == 3
        assert g.add("s3", x[3], ("access",), "tok-s3", LATER).row_id == 4


@pytest.mark.parametrize("kind", ["exact", "flat", "hnsw"])
def test_excluded_rows_take_no_place_in_the_top_k(db: Path, keyring: PassphraseKeyring, kind: str) -> None:
    """Rows a search is told to leave out (the audit log records them removed: put back from a
    copy) are left out before ranking: three of them closer to the probe than the genuine row
    took the only place of a k=1 search, and one of them, its subject's best row, hid that
    subject's other row."""
    from safeface.hazmat.index import ExactIndex, FaissIndex

    def near(v: np.ndarray, by: float, seed: int) -> np.ndarray:
        w = v + by * unit_rows(1, seed=seed)[0]
        return w / np.linalg.norm(w)

    x = unit_rows(30, seed=21)
    probe = x[0]
    factory = (lambda d, n: ExactIndex(d)) if kind == "exact" else (lambda d, n: FaissIndex(d, kind))
    with Gallery.open(db, keyring, DIM, index_factory=factory) as g:
        fill(g, x[1:])
        genuine = g.add("carol", near(probe, 0.5, 30), ["access"], "tok-carol", LATER).row_id
        back = {g.add(f"back{i}", near(probe, 0.05, 31 + i), ["access"], f"tok-back{i}", LATER).row_id
                for i in range(3)}
        assert g.search(probe, "access", k=1, now=T0)[0].row_id in back
        found = g.search(probe, "access", k=1, now=T0, exclude=back)
        assert [(m.pseudonym, m.row_id) for m in found] == [(g.pseudonym("carol"), genuine)]
        shadow = g.add("carol", near(probe, 0.01, 40), ["access"], "tok-carol", LATER).row_id
        found = g.search(probe, "access", k=1, now=T0, exclude=back | {shadow})
        assert [(m.pseudonym, m.row_id) for m in found] == [(g.pseudonym("carol"), genuine)]
