"""A disk of a test's own: a child process run as root in a mount namespace of its own, where a
shell command first mounts the disk (a small tmpfs, a loop ext4 image), so filling it or making it
fail touches nothing of the host's."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

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


def fill(folder: Path, chunk: int = 1024) -> None:
    """Fill `folder`'s disk (for a child): a file named `filler` grown until the disk refuses."""
    fd = os.open(folder / "filler", os.O_WRONLY | os.O_CREAT)
    try:
        while True:
            os.write(fd, bytes(chunk))
    except OSError:
        os.close(fd)
