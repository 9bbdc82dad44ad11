"""`safeface serve` over real HTTP on a workspace whose records, audit chain and policy state are
in PostgreSQL and whose vectors are in Milvus Lite: enrol, identify, erase, audit verify."""

from __future__ import annotations

import datetime as dt
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
from child_process import child_env  # noqa: E402
from policy_support import PASSPHRASE, consent, images, make_workspace, open_sf  # noqa: E402
from server_support import PG_PASSWORD, MilvusServer, PgCluster, server_modules, start_milvus, wait_answering  # noqa: E402
from service_support import Server, httpx, jpeg_640, key_header, post_image  # noqa: E402

from safeface.policy.deployment import Deployment  # noqa: E402
from safeface.workspace.apikeys import hashing_key  # noqa: E402
from safeface.workspace.passphrase import open_keyring  # noqa: E402
from safeface.workspace.session import open_apikeys  # noqa: E402


@pytest.mark.slow
def test_service_enrol_identify_erase_on_postgresql_and_milvus_lite(pg: PgCluster, tmp_path: Path) -> None:
    import psycopg

    server_modules()
    img = images()
    paths = make_workspace(tmp_path / "ws")
    dsn = pg.new_database()
    with open_sf(paths) as sf:
        op = sf.issue_api_key("operator", label="op")[1]
        kiosk = sf.issue_api_key("kiosk", label="gate")[1]
    # Migrated by another process: Milvus Lite's file is then free for the service (this process
    # never opens it; Milvus Lite keeps a file locked for the life of the process that opened it).
    subprocess.run([sys.executable, "-m", "safeface.cli", "storage", "migrate", str(paths.root), "--to", "server",
                    "--records", dsn, "--vectors", "milvus-lite:vectors.db"], env=child_env(SAFEFACE_PASSPHRASE=PASSPHRASE),
                   cwd=str(tmp_path), check=True, capture_output=True, timeout=300)
    assert not paths.audit.exists() and not paths.policy.exists() and not paths.apikeys.exists()
    tokens = {p: consent(paths, p) for p in ("alice", "bob")}
    server = Server(paths.root, tmp_path / "server.log").wait_ready()
    try:
        url = server.url
        subjects: dict[str, Any] = {}
        for person, face in (("alice", "obama.jpg"), ("bob", "biden.jpg")):
            r = post_image(url, "/v1/enroll", op, jpeg_640(img / face), subject=person, purpose="demo",
                           consent=tokens[person])
            assert r.status_code == 200, r.text
            subjects[person] = r.json()["subject"]
        probe = jpeg_640(img / "obama2.jpg")
        r = post_image(url, "/v1/identify", kiosk, probe, purpose="demo", consent=tokens["alice"])
        assert r.status_code == 200, r.text
        assert r.json()["candidates"][0]["subject"] == subjects["alice"]
        assert httpx.get(url + "/v1/ready", timeout=30).json()["index"] == "up"
        assert "safeface_index_up 1" in httpx.get(url + "/metrics", timeout=30).text.splitlines()
        fresh = consent(paths, "alice")  # a consent given before the erasure is withdrawn by it
        r = httpx.post(url + "/v1/erase", json={"subject": "alice"}, headers=key_header(op), timeout=120)
        assert r.status_code == 200 and r.json()["templates_removed"] == 1 and r.json()["vectors"] == "removed", r.text
        r = post_image(url, "/v1/identify", kiosk, probe, purpose="demo", consent=tokens["bob"])
        assert subjects["alice"] not in [c["subject"] for c in r.json()["candidates"]]
        r = post_image(url, "/v1/verify", op, probe, subject="alice", purpose="demo", consent=fresh)
        assert r.status_code == 403 and r.json()["rule"] == "CN-05", r.text
        r = httpx.get(url + "/v1/audit/verify", headers=key_header(op), timeout=120)
        assert r.status_code == 200 and r.json()["ok"] is True, r.text
        # The API keys moved too: a key revoked by another process (another host of the
        # service) is refused by this one at its next request.
        keys = open_apikeys(paths, Deployment.load(paths.config),
                            hashing_key(open_keyring(paths, PASSPHRASE).key("pseudonym")))
        keys.revoke(kiosk.split("_")[1], dt.datetime.now(dt.timezone.utc))
        keys.close()
        assert post_image(url, "/v1/identify", kiosk, probe, purpose="demo", consent=tokens["bob"]).status_code == 401
    finally:
        server.stop()
    # The service wrote to PostgreSQL: bob's sealed row, and the chain with each call and its key.
    with psycopg.connect(dsn, password=PG_PASSWORD, autocommit=True) as c:
        assert c.execute("SELECT count(*) FROM safeface.rows").fetchone()[0] == 1
        ops = [(o, d, (a or "").split(" ")[0])  # the key id (the actor names where it was checked, too)
               for o, d, a in c.execute("SELECT operation, decision, actor FROM safeface.audit_entries ORDER BY seq")]
        revoked = c.execute("SELECT count(*) FROM safeface.state_revoked_subjects").fetchone()[0]
    assert ("erase", "allowed", op.split("_")[1]) in ops
    assert ("identify", "allowed", kiosk.split("_")[1]) in ops and ("verify", "refused", op.split("_")[1]) in ops
    assert revoked >= 1  # the erasure's revocation is policy state, in PostgreSQL too
    assert not paths.audit.exists() and not paths.gallery.exists() and not paths.apikeys.exists()
    with psycopg.connect(dsn, password=PG_PASSWORD, autocommit=True) as c:
        assert c.execute("SELECT count(*) FROM safeface.service_apikeys WHERE revoked IS NOT NULL AND digest = ''"
                         ).fetchone()[0] == 1


