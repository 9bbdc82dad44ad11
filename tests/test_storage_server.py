"""The server store: sealed rows in a real PostgreSQL cluster, protected vectors in Milvus Lite
(in process, and as a server several processes share). Started once per session."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
import uuid
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
from child_process import child_env  # noqa: E402
from server_support import (PG_PASSWORD, MilvusServer, PgCluster, SteppedClock, free_port, server_modules, start_milvus,  # noqa: E402
                            wait_answering)

from safeface.errors import BackendError, ConfigError, IndexUnavailable, IntegrityError  # noqa: E402
from safeface.hazmat.templates import PassphraseKeyring, ScryptParams  # noqa: E402
from safeface.storage.factory import StorageConfig  # noqa: E402
from safeface.storage.rows import Enrollment  # noqa: E402
from safeface.storage.server import ServerStore  # noqa: E402
from safeface.storage.vectors import MilvusVectors, purpose_set  # noqa: E402

DIM = 128
FAST = ScryptParams(n=2**10, r=8, p=1)
LATER = datetime.now(timezone.utc) + timedelta(days=365)


@pytest.fixture
def keyring(tmp_path: Path) -> PassphraseKeyring:
    return PassphraseKeyring.create(tmp_path / "keys.json", "pw", FAST)


def unit_rows(n: int, seed: int = 0) -> np.ndarray:
    x = np.random.default_rng(seed).standard_normal((n, DIM)).astype(np.float32)
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


class Setup:
    """One test's database and collection."""

    def __init__(self, pg: PgCluster, vectors: str, root: Path, keyring: Any) -> None:
        self.dsn = pg.new_database()
        self.vectors = vectors
        self.root = root
        self.keyring = keyring
        self.collection = "c_" + uuid.uuid4().hex[:10]
        self.timeout = 10.0

    def milvus(self) -> MilvusVectors:
        # As the workspace's factory connects: at the first request (the open's own).
        return MilvusVectors.connect(self.vectors, self.root, self.collection, DIM, timeout=self.timeout, wait=False)

    def open(self, password: str = PG_PASSWORD, dsn: str = "") -> ServerStore:
        return ServerStore.open(dsn or self.dsn, password, self.milvus, self.keyring, DIM)


@pytest.fixture
def setup(pg: PgCluster, milvus: MilvusServer, tmp_path: Path, keyring: Any) -> Setup:
    return Setup(pg, f"milvus:{milvus.uri}", tmp_path, keyring)


def fill(store: ServerStore, x: np.ndarray, purposes: Any = ("access",), prefix: str = "s") -> list[Any]:
    return store.add_many([Enrollment(f"{prefix}{i}", v, purposes, f"tok-{prefix}{i}", LATER) for i, v in enumerate(x)])


def seal_as_before_looks_were_bound(setup: Setup) -> None:
    """Re-seal every row as a release before the look digests were bound into the seal laid them
    out (what such a release left behind): their look columns then carry no seal's word, and a
    test may drop them as a release before look digests had none."""
    import psycopg

    from safeface.storage.rows import ROW_COLS, seal_row, unseal_row

    with setup.open() as s:
        keys = s._keys_now()
    with psycopg.connect(setup.dsn, password=PG_PASSWORD, autocommit=True) as c:
        for r in c.execute(f"SELECT {ROW_COLS} FROM safeface.rows").fetchall():
            entry, vec, token = unseal_row(keys, r, DIM)
            c.execute("UPDATE safeface.rows SET sealed = %s WHERE row_id = %s", (seal_row(
                keys, r[0], entry.pseudonym, sorted(entry.purposes), entry.token_id, r[4], entry.expires_us, vec, token,
                visible=entry.visible, masked_enrolment=entry.masked_enrolment), r[0]))


def _tables(dsn: str) -> bool:
    import psycopg

    with psycopg.connect(dsn, password=PG_PASSWORD, autocommit=True) as c:
        return c.execute("SELECT to_regclass('safeface.meta')").fetchone()[0] is not None


# ------------------------------------------------------------------- the store's contract



def data_only_role(setup: Any, older: str) -> str:
    """The DSN of a new role with data rights only (a service's), on a store made older by the
    owner's statement `older`, as an earlier safeface left it."""
    import uuid

    import psycopg

    role = "svc_" + uuid.uuid4().hex[:8]
    with psycopg.connect(setup.dsn, password=PG_PASSWORD, autocommit=True) as c:
        c.execute(older)
        c.execute(f"CREATE ROLE {role} LOGIN PASSWORD '{PG_PASSWORD}'")
        c.execute(f"GRANT USAGE ON SCHEMA safeface TO {role}")
        c.execute(f"GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA safeface TO {role}")
        c.execute(f"GRANT USAGE, SELECT, UPDATE ON ALL SEQUENCES IN SCHEMA safeface TO {role}")
    return re.sub(r"//[^@/]*@", f"//{role}@", setup.dsn)

def test_enrol_search_verify_and_erase_confirmed_by_a_milvus_query(setup: Setup) -> None:
    x = unit_rows(20)
    with setup.open() as s:
        fill(s, x[:10], ("access",))
        fill(s, x[10:], ("payments",), prefix="p")
        hit = s.search(x[3], "access", k=1)
        assert hit[0].pseudonym == s.pseudonym("s3") and hit[0].score == pytest.approx(1.0, abs=1e-5)
        # The purpose filter runs inside Milvus and again against the records.
        assert all(m.pseudonym != s.pseudonym("p0") for m in s.search(x[10], "access", k=5))
        assert s.verify("s3", x[3], "access") == pytest.approx(1.0, abs=1e-5)
        assert s.verify("s3", x[3], "payments") is None
        ids = [r.row_id for r in s.rows_for("s3")]
        res = s.erase_subject("s3")
        assert res.vectors == "removed" and res.row_ids == tuple(ids)
        assert s.search(x[3], "access", k=1)[0].pseudonym != s.pseudonym("s3")
    # Asked directly, Milvus holds no vector of the erased person.
    direct = setup.milvus()
    assert direct.present(ids) == [] and direct.count() == 19


def test_milvus_holds_only_protected_vectors_and_no_identifiers(setup: Setup) -> None:
    x = unit_rows(3)
    with setup.open() as s:
        fill(s, x)
    from pymilvus import MilvusClient

    client = MilvusClient(uri=setup.vectors[len("milvus:"):])
    got = client.query(setup.collection, filter="id >= 0", output_fields=["*"])
    assert {k for r in got for k in r} == {"id", "vector", "purposes", "expires_us"}
    stored = np.array([r["vector"] for r in got], dtype=np.float32)
    # Protected: no stored vector is (close to) any raw embedding; scores between them survive.
    assert np.abs(stored @ x.T).max() < 0.5
    assert np.allclose(stored @ stored.T, (x @ x.T)[np.ix_([r["id"] - 1 for r in got], [r["id"] - 1 for r in got])],
                       atol=1e-4)


def test_search_is_checked_against_the_records_when_milvus_lags_or_lies(setup: Setup) -> None:
    import psycopg

    x = unit_rows(4)
    with setup.open() as s:
        rows = fill(s, x)
        # A row erased from the records behind Milvus's back (as if Milvus lagged): never returned.
        with psycopg.connect(setup.dsn, password=PG_PASSWORD, autocommit=True) as c:
            c.execute("DELETE FROM safeface.rows WHERE row_id = %s", (rows[0].row_id,))
        assert all(m.row_id != rows[0].row_id for m in s.search(x[0], "access", k=4))
        # A Milvus operator rewrites a vector's purposes: the sealed record still decides.
        from pymilvus import MilvusClient

        client = MilvusClient(uri=setup.vectors[len("milvus:"):])
        client.upsert(setup.collection, [{"id": rows[1].row_id, "vector": x[1].tolist(), "purposes": purpose_set(["payments"]),
                                          "expires_us": 2**62}])
        assert s.search(x[1], "payments", k=3) == []
        # ...or plants the query itself as row 3's vector: the score comes from the sealed template.
        client.upsert(setup.collection, [{"id": rows[2].row_id, "vector": s._require_keys().transform.apply(
            x[3].astype(np.float64)).tolist(), "purposes": purpose_set(["access"]), "expires_us": 2**62}])
        top = s.search(x[3], "access", k=1)
        assert top[0].row_id == rows[3].row_id


def test_expired_rows_are_not_returned_and_purge_removes_their_vectors(setup: Setup) -> None:
    x = unit_rows(2)
    with setup.open() as s:
        soon = datetime.now(timezone.utc) + timedelta(seconds=30)
        s.add_many([Enrollment("a", x[0], ["access"], "t-a", soon), Enrollment("b", x[1], ["access"], "t-b", LATER)])
        later = soon + timedelta(seconds=1)
        assert [m.pseudonym for m in s.search(x[0], "access", k=2, now=later)] == [s.pseudonym("b")]
        out = s.purge_expired(later)
        assert [r.vectors for r in out] == ["removed"] and setup.milvus().count() == 1


def test_a_row_held_for_several_purposes_goes_when_all_of_them_end(setup: Setup) -> None:
    """As on SQLite: a row whose purposes have all ended is purged, one still held is kept."""
    x = unit_rows(2)
    with setup.open() as s:
        s.add_many([Enrollment("a", x[0], ["access", "payments"], "t-a", LATER),
                    Enrollment("b", x[1], ["access", "other"], "t-b", LATER)])
        assert s.purge_expired(ended=["access"]) == []
        out = s.purge_expired(ended=["access", "payments"])
        assert [r.pseudonym for r in out] == [s.pseudonym("a")] and setup.milvus().count() == 1


def _crash_after_the_record(point: str) -> None:
    if point == "add:recorded":
        raise KeyboardInterrupt("killed between the two writes")


def test_a_crash_between_the_record_and_the_vector_is_repaired_on_open(setup: Setup) -> None:
    x = unit_rows(3)
    s = setup.open()
    fill(s, x[:2])
    s._hook = _crash_after_the_record
    with pytest.raises(KeyboardInterrupt):
        s.add_many([Enrollment("late", x[2], ["access"], "t-late", LATER)])
    s.close()
    assert setup.milvus().count() == 2  # the record is there, the vector is not
    with setup.open() as s2:
        assert s2.pending() == {}
        assert s2.search(x[2], "access", k=1)[0].pseudonym == s2.pseudonym("late")


def test_milvus_down_at_erasure_gives_pending_then_the_next_open_finishes(pg: PgCluster, tmp_path: Path,
                                                                          keyring: Any) -> None:
    srv = start_milvus(tmp_path / "own-milvus")
    setup = Setup(pg, f"milvus:{srv.uri}", tmp_path, keyring)
    x = unit_rows(3)
    s = setup.open()
    rows = fill(s, x)
    srv.stop()
    try:
        res = s.erase_subject("s1")
        assert res.count == 1 and res.vectors == "pending"  # never "removed" while unconfirmed
        assert not s.has_subject("s1") and s.pending() == {"delete": 1}
        with pytest.raises(BackendError, match="Milvus"):
            s.add_many([Enrollment("new", x[0], ["access"], "t-new", LATER)])  # refused before any write
        assert len(s) == 2
    finally:
        s.close()
    srv2 = start_milvus(srv.data)
    try:
        setup.vectors = f"milvus:{srv2.uri}"
        with setup.open() as s2:
            assert s2.pending() == {}
            assert setup.milvus().present([rows[1].row_id]) == []
    finally:
        srv2.stop()


def test_a_handle_open_while_another_rekeys_follows_the_new_keys(setup: Setup, tmp_path: Path) -> None:
    """A service worker holds the store open while the CLI re-keys it and retires the old key
    versions. The worker kept the keys it opened with: its verifications failed as tampering,
    its own re-key failed, and its next enrolment was sealed under the retired key, which left
    the whole store unreadable. It reads the keys again when the store has moved."""
    x = unit_rows(3)
    worker_keys = PassphraseKeyring.open(tmp_path / "keys.json", "pw")  # the worker's own copy
    with setup.open() as cli, ServerStore.open(setup.dsn, PG_PASSWORD, setup.milvus, worker_keys, DIM) as worker:
        rows = fill(cli, x[:2])
        assert worker.search(x[0], "access", k=1)[0].row_id == rows[0].row_id
        setup.keyring.rotate("transform", "seal")
        assert cli.rekey().rows == 2
        for p in ("transform", "seal"):
            setup.keyring.retire(p, 1)
        assert worker.key_versions == {"transform": 2, "seal": 2}
        assert worker.search(x[0], "access", k=1)[0].row_id == rows[0].row_id
        late = fill(worker, x[2:], prefix="late")
        assert {r.row_id for r in cli.rows()} == {rows[0].row_id, rows[1].row_id, late[0].row_id}
        worker_keys.rotate("transform", "seal")
        assert worker.rekey().rows == 3  # the worker's turn, from the keys the store is under
        assert cli.search(x[2], "access", k=1)[0].row_id == late[0].row_id


