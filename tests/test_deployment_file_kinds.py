"""deployment.json replaced by something that is no regular file: a FIFO made every reading of it
wait for ever, and an open workspace reads it at each call (and at each local audit append), so
whoever could write the workspace's folder held up every erasure of a running service. It is
refused like a file that no longer loads: processing stops, erasure goes on. Real files, keys
and a real FIFO."""

from __future__ import annotations

import os
import sys
import threading
from pathlib import Path
from typing import Any

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
from policy_support import consent, images, make_workspace, open_sf  # noqa: E402

from safeface import ConfigError  # noqa: E402


def test_a_fifo_in_place_of_the_deployment_file_holds_up_no_erasure(tmp_path: Path) -> None:
    """Someone replaces deployment.json by a FIFO under an open workspace: alice's erasure still
    ends with a receipt; a new opening is refused (ConfigError) instead of waiting."""
    ws = make_workspace(tmp_path / "ws")
    sf = open_sf(ws)
    box: list[Any] = []
    try:
        sf.enroll(images() / "obama.jpg", "alice", "demo", consent(ws, "alice"))
        ws.config.unlink()
        os.mkfifo(ws.config)
        worker = threading.Thread(target=lambda: box.append(sf.erase("alice")), daemon=True)
        worker.start()
        worker.join(20)  # a guard against hanging the suite, not a timing assertion
        assert box and box[0].templates_removed == 1, "the erasure waited on the FIFO"
        with pytest.raises(ConfigError, match="regular file"):
            open_sf(ws)
    finally:
        if not box:  # let a reader stuck on the FIFO go
            os.close(os.open(ws.config, os.O_WRONLY | os.O_NONBLOCK))
        sf.close()
