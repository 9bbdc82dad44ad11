"""Attacks on a PostgreSQL store, as two processes racing or as someone holding the app's
database role but no passphrase: an append while the chain is verified, a process killed between
the audit's commit and the store's while another enrols next, a row a database trigger keeps
through an erasure."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
from child_process import child_env  # noqa: E402
from policy_support import consent, images, make_workspace, open_sf  # noqa: E402
from safeface.errors import IntegrityError, PolicyViolation  # noqa: E402
from server_support import PG_PASSWORD, MilvusServer, PgCluster, server_modules, while_held  # noqa: E402


def _sql(dsn: str, query: str) -> list[Any]:
    import psycopg

    with psycopg.connect(dsn, password=PG_PASSWORD, autocommit=True) as c:
        cur = c.execute(query)
        return cur.fetchall() if cur.description else []


def _server_ws(pg: PgCluster, root: Path, vectors: str = "milvus-lite:vectors.db") -> tuple[Any, str]:
    server_modules()
    ws = make_workspace(root / "ws")
    dsn = pg.new_database()
    with open_sf(ws) as sf:
        sf.migrate_storage({"records": dsn, "vectors": vectors})
    return ws, dsn


def _kill_once_flagged(child: "subprocess.Popen[bytes]", flag: Path) -> None:
    """SIGKILL the child as soon as it marks the window it waits in (within 240 s)."""
    try:
        deadline = time.monotonic() + 240
        while not flag.exists():
            assert child.poll() is None and time.monotonic() < deadline, "the child never reached the window"
            time.sleep(0.05)
    finally:
        os.kill(child.pid, signal.SIGKILL)
        child.wait(30)


def test_chain_verify_is_not_a_false_alarm_when_an_entry_is_appended_during_it(pg: PgCluster,
                                                                                tmp_path: Path) -> None:
    """The chain is checked up to the signed head read first: another process's append while the
    entries are read is not a truncation (PostgreSQL: each statement its own snapshot)."""
    ws, _ = _server_ws(pg, tmp_path)
    with open_sf(ws) as writer, open_sf(ws) as auditor:
        t = auditor._audit._t
        original_q = t.q
        fired: list[bool] = []

        def q(sql: str, args: Any = ()) -> Any:
            out = original_q(sql, args)
            if "{t}entries" in sql and "ORDER BY seq LIMIT" in sql and not fired:
                fired.append(True)
                writer.erase("nobody")  # another process's honest call appends entries now
            return out

        t.q = q
        assert auditor.audit_verify().entries > 0 and fired


CHILD = r"""
import os, sys, time
sys.path.insert(0, sys.argv[1])
from policy_support import open_sf
from safeface.storage.server import ServerStore
from safeface.workspace.paths import WorkspacePaths

original = ServerStore.add_many
flag = sys.argv[5]

def add_many(self, items, *, decide=None, before_commit=None):
    def then_hang(rows):
        before_commit(rows)          # the "enroll allowed" entry is committed in the audit tables
        open(flag, "w").close()      # the store's transaction is still open: the parent kills us now
        time.sleep(600)
    return original(self, items, decide=decide, before_commit=then_hang)

ServerStore.add_many = add_many
sf = open_sf(WorkspacePaths(sys.argv[2]))
sf.enroll(sys.argv[3], "bob", "demo", sys.argv[4])
"""


def test_a_kill_mid_enrolment_is_settled_even_when_another_process_enrols_next(pg: PgCluster, milvus: MilvusServer,
                                                                                 tmp_path: Path) -> None:
    """Process A is killed (SIGKILL) between the audit's commit and the store's. Process B, open
    since before the kill, enrols next: before its rows raise the store's committed ceiling past
    A's id, it records A's row as never stored ("uncommitted"), under the write lock, so the row
    is not taken for one deleted behind the guard, now or after a fresh open."""
    ws, _ = _server_ws(pg, tmp_path, f"milvus:{milvus.uri}")
    img = images()
    with open_sf(ws) as b:  # a long-running process, open before the crash
        b.enroll(img / "obama.jpg", "alice", "demo", consent(ws, "alice"))
        flag = tmp_path / "recorded"
        child = subprocess.Popen([sys.executable, "-c", CHILD, str(Path(__file__).resolve().parent), str(ws.root),
                                  str(img / "biden.jpg"), consent(ws, "bob"), str(flag)],
                                 env=child_env(), cwd=tmp_path)
        _kill_once_flagged(child, flag)
        b.enroll(img / "obama3.jpg", "carol", "demo", consent(ws, "carol"))  # honest, after the crash
        assert sorted(r.row_id for r in b.records()) == [1, 3]  # row 2 was never stored
        assert b.audit_verify().entries > 0
        assert any(e.operation == "uncommitted" and "rows=2" in (e.note or "") for e in b.audit_entries())
    with open_sf(ws) as again:
        assert again.audit_verify().entries > 0


AFTER_COMMIT_CHILD = r"""
import sys, time
sys.path.insert(0, sys.argv[1])
from policy_support import open_sf
from safeface.storage.server import ServerStore
from safeface.workspace.paths import WorkspacePaths