def test_a_read_that_another_process_rekeys_under_runs_again_with_the_new_keys(setup: Setup, tmp_path: Path,
                                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    """The worker read the key versions, then the CLI's re-key committed, then the worker read
    the rows: every row failed its check under the old keys and the call raised IntegrityError
    (tampering), or the probe under the old transform met no vector. Now a read the versions
    moved under runs again. A row whose check fails while the versions stay is still tampering."""
    from safeface.errors import IntegrityError

    x = unit_rows(3)
    worker_keys = PassphraseKeyring.open(tmp_path / "keys.json", "pw")
    with setup.open() as cli, ServerStore.open(setup.dsn, PG_PASSWORD, setup.milvus, worker_keys, DIM) as worker:
        rows = fill(cli, x[:2])
        sql = worker._sql

        def rekey_first(marker: str) -> Any:
            def run(query: str, args: Any = ()) -> Any:
                if marker in query and not moved:
                    moved.append(True)
                    setup.keyring.rotate("transform", "seal")
                    assert cli.rekey().rows == 2
                return sql(query, args)
            return run

        for marker, call, expected in (("WHERE pseudonym", lambda: worker.verify("s0", x[0], "access"), 1.0),
                                       ("row_id = ANY", lambda: worker.search(x[1], "access", k=1)[0].score, 1.0),
                                       ("ORDER BY row_id", lambda: len(worker.rows()), 2)):
            moved: list[bool] = []
            monkeypatch.setattr(worker, "_sql", rekey_first(marker))
            got = call()
            assert moved == [True] and got == pytest.approx(expected, abs=1e-5), marker
        # A probe under the old transform that meets nothing above the threshold reads no row:
        # the versions, read again when the read ends, send it round once more.
        search = worker.vectors.search
        moved = []

        def rekey_then_search(*args: Any) -> Any:
            if not moved:
                moved.append(True)
                setup.keyring.rotate("transform", "seal")
                assert cli.rekey().rows == 2
            return search(*args)

        monkeypatch.setattr(worker.vectors, "search", rekey_then_search)
        assert [m.row_id for m in worker.search(x[1], "access", k=1, threshold=0.9)] == [rows[1].row_id]
        assert moved == [True]
        assert worker.key_versions == cli.key_versions == {"transform": 5, "seal": 5}
        monkeypatch.setattr(worker, "_sql", sql)
        import psycopg

        with psycopg.connect(setup.dsn, password=PG_PASSWORD, autocommit=True) as c:
            c.execute("UPDATE safeface.rows SET token_id = 'forged' WHERE row_id = %s", (rows[0].row_id,))
        with pytest.raises(IntegrityError):
            worker.verify("s0", x[0], "access")
        # Versions edited down mid-read are no re-key: tampering, not a retry.
        with psycopg.connect(setup.dsn, password=PG_PASSWORD, autocommit=True) as c:
            lower = "UPDATE safeface.meta SET v = '4' WHERE k IN ('transform_version', 'seal_version')"
            monkeypatch.setattr(worker, "_sql", lambda q, a=(): (c.execute(lower) if "WHERE pseudonym" in q else None,
                                                                  sql(q, a))[1])
            with pytest.raises(IntegrityError, match="went down"):
                worker.verify("s1", x[1], "access")


def test_a_new_subject_whose_id_prints_as_an_enrolled_one_is_refused_and_older_stores_gain_the_column(
        setup: Setup) -> None:
    """As in the SQLite gallery: "BOB" (or an all-Cyrillic "ВОВ") beside an enrolled "bob" is
    refused inside the write transaction. A store made before look digests gets the column at its
    next open, and its rows, which have none, block no one."""
    import psycopg

    from safeface.errors import InvalidArgument

    x = unit_rows(6, 4)
    with setup.open() as s:
        s.add_many([Enrollment("bob", x[0], ["access"], "t0", LATER)])
        s.add_many([Enrollment("EMP-0042", x[5], ["access"], "t5", LATER)])
        for twin in ("BOB", "\u0412\u041e\u0412", "EMP-O042", "B0B", "\ua4d0\ua4f3\ua4d0"):  # the last in Lisu
            with pytest.raises(InvalidArgument, match="prints as the id of a subject already enrolled"):
                s.add_many([Enrollment(twin, x[1], ["access"], "t1", LATER)])
        with pytest.raises(InvalidArgument, match="prints as"):
            s.add_many([Enrollment("kim", x[2], ["access"], "t2", LATER), Enrollment("Kim", x[3], ["access"], "t3",
                                                                                      LATER)])
        assert len(s) == 2 and not s.rows_for("kim")
        s.add_many([Enrollment("bob", x[4], ["access"], "t4", LATER)])  # the same subject again
    seal_as_before_looks_were_bound(setup)
    with psycopg.connect(setup.dsn, password=PG_PASSWORD, autocommit=True) as c:
        c.execute("ALTER TABLE safeface.rows DROP COLUMN look, DROP COLUMN look_small")
    with setup.open() as s:
        s.add_many([Enrollment("Bob", x[5], ["access"], "t5", LATER)])  # the old rows carry no look digest
        assert len(s) == 4
        with pytest.raises(InvalidArgument, match="prints as"):
            s.add_many([Enrollment("BOB", x[1], ["access"], "t1", LATER)])
    with psycopg.connect(setup.dsn, password=PG_PASSWORD, autocommit=True) as c:
        assert c.execute("SELECT look, look_small FROM safeface.rows ORDER BY row_id LIMIT 1").fetchone() == ("", "")
        # An older safeface's row, which names no look digest, is refused from now on.
        with pytest.raises(psycopg.errors.NotNullViolation):
            c.execute("INSERT INTO safeface.rows (pseudonym, purposes, token_id, provenance, expires_us, created_at, "
                      "transform_version, seal_version, sealed) SELECT 'x', purposes, token_id, provenance, "
                      "expires_us, created_at, transform_version, seal_version, sealed FROM safeface.rows LIMIT 1")


def test_a_store_made_before_look_digests_is_upgraded_by_its_owner_and_then_opens_for_a_data_only_role(
        setup: Setup) -> None:
    """Adding the look-digest columns needs the tables' owner. A service role with data rights
    only gets a ConfigError that says so (not a raw database error), until the owner has opened
    the store once; then it opens and enrols as before."""
    x = unit_rows(2, 8)
    with setup.open() as s:
        fill(s, x[:1])
    seal_as_before_looks_were_bound(setup)
    svc = data_only_role(setup, "ALTER TABLE safeface.rows DROP COLUMN look, DROP COLUMN look_small")
    with pytest.raises(ConfigError, match="owner"):
        setup.open(dsn=svc)
    setup.open().close()  # the owner
    with setup.open(dsn=svc) as s:
        fill(s, x[1:], prefix="late")
        assert len(s) == 2 and s.verify("s0", x[0], "access") == pytest.approx(1.0, abs=1e-5)


def test_a_joining_process_reads_no_row_and_sees_every_commit(setup: Setup, tmp_path: Path) -> None:
    import psycopg

    x = unit_rows(50)
    with setup.open() as s:
        rows = fill(s, x)
        with psycopg.connect(setup.dsn, password=PG_PASSWORD, autocommit=True) as c:
            c.execute("UPDATE safeface.rows SET sealed = set_byte(sealed, 20, get_byte(sealed, 20) # 1) "
                      "WHERE row_id = %s", (rows[7].row_id,))
    # Opening reads no row (it joins at once whatever the size); the tampered row is caught where read.
    with setup.open() as joined:
        with pytest.raises(IntegrityError, match=f"row {rows[7].row_id}"):
            joined.rows()
    # Another process enrols; this one sees it at its next call, with no refresh step.
    script = f"""
import numpy as np, sys
sys.path.insert(0, {str(Path(__file__).resolve().parent)!r})
from test_storage_server import Setup, unit_rows, DIM, LATER
from safeface.hazmat.templates import PassphraseKeyring
from safeface.storage.rows import Enrollment
from safeface.storage.server import ServerStore
from safeface.storage.vectors import MilvusVectors
kr = PassphraseKeyring.open({str(tmp_path / 'keys.json')!r}, "pw")
s = ServerStore.open({setup.dsn!r}, {PG_PASSWORD!r},
                     lambda: MilvusVectors.connect({setup.vectors!r}, None, {setup.collection!r}, DIM), kr, DIM)
s.add_many([Enrollment("other", unit_rows(1, seed=9)[0], ["access"], "t-o", LATER)])
with s.locked():
    print("locked", flush=True)
    import time; time.sleep(1.5)
s.close()
"""
    with setup.open() as s:
        proc = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, env=child_env(),
                                cwd=str(tmp_path), text=True)
        assert proc.stdout is not None and proc.stdout.readline().strip() == "locked"
        assert s.search(unit_rows(1, seed=9)[0], "access", k=1)[0].pseudonym == s.pseudonym("other")
        t = time.monotonic()
        with s.locked():  # the other process's advisory lock holds this one off
            waited = time.monotonic() - t
        assert proc.wait(timeout=60) == 0
        assert waited > 0.5


# ------------------------------------------------------------------- bad conditions


def test_wrong_credentials_or_unreachable_server_name_postgresql_and_write_nothing(setup: Setup,
                                                                                   pg: PgCluster) -> None:
    with pytest.raises(BackendError, match="PostgreSQL") as exc:
        setup.open(password="wrong")
    assert "wrong" not in str(exc.value) and not _tables(setup.dsn)
    with pytest.raises(BackendError, match="PostgreSQL.*cannot be reached"):
        setup.open(dsn=f"postgresql://u@127.0.0.1:{free_port()}/x")
    with pytest.raises(BackendError, match="Milvus"):
        ServerStore.open(setup.dsn, PG_PASSWORD, lambda: MilvusVectors.connect(
            f"milvus:http://127.0.0.1:{free_port()}", setup.root, "c", DIM, timeout=2), setup.keyring, DIM)
    assert not _tables(setup.dsn)


def test_unknown_schema_version_is_refused_before_anything_is_written(setup: Setup) -> None:
    import psycopg

    with setup.open():
        pass
    with psycopg.connect(setup.dsn, password=PG_PASSWORD, autocommit=True) as c:
        c.execute("UPDATE safeface.meta SET v = '99' WHERE k = 'schema'")
    setup.collection = "fresh_" + uuid.uuid4().hex[:8]
    with pytest.raises(ConfigError, match="PostgreSQL.*schema '99'"):
        setup.open()
    from pymilvus import MilvusClient

    assert not MilvusClient(uri=setup.vectors[len("milvus:"):]).has_collection(setup.collection)


def test_a_collection_of_another_dimension_is_refused_and_nothing_written(setup: Setup) -> None:
    other = MilvusVectors.connect(setup.vectors, setup.root, setup.collection, 64)
    other.ensure()
    with pytest.raises(ConfigError, match=f"{setup.collection}.*64-dimensional.*128"):
        setup.open()
    assert not _tables(setup.dsn)


def test_credentials_never_in_deployment_json() -> None:
    # However written: in the user information (holding "/" too), or as a parameter whose name is
    # percent-encoded, which libpq decodes.
    for records in ("postgresql://u:secret@h/db", "postgresql://alice:Tr0ub/4dor@h/db", "postgresql://h/db?password=s",
                    "postgresql://h/db?pass%77ord=S3cret", "postgresql://h/db?sslpass%77ord=S3cret"):
        with pytest.raises(ConfigError, match="password") as err:
            StorageConfig.from_section({"records": records, "vectors": "milvus-lite:v.db"})
        assert "S3cret" not in str(err.value) and "Tr0ub" not in str(err.value)
    with pytest.raises(ConfigError, match="user information") as err:
        StorageConfig.from_section({"records": "postgresql://u@h/db", "vectors": "milvus:http://root:MilvusPw@m:19530"})
    assert "MilvusPw" not in str(err.value)
    for honest in ("postgresql://u@h:5432/db?sslmode=require&options=-c%20x%3Dy",
                   "postgresql://u@h:5432/db?application_name=gate@lobby"):
        StorageConfig.from_section({"records": honest, "vectors": "milvus:http://m:19530"})
    with pytest.raises(ConfigError, match="password"):  # libpq reads host "alice", port "S3cr" there
        StorageConfig.from_section({"records": "postgresql://alice:S3cr/et?application_name=x@h/prod",
                                    "vectors": "milvus:http://m:19530"})
    with pytest.raises(ConfigError, match="vectors"):
        StorageConfig.from_section({"records": "sqlite", "vectors": "milvus:http://h:19530"})
    with pytest.raises(ConfigError, match="vectors"):
        StorageConfig.from_section({"records": "postgresql://u@h/db", "vectors": "local"})


def test_a_url_the_scheme_check_refuses_is_not_shown_back() -> None:
    """A records URL with a password in a form the scheme check refuses (another scheme, upper
    case, a leading space) was printed whole in the refusal, password and all."""
    for records in ("postgres+psycopg://safeface:Hunter2@db/faces", "PostgreSQL://u:Hunter2@db/faces",
                    " postgresql://u:Hunter2@db/faces", "u:Hunter2@db://faces"):
        with pytest.raises(ConfigError, match="storage.records must be") as err:
            StorageConfig.from_section({"records": records, "vectors": "milvus-lite:v.db"})
        assert "Hunter2" not in str(err.value), str(err.value)


def test_a_password_never_reaches_a_message_however_it_is_written() -> None:
    """A password holding "@" kept its tail in messages ("svc:***@ssw0rd@h"), and a quoted one
    with a space kept its last word."""
    from safeface.storage.server import _safe_dsn

    for dsn in ("postgresql://svc:p@ssw0rd@h/db", "host=h password='s3cr et' user=u", "host=h password=s3cret",
                "postgresql://svc:s3cret@h:5432/db", "postgresql://h/db?password=s3cret&sslmode=require",
                "postgresql://app:se?cret@h/sf", "postgresql://app:se#cret@h/sf", "postgresql://h/db?%70assword=s3cret",
                "host=h password=Hunter2 s3cret", "postgresql://alice:S3cr/et?application_name=x@h/prod"):
        shown = _safe_dsn(dsn)
        assert not any(part in shown for part in ("ssw0rd", "s3cr", "et'", "cret", "Hunter")), (dsn, shown)
    assert _safe_dsn("postgresql://svc@h/db") == "postgresql://svc@h/db"
    assert _safe_dsn("host=h port=5433 user=u dbname=d password=x") == "postgresql://u@h:5433/d"


# ------------------------------------------------------------------- the CLI on the server backends


def _raw_chunks(vectors: list[np.ndarray]) -> list[bytes]:
    """Every 32-byte window, at float32 boundaries, of each raw embedding."""
    out = []
    for v in vectors:
        b = np.asarray(v, dtype="<f4").tobytes()
        out.extend(b[i:i + 32] for i in range(0, len(b) - 31, 16))
    return out


def _scan(folder: Path, needles: list[bytes]) -> list[str]:
    found = []
    for p in folder.rglob("*"):
        if p.is_file():
            data = p.read_bytes()
            found.extend(f"{p}" for n in needles if n in data)
    return found


