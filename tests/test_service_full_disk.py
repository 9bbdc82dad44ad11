"""The workspace's disk fills up (ENOSPC) or goes read-only under a running service.

Every write then failed inside SQLite, at a lock file or at the audit anchor: each call answered
500 (with a traceback in the log, as if the service had a bug) while /v1/ready kept answering 200,
so a balancer kept sending it traffic. A call must be a 503 with Retry-After naming no path (the
cause in the service's log under a reference), on record where the log can still be written, and
/v1/ready must answer 503 until a write works again.

The disk is real: a small tmpfs, or an ext4 image whose file system is made to fail (the kernel
then remounts it read-only, as after a disk error; a read-only bind remount is refused while the
service holds its databases open for writing), mounted in a mount namespace of the test's own
(root and unshare(1) needed), with the service in that child process."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
from disk_support import run_on_own_disk  # noqa: E402

_CHILD = textwrap.dedent("""
    import json, sqlite3, subprocess, sys, time
    from pathlib import Path
    sys.path.insert(0, TESTS)
    import disk_support
    from policy_support import open_sf

    disk, scratch, how = Path(DISK), Path(SCRATCH), HOW
    ws, op, token, photo = disk_support.operator_workspace(disk / "ws")
    out = {}

    def fill(where=disk):
        disk_support.fill(where)

    if how == "open":  # a process opening the workspace on a full disk (a worker starting, a command)
        fill()
        try:
            open_sf(ws).close()
            out["open"] = ["opened", ""]
        except Exception as exc:
            out["open"] = [type(exc).__name__, str(exc)]
        print("RESULT " + json.dumps(out))
        sys.exit(0)

    def calls(tag):
        h = {"X-API-Key": op}
        for name, r in (("enroll", client.post("/v1/enroll", headers=h, files={"image": ("f.jpg", photo, "image/jpeg")},
                                               data={"subject": "bob", "purpose": "demo", "consent": token})),
                        ("erase", client.post("/v1/erase", headers=h, json={"subject": "alice"})),
                        ("ready", client.get("/v1/ready"))):
            out[f"{tag} {name}"] = [r.status_code, r.headers.get("retry-after"), r.text[:400]]

    def room_in_the_log():
        # A write-ahead log is reused from its start after a checkpoint: the log's keeps room for
        # its entries on a full disk, the gallery's (cut to nothing) none.
        for name in ("audit.db", "policy.db", "gallery.db"):
            db = sqlite3.connect(ws.root / name, isolation_level=None)
            if name != "gallery.db":
                db.execute("CREATE TABLE pad (x)")
                db.execute("INSERT INTO pad SELECT randomblob(400000) FROM (SELECT 1 UNION SELECT 2 UNION SELECT 3)")
                db.execute("DROP TABLE pad")
            db.execute("PRAGMA wal_checkpoint(RESTART)" if name != "gallery.db" else "PRAGMA wal_checkpoint(TRUNCATE)")
            db.close()

    with disk_support.started_service(ws.root, scratch) as client:
        if how == "report":  # the system's temporary folder full, the workspace's disk not
            import tempfile
            tempfile.tempdir = str(disk.parent / "tmpdisk")
            fill(disk.parent / "tmpdisk")
            h = {"X-API-Key": op}
            for tag in ("refused", "after"):
                r = client.get("/v1/report", headers=h)
                out[f"{tag} report"] = [r.status_code, r.headers.get("retry-after"), r.text[:400]]
                r = client.get("/v1/ready")
                out[f"{tag} ready"] = [r.status_code, r.headers.get("retry-after"), r.text[:400]]
                (disk.parent / "tmpdisk" / "filler").unlink(missing_ok=True)
            print("RESULT " + json.dumps(out))
            sys.exit(0)
        if how == "read-only":  # the file system fails: the kernel remounts it read-only (errors=remount-ro)
            dev = subprocess.run(["findmnt", "-n", "-o", "SOURCE", str(disk)], capture_output=True, text=True)
            trigger = Path(f"/sys/fs/ext4/{Path(dev.stdout.strip()).name}/trigger_fs_error")
            if not trigger.exists():
                print("SKIP this kernel cannot make an ext4 file system fail on demand")
                sys.exit(0)
            trigger.write_text("1")
        else:
            if how == "room":
                room_in_the_log()
            fill()
        calls("refused")
        if how != "read-only":
            (disk / "filler").unlink()
            for _ in range(100):
                if client.get("/v1/ready").status_code == 200:
                    break
                time.sleep(0.1)
            # Before any enrolment settles what the refused one left in the log.
            r = client.get("/v1/audit/verify", headers={"X-API-Key": op})
            out["verified"] = [r.status_code, r.text[:400]]
            calls("after")
    if how != "read-only":
        with open_sf(ws) as sf:
            out["audit"] = sf.audit_verify().entries
            out["bob"] = len(sf.records("bob"))
            out["failed"] = [e.operation for e in sf.audit_entries() if e.decision == "failed"]
    print("RESULT " + json.dumps(out))
