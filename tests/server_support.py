"""A real PostgreSQL cluster and a real Milvus Lite server for the server-store tests, started once
per test session in a temporary folder on free ports.

PostgreSQL comes from Debian's postgresql package (initdb, pg_ctl); initdb refuses to run as
root, so as root the cluster runs as the `postgres` system user. Password authentication is on
(scram-sha-256), so wrong credentials are refused as they would be in production."""

from __future__ import annotations

import glob
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import types
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator, Optional

import pytest

PG_USER = "safeface_test"
PG_PASSWORD = "not a secret: test cluster only"


def _pg_bin() -> Optional[Path]:
    for d in sorted(glob.glob("/usr/lib/postgresql/*/bin"), reverse=True):
        if Path(d, "initdb").is_file() and Path(d, "pg_ctl").is_file():
            return Path(d)
    found = shutil.which("initdb")
    return Path(found).parent if found else None


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _as_owner(cmd: list[str], owner: Optional[str]) -> list[str]:
    return ["runuser", "-u", owner, "--", *cmd] if owner else cmd


@dataclass
class PgCluster:
    bin: Path
    data: Path
    port: int
    owner: Optional[str]

    def dsn(self, db: str = "postgres", user: str = PG_USER) -> str:
        return f"postgresql://{user}@127.0.0.1:{self.port}/{db}"

    def new_database(self) -> str:
        import psycopg

        name = "t_" + uuid.uuid4().hex[:12]
        with psycopg.connect(self.dsn(), password=PG_PASSWORD, autocommit=True) as c:
            c.execute(f"CREATE DATABASE {name}")
        return self.dsn(name)

    def stop(self) -> None:
        subprocess.run(_as_owner([str(self.bin / "pg_ctl"), "-D", str(self.data), "-m", "immediate", "stop"],
                                 self.owner), capture_output=True, timeout=60)

    def restart(self) -> None:
        """Stop (ending every session, as a server restart does) and start again with the same
        options, once it takes connections."""
        subprocess.run(_as_owner([str(self.bin / "pg_ctl"), "-D", str(self.data), "-m", "fast", "-w", "-l",
                                  str(self.data.parent / "log"), "restart"],
                                 self.owner), check=True, capture_output=True, timeout=120)


def start_pg(base: Path, port: int = 0) -> PgCluster:
    """A new cluster in `base`, on `port` (a stopped cluster's, so that a DSN naming it reaches
    this one instead) or a free one."""
    bin_dir = _pg_bin()
    if bin_dir is None:
        pytest.skip("PostgreSQL's server binaries (initdb, pg_ctl) are absent: apt-get install postgresql")
    owner = "postgres" if os.geteuid() == 0 else None
    base.mkdir(parents=True, exist_ok=True)
    data, pwfile = base / "pgdata", base / "pwfile"
    pwfile.write_text(PG_PASSWORD + "\n")
    if owner:
        shutil.chown(base, owner)
        shutil.chown(pwfile, owner)
        os.chmod(base, 0o700)
    subprocess.run(_as_owner([str(bin_dir / "initdb"), "-D", str(data), "-U", PG_USER, "--auth=scram-sha-256",
                              f"--pwfile={pwfile}", "-E", "UTF8", "--no-sync"], owner),
                   check=True, capture_output=True, timeout=120)
    port = port or free_port()
    opts = f"-c listen_addresses=127.0.0.1 -c port={port} -c unix_socket_directories={base} -c fsync=off"
    subprocess.run(_as_owner([str(bin_dir / "pg_ctl"), "-D", str(data), "-o", opts, "-l", str(base / "log"), "-w",
                              "start"], owner), check=True, capture_output=True, timeout=120)
    return PgCluster(bin_dir, data, port, owner)


