"""A PostgreSQL store whose connections the server ended (a restart, a failover, an operator's
`pg_terminate_backend`): the next call opens new ones and works, the call whose transaction lost
its connection fails whole, and no writer goes on under a write lock it lost."""

from __future__ import annotations

import logging
import sys
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator, Optional

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
from policy_support import consent, images, make_workspace, open_sf  # noqa: E402
from server_support import PG_PASSWORD, PgCluster, server_modules  # noqa: E402
from safeface.errors import BackendError, ConfigError, IntegrityError, StoreConnectionLost  # noqa: E402


def _sql(dsn: str, query: str, args: tuple[Any, ...] = ()) -> list[Any]:
    import psycopg

    with psycopg.connect(dsn, password=PG_PASSWORD, autocommit=True) as c:
        cur = c.execute(query, args)
        return cur.fetchall() if cur.description else []


def _end(dsn: str, pids: Optional[list[int]] = None) -> int:
    """End these backends (every other one on the database when None), waiting until they are
    gone, as an operator's `pg_terminate_backend` does; how many were ended."""
    if pids is None:
        pids = [int(p) for p, in _sql(dsn, "SELECT pid FROM pg_stat_activity WHERE datname = current_database() "
                                           "AND pid <> pg_backend_pid()")]
    for pid in pids:
        _sql(dsn, "SELECT pg_terminate_backend(%s, 60000)", (pid,))
    return len(pids)


def _server_ws(pg: PgCluster, root: Path, **kw: Any) -> tuple[Any, str]:
    server_modules()
    ws = make_workspace(root / "ws", **kw)
    dsn = pg.new_database()
    with open_sf(ws) as sf:
        sf.migrate_storage({"records": dsn, "vectors": "milvus-lite:vectors.db"})
    return ws, dsn


@contextmanager
def _alice_enrolled(pg: PgCluster, tmp_path: Path) -> Iterator[tuple[Any, str, Any, Path]]:
    """A server workspace with alice enrolled, open: (workspace, DSN, handle, the photos)."""
    ws, dsn = _server_ws(pg, tmp_path)
    img = images()
    with open_sf(ws) as sf:
        sf.enroll(img / "obama.jpg", "alice", "demo", consent(ws, "alice"))
        yield ws, dsn, sf, img


def _rows(dsn: str) -> list[int]:
    return [int(r) for r, in _sql(dsn, "SELECT row_id FROM safeface.rows ORDER BY row_id")]


def _clean(ws: Any) -> None:
    with open_sf(ws) as sf:
        assert sf.verify_store().ok, sf.verify_store().problems
        assert sf.audit_verify().entries > 0


def test_a_handle_works_again_after_every_connection_it_holds_was_ended(pg: PgCluster, tmp_path: Path) -> None:
    """Every connection of an open handle ended (store, write lock, audit log, policy state, API
    keys): it refused every later call until opened again. Now the next enrolment, identify and
    erasure work, each connection opened again once, and the store checks clean."""
    with _alice_enrolled(pg, tmp_path) as (ws, dsn, sf, img):
        assert _end(dsn) >= 5
        sf.enroll(img / "biden.jpg", "joe", "demo", consent(ws, "joe"))
        assert len(sf.identify(img / "obama2.jpg", "demo", consent(ws, "bob"))) == 1
        _end(dsn)
        assert sf.erase("joe").templates_removed == 1
        store = sf._gallery
        assert store._conn.reopened == 2 and store._lock_conn.reopened == 2
        assert sf._audit._t._conn.reopened == 2
    assert len(_rows(dsn)) == 1
    _clean(ws)