def _migrated_to_milvus(pg: PgCluster, tmp_path: Path) -> tuple[Any, str, MilvusServer]:
    """A workspace moved to a new PostgreSQL database and a Milvus server of its own (running)."""
    server_modules()
    paths = make_workspace(tmp_path / "ws")
    dsn = pg.new_database()
    own = start_milvus(tmp_path / "milvus-data")
    try:
        subprocess.run([sys.executable, "-m", "safeface.cli", "storage", "migrate", str(paths.root), "--to", "server",
                        "--records", dsn, "--vectors", f"milvus:{own.uri}"],
                       env=child_env(SAFEFACE_PASSPHRASE=PASSPHRASE), cwd=str(tmp_path), check=True,
                       capture_output=True, timeout=300)
    except BaseException:
        own.stop()
        raise
    return paths, dsn, own


@pytest.mark.slow
def test_a_service_started_while_milvus_is_down_serves_from_the_records(pg: PgCluster, tmp_path: Path) -> None:
    """A service (re)started during a Milvus outage never became ready: opening the workspace's
    store raised, while a service already running served from the records. Now it starts: it
    identifies from the records, erases (the vector removal left noted), and answers an enrolment
    503 with Retry-After, a call to make again, rather than a 500."""
    img = images()
    paths, dsn, own = _migrated_to_milvus(pg, tmp_path)
    try:
        tokens = {p: consent(paths, p) for p in ("alice", "bob", "carol")}
        with open_sf(paths) as sf:
            op = sf.issue_api_key("operator", label="op")[1]
            kiosk = sf.issue_api_key("kiosk", label="gate")[1]
            alice = sf.enroll(img / "obama.jpg", "alice", "demo", tokens["alice"]).pseudonym
            sf.enroll(img / "biden.jpg", "bob", "demo", tokens["bob"])
        own.stop()
        server = Server(paths.root, tmp_path / "server.log").wait_ready()
        try:
            # Ready (the records answer), and says the index is out of reach.
            assert httpx.get(server.url + "/v1/ready", timeout=30).json()["index"] == "opening"
            assert "safeface_index_up 0" in httpx.get(server.url + "/metrics", timeout=30).text.splitlines()
            r = post_image(server.url, "/v1/identify", kiosk, jpeg_640(img / "obama2.jpg"), purpose="demo",
                           consent=tokens["alice"])
            assert r.status_code == 200 and r.json()["candidates"][0]["subject"] == alice, r.text
            r = httpx.post(server.url + "/v1/erase", json={"subject": "bob"}, headers=key_header(op), timeout=120)
            assert r.status_code == 200 and r.json()["templates_removed"] == 1, r.text
            assert r.json()["vectors"] == "pending", r.text
            r = post_image(server.url, "/v1/enroll", op, jpeg_640(img / "biden.jpg"), subject="carol",
                           purpose="demo", consent=tokens["carol"])
            assert r.status_code == 503 and r.headers["retry-after"] == "30", r.text
            assert r.json()["error"] == "IndexUnavailable" and "Milvus" not in r.text, r.text
            from safeface.client import Client
            from safeface.errors import IndexUnavailable

            with Client(server.url, op) as client, pytest.raises(IndexUnavailable) as down:
                client.enroll(jpeg_640(img / "biden.jpg"), "carol", "demo", consent=tokens["carol"])
            assert down.value.retry_after == 30.0
            assert "safeface_index_unavailable_total 2" in httpx.get(server.url + "/metrics", timeout=30).text
        finally:
            server.stop()
    finally:
        own.stop()
    with psycopg_connect(dsn) as c:
        assert c.execute("SELECT count(*) FROM safeface.rows").fetchone()[0] == 1
        assert c.execute("SELECT count(*) FROM safeface.pending WHERE op = 'delete'").fetchone()[0] == 1


