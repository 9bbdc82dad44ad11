"""The audit chain and the policy state in PostgreSQL, attacked the way an operator of the
database would: two machines appending at once, a row edited by hand, the tables restored from an
older dump, a schema this code does not know, wrong credentials, a migration that fails halfway."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
from child_process import child_env  # noqa: E402
from server_support import PG_PASSWORD, PgCluster, server_modules  # noqa: E402

from safeface.errors import AuthenticationError, BackendError, ConfigError, IntegrityError  # noqa: E402
from safeface.sdk import SafeFace  # noqa: E402
from safeface.workspace.init import init_workspace  # noqa: E402
from safeface.workspace.paths import WorkspacePaths  # noqa: E402
from safeface.workspace.session import opened  # noqa: E402


def _sql(dsn: str, query: str) -> list[Any]:
    import psycopg

    with psycopg.connect(dsn, password=PG_PASSWORD, autocommit=True) as c:
        cur = c.execute(query)
        return cur.fetchall() if cur.description else []


def server_workspace(pg: PgCluster, root: Path) -> tuple[Path, str]:
    """A demo workspace moved to PostgreSQL and Milvus Lite."""
    server_modules()
    ws = root / "ws"
    init_workspace(ws, demo=True)
    dsn = pg.new_database()
    with SafeFace.open(ws) as sf:
        sf.migrate_storage({"records": dsn, "vectors": "milvus-lite:vectors.db"})
    return ws, dsn


def _append(ws: Path, n: int, tag: str = "test") -> None:
    with opened(WorkspacePaths(ws)) as r:
        for i in range(n):
            r.audit.append("test-append", "allowed", note=f"{tag} {i}")


def _verify(ws: Path, **kw: Any) -> Any:
    from safeface.workspace.admin import audit_verify

    return audit_verify(ws, **kw)


CHILD = """
import sys, time
from pathlib import Path
from safeface.workspace.paths import WorkspacePaths
from safeface.workspace.session import opened

ws, n, go, tag = Path(sys.argv[1]), int(sys.argv[2]), Path(sys.argv[3]), sys.argv[4]
with opened(WorkspacePaths(ws)) as r:
    (go.parent / (tag + ".ready")).touch()
    while not go.exists():
        time.sleep(0.005)
    for i in range(n):
        r.audit.append("test-append", "allowed", note=f"{tag} {i}")
