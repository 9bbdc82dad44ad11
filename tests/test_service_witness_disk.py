"""The audit witness's volume fills up under a running service (the workspace's own disk has
room): every call that writes is refused, since its entry cannot be anchored in the witness.
/v1/ready must say so (503) until the witness takes writes again, not 200 while a balancer
keeps sending it calls that all fail.

The volume is a small tmpfs mounted in a mount namespace of the test's own (root and
unshare(1) needed), with the service in that child process."""

from __future__ import annotations

import json
import sys
import textwrap
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from disk_support import run_on_small_disk  # noqa: E402

_CHILD = textwrap.dedent("""
    import json, sys, time
    from pathlib import Path
    sys.path.insert(0, TESTS)
    import disk_support
    from policy_support import make_workspace, open_sf

    disk, scratch = Path(DISK), Path(SCRATCH)
    witness = disk / "ws-anchor.json"
    ws = make_workspace(scratch / "ws", edit=lambda raw: raw.__setitem__("audit", {"witness": str(witness)}))
    with open_sf(ws) as sf:
        _, op = sf.issue_api_key("operator", label="operator", rate=1000)
    out = {}

    def fill():
        disk_support.fill(disk, 4096)

    with disk_support.started_service(ws.root, scratch) as client:
        fill()
        r = client.post("/v1/erase", headers={"X-API-Key": op}, json={"subject": "alice"})
        out["erase"] = [r.status_code, r.text[:400]]
        r = client.get("/v1/ready")
        out["ready"] = [r.status_code, r.text[:400]]
        r = client.post("/v1/erase", headers={"X-API-Key": op}, json={"subject": "alice"})
        out["erase again"] = [r.status_code, r.text[:400]]
        (disk / "filler").unlink()
        for _ in range(100):
            r = client.get("/v1/ready")
            if r.status_code == 200:
                break
            time.sleep(0.1)
        out["ready after"] = [r.status_code, r.text[:400]]
        r = client.post("/v1/erase", headers={"X-API-Key": op}, json={"subject": "alice"})
        out["erase after"] = [r.status_code, r.text[:400]]
    print("RESULT " + json.dumps(out))
""")


def _in_namespace(tmp_path: Path) -> dict[str, Any]:
    (tmp_path / "scratch").mkdir()
    return run_on_small_disk(tmp_path, _CHILD, "1m", SCRATCH=str(tmp_path / "scratch"))


def test_a_full_witness_volume_takes_the_service_out_of_ready_until_it_takes_writes(tmp_path: Path) -> None:
    """The witness's volume fills up: an erasure is a 503 to retry, and /v1/ready answers 503
    (it said 200 while every write failed) until the volume takes writes again."""
    out = _in_namespace(tmp_path)
    assert out["erase"][0] == 503 and "WorkspaceUnwritable" in out["erase"][1], out
    assert out["ready"][0] == 503 and json.loads(out["ready"][1])["status"] == "refusing", out
    assert str(tmp_path) not in out["ready"][1], out
    assert out["ready after"][0] == 200 and out["erase after"][0] == 200, out