@pytest.mark.slow
@pytest.mark.parametrize("backend", ["local", "server"])
def test_cli_scenario_on_both_backends(backend: str, request: pytest.FixtureRequest, tmp_path: Path,
                                       capsys: Any) -> None:
    """The issue's "done when": enrol three people, identify, erase one, verify refused, audit
    verify; on the embedded store and on PostgreSQL + Milvus Lite."""
    from policy_support import images
    from test_cli_policy import Cli

    img = images()
    cli = Cli(capsys)
    ws = tmp_path / "ws"
    cli("init", ws, "--demo")
    if backend == "server":
        pg = request.getfixturevalue("pg")
        dsn = pg.new_database()
        # A fresh workspace goes to the servers the one way there is: its (empty) gallery, its
        # audit chain and its policy state move together.
        cli("storage", "migrate", ws, "--to", "server", "--records", dsn, "--vectors", "milvus-lite:vectors.db")
        assert not (ws / "audit.db").exists() and not (ws / "policy.db").exists()
    people = {"alice": "obama.jpg", "bob": "biden.jpg", "carol": "../knn/train/rose_leslie/img1.jpg"}
    tokens = {p: cli("consent", "issue", ws, "--subject", p, "--purpose", "demo")[0].strip() for p in people}
    enrolled = {p: json.loads(cli("enroll", ws, img / f, "--subject", p, "--purpose", "demo", "--consent", tokens[p],
                                  "--json")[0]) for p, f in people.items()}
    out, _ = cli("identify", ws, img / "obama2.jpg", "--purpose", "demo", "--consent", tokens["alice"], "--json")
    assert json.loads(out)["candidates"][0]["subject"] == enrolled["alice"]["subject"]
    fresh = cli("consent", "issue", ws, "--subject", "alice", "--purpose", "demo")[0].strip()
    receipt = json.loads(cli("erase", ws, "--subject", "alice", "--json")[0])
    assert receipt["templates_removed"] == 1
    cli.refused("CN-05", "verify", ws, img / "obama2.jpg", "--subject", "alice", "--purpose", "demo", "--consent", fresh)
    out, _ = cli("identify", ws, img / "obama2.jpg", "--purpose", "demo", "--consent", tokens["bob"], "--json")
    assert enrolled["alice"]["subject"] not in [c["subject"] for c in json.loads(out)["candidates"]]
    assert "intact" in cli("audit", "verify", ws)[0]
    from policy_support import CachedPipeline
    from safeface.hazmat.vision import DEFAULT_ENGINE
    from safeface.storage.rows import check_embedding

    assert DEFAULT_ENGINE == "onnx"  # the engine the CLI used, whose embeddings CachedPipeline keeps
    pipe = CachedPipeline()
    raws = [np.asarray(pipe.embed(img / f).embedding, dtype=np.float32) for f in people.values()]
    needles = _raw_chunks(raws + [check_embedding(r, DIM) for r in raws])
    if backend == "local":
        assert _scan(ws, needles) == []  # no raw embedding in any of the workspace's files
        return
    assert receipt["vectors"] == "removed"
    assert not (ws / "gallery.db").exists()  # the records went to PostgreSQL

    # Milvus, asked directly: no vector of the erased person.
    direct = MilvusVectors.connect("milvus-lite:vectors.db", ws, "safeface_templates", DIM)
    assert direct.present(receipt["rows"]) == [] and direct.count() == len(people) - 1
    direct.close()
    # `index rebuild` rebuilds Milvus from the records.
    out, _ = cli("index", "rebuild", ws)
    assert json.loads(out)["vectors"] == len(people) - 1

    # A byte scan of the PostgreSQL data and the Milvus Lite files finds no raw embedding.
    import psycopg

    with psycopg.connect(dsn, password=PG_PASSWORD, autocommit=True) as c:
        c.execute("CHECKPOINT")
        oid = c.execute("SELECT oid FROM pg_database WHERE datname = current_database()").fetchone()[0]
    # This database's files, the cluster's shared catalogue and its write-ahead log: the session's
    # other databases (each a copy of the template) hold nothing of this workspace.
    for folder in (pg.data / "base" / str(oid), pg.data / "global", pg.data / "pg_wal", ws / "vectors.db"):
        assert folder.exists() and _scan(folder, needles) == [], folder
    # The scan can see: the protected vectors Milvus must hold are found in its files.
    from safeface.hazmat.templates import PassphraseKeyring
    from safeface.hazmat.templates.transform import TemplateTransform
    from safeface.workspace.passphrase import resolve_passphrase

    kr = PassphraseKeyring.open(ws / "keys" / "keyring.json", resolve_passphrase(ws, None, None))
    t = TemplateTransform.from_key(kr.key("transform"), DIM)
    bob = t.apply(check_embedding(raws[1], DIM)).astype("<f4").tobytes()
    assert _scan(ws / "vectors.db", [bob[:32]])


def test_migrate_a_local_workspace_to_the_server_backends(pg: PgCluster, tmp_path: Path, capsys: Any) -> None:
    from policy_support import images
    from test_cli_policy import Cli

    img = images()
    cli = Cli(capsys)
    ws = tmp_path / "ws"
    cli("init", ws, "--demo")
    tokens = {p: cli("consent", "issue", ws, "--subject", p, "--purpose", "demo")[0].strip() for p in ("ann", "ben")}
    cli("enroll", ws, img / "obama.jpg", "--subject", "ann", "--purpose", "demo", "--consent", tokens["ann"])
    cli("enroll", ws, img / "biden.jpg", "--subject", "ben", "--purpose", "demo", "--consent", tokens["ben"])
    revoked = cli("consent", "issue", ws, "--subject", "cy", "--purpose", "demo")[0].strip()
    cli("consent", "revoke", ws, "--subject", "cy")
    local = [r.__dict__ for r in _records(ws)]
    from safeface.sdk import SafeFace

    with SafeFace.open(ws) as sf:
        chain_before = sf.audit_entries()
        head_before = sf.audit_verify().head_hash
    dsn = pg.new_database()
    out = json.loads(cli("storage", "migrate", ws, "--to", "server", "--records", dsn,
                         "--vectors", "milvus-lite:vectors.db")[0])
    assert out["templates"] == 2 and out["audit_entries"] == len(chain_before)
    assert {"gallery.db", "audit.db", "policy.db"} <= set(out["erased"])
    assert not any((ws / f).exists() for f in ("gallery.db", "audit.db", "policy.db"))
    assert "password" not in (ws / "deployment.json").read_text()
    # The chain continued in PostgreSQL: the same entries, then the migration's, linked to the
    # local log's last hash.
    import psycopg

    with psycopg.connect(dsn, password=PG_PASSWORD, autocommit=True) as c:
        stored = c.execute("SELECT seq, prev, operation FROM safeface.audit_entries ORDER BY seq").fetchall()
    assert len(stored) == len(chain_before) + 1
    assert stored[-1] == (len(chain_before) + 1, head_before, "storage-migrate")
    with SafeFace.open(ws) as sf:
        assert sf.audit_entries()[:-1] == chain_before
    # The policy state came along: the revoked consent stays revoked.
    cli.refused("CN-05", "enroll", ws, img / "obama.jpg", "--subject", "cy", "--purpose", "demo", "--consent", revoked)
    assert json.loads((ws / "deployment.json").read_text())["storage"]["records"] == dsn
    # The same rows (ids, seals, tokens), the audit chain continuous and the store matching it.
    assert [r.__dict__ for r in _records(ws)] == local
    assert "intact" in cli("audit", "verify", ws)[0]
    with SafeFace.open(ws) as sf:
        sf.audit_verify()
        assert [e.operation for e in sf.audit_entries()][-2] == "storage-migrate"
    out, _ = cli("identify", ws, img / "obama2.jpg", "--purpose", "demo", "--consent", tokens["ann"], "--json")
    assert json.loads(out)["candidates"][0]["subject"] == local[0]["pseudonym"]
    # The look digests came along: a new "ANN" prints as "ann" and is refused on the server too.
    with psycopg.connect(dsn, password=PG_PASSWORD, autocommit=True) as c:
        assert c.execute("SELECT count(*) FROM safeface.rows WHERE length(look) = 64 AND length(look_small) = 64"
                         ).fetchone()[0] == 2
    upper = cli("consent", "issue", ws, "--subject", "ANN", "--purpose", "demo")[0].strip()
    _, err = cli("enroll", ws, img / "obama2.jpg", "--subject", "ANN", "--purpose", "demo", "--consent", upper, code=1)
    assert "prints as the id of a subject already enrolled" in err
    # A second migration is refused: the workspace is already there.
    cli("storage", "migrate", ws, "--to", "server", "--records", dsn, "--vectors", "milvus-lite:v2.db", code=1)


def _records(ws: Path) -> list[Any]:
    from safeface.sdk import SafeFace

    with SafeFace.open(ws) as sf:
        return sf.records()


