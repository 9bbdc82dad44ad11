"""A /v1/ready probe whose records check is still opening its handle (waiting on the store's write
lock behind another process's long write) when the service closes. The close waited 5 s for it,
then left it: the handle the probe opened afterwards stayed open, with its descriptors on the
workspace's databases, until the process exited. It must be closed."""

from __future__ import annotations

import os
import sys
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from policy_support import PASSPHRASE, make_workspace, open_sf  # noqa: E402


def _open_in(root: Path) -> list[str]:
    """The files under `root` this process holds open."""
    out = []
    for fd in os.listdir("/proc/self/fd"):
        try:
            target = os.readlink(f"/proc/self/fd/{fd}")
        except OSError:
            continue
        if target.startswith(str(root)):
            out.append(target)
    return out


def test_a_ready_probe_still_opening_when_the_service_closes_leaves_no_handle_open(tmp_path: Path) -> None:
    """Another process holds the store's write lock; /v1/ready's check starts opening its handle
    and waits; the service closes; the lock is let go: the probe's handle is closed too, so no
    descriptor on the workspace's files is left behind."""
    from safeface.service.runtime import Runtime, ServiceConfig

    paths = make_workspace(tmp_path / "ws")
    (tmp_path / "pass").write_text(PASSPHRASE)
    (tmp_path / "pass").chmod(0o600)  # passphrase files must be private
    rt = Runtime(ServiceConfig(workspace=paths.root, passphrase_file=tmp_path / "pass", threads=1, queue=1))
    holder = open_sf(paths)
    hold = holder._gallery.locked()  # another process's long write (a rekey, a large erasure)
    hold.__enter__()
    probe = threading.Thread(target=rt.records_problem)
    try:
        probe.start()
        for _ in range(200):  # the probe has begun its check: its handle is opening, behind the lock
            if rt._records_check.lock.locked():
                break
            time.sleep(0.01)
        time.sleep(0.2)
        rt.close()
    finally:
        hold.__exit__(None, None, None)
        holder.close()
    probe.join(timeout=60)
    assert not probe.is_alive()
    assert _open_in(paths.root) == [], _open_in(paths.root)
