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
from typing import Any, Callable

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
from disk_support import run_on_own_disk  # noqa: E402

# The device cut short under the file system: reads past its first MiB fail (EIO), and the
# pages in memory are dropped so that reads reach the device.
_FAIL_READS = textwrap.dedent("""
    def fail_reads(disk, image, files):
        dev = subprocess.run(["findmnt", "-n", "-o", "SOURCE", str(disk)], capture_output=True, text=True)
        os.sync()
        os.truncate(image, 1 << 20)
        subprocess.run(["losetup", "-c", dev.stdout.strip()], check=True)
        for p in files:
            if p.is_file():
                fd = os.open(p, os.O_RDONLY)
                os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
                os.close(fd)
""")

_CHILD = _FAIL_READS + textwrap.dedent("""
    import json, os, subprocess, sys
    from pathlib import Path
    sys.path.insert(0, TESTS)
    import disk_support

    disk, scratch, image = Path(DISK), Path(SCRATCH), Path(IMAGE)
    ws, op, token, photo = disk_support.operator_workspace(disk / "ws")
    out = {}

    with disk_support.started_service(ws.root, scratch) as client:
        h = {"X-API-Key": op}
        fail_reads(disk, image, ws.root.rglob("*"))
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


def _on_a_failing_disk(tmp_path: Path, child: str, mount: str = "", **values: str) -> dict[str, Any]:
    """`child` run with an ext4 image on a loop device (IMAGE) mounted at DISK, whose device
    fail_reads cuts short; `mount`: a shell command run after it; `values` as run_on_own_disk's."""
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
    return run_on_own_disk(tmp_path, child, f"mount -o loop,errors=continue '{image}' '{disk}'" + mount,
                           DISK=str(disk), SCRATCH=str(scratch), IMAGE=str(image), **values)


def test_a_disk_failing_reads_is_a_503_to_retry_and_takes_the_service_out_of_ready(tmp_path: Path) -> None:
    """The workspace's disk fails reads (EIO) under the service: an enrolment, a verification and
    an erasure are each a 503 with Retry-After naming no path (they were 409s calling the audit
    log edited by hand), and /v1/ready a 503 with Retry-After, also when it is the first to meet
    the failing disk (it was a 503 saying to restore what it names, with no Retry-After)."""
    out = _on_a_failing_disk(tmp_path, _CHILD)
    for name in ("ready first", "enroll", "verify", "erase", "ready"):
        status, after, text = out[name]
        assert status == 503 and after is not None and int(after) >= 1, (name, out[name])
        assert str(tmp_path) not in text, (name, text)
    for name in ("enroll", "verify", "erase"):
        assert json.loads(out[name][2])["reference"], out[name]


_ONE_FILE_CHILD = _FAIL_READS + textwrap.dedent("""
    import json, os, shutil, subprocess, sys
    from pathlib import Path
    sys.path.insert(0, TESTS)
    import disk_support
    from policy_support import open_sf

    # The workspace on a sound disk, but for the file WHICH: bound in from the disk that will
    # fail, so that writes work and that one file fails reads (bad sectors under it alone).
    disk, scratch, image, sound = Path(DISK), Path(SCRATCH), Path(IMAGE), Path(SOUND)
    ws, op, token, photo = disk_support.operator_workspace(sound / "ws")
    failing = ws.root / WHICH
    (disk / "before").write_bytes(bytes(4 << 20))  # its copy's blocks past the device's first MiB
    shutil.copyfile(failing, disk / "failing")
    subprocess.run(["mount", "--bind", str(disk / "failing"), str(failing)], check=True)
    out = {}
    with disk_support.started_service(ws.root, scratch) as client:
        fail_reads(disk, image, [failing])
        h = {"X-API-Key": op}  # a call meets the failing file, and reads it again
        r = client.post("/v1/verify", headers=h, files={"image": ("f.jpg", photo, "image/jpeg")},
                        data={"subject": "bob", "purpose": "demo", "consent": token})
        out["call"] = [r.status_code, r.headers.get("retry-after"), r.json().get("error")]
        opened = disk_support.opens_of(failing)
        out["probes"] = []
        for _ in range(5):  # (identical events not yet read are merged into one: read each time)
            r = client.get("/v1/ready")
            out["probes"].append([r.status_code, r.headers.get("retry-after"), opened()])
        out["calls"] = []
        for _ in range(5):
            r = client.post("/v1/verify", headers=h, files={"image": ("f.jpg", photo, "image/jpeg")},
                            data={"subject": "bob", "purpose": "demo", "consent": token})
            out["calls"].append([r.status_code, r.headers.get("retry-after"), opened()])
    try:
        open_sf(ws).close()
        out["open"] = "opened"
    except Exception as exc:
        out["open"] = type(exc).__name__
    print("RESULT " + json.dumps(out))
""")


def _one_file_failing(tmp_path: Path, which: str) -> dict[str, Any]:
    sound = tmp_path / "sound"
    sound.mkdir()
    return _on_a_failing_disk(tmp_path, _ONE_FILE_CHILD, f" && mount -t tmpfs -o size=64m tmpfs '{sound}'",
                              SOUND=str(sound), WHICH=which)


@pytest.fixture(scope="module")
def one_file_failing(tmp_path_factory: pytest.TempPathFactory) -> Callable[[str], dict[str, Any]]:
    """_one_file_failing's record for a file, run once per file for the module: one run records
    the call, the probes, the calls after it and the open, which different tests judge."""
    runs: dict[str, dict[str, Any]] = {}

    def record(which: str) -> dict[str, Any]:
        if which not in runs:
            runs[which] = _one_file_failing(tmp_path_factory.mktemp("failing"), which)
        return runs[which]
    return record


def test_ready_probes_do_not_read_a_failing_file_whole_at_each_probe(
        one_file_failing: Callable[[str], dict[str, Any]]) -> None:
    """While a workspace file (audit.db here, gallery.db alike) fails reads on a disk that still
    takes writes, each /v1/ready read it again, up to the whole file: anyone able to reach the
    probe loaded the failing disk at will. The probes now read it again only after a back-off
    (DISK_READ_AGAIN_S), answering 503 with Retry-After meanwhile: never ready while it was not
    read whole."""
    out = one_file_failing("audit.db")
    assert out["call"][0] == 503 and out["call"][1], out
    assert all(status == 503 and after for status, after, _ in out["probes"]), out
    assert sum(opens > 0 for _, _, opens in out["probes"]) <= 1, out


@pytest.mark.parametrize("which", ["gallery.db", "audit.db"])
def test_calls_do_not_read_a_failing_file_whole_at_each_call(one_file_failing: Callable[[str], dict[str, Any]],
                                                             which: str) -> None:
    """The same for calls: each call that met a file failing reads read it again, up to the whole
    file, to tell a failing disk from damage (an API key's rate of whole-file reads); the audit
    log was read so by the key's own check, before the call. Within the back-off a call is
    refused at once (503 with Retry-After), nothing read."""
    out = one_file_failing(which)
    assert out["call"][0] == 503 and out["call"][2] == "WorkspaceDiskFailed", out
    assert all(status == 503 and after for status, after, _ in out["calls"]), out
    assert sum(opens > 0 for _, _, opens in out["calls"]) <= 1, out


@pytest.mark.parametrize("which", ["keys/audit-anchor.json", "keys/trust.json", "keys/keyring.json"])
def test_a_small_workspace_file_failing_reads_is_a_disk_failure_not_tampering(
        one_file_failing: Callable[[str], dict[str, Any]], which: str) -> None:
    """The audit log's anchor, or the trust store, on sectors that fail reads (EIO): every call
    was a 409 and /v1/ready said to restore what the records check names (the anchor), and an
    open said to restore the file from a backup, as for a file edited by hand; the keyring was
    "unreadable", a ConfigError saying nothing to do. Each is a disk failure now: a 503 to retry,
    and WorkspaceDiskFailed at the open."""
    out = one_file_failing(which)
    assert out["call"][0] in (200, 503), out  # the trust store is read at the open only
    if out["call"][0] == 503:
        assert out["call"][1] and out["call"][2] == "WorkspaceDiskFailed", out
        assert all(status == 503 and after for status, after, _ in out["probes"]), out
    assert out["open"] == "WorkspaceDiskFailed", out