@pytest.mark.slow
def test_a_search_while_milvus_is_down_answers_from_the_records(pg: PgCluster, tmp_path: Path, keyring: Any,
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    """Milvus stopped under a running store (its own server process, terminated). Every search
    raised until it came back: a gate turned everyone away. Now a search scores the records (a
    purpose and an erasure still hold there); a write is refused and writes nothing; past
    SCAN_MAX rows the search is refused with IndexUnavailable, not answered as a miss."""
    import safeface.storage.server as server_mod

    own = start_milvus(tmp_path / "milvus-data")
    try:
        setup = Setup(pg, f"milvus:{own.uri}", tmp_path, keyring)
        x = unit_rows(12, seed=21)
        with setup.open() as s:
            rows = fill(s, x[:8])
            fill(s, x[8:], ("payments",), prefix="p")
            s.erase_subject("s5")
            own.stop()
            for i in (0, 3, 7):
                assert [m.row_id for m in s.search(x[i], "access", k=1, threshold=0.9)] == [rows[i].row_id], i
            assert all(m.pseudonym != s.pseudonym("s5") for m in s.search(x[5], "access", k=8))
            assert all(m.pseudonym != s.pseudonym("p0") for m in s.search(x[8], "access", k=8))
            with pytest.raises(BackendError):
                fill(s, unit_rows(1, seed=99), prefix="late")
            assert s.rows_for("late0") == []
            monkeypatch.setattr(server_mod, "SCAN_MAX", 5)
            with pytest.raises(IndexUnavailable, match="cannot be asked now.*Try again once Milvus answers"):
                s.search(x[0], "access", k=1)
    finally:
        own.stop()


def _stored_then_stopped(pg: PgCluster, tmp_path: Path, keyring: Any, seed: int) -> tuple[Any, Setup, np.ndarray,
                                                                                    list[Any]]:
    """Six rows stored through the test's own Milvus server, which is then stopped: (the
    server, to start again on its port; the setup, whose requests time out after 2 s; the
    rows' vectors; the rows)."""
    own = start_milvus(tmp_path / "milvus-data")
    try:
        setup = Setup(pg, f"milvus:{own.uri}", tmp_path, keyring)
        setup.timeout = 2.0
        x = unit_rows(6, seed=seed)
        with setup.open() as s:
            rows = fill(s, x)
    finally:
        own.stop()
    return own, setup, x, rows


@pytest.mark.slow
def test_a_store_opens_while_milvus_is_down_and_finishes_opening_once_it_is_back(
        pg: PgCluster, tmp_path: Path, keyring: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    """A service restarted during a Milvus outage stayed down until Milvus answered: the open
    raised, where a running store would have served from the records. Now a store whose records
    exist opens: searches score the records, an erasure removes the records and leaves its
    vector removal noted, an enrolment is refused and writes nothing. Once Milvus is back, the
    first search loads the collection, carries out the noted removal and is answered by Milvus.
    A new store still needs Milvus: nothing is created without it."""
    import safeface.storage.vectors as vectors_mod

    monkeypatch.setattr(vectors_mod, "RETRY_S", 1.0)
    own, setup, x, rows = _stored_then_stopped(pg, tmp_path, keyring, seed=8)
    try:
        with setup.open() as s:
            assert [m.row_id for m in s.search(x[1], "access", k=1, threshold=0.9)] == [rows[1].row_id]
            receipt = s.erase_subject("s2")
            assert receipt.vectors == "pending" and s.rows_for("s2") == [] and s.pending() == {"delete": 1}
            with pytest.raises(IndexUnavailable):
                fill(s, unit_rows(1, seed=77), prefix="late")
            assert s.rows_for("late0") == []
            time.sleep(1.1)  # past the retry window, with Milvus still down: asked again, still records
            assert [m.row_id for m in s.search(x[4], "access", k=1)] == [rows[4].row_id]
            own = start_milvus(tmp_path / "milvus-data", port=own.port)
            for _ in range(30):  # a server just started may refuse a request or two
                time.sleep(1.1)
                assert [m.row_id for m in s.search(x[3], "access", k=1)] == [rows[3].row_id]
                if s.pending() == {}:
                    break
            assert s.pending() == {} and setup.milvus().present([r.row_id for r in rows]) == sorted(
                r.row_id for i, r in enumerate(rows) if i != 2)

            def no_scan(*a: Any, **kw: Any) -> Any:
                raise AssertionError("scored the records, not asked Milvus")

            monkeypatch.setattr(s, "_scan", no_scan)
            assert [m.row_id for m in s.search(x[5], "access", k=1)] == [rows[5].row_id]
            fill(s, unit_rows(1, seed=78), prefix="back")
            assert len(s.rows_for("back0")) == 1 and s.pending() == {}
        own.stop()
        fresh = Setup(pg, f"milvus:{own.uri}", tmp_path, keyring)
        fresh.timeout = 2.0
        with pytest.raises(IndexUnavailable, match="cannot be reached"):
            fresh.open()
        assert not _tables(fresh.dsn)
    finally:
        own.stop()


def _blocked_probe(store: ServerStore, monkeypatch: pytest.MonkeyPatch) -> tuple[threading.Event, threading.Event,
                                                                               list[str]]:
    """Makes `store`'s Milvus probes (vectors.load_if_present, which _finish_open asks first,
    reachable, ensure, probe) wait until released and then fail, as a hung Milvus does at its
    deadline: (entered, release, calls)."""
    entered, release, calls = threading.Event(), threading.Event(), []

    def hung() -> bool:
        calls.append(threading.current_thread().name)
        entered.set()
        release.wait(60)
        raise IndexUnavailable("Milvus (test) did not answer before its deadline.")

    for name in ("reachable", "load_if_present", "ensure", "probe"):
        monkeypatch.setattr(store.vectors, name, hung)
    return entered, release, calls


@pytest.mark.slow
def test_a_store_still_opening_asks_milvus_from_one_thread_and_holds_no_lock_meanwhile(
        pg: PgCluster, tmp_path: Path, keyring: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    """A store opened during an outage asked Milvus, once its retry window had passed, holding
    the store's write lock (shared by every process) and its connection lock: each search of the
    handle queued behind the other's attempt and waited out its own deadline, a verify (records
    only) waited too, and another handle's erasure, which asks Milvus nothing, waited for it.
    Now one thread asks, holding no lock; the rest answer from the records meanwhile."""
    import safeface.storage.vectors as vectors_mod

    own, setup, x, rows = _stored_then_stopped(pg, tmp_path, keyring, seed=31)
    try:
        monkeypatch.setattr(vectors_mod, "RETRY_S", 0.5)
        with setup.open() as a, setup.open() as b:
            assert a._half_open and b._half_open
            time.sleep(0.6)  # past a's window: its next call asks Milvus
            entered, release, calls = _blocked_probe(a, monkeypatch)
            first = threading.Thread(target=lambda: a.search(x[0], "access", k=1), daemon=True)
            first.start()
            assert entered.wait(30)
            try:
                for i in (1, 2, 3):
                    done, got = _finishes(lambda i=i: a.search(x[i], "access", k=1), 30)
                    assert done and [m.row_id for m in got] == [rows[i].row_id], got
                done, score = _finishes(lambda: a.verify("s4", x[4], "access"), 30)
                assert done and score == pytest.approx(1.0, abs=1e-5), score
                done, receipt = _finishes(lambda: b.erase_subject("s5"), 30)
                assert done and receipt.vectors == "pending" and b.rows_for("s5") == [], receipt
                with pytest.raises(IndexUnavailable, match="has not answered this store"):
                    fill(a, unit_rows(1, seed=90), prefix="late")
                assert len(calls) == 1, calls
            finally:
                release.set()
                first.join(30)
    finally:
        own.stop()


@pytest.mark.slow
def test_a_store_still_opening_meets_a_collection_not_its_own_once_a_window(
        pg: PgCluster, tmp_path: Path, keyring: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    """Milvus back after the outage holding, under the store's collection name, one of another
    dimension (made afresh by another deployment). Each search made a new client, failed its
    check and logged it; now the store keeps scoring the records and asks again once a window,
    and so does an enrolment."""
    import safeface.storage.vectors as vectors_mod

    own, setup, x, rows = _stored_then_stopped(pg, tmp_path, keyring, seed=41)
    try:
        monkeypatch.setattr(vectors_mod, "RETRY_S", 0.5)
        with setup.open() as s:
            own = wait_answering(start_milvus(tmp_path / "milvus-data", port=own.port))
            other = MilvusVectors.connect(setup.vectors, setup.root, "scratch", 64)
            other.ensure()
            other._api.drop_collection(setup.collection)
            other._api.rename_collection("scratch", setup.collection)
            other.close()
            made: list[int] = []
            real = s.vectors._opener
            assert real is not None
            monkeypatch.setattr(s.vectors, "_opener", lambda: made.append(1) or real())
            time.sleep(0.6)
            for i in range(6):
                assert [m.row_id for m in s.search(x[i], "access", k=1)] == [rows[i].row_id]
            assert len(made) == 1 and s._half_open, made
            # Nor does an enrolment ask again inside the window (each made a client and logged),
            # and it names the refusal rather than an outage ("has not answered").
            for i in range(3):
                with pytest.raises(ConfigError, match="64-dimensional"):
                    fill(s, unit_rows(1, seed=90 + i), prefix=f"late{i}")
            assert len(made) == 1 and s.rows_for("late0") == []
            with pytest.raises(ConfigError, match="64-dimensional"):
                setup.open()
    finally:
        own.stop()


@pytest.mark.slow
def test_an_enrolment_on_a_store_still_opening_never_hides_a_lost_index(
        pg: PgCluster, tmp_path: Path, keyring: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    """Milvus back after the outage without the store's vectors (a new volume, a restore from
    before them), an enrolment arriving inside the retry window. It wrote its vector and a stamp
    of the records' count plus one before the index was judged: the stamp then matched the
    records, the index read as this store's, and the lost vectors were never rebuilt. Now an
    enrolment first finishes the opening, which finds the index lost and rebuilds it."""
    import safeface.storage.vectors as vectors_mod

    monkeypatch.setattr(vectors_mod, "RETRY_S", 600.0)  # the window outlasts Milvus's restart
    monkeypatch.setattr(vectors_mod, "RETRY_FIRST_S", 600.0)
    own, setup, x, rows = _stored_then_stopped(pg, tmp_path, keyring, seed=51)
    try:
        with setup.open() as s:
            assert s._half_open and s.vectors.down()
            own = wait_answering(start_milvus(tmp_path / "milvus-empty", port=own.port))
            fill(s, unit_rows(1, seed=52), prefix="new")
            assert not s._half_open and s.pending() == {}
            assert [m.row_id for m in s.search(x[0], "access", k=1, threshold=0.9)] == [rows[0].row_id]
            assert setup.milvus().present([r.row_id for r in rows]) == sorted(r.row_id for r in rows)
            assert s.check_index().consistent
    finally:
        own.stop()


def test_a_milvus_whose_searches_hang_stays_down_though_its_writes_answer(
        setup: Setup, monkeypatch: pytest.MonkeyPatch) -> None:
    """Milvus's query nodes hang (queries and searches reach their deadline) while its proxy
    answers metadata and writes. Any request that succeeded ended the retry window, so after
    each enrolment the next search waited out the hung read path again. Now only a read ends
    it: the enrolment asks one (the stamp) before the write lock and is refused, and searches
    keep scoring the records without asking."""
    from pymilvus.exceptions import MilvusException

    x = unit_rows(4, seed=61)
    with setup.open() as s:
        rows = fill(s, x)
        client = s.vectors._api
        asked: list[str] = []

        def hung(what: str) -> Any:
            def fn(*a: Any, **kw: Any) -> Any:
                asked.append(what)
                raise MilvusException(message=f"{what}: deadline exceeded (test: query nodes hang)")
            return fn

        monkeypatch.setattr(client, "query", hung("query"))
        monkeypatch.setattr(client, "search", hung("search"))
        assert [m.row_id for m in s.search(x[0], "access", k=1)] == [rows[0].row_id]
        assert asked == ["query"] and s.vectors.down()
        with pytest.raises(IndexUnavailable, match="read the stamp"):
            fill(s, unit_rows(1, seed=62), prefix="new")
        assert s.rows_for("new0") == [] and asked == ["query", "query"]
        assert [m.row_id for m in s.search(x[1], "access", k=1)] == [rows[1].row_id]
        assert asked == ["query", "query"]


def test_a_milvus_whose_searches_alone_hang_stays_down_for_searches_after_an_enrolment(
        setup: Setup, monkeypatch: pytest.MonkeyPatch) -> None:
    """Milvus answers queries and writes while its searches alone hang (a search node stuck, a
    proxy dropping the search call). An enrolment's stamp read (a query) ended the window, so
    the next search waited out the hung search again: after every enrolment, a caller at a gate
    waited the whole deadline. Now the window a search opened is ended by a search only:
    enrolments go on, searches keep scoring the records until the window ends, and a search that
    answers then closes it."""
    from pymilvus.exceptions import MilvusException

    x = unit_rows(4, seed=63)
    with setup.open() as s:
        rows = fill(s, x[:2])
        client = s.vectors._api
        answered = client.search
        asked: list[str] = []

        def hung(*a: Any, **kw: Any) -> Any:
            asked.append("search")
            raise MilvusException(message="search: deadline exceeded (test: search nodes hang)")

        monkeypatch.setattr(client, "search", hung)
        assert [m.row_id for m in s.search(x[0], "access", k=1)] == [rows[0].row_id]
        assert asked == ["search"] and s.index_state() == "down"
        more = fill(s, x[2:3], prefix="new")  # in the window: the stamp read answers, the write goes through
        assert len(more) == 1 and s.rows_for("new0")
        assert [m.row_id for m in s.search(x[1], "access", k=1)] == [rows[1].row_id]
        assert [m.row_id for m in s.search(x[2], "access", k=1)] == [more[0].row_id]
        assert asked == ["search"]  # the records answered; the hung search was not asked again
        assert s.index_state() == "down" and not s.vectors.down() and s.vectors.down(search=True)
        s.vectors._outage.search_down_until = 0.0  # the window passes
        monkeypatch.setattr(client, "search", answered)
        assert [m.row_id for m in s.search(x[1], "access", k=1)] == [rows[1].row_id]
        assert not s.vectors.down(search=True) and s.index_state() == "up"


def test_after_a_window_one_request_alone_asks_a_hung_milvus_for_every_handle_of_the_process(
        setup: Setup, monkeypatch: pytest.MonkeyPatch) -> None:
    """Each handle (a service's worker threads hold one each) kept its own retry window: a hung
    Milvus made every worker wait out the deadline once per window, and when a window ended
    every search running then asked, each waiting again. Now a process's handles on one
    collection share what they know: one handle's failure holds the others off, and once the
    window has passed a single request (the trial) asks while the other searches answer from
    the records; when it answers, all ask Milvus again."""
    import threading

    import safeface.storage.vectors as vectors_mod
    from pymilvus.exceptions import MilvusException

    monkeypatch.setattr(vectors_mod, "RETRY_FIRST_S", 0.2)
    clock = SteppedClock(vectors_mod, monkeypatch)
    x = unit_rows(3, seed=64)
    with setup.open() as a, setup.open() as b:
        rows = fill(a, x)
        clients = {"a": a.vectors._api, "b": b.vectors._api}
        answered = {k: c.search for k, c in clients.items()}
        asked: list[str] = []

        def failing(who: str) -> Any:
            def fn(*args: Any, **kw: Any) -> Any:
                asked.append(who)
                raise MilvusException(message="search: deadline exceeded (test: Milvus hangs)")
            return fn

        for who, c in clients.items():
            monkeypatch.setattr(c, "search", failing(who))
        assert [m.row_id for m in a.search(x[0], "access", k=1)] == [rows[0].row_id]
        assert asked == ["a"]
        assert [m.row_id for m in b.search(x[1], "access", k=1)] == [rows[1].row_id]
        assert asked == ["a"] and b.index_state() == "down"  # a's failure holds b off: b asked nothing
        clock.advance(a.vectors.window_left(search=True) + 0.05)

        slow_started, release = threading.Event(), threading.Event()

        def slow(*args: Any, **kw: Any) -> Any:  # Milvus back, slowly: the trial's answer takes a while
            asked.append("a-trial")
            slow_started.set()
            release.wait(10)
            return answered["a"](*args, **kw)

        monkeypatch.setattr(clients["a"], "search", slow)
        found: list[Any] = []
        trial = threading.Thread(target=lambda: found.extend(a.search(x[2], "access", k=1)))
        trial.start()
        assert slow_started.wait(10)
        for i in range(2):  # while the trial is out, b's searches answer from the records
            assert [m.row_id for m in b.search(x[i], "access", k=1)] == [rows[i].row_id]
        assert asked == ["a", "a-trial"] and b.index_state() == "down"
        release.set()
        trial.join(10)
        assert [m.row_id for m in found] == [rows[2].row_id]
        monkeypatch.setattr(clients["b"], "search", lambda *args, **kw: (asked.append("b"), answered["b"](*args, **kw))[1])
        assert [m.row_id for m in b.search(x[0], "access", k=1)] == [rows[0].row_id]
        assert asked[-1] == "b" and b.index_state() == "up" and not a.vectors.down(search=True)


def test_a_failed_request_is_reported_by_the_store_without_pymilvus_traceback(
        setup: Setup, caplog: pytest.LogCaptureFixture) -> None:
    """pymilvus logs every failed request at ERROR with a traceback before raising, and the store
    then reports it again: during an outage the log filled with a traceback per search. Now the
    store's requests are reported by the store alone; a host's own pymilvus calls still log."""
    import logging

    with setup.open() as s:
        fill(s, unit_rows(1, seed=65))
        client = s.vectors._api
        caplog.set_level(logging.DEBUG)

        def pymilvus_errors() -> list[logging.LogRecord]:
            return [r for r in caplog.records if r.name.startswith("pymilvus") and r.levelno >= logging.ERROR]

        with pytest.raises(IndexUnavailable, match="failed to describe"):
            s.vectors._call("describe", client.describe_collection, "c_no_such_collection")
        assert pymilvus_errors() == []
        with pytest.raises(Exception):
            client.describe_collection("c_no_such_collection")  # the host's own call
        assert any("Traceback" in r.getMessage() for r in pymilvus_errors())


def test_the_retry_window_starts_short_and_grows_while_milvus_stays_down(
        setup: Setup, monkeypatch: pytest.MonkeyPatch) -> None:
    """Every failure held Milvus off for 30 s: a blip of a second cost half a minute of record
    scans. Now the first window is short and each that ends in another failure doubles the next,
    up to the cap; a search in a window asks Milvus nothing; once a search answers, the next
    outage starts short again; a request that waited out its deadline holds Milvus off for
    twice that wait."""
    import safeface.storage.vectors as vectors_mod
    from pymilvus.exceptions import MilvusException

    monkeypatch.setattr(vectors_mod, "RETRY_FIRST_S", 0.3)
    monkeypatch.setattr(vectors_mod, "RETRY_S", 1.2)
    clock = SteppedClock(vectors_mod, monkeypatch)
    x = unit_rows(3, seed=71)
    with setup.open() as s:
        rows = fill(s, x)
        client = s.vectors._api
        answered = client.search
        asked: list[int] = []

        def failing(*a: Any, **kw: Any) -> Any:
            asked.append(1)
            raise MilvusException(message="search: deadline exceeded (test: Milvus down)")

        monkeypatch.setattr(client, "search", failing)
        windows = []
        for i in range(4):
            assert [m.row_id for m in s.search(x[i % 3], "access", k=1, threshold=0.9)] == [rows[i % 3].row_id]
            windows.append(s.vectors.window_left(search=True))
            assert len(asked) == i + 1 and s.vectors.down(search=True)
            assert [m.row_id for m in s.search(x[1], "access", k=1)] == [rows[1].row_id]
            assert len(asked) == i + 1  # inside the window: the records answer, Milvus is not asked
            clock.advance(windows[-1] + 0.05)
        for got, nominal in zip(windows, (0.3, 0.6, 1.2, 1.2)):
            assert got == pytest.approx(nominal), windows
        monkeypatch.setattr(client, "search", answered)
        assert [m.row_id for m in s.search(x[2], "access", k=1)] == [rows[2].row_id]
        assert not s.vectors.down(search=True) and len(asked) == 4
        monkeypatch.setattr(client, "search", failing)
        s.search(x[0], "access", k=1)
        assert len(asked) == 5 and s.vectors.window_left(search=True) == pytest.approx(0.3)
        # A request that ran into its deadline: the window is at least twice its wait. Short
        # windows let a hung Milvus be asked again a second after each caller had waited out the
        # whole deadline (6 waits in 45 s against 2 with the fixed window).
        s.vectors.probe()  # a read answers: the window ends, but not the one the search opened
        assert not s.vectors.down() and s.vectors.down(search=True)
        s.vectors._outage.search_down_until = 0.0  # as if it had passed (its count stays)
        monkeypatch.setattr(client, "search", answered)
        s.search(x[1], "access", k=1)  # answers: the next outage starts short

        def hung(*a: Any, **kw: Any) -> Any:
            clock.advance(0.45)
            raise MilvusException(message="search: deadline exceeded (test: Milvus hangs)")

        monkeypatch.setattr(client, "search", hung)
        s.search(x[1], "access", k=1)
        # Twice the 0.45 s it waited, not 0.3 s; at most the cap.
        assert s.vectors.window_left(search=True) == pytest.approx(0.9)


def test_a_failure_inside_a_window_keeps_its_wait_and_its_refusal(monkeypatch: pytest.MonkeyPatch) -> None:
    """A failure that arrived while a window was open was dropped: a request that had waited out
    its deadline left the short window of a quick failure before it (the next caller waited the
    deadline again), and an answer not this store's was lost (an enrolment was then refused as
    an outage and Milvus asked again a second later). Now it lengthens the window, without
    doubling the next one."""
    import safeface.storage.vectors as vectors_mod

    monkeypatch.setattr(vectors_mod, "RETRY_FIRST_S", 0.2)
    monkeypatch.setattr(vectors_mod, "RETRY_S", 30.0)
    v = MilvusVectors(None, "Milvus at test", "c", DIM, "FLAT")
    v.hold_off()  # a quick failure: the first, short window
    assert 0.1 < v.window_left() <= 0.2 and v.refused_lately() is None
    v.hold_off(waited=2.0)  # a request of the same outage that waited 2 s
    assert 3.9 < v.window_left() <= 4.0
    refusal = ConfigError("the collection holds another store's index (test)")
    v.hold_off(refusal=refusal)
    assert v.refused_lately() is refusal and 29.9 < v.window_left() <= 30.0
    assert v._outage.windows == 1  # one window, lengthened, not doubled


@pytest.mark.slow
def test_a_store_still_opening_onto_another_stores_index_keeps_scoring_its_records(
        pg: PgCluster, tmp_path: Path, keyring: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    """Milvus back holding, under the store's collection name, another store's index (same
    schema and dimension: a second workspace given the same collection). Finishing the open
    raised that out of a search (a 500 at a gate) and left the store taking it for its own, so
    every erasure's drain raised too. Now the store stays as it opened: it scores its records,
    leaves vector removals noted, and empties nothing of the other store's."""
    import safeface.storage.vectors as vectors_mod

    monkeypatch.setattr(vectors_mod, "RETRY_S", 0.5)
    own, setup, x, rows = _stored_then_stopped(pg, tmp_path, keyring, seed=71)
    try:
        with setup.open() as s:
            own = wait_answering(start_milvus(tmp_path / "milvus-other", port=own.port))
            (tmp_path / "other").mkdir()
            other = Setup(pg, setup.vectors, tmp_path / "other", keyring)
            other.collection = setup.collection
            with other.open() as o:
                fill(o, unit_rows(1, seed=72), prefix="o")
            time.sleep(0.6)
            assert [m.row_id for m in s.search(x[0], "access", k=1)] == [rows[0].row_id]
            assert s._half_open and s.index_state() == "opening"
            assert s.erase_subject("s1").vectors == "pending"
            with pytest.raises(ConfigError, match="holds another store's index"):
                fill(s, unit_rows(1, seed=73), prefix="late")  # in the window: not asked again
            with other.open() as o:
                assert len(o.rows_for("o0")) == 1 and o.vectors.count() == 1
    finally:
        own.stop()


@pytest.mark.slow
def test_a_store_still_opening_loads_its_collection_holding_no_lock(
        pg: PgCluster, tmp_path: Path, keyring: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    """Finishing the open loaded the collection under the store's write lock, shared by every
    process; a load waits behind a compaction on Milvus Lite (its deadline is 120 s), and every
    other handle's erasure waited as long, though it asks Milvus nothing."""
    import safeface.storage.vectors as vectors_mod
    from pymilvus import MilvusClient

    monkeypatch.setattr(vectors_mod, "RETRY_S", 0.5)
    own, setup, x, rows = _stored_then_stopped(pg, tmp_path, keyring, seed=81)
    entered, release = threading.Event(), threading.Event()
    real_load = MilvusClient.load_collection

    def slow_load(self: Any, *a: Any, **kw: Any) -> Any:
        if threading.current_thread().name == "finisher":
            entered.set()
            release.wait(60)
        return real_load(self, *a, **kw)

    try:
        with setup.open() as a, setup.open() as b:
            own = wait_answering(start_milvus(tmp_path / "milvus-data", port=own.port))
            monkeypatch.setattr(MilvusClient, "load_collection", slow_load)
            time.sleep(0.6)
            first = threading.Thread(target=lambda: a.search(x[0], "access", k=1), name="finisher", daemon=True)
            first.start()
            try:
                assert entered.wait(30)
                done, receipt = _finishes(lambda: b.erase_subject("s1"), 30)
                assert done and b.rows_for("s1") == [], receipt
            finally:
                release.set()
                first.join(60)
            assert not a._half_open
    finally:
        own.stop()


@pytest.mark.slow
def test_a_milvus_that_refuses_the_credentials_is_no_outage_to_open_through(
        pg: PgCluster, tmp_path: Path, keyring: Any) -> None:
    """A store opens during an outage; a Milvus (or its gateway) that refuses the token is not
    one: waiting does not mend a wrong or revoked SAFEFACE_MILVUS_TOKEN, and a store opened on it
    would have scored every record for ever while its service said ready. The open refuses with
    ConfigError. Under a running store the same refusal is taken for an outage of the full window (see
    test_a_gateway_refusing_milvus_calls_is_an_outage_not_a_crash)."""
    import grpc

    own = start_milvus(tmp_path / "milvus-data")
    gateway = None
    try:
        setup = Setup(pg, f"milvus:{own.uri}", tmp_path, keyring)
        setup.timeout = 3.0
        with setup.open() as s:
            fill(s, unit_rows(2, seed=33))
        own.stop()
        for code in (grpc.StatusCode.UNAUTHENTICATED, grpc.StatusCode.PERMISSION_DENIED):
            gateway = _refusing_gateway(own.port, code)
            with pytest.raises(ConfigError, match="refused the credentials.*SAFEFACE_MILVUS_TOKEN"):
                setup.open()
            gateway.stop(0)
            gateway = None
    finally:
        if gateway is not None:
            gateway.stop(0)
        own.stop()


def _finishes(fn: Any, limit: float) -> tuple[bool, Any]:
    """fn's result (or exception) if it returns within `limit` seconds; (False, None) if not."""
    box: dict[str, Any] = {}

    def run() -> None:
        try:
            box["out"] = fn()
        except BaseException as exc:  # noqa: BLE001 - handed back to the test
            box["out"] = exc

    t = threading.Thread(target=run, daemon=True)
    t.start()
    t.join(limit)
    return not t.is_alive(), box.get("out")


@pytest.mark.slow
def test_a_hung_milvus_neither_stalls_a_search_nor_an_erasure(pg: PgCluster, tmp_path: Path, keyring: Any,
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    """Milvus alive but not answering (its process paused: a stuck node). No request had a
    deadline: every search waited for ever, and an erasure waited holding the store's write
    lock, so no other writer could go on. Now each request fails at its deadline: the search
    answers from the records, the erasure removes the records and reports the vectors pending."""
    import safeface.storage.vectors as vectors_mod

    monkeypatch.setattr(vectors_mod, "CALL_TIMEOUT", 1.0)
    monkeypatch.setattr(vectors_mod, "RETRY_FIRST_S", 30.0)  # the first window outlasts the steps below
    own = start_milvus(tmp_path / "milvus-data")
    try:
        setup = Setup(pg, f"milvus:{own.uri}", tmp_path, keyring)
        x = unit_rows(6, seed=3)
        with setup.open() as s, setup.open() as other:
            rows = fill(s, x)
            os.kill(own.proc.pid, signal.SIGSTOP)
            done, got = _finishes(lambda: s.search(x[1], "access", k=1), 60)
            assert done and [m.row_id for m in got] == [rows[1].row_id], got
            done, got = _finishes(lambda: s.search(x[2], "access", k=1), 60)  # no second wait
            assert done and [m.row_id for m in got] == [rows[2].row_id], got
            # Milvus failed a request moments ago: the erasure leaves its vector removal noted
            # rather than waiting out more deadlines under the write lock.
            asked: list[str] = []
            real_call = s.vectors._call
            monkeypatch.setattr(s.vectors, "_call", lambda what, *a, **kw: asked.append(what) or real_call(what, *a, **kw))
            done, receipt = _finishes(lambda: s.erase_subject("s2"), 60)
            assert done and receipt.vectors == "pending" and asked == [], (receipt, asked)
            assert other.rows_for("s2") == []
            done, receipt = _finishes(lambda: other.erase_subject("s3"), 60)  # the lock was let go
            assert done and receipt.vectors == "pending", receipt
            # An enrolment asks Milvus once (a read of the stamp), before the write lock, and is refused.
            with pytest.raises(IndexUnavailable, match="read the stamp"):
                fill(s, unit_rows(1, seed=78), prefix="late")
            assert other.rows_for("late0") == [] and asked == []
            done, receipt = _finishes(lambda: other.erase_subject("s4"), 60)  # the lock was free meanwhile
            assert done and receipt.vectors == "pending", receipt
            # Milvus back within the 30 s: the next enrolment asks, goes on, and carries out the
            # vector removals the erasures left noted.
            os.kill(own.proc.pid, signal.SIGCONT)
            fill(s, unit_rows(1, seed=79), prefix="back")
            assert len(s.rows_for("back0")) == 1 and s.pending() == {}
            assert setup.milvus().present([rows[i].row_id for i in (2, 3, 4)]) == []
    finally:
        os.kill(own.proc.pid, signal.SIGCONT)
        own.stop()


@pytest.mark.slow
def test_an_index_check_on_a_milvus_that_hangs_part_way_lets_go_of_the_write_lock(
        pg: PgCluster, tmp_path: Path, keyring: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    """`index check` holds the write lock and lists every vector. pymilvus's listing asks Milvus
    for the collection's description with no deadline: a Milvus that hung after the check read
    the stamp kept the check, and every erasure in every process, waiting for ever."""
    import safeface.storage.vectors as vectors_mod

    monkeypatch.setattr(vectors_mod, "CALL_TIMEOUT", 1.0)
    own = start_milvus(tmp_path / "milvus-data")
    try:
        setup = Setup(pg, f"milvus:{own.uri}", tmp_path, keyring)
        with setup.open() as s, setup.open() as other:
            fill(s, unit_rows(4, seed=3))
            real_stamp = s.vectors.stamp

            def stamp_then_hang() -> Any:
                got = real_stamp()
                os.kill(own.proc.pid, signal.SIGSTOP)
                return got

            monkeypatch.setattr(s.vectors, "stamp", stamp_then_hang)
            done, got = _finishes(s.check_index, 60)
            assert done and isinstance(got, IndexUnavailable), got
            done, receipt = _finishes(lambda: other.erase_subject("s2"), 60)
            assert done and receipt.vectors == "pending" and other.rows_for("s2") == [], receipt
    finally:
        os.kill(own.proc.pid, signal.SIGCONT)
        own.stop()


def _refusing_gateway(port: int, code: Any) -> Any:
    """A gRPC endpoint on Milvus's port that refuses every call with `code` (a gateway in front
    of Milvus refusing a rotated token)."""
    from concurrent import futures

    import grpc

    class Refuse(grpc.GenericRpcHandler):
        def service(self, details: Any) -> Any:
            def fail(request: Any, context: Any) -> Any:
                context.abort(code, "refused by the gateway (test)")
            return grpc.unary_unary_rpc_method_handler(fail)

    server = grpc.server(futures.ThreadPoolExecutor(max_workers=2), handlers=[Refuse()])
    server.add_insecure_port(f"127.0.0.1:{port}")
    server.start()
    return server


@pytest.mark.slow
def test_a_gateway_refusing_milvus_calls_is_an_outage_not_a_crash(pg: PgCluster, tmp_path: Path,
                                                                   keyring: Any) -> None:
    """pymilvus passes some gRPC refusals through unwrapped (UNAUTHENTICATED after a token
    rotation, RESOURCE_EXHAUSTED from a gateway shedding load): they escaped the store as raw
    gRPC errors, a search crashed instead of answering from the records, and an erasure left
    the subject's records in place."""
    import grpc

    import safeface.storage.vectors as vectors_mod

    own = start_milvus(tmp_path / "milvus-data")
    gateway = None
    try:
        setup = Setup(pg, f"milvus:{own.uri}", tmp_path, keyring)
        x = unit_rows(4, seed=5)
        with setup.open() as s:
            rows = fill(s, x)
            own.stop()
            gateway = _refusing_gateway(own.port, grpc.StatusCode.UNAUTHENTICATED)
            assert [m.row_id for m in s.search(x[1], "access", k=1)] == [rows[1].row_id]
            # A refused token is not mended by a second's wait: the full window, not the short
            # first one, and the refusal named (a token revoked while the store runs).
            assert s.vectors.window_left(search=True) > vectors_mod.RETRY_S - 5
            assert "refused the credentials" in str(s.vectors.refused_lately())
            assert s.erase_subject("s2").vectors == "pending" and s.rows_for("s2") == []
            with pytest.raises(IndexUnavailable):
                fill(s, unit_rows(1, seed=77), prefix="late")
            assert s.rows_for("late0") == []
    finally:
        if gateway is not None:
            gateway.stop(0)
        own.stop()


class _RebuildFails(MilvusVectors):
    """Milvus going away as a re-key starts rewriting it (the records are committed by then)."""

    def drop(self) -> None:
        raise BackendError("Milvus: unreachable (test)")


class _WritesFail(MilvusVectors):
    """Milvus going away once a rebuild has emptied the collection."""

    def upsert(self, *args: Any, **kw: Any) -> None:
        raise BackendError("Milvus: unreachable (test)")


def test_a_search_while_milvus_lags_the_records_scores_the_lagging_rows_from_the_records(
        setup: Setup, pg: PgCluster, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A re-key commits the records under a new transform, then rewrites Milvus. Until that
    rewrite ends (or, with Milvus down, until the next write), Milvus held the vectors under the
    old transform: a search under the new one met no mate, and a gate turned its subject away.
    So did a search for a row whose vector a crash left unwritten. Now the lagging rows are
    scored from the records."""
    import safeface.storage.server as server_mod

    x = unit_rows(40, seed=7)
    cli_keys = PassphraseKeyring.open(tmp_path / "keys.json", "pw")
    with setup.open() as worker:
        rows = fill(worker, x[:30])
        cli = ServerStore.open(setup.dsn, PG_PASSWORD,
                               lambda: _RebuildFails.connect(setup.vectors, setup.root, setup.collection, DIM),
                               cli_keys, DIM)
        cli_keys.rotate("transform", "seal")
        assert cli.rekey().rows == 30
        cli.close()
        assert worker.pending() == {"rebuild": 1}
        for i in (0, 17, 29):
            top = worker.search(x[i], "access", k=1, threshold=0.9)
            assert [m.row_id for m in top] == [rows[i].row_id], i
        # A row outside the purpose stays out.
        assert worker.search(x[3], "payments", k=3) == []
        # Too many rows to score one by one: refused, naming what ends the wait, not a miss.
        monkeypatch.setattr(server_mod, "SCAN_MAX", 10)
        with pytest.raises(BackendError, match="lags the records") as err:
            worker.search(x[0], "access", k=1)
        assert "pw" not in str(err.value)
        monkeypatch.setattr(server_mod, "SCAN_MAX", 100_000)
        assert worker.check_index(repair=True).repaired and worker.pending() == {}
        assert worker.search(x[5], "access", k=1)[0].row_id == rows[5].row_id

        # A row recorded whose vector a crash left unwritten: found before the next write drains it.
        writer = setup.open()
        writer._hook = _crash_after_the_record
        with pytest.raises(KeyboardInterrupt):
            writer.add_many([Enrollment("late", x[35], ["access"], "t-late", LATER)])
        writer.close()
        assert worker.pending() == {"upsert": 1}
        # A writer of another workspace in another database of the cluster, under the same
        # schema name (so the same lock key), is not this store's writer in flight.
        other = ServerStore.open(pg.new_database(), PG_PASSWORD, lambda: MilvusVectors.connect(
            setup.vectors, setup.root, setup.collection + "_other", DIM), setup.keyring, DIM)
        with other.locked():
            assert worker.search(x[35], "access", k=1, threshold=0.9)[0].pseudonym == worker.pseudonym("late")
        other.close()
        assert worker.search(x[6], "access", k=1)[0].row_id == rows[6].row_id  # Milvus's candidates still count

        # A lagging row that is no mate does not end the search before a better subject Milvus
        # has not proposed yet: "far" (0.3) was returned in place of "near" (0.8).
        p = x[36]
        side = x[37] - np.dot(x[37], p) * p
        side /= np.linalg.norm(side)
        near, far = 0.8 * p + 0.6 * side, 0.3 * p + np.sqrt(1 - 0.09) * side
        worker.add_many([Enrollment("twin", p, ["access"], f"t-twin{i}", LATER) for i in range(8)]
                        + [Enrollment("near", near.astype(np.float32), ["access"], "t-near", LATER)])
        writer = setup.open()
        writer._hook = _crash_after_the_record
        with pytest.raises(KeyboardInterrupt):
            writer.add_many([Enrollment("far", far.astype(np.float32), ["access"], "t-far", LATER)])
        writer.close()
        got = worker.search(p, "access", k=2, threshold=0.25)  # Milvus's first 8 candidates: twin's rows
        assert [m.pseudonym for m in got] == [worker.pseudonym("twin"), worker.pseudonym("near")]
        assert worker.check_index(repair=True).repaired and worker.pending() == {}

        # A bulk enrolment in flight (its writer holds the write lock, its notes are many) sends
        # no search to score the whole store: its rows are not enrolled until its call returns.
        monkeypatch.setattr(server_mod, "SCAN_MAX", 10)
        seen: list[int] = []
        with setup.open() as bulk:
            def search_mid_batch(point: str) -> None:
                if point == "add:recorded":  # 1,500 rows committed and noted, their vectors not yet written
                    seen.append(worker.search(x[7], "access", k=1)[0].row_id)

            bulk._hook = search_mid_batch
            bulk.add_many([Enrollment(f"bulk{i}", v, ["access"], f"t-bulk{i}", LATER)
                           for i, v in enumerate(unit_rows(1500, seed=3))])
        assert seen == [rows[7].row_id]
        monkeypatch.setattr(server_mod, "SCAN_MAX", 100_000)

        # A rebuild that fails once the collection is emptied leaves its note: searches score
        # the records rather than meeting an empty index.
        broken = ServerStore.open(setup.dsn, PG_PASSWORD,
                                  lambda: _WritesFail.connect(setup.vectors, setup.root, setup.collection, DIM),
                                  cli_keys, DIM)
        with pytest.raises(BackendError, match="unreachable"):
            broken.rebuild_index()
        broken.close()
        assert worker.pending() == {"rebuild": 1} and setup.milvus().count() == 0
        assert worker.search(x[8], "access", k=1)[0].row_id == rows[8].row_id


def test_rekey_and_a_moved_expiry_reach_milvus(setup: Setup) -> None:
    x = unit_rows(3)
    with setup.open() as s:
        rows = fill(s, x)
        before = setup.milvus()
        soon = datetime.now(timezone.utc) + timedelta(days=2)
        assert s.touch("s0", new_expiry=soon, purpose="access") == 1
        # An interaction under another purpose moves none of the rows held for "access" only.
        assert s.touch("s1", new_expiry=soon, purpose="other") == 0
        assert s.rows_for("s1")[0].expires_at == LATER
        with pytest.raises(ConfigError, match="purpose"):
            s.touch("s1", new_expiry=soon)
        # The vector's expiry field moved with the sealed record's: filtered inside Milvus.
        q0 = s._require_keys().transform.apply(x[0].astype(np.float64))
        after_soon = int((soon + timedelta(seconds=1)).timestamp() * 1e6)
        assert rows[0].row_id in dict(before.search(q0, "access", 0, 3))
        assert rows[0].row_id not in dict(before.search(q0, "access", after_soon, 3))
        old_t = s._require_keys().transform.apply(x[1].astype(np.float64))
        setup.keyring.rotate("transform", "seal")
        assert s.rekey().rows == 3 and s.pending() == {}
        new_t = s._require_keys().transform.apply(x[1].astype(np.float64))
        # Milvus now holds the templates under the new key only.
        hits = dict(before.search(new_t, "access", 0, 3))
        assert hits[rows[1].row_id] == pytest.approx(1.0, abs=1e-4)
        assert all(abs(sc) < 0.9 for sc in dict(before.search(old_t, "access", 0, 3)).values())
        assert s.search(x[1], "access", k=1)[0].row_id == rows[1].row_id


def test_index_check_finds_and_repairs_missing_orphan_and_stale_vectors(setup: Setup) -> None:
    x = unit_rows(6)
    with setup.open() as s:
        ids = [r.row_id for r in fill(s, x)]
        assert s.check_index().consistent
        protect = s._require_keys().transform.apply
        direct = setup.milvus()
        exp = int(LATER.timestamp() * 1e6)
        direct.delete([ids[0]])  # a row whose vector is gone
        direct.upsert([999_999], protect(x[0].astype(np.float64))[None], [["access"]], [exp])  # written behind the store
        direct.upsert([ids[2]], protect(x[5].astype(np.float64))[None], [["access"]], [exp])  # another template
        direct.upsert([ids[3]], protect(x[3].astype(np.float64))[None], [["access", "payments"]], [exp])  # purposes
        direct.upsert([ids[1]], protect(x[1].astype(np.float64))[None], [["access"]], [exp + 10**9])  # expiry

        def crash(point: str) -> None:
            if point == "erase:recorded":
                raise KeyboardInterrupt("killed between the two deletes")

        s._hook = crash
        with pytest.raises(KeyboardInterrupt):
            s.erase_subject("s4")  # the record is gone, its vector's delete still pending
        s._hook = None
        found = s.check_index()
        assert found.missing == (ids[0],) and found.orphans == (ids[4], 999_999)
        assert found.stale == (ids[1], ids[2], ids[3]) and found.pending == 1 and not found.consistent
        assert found.rows == 5 and found.vectors == 6
        fixed = s.check_index(repair=True)
        assert fixed.repaired and s.pending() == {}
        assert s.check_index().consistent
        assert direct.present([999_999, ids[4]]) == [] and direct.count() == 5
        assert s.search(x[2], "access", k=1)[0].row_id == ids[2]
        direct.close()


def test_milvus_restored_from_an_older_copy_or_emptied_is_searched_from_the_records_then_rebuilt(
        setup: Setup) -> None:
    """Milvus data restored from a backup taken before the last enrolments, or a collection
    emptied or made afresh behind the store, left no note in the records: each later enrolee
    read as a stranger at the gate until someone ran `index check`."""
    x = unit_rows(12, seed=11)
    direct = setup.milvus()
    with setup.open() as s:
        early = fill(s, x[:6], prefix="a")
        ids = direct.ids()
        backup = direct.fetch(ids)  # the operator's copy, stamp and all
        stamp = direct.stamp()
        assert stamp is not None and sorted(backup) == sorted(r.row_id for r in early)
        late = fill(s, x[6:], prefix="b")
        s.erase_subject("a0")
        # The copy comes back: the later six are gone from Milvus, the erased a0 is there again.
        direct.drop()
        direct.ensure()
        direct.upsert(list(backup), np.stack([v for v, _, _ in backup.values()]),
                      [p for _, p, _ in backup.values()], [e for _, _, e in backup.values()])
        direct.set_stamp(*stamp)
        assert s.pending() == {}  # nothing in the records says so
        for i in range(6, 12):
            assert [m.row_id for m in s.search(x[i], "access", k=1, threshold=0.9)] == [late[i - 6].row_id], i
        assert s.search(x[0], "access", k=1, threshold=0.9) == []  # erased stays erased
        assert s.check_index().stamp_differs
        # The next write rebuilds the index and counts the loss; searches go through Milvus again.
        s.touch("b1")
        fill(s, x[:1], prefix="c")
        assert direct.stamp() is not None and s._index_state(s._book()) == "ok"
        found = s.check_index()
        assert found.consistent and found.losses == 1 and found.vectors == 12
        assert [m.row_id for m in s.search(x[7], "access", k=1)] == [late[1].row_id]
    # Emptied behind the store: the search scores the records; the next open rebuilds.
    direct.drop()
    direct.ensure()
    with setup.open() as s:
        assert s.check_index().consistent and s.check_index().losses == 2
        assert [m.row_id for m in s.search(x[9], "access", k=1)] == [late[3].row_id]
        direct.drop()
        assert [m.row_id for m in s.search(x[10], "access", k=1, threshold=0.9)] == [late[4].row_id]
    direct.close()


def test_a_rebuild_stopped_part_way_is_finished_and_not_counted_as_a_lost_index(setup: Setup) -> None:
    """`index rebuild` empties the collection under its own note; Milvus failing part way must
    leave a rebuild to finish, not an index "restored from another time"."""
    x = unit_rows(4, seed=3)
    with setup.open() as s:
        fill(s, x[:3])
        broken = ServerStore.open(setup.dsn, PG_PASSWORD,
                                  lambda: _WritesFail.connect(setup.vectors, setup.root, setup.collection, DIM),
                                  setup.keyring, DIM)
        with pytest.raises(BackendError, match="unreachable"):
            broken.rebuild_index()
        broken.close()
        assert s.pending() == {"rebuild": 1}
        during = s.check_index()
        fill(s, x[3:], prefix="n")  # the next write finishes the rebuild
        found = s.check_index()
        assert found.consistent and found.vectors == 4 and found.losses == 0 and not during.stamp_differs


def test_a_search_that_index_rebuild_overtakes_answers_from_the_records(setup: Setup) -> None:
    """A search read the notes (none), then another process's `index rebuild` noted itself and
    emptied the collection before the search asked Milvus: the mate must still be found."""
    import threading

    x = unit_rows(6, seed=5)
    emptied, go = threading.Event(), threading.Event()

    class _Slow(MilvusVectors):
        def upsert(self, *a: Any, **kw: Any) -> None:
            emptied.set()  # dropped and made afresh: empty until this write
            go.wait(30)
            super().upsert(*a, **kw)

    with setup.open() as reader:
        rows = fill(reader, x)
        op = ServerStore.open(setup.dsn, PG_PASSWORD,
                              lambda: _Slow.connect(setup.vectors, setup.root, setup.collection, DIM), setup.keyring, DIM)
        real = reader.vectors.search
        started: list[threading.Thread] = []

        def search(*a: Any, **kw: Any) -> Any:
            if not started:  # the reader has read the notes; the rebuild starts now
                started.append(threading.Thread(target=op.rebuild_index))
                started[0].start()
                assert emptied.wait(30)
            return real(*a, **kw)

        reader.vectors.search = search  # type: ignore[method-assign]
        try:
            got = reader.search(x[2], "access", k=1, threshold=0.9)
        finally:
            go.set()
            if started:
                started[0].join(60)
            op.close()
        assert [m.row_id for m in got] == [rows[2].row_id]


def test_a_stamp_half_recorded_is_never_given_twice_so_a_restore_is_still_seen(setup: Setup) -> None:
    """The records' half of a stamp failing (a statement timeout) must not let the next write
    reuse the number Milvus already holds: two Milvus states with one stamp would hide a restore
    of the earlier one, and the person enrolled after it would be missed."""
    from safeface.storage.server import STAMP

    x = unit_rows(8, seed=9)
    direct = setup.milvus()
    with setup.open() as s:
        fill(s, x[:4])
        real_upsert, calls = s.vectors.upsert, {"n": 0}

        def flaky(*a: Any, **kw: Any) -> None:
            calls["n"] += 1
            if calls["n"] == 1:
                raise BackendError("Milvus: unreachable (test)")
            real_upsert(*a, **kw)

        s.vectors.upsert = flaky  # type: ignore[method-assign]
        s.add_many([Enrollment("b", x[4], ["access"], "t-b", LATER)])  # recorded; its vector noted
        assert s.pending() == {"upsert": 1}
        real_sql, failed = s._sql, []

        def sql(query: str, args: Any = ()) -> Any:
            if not failed and "INSERT INTO {ns}.meta" in query and tuple(args[:1]) == (STAMP,):
                failed.append(query)
                raise BackendError("PostgreSQL: canceling statement due to statement timeout (test)")
            return real_sql(query, args)

        s._sql = sql  # type: ignore[method-assign]
        backup: dict[str, Any] = {}

        def snapshot(point: str) -> None:  # the operator's copy, just before "c"'s vector is written
            if point == "add:recorded":
                backup.update(vectors=direct.fetch(direct.ids()), stamp=direct.stamp())

        s._hook = snapshot
        c = s.add_many([Enrollment("c", x[5], ["access"], "t-c", LATER)])
        s._hook = None
        assert failed
        saved = backup["vectors"]
        direct.drop()
        direct.ensure()
        direct.upsert(list(saved), np.stack([v for v, _, _ in saved.values()]), [p for _, p, _ in saved.values()],
                      [e for _, _, e in saved.values()])
        direct.set_stamp(*backup["stamp"])
        assert [m.row_id for m in s.search(x[5], "access", k=1, threshold=0.9)] == [c[0].row_id]
        assert s.check_index().stamp_differs
    direct.close()


def test_a_returned_enrolment_whose_vector_failed_is_found_whoever_holds_the_write_lock(setup: Setup) -> None:
    """Only the rows of the enrolment still writing are left out of a search: a returned one
    whose vector Milvus refused is scored from the records while another process holds the
    lock (an `index check`, a purge, another batch)."""
    x = unit_rows(6, seed=13)
    with setup.open() as s:
        fill(s, x[:4])
        real_upsert = s.vectors.upsert

        def down(*a: Any, **kw: Any) -> None:
            raise BackendError("Milvus: unreachable (test)")

        s.vectors.upsert = down  # type: ignore[method-assign]
        late = s.add_many([Enrollment("late", x[4], ["access"], "t-late", LATER)])  # returned: enrolled
        s.vectors.upsert = real_upsert  # type: ignore[method-assign]
        with setup.open() as other:
            other.vectors.delete([late[0].row_id])  # its open drained the note: as if Milvus had refused it
            other._note_now([late[0].row_id], "upsert")
            with other.locked():
                assert [m.row_id for m in s.search(x[4], "access", k=1, threshold=0.9)] == [late[0].row_id]

            # An enrolment still writing (in this thread, stopped after its commit) stays out.
            def search_now(point: str) -> None:
                if point == "add:recorded":
                    got = s.search(x[5], "access", k=1, threshold=0.9)
                    seen.append([m.row_id for m in got])
                    seen.append([m.row_id for m in s.search(x[4], "access", k=1, threshold=0.9)])

            seen: list[list[int]] = []
            other._hook = search_now
            batch = other.add_many([Enrollment("now", x[5], ["access"], "t-now", LATER)])
            other._hook = None
            assert seen == [[], [late[0].row_id]]
            assert [m.row_id for m in s.search(x[5], "access", k=1, threshold=0.9)] == [batch[0].row_id]


def test_records_restored_from_before_a_rekey_rebuild_the_index_they_no_longer_match(setup: Setup) -> None:
    """The records restored from a backup older than a re-key: Milvus still holds the templates
    under the new transform, its count ahead of the records'. The store follows the records and
    rebuilds the index, so the gate finds its people."""
    import psycopg

    x = unit_rows(30, seed=17)
    with setup.open() as s:
        rows = fill(s, x)
        with psycopg.connect(setup.dsn, password=PG_PASSWORD, autocommit=True) as c:  # the nightly backup
            for t in ("rows", "meta", "pending"):
                c.execute(f"CREATE TABLE public.bk_{t} AS SELECT * FROM safeface.{t}")
        setup.keyring.rotate("transform", "seal")
        assert s.rekey().rows == 30 and s.pending() == {}
        with psycopg.connect(setup.dsn, password=PG_PASSWORD, autocommit=True) as c:  # the restore
            for t in ("rows", "meta", "pending"):
                c.execute(f"DELETE FROM safeface.{t}")
                c.execute(f"INSERT INTO safeface.{t} SELECT * FROM public.bk_{t}")
        # A process still open finds the index is not these records' before its next write.
        assert s.check_index().stamp_differs
        assert [m.row_id for m in s.search(x[3], "access", k=1, threshold=0.9)] == [rows[3].row_id]
    with setup.open() as s:  # the service restarts on the restored records: the open rebuilds
        assert s.key_versions == {"transform": 1, "seal": 1}
        found = s.check_index()
        assert found.consistent and found.losses == 1
        assert all([m.row_id for m in s.search(x[i], "access", k=1, threshold=0.9)] == [rows[i].row_id]
                   for i in range(0, 30, 3))


def test_a_second_workspace_given_the_same_collection_is_refused_and_empties_nothing(setup: Setup,
                                                                                       pg: PgCluster) -> None:
    """Two workspaces pointed at one Milvus with the default collection name: the second one's
    open took the first's stamp for records restored and rebuilt, emptying the first's index."""
    x = unit_rows(50, seed=21)
    with setup.open() as a:
        rows = fill(a, x)
        with pytest.raises(ConfigError, match="another store's index"):
            ServerStore.open(pg.new_database(), PG_PASSWORD, setup.milvus, setup.keyring, DIM)
        assert [m.row_id for m in a.search(x[7], "access", k=1, threshold=0.9)] == [rows[7].row_id]
        assert setup.milvus().count() == 50


def _backup(dsn: str, tag: str) -> None:
    import psycopg

    with psycopg.connect(dsn, password=PG_PASSWORD, autocommit=True) as c:
        for t in ("rows", "meta", "pending"):
            c.execute(f"CREATE TABLE public.{tag}_{t} AS SELECT * FROM safeface.{t}")


def _restore(dsn: str, tag: str) -> None:
    import psycopg

    with psycopg.connect(dsn, password=PG_PASSWORD, autocommit=True) as c:
        for t in ("rows", "meta", "pending"):
            c.execute(f"DELETE FROM safeface.{t}")
            c.execute(f"INSERT INTO safeface.{t} SELECT * FROM public.{tag}_{t}")


def test_a_rebuild_starts_a_new_count_so_restores_across_it_are_seen(setup: Setup) -> None:
    """A rebuild after a restore of the records counted on from the restored number, one Milvus
    had already held: a second restore (a later backup), or Milvus's own copy from before the
    first, then matched the count, and the people enrolled in between were missed."""
    x = unit_rows(40, seed=31)
    direct = setup.milvus()
    with setup.open() as s:
        a = fill(s, x[:10], prefix="a")
        _backup(setup.dsn, "nightly")
        b = fill(s, x[10:20], prefix="b")
        _backup(setup.dsn, "hourly")
        fill(s, x[20:25], prefix="c")
        saved, stamp = direct.fetch(direct.ids()), direct.stamp()
    _restore(setup.dsn, "nightly")
    with setup.open() as s:  # Milvus ahead of the records: rebuilt
        assert s.check_index().losses == 1
    _restore(setup.dsn, "hourly")  # the operator takes the later backup instead
    with setup.open() as s:
        assert [m.row_id for m in s.search(x[3], "access", k=1, threshold=0.9)] == [a[3].row_id]
        assert [m.row_id for m in s.search(x[13], "access", k=1, threshold=0.9)] == [b[3].row_id]
        d = fill(s, x[25:], prefix="d")
    # Milvus's own copy from before the first restore comes back.
    direct.drop()
    direct.ensure()
    direct.upsert(list(saved), np.stack([v for v, _, _ in saved.values()]), [p for _, p, _ in saved.values()],
                  [e for _, _, e in saved.values()])
    direct.set_stamp(*stamp)
    with setup.open() as s:
        assert [m.row_id for m in s.search(x[26], "access", k=1, threshold=0.9)] == [d[1].row_id]
    direct.close()


def test_a_mark_left_by_a_failed_landing_hides_nothing_once_the_lock_is_taken_again(setup: Setup) -> None:
    """An enrolment whose vector write failed returned, and the statement removing its in-flight
    mark failed too: that mark names a live lock connection, and hid the person from other
    processes whenever this handle held the lock again."""
    x = unit_rows(6, seed=41)
    with setup.open() as s, setup.open() as reader:
        fill(s, x[:4])
        real_upsert, real_sql = s.vectors.upsert, s._sql

        def down(*a: Any, **kw: Any) -> None:
            raise BackendError("Milvus: unreachable (test)")

        def sql(query: str, args: Any = ()) -> Any:
            if query.lstrip().startswith("DELETE") and "enrolment_in_flight" in query:
                raise BackendError("PostgreSQL: canceling statement due to statement timeout (test)")
            return real_sql(query, args)

        s.vectors.upsert = down  # type: ignore[method-assign]
        s._sql = sql  # type: ignore[method-assign]
        late = s.add_many([Enrollment("late", x[4], ["access"], "t-late", LATER)])  # returned: enrolled
        s.vectors.upsert = real_upsert  # type: ignore[method-assign]
        s._sql = real_sql  # type: ignore[method-assign]
        with s.locked():
            got = reader.search(x[4], "access", k=1, threshold=0.9)
        assert [m.row_id for m in got] == [late[0].row_id]


def test_a_bulk_enrolment_that_ends_mid_search_sends_it_to_no_scan(setup: Setup,
                                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    """The search read the notes and the mark of a bulk enrolment, which then finished and let
    the lock go before the search asked who held it: its rows looked left behind, past
    LAGGING_MAX, and the search scanned (past SCAN_MAX, refused). Limits scaled down."""
    import threading

    import safeface.storage.server as server_mod

    x = unit_rows(20, seed=51)
    with setup.open() as s, setup.open() as bulk:
        rows = fill(s, x[:4])
        monkeypatch.setattr(server_mod, "LAGGING_MAX", 5)
        monkeypatch.setattr(server_mod, "SCAN_MAX", 10)
        recorded, read = threading.Event(), threading.Event()

        def hook(point: str) -> None:
            if point == "add:recorded":
                recorded.set()
                assert read.wait(30)

        bulk._hook = hook
        t = threading.Thread(target=lambda: bulk.add_many(
            [Enrollment(f"bulk{i}", v, ["access"], f"t-bulk{i}", LATER) for i, v in enumerate(x[4:14])]))
        t.start()
        assert recorded.wait(30)
        real_stamp = s.vectors.stamp

        def stamp() -> Any:  # the search has read the notes and the mark: the bulk ends now
            read.set()
            t.join(60)
            return real_stamp()

        s.vectors.stamp = stamp  # type: ignore[method-assign]
        try:
            got = s.search(x[1], "access", k=1, threshold=0.9)
        finally:
            read.set()
            t.join(60)
            s.vectors.stamp = real_stamp  # type: ignore[method-assign]
        assert [m.row_id for m in got] == [rows[1].row_id]


def test_a_row_milvus_cannot_hold_is_refused_before_the_records(setup: Setup) -> None:
    """Purposes past Milvus's 65,535-byte field were committed to the records, and every later
    drain (each write, each open) raised on that row's vector."""
    x = unit_rows(3, seed=61)
    with setup.open() as s:
        fill(s, x[:1])
        with pytest.raises(ConfigError, match="purposes take"):
            s.add_many([Enrollment("long", x[1], ["p" * 40_000], "t-long", LATER)])
        assert len(s) == 1 and s.pending() == {}
    with setup.open() as s:
        fill(s, x[2:], prefix="n")
        assert len(s) == 2


def test_a_repair_that_rebuilt_a_lost_index_reports_it_consistent(setup: Setup) -> None:
    x = unit_rows(4, seed=71)
    direct = setup.milvus()
    with setup.open() as s:
        fill(s, x)
        direct.drop()
        direct.ensure()
        before = s.check_index()
        fixed = s.check_index(repair=True)
        assert before.stamp_differs and not before.consistent
        assert fixed.consistent and fixed.repaired, fixed.summary()
    direct.close()


def test_purpose_filter_is_exact_even_for_wildcards_and_separators(setup: Setup) -> None:
    # Purposes reach Milvus as hex inside a LIKE pattern: a purpose spelled with LIKE's wildcards
    # or the separator must match itself only, never a neighbour (a hostile app naming its purpose
    # "%" to reach every row, or "a|b" to reach rows of "a" and "b").
    v = setup.milvus()
    v.ensure()
    x = unit_rows(5)
    names = [["%"], ["_"], ["a|b"], ["a", "b"], ["ab"]]
    v.upsert(list(range(5)), x, names, [2**62] * 5)
    for i, ps in enumerate(names):
        for p in ps:
            assert {r for r, _ in v.search(x[i], p, 0, 5)} == {j for j, qs in enumerate(names) if p in qs}
    assert v.search(x[0], "a%", 0, 5) == [] and v.search(x[0], "|", 0, 5) == []
    v.close()


def test_a_collection_with_the_old_array_purposes_is_refused(setup: Setup) -> None:
    from pymilvus import DataType, MilvusClient

    client = MilvusClient(uri=setup.vectors[len("milvus:"):])
    schema = MilvusClient.create_schema(auto_id=False, enable_dynamic_field=False)
    schema.add_field("id", DataType.INT64, is_primary=True)
    schema.add_field("vector", DataType.FLOAT_VECTOR, dim=DIM)
    schema.add_field("purposes", DataType.ARRAY, element_type=DataType.VARCHAR, max_capacity=8, max_length=64)
    schema.add_field("expires_us", DataType.INT64)
    client.create_collection(setup.collection, schema=schema)
    with pytest.raises(ConfigError, match="not made by safeface"):
        MilvusVectors.connect(setup.vectors, setup.root, setup.collection, DIM)
    with pytest.raises(ConfigError, match="not made by safeface"):
        setup.open()  # its connection waits for the first request: the open's own
    assert not _tables(setup.dsn)


def test_stored_purposes_read_back_exactly_and_an_edited_value_matches_no_record() -> None:
    from safeface.storage.vectors import purposes_of

    for ps in (["access"], ["b", "a|b", "%", "é"], ["a", "a"]):
        assert purposes_of(purpose_set(ps)) == sorted(set(ps))
    for edited in ("access", "|zz|", "|61", "61|", ""):  # what an operator might type into the field
        assert purposes_of(edited) == [edited]


def test_ivf_probes_more_cells_as_the_filter_allows_fewer_rows() -> None:
    # A filter allowing a fraction f leaves an nprobe-cell IVF search about f times the allowed
    # candidates: the probe widens by 1/f, and past half the cells it takes them all (exact over
    # the allowed rows). The other kinds keep their parameters.
    from safeface.storage.vectors import INDEX_KINDS, SEARCH_PARAMS, search_params

    nlist, base = INDEX_KINDS["IVF_FLAT"]["nlist"], SEARCH_PARAMS["IVF_FLAT"]["nprobe"]
    assert search_params("IVF_FLAT") == search_params("IVF_FLAT", 1.0) == {"nprobe": base}
    assert search_params("IVF_FLAT", 0.5) == {"nprobe": 2 * base}
    assert search_params("IVF_FLAT", 0.25) == {"nprobe": 4 * base}
    for f in (0.1, 0.01, 0.0, -1.0):
        assert search_params("IVF_FLAT", f) == {"nprobe": nlist}
    assert search_params("IVF_FLAT", 7.0) == {"nprobe": base}
    assert search_params("HNSW", 0.1) == SEARCH_PARAMS["HNSW"] and search_params("FLAT", 0.1) == {}


def test_the_store_estimates_each_purposes_share_of_the_rows_and_refreshes_it(setup: Setup) -> None:
    x = unit_rows(50)
    with setup.open() as s:
        assert s.allowed_fraction("access") == 1.0  # an empty store: nothing to narrow
        fill(s, x[:5], ("access", "payments"), prefix="p")
        fill(s, x[5:], ("access",))
        assert s.allowed_fraction("access") == pytest.approx(1.0)
        assert s.allowed_fraction("payments") == pytest.approx(0.1)
        assert s.allowed_fraction("boarding") == 0.0  # no row: the widest probe, never a narrower one
        fill(s, unit_rows(50, seed=3), ("payments",), prefix="q")
        assert s.allowed_fraction("payments") == pytest.approx(0.1)  # cached until it is due
        s._fractions_at -= 3600  # an hour later
        assert s.allowed_fraction("payments") == pytest.approx(55 / 100)
        assert s.allowed_fraction("access") == pytest.approx(50 / 100)
        top = s.search(x[2], "payments", k=1)
        assert top and top[0].pseudonym == s.pseudonym("p2")


def test_a_store_made_before_erasure_notes_gets_them_with_the_rows_grants(setup: Setup,
                                                                          caplog: pytest.LogCaptureFixture) -> None:
    """A store made before erasures were noted (ServerStore._bury) has no `erased` table. Its
    owner's first open makes it; a data-only role that may use the rows may use it too: without
    that grant, each of the role's searches and erasures failed on the new table. Such a role
    may not vacuum the table after an erasure (ServerStore._vacuum), and is told so."""
    x = unit_rows(3, 9)
    with setup.open() as s:
        fill(s, x[:2])
    svc = data_only_role(setup, "DROP TABLE safeface.erased")
    with pytest.raises(ConfigError, match="owner"):
        setup.open(dsn=svc)
    setup.open().close()  # the owner
    with setup.open(dsn=svc) as s, caplog.at_level("WARNING", logger="safeface.storage"):
        assert s.erase_subject("s0").count == 1
        assert s.search(x[1], "access", k=1)[0].pseudonym == s.pseudonym("s1")
    assert "does not own the rows table" in caplog.text


def test_an_entry_naming_a_cluster_is_not_settled_by_a_server_that_hides_its_own(setup: Setup) -> None:
    """Attack on settling: the store restored onto a server where its role may not read the
    cluster's system identifier (a managed service, or EXECUTE revoked). An entry naming the
    cluster it ran on was then settled by txid_status here, which answers for another
    transaction of the same id: a row that never committed read as committed. Result: an
    entry naming a cluster that cannot be compared is unknown; the ceiling decides."""
    import psycopg

    with setup.open():
        pass  # the schema, made by its owner
    svc = data_only_role(setup, "SELECT 1")
    with psycopg.connect(setup.dsn, password=PG_PASSWORD, autocommit=True) as c:
        c.execute("REVOKE EXECUTE ON FUNCTION pg_catalog.pg_control_system() FROM PUBLIC")
        committed = int(c.execute("SELECT txid_current()").fetchone()[0])
    try:
        with setup.open(dsn=svc) as s:
            assert s._cluster() is None
            assert s._committed(f"{committed} in cluster 12345") is False
            assert s._committed(str(committed)) is True  # an entry naming no cluster: asked, as before
    finally:
        with psycopg.connect(setup.dsn, password=PG_PASSWORD, autocommit=True) as c:
            c.execute("GRANT EXECUTE ON FUNCTION pg_catalog.pg_control_system() TO PUBLIC")


def _near(v: np.ndarray, by: float, seed: int) -> np.ndarray:
    """A unit row `by` away from `v` in a random direction."""
    w = v + by * unit_rows(1, seed=seed)[0]
    return (w / np.linalg.norm(w)).astype(np.float32)


def test_more_rows_left_out_than_milvus_ranks_do_not_hide_a_genuine_match(setup: Setup,
                                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    """Rows a search leaves out (put back after an erasure: the audit log records them removed)
    are dropped from Milvus's proposals, and Milvus ranks at most FETCH_MAX (16,384) rows: more
    put-back rows than that, all closer to the probe than the genuine row, made `search` answer
    no one. They are left out inside Milvus's ranking now; past the ids its filter takes, the
    records answer. The cap is made 8 here, with 12 such rows."""
    import safeface.storage.server as server

    monkeypatch.setattr(server, "FETCH_MAX", 8)

    x = unit_rows(6, seed=41)
    probe = x[0]
    with setup.open() as s:
        fill(s, x[1:])
        genuine = s.add_many([Enrollment("carol", _near(probe, 0.5, 50), ("access",), "tok-carol", LATER)])[0].row_id
        back = {r.row_id for r in s.add_many([Enrollment(f"back{i}", _near(probe, 0.05, 60 + i), ("access",),
                                                         f"tok-back{i}", LATER) for i in range(12)])}
        assert s.search(probe, "access", k=1)[0].row_id in back
        found = s.search(probe, "access", k=1, exclude=back)
        assert [m.row_id for m in found] == [genuine]
        assert [m.row_id for m in s.search(probe, "access", k=3, exclude=back)][0] == genuine
        # Milvus leaves them out itself, so a store too large to search without it still answers;
        # past the ids a Milvus filter takes (LEAVE_OUT_MAX), it leaves out that many and the rest
        # are dropped from its ranking (with 4,097 of them, every such search scored the records,
        # or was refused past SCAN_MAX); past what the ranking then holds, it refuses, rather than
        # answer no one.
        monkeypatch.setattr(server, "SCAN_MAX", 10)
        assert [m.row_id for m in s.search(probe, "access", k=1, exclude=back)] == [genuine]
        monkeypatch.setattr(server, "LEAVE_OUT_MAX", 8)
        assert [m.row_id for m in s.search(probe, "access", k=1, exclude=back)] == [genuine]
        monkeypatch.setattr(server, "LEAVE_OUT_MAX", 4)
        with pytest.raises(BackendError, match="take no part in this search"):
            s.search(probe, "access", k=1, exclude=back)


def test_more_erased_rows_put_back_than_milvus_ranks_do_not_hide_a_genuine_match(
        setup: Setup, monkeypatch: pytest.MonkeyPatch) -> None:
    """The rows and the Milvus data restored from copies taken before an erasure, the store's
    own notes of that erasure kept: the store drops each put-back row it opens (_not_erased),
    but only rows the caller left out sent a search past Milvus's ranking cap to the records,
    so more such rows than the cap, all nearer the probe, made `search` answer no one. The cap
    is made 4 here, with 6 such rows."""
    import psycopg

    import safeface.storage.server as server

    monkeypatch.setattr(server, "FETCH_MAX", 4)

    x = unit_rows(6, seed=41)
    probe = x[0]
    direct = setup.milvus()
    with setup.open() as s:
        fill(s, x[1:])
        genuine = s.add_many([Enrollment("carol", _near(probe, 0.5, 50), ("access",), "tok-carol", LATER)])[0].row_id
        back = sorted(r.row_id for r in s.add_many([Enrollment(f"back{i}", _near(probe, 0.05, 60 + i), ("access",),
                                                                f"tok-back{i}", LATER) for i in range(6)]))
        copy = direct.fetch(back)
        with psycopg.connect(setup.dsn, password=PG_PASSWORD, autocommit=True) as c:
            c.execute("CREATE TABLE public.bk_rows AS SELECT * FROM safeface.rows WHERE row_id = ANY(%s)", (back,))
        for i in range(6):
            s.erase_subject(f"back{i}")
        with psycopg.connect(setup.dsn, password=PG_PASSWORD, autocommit=True) as c:
            c.execute("INSERT INTO safeface.rows SELECT * FROM public.bk_rows")
        direct.upsert(list(copy), np.stack([v for v, _, _ in copy.values()]),
                      [p for _, p, _ in copy.values()], [e for _, _, e in copy.values()])
        direct.flush()
        assert [m.row_id for m in s.search(probe, "access", k=1)] == [genuine]
        assert [m.row_id for m in s.search(probe, "access", k=3)][0] == genuine
    direct.close()


def test_an_erased_row_put_back_does_not_send_every_masked_search_to_the_records(
        setup: Setup, monkeypatch: pytest.MonkeyPatch) -> None:
    """A masked probe's path is scored from visible-region templates, which Milvus does not
    rank, so such a search asks Milvus for as many as it ranks whenever fewer than k subjects
    pass: with one erased row put back (rows and Milvus data from an older copy) among those
    proposals, every such search went to the records, and past SCAN_MAX was refused (a gate
    refusing everyone in a mask). It keeps its best effort, as without such rows. Limits
    scaled down: FETCH_MAX 8, SCAN_MAX 10, 21 rows."""
    import psycopg

    import safeface.storage.server as server

    monkeypatch.setattr(server, "FETCH_MAX", 8)
    x = unit_rows(21, seed=43)
    v = unit_rows(21, seed=44)
    direct = setup.milvus()
    with setup.open() as s:
        rows = s.add_many([Enrollment(f"s{i}", x[i], ("access",), f"tok-s{i}", LATER, visible=v[i]) for i in range(21)])
        back = [rows[0].row_id]
        copy = direct.fetch(back)
        with psycopg.connect(setup.dsn, password=PG_PASSWORD, autocommit=True) as c:
            c.execute("CREATE TABLE public.bk_rows AS SELECT * FROM safeface.rows WHERE row_id = ANY(%s)", (back,))
        s.erase_subject("s0")
        with psycopg.connect(setup.dsn, password=PG_PASSWORD, autocommit=True) as c:
            c.execute("INSERT INTO safeface.rows SELECT * FROM public.bk_rows")
        direct.upsert(list(copy), np.stack([w for w, _, _ in copy.values()]),
                      [p for _, p, _ in copy.values()], [e for _, _, e in copy.values()])
        direct.flush()
        monkeypatch.setattr(server, "SCAN_MAX", 10)
        stranger = x[0]  # the put-back row is Milvus's first proposal
        assert s.search(stranger, "access", k=1, threshold=0.99, path="visible") == []
        assert [m.row_id for m in s.search(x[3], "access", k=1, path="visible")] != []
    direct.close()


def test_rows_the_caller_leaves_out_send_no_masked_search_to_the_records(
        setup: Setup, monkeypatch: pytest.MonkeyPatch) -> None:
    """A masked probe's path is scored from visible-region templates, which Milvus does not rank,
    so it asks Milvus for as many as it ranks whenever fewer than k subjects pass. A row the
    caller left out (the SDK leaves out every row the log records removed) that Milvus proposed
    sent each such search to the records, and past SCAN_MAX refused it: a gate refusing everyone
    in a mask once one erased row was put back. Such rows are left out inside Milvus's ranking
    now, as the caller asked, and take no place among its proposals: no record is read beyond
    the proposals. Limits scaled down: FETCH_MAX 8, SCAN_MAX 10, 21 rows."""
    import safeface.storage.server as server

    monkeypatch.setattr(server, "FETCH_MAX", 8)
    x = unit_rows(21, seed=43)
    v = unit_rows(21, seed=44)
    v[1] = x[0]  # row 1's visible-region template is the probe itself
    x[1] = _near(x[0], 0.05, 70)  # and Milvus ranks it second, behind row 0
    with setup.open() as s:
        rows = [r.row_id for r in s.add_many([Enrollment(f"s{i}", x[i], ("access",), f"tok-s{i}", LATER, visible=v[i])
                                              for i in range(21)])]
        monkeypatch.setattr(server, "SCAN_MAX", 10)
        scans: list[bool] = []
        scan = s._scan
        monkeypatch.setattr(s, "_scan", lambda *a, **kw: scans.append(True) or scan(*a, **kw))
        probe = x[0]  # Milvus proposes row 0 first, then row 1
        # Nothing passes once the caller leaves out rows 0 and 1: the best effort answers no one.
        assert s.search(probe, "access", k=1, threshold=0.99, path="visible", exclude={rows[0], rows[1]}) == []
        found = s.search(probe, "access", k=3, path="visible", exclude={rows[0]})
        assert found[0].row_id == rows[1] and rows[0] not in {m.row_id for m in found}
        # As many as Milvus's filter is given (LEAVE_OUT_MAX), most of them ids no row has.
        many = {rows[0], *range(10**6, 10**6 + server.LEAVE_OUT_MAX - 1)}
        assert s.search(probe, "access", k=1, path="visible", exclude=many)[0].row_id == rows[1]
        assert scans == []