def test_a_connection_past_descriptor_1023_is_still_found_ended(pg: PgCluster, tmp_path: Path) -> None:
    """A busy service holds more than 1,024 descriptors, so its store's sockets are numbered past
    1023, which `select` refuses (ValueError at every call): the check of an ended connection
    polls instead, and the handle still reconnects."""
    import os
    import resource

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and hard < 1400:
        pytest.skip(f"this process may open only {hard} descriptors")
    resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, 1400) if hard == resource.RLIM_INFINITY
                                                else min(hard, max(soft, 1400)), hard))
    ws, dsn = _server_ws(pg, tmp_path)
    img = images()
    filler = [os.open(os.devnull, os.O_RDONLY) for _ in range(1100)]
    try:
        with open_sf(ws) as sf:
            assert sf._gallery._conn.fileno() > 1023
            sf.enroll(img / "obama.jpg", "alice", "demo", consent(ws, "alice"))
            _end(dsn)
            sf.enroll(img / "biden.jpg", "joe", "demo", consent(ws, "joe"))
            assert sf._gallery._conn.reopened == 1
    finally:
        for fd in filler:
            os.close(fd)
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
    assert len(_rows(dsn)) == 2


def test_a_server_not_yet_back_is_a_connection_lost_to_retry(pg: PgCluster, tmp_path: Path) -> None:
    """The connections ended and the server not taking new ones yet (a restart or failover under
    way): the call is StoreConnectionLost (a 503 to retry in the service), not a BackendError (a
    500), and once the server takes connections again the next call works."""
    ws, dsn = _server_ws(pg, tmp_path)
    img = images()
    db = dsn.rsplit("/", 1)[1].split("?")[0]
    with open_sf(ws) as sf:
        sf.enroll(img / "obama.jpg", "alice", "demo", consent(ws, "alice"))
        _sql(pg.dsn(), f'ALTER DATABASE "{db}" ALLOW_CONNECTIONS false')
        try:
            pids = [int(p) for p, in _sql(pg.dsn(), "SELECT pid FROM pg_stat_activity WHERE datname = %s", (db,))]
            assert _end(pg.dsn(), pids) >= 5
            with pytest.raises(StoreConnectionLost, match="Try again: the next call connects anew"):
                sf.enroll(img / "biden.jpg", "joe", "demo", consent(ws, "joe"))
        finally:
            _sql(pg.dsn(), f'ALTER DATABASE "{db}" ALLOW_CONNECTIONS true')
        sf.enroll(img / "biden.jpg", "joe", "demo", consent(ws, "joe"))
    assert len(_rows(dsn)) == 2
    _clean(ws)


def test_an_enrolment_whose_connection_ends_before_its_commit_stores_nothing(pg: PgCluster,
                                                                            tmp_path: Path) -> None:
    """The store's connection ended after the enrolment's "enroll allowed" entry committed and
    before the store's commit: the call fails (BackendError), no row is committed, the entry is
    settled as uncommitted at once (on a new connection), and the next enrolment works."""
    ws, dsn = _server_ws(pg, tmp_path)
    img = images()
    with open_sf(ws) as sf:
        store = sf._gallery
        real = store.add_many

        def add_many(items: Any, *, decide: Any = None, before_commit: Any = None) -> Any:
            def ending(stored: Any) -> None:
                before_commit(stored)
                _end(dsn, [store._conn.info.backend_pid])

            return real(items, decide=decide, before_commit=ending)

        store.add_many = add_many
        with pytest.raises(StoreConnectionLost, match="rolled back"):
            sf.enroll(img / "obama.jpg", "alice", "demo", consent(ws, "alice"))
        store.add_many = real
        assert _rows(dsn) == []
        assert "uncommitted" in [op for op, in _sql(dsn, "SELECT operation FROM safeface.audit_entries")]
        sf.enroll(img / "biden.jpg", "joe", "demo", consent(ws, "joe"))
    assert len(_rows(dsn)) == 1
    _clean(ws)


