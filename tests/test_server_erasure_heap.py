"""What an erasure leaves in PostgreSQL's own files. A deleted row stays whole in its page (its
sealed template, which the keyring opens) until a vacuum frees its space: someone who copies the
data folder after a receipt, and holds the keyring, still had the erased template."""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from policy_support import consent, images, open_sf  # noqa: E402
from server_support import PgCluster  # noqa: E402
from test_server_store_attacks import _server_ws, _sql  # noqa: E402


def _heap(pg: PgCluster, dsn: str) -> bytes:
    """The rows table's files (its own and its TOAST table's, where a sealed blob past 2 kB
    goes in chunks) as they are on disk once everything is written out."""
    _sql(dsn, "CHECKPOINT")
    out = b""
    for rel, in _sql(dsn, "SELECT pg_relation_filepath(oid) FROM pg_class WHERE oid = 'safeface.rows'::regclass "
                          "OR oid = (SELECT reltoastrelid FROM pg_class WHERE oid = 'safeface.rows'::regclass)"):
        path = pg.data / rel
        out += b"".join(f.read_bytes() for f in sorted(path.parent.glob(path.name + "*"))
                        if not f.name.endswith(("_fsm", "_vm", "_init")))
    return out


def _pieces_in(sealed: bytes, files: bytes) -> int:
    """How many of a sealed blob's 48-byte pieces, one every 256 bytes, the files hold."""
    return sum(sealed[i:i + 48] in files for i in range(0, len(sealed) - 48, 256))


def test_an_erased_rows_sealed_template_leaves_the_tables_file(pg: PgCluster, tmp_path: Path) -> None:
    """Alice is erased, bob enrolled after her stays: after the receipt, her sealed bytes must
    no longer be in the table's file (the vacuum frees her row's space and PostgreSQL moves
    bob's row over it). What stays: the write-ahead log, and a row newest in its page (see
    ServerStore._vacuum)."""
    ws, dsn = _server_ws(pg, tmp_path)
    img = images()
    with open_sf(ws) as sf:
        alice = sf.enroll(img / "obama.jpg", "alice", "demo", consent(ws, "alice"))
        bob = sf.enroll(img / "biden.jpg", "bob", "demo", consent(ws, "bob"))
        sealed = {int(r): bytes(s) for r, s in _sql(dsn, "SELECT row_id, sealed FROM safeface.rows")}
        files = _heap(pg, dsn)
        assert _pieces_in(sealed[alice.row_id], files) == _pieces_in(sealed[bob.row_id], files) > 5
        sf.erase("alice")
        files = _heap(pg, dsn)
        assert _pieces_in(sealed[alice.row_id], files) == 0
        assert _pieces_in(sealed[bob.row_id], files) > 5


def test_the_erasures_vacuum_runs_after_the_write_lock_is_let_go(pg: PgCluster, tmp_path: Path) -> None:
    """SafeFace.erase holds the store's write lock to its receipt and entries, and the store's
    vacuum ran inside it: every other writer (another host's enrolment) waited for the vacuum.
    When it runs, no session holds an advisory lock (the write lock) any more."""
    ws, dsn = _server_ws(pg, tmp_path)
    img = images()
    held: list[int] = []
    with open_sf(ws) as sf:
        sf.enroll(img / "obama.jpg", "alice", "demo", consent(ws, "alice"))

        def at(point: str) -> None:
            if point == "erase:vacuum":
                held.append(_sql(dsn, "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND granted")[0][0])

        sf._gallery._hook = at
        sf.erase("alice")
    assert held == [0]