"""


def test_two_processes_appending_at_once_never_fork_the_chain(pg: PgCluster, tmp_path: Path) -> None:
    ws, dsn = server_workspace(pg, tmp_path)
    before = _verify(ws).report.entries
    n = 60
    script = tmp_path / "child.py"
    script.write_text(CHILD)
    go = tmp_path / "go"
    procs = [subprocess.Popen([sys.executable, str(script), str(ws), str(n), str(go), tag], env=child_env(),
                              cwd=tmp_path) for tag in ("a", "b")]
    deadline = time.monotonic() + 120
    while not all((tmp_path / f"{t}.ready").exists() for t in ("a", "b")):
        assert time.monotonic() < deadline and all(p.poll() is None for p in procs), "a child failed to open"
        time.sleep(0.02)
    go.touch()  # both start appending at the same moment
    assert [p.wait(timeout=300) for p in procs] == [0, 0]
    report = _verify(ws).report
    assert report.entries == before + 2 * n
    notes = [r[0] for r in _sql(dsn, "SELECT note FROM safeface.audit_entries WHERE operation = 'test-append'")]
    assert sorted(notes) == sorted(f"{t} {i}" for t in ("a", "b") for i in range(n))
    # One entry per seq, each linked to the one before: no two entries share a predecessor.
    prevs = [r[0] for r in _sql(dsn, "SELECT prev FROM safeface.audit_entries")]
    assert len(set(prevs)) == len(prevs)
    # The appends really interleaved (so the lock, not luck, kept the chain whole).
    order = [r[0][0] for r in _sql(dsn, "SELECT note FROM safeface.audit_entries WHERE operation = 'test-append' "
                                        "ORDER BY seq")]
    assert sum(1 for x, y in zip(order, order[1:]) if x != y) >= 2


def test_an_entry_edited_by_hand_in_postgresql_is_found(pg: PgCluster, tmp_path: Path) -> None:
    ws, dsn = server_workspace(pg, tmp_path)
    _append(ws, 3)
    _sql(dsn, "UPDATE safeface.audit_entries SET decision = 'refused' WHERE seq = 2")
    with pytest.raises(IntegrityError, match="entry 2 was altered"):
        _verify(ws)
    _sql(dsn, "UPDATE safeface.audit_entries SET decision = 'allowed' WHERE seq = 2")
    _verify(ws)
    # Deleting the newest entry and pointing the head back needs the audit key for its MAC.
    last = _sql(dsn, "SELECT max(seq) FROM safeface.audit_entries")[0][0]
    _sql(dsn, f"DELETE FROM safeface.audit_entries WHERE seq = {last}")
    with pytest.raises(IntegrityError, match="truncation|signed head"):
        _verify(ws)
    _sql(dsn, f"UPDATE safeface.audit_head SET seq = {last - 1}, hash = (SELECT hash FROM safeface.audit_entries "
              f"WHERE seq = {last - 1})")
    with pytest.raises(IntegrityError, match="does not match its signed head"):
        SafeFace.open(ws)
    with pytest.raises(IntegrityError, match="signed head|head signature"):
        _verify(ws)


def test_a_trust_change_renamed_in_postgresql_is_refused_at_open(pg: PgCluster, tmp_path: Path) -> None:
    """The log's last trust change is read through its signed head in PostgreSQL too: renaming
    the entry by hand, so an older change looks like the last one, stops the open."""
    ws, dsn = server_workspace(pg, tmp_path)
    marks = json.loads(_sql(dsn, "SELECT marks FROM safeface.audit_head")[0][0])
    seq = _sql(dsn, "SELECT max(seq) FROM safeface.audit_entries WHERE operation = 'trust-add'")[0][0]
    assert marks["trust-add"][0] == seq
    _sql(dsn, f"UPDATE safeface.audit_entries SET operation = 'trust-note' WHERE seq = {seq}")
    with pytest.raises(IntegrityError, match=f"audit entry {seq}, the last trust-add/trust-remove entry"):
        SafeFace.open(ws)


def test_the_marks_column_dropped_in_postgresql_stops_the_open(pg: PgCluster, tmp_path: Path) -> None:
    """Dropping the head's marks (so the head looks like one an earlier safeface wrote) needs
    the head's old signature, which only the audit key makes: the column comes back empty at
    the open, and the open is refused."""
    ws, dsn = server_workspace(pg, tmp_path)
    _sql(dsn, "ALTER TABLE safeface.audit_head DROP COLUMN marks")
    with pytest.raises(IntegrityError, match="signed head"):
        SafeFace.open(ws)
    assert "marks" in {r[0] for r in _sql(dsn, "SELECT column_name FROM information_schema.columns WHERE "
                                             "table_schema = 'safeface' AND table_name = 'audit_head'")}


def test_audit_tables_restored_from_an_older_dump_are_found(pg: PgCluster, tmp_path: Path) -> None:
    ws, dsn = server_workspace(pg, tmp_path)
    _append(ws, 2, "early")
    env = {**os.environ, "PGPASSWORD": PG_PASSWORD}
    dump = tmp_path / "audit.sql"
    subprocess.run([str(pg.bin / "pg_dump"), "--data-only", "-t", "safeface.audit_entries", "-t",
                    "safeface.audit_head", "-f", str(dump), dsn], env=env, check=True, capture_output=True)
    anchor_then = (ws / "keys" / "audit-anchor.json").read_bytes()
    _append(ws, 2, "late")
    cp = tmp_path / "cp.json"
    from safeface.workspace.admin import audit_checkpoint

    audit_checkpoint(ws, cp)  # an assessor keeps this, off the operator's machines

    # The operator restores the audit tables from the older dump.
    _sql(dsn, "TRUNCATE safeface.audit_entries, safeface.audit_head")
    subprocess.run([str(pg.bin / "psql"), "-v", "ON_ERROR_STOP=1", "-q", "-f", str(dump), dsn], env=env, check=True,
                   capture_output=True)
    with pytest.raises(IntegrityError, match="rolled back"):
        _verify(ws)
    with pytest.raises(IntegrityError, match="rolled back"):
        SafeFace.open(ws)  # refused at open too, before any call
    # Holding the passphrase, they restore the keyring's anchor from the same time: the
    # workspace alone cannot tell, the assessor's checkpoint can.
    (ws / "keys" / "audit-anchor.json").write_bytes(anchor_then)
    _verify(ws)
    with pytest.raises(IntegrityError, match="checkpoint.*rolled back|rolled back.*checkpoint"):
        _verify(ws, checkpoints=[cp])


def test_wrong_credentials_and_an_unknown_schema_name_the_audit_log_and_write_nothing(
        pg: PgCluster, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    ws, dsn = server_workspace(pg, tmp_path)
    count = _sql(dsn, "SELECT count(*) FROM safeface.audit_entries")[0][0]
    monkeypatch.setenv("SAFEFACE_PG_PASSWORD", "wrong password")
    with pytest.raises(BackendError, match="audit log in PostgreSQL.*cannot be reached or refused") as exc:
        SafeFace.open(ws)
    assert "wrong password" not in str(exc.value)
    monkeypatch.setenv("SAFEFACE_PG_PASSWORD", PG_PASSWORD)
    _sql(dsn, "UPDATE safeface.workspace_meta SET v = '99' WHERE k = 'schema'")
    with pytest.raises(ConfigError, match="audit log in PostgreSQL.*schema '99'"):
        SafeFace.open(ws)
    _sql(dsn, "UPDATE safeface.workspace_meta SET v = '1' WHERE k = 'schema'")
    assert _sql(dsn, "SELECT count(*) FROM safeface.audit_entries")[0][0] == count
    _verify(ws)
    # Tables dropped by hand: named, not a crash.
    _sql(dsn, "DROP TABLE safeface.state_revoked_tokens")  # the report counts revocations from it
    with SafeFace.open(ws) as sf, pytest.raises(IntegrityError, match="policy state in PostgreSQL.*dropped"):
        sf.report(tmp_path / "reports")


def test_a_migration_failing_halfway_leaves_the_local_workspace_whole(pg: PgCluster, tmp_path: Path) -> None:
    server_modules()
    ws = tmp_path / "ws"
    init_workspace(ws, demo=True)
    config = (ws / "deployment.json").read_text()
    dsn = pg.new_database()
    # A table in the way: the copy's transaction fails at the signed head, after the entries.
    _sql(dsn, "CREATE SCHEMA safeface; CREATE TABLE safeface.audit_head (x INTEGER)")
    with SafeFace.open(ws) as sf, pytest.raises(BackendError, match="nothing was written there"):
        sf.migrate_storage({"records": dsn, "vectors": "milvus-lite:vectors.db"})
    assert _sql(dsn, "SELECT to_regclass('safeface.audit_entries'), to_regclass('safeface.workspace_meta')") == [
        (None, None)]
    assert (ws / "deployment.json").read_text() == config and (ws / "audit.db").is_file()
    with SafeFace.open(ws) as sf:
        sf.audit_verify()
    # Into a database that already holds another workspace's log: refused, nothing changed.
    other, other_dsn = server_workspace(pg, tmp_path / "other")
    with SafeFace.open(ws) as sf, pytest.raises(ConfigError, match="already|other keys|is not the one"):
        sf.migrate_storage({"records": other_dsn, "vectors": "milvus-lite:vectors.db"})
    assert (ws / "deployment.json").read_text() == config
    assert json.loads((other / "deployment.json").read_text())["storage"]["records"] == other_dsn
    _verify(other)


def test_index_check_on_the_command_line_is_audited(pg: PgCluster, tmp_path: Path, capsys: Any) -> None:
    from test_cli_policy import Cli

    from safeface.storage.vectors import MilvusVectors

    ws, _ = server_workspace(pg, tmp_path)
    cli = Cli(capsys)
    assert json.loads(cli("index", "check", ws)[0])["consistent"] is True
    direct = MilvusVectors.connect("milvus-lite:vectors.db", ws, "safeface_templates", 128)
    x = [1.0] + [0.0] * 127
    direct.upsert([4242], [x], [["demo"]], [2**62])  # a vector no record stands behind
    direct.close()
    out = json.loads(cli("index", "check", ws, code=4)[0])
    assert out["orphans"] == [4242] and out["consistent"] is False
    assert json.loads(cli("index", "check", ws, "--repair")[0])["repaired"] is True
    assert json.loads(cli("index", "check", ws)[0])["consistent"] is True
    with SafeFace.open(ws) as sf:
        notes = [e.note for e in sf.audit_entries() if e.operation == "index-check"]
    assert len(notes) == 4 and "orphans [4242]" in str(notes[1]) and "repaired" in str(notes[2])
    assert "consistent" in str(notes[3])
    cli("audit", "verify", ws)


def test_policy_state_in_postgresql_holds_across_processes_at_once(pg: PgCluster, tmp_path: Path) -> None:
    import datetime as dt

    from safeface.policy.deployment import Deployment
    from safeface.workspace.session import open_state

    ws, dsn = server_workspace(pg, tmp_path)
    paths = WorkspacePaths(ws)
    from safeface.workspace.passphrase import open_keyring

    keyring = open_keyring(paths, None, None)  # the demo workspace's, which signs the liveness rows
    here, there = (open_state(paths, Deployment.load(paths.config), keyring) for _ in range(2))  # two machines' views
    try:
        now = dt.datetime.now(dt.timezone.utc)
        until = now + dt.timedelta(minutes=5)
        # One liveness nonce spent once, whichever machine is first; the other is refused.
        assert [here.use_nonce("n-1", until), there.use_nonce("n-1", until)] == [True, False]
        here.revoke_token("tok-ref", now)
        assert there.is_revoked("tok-ref", None, int(now.timestamp()))
        here.revoke_subject("pseud-1", now)
        assert there.is_revoked("other", "pseud-1", int(now.timestamp()) - 1)
        assert not there.is_revoked("other", "pseud-1", int(now.timestamp()) + 10)  # a later consent counts
        there.revoke_subject("pseud-1", now - dt.timedelta(days=1))  # a clock set back keeps the later time
        assert here.is_revoked("other", "pseud-1", int(now.timestamp()) - 1)
        assert [here.set_fact_once("filing", "x"), there.set_fact_once("filing", "y")] == [True, False]
        assert there.fact("filing") == "x"
        assert _sql(dsn, "SELECT count(*) FROM safeface.state_used_nonces")[0][0] == 1
        # The server's operator moves the used nonce's expiry into the past, so that it would be
        # dropped and the evidence accepted again: its row fails its MAC.
        _sql(dsn, "UPDATE safeface.state_used_nonces SET until = 0")
        with pytest.raises(IntegrityError, match="edited by hand"):
            there.use_nonce("n-1", until)
    finally:
        here.close()
        there.close()
    assert not (ws / "policy.db").exists()


def test_hand_edits_in_postgresql_gain_no_liveness_moves_and_no_console_rights(pg: PgCluster, tmp_path: Path) -> None:
    """The server's operator, without the keyring: drops the MAC column of the challenges and
    forges one with easy moves (it must not be adopted), and raises the role of a logged-in
    auditor key's row (its console session must end)."""
    import datetime as dt

    from safeface.policy.deployment import Deployment
    from safeface.workspace.apikeys import hashing_key
    from safeface.workspace.passphrase import open_keyring
    from safeface.workspace.session import open_apikeys, open_state

    ws, dsn = server_workspace(pg, tmp_path)
    paths = WorkspacePaths(ws)
    keyring = open_keyring(paths, None, None)
    dep = Deployment.load(paths.config)
    now = dt.datetime.now(dt.timezone.utc)
    state = open_state(paths, dep, keyring)
    state.add_challenge("real", "left,right", now.timestamp(), now.timestamp() + 30)
    state.close()
    _sql(dsn, "ALTER TABLE safeface.state_challenges DROP COLUMN mac")
    _sql(dsn, f"INSERT INTO safeface.state_challenges VALUES ('forged', 'left', {now.timestamp()}, "
              f"{now.timestamp() + 86_400})")
    state = open_state(paths, dep, keyring)
    try:
        assert state.issued_challenge("forged") is None and state.issued_challenge("real") is None
    finally:
        state.close()
    keys = open_apikeys(paths, dep, hashing_key(keyring.key("pseudonym")))
    try:
        info, key = keys.issue("auditor", "console", None, None, now)
        _, cookie = keys.open_session(key, now)
        assert keys.session(cookie, now).role == "auditor"
        _sql(dsn, f"UPDATE safeface.service_apikeys SET role = 'operator' WHERE key_id = '{info.key_id}'")
        with pytest.raises(AuthenticationError):
            keys.session(cookie, now)
    finally:
        keys.close()