@pytest.mark.slow
def test_ready_says_how_the_workers_answer_while_milvus_goes_and_comes_back(pg: PgCluster, tmp_path: Path) -> None:
    """/v1/ready's "index" and safeface_index_up were read from the service's main handle,
    which only checks credentials: with Milvus stopped under a running service, the workers
    answered from the records while ready said "up"; started during an outage, it said
    "opening" for good, after the workers had finished opening. Now they are read from the
    workers' handles."""
    img = images()
    paths, dsn, own = _migrated_to_milvus(pg, tmp_path)
    try:
        token = consent(paths, "alice")
        with open_sf(paths) as sf:
            kiosk = sf.issue_api_key("kiosk", label="gate")[1]
            alice = sf.enroll(img / "obama.jpg", "alice", "demo", token).pseudonym
        probe = jpeg_640(img / "obama2.jpg")

        def identify() -> None:
            r = post_image(server.url, "/v1/identify", kiosk, probe, purpose="demo", consent=token)
            assert r.status_code == 200 and r.json()["candidates"][0]["subject"] == alice, r.text

        def index() -> tuple[str, bool]:
            up = "safeface_index_up 1" in httpx.get(server.url + "/metrics", timeout=30).text.splitlines()
            return httpx.get(server.url + "/v1/ready", timeout=30).json()["index"], up

        def until_up() -> None:
            deadline = time.monotonic() + 120
            while index() != ("up", True):
                assert time.monotonic() < deadline, index()
                identify()  # a worker asks Milvus again once its retry window has passed
                time.sleep(1)

        server = Server(paths.root, tmp_path / "server.log", ["--threads", "1"]).wait_ready()
        try:
            identify()
            assert index() == ("up", True)
            own.stop()
            identify()  # from the records
            assert index() == ("down", False)
            own = wait_answering(start_milvus(tmp_path / "milvus-data", port=own.port))
            until_up()
        finally:
            server.stop()
        own.stop()
        server = Server(paths.root, tmp_path / "server2.log", ["--threads", "1"]).wait_ready()
        try:
            assert index() == ("opening", False)
            identify()
            own = wait_answering(start_milvus(tmp_path / "milvus-data", port=own.port))
            until_up()
        finally:
            server.stop()
    finally:
        own.stop()


def psycopg_connect(dsn: str) -> Any:
    import psycopg

    return psycopg.connect(dsn, password=PG_PASSWORD, autocommit=True)