def test_an_erasure_whose_connection_ends_before_its_commit_erases_nothing(pg: PgCluster, tmp_path: Path) -> None:
    """The store's connection ended inside an erasure's delete transaction: the erasure fails
    and no row is gone without its entry; the erasure tried again removes it with a receipt."""
    with _alice_enrolled(pg, tmp_path) as (ws, dsn, sf, img):
        store = sf._gallery
        real = store._bury

        def bury(*a: Any, **kw: Any) -> None:
            real(*a, **kw)
            _end(dsn, [store._conn.info.backend_pid])

        store._bury = bury
        with pytest.raises(StoreConnectionLost):
            sf.erase("alice")
        store._bury = real
        assert len(_rows(dsn)) == 1
        assert sf.erase("alice").templates_removed == 1
    assert _rows(dsn) == []
    _clean(ws)


def test_an_erasure_whose_connection_ends_after_its_commit_completes(pg: PgCluster, tmp_path: Path) -> None:
    """The store's connection ended just after an erasure's commit, before its check of what it
    kept and its entry: the call failed with the row deleted and no receipt. Now the rest runs
    on a new connection: the receipt, the entry, the vector removed."""
    with _alice_enrolled(pg, tmp_path) as (ws, dsn, sf, img):
        store = sf._gallery

        def hook(point: str) -> None:
            if point == "erase:committed":
                _end(dsn, [store._conn.info.backend_pid])

        store._hook = hook
        receipt = sf.erase("alice")
        store._hook = None
        assert receipt.templates_removed == 1
        assert sf.identify(img / "obama2.jpg", "demo", consent(ws, "bob")) == []
    assert _rows(dsn) == []
    _clean(ws)


def test_a_write_lock_lost_with_its_connection_lets_no_write_through_the_holder(pg: PgCluster,
                                                                               tmp_path: Path) -> None:
    """Handle A holds the store's write lock between transactions when its connections are ended:
    the lock goes with them, and B takes it and enrols. A, still inside its hold, is refused at its
    next write (its connection is opened again, but the lock is not taken again under it), stores
    nothing, and once it lets go its next enrolment takes the lock anew and works."""
    ws, dsn = _server_ws(pg, tmp_path)
    img = images()
    with open_sf(ws) as a, open_sf(ws) as b:
        a.enroll(img / "obama.jpg", "alice", "demo", consent(ws, "alice"))
        store = a._gallery
        with store.locked():
            _end(dsn, [store._lock_conn.info.backend_pid, store._conn.info.backend_pid])
            b.enroll(img / "biden.jpg", "joe", "demo", consent(ws, "joe"))  # the lock was free
            with pytest.raises(BackendError, match="write lock"):
                a.enroll(img / "obama2.jpg", "bob", "demo", consent(ws, "bob"))
            with pytest.raises(BackendError, match="write lock"):
                store.skip_ids(1)
        assert len(_rows(dsn)) == 2
        a.enroll(img / "obama2.jpg", "bob", "demo", consent(ws, "bob"))
    assert len(_rows(dsn)) == 3
    _clean(ws)


def test_a_holder_whose_store_connection_is_opened_again_under_a_lost_lock_is_refused(pg: PgCluster,
                                                                                     tmp_path: Path) -> None:
    """A writer holding the lock whose connections all ended (a failover) would go on, on a new
    store connection, with the steps it takes outside a record transaction (vector counts, notes)
    while another process holds the lock: the new connection is refused to it, naming the lock,
    until it lets go."""
    with _alice_enrolled(pg, tmp_path) as (ws, dsn, sf, img):
        store = sf._gallery
        with store.locked():
            _end(dsn)
            with pytest.raises(BackendError, match="write lock"):
                store.pending()
        assert store.pending() == {}
        sf.enroll(img / "biden.jpg", "joe", "demo", consent(ws, "joe"))
    _clean(ws)


def test_a_search_whose_connection_ends_midway_answers(pg: PgCluster, tmp_path: Path) -> None:
    """The store's connection ended between Milvus's candidates and the reading of their records:
    those reads run on a new connection (each its own statement, outside any transaction) and the
    identification answers as before; the next calls work."""
    with _alice_enrolled(pg, tmp_path) as (ws, dsn, sf, img):
        store = sf._gallery
        real = store.vectors.search

        def search(*a: Any, **kw: Any) -> Any:
            out = real(*a, **kw)
            _end(dsn, [store._conn.info.backend_pid])
            return out

        store.vectors.search = search
        found = sf.identify(img / "obama2.jpg", "demo", consent(ws, "bob"))
        store.vectors.search = real
        assert len(found) == 1
        sf.enroll(img / "biden.jpg", "joe", "demo", consent(ws, "joe"))
    _clean(ws)