def test_a_logout_while_another_host_writes_the_key_store_ends_the_session_without_waiting(
        pg: PgCluster, tmp_path: Path) -> None:
    """Another host holds the API key store's advisory lock (a long write there): a logout waited
    for it on the service's event loop, every other request of the worker with it. The end is on
    the audit log at once, and the key table's row is given up, the session ended all the same."""
    import psycopg

    ws, dsn = server_workspace(pg, tmp_path)
    with SafeFace.open(ws) as sf:
        _, key = sf.issue_api_key("auditor", label="console")
        _, cookie = sf.open_session(key)
        with psycopg.connect(dsn, password=PG_PASSWORD, autocommit=True) as other:
            other.execute("SELECT pg_advisory_lock(%s)", (sf._apikeys._t._key,))
            assert sf.end_session(cookie) is True
            with pytest.raises(AuthenticationError, match="logged out"):
                sf.session(cookie)
        assert sf.end_session(cookie) is False  # ended once, on the log


def test_a_console_sessions_idle_time_is_kept_in_postgresql_and_its_table_made_when_missing(
        pg: PgCluster, tmp_path: Path) -> None:
    """Each use of a session extends it (recorded in the record store, which every host reads); one
    left unused for 30 minutes ends. A store moved there by an earlier safeface lacks the table:
    the login makes it."""
    import datetime as dt

    from safeface.policy.deployment import Deployment
    from safeface.workspace.apikeys import hashing_key
    from safeface.workspace.passphrase import open_keyring
    from safeface.workspace.session import open_apikeys

    ws, dsn = server_workspace(pg, tmp_path)
    _sql(dsn, "DROP TABLE safeface.service_session_uses")  # as an earlier safeface moved it
    paths = WorkspacePaths(ws)
    keyring = open_keyring(paths, None, None)
    keys = open_apikeys(paths, Deployment.load(paths.config), hashing_key(keyring.key("pseudonym")))
    now = dt.datetime.now(dt.timezone.utc)
    try:
        _, key = keys.issue("auditor", "console", None, None, now)
        _, cookie = keys.open_session(key, now)
        for minutes in (20, 45, 70):  # each within 30 minutes of the last use
            keys.session(cookie, now + dt.timedelta(minutes=minutes))
        with pytest.raises(AuthenticationError, match="not used for 30 minutes"):
            keys.session(cookie, now + dt.timedelta(minutes=101))
    finally:
        keys.close()
    assert _sql(dsn, "SELECT COUNT(*) FROM safeface.service_session_uses") == [(1,)]


