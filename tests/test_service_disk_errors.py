"""The workspace's disk fails reads under a running service (EIO: a failing or detached device).

SQLite reports such a read as a damaged file ("database disk image is malformed"), so every call
was a 409 telling the operator the audit log "was edited by hand" and to restore it from a backup,
and /v1/ready a 503 without Retry-After saying to restore what it names. A disk error is no
tampering: each call must be a 503 with Retry-After naming no path, and /v1/ready a 503 to retry.

The disk is real: an ext4 image on a loop device, in a mount namespace of the test's own (root,
unshare(1) and mkfs.ext4 needed), whose device is cut short under the file system (its backing
file truncated and its size re-read), so reads past the cut fail with EIO, as on a device whose
sectors went bad. The pages already in memory are dropped so that the reads reach the device."""

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
    import json, os, subprocess, sys
    from pathlib import Path
    sys.path.insert(0, TESTS)
    import disk_support

    disk, scratch, image = Path(DISK), Path(SCRATCH), Path(IMAGE)
    ws, op, token, photo = disk_support.operator_workspace(disk / "ws")
    out = {}

    def fail_reads():
        dev = subprocess.run(["findmnt", "-n", "-o", "SOURCE", str(disk)], capture_output=True, text=True)
        os.sync()
        os.truncate(image, 1 << 20)  # the device now ends 1 MiB in: reads past it fail (EIO)
        subprocess.run(["losetup", "-c", dev.stdout.strip()], check=True)
        for p in ws.root.rglob("*"):  # pages in memory are dropped, so reads reach the device
            if p.is_file():
                fd = os.open(p, os.O_RDONLY)
                os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
                os.close(fd)

    with disk_support.started_service(ws.root, scratch) as client:
        h = {"X-API-Key": op}
        fail_reads()
        r = client.get("/v1/ready")  # before any call meets the failing disk
        out["ready first"] = [r.status_code, r.headers.get("retry-after"), r.text[:600]]
        for name, r in (("enroll", client.post("/v1/enroll", headers=h, files={"image": ("f.jpg", photo, "image/jpeg")},
                                               data={"subject": "bob", "purpose": "demo", "consent": token})),
                        ("verify", client.post("/v1/verify", headers=h, files={"image": ("f.jpg", photo, "image/jpeg")},
                                               data={"subject": "bob", "purpose": "demo", "consent": token})),
                        ("erase", client.post("/v1/erase", headers=h, json={"subject": "alice"})),
                        ("ready", client.get("/v1/ready"))):
            out[name] = [r.status_code, r.headers.get("retry-after"), r.text[:600]]
    print("RESULT " + json.dumps(out))
""")


def test_a_disk_failing_reads_is_a_503_to_retry_and_takes_the_service_out_of_ready(tmp_path: Path) -> None:
    """The workspace's disk fails reads (EIO) under the service: an enrolment, a verification and
    an erasure are each a 503 with Retry-After naming no path (they were 409s calling the audit
    log edited by hand), and /v1/ready a 503 with Retry-After, also when it is the first to meet
    the failing disk (it was a 503 saying to restore what it names, with no Retry-After)."""
    if shutil.which("mkfs.ext4") is None or shutil.which("losetup") is None:
        pytest.skip("an ext4 image on a loop device needs mkfs.ext4 and losetup")
    image, disk, scratch = tmp_path / "disk.img", tmp_path / "disk", tmp_path / "scratch"
    disk.mkdir()
    scratch.mkdir()
    with open(image, "wb") as f:
        f.truncate(64 * 1024 * 1024)
    made = subprocess.run(["mkfs.ext4", "-q", str(image)], capture_output=True, text=True)
    if made.returncode != 0:
        pytest.skip(f"mkfs.ext4 failed: {made.stderr[:200]}")
    out: dict[str, Any] = run_on_own_disk(tmp_path, _CHILD, f"mount -o loop,errors=continue '{image}' '{disk}'",
                                          DISK=str(disk), SCRATCH=str(scratch), IMAGE=str(image))
    for name in ("ready first", "enroll", "verify", "erase", "ready"):
        status, after, text = out[name]
        assert status == 503 and after is not None and int(after) >= 1, (name, out[name])
        assert str(tmp_path) not in text, (name, text)
    for name in ("enroll", "verify", "erase"):
        assert json.loads(out[name][2])["reference"], out[name]