""")


def _in_namespace(tmp_path: Path, mount: str, how: str) -> dict[str, Any]:
    """_CHILD run where `mount` (a shell command) mounts the disk at tmp_path/disk; its results."""
    disk, scratch = tmp_path / "disk", tmp_path / "scratch"
    disk.mkdir()
    scratch.mkdir()
    return run_on_own_disk(tmp_path, _CHILD, mount, no_traceback=True, DISK=str(disk), SCRATCH=str(scratch),
                           HOW=how)


def _refused_to_retry(out: dict[str, Any], tmp_path: Path) -> None:
    for name in ("enroll", "erase"):
        status, after, text = out[f"refused {name}"]
        assert status == 503 and after is not None and int(after) >= 1, (name, status, text)
        body = json.loads(text)
        assert body["error"] == "WorkspaceUnwritable" and body["reference"], (name, text)
        assert str(tmp_path) not in text, (name, text)
    status, _, text = out["refused ready"]
    assert status == 503 and json.loads(text)["status"] == "refusing", text
    assert "reference" in json.loads(text)["reason"] and str(tmp_path) not in text, text


def _tmpfs(tmp_path: Path) -> str:
    return f"mount -t tmpfs -o size=48m tmpfs '{tmp_path}/disk'"


def test_a_full_disk_is_a_503_to_retry_and_takes_the_service_out_of_ready_until_space_is_back(
        tmp_path: Path) -> None:
    """The workspace's disk fills up under the service: an enrolment and an erasure are each a
    503 with Retry-After (they were 500s), /v1/ready a 503 (it said 200); once space is freed,
    both work and the log verifies, the enrolment in the store."""
    out = _in_namespace(tmp_path, _tmpfs(tmp_path), "full")
    _refused_to_retry(out, tmp_path)
    for name in ("enroll", "erase", "ready"):
        assert out[f"after {name}"][0] == 200, (name, out[f"after {name}"])
    assert out["verified"][0] == 200 and out["bob"] == 1 and out["audit"] > 0, out


def test_a_full_disk_where_the_log_still_has_room_is_a_503_on_record(tmp_path: Path) -> None:
    """The disk fills up while the audit log's write-ahead log has room and the gallery's has
    none (the anchor file beside the log cannot be written either: a 500 it was): the enrolment
    and the erasure are each a 503 with Retry-After, on record as failed. Once space is back, the
    service's audit verify passes (it was a 409: the refused enrolment's entry named a row the
    store never committed), and both calls work."""
    out = _in_namespace(tmp_path, _tmpfs(tmp_path), "room")
    _refused_to_retry(out, tmp_path)
    assert "enroll" in out["failed"] and "erase" in out["failed"], out
    assert out["verified"][0] == 200, out["verified"]
    for name in ("enroll", "erase", "ready"):
        assert out[f"after {name}"][0] == 200, (name, out[f"after {name}"])
    assert out["bob"] == 1, out


def test_opening_a_workspace_on_a_full_disk_says_the_disk_is_full(tmp_path: Path) -> None:
    """A worker (or a command) opens the workspace on a full disk: WorkspaceUnwritable, to retry
    once space is back, not "not a usable audit log database" about a file that is whole."""
    out = _in_namespace(tmp_path, _tmpfs(tmp_path), "open")
    kind, text = out["open"]
    assert kind == "WorkspaceUnwritable" and "full or read-only" in text, out


def test_a_disk_gone_read_only_is_a_503_to_retry_and_takes_the_service_out_of_ready(tmp_path: Path) -> None:
    """The workspace's ext4 file system fails and the kernel remounts it read-only under the
    service: an enrolment and an erasure are each a 503 with Retry-After, /v1/ready a 503."""
    if shutil.which("mkfs.ext4") is None:
        pytest.skip("an ext4 image needs mkfs.ext4")
    image = tmp_path / "disk.img"
    with open(image, "wb") as f:
        f.truncate(64 * 1024 * 1024)
    made = subprocess.run(["mkfs.ext4", "-q", str(image)], capture_output=True, text=True)
    if made.returncode != 0:
        pytest.skip(f"mkfs.ext4 failed: {made.stderr[:200]}")
    out = _in_namespace(tmp_path, f"mount -o loop,errors=remount-ro '{image}' '{tmp_path}/disk'", "read-only")
    _refused_to_retry(out, tmp_path)


def test_a_full_temporary_folder_is_a_503_for_the_report_and_ready_until_it_has_room(tmp_path: Path) -> None:
    """The system's temporary folder, where `/v1/report` writes the report before sending it, is
    full while the workspace's disk has room: the report is a 503 with Retry-After naming no path
    (a 500 before WorkspaceUnwritable), and 200 once the folder has room. `/v1/ready` stays 200:
    the calls that need no temporary folder (enrol, verify, erase) still work."""
    second = f"mkdir -p '{tmp_path}/tmpdisk' && mount -t tmpfs -o size=2m tmpfs '{tmp_path}/tmpdisk'"
    out = _in_namespace(tmp_path, _tmpfs(tmp_path) + " && " + second, "report")
    status, after, text = out["refused report"]
    assert status == 503 and after is not None and int(after) >= 1, out
    assert json.loads(text)["error"] == "WorkspaceUnwritable" and str(tmp_path) not in text, text
    assert out["refused ready"][0] == 200 and out["after ready"][0] == 200, out
    assert out["after report"][0] == 200 and out["after report"][2].startswith("{"), out