def test_a_workspace_pointed_at_postgresql_by_hand_is_told_to_migrate(pg: PgCluster, tmp_path: Path) -> None:
    server_modules()
    ws = tmp_path / "ws"
    init_workspace(ws, demo=True)
    dsn = pg.new_database()
    raw = json.loads((ws / "deployment.json").read_text())
    raw["storage"] = {"records": dsn, "vectors": "milvus-lite:vectors.db"}
    (ws / "deployment.json").write_text(json.dumps(raw))
    with pytest.raises(ConfigError, match="not one this workspace sealed.*storage migrate"):
        SafeFace.open(ws)
    # Nothing was created on the server by the refused opening.
    assert _sql(dsn, "SELECT to_regclass('safeface.workspace_meta'), to_regclass('safeface.audit_entries')") == [
        (None, None)]


def test_a_storage_target_written_by_hand_gets_no_connection_and_no_password(pg: PgCluster, tmp_path: Path,
                                                                              monkeypatch: Any) -> None:
    """Someone who can write deployment.json but holds no key points a server workspace's records
    at a server of their own, to be sent the database password (then the audit entries and sealed
    rows). The storage section is sealed by `storage migrate`: an edited one is refused before
    anything connects. A workspace an earlier safeface moved (no seal) is confirmed once by an
    operator who restates the target and holds the passphrase."""
    import socket
    import threading

    from safeface.workspace.admin import confirm_storage

    ws, dsn = server_workspace(pg, tmp_path)
    monkeypatch.setenv("SAFEFACE_PG_PASSWORD", PG_PASSWORD)
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(4)
    listener.settimeout(0.2)
    received: list[bytes] = []
    stop = threading.Event()

    def serve() -> None:
        while not stop.is_set():
            try:
                conn, _ = listener.accept()
            except OSError:
                continue
            with conn:
                conn.settimeout(1)
                try:
                    received.append(conn.recv(4096) or b"connected")
                except OSError:
                    received.append(b"connected")

    t = threading.Thread(target=serve, daemon=True)
    t.start()
    config = ws / "deployment.json"
    genuine = config.read_text()
    raw = json.loads(genuine)
    port = listener.getsockname()[1]
    try:
        for edit in ({**raw["storage"], "records": f"postgresql://safeface@127.0.0.1:{port}/x"},
                     {k: v for k, v in raw["storage"].items() if k != "seal"} | {
                         "records": f"postgresql://safeface@127.0.0.1:{port}/x"}):
            config.write_text(json.dumps({**raw, "storage": edit}))
            with pytest.raises(ConfigError, match="not one this workspace sealed"):
                SafeFace.open(ws)
            with pytest.raises(ConfigError, match="not one this workspace sealed"):
                _verify(ws)
        time.sleep(0.3)
        assert received == []
        # An earlier safeface's migration: no seal. Confirming a target other than the file's
        # seals nothing; restating the file's own seals it, audited.
        config.write_text(json.dumps({**raw, "storage": {k: v for k, v in raw["storage"].items() if k != "seal"}}))
        with pytest.raises(ConfigError, match="not one this workspace sealed"):
            SafeFace.open(ws)
        with pytest.raises(ConfigError, match="not what was given"):
            confirm_storage(ws, {"records": f"postgresql://safeface@127.0.0.1:{port}/x",
                                 "vectors": "milvus-lite:vectors.db"})
        out = confirm_storage(ws, {"records": dsn, "vectors": "milvus-lite:vectors.db"})
        assert out["confirmed"] and json.loads(config.read_text())["storage"]["seal"] == raw["storage"]["seal"]
        with SafeFace.open(ws) as sf:
            assert [e for e in sf.audit_entries() if e.operation == "storage-confirm"]
        _verify(ws)
    finally:
        stop.set()
        t.join()
        listener.close()
    assert received == []