def test_a_reconnection_runs_the_opens_checks(pg: PgCluster, tmp_path: Path, caplog: Any) -> None:
    """What the open refuses is refused on a connection opened again: a trigger added on the rows
    while the handle was open (a failover's server holding one) refuses the next call, naming it;
    the cluster's identifier is read again (a handle that had noted another cluster says so)."""
    with _alice_enrolled(pg, tmp_path) as (ws, dsn, sf, img):
        store = sf._gallery
        real_id = store._cluster()
        assert real_id is not None
        store._cluster_id = real_id + 1  # as if opened on another cluster
        _sql(dsn, "CREATE FUNCTION public.keep() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN RETURN NULL; END $$")
        _sql(dsn, "CREATE TRIGGER keep BEFORE DELETE ON safeface.rows FOR EACH ROW EXECUTE FUNCTION public.keep()")
        _end(dsn)
        with pytest.raises(IntegrityError, match="trigger rows.keep"):
            sf.identify(img / "obama2.jpg", "demo", consent(ws, "bob"))
        with pytest.raises(IntegrityError, match="trigger rows.keep"):  # every call, until it is gone
            sf.erase("alice")
        _sql(dsn, "DROP TRIGGER keep ON safeface.rows")
        with caplog.at_level(logging.WARNING, logger="safeface.storage"):
            assert len(sf.identify(img / "obama2.jpg", "demo", consent(ws, "bob"))) == 1
        assert store._cluster_id == real_id
        assert any("another PostgreSQL cluster" in r.getMessage() for r in caplog.records)
        assert sf.erase("alice").templates_removed == 1
    _clean(ws)


def test_a_failover_to_a_server_without_the_store_is_refused_not_made_afresh(pg: PgCluster,
                                                                            tmp_path: Path) -> None:
    """The name the deployment connects to now reaches a database that holds no store (a failover
    to the wrong server): the open handle refuses every call with ConfigError, where an open would
    have made an empty store; nothing is created there."""
    import psycopg

    ws, dsn = _server_ws(pg, tmp_path)
    img = images()
    name = dsn.rsplit("/", 1)[1]
    empty = pg.new_database().rsplit("/", 1)[1]
    with open_sf(ws) as sf:
        sf.enroll(img / "obama.jpg", "alice", "demo", consent(ws, "alice"))
        _end(dsn)
        with psycopg.connect(pg.dsn(), password=PG_PASSWORD, autocommit=True) as c:
            c.execute(f"ALTER DATABASE {name} RENAME TO {name}_kept")
            c.execute(f"ALTER DATABASE {empty} RENAME TO {name}")
        try:
            with pytest.raises(ConfigError, match="holds no such store|does not exist"):
                sf.enroll(img / "biden.jpg", "joe", "demo", consent(ws, "joe"))
            assert _sql(dsn, "SELECT to_regclass('safeface.meta')") == [(None,)]
        finally:
            _end(dsn)
            with psycopg.connect(pg.dsn(), password=PG_PASSWORD, autocommit=True) as c:
                c.execute(f"ALTER DATABASE {name} RENAME TO {empty}")
                c.execute(f"ALTER DATABASE {name}_kept RENAME TO {name}")
        sf.enroll(img / "biden.jpg", "joe", "demo", consent(ws, "joe"))
    _clean(ws)


