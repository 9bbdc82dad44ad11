"""A disk of a test's own: a child process run as root in a mount namespace of its own, where a
shell command first mounts the disk (a small tmpfs, a loop ext4 image), so filling it or making it
fail touches nothing of the host's."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import sqlite3
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Callable, Iterator

import pytest

from child_process import child_env

TESTS = str(Path(__file__).resolve().parent)


def run_on_own_disk(tmp_path: Path, child: str, mount: str, *, no_traceback: bool = False,
                    **values: str) -> dict[str, Any]:
    """`child` (Python source, which prints one "RESULT <json>" line) run after the shell command
    `mount`, in tmp_path; `values` become its upper-case names (TESTS is given). Its result; the
    test is skipped where the host cannot mount a disk, or where the child prints "SKIP why".
    `no_traceback`: also assert the child printed none (a failure logged, not raised)."""
    if os.geteuid() != 0 or shutil.which("unshare") is None:
        pytest.skip("a disk of the test's own needs root and unshare(1)")
    names = {"TESTS": TESTS, **values}
    head = f"{', '.join(names)} = {', '.join(repr(v) for v in names.values())}"
    (tmp_path / "child.py").write_text(head + "\n" + child)
    done = subprocess.run(["unshare", "-m", "sh", "-c", f"{mount} && exec '{sys.executable}' '{tmp_path}/child.py'"],
                          capture_output=True, text=True, timeout=240, env=child_env(), cwd=str(tmp_path))
    if done.stderr.startswith(("mount:", "unshare:")) or "failed to setup loop device" in done.stderr:
        pytest.skip(f"this host cannot mount a disk of the test's own: {done.stderr.strip()[:200]}")
    if done.stdout.startswith("SKIP "):
        pytest.skip(done.stdout[5:].strip())
    line = next((x for x in done.stdout.splitlines() if x.startswith("RESULT ")), None)
    assert line is not None, done.stdout[-2000:] + done.stderr[-4000:]
    if no_traceback:
        assert "Traceback" not in done.stderr, done.stderr[-4000:]
    return dict(json.loads(line[len("RESULT "):]))


def run_on_small_disk(tmp_path: Path, child: str, size: str = "48m", **values: str) -> dict[str, Any]:
    """run_on_own_disk with a tmpfs of `size` mounted at tmp_path/disk (DISK in the child)."""
    disk = tmp_path / "disk"
    disk.mkdir()
    return run_on_own_disk(tmp_path, child, f"mount -t tmpfs -o size={size} tmpfs '{disk}'", DISK=str(disk), **values)


def fill(folder: Path, chunk: int = 1024) -> None:
    """Fill `folder`'s disk (for a child): a file named `filler` grown until the disk refuses."""
    fd = os.open(folder / "filler", os.O_WRONLY | os.O_CREAT)
    try:
        while True:
            os.write(fd, bytes(chunk))
    except OSError:
        os.close(fd)


def operator_workspace(folder: Path) -> tuple[Any, str, str, bytes]:
    """A workspace at `folder` (for a child), with an operator key (rate 1000), bob's consent and
    a photo of him to enrol: (workspace, key, consent token, JPEG bytes)."""
    from policy_support import consent, images, make_workspace, open_sf

    ws = make_workspace(folder)
    with open_sf(ws) as sf:
        _, op = sf.issue_api_key("operator", label="operator", rate=1000)
        token = consent(ws, "bob")
    return ws, op, token, (images() / "biden.jpg").read_bytes()


@contextlib.contextmanager
def started_service(workspace: Path, scratch: Path) -> Iterator[Any]:
    """A test client of the in-process service over `workspace` (for a child), once its worker
    has opened the workspace: a call before that is answered "starting"."""
    from fastapi.testclient import TestClient
    from service_support import in_process_app

    with TestClient(in_process_app(workspace, scratch), base_url="https://testserver",
                    raise_server_exceptions=False) as client:
        for _ in range(600):
            if client.get("/v1/ready").json().get("status") != "starting":
                break
            time.sleep(0.1)
        yield client


def fill_after(owner: Any, method: str, disk: Path, audit_db: Path,
               when: Callable[..., bool] = lambda *a, **k: True) -> Callable[[], None]:
    """Make `owner.method` (a class's) fill `disk` once it returns, where `when` (given the call's
    arguments, self left out) says so: the audit log's write-ahead log emptied first, so nothing of
    it is left to write into. The undo."""
    original = getattr(owner, method)

    def then_fill(self: Any, *a: Any, **k: Any) -> Any:
        got = original(self, *a, **k)
        if when(*a, **k):
            db = sqlite3.connect(audit_db, isolation_level=None)
            db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
            db.close()
            fill(disk)
        return got

    setattr(owner, method, then_fill)
    return lambda: setattr(owner, method, original)


def opens_of(path: Path) -> Callable[[], int]:
    """Watch the file at `path` (for a child) being opened, by anyone (inotify): a function
    giving how many times it was opened since it was last called."""
    import ctypes
    import struct

    libc = ctypes.CDLL(None, use_errno=True)
    fd = libc.inotify_init1(os.O_NONBLOCK | os.O_CLOEXEC)
    if fd < 0 or libc.inotify_add_watch(fd, os.fsencode(path), 0x20) < 0:  # IN_OPEN
        raise OSError(ctypes.get_errno(), f"inotify cannot watch {path}")

    def opened() -> int:
        count = 0
        while True:
            try:
                events = os.read(fd, 1 << 16)
            except BlockingIOError:
                return count
            at = 0
            while at < len(events):
                at += 16 + struct.unpack_from("iIII", events, at)[3]
                count += 1

    return opened