@pytest.mark.parametrize("source", ["safeface", "PGPASSWORD"])
def test_the_database_password_never_goes_out_in_the_clear(tmp_path: Path, source: str, monkeypatch: Any) -> None:
    """A server (a spoofed host, or one the URL names by mistake) that asks for the password in
    the clear, or as an MD5 hash, gets nothing: the password goes out only inside SCRAM, whether
    safeface holds it or libpq finds it on its own."""
    import socket
    import struct
    import threading

    server_modules()
    from safeface.storage.server import pg_connect

    for method in (3, 5):  # AuthenticationCleartextPassword, AuthenticationMD5Password
        listener = socket.socket()
        listener.bind(("127.0.0.1", 0))
        listener.listen(1)
        got: list[bytes] = []

        def serve() -> None:
            conn, _ = listener.accept()
            with conn:
                conn.settimeout(3)
                first = conn.recv(8)
                if len(first) == 8 and struct.unpack("!ii", first)[1] == 80877103:  # SSLRequest
                    conn.sendall(b"N")
                    first = b""
                head = first + conn.recv(4096)  # the startup message
                del head
                body = struct.pack("!i", method) + (b"salt" if method == 5 else b"")
                conn.sendall(b"R" + struct.pack("!i", 4 + len(body)) + body)
                try:
                    while chunk := conn.recv(4096):
                        got.append(chunk)
                except OSError:
                    pass

        t = threading.Thread(target=serve, daemon=True)
        t.start()
        dsn = f"postgresql://safeface@127.0.0.1:{listener.getsockname()[1]}/x?sslmode=disable"
        if source == "PGPASSWORD":
            monkeypatch.setenv("PGPASSWORD", "the real database password")
        with pytest.raises(BackendError):
            pg_connect(dsn, "the real database password" if source == "safeface" else None, "the record store")
        t.join(5)
        listener.close()
        assert b"the real database password" not in b"".join(got)
        assert not any(c.startswith(b"p") for c in got)


def test_appends_race_cleanly_under_a_repeatable_read_default(pg: Any, tmp_path: Path) -> None:
    """A database (or role) whose default isolation is repeatable read: the second of two racing
    appenders must wait for the first and chain after it, not read the log as it was before its
    lock was granted (a duplicate entry number, taken for tampering), and of two racing spends of
    one liveness evidence exactly one wins."""
    import threading

    import psycopg
    from server_support import PG_PASSWORD

    from safeface.storage.sqltables import PgTables, create_and_fill
    from safeface.workspace.audit import AuditLog

    key = b"k" * 32
    dsn = pg.new_database()
    seed = AuditLog(tmp_path / "seed.db", key)
    seed.append("init", "allowed", note="seed")
    with seed.frozen() as (rows, head):
        create_and_fill(dsn, PG_PASSWORD, "sf", rows, head, {})
    seed.close()
    with psycopg.connect(pg.dsn(), password=PG_PASSWORD, autocommit=True) as c:
        c.execute(f"ALTER DATABASE {dsn.rsplit('/', 1)[1]} SET default_transaction_isolation = 'repeatable read'")
    logs = [AuditLog(PgTables.open(dsn, PG_PASSWORD, "sf", "audit", "audit log"), key) for _ in range(2)]
    results: list[Any] = [None, None]
    start = threading.Barrier(2)

    def spend(i: int) -> None:
        log = logs[i]
        start.wait()
        if i == 1:
            time.sleep(0.2)  # begins while the first holds the lock

        def already() -> bool:
            if i == 0:
                time.sleep(0.6)  # the first is slow inside its transaction
            return log.names_token("liveness-spent", "liveness:n1")

        try:
            results[i] = log.append_unless(already, "liveness-spent", "allowed", token_id="liveness:n1") is not None
        except Exception as exc:  # noqa: BLE001
            results[i] = exc

    threads = [threading.Thread(target=spend, args=(i,)) for i in range(2)]
    for th in threads:
        th.start()
    for th in threads:
        th.join(30)
    try:
        assert sorted(map(repr, results)) == ["False", "True"], results
        assert logs[0].verify().entries == 2
    finally:
        for log in logs:
            log.close()


def _local_workspace_with_two_sessions(tmp_path: Path) -> tuple[Path, WorkspacePaths, str, str]:
    """A local workspace (the demo's) and two console sessions of one operator's key."""
    server_modules()
    ws = tmp_path / "ws"
    init_workspace(ws, demo=True)
    with SafeFace.open(ws) as sf:
        _, key = sf.issue_api_key("operator", label="console")
        _, cookie = sf.open_session(key)
        _, other = sf.open_session(key)
    return ws, WorkspacePaths(ws), cookie, other


