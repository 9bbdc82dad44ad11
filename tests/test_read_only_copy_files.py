"""`safeface audit verify` of a read-only workspace, which checks a private copy of its files: what
sits at the workspace's names must be judged as the writable path judges it, and the copy must
not cost the auditor's host more than the files hold."""

from __future__ import annotations

import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from policy_support import open_sf  # noqa: E402
from server_support import PgCluster  # noqa: E402
from test_migration_faults import _two_people  # noqa: E402
from test_read_only_copies import _enrolled, _read_only_mount, _verify_read_only  # noqa: E402


def test_a_sparse_file_at_a_copied_name_does_not_fill_the_auditors_tmpdir(tmp_path: Path) -> None:
    """An operator leaves a 64 GiB sparse gallery.db-wal (no data, SQLite reads its header) and
    hands over a read-only mount; the auditor's TMPDIR has 64 MiB: the check passes (exit 0)."""
    paths = _enrolled(tmp_path)
    with open(f"{paths.gallery}-wal", "ab") as wal:
        wal.truncate(64 << 30)
    scratch = tmp_path / "tmp"
    scratch.mkdir()
    ro = tmp_path / "ro" / paths.root.name
    ro.parent.mkdir()
    # A small TMPDIR of the namespace's own: `mount` runs first, inside the same `sh -c`.
    verify = f"mount -t tmpfs -o size=64m tmpfs {scratch} && exec {sys.executable} -m safeface.cli audit verify {ro}"
    done = _read_only_mount(paths.root, ro, ["sh", "-c", verify], TMPDIR=str(scratch))
    assert done.returncode == 0, done.stdout + done.stderr
    assert "audit log intact" in done.stdout, done.stdout


def test_a_migrations_leftover_aside_file_is_named_on_a_read_only_copy(pg: PgCluster, tmp_path: Path) -> None:
    """A migration to the servers stopped before it erased `gallery.db.moved` (every template it
    copied) and the operator hands over a read-only mount: exit 4 naming it, as on the workspace."""
    ws, _ = _two_people(tmp_path)
    old = ws.gallery.read_bytes()
    with open_sf(ws) as sf:
        sf.migrate_storage({"records": pg.new_database(), "vectors": "milvus-lite:v1.db"})
    (ws.root / "gallery.db.moved").write_bytes(old)
    done = _verify_read_only(ws, tmp_path)
    assert done.returncode == 4, done.stdout + done.stderr
    assert "gallery.db.moved" in done.stderr, done.stderr


def test_a_fifo_linked_at_a_key_files_name_ends_the_check_naming_it(tmp_path: Path) -> None:
    """An operator puts a link to a FIFO at keys/receipt_public.txt (a copy keeps links) and hands
    over a read-only mount: `audit verify` ends, exit 4 naming the receipt key, where it waited."""
    paths = _enrolled(tmp_path)
    os.mkfifo(tmp_path / "fifo")
    paths.receipt_public.unlink()
    paths.receipt_public.symlink_to(tmp_path / "fifo")
    (tmp_path / "tmp").mkdir()
    ro = tmp_path / "ro" / paths.root.name
    ro.parent.mkdir()
    verify = f"exec timeout 30 {sys.executable} -m safeface.cli audit verify {ro}"
    done = _read_only_mount(paths.root, ro, ["sh", "-c", verify], TMPDIR=str(tmp_path / "tmp"))
    assert done.returncode == 4, done.stdout + done.stderr
    assert "receipt_public.txt" in done.stderr, done.stderr
