"""A verify, identify or export racing an erasure in another process: once the erasure's receipt
is signed, no answer names the person or discloses their records (CN-05, EU-06). The call is held
in the child just after it read the store (its match or its records), the erasure runs to its
receipt here, then the call goes on."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
from child_process import child_env  # noqa: E402
from policy_support import consent, images, make_workspace, open_sf  # noqa: E402

_CHILD = r"""
import json, sys, time
from pathlib import Path
sys.path.insert(0, sys.argv[1])
from policy_support import consent, images, legal_basis, open_sf
from safeface import SafeFace
from safeface.storage.gallery import Gallery
from safeface.workspace.paths import WorkspacePaths
ws, gate, op = WorkspacePaths(Path(sys.argv[2])), Path(sys.argv[3]), sys.argv[4]

def hold():
    (gate / "entered").write_text("1")
    start = time.monotonic()
    while not (gate / "go").exists():
        if time.monotonic() - start > 60:
            raise TimeoutError("the test never let the call go on")
        time.sleep(0.01)

def held(name, at=1, cls=Gallery):
    original = getattr(cls, name)
    calls = []
    def read(self, *a, **kw):
        out = original(self, *a, **kw)
        calls.append(1)
        if len(calls) == at:  # the read the answer is made of
            hold()
        return out
    setattr(cls, name, read)

imgs = images()
with open_sf(ws) as sf:
    try:
        if op == "verify":
            held("verify")
            v = sf.verify(imgs / "obama2.jpg", "alice", "demo", consent(ws, "alice"))
            print(json.dumps({"named": v.match}))
        elif op == "identify":
            held("_not_removed", cls=SafeFace)  # after the log's word on the rows found
            found = sf.identify(imgs / "obama2.jpg", "demo", consent(ws, "bob"))
            print(json.dumps({"named": [c.subject for c in found] == [sf.pseudonym("alice")]}))
        else:
            held("rows_for")  # the read the records disclosed are made of
            ex = sf.export("alice", "demo", "acme", legal_basis=legal_basis(ws, operations=["transmit"]))
            print(json.dumps({"named": len(ex.records) > 0}))
    except Exception as exc:
        print(json.dumps({"refused": getattr(exc, "rule", type(exc).__name__)}))
"""


@pytest.mark.parametrize("op", ["verify", "identify", "export"])
def test_no_answer_names_a_person_after_their_erasure_receipt(tmp_path: Path, op: str) -> None:
    ws = make_workspace(tmp_path / "ws")
    with open_sf(ws) as sf:
        sf.enroll(images() / "obama.jpg", "alice", "demo", consent(ws, "alice"))
    gate = tmp_path / "gate"
    gate.mkdir()
    child = subprocess.Popen([sys.executable, "-c", _CHILD, str(Path(__file__).resolve().parent), str(ws.root),
                              str(gate), op], env=child_env(), cwd=tmp_path, stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True)
    try:
        start = time.monotonic()
        while not (gate / "entered").exists():  # the call read the store: alice's template is there
            assert child.poll() is None and time.monotonic() - start < 120, child.stderr.read() if child.stderr else ""
            time.sleep(0.02)
        with open_sf(ws) as sf:
            assert sf.erase("alice").templates_removed == 1  # the receipt is signed
        (gate / "go").write_text("1")
        out, err = child.communicate(timeout=120)
    finally:
        if child.poll() is None:
            child.kill()
            child.wait(10)
    answer = json.loads(out.strip().splitlines()[-1]) if out.strip() else {"error": err[-2000:]}
    assert answer == {"named": False}, answer  # allowed (judged before the erasure), answered as stored now
    with open_sf(ws) as sf:
        sf.audit_verify()
