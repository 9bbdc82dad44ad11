"""A running service over PostgreSQL whose connections the server ended: an operator's
`pg_terminate_backend`, a server restart. It refused every call until it was restarted; now the
call after answers, the call caught inside its store transaction fails whole, and the store and
the log check clean."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
from child_process import child_env  # noqa: E402
from policy_support import PASSPHRASE, consent, images, make_workspace, open_sf  # noqa: E402
from server_support import PG_PASSWORD, PgCluster, server_modules  # noqa: E402
from disk_support import started_service  # noqa: E402


def _sql(dsn: str, query: str, args: tuple[Any, ...] = ()) -> list[Any]:
    import psycopg

    with psycopg.connect(dsn, password=PG_PASSWORD, autocommit=True) as c:
        cur = c.execute(query, args)
        return cur.fetchall() if cur.description else []


def _end_all(dsn: str) -> int:
    """End every other session on the database (the service's, whatever they hold), waiting
    until each is gone."""
    pids = [int(p) for p, in _sql(dsn, "SELECT pid FROM pg_stat_activity WHERE datname = current_database() AND "
                                       "pid <> pg_backend_pid()")]
    for pid in pids:
        _sql(dsn, "SELECT pg_terminate_backend(%s, 60000)", (pid,))
    return len(pids)


def _service_ws(pg: PgCluster, root: Path) -> tuple[Any, str, str, dict[str, str]]:
    server_modules()
    ws = make_workspace(root / "ws")
    dsn = pg.new_database()
    with open_sf(ws) as sf:
        _, op = sf.issue_api_key("operator", label="operator", rate=1000)
        tokens = {s: consent(ws, s) for s in ("alice", "joe", "bob", "carol", "dave")}
        sf.migrate_storage({"records": dsn, "vectors": "milvus-lite:vectors.db"})
    return ws, dsn, op, tokens


def _enroll(client: Any, op: str, subject: str, token: str, photo: str = "obama.jpg") -> Any:
    return client.post("/v1/enroll", headers={"X-API-Key": op},
                       files={"image": ("f.jpg", (images() / photo).read_bytes(), "image/jpeg")},
                       data={"subject": subject, "purpose": "demo", "consent": token})


def _rows(dsn: str) -> int:
    return int(_sql(dsn, "SELECT count(*) FROM safeface.rows")[0][0])


def _audit_verify(ws: Any, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "safeface.cli", "audit", "verify", str(ws.root)], cwd=str(cwd),
                          env=child_env(SAFEFACE_PASSPHRASE=PASSPHRASE), capture_output=True, text=True, timeout=300)


@pytest.mark.slow  # a service started, about 30 s on 2 cores
def test_the_service_answers_again_after_its_connections_are_ended_and_after_a_restart(pg: PgCluster, tmp_path: Path,
                                                                                       monkeypatch: Any) -> None:
    """Every session of the service ended (`pg_terminate_backend`): the next enrolment and
    identification answer 200. An enrolment whose store connection is ended inside its
    transaction (after its audit entry) answers a 503 to retry and stores nothing; the one after
    answers 200. PostgreSQL stopped and started again under the running service (`pg_ctl
    restart`): the next enrolment answers 200. `safeface audit verify` finds nothing wrong."""
    from safeface.storage.server import ServerStore

    ws, dsn, op, tokens = _service_ws(pg, tmp_path)
    (tmp_path / "scratch").mkdir()
    real = ServerStore.add_many
    end_it: list[bool] = []

    def add_many(self: ServerStore, items: Any, *, decide: Any = None, before_commit: Any = None) -> Any:
        def ending(stored: Any) -> None:
            before_commit(stored)
            if end_it:
                _sql(dsn, "SELECT pg_terminate_backend(%s, 60000)", (self._conn.info.backend_pid,))

        return real(self, items, decide=decide, before_commit=ending)

    monkeypatch.setattr(ServerStore, "add_many", add_many)
    with started_service(ws.root, tmp_path / "scratch") as client:
        assert _enroll(client, op, "alice", tokens["alice"]).status_code == 200
        assert _end_all(dsn) >= 5
        r = _enroll(client, op, "joe", tokens["joe"], "biden.jpg")
        assert r.status_code == 200, r.text
        r = client.post("/v1/identify", headers={"X-API-Key": op},
                        files={"image": ("f.jpg", (images() / "obama2.jpg").read_bytes(), "image/jpeg")},
                        data={"purpose": "demo", "consent": tokens["bob"]})
        assert r.status_code == 200 and len(r.json()["candidates"]) == 1, r.text
        end_it.append(True)
        r = _enroll(client, op, "bob", tokens["bob"], "obama2.jpg")
        # Rolled back, and a 503 to retry (not a 500): the next call reconnects.
        assert r.status_code == 503 and r.json()["error"] == "StoreConnectionLost", r.text
        assert r.headers["Retry-After"] == "1"
        end_it.clear()
        assert _rows(dsn) == 2
        assert _enroll(client, op, "carol", tokens["carol"], "obama3.jpg").status_code == 200
        assert client.get("/v1/ready").status_code == 200
        pg.restart()  # PostgreSQL stopped and started again under the running service
        r = _enroll(client, op, "dave", tokens["dave"], "biden.jpg")
        assert r.status_code == 200, r.text
        assert client.get("/v1/ready").status_code == 200
    assert _rows(dsn) == 4
    done = _audit_verify(ws, tmp_path)
    assert done.returncode == 0, done.stdout + done.stderr
