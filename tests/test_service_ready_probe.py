"""/v1/ready's records check while the audit log's tables are locked in PostgreSQL (a DBA's
`LOCK TABLE`, a `VACUUM FULL`): the probe may wait, the rest of the service must not."""

from __future__ import annotations

import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from child_process import child_env  # noqa: E402
from policy_support import PASSPHRASE, make_workspace, open_sf  # noqa: E402
from server_support import PG_PASSWORD, PgCluster, server_modules  # noqa: E402
from service_support import Server, httpx  # noqa: E402


def _status(url: str, **headers: str) -> Any:
    try:
        return httpx.get(url, headers=headers, timeout=10).status_code
    except httpx.HTTPError as exc:
        return repr(exc)


def test_a_ready_probe_waiting_on_a_locked_audit_table_does_not_stop_the_service(pg: PgCluster,
                                                                                tmp_path: Path) -> None:
    """Someone holds an exclusive lock on the audit head table and a balancer probes /v1/ready:
    /v1/health, another probe and an authenticated call still answer, where the service froze."""
    import psycopg

    server_modules()
    paths = make_workspace(tmp_path / "ws")
    dsn = pg.new_database()
    with open_sf(paths) as sf:
        op = sf.issue_api_key("operator", label="op")[1]
    subprocess.run([sys.executable, "-m", "safeface.cli", "storage", "migrate", str(paths.root), "--to", "server",
                    "--records", dsn, "--vectors", "milvus-lite:vectors.db"],
                   env=child_env(SAFEFACE_PASSPHRASE=PASSPHRASE), cwd=str(tmp_path), check=True,
                   capture_output=True, timeout=300)
    server = Server(paths.root, tmp_path / "server.log").wait_ready()
    got: dict[str, Any] = {}
    try:
        with psycopg.connect(dsn, password=PG_PASSWORD) as db:
            db.execute("LOCK TABLE safeface.audit_head IN ACCESS EXCLUSIVE MODE")
            waiting = threading.Thread(target=lambda: got.update(first=_status(server.url + "/v1/ready")))
            waiting.start()
            time.sleep(1)  # the first probe now waits on the lock
            authed = threading.Thread(target=lambda: got.update(key=_status(server.url + "/v1/report",
                                                                            **{"X-API-Key": op})))
            authed.start()
            time.sleep(1)  # its credential check done (it then waits on the lock, off the event loop)
            got["health"] = _status(server.url + "/v1/health")
            got["second"] = _status(server.url + "/v1/ready")
            db.rollback()
        waiting.join()
        authed.join()
    finally:
        server.stop()
    assert got["health"] == 200 and got["second"] == 200, got
    assert got["first"] == 200 and got["key"] == 200, got
