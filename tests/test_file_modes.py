"""What a workspace leaves writable to other local accounts, under a host's careless umask."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from child_process import child_env  # noqa: E402

CHILD = r"""
import json, os, stat, sys
from pathlib import Path
os.umask(0)
from safeface.workspace.init import init_workspace
paths = init_workspace(Path(sys.argv[1]) / "ws", demo=True)
modes = {}
for p in [paths.root, *sorted(paths.root.rglob("*"))]:
    modes[str(p.relative_to(paths.root.parent))] = stat.S_IMODE(p.stat().st_mode)
print(json.dumps(modes))
"""


def test_a_workspace_made_under_umask_000_is_writable_by_its_owner_only(tmp_path: Path) -> None:
    """Under a host umask of 000 the workspace folder and reports/ were 0777 and deployment.json
    0666: another local account edited the settings the assessment does not cover and moved
    gallery.db away. Key files were already owner-only."""
    run = subprocess.run([sys.executable, "-c", CHILD, str(tmp_path)], env=child_env(), cwd=tmp_path,
                         capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr[-2000:]
    modes = json.loads(run.stdout.strip().splitlines()[-1])
    assert modes["ws"] == 0o700 and modes["ws/reports"] == 0o700
    writable = {name: oct(m) for name, m in modes.items() if m & 0o022}
    assert writable == {}, writable


def test_folders_made_for_a_report_or_a_key_are_not_writable_by_others(tmp_path: Path) -> None:
    """`sf.report(out)` and `keys new --out` made the folders above their files 0777 under umask
    000: anyone could swap the compliance report."""
    code = ("import os, sys; from pathlib import Path; os.umask(0); from safeface.atomicfile import make_dirs; "
            "make_dirs(Path(sys.argv[1]) / 'exports' / 'q4')")
    run = subprocess.run([sys.executable, "-c", code, str(tmp_path)], env=child_env(), cwd=tmp_path,
                         capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr[-2000:]
    for folder in (tmp_path / "exports", tmp_path / "exports" / "q4"):
        assert folder.stat().st_mode & 0o022 == 0, oct(folder.stat().st_mode)