def _lock_key(text: str) -> int:
    """The 64-bit advisory lock key the server store derives from `text`."""
    import hashlib

    return int.from_bytes(hashlib.sha256(text.encode()).digest()[:8], "big", signed=True)


def _removal_started(ws: Path, thumbprint: str) -> tuple[Any, list[BaseException]]:
    """`keys remove` of a consent-issuer key, started on a thread: (the thread, what it raised)."""
    import threading

    from safeface.workspace.admin import keys_remove

    outcome: list[BaseException] = []

    def remove() -> None:
        try:
            keys_remove(ws, "consent-issuer", thumbprint)
        except BaseException as exc:  # noqa: BLE001 - the test reads it
            outcome.append(exc)

    remover = threading.Thread(target=remove, daemon=True)
    remover.start()
    return remover, outcome


def _waiting_on(watch: Any, key: int) -> None:
    """Return once some connection waits for the advisory lock `key` (read through `watch`)."""
    # An advisory lock's 64-bit key is split across classid (high half) and objid (low half).
    hi, lo = (key >> 32) & 0xFFFFFFFF, key & 0xFFFFFFFF
    for _ in range(600):
        if watch.execute("SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND NOT granted "
                         "AND classid::bigint = %s AND objid::bigint = %s", (hi, lo)).fetchone()[0]:
            return
        time.sleep(0.05)
    raise AssertionError("the removal never waited for the lock")