def test_a_failover_to_an_older_copy_is_refused_as_an_open_refuses_it(pg: PgCluster, tmp_path: Path) -> None:
    """The name the deployment connects to now reaches a copy of the database taken before the
    last enrolment (a replica promoted from an older backup): the open handle, on its new
    connections, refuses as an open of the workspace does (IntegrityError: the audit log is
    behind the keyring's anchor), and stores nothing there."""
    import psycopg

    ws, dsn = _server_ws(pg, tmp_path)
    img = images()
    name = dsn.rsplit("/", 1)[1]
    admin = psycopg.connect(pg.dsn(), password=PG_PASSWORD, autocommit=True)
    try:
        with open_sf(ws) as sf:
            sf.enroll(img / "obama.jpg", "alice", "demo", consent(ws, "alice"))
            _end(dsn)
            admin.execute(f"CREATE DATABASE {name}_old TEMPLATE {name}")
            sf.enroll(img / "biden.jpg", "joe", "demo", consent(ws, "joe"))
            _end(dsn)
            admin.execute(f"ALTER DATABASE {name} RENAME TO {name}_new")
            admin.execute(f"ALTER DATABASE {name}_old RENAME TO {name}")
            with pytest.raises(IntegrityError, match="audit log was rolled back or cut"):
                sf.enroll(img / "obama2.jpg", "bob", "demo", consent(ws, "bob"))
            assert len(_rows(dsn)) == 1
        with pytest.raises(IntegrityError, match="audit log"):
            open_sf(ws)
    finally:
        admin.close()


def test_an_idle_session_timeout_the_role_sets_ends_neither_the_write_lock_nor_any_connection(
        pg: PgCluster, tmp_path: Path) -> None:
    """The app's role may set its own idle_session_timeout (ALTER ROLE ... SET; here the database's,
    as only this test's database has it): the server ended the write lock's connection while its
    holder wrote on the other, and the lock went to any other writer mid-erasure or mid-rekey; and
    every other connection idle that long was opened again at the next call. safeface's sessions
    set it off, as they set their search_path and lock_timeout: the lock is still held after a hold
    longer than the timeout, and no connection is opened again."""
    ws, dsn = _server_ws(pg, tmp_path)
    name = dsn.rsplit("/", 1)[1]
    img = images()
    _sql(pg.dsn(), f"ALTER DATABASE {name} SET idle_session_timeout = '250ms'")
    with open_sf(ws) as sf:
        sf.enroll(img / "obama.jpg", "alice", "demo", consent(ws, "alice"))
        store = sf._gallery
        with store.locked():
            time.sleep(0.6)
            assert store._lock_holder() == store._lock_pid
        time.sleep(0.6)
        assert len(sf.identify(img / "obama2.jpg", "demo", consent(ws, "bob"))) == 1
        sf.enroll(img / "biden.jpg", "joe", "demo", consent(ws, "joe"))
        assert (store._conn.reopened, store._lock_conn.reopened, sf._audit._t._conn.reopened) == (0, 0, 0)
    _clean(ws)


def test_an_erasure_whose_connection_is_cut_after_its_commit_says_it_was_committed(pg: PgCluster,
                                                                                  tmp_path: Path) -> None:
    """The store's connection cut (nothing left to read on it, as a network cut leaves it) just
    after an erasure's commit, before its check of what it kept: the call failed with
    StoreConnectionLost saying "the write was rolled back" of a committed delete. It says the delete
    was committed and that erasing again gives the receipt, which the retry does."""
    with _alice_enrolled(pg, tmp_path) as (ws, dsn, sf, img):
        store = sf._gallery
        conn = store._conn

        def cut() -> bool:  # the socket gives no sign once: the next statement fails on it
            del conn.ended
            return False

        def hook(point: str) -> None:
            if point == "erase:committed":
                _end(dsn, [conn.info.backend_pid])
                conn.ended = cut

        store._hook = hook
        with pytest.raises(StoreConnectionLost, match="was committed") as caught:
            sf.erase("alice")
        store._hook = None
        assert "rolled back" not in str(caught.value)
        assert _rows(dsn) == []
        receipt = sf.erase("alice")
        assert receipt.rows == (1,)
    _clean(ws)