original = ServerStore.add_many

def add_many(self, *a, **k):
    got = original(self, *a, **k)   # the store's transaction is committed
    open(sys.argv[5], "w").close()  # its commit mark is not written: the parent kills us now
    time.sleep(600)

ServerStore.add_many = add_many
open_sf(WorkspacePaths(sys.argv[2])).enroll(sys.argv[3], "bob", "demo", sys.argv[4])
"""


@pytest.mark.slow  # a child process that loads the pipeline: about 30 s
def test_a_row_deleted_with_the_ceiling_set_back_after_a_kill_before_its_mark_is_not_called_never_stored(
        pg: PgCluster, milvus: MilvusServer, tmp_path: Path) -> None:
    """An enrolment is killed (SIGKILL) after the store's commit, before its commit mark. Someone
    with the app's role then deletes the row and sets the committed ceiling back: the next open
    settled the row as never committed (an "uncommitted" entry), and its deletion behind the
    guard went unnoticed. The enrolment entry names the store's transaction, whose outcome
    PostgreSQL keeps where no role can set it back: committed, the row is stored and missing."""
    server_modules()
    ws, dsn = make_workspace(tmp_path / "ws"), pg.new_database()
    with open_sf(ws) as sf:  # a collection of its own on the session's Milvus
        sf.migrate_storage({"records": dsn, "vectors": f"milvus:{milvus.uri}", "collection": "after_commit_kill"})
    img = images()
    with open_sf(ws) as sf:
        sf.enroll(img / "obama.jpg", "alice", "demo", consent(ws, "alice"))
        bob = consent(ws, "bob")
    flag = tmp_path / "committed"
    child = subprocess.Popen([sys.executable, "-c", AFTER_COMMIT_CHILD, str(Path(__file__).resolve().parent),
                              str(ws.root), str(img / "biden.jpg"), bob, str(flag)], env=child_env(), cwd=tmp_path)
    _kill_once_flagged(child, flag)
    _sql(dsn, "DELETE FROM safeface.rows WHERE row_id = 2")
    _sql(dsn, "UPDATE safeface.meta SET v = '1' WHERE k = 'committed_ceiling'")
    with open_sf(ws) as sf:
        assert not any(e.operation == "uncommitted" for e in sf.audit_entries())
        assert any("row 2 " in p for p in sf.verify_store().problems)


def test_a_row_kept_through_an_erasure_by_a_database_trigger_fails_the_erasure(pg: PgCluster, tmp_path: Path) -> None:
    """Someone with the app's PostgreSQL role (no passphrase) adds a BEFORE DELETE trigger that
    returns NULL: the erasure deleted nothing, its receipt said 0 templates removed, and the row
    stayed searchable, which only a later store check named. Now the erasure refuses what
    safeface did not make on its tables, and checks its delete last inside its transaction (and
    once committed): it fails and is recorded as failed; the open refuses it too. The store
    check still names a row kept through an erasure that was recorded as done (an older
    release's)."""
    ws, dsn = _server_ws(pg, tmp_path)
    img = images()
    with open_sf(ws) as sf:
        sf.enroll(img / "obama.jpg", "alice", "demo", consent(ws, "alice"))
        _sql(dsn, "CREATE FUNCTION safeface.keep_rows() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN RETURN NULL; "
                  "END $$")
        _sql(dsn, "CREATE TRIGGER keep_rows BEFORE DELETE ON safeface.rows FOR EACH ROW "
                  "EXECUTE FUNCTION safeface.keep_rows()")  # added while the workspace is open
        with pytest.raises(IntegrityError, match="holds what safeface did not make on its tables .'trigger "
                                                 "rows.keep_rows'"):
            sf.erase("alice")
        assert [r.row_id for r in sf.records() if r.pseudonym == sf.pseudonym("alice")] == [1]
        last = sf.audit_entries()[-1]
        assert (last.operation, last.decision, last.note) == ("erase", "failed", "IntegrityError")
    with pytest.raises(IntegrityError, match="did not make on its tables .'trigger rows.keep_rows'"):
        open_sf(ws)
    _sql(dsn, "DROP TRIGGER keep_rows ON safeface.rows")
    _sql(dsn, "CREATE RULE keep_rows AS ON DELETE TO safeface.rows DO INSTEAD NOTHING")
    with pytest.raises(IntegrityError, match="did not make on its tables .'rule rows.keep_rows'"):
        open_sf(ws)
    _sql(dsn, "DROP RULE keep_rows ON safeface.rows")
    with open_sf(ws) as sf:
        assert sf.erase("alice").templates_removed == 1 and sf.audit_verify().entries > 0


def test_row_ids_erased_before_a_migration_are_never_handed_out_again(pg: PgCluster, tmp_path: Path) -> None:
    """The highest row is erased, then the workspace moves to PostgreSQL: the server's row ids
    start above every id the local store ever used, so no new row takes an id the log names as
    removed, and the audit stays whole."""
    server_modules()
    ws = make_workspace(tmp_path / "ws")
    img = images()
    with open_sf(ws) as sf:
        sf.enroll(img / "obama.jpg", "alice", "demo", consent(ws, "alice"))
        sf.enroll(img / "biden.jpg", "bob", "demo", consent(ws, "bob"))
        sf.erase("bob")  # row 2, the highest, goes
        sf.migrate_storage({"records": pg.new_database(), "vectors": "milvus-lite:vectors.db"})
    with open_sf(ws) as sf:
        got = sf.enroll(img / "obama2.jpg", "carol", "demo", consent(ws, "carol"))
        assert got.row_id > 2
        assert sf.audit_verify().entries > 0


_ROW_COLUMNS = ("row_id, pseudonym, purposes, token_id, provenance, expires_us, created_at, last_interaction, "
                "transform_version, seal_version, sealed, look, look_small")


def _app_role_ws(pg: PgCluster, root: Path) -> tuple[Any, str]:
    """A workspace whose records an ordinary role owns (not a superuser, which row-level security
    would not bind), as a deployment runs it; the workspace and that role's DSN."""
    import uuid

    server_modules()
    name = "t_" + uuid.uuid4().hex[:12]
    _sql(pg.dsn(), "DO $$ BEGIN IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'app') THEN "
                   f"CREATE ROLE app LOGIN PASSWORD '{PG_PASSWORD}'; END IF; END $$")
    _sql(pg.dsn(), f"CREATE DATABASE {name} OWNER app")
    ws = make_workspace(root / "ws")
    dsn = pg.dsn(name, user="app")
    with open_sf(ws) as sf:
        sf.migrate_storage({"records": dsn, "vectors": "milvus-lite:vectors.db"})
    return ws, dsn


@pytest.mark.parametrize("attack", ["cascade", "row security", "publication"])
def test_what_could_keep_or_copy_rows_through_an_erasure_is_refused(pg: PgCluster, tmp_path: Path,
                                                                    attack: str) -> None:
    """A review's attacks with the app's own role, none a trigger or rule on safeface's tables:
    - a table in another schema tied to safeface.rows by a foreign key with ON DELETE CASCADE
      (whose triggers PostgreSQL marks internal), with a deferred trigger of its own that puts
      the row back at commit, after the erasure's check: the receipt said 1 removed, and a fresh
      open still matched the subject;
    - row-level security that hides rows inside transactions only (the erasure's delete and
      check) and shows them to single statements: a receipt for 0 removed, the row kept;
    - a publication for logical replication that leaves deletes out: every sealed row and no
      erasure goes to its subscribers.
    Each is refused at open now, and at the erasure when it is added while the store is open."""
    ws, dsn = _app_role_ws(pg, tmp_path)
    img = images()
    with open_sf(ws) as sf:
        sf.enroll(img / "obama.jpg", "alice", "demo", consent(ws, "alice"))
        if attack == "cascade":
            _sql(dsn, "CREATE SCHEMA keep")
            _sql(dsn, "CREATE TABLE keep.copy AS SELECT * FROM safeface.rows WITH NO DATA")
            _sql(dsn, "ALTER TABLE keep.copy ADD FOREIGN KEY (row_id) REFERENCES safeface.rows (row_id) "
                      "ON DELETE CASCADE")
            _sql(dsn, "INSERT INTO keep.copy SELECT * FROM safeface.rows")
            _sql(dsn, "CREATE FUNCTION keep.put_back() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN "
                      f"INSERT INTO safeface.rows ({_ROW_COLUMNS}) SELECT (OLD).row_id, (OLD).pseudonym, "
                      "(OLD).purposes, (OLD).token_id, (OLD).provenance, (OLD).expires_us, (OLD).created_at, "
                      "(OLD).last_interaction, (OLD).transform_version, (OLD).seal_version, (OLD).sealed, (OLD).look, "
                      "(OLD).look_small; RETURN NULL; END $$")
            _sql(dsn, "CREATE CONSTRAINT TRIGGER put_back AFTER DELETE ON keep.copy DEFERRABLE INITIALLY DEFERRED "
                      "FOR EACH ROW EXECUTE FUNCTION keep.put_back()")
            named = "foreign key copy."
        elif attack == "row security":
            _sql(dsn, "ALTER TABLE safeface.rows ENABLE ROW LEVEL SECURITY")
            _sql(dsn, "ALTER TABLE safeface.rows FORCE ROW LEVEL SECURITY")
            _sql(dsn, "CREATE POLICY seen ON safeface.rows FOR SELECT USING "
                      "(statement_timestamp() = transaction_timestamp())")
            for cmd in ("INSERT", "UPDATE", "DELETE"):
                check = "WITH CHECK (true)" if cmd == "INSERT" else "USING (true)"
                _sql(dsn, f"CREATE POLICY any_{cmd.lower()} ON safeface.rows FOR {cmd} {check}")
            named = "policy rows."
        else:
            _sql(dsn, "CREATE PUBLICATION keep FOR TABLE safeface.rows WITH (publish = 'insert, update')")
            named = "publication keep"
        with pytest.raises(IntegrityError, match=f"holds what safeface did not make on its tables .*'{named}"):
            sf.erase("alice")
        last = sf.audit_entries()[-1]
        assert (last.operation, last.decision, last.note) == ("erase", "failed", "IntegrityError")
    with pytest.raises(IntegrityError, match=f"'{named}"):
        open_sf(ws)
    assert _sql(dsn, "SELECT row_id FROM safeface.rows") == [(1,)]  # nothing was erased, and nothing claims so


@pytest.mark.parametrize("attack", ["operator", "view", "catalog"])
def test_the_roles_own_names_cannot_blind_an_erasure(pg: PgCluster, tmp_path: Path, attack: str) -> None:
    """A second review, with the app's own role (owner of its database and tables):
    - the database's search_path set to a schema of the role's ahead of pg_catalog, holding an
      "=" on text that is false for one pseudonym: the erasure's delete and its checks used it,
      deleted nothing, found nothing kept, and a receipt was issued with the row still matched;
    - safeface.rows renamed and a view put in its place that hides rows from the erasure's
      statements alone (a view's own rule is not in pg_rules): the same;
    - an empty pg_publication_tables of the role's ahead of the catalog: the publication that
      leaves deletes out was no longer seen.
    Every connection now resolves names in the catalog only, and anything in the store's schema
    that is no plain table, index or sequence is refused."""
    import uuid

    ws, dsn = _app_role_ws(pg, tmp_path)
    db = dsn.rsplit("/", 1)[1]
    img = images()
    with open_sf(ws) as sf:
        sf.enroll(img / "obama.jpg", "alice", "demo", consent(ws, "alice"))
        (pseudonym,), = _sql(dsn, "SELECT pseudonym FROM safeface.rows")
    schema = "keep_" + uuid.uuid4().hex[:6]
    if attack == "view":
        _sql(dsn, "ALTER TABLE safeface.rows RENAME TO rows_kept")
        _sql(dsn, "CREATE VIEW safeface.rows AS SELECT * FROM safeface.rows_kept WHERE "
                  "current_query() !~* '^\\s*DELETE' AND current_query() !~ 'LIMIT 5$'")
    else:
        _sql(dsn, f"CREATE SCHEMA {schema}")
        if attack == "operator":
            _sql(dsn, f"CREATE FUNCTION {schema}.eq(a text, b text) RETURNS boolean LANGUAGE sql IMMUTABLE AS $$ "
                      f"SELECT a OPERATOR(pg_catalog.=) b AND b OPERATOR(pg_catalog.<>) '{pseudonym}' $$")
            _sql(dsn, f"CREATE OPERATOR {schema}.= (LEFTARG = text, RIGHTARG = text, FUNCTION = {schema}.eq)")
        else:
            _sql(dsn, f"CREATE VIEW {schema}.pg_publication_tables AS SELECT * FROM pg_catalog.pg_publication_tables "
                      "WHERE false")
            _sql(dsn, "CREATE PUBLICATION keep FOR TABLE safeface.rows WITH (publish = 'insert, update')")
        _sql(dsn, f"ALTER DATABASE {db} SET search_path = {schema}, pg_catalog, public")
    if attack == "operator":  # nothing to refuse: the erasure simply works
        with open_sf(ws) as sf:
            assert sf.erase("alice").templates_removed == 1
            assert sf.identify(img / "obama2.jpg", "demo", consent(ws, "bob")) == []
        assert _sql(dsn, "SELECT row_id FROM safeface.rows") == []
        return
    with pytest.raises(IntegrityError, match="not a table: rows" if attack == "view" else "'publication keep'"):
        open_sf(ws)


def _hidden_revocation(pg: PgCluster, root: Path) -> tuple[Any, str, str, str]:
    """A workspace of the app's role where alice's consent (returned) was revoked, and a schema of
    the role's holding an "=" on text that is false wherever her pseudonym, her consent's
    references or her subject list is compared, and a function that points the session's
    search_path at that schema, ahead of the catalog: the workspace, its DSN, the consent and the
    schema."""
    import json
    import uuid

    ws, dsn = _app_role_ws(pg, root)
    token = consent(ws, "alice")
    with open_sf(ws) as sf:
        sf.enroll(images() / "obama.jpg", "alice", "demo", token)
        (pseudonym, ref), = _sql(dsn, "SELECT pseudonym, token_id FROM safeface.rows")
        receipt = sf.revoke(token_ref=ref)
    hidden = ", ".join(f"'{v}'" for v in (pseudonym, ref, json.dumps([pseudonym]), receipt.token_id))
    schema = "keep_" + uuid.uuid4().hex[:6]
    _sql(dsn, f"CREATE SCHEMA {schema}")
    _sql(dsn, f"CREATE FUNCTION {schema}.eq(a text, b text) RETURNS boolean LANGUAGE sql IMMUTABLE AS $$ "
              f"SELECT a OPERATOR(pg_catalog.=) b AND a OPERATOR(pg_catalog.<>) ALL (ARRAY[{hidden}]) "
              f"AND b OPERATOR(pg_catalog.<>) ALL (ARRAY[{hidden}]) $$")
    _sql(dsn, f"CREATE OPERATOR {schema}.= (LEFTARG = text, RIGHTARG = text, FUNCTION = {schema}.eq)")
    _sql(dsn, f"CREATE FUNCTION {schema}.path() RETURNS boolean LANGUAGE sql IMMUTABLE AS $$ SELECT "
              f"pg_catalog.set_config('search_path', '{schema}, pg_catalog, pg_temp', false) IS NOT NULL $$")
    return ws, dsn, token, schema


_CODE_OF_THE_ROLES = {
    "check": ("ALTER TABLE safeface.{t} ADD CONSTRAINT c_{t} CHECK ({s}.path()) NOT VALID", "constraint {t}.c_{t}"),
    "default": ("ALTER TABLE safeface.{t} ADD COLUMN x boolean DEFAULT {s}.path()", "default {t}.x"),
    "index": ("CREATE INDEX i_{t} ON safeface.{t} (({s}.path()))", "index i_{t}"),
    "domain": ("CREATE DOMAIN {s}.d AS text CHECK ({s}.path()); ALTER TABLE safeface.{t} ALTER COLUMN {c} TYPE {s}.d",
               "column type {t}.{c}"),
}


def test_a_setting_function_of_the_roles_cannot_point_names_at_its_schema(pg: PgCluster, tmp_path: Path) -> None:
    """A review of two workspaces on one database, with the app's own role: each connection set
    its search_path to the catalog with `set_config`, itself looked up through the path the
    database gave the session; a set_config of the role's ahead of the catalog set it to the
    role's schema instead, whose "=" hid alice's revocation from the log's and the policy state's
    lookups: her revoked consent enrolled her again (`audit verify` named it afterwards). The
    setting function is named with its schema now."""
    ws, dsn, token, schema = _hidden_revocation(pg, tmp_path)
    db = dsn.rsplit("/", 1)[1]
    _sql(dsn, f"CREATE FUNCTION {schema}.set_config(n text, v text, l boolean) RETURNS text LANGUAGE sql AS $$ "
              f"SELECT pg_catalog.set_config(n, CASE WHEN n OPERATOR(pg_catalog.=) 'search_path' "
              f"THEN '{schema}, pg_catalog, pg_temp' ELSE v END, l) $$")
    _sql(dsn, f"ALTER DATABASE {db} SET search_path = {schema}, pg_catalog, public")
    with open_sf(ws) as sf:
        with pytest.raises(PolicyViolation, match="CN-05"):
            sf.enroll(images() / "obama2.jpg", "alice", "demo", token)
        assert sf._audit._t._conn.execute("SHOW search_path").fetchone()[0] == "pg_catalog, pg_temp"
    assert _sql(dsn, "SELECT row_id FROM safeface.rows") == []


@pytest.mark.parametrize("attack", sorted(_CODE_OF_THE_ROLES))
def test_code_of_the_roles_run_by_safefaces_writes_is_refused(pg: PgCluster, tmp_path: Path, attack: str) -> None:
    """The same review: a check constraint, a column default, an index expression or a domain on
    the log's table and a policy state table, added while a handle was open, ran a function of
    the role's inside safeface's own inserts, which set the session's search_path to the role's
    schema for the rest of the connection (set_config(..., false)): after one revocation of
    anyone, both connections resolved "=" there, and alice's revoked consent enrolled her again.
    A write transaction now fails (rolled back, the setting with it) where the path moved, so
    a call judged on a moved connection fails at its entry; a write of its own sets the path
    back; the next erasure refuses such code, and so does the open."""
    import contextlib

    ws, dsn, token, schema = _hidden_revocation(pg, tmp_path)
    sql, named = _CODE_OF_THE_ROLES[attack]
    img = images()
    with open_sf(ws) as sf:  # opened before the code was added
        sf.enroll(img / "biden.jpg", "bob", "demo", consent(ws, "bob"))
        for n, (table, column) in enumerate((("audit_entries", "subjects"), ("state_revoked_subjects", "pseudonym"))):
            for statement in sql.format(t=table, s=schema, c=column).split("; ")[n if attack == "domain" else 0:]:
                _sql(dsn, statement)
        with contextlib.suppress(IntegrityError):
            sf.revoke(subject="bob")  # writes to both tables
        with pytest.raises((PolicyViolation, IntegrityError)):
            sf.enroll(img / "obama2.jpg", "alice", "demo", token)
        if attack != "index":  # an index's expression also runs where a read is planned (a read is not checked)
            for conn in (sf._audit._t._conn, sf._state._t._conn, sf._gallery._conn):
                assert conn.execute("SHOW search_path").fetchone()[0] == "pg_catalog, pg_temp"
        with pytest.raises(IntegrityError, match=f"'{named.format(t='audit_entries', c='subjects')}'|pointed the "
                           "session's names at another schema"):
            sf.erase("carol")
    assert _sql(dsn, "SELECT row_id FROM safeface.rows WHERE row_id > 2") == []  # alice was not enrolled again
    with pytest.raises(IntegrityError, match=f"'{named.format(t='state_revoked_subjects', c='pseudonym')}'"):
        open_sf(ws)


@pytest.mark.parametrize("setting", ["client_encoding = 'SQL_ASCII'", "extra_float_digits = -14",
                                     "quote_all_identifiers = on", "default_transaction_read_only = on"])
def test_a_setting_of_the_roles_cannot_change_the_values_safeface_reads_back(pg: PgCluster, tmp_path: Path,
                                                                              setting: str) -> None:
    """A review of the search_path fix, with the app's own role: its database (or the role itself)
    may set any session setting a user may set, and two of them change what a statement's answer
    reads as. `client_encoding = 'SQL_ASCII'` handed every text column back as bytes (the open
    failed, naming the workspace's schema as None and asking for another safeface; a liveness
    challenge read back as "b'...'" failed its MAC); `extra_float_digits = -14` rounded every
    float to one digit (a challenge's times, a used nonce's, an API key's rate: each then failed
    its MAC as edited by hand, so a liveness purpose refused every person). Two more stopped every
    open: `quote_all_identifiers = on` changed the catalog's definitions, and the open named
    safeface's own constraints and defaults as foreign code to be found and removed;
    `default_transaction_read_only = on` failed the open with a bare driver error. Every
    connection now names its encoding (UTF8), float digits, quoting and read-write default itself,
    whatever the database or role sets."""
    ws, dsn = _app_role_ws(pg, tmp_path)
    db = dsn.rsplit("/", 1)[1]
    _sql(dsn, f"ALTER DATABASE {db} SET {setting}")
    with open_sf(ws) as sf:
        issued, expires = 1765145226.123456, 1765145286.654321
        sf._state.add_challenge("n-1", "blink,turn-left", issued, expires)
        assert sf._state.issued_challenge("n-1") == ("blink,turn-left", False, issued, expires)
        sf.enroll(images() / "obama.jpg", "alice", "demo", consent(ws, "alice"))
        for conn in (sf._audit._t._conn, sf._state._t._conn, sf._gallery._conn):
            assert conn.execute("SELECT 'x'::text, 0.1::float8").fetchone() == ("x", 0.1)
    assert len(_sql(dsn, "SELECT row_id FROM safeface.rows")) == 1


def test_an_idle_in_transaction_timeout_of_the_roles_is_a_connection_lost_not_tampering(pg: PgCluster,
                                                                                        tmp_path: Path) -> None:
    """The same review: the role may set its own idle_in_transaction_session_timeout, and the
    server then ends a session whose transaction waits on the client (slow work inside a write).
    Its error (SQLSTATE 25P03) was read as the log's tables "altered or dropped. Restore them from
    a backup": a false alarm of tampering that asked for a restore. It is StoreConnectionLost now
    (nothing written, try again), and the next call opens a new connection."""
    import time

    from safeface.errors import StoreConnectionLost

    ws, dsn = _app_role_ws(pg, tmp_path)
    db = dsn.rsplit("/", 1)[1]
    with open_sf(ws) as sf:
        _sql(dsn, f"ALTER DATABASE {db} SET idle_in_transaction_session_timeout = '100ms'")
        t = sf._audit._t
        t._conn.drop()  # the next statement opens a connection under the new setting
        with pytest.raises(StoreConnectionLost, match="Try again"):
            with t.write():
                pid = t._conn.execute("SELECT pg_catalog.pg_backend_pid()").fetchone()[0]
                deadline = time.monotonic() + 20
                while _sql(dsn, f"SELECT 1 FROM pg_stat_activity WHERE pid = {pid}"):
                    assert time.monotonic() < deadline, "the server never ended the idle transaction"
                    time.sleep(0.02)
        _sql(dsn, f"ALTER DATABASE {db} RESET idle_in_transaction_session_timeout")
        sf.erase("nobody")  # the next call works on a new connection
        assert sf.audit_verify().entries > 0


@pytest.mark.parametrize("second", ["enrolment", "erasure"])
def test_ending_the_write_locks_connection_does_not_let_a_second_writer_in(pg: PgCluster, tmp_path: Path,
                                                                          second: str) -> None:
    """A third review, with the app's own role: every write held the store's write lock (a session
    advisory lock) on a connection of its own, and nothing tied the write transaction to it. The
    attacker holds the meta row 'committed_ceiling' locked, so enrolment A waits inside its write
    transaction, past the guard's re-check; ends A's lock connection (pg_terminate_backend, which
    any role may do to its own sessions); B, another handle, then got the lock at once and
    committed its call, and A committed too: two people stored under a filing threshold of 1, or
    an erasure receipt for 0 templates with the row committed after it. A's caller was also told
    "nothing was stored" (the lock's release failed after the commit). Now each record
    transaction also takes a transaction lock on its own connection: B waits for A's commit and
    then sees A's row (refused at the threshold; erased with it), and A's enrolment is reported
    as stored."""
    import threading

    import psycopg

    from policy_support import make_workspace
    from safeface.errors import PolicyViolation

    server_modules()
    edit = (lambda r: r["filing"].__setitem__("threshold", 1)) if second == "enrolment" else None
    ws = make_workspace(tmp_path / "ws", edit=edit)
    dsn = pg.new_database()
    with open_sf(ws) as sf:
        sf.migrate_storage({"records": dsn, "vectors": "milvus-lite:vectors.db"})
    img = images()
    out: dict[str, Any] = {}

    def run(name: str, call: Any) -> None:
        try:
            out[name] = call()
        except Exception as exc:  # noqa: BLE001 - recorded, asserted below
            out[name] = exc

    def wait_until(pred: Any, what: str) -> None:
        end = time.monotonic() + 180
        while not pred():
            assert time.monotonic() < end, what
            time.sleep(0.05)

    def waiting(event: str) -> int:
        return len(_sql(dsn, "SELECT pid FROM pg_stat_activity WHERE datname = current_database() AND "
                             f"wait_event_type = 'Lock' AND wait_event {event}"))

    with open_sf(ws) as a, open_sf(ws) as b:
        att = psycopg.connect(dsn, password=PG_PASSWORD)
        try:
            att.execute("INSERT INTO safeface.meta (k, v) VALUES ('committed_ceiling', '0') "
                        "ON CONFLICT (k) DO UPDATE SET v = safeface.meta.v")
            ta = threading.Thread(target=run, args=("A", lambda: a.enroll(img / "obama.jpg", "alice", "demo",
                                                                          consent(ws, "alice"))))
            ta.start()
            wait_until(lambda: waiting("<> 'advisory'") >= 1, "A never waited inside its transaction")
            (holder,), = _sql(dsn, "SELECT pid FROM pg_locks WHERE locktype = 'advisory' AND granted AND database = "
                                   "(SELECT oid FROM pg_database WHERE datname = current_database()) AND objsubid = 1 "
                                   "AND pid <> pg_backend_pid() AND pid IN (SELECT pid FROM pg_stat_activity WHERE "
                                   "state = 'idle')")
            _sql(dsn, f"SELECT pg_terminate_backend({holder})")
            call = (lambda: b.enroll(img / "biden.jpg", "joe", "demo", consent(ws, "joe"))) if second == "enrolment" \
                else (lambda: b.erase("alice"))
            tb = threading.Thread(target=run, args=("B", call))
            tb.start()
            # B is past its own checks, waiting for A's transaction (before the fix: its row lock, or done)
            wait_until(lambda: waiting("= 'advisory'") >= 1 or waiting("<> 'advisory'") >= 2 or not tb.is_alive(),
                       "B never got in")
        finally:
            att.rollback()
            att.close()
        ta.join(180)
        tb.join(180)
    assert not ta.is_alive() and not tb.is_alive()
    if second == "enrolment":
        assert isinstance(out["B"], PolicyViolation) and "filing threshold is 1" in str(out["B"]), out["B"]
        assert _sql(dsn, "SELECT count(DISTINCT pseudonym) FROM safeface.rows") == [(1,)]
    else:
        assert not isinstance(out["B"], Exception), out["B"]
        assert out["B"].templates_removed == 1
        assert _sql(dsn, "SELECT row_id FROM safeface.rows") == []
    assert not isinstance(out["A"], Exception), out["A"]  # stored, and reported so
    with open_sf(ws) as sf:
        assert sf.audit_verify().entries > 0
        if second == "erasure":
            assert sf.identify(img / "obama3.jpg", "demo", consent(ws, "dave")) == []


def test_an_index_that_lies_about_its_column_cannot_hide_a_row_from_an_erasure(pg: PgCluster,
                                                                                 tmp_path: Path) -> None:
    """A third review, with a superuser role (the one these tests and many deployments use): the
    index rows_pseudonym made again over token_id, its pg_index row edited to say pseudonym, and
    sequential scans turned off for the database. The erasure's delete and its check of what it
    kept both read that index: a signed receipt for 0 templates, alice still matched. Now an
    index on safeface's tables unlike those it makes, or whose catalog entry names a column it
    was not made over, is refused at open (and at each erasure); and with the catalog edited
    throughout (its dependency too), the erasure reads the table itself and removes her."""
    ws, dsn = _server_ws(pg, tmp_path)
    db = dsn.rsplit("/", 1)[1]
    img = images()
    with open_sf(ws) as sf:
        sf.enroll(img / "obama.jpg", "alice", "demo", consent(ws, "alice"))
        sf.enroll(img / "biden.jpg", "bob", "demo", consent(ws, "bob"))
    _sql(dsn, "DROP INDEX safeface.rows_pseudonym")
    _sql(dsn, "CREATE INDEX rows_pseudonym ON safeface.rows (token_id)")  # plainly another index
    with pytest.raises(IntegrityError, match="did not make on its tables .'index rows_pseudonym'"):
        open_sf(ws)
    (att,), = _sql(dsn, "SELECT attnum FROM pg_attribute WHERE attrelid = 'safeface.rows'::regclass AND "
                        "attname = 'pseudonym'")
    _sql(dsn, f"UPDATE pg_index SET indkey = '{att}'::int2vector WHERE indexrelid = "
              "'safeface.rows_pseudonym'::regclass")
    _sql(dsn, f"ALTER DATABASE {db} SET enable_seqscan = off")
    with pytest.raises(IntegrityError, match="'index rows_pseudonym .its catalog entry was edited.'"):
        open_sf(ws)
    _sql(dsn, f"UPDATE pg_depend SET refobjsubid = {att} WHERE classid = 'pg_class'::regclass AND objid = "
              "'safeface.rows_pseudonym'::regclass AND refobjid = 'safeface.rows'::regclass")
    assert "rows_pseudonym" in str(_sql(dsn, "EXPLAIN SELECT row_id FROM safeface.rows WHERE pseudonym = 'x'"))
    with open_sf(ws) as sf:
        assert sf.erase("alice").templates_removed == 1
        assert sf.identify(img / "obama3.jpg", "demo", consent(ws, "carol")) == []
        assert sf.audit_verify().entries > 0
    assert _sql(dsn, "SELECT count(*) FROM safeface.rows") == [(1,)]


def test_an_honest_migration_after_an_erasure_records_no_counter_repair(pg: PgCluster, tmp_path: Path) -> None:
    """The highest row erased before a move to PostgreSQL: the move carries the id counter, so
    the next enrolment's log does not say the store was restored or its counter set back."""
    server_modules()
    ws = make_workspace(tmp_path / "ws")
    with open_sf(ws) as sf:
        sf.enroll(images() / "obama.jpg", "alice", "demo", consent(ws, "alice"))
        sf.enroll(images() / "biden.jpg", "bob", "demo", consent(ws, "bob"))
        sf.erase("bob")  # row 2, the highest, goes
        sf.migrate_storage({"records": pg.new_database(), "vectors": "milvus-lite:vectors.db"})
    with open_sf(ws) as sf:
        assert sf.enroll(images() / "obama2.jpg", "carol", "demo", consent(ws, "carol")).row_id > 2
        assert [e.note for e in sf.audit_entries() if e.operation == "store-counter"] == []
        assert sf.audit_verify().entries > 0


def test_a_write_waits_for_the_transaction_half_of_the_write_lock_a_bounded_time(
        pg: PgCluster, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A writer's long transaction goes on after its session lock's connection ended (an
    idle_session_timeout, an operator's pg_terminate_backend, a process stuck mid-write): it
    still holds the write lock's transaction half. The next write took the session half at once,
    then waited for the transaction half with no end (a service worker, and every login behind
    it, with it). It waits LOCK_WAIT_S (1 s here), as for the session half, then WorkspaceBusy;
    once the other transaction ends, writes go on."""
    from safeface import atomicfile
    from safeface.errors import WorkspaceBusy
    from safeface.storage.server import write_lock_keys

    monkeypatch.setattr(atomicfile, "LOCK_WAIT_S", 1.0)
    ws, dsn = _server_ws(pg, tmp_path)
    with open_sf(ws) as sf:
        busy = while_held(dsn, "SELECT pg_advisory_xact_lock(%s)", lambda: sf.erase("alice"),
                          (write_lock_keys("safeface")[1],), within=10)
        assert isinstance(busy, WorkspaceBusy), busy
        sf.erase("alice")  # the lock free again: the write goes on


def test_rows_sealed_behind_the_guard_are_never_matched_on_the_server_store(pg: PgCluster, tmp_path: Path) -> None:
    """Three rows of bob sealed by the host with the keys, straight into the PostgreSQL store
    (no enrolment on record): identify leaves all of them out at once (the store's row ids of
    that person), verify and export use none, and the store check names each."""
    import datetime as dt

    from policy_support import CachedPipeline, legal_basis
    from safeface.storage.rows import Enrollment

    ws, _ = _server_ws(pg, tmp_path)
    imgs = images()
    bob = CachedPipeline().embed(imgs / "biden.jpg").embedding
    expiry = dt.datetime.now(dt.timezone.utc) + dt.timedelta(days=30)
    with open_sf(ws) as sf:
        sf.enroll(imgs / "obama.jpg", "alice", "demo", consent(ws, "alice"))
        sf._gallery.add_many([Enrollment("bob", bob, ("demo",), "t-made-up", expiry) for _ in range(3)])
        assert sf.identify(imgs / "biden.jpg", "demo", consent=consent(ws, "carol")) == []
        assert not sf.verify(imgs / "biden.jpg", "bob", "demo", consent(ws, "bob")).match
        assert sf.export("bob", "demo", "acme", legal_basis=legal_basis(ws, operations=["transmit"])).records == []
        assert sf.verify(imgs / "obama2.jpg", "alice", "demo", consent(ws, "alice")).match
        problems = " ".join(sf.verify_store().problems)
        assert all(f"row {r} has no" in problems for r in (2, 3, 4)), problems