def test_a_key_removal_on_postgresql_holds_the_store_lock_and_gives_up_behind_a_stuck_writer(
        pg: PgCluster, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """`keys remove` holds both halves of the server store's write lock while it records, so an
    enrolment's commit falls wholly before or after it. Behind a writer that does not let go
    (a session holding the lock, or a record transaction holding its half, with or without a
    pending write's row), it waited for ever, the stolen key trusted all along; it now gives up
    after STORE_LOCK_WAIT_S, changing nothing, and succeeds once the lock is free."""
    import psycopg

    import safeface.workspace.admin as admin
    from safeface.workspace.admin import keys_list, keys_new, keys_remove

    ws, dsn = server_workspace(pg, tmp_path)
    b = keys_new(ws, "consent-issuer", tmp_path / "b.pem", label="consent service B")

    def trusted() -> bool:
        return any(k["thumbprint"] == b.thumbprint and not k.get("removed") for k in keys_list(ws))

    session_key, xact_key = _lock_key("safeface write lock safeface"), _lock_key("safeface write transaction lock safeface")
    with psycopg.connect(dsn, password=PG_PASSWORD, autocommit=True) as other:
        with opened(WorkspacePaths(ws)) as r, admin._store_locked(WorkspacePaths(ws), r):
            assert other.execute("SELECT pg_try_advisory_lock(%s)", (session_key,)).fetchone()[0] is False
            with other.transaction():
                assert other.execute("SELECT pg_try_advisory_xact_lock(%s)", (xact_key,)).fetchone()[0] is False

        monkeypatch.setattr(admin, "STORE_LOCK_WAIT_S", 0.5)

        def removal_behind(hold: Any, release: Any) -> list[BaseException]:
            hold()
            remover, outcome = _removal_started(ws, b.thumbprint)
            remover.join(60)
            stuck = remover.is_alive()
            release()
            remover.join(60)
            assert not stuck, "the removal waited behind the held lock past its limit"
            return outcome

        def erasure_left_hanging() -> None:
            # A record transaction left holding its half of the lock after its session lock's
            # connection was ended, having re-filed a vector write still pending (an erasure of
            # a row whose upsert waits for Milvus). An opening of the store carries out pending
            # writes and waited on that row; the removal no longer opens the store, and waits
            # only for the lock's half.
            other.execute("INSERT INTO safeface.pending (row_id, op) VALUES (424242, 'upsert')")
            hanging.execute("SELECT pg_advisory_xact_lock(%s)", (xact_key,))
            hanging.execute("UPDATE safeface.pending SET op = 'delete' WHERE row_id = 424242")

        # A session holding the lock; a record transaction holding its half; the same, holding a
        # pending write's row too.
        with psycopg.connect(dsn, password=PG_PASSWORD) as hanging:
            for outcome in (
                    removal_behind(lambda: other.execute("SELECT pg_advisory_lock(%s)", (session_key,)),
                                   lambda: other.execute("SELECT pg_advisory_unlock(%s)", (session_key,))),
                    removal_behind(lambda: hanging.execute("SELECT pg_advisory_xact_lock(%s)", (xact_key,)),
                                   hanging.rollback),
                    removal_behind(erasure_left_hanging, hanging.rollback)):
                assert len(outcome) == 1 and isinstance(outcome[0], ConfigError), outcome
                assert "not free within" in str(outcome[0]) and PG_PASSWORD not in str(outcome[0])
    assert trusted()
    assert keys_remove(ws, "consent-issuer", b.thumbprint).thumbprint == b.thumbprint
    assert not trusted()


def test_a_key_removal_on_postgresql_waits_its_limit_once_across_both_halves_of_the_lock(
        pg: PgCluster, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """STORE_LOCK_WAIT_S bounds the removal's whole wait, not each lock's: behind one writer
    holding the session half and then another holding the transaction half, each for less than
    the limit, it waited nearly twice the limit and went ahead; now it gives up once the limit
    has passed since it began, changing nothing."""
    import psycopg

    import safeface.workspace.admin as admin
    from safeface.workspace.admin import keys_list, keys_new

    ws, dsn = server_workspace(pg, tmp_path)
    b = keys_new(ws, "consent-issuer", tmp_path / "b.pem", label="consent service B")

    session_key, xact_key = _lock_key("safeface write lock safeface"), _lock_key("safeface write transaction lock safeface")
    limit = 3.0
    monkeypatch.setattr(admin, "STORE_LOCK_WAIT_S", limit)

    with psycopg.connect(dsn, password=PG_PASSWORD, autocommit=True) as watch, \
            psycopg.connect(dsn, password=PG_PASSWORD, autocommit=True) as first, \
            psycopg.connect(dsn, password=PG_PASSWORD) as second:
        first.execute("SELECT pg_advisory_lock(%s)", (session_key,))
        second.execute("SELECT pg_advisory_xact_lock(%s)", (xact_key,))
        remover, outcome = _removal_started(ws, b.thumbprint)
        _waiting_on(watch, session_key)
        time.sleep(limit / 2)  # half the limit spent behind the first writer
        first.execute("SELECT pg_advisory_unlock(%s)", (session_key,))
        _waiting_on(watch, xact_key)
        remover.join(limit * 0.8)  # less than the limit behind the second, more than what was left
        second.rollback()
        remover.join(60)
    assert not remover.is_alive()
    assert len(outcome) == 1 and isinstance(outcome[0], ConfigError), outcome
    assert "not free within" in str(outcome[0])
    assert any(k["thumbprint"] == b.thumbprint and not k.get("removed") for k in keys_list(ws))


def test_a_key_removal_on_postgresql_lands_while_the_store_does_not_open(pg: PgCluster, tmp_path: Path) -> None:
    """The removal takes the server store's write lock without opening the store: one whose
    meta was edited by hand (so it refuses to open) held up the removal of a stolen key until it
    was repaired. Now the key goes, and the store still refuses to open."""
    import psycopg

    from safeface.workspace.admin import keys_list, keys_new, keys_remove

    ws, dsn = server_workspace(pg, tmp_path)
    b = keys_new(ws, "consent-issuer", tmp_path / "b.pem", label="consent service B")
    with psycopg.connect(dsn, password=PG_PASSWORD, autocommit=True) as other:
        other.execute("UPDATE safeface.meta SET v = 'ffffffffffffffff' WHERE k = 'seal_key_id'")
    with pytest.raises(ConfigError, match="seal key version"):
        SafeFace.open(ws).close()
    assert keys_remove(ws, "consent-issuer", b.thumbprint).thumbprint == b.thumbprint
    assert any(k["thumbprint"] == b.thumbprint and k.get("removed") for k in keys_list(ws))
    with pytest.raises(ConfigError, match="seal key version"):
        SafeFace.open(ws).close()


def test_a_key_removal_on_postgresql_waiting_while_the_records_move_changes_nothing(
        pg: PgCluster, tmp_path: Path) -> None:
    """A removal that waited for the server store's write lock while deployment.json moved the
    records elsewhere refuses once it has the lock, and the key stays trusted."""
    import psycopg

    from safeface.workspace.admin import keys_list, keys_new

    ws, dsn = server_workspace(pg, tmp_path)
    b = keys_new(ws, "consent-issuer", tmp_path / "b.pem", label="consent service B")
    session_key = _lock_key("safeface write lock safeface")
    config = WorkspacePaths(ws).config
    with psycopg.connect(dsn, password=PG_PASSWORD, autocommit=True) as other:
        other.execute("SELECT pg_advisory_lock(%s)", (session_key,))
        remover, outcome = _removal_started(ws, b.thumbprint)
        _waiting_on(other, session_key)
        before = config.read_text()
        doc = json.loads(before)
        doc["storage"]["records"] = pg.new_database()  # the records moved meanwhile
        config.write_text(json.dumps(doc, indent=2))
        other.execute("SELECT pg_advisory_unlock(%s)", (session_key,))
        remover.join(60)
    config.write_text(before)  # moved back, to read the keys it trusts
    assert not remover.is_alive()
    assert len(outcome) == 1 and isinstance(outcome[0], ConfigError), outcome
    assert "records moved" in str(outcome[0])
    assert any(k["thumbprint"] == b.thumbprint and not k.get("removed") for k in keys_list(ws))


def test_a_key_removal_on_postgresql_takes_the_write_lock_of_the_stores_own_namespace(
        pg: PgCluster, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A workspace whose records sit in another schema (storage.namespace): `keys remove` waits
    for that store's write lock, so behind a writer holding it it gives up and the key stays
    trusted."""
    import psycopg

    import safeface.workspace.admin as admin
    from safeface.workspace.admin import keys_list, keys_new, keys_remove

    ws = tmp_path / "ws"
    init_workspace(ws, demo=True)
    dsn = pg.new_database()
    with SafeFace.open(ws) as sf:
        sf.migrate_storage({"records": dsn, "vectors": "milvus-lite:vectors.db", "namespace": "tenant_b"})
    b = keys_new(ws, "consent-issuer", tmp_path / "b.pem", label="consent service B")
    monkeypatch.setattr(admin, "STORE_LOCK_WAIT_S", 0.5)
    session_key = _lock_key("safeface write lock tenant_b")
    with psycopg.connect(dsn, password=PG_PASSWORD, autocommit=True) as other:
        other.execute("SELECT pg_advisory_lock(%s)", (session_key,))
        with pytest.raises(ConfigError, match="not free within"):
            keys_remove(ws, "consent-issuer", b.thumbprint)
        assert any(k["thumbprint"] == b.thumbprint and not k.get("removed") for k in keys_list(ws))
        other.execute("SELECT pg_advisory_unlock(%s)", (session_key,))
    assert keys_remove(ws, "consent-issuer", b.thumbprint).thumbprint == b.thumbprint


def test_a_logout_neither_server_store_can_record_still_ends_the_session_on_every_host(
        pg: PgCluster, tmp_path: Path) -> None:
    """On a server workspace, a logout that neither the audit log nor the ended sessions' table
    took (a trigger refusing each) ended the session in the process asked alone: a copy of the
    cookie sent to another worker or host read on, and the local logouts folder is read by no other
    host. The end is kept in the session's row of uses in the store, MACed, which every process
    reads, and which still ends it once the tables work again; a row written for another session
    without the keyring ends nothing."""
    ws, dsn = server_workspace(pg, tmp_path)
    with SafeFace.open(ws) as sf:
        _, key = sf.issue_api_key("operator", label="console")
        _, cookie = sf.open_session(key)
        _, other = sf.open_session(key)
        _sql(dsn, "CREATE FUNCTION safeface.refuse() RETURNS trigger LANGUAGE plpgsql AS "
                  "$$ BEGIN RAISE EXCEPTION 'refused'; END $$")
        for table in ("audit_entries", "service_ended_sessions"):
            _sql(dsn, f"CREATE TRIGGER keep BEFORE INSERT ON safeface.{table} FOR EACH ROW "
                      "EXECUTE FUNCTION safeface.refuse()")
        assert sf.end_session(cookie) is True
    for table in ("audit_entries", "service_ended_sessions"):  # the stores repaired: neither ended it
        _sql(dsn, f"DROP TRIGGER keep ON safeface.{table}")
    _sql(dsn, "DROP FUNCTION safeface.refuse()")
    from safeface.workspace.apikeys import session_ref

    ((mac,),) = _sql(dsn, f"SELECT mac FROM safeface.service_session_uses WHERE session = '{session_ref(cookie)}'")
    _sql(dsn, f"INSERT INTO safeface.service_session_uses VALUES ('{session_ref(other)}', {other.split('.')[1]}, "
              f"{other.split('.')[1]}, '{mac}')")  # the end's MAC is the other session's
    with SafeFace.open(ws) as sf:  # another process, on another host
        with pytest.raises(AuthenticationError, match="logged out"):
            sf.session(cookie)
        assert sf.session(other).role == "operator"


def test_a_logout_kept_only_in_the_logouts_folder_still_ends_the_session_after_a_move_to_the_server(
        pg: PgCluster, tmp_path: Path) -> None:
    """A local workspace's logout that neither store took is kept in a MACed file of its own
    (console-logouts/), which no host of a server workspace reads: `storage migrate` left it
    behind, and the session was live again on the server. The move carries it into the session's
    row of uses there (end_session_in_uses); a file written by hand, without the keyring, is not."""
    import sqlite3
    from contextlib import closing

    from safeface.workspace.apikeys import session_ref

    ws, paths, cookie, other = _local_workspace_with_two_sessions(tmp_path)
    with SafeFace.open(ws) as sf:
        for db_path, table in ((paths.apikeys, "ended_sessions"), (paths.audit, "entries")):
            with closing(sqlite3.connect(db_path)) as db, db:
                db.execute(f"CREATE TRIGGER keep BEFORE INSERT ON {table} BEGIN SELECT 1; END")
        assert sf.end_session(cookie) is True
    for db_path in (paths.apikeys, paths.audit):  # the stores repaired: only the file ended it
        with closing(sqlite3.connect(db_path)) as db, db:
            db.execute("DROP TRIGGER keep")
    (written,) = (p for p in paths.console_logouts.iterdir() if p.is_file())
    doc = {**json.loads(written.read_text()), "session": session_ref(other), "until": int(other.split(".")[1])}
    (written.parent / f"{doc['until']}-{doc['session']}.json").write_text(json.dumps(doc))  # the MAC is the other's
    with SafeFace.open(ws) as sf:
        sf.migrate_storage({"records": pg.new_database(), "vectors": "milvus-lite:vectors.db"})
    with SafeFace.open(ws) as sf:  # a process of the server workspace
        with pytest.raises(AuthenticationError, match="logged out"):
            sf.session(cookie)
        assert sf.session(other).role == "operator"


def test_a_logout_kept_only_in_the_ended_sessions_table_still_ends_the_session_after_a_move_to_the_server(
        pg: PgCluster, tmp_path: Path) -> None:
    """A local workspace's logout that the audit log refused but the key store's ended sessions
    took: `storage migrate` carried the keys and the sessions' uses, not the ended sessions, so
    the session was live again on the server."""
    import sqlite3
    from contextlib import closing

    ws, paths, cookie, other = _local_workspace_with_two_sessions(tmp_path)
    with SafeFace.open(ws) as sf:
        with closing(sqlite3.connect(paths.audit)) as db, db:
            db.execute("CREATE TRIGGER keep BEFORE INSERT ON entries BEGIN SELECT RAISE(ABORT, 'refused'); END")
        assert sf.end_session(cookie) is True
    with closing(sqlite3.connect(paths.audit)) as db, db:  # the log repaired: only the key store ended it
        db.execute("DROP TRIGGER keep")
    with SafeFace.open(ws) as sf:
        with pytest.raises(AuthenticationError, match="logged out"):
            sf.session(cookie)
        sf.migrate_storage({"records": pg.new_database(), "vectors": "milvus-lite:vectors.db"})
    with SafeFace.open(ws) as sf:  # a process of the server workspace
        with pytest.raises(AuthenticationError, match="logged out"):
            sf.session(cookie)
        assert sf.session(other).role == "operator"