@dataclass
class MilvusServer:
    proc: subprocess.Popen  # type: ignore[type-arg]
    port: int
    data: Path

    @property
    def uri(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.kill()

    def kill(self) -> None:
        """At once, for the end of a session: a server holding many collections may take most of
        stop's 20 s to shut down, and its data is thrown away anyway."""
        self.proc.kill()
        self.proc.wait()


def start_milvus(data: Path, port: int = 0) -> MilvusServer:
    """Milvus Lite as a server process, so several processes can share one collection; on
    `port` (a stopped server's, to start it again where its clients look) or a free one."""
    port = port or free_port()
    log = open(data.parent / f"milvus-{port}.log", "ab")
    proc = subprocess.Popen([sys.executable, "-m", "milvus_lite", "server", "--data-dir", str(data), "--host",
                             "127.0.0.1", "--port", str(port)], stdout=log, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"the Milvus Lite server exited: {(data.parent / f'milvus-{port}.log').read_text()}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return MilvusServer(proc, port, data)
        except OSError:
            time.sleep(0.2)
    proc.kill()
    raise RuntimeError("the Milvus Lite server did not start within 60 s")


def wait_answering(server: MilvusServer, timeout: float = 60.0) -> MilvusServer:
    """`server` once it answers a request (a server just started takes connections before it
    serves them)."""
    from pymilvus import MilvusClient

    deadline = time.monotonic() + timeout
    while True:
        try:
            client = MilvusClient(uri=server.uri, timeout=5)
            try:
                client.get_server_version(timeout=5)
                return server
            finally:
                client.close()
        except Exception:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.3)


def while_held(dsn: str, lock: str, call: Callable[[], Any], params: tuple[Any, ...] = (),
               within: float = 15.0) -> Any:
    """What `call` returns or raises while another session holds the locks `lock` (with `params`)
    takes in an open transaction. The call runs in a thread and must answer `within` seconds:
    where it waits for ever, the session's rollback then lets it go, so a failure here is an
    assertion, not a hung test."""
    import threading

    import psycopg

    out: list[Any] = []

    def run() -> None:
        try:
            out.append(call())
        except Exception as exc:  # noqa: BLE001 - returned to the test, which asserts on it
            out.append(exc)

    holder = psycopg.connect(dsn, password=PG_PASSWORD)  # not autocommit: its transaction stays open
    try:
        holder.execute(lock, params)
        waiter = threading.Thread(target=run)
        waiter.start()
        waiter.join(within)
        answered = not waiter.is_alive()
    finally:
        holder.rollback()
        holder.close()
    waiter.join(30)
    assert answered, f"still waiting for the lock of: {lock}"
    return out[0]


def server_modules() -> None:
    for mod in ("psycopg", "pymilvus", "milvus_lite"):
        try:
            __import__(mod)
        except ImportError:
            pytest.skip(f"{mod} is not installed: pip install '.[server,test]'")


def pg_fixture() -> Iterator[PgCluster]:
    """A session's cluster, in a folder of its own under the system temp dir (pytest's temp
    folders are private to the user running the tests, which the `postgres` user cannot enter)."""
    server_modules()
    base = Path(tempfile.mkdtemp(prefix="safeface-pg-"))
    cluster = start_pg(base)
    old = os.environ.get("SAFEFACE_PG_PASSWORD")
    os.environ["SAFEFACE_PG_PASSWORD"] = PG_PASSWORD
    try:
        yield cluster
    finally:
        cluster.stop()
        if old is None:
            os.environ.pop("SAFEFACE_PG_PASSWORD", None)
        shutil.rmtree(base, ignore_errors=True)


class SteppedClock:
    """`time.monotonic` of one module, standing still until the test moves it: a retry window of
    a fraction of a second then holds however slowly a loaded machine runs the steps inside it.
    The module's other uses of `time` are the real ones."""

    def __init__(self, module: object, monkeypatch: pytest.MonkeyPatch) -> None:
        self.now = time.monotonic()
        shim = types.SimpleNamespace(**{n: getattr(time, n) for n in dir(time) if not n.startswith("_")})
        shim.monotonic = lambda: self.now
        monkeypatch.setattr(module, "time", shim)

    def advance(self, seconds: float) -> None:
        self.now += seconds
