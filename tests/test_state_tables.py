"""The audit and policy-state tables: a write that is interrupted leaves nothing behind, a namespace
is checked before it reaches SQL, and a migration never lands on top of existing tables."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

from safeface.errors import BackendError, ConfigError  # noqa: E402
from safeface.storage.sqltables import PgTables, SqliteTables, create_and_fill  # noqa: E402

_SCHEMA = "CREATE TABLE IF NOT EXISTS facts (name TEXT PRIMARY KEY, value TEXT NOT NULL)"


@pytest.mark.parametrize("stop", [KeyboardInterrupt, SystemExit])
def test_an_interrupted_write_keeps_nothing_and_the_next_write_works(tmp_path: Path, stop: type) -> None:
    """A write interrupted by Ctrl-C or an exit is rolled back, and the file takes the next write."""
    path = tmp_path / "state.db"
    t = SqliteTables(path, "policy state", _SCHEMA)
    with pytest.raises(stop):
        with t.write():
            t.run("INSERT INTO facts VALUES (?, ?)", ("half", "written"))
            raise stop()
    with t.write():
        t.run("INSERT INTO facts VALUES (?, ?)", ("next", "ok"))
    t.close()
    other = SqliteTables(path, "policy state", _SCHEMA)
    assert other.q("SELECT name FROM facts ORDER BY name") == [("next",)]
    other.close()


@pytest.mark.parametrize("ns", ["safeface; DROP TABLE x", "Public", "a-b", "x" * 42])
def test_a_namespace_that_is_not_a_plain_sql_name_is_refused_before_connecting(ns: str) -> None:
    """A storage namespace that is not a lower-case SQL name is refused as configuration, before
    any connection."""
    with pytest.raises(ConfigError, match="storage.namespace"):
        PgTables.open("postgresql://nobody@127.0.0.1:1/none", None, ns, "audit", "audit log")


def _filled(pg: Any, tmp_path: Path) -> tuple[str, int]:
    """A new database holding an audit log of one entry in namespace "sf", and how many rows it
    holds; a second fill of the same namespace is refused, the first left as it was."""
    from server_support import PG_PASSWORD

    from safeface.workspace.audit import AuditLog

    dsn = pg.new_database()
    seed = AuditLog(tmp_path / "one.db", b"k" * 32)
    seed.append("init", "allowed", note="seed")
    with seed.frozen() as (rows, head):
        create_and_fill(dsn, PG_PASSWORD, "sf", rows, head, {})
        with pytest.raises(ConfigError, match="already exist"):
            create_and_fill(dsn, PG_PASSWORD, "sf", rows, head, {})
    seed.close()
    return dsn, len(rows)


def test_a_lost_database_connection_is_a_backend_error_not_tampering(pg: Any, tmp_path: Path) -> None:
    """A connection the server drops under a statement is reported as the database failing
    (StoreConnectionLost, a BackendError), not as altered tables; one dropped between
    statements is opened again at the next, which answers."""
    import threading
    import time

    import psycopg
    from server_support import PG_PASSWORD

    dsn, _ = _filled(pg, tmp_path)
    t = PgTables.open(dsn, PG_PASSWORD, "sf", "audit", "audit log")
    assert t.q("SELECT count(*) FROM {t}entries") == [(1,)]
    failed: list[BaseException] = []

    def sleeper() -> None:
        try:
            t.q("SELECT pg_catalog.pg_sleep(30)")
        except BaseException as exc:  # noqa: BLE001 - what the statement met, checked below
            failed.append(exc)

    running = threading.Thread(target=sleeper)
    running.start()
    with psycopg.connect(dsn, password=PG_PASSWORD, autocommit=True) as admin:
        deadline = time.monotonic() + 30
        while not admin.execute("SELECT 1 FROM pg_stat_activity WHERE datname = current_database() "
                                "AND query LIKE '%%pg_sleep(30)%%' AND pid <> pg_backend_pid()").fetchall():
            assert time.monotonic() < deadline, "the statement never started"
            time.sleep(0.05)
        admin.execute("SELECT pg_terminate_backend(pid, 60000) FROM pg_stat_activity "
                      "WHERE datname = current_database() AND pid <> pg_backend_pid()")
    running.join(60)
    assert len(failed) == 1 and isinstance(failed[0], BackendError), failed
    assert "nothing was written" in str(failed[0])
    assert t.q("SELECT count(*) FROM {t}entries") == [(1,)]  # the next statement reconnects
    t.close()


def test_a_migration_into_a_namespace_that_holds_workspace_tables_is_refused(pg: Any, tmp_path: Path) -> None:
    """Moving the audit log into a namespace that already holds one is refused by name, and the
    first one stays."""
    from server_support import PG_PASSWORD

    dsn, count = _filled(pg, tmp_path)
    t = PgTables.open(dsn, PG_PASSWORD, "sf", "audit", "audit log")
    assert t.q("SELECT count(*) FROM {t}entries") == [(count,)]
    t.close()
