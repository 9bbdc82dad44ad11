"""Workspace files replaced or damaged by someone who can write the folder but holds no key: a
FIFO in a file's place, a hand-edited audit entry, damaged database pages. Each must end in a
typed error, never a hang or a bare exception."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
from child_process import child_env  # noqa: E402

from safeface.errors import IntegrityError  # noqa: E402
from safeface.workspace.admin import audit_verify  # noqa: E402
from safeface.workspace.init import init_workspace  # noqa: E402
from safeface.workspace.paths import WorkspacePaths  # noqa: E402
from safeface.workspace.session import opened  # noqa: E402

CHILD = """
import sys
from pathlib import Path
from safeface.errors import SafeFaceError
from safeface.workspace.admin import audit_verify
from safeface.sdk import SafeFace
try:
    audit_verify(Path(sys.argv[1]))
    SafeFace.open(Path(sys.argv[1])).close()
except SafeFaceError as exc:
    print("TYPED", type(exc).__name__, str(exc)[:200])
    sys.exit(3)
print("PASSED")
"""


def _ws(tmp_path: Path) -> WorkspacePaths:
    from safeface.sdk import SafeFace

    paths = init_workspace(tmp_path / "ws", demo=True)
    with opened(paths) as r:
        for i in range(3):
            r.audit.append("verify", "allowed", purpose="demo", note=f"e{i}")
    SafeFace.open(paths.root).close()  # makes gallery.db and policy.db too
    return paths


@pytest.mark.parametrize("which", ["anchor", "trust", "policy", "gallery"])
def test_a_fifo_in_place_of_a_workspace_file_is_a_typed_error_not_a_hang(tmp_path: Path, which: str) -> None:
    """A FIFO replaces the anchor, trust store, policy.db or gallery.db: verify and open raise a
    typed error, never wait on it for ever nor raise a bare sqlite3 error."""
    paths = _ws(tmp_path)
    target = getattr(paths, which)
    target.unlink()
    os.mkfifo(target)
    try:
        proc = subprocess.run([sys.executable, "-c", CHILD, str(paths.root)], env=child_env(), cwd=str(tmp_path),
                              capture_output=True, text=True, timeout=10)
    except subprocess.TimeoutExpired:
        pytest.fail(f"audit verify or open hung on a FIFO in place of {target.name} (no typed error after 10 s)")
    assert proc.returncode == 3 and "TYPED" in proc.stdout, (proc.returncode, proc.stdout, proc.stderr[-800:])


@pytest.mark.parametrize("value", ["garbage", "2026-01-01T00:00:00", "0001-01-01T00:00:00+00:00",
                                   "0001-01-01T00:00:01-23:59"])
def test_the_last_entrys_time_edited_by_hand_is_a_typed_refusal_at_the_next_append(tmp_path: Path, value: str) -> None:
    """The last audit entry's time is rewritten by hand (garbage, no zone, or year 1): the next append
    and the next open raise IntegrityError, not a bare ValueError, TypeError or OverflowError."""
    import sqlite3

    from safeface.sdk import SafeFace

    paths = _ws(tmp_path)
    con = sqlite3.connect(paths.audit)
    con.execute("UPDATE entries SET time = ? WHERE seq = (SELECT MAX(seq) FROM entries)", (value,))
    con.commit()
    con.close()
    with pytest.raises(IntegrityError):
        with opened(paths) as r:
            r.audit.append("verify", "allowed", purpose="demo", note="next")
    with pytest.raises(IntegrityError):
        SafeFace.open(paths.root).close()


def _damage_past_the_first_page(db: Path) -> None:
    """Flip bits all over the file but its first page (the schema stays readable): what a hand
    edit with a hex editor, or a damaged disk, leaves."""
    assert not Path(str(db) + "-wal").exists() or Path(str(db) + "-wal").stat().st_size == 0  # all closed
    data = bytearray(db.read_bytes())
    assert len(data) > 8192
    for i in range(4096 + 40, len(data), 7):
        data[i] ^= 0x5A
    db.write_bytes(bytes(data))


@pytest.mark.parametrize("which", ["audit", "gallery"])
def test_a_damaged_page_in_the_log_or_the_store_is_reported_not_a_crash(tmp_path: Path, which: str) -> None:
    """Bytes past the first page of audit.db or gallery.db are overwritten: verify and open raise a
    typed error (exit 4), not a bare sqlite3.DatabaseError."""
    from policy_support import PASSPHRASE, consent, images, make_workspace, open_sf

    from safeface.errors import SafeFaceError

    ws = make_workspace(tmp_path / "ws")
    with open_sf(ws) as sf:
        sf.enroll(images() / "obama.jpg", "alice", "demo", consent(ws, "alice"))
    _damage_past_the_first_page(ws.audit if which == "audit" else ws.gallery)
    pf = tmp_path / "passphrase.txt"
    pf.write_text(PASSPHRASE)
    pf.chmod(0o600)  # passphrase files must be private
    with pytest.raises(SafeFaceError):
        audit_verify(ws.root, pf)
    with pytest.raises(SafeFaceError):
        open_sf(ws).close()


@pytest.fixture(scope="module")
def _long_log(tmp_path_factory: pytest.TempPathFactory) -> WorkspacePaths:
    """A workspace whose audit.db spans several pages, built once and copied by each test."""
    paths = _ws(tmp_path_factory.mktemp("long-log"))
    with opened(paths) as r:
        for i in range(40):
            r.audit.append("verify", "allowed", purpose="demo", note="n" * 200 + str(i))
    return paths


def _cut_log(template: WorkspacePaths, tmp_path: Path, where: str) -> WorkspacePaths:
    """A copy of `template` whose audit.db lost its end, as a disk fault or someone hiding its last
    entries leaves it: cut at a byte offset (`where`), or its -wal file (the newest entries) lost."""
    import shutil
    import sqlite3

    paths = WorkspacePaths(shutil.copytree(template.root, tmp_path / "ws"))
    if where == "wal":
        hold = sqlite3.connect(paths.audit)  # keeps the -wal from being folded into the file
        hold.execute("SELECT 1 FROM entries LIMIT 1").fetchall()
        try:
            with opened(paths) as r:
                for i in range(5):
                    r.audit.append("verify", "allowed", purpose="demo", note=f"late {i}")
            assert Path(f"{paths.audit}-wal").stat().st_size > 4096
            copy = tmp_path / "copy"
            shutil.copytree(paths.root, copy,
                            ignore=lambda _d, names: [n for n in names if n.endswith(("-wal", "-shm"))])
        finally:
            hold.close()
        return WorkspacePaths(copy)
    size = paths.audit.stat().st_size
    wal = Path(f"{paths.audit}-wal")
    assert size >= 5 * 4096 and (not wal.exists() or wal.stat().st_size == 0)  # all in the file itself
    at = {"empty": 0, "header": 50, "first page": 1000, "inside a page": 2 * 4096 + 100, "page boundary": 2 * 4096,
          "last page boundary": size - 4096, "inside the last page": size - 100}[where]
    with open(paths.audit, "r+b") as fh:
        fh.truncate(at)
    return paths


@pytest.mark.parametrize("where", ["empty", "header", "first page", "inside a page", "page boundary",
                                   "last page boundary", "inside the last page", "wal"])
def test_an_audit_log_cut_short_is_damage_with_what_to_do_not_a_configuration_error(
        tmp_path: Path, _long_log: WorkspacePaths, where: str) -> None:
    """audit.db cut at a byte offset was "not a usable audit log database" (a ConfigError, exit 1:
    check your paths), and cut inside its last page it opened and was used as if whole (SQLite
    reads a short page as zeros). A log that lost its end is damage or tampering: the open and
    `audit verify` raise IntegrityError, saying to restore a backup and run `audit verify`."""
    from safeface.sdk import SafeFace

    paths = _cut_log(_long_log, tmp_path, where)
    for attempt in (lambda: audit_verify(paths.root), lambda: SafeFace.open(paths.root).close()):
        with pytest.raises(IntegrityError) as info:
            attempt()
        assert "backup" in str(info.value) and "safeface audit verify" in str(info.value), str(info.value)


def test_an_audit_anchor_cut_short_says_what_to_do(tmp_path: Path) -> None:
    """keys/audit-anchor.json cut short (a disk fault, or someone hiding how far the log went) was
    "corrupt: it was altered" and no more: the refusal now says to restore it and run `audit verify`."""
    from safeface.sdk import SafeFace

    paths = _ws(tmp_path)
    data = paths.anchor.read_bytes()
    paths.anchor.write_bytes(data[:len(data) // 2])
    for attempt in (lambda: audit_verify(paths.root), lambda: SafeFace.open(paths.root).close()):
        with pytest.raises(IntegrityError, match="cut short") as info:
            attempt()
        assert "backup" in str(info.value) and "safeface audit verify" in str(info.value), str(info.value)


@pytest.mark.parametrize("where", ["header", "inside a page", "inside the last page"])
def test_the_workspaces_gallery_cut_short_is_damage_not_a_configuration_error(tmp_path: Path, where: str) -> None:
    """gallery.db cut at a byte offset was "not a usable gallery database" (a ConfigError: check
    your paths) at open, and cut inside its last page it opened as if whole. The workspace's own
    gallery that lost its end is damage: IntegrityError, saying to restore a backup."""
    from safeface.sdk import SafeFace

    paths = _ws(tmp_path)
    size, wal = paths.gallery.stat().st_size, Path(f"{paths.gallery}-wal")
    assert size >= 2 * 4096 and (not wal.exists() or wal.stat().st_size == 0)  # all in the file itself
    at = {"header": 50, "inside a page": 4096 + 100, "inside the last page": size - 100}[where]
    with open(paths.gallery, "r+b") as fh:
        fh.truncate(at)
    with pytest.raises(IntegrityError) as info:
        SafeFace.open(paths.root).close()
    assert "backup" in str(info.value), str(info.value)


@pytest.mark.parametrize("wal", ["zeros", "any bytes"])
def test_a_gallery_cut_short_beside_a_wal_sqlite_reads_as_empty_is_damage(tmp_path: Path, wal: str) -> None:
    """A -wal of zeros (a file system that preallocates, a fault) or of any bytes beside a
    gallery cut inside its last page: judged by its size alone it "held frames", so the cut was
    taken for a checkpoint a crash interrupted and the file opened as if whole, though SQLite
    reads such a -wal as empty. Only a -wal with a WAL header for the file's page size and room
    for a frame now stands for one."""
    from safeface.sdk import SafeFace

    paths = _ws(tmp_path)
    size = paths.gallery.stat().st_size
    with open(paths.gallery, "r+b") as fh:
        fh.truncate(size - 100)
    Path(f"{paths.gallery}-wal").write_bytes(b"\0" * 8192 if wal == "zeros" else os.urandom(8192))
    with pytest.raises(IntegrityError, match="cut short"):
        SafeFace.open(paths.root).close()


def test_a_gallery_torn_past_its_end_beside_a_wal_with_frames_opens(tmp_path: Path) -> None:
    """No false alarm: a crash in a checkpoint can leave the file's end torn (not a whole number
    of pages) while the -wal still holds the frames SQLite replays: that gallery opens."""
    import shutil
    import sqlite3

    from safeface.sdk import SafeFace

    paths = _ws(tmp_path)
    hold = sqlite3.connect(paths.gallery)  # keeps the -wal from being folded into the file
    hold.execute("SELECT 1 FROM sqlite_master LIMIT 1").fetchall()
    try:
        writer = sqlite3.connect(paths.gallery)
        writer.execute(f"PRAGMA user_version = {int(writer.execute('PRAGMA user_version').fetchone()[0])}")
        writer.commit()
        writer.close()
        copy = Path(shutil.copytree(paths.root, tmp_path / "copy",
                                    ignore=lambda _d, names: [n for n in names if n.endswith("-shm")]))
    finally:
        hold.close()
    wal = copy / f"{paths.gallery.name}-wal"
    assert wal.exists() and wal.stat().st_size >= 32 + 24 + 4096  # a frame
    with open(copy / paths.gallery.name, "ab") as fh:
        fh.write(b"\0" * 100)  # the start of a page the checkpoint was writing
    SafeFace.open(copy).close()


def _wal_sums(data: bytes, start: tuple[int, int]) -> tuple[int, int]:
    """SQLite's WAL checksum (big-endian words, as magic 0x377F0683 says), from `start`."""
    import struct

    s1, s2 = start
    words = struct.unpack(f">{len(data) // 4}I", data)
    for i in range(0, len(words), 2):
        s1 = (s1 + words[i] + s2) & 0xFFFFFFFF
        s2 = (s2 + words[i + 1] + s1) & 0xFFFFFFFF
    return s1, s2


def _wal(page: int, frames: list[tuple[int, int, bytes]], salts: tuple[int, int] = (0x1234, 0x5678)) -> bytes:
    """A -wal as SQLite writes it: its header, then `frames` (page number, database size in
    pages after a commit or 0, page bytes), each checksum chained on from the one before."""
    import struct

    head = struct.pack(">6I", 0x377F0683, 3007000, page, 0, *salts)
    sums = _wal_sums(head, (0, 0))
    out = [head + struct.pack(">2I", *sums)]
    for number, db_pages, data in frames:
        top = struct.pack(">4I", number, db_pages, *salts)
        sums = _wal_sums(data, _wal_sums(top[:8], sums))
        out.append(top + struct.pack(">2I", *sums) + data)
    return b"".join(out)


@pytest.mark.parametrize("wal", ["a header written by hand", "frames that leave the cut page out",
                                 "frames of another wal's salts"])
def test_a_gallery_cut_short_beside_a_wal_sqlite_replays_nothing_for_that_page_is_damage(
        tmp_path: Path, wal: str) -> None:
    """A -wal whose header alone is right (magic, format, page size, even its checksum), then
    bytes that are no frame; or real frames that never hold the page that was cut, while their
    commit keeps that page inside the database; or frames whose salts are not the header's: a
    gallery cut inside its last page opened beside any of them as if whole (SQLite reads the
    short page as zeros). Only a -wal whose valid frames decide that page excuses a cut now."""
    from safeface.sdk import SafeFace

    paths = _ws(tmp_path)
    data = paths.gallery.read_bytes()
    page, pages = 4096, len(data) // 4096
    assert len(data) % page == 0 and pages >= 2
    with open(paths.gallery, "r+b") as fh:
        fh.truncate(len(data) - 100)
    first = data[:page]
    body = {"a header written by hand": _wal(page, [])[:32] + os.urandom(24 + page),
            "frames that leave the cut page out": _wal(page, [(1, pages, first)]),
            "frames of another wal's salts": _wal(page, [(pages, pages, data[-page:])])[:32]
            + _wal(page, [(pages, pages, data[-page:])], salts=(1, 2))[32:]}[wal]
    Path(f"{paths.gallery}-wal").write_bytes(body)
    with pytest.raises(IntegrityError, match="cut short"):
        SafeFace.open(paths.root).close()


def test_a_gallery_cut_inside_a_page_its_wal_holds_opens(tmp_path: Path) -> None:
    """No false alarm: a checkpoint cut short while writing the last page, whose -wal still
    holds that page in a committed frame (SQLite reads it from there): that gallery opens, and
    the file is whole again."""
    from safeface.sdk import SafeFace

    paths = _ws(tmp_path)
    data = paths.gallery.read_bytes()
    page, pages = 4096, len(data) // 4096
    with open(paths.gallery, "r+b") as fh:
        fh.truncate(len(data) - 100)
    Path(f"{paths.gallery}-wal").write_bytes(_wal(page, [(pages, pages, data[-page:])]))
    SafeFace.open(paths.root).close()
    assert paths.gallery.stat().st_size % page == 0  # SQLite folded the page back in


@pytest.mark.parametrize("wal_holds", ["only the cut page", "the cut page and every page after it"])
def test_a_gallery_cut_more_than_a_page_short_opens_only_if_its_wal_holds_every_page_lost(
        tmp_path: Path, wal_holds: str) -> None:
    """The gallery cut inside its last page but one, beside a -wal that holds the cut page in a
    committed frame and keeps the last page inside the database: the cut was excused, and the
    gallery opened with its last page read as zeros (PRAGMA integrity_check: malformed). A
    checkpoint writes pages in order, so one a crash tore has every page past the tear in the
    -wal: that gallery opens; one missing any of them is damage."""
    from safeface.sdk import SafeFace

    paths = _ws(tmp_path)
    data = paths.gallery.read_bytes()
    page, pages = 4096, len(data) // 4096
    cut = pages - 1
    with open(paths.gallery, "r+b") as fh:
        fh.truncate((cut - 1) * page + 100)
    held = [cut] if wal_holds == "only the cut page" else [cut, pages]
    Path(f"{paths.gallery}-wal").write_bytes(_wal(page, [(n, pages if n == held[-1] else 0,
                                                          data[(n - 1) * page:n * page]) for n in held]))
    if wal_holds == "only the cut page":
        with pytest.raises(IntegrityError, match="cut short"):
            SafeFace.open(paths.root).close()
    else:
        SafeFace.open(paths.root).close()
        assert paths.gallery.stat().st_size == len(data)


@pytest.mark.parametrize("cut", ["none", "inside a page", "at a page boundary"])
def test_a_file_beside_a_long_wal_of_sqlites_own_frames_opens(tmp_path: Path, cut: str) -> None:
    """No false alarm past the first chunk of frames read: SQLite's own -wal (little-endian
    checksums) of several hundred frames, over several commits, holds every page past the file's
    end (a live database another process writes to), or from the one a crash tore to the
    database's end; the -wal is read through to its last commit."""
    import shutil
    import sqlite3

    from safeface.sqlite_store import refuse_cut

    db = tmp_path / "a.db"
    live = sqlite3.connect(db)
    live.execute("PRAGMA journal_mode=WAL")
    live.execute("PRAGMA wal_autocheckpoint=0")
    live.execute("CREATE TABLE t (x BLOB)")
    live.commit()
    live.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    for _ in range(3):
        live.executemany("INSERT INTO t VALUES (randomblob(1000))", [()] * 1000)
        live.commit()
    copy = tmp_path / "copy.db"
    shutil.copyfile(db, copy)
    shutil.copyfile(f"{db}-wal", f"{copy}-wal")
    live.close()
    assert Path(f"{copy}-wal").stat().st_size > 2 * (1 << 20)  # more than one chunk of frames
    with open(copy, "r+b") as fh:
        fh.truncate({"none": 2 * 4096, "inside a page": 4096 + 100, "at a page boundary": 4096}[cut])
    torn = sqlite3.connect(copy)
    try:
        refuse_cut(torn, copy, "the copy")
        assert torn.execute("SELECT count(*) FROM t").fetchone()[0] == 3000
    finally:
        torn.close()


@pytest.mark.parametrize("missing", [0, 5, 400])
def test_a_cut_beside_a_wal_of_many_frames_is_excused_only_if_every_lost_page_is_there(
        tmp_path: Path, missing: int) -> None:
    """A -wal of 500 frames, one per page from the cut page on, committed at the end: the cut is
    excused only with every one of them; one left out, in the first chunk of frames read or
    past it, leaves a page SQLite would read as zeros."""
    import sqlite3

    from safeface.sqlite_store import refuse_cut

    db = tmp_path / "a.db"
    with sqlite3.connect(db) as c:
        c.execute("CREATE TABLE t (x)")
    c.close()
    page, cut, end = 4096, 2, 501
    with open(db, "r+b") as fh:
        fh.truncate(page + 100)
    numbers = [n for n in range(cut, end + 1) if n != missing]
    Path(f"{db}-wal").write_bytes(_wal(page, [(n, end if n == numbers[-1] else 0, bytes(page)) for n in numbers]))
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    try:
        if not missing:  # (0: none left out)
            refuse_cut(conn, db, "the copy")
        else:
            with pytest.raises(IntegrityError, match="cut short"):
                refuse_cut(conn, db, "the copy")
    finally:
        conn.close()


_SPARSE_WAL_CHILD = r"""
import resource, sqlite3, sys
from pathlib import Path
from safeface.errors import IntegrityError
from safeface.sqlite_store import refuse_cut
resource.setrlimit(resource.RLIMIT_AS, (1 << 30, 1 << 30))
db = Path(sys.argv[1])
conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
try:
    refuse_cut(conn, db, "the copy")
except IntegrityError as exc:
    print("REFUSED", exc)
"""


def test_a_sparse_wal_of_terabytes_beside_a_cut_file_costs_no_memory(tmp_path: Path) -> None:
    """A -wal with a valid header, then a hole of 4 TiB (a sparse file: no disk used): the walk
    kept a byte for every frame the file had room for, a gigabyte here, so the open failed in
    MemoryError (or woke the OOM killer). What it keeps is bounded by the frames it read."""
    import sqlite3

    db = tmp_path / "a.db"
    with sqlite3.connect(db) as c:
        c.execute("CREATE TABLE t (x)")
    c.close()
    with open(db, "r+b") as fh:
        fh.truncate(4096 + 100)
    wal = Path(f"{db}-wal")
    wal.write_bytes(_wal(4096, []))
    os.truncate(wal, 1 << 42)
    run = subprocess.run([sys.executable, "-c", _SPARSE_WAL_CHILD, str(db)], capture_output=True, text=True,
                         timeout=60, env=child_env())
    assert run.returncode == 0 and "REFUSED" in run.stdout and "cut short" in run.stdout, run.stderr[-2000:]


@pytest.mark.parametrize("wal_holds", ["only the first page lost", "every page lost"])
def test_a_gallery_cut_at_a_page_boundary_beside_a_wal_opens_only_if_it_holds_every_page_lost(
        tmp_path: Path, wal_holds: str) -> None:
    """The gallery cut at a page boundary, two pages short, beside a -wal whose commit keeps both
    inside the database but holds only the first: a whole number of pages was never judged, and
    the gallery opened with its last page read as zeros (PRAGMA integrity_check: malformed)."""
    from safeface.sdk import SafeFace

    paths = _ws(tmp_path)
    data = paths.gallery.read_bytes()
    page, pages = 4096, len(data) // 4096
    with open(paths.gallery, "r+b") as fh:
        fh.truncate((pages - 2) * page)
    held = [pages - 1] if wal_holds == "only the first page lost" else [pages - 1, pages]
    Path(f"{paths.gallery}-wal").write_bytes(_wal(page, [(n, pages if n == held[-1] else 0,
                                                          data[(n - 1) * page:n * page]) for n in held]))
    if wal_holds == "only the first page lost":
        with pytest.raises(IntegrityError, match="cut short"):
            SafeFace.open(paths.root).close()
    else:
        SafeFace.open(paths.root).close()
        assert paths.gallery.stat().st_size == len(data)


@pytest.mark.parametrize("name", ["gallery.db", "apikeys.db"])
def test_a_link_at_a_database_name_to_no_file_makes_no_file_where_it_points(tmp_path: Path, name: str) -> None:
    """Someone who may write the workspace folder replaces a database by a link to a path that does
    not exist (a folder only the service's account may write): the next open made an SQLite file
    there, with the service's rights, before refusing. It must make nothing, and say what to do."""
    from policy_support import make_workspace, open_sf

    from safeface.errors import ConfigError

    paths = make_workspace(tmp_path / "ws")
    open_sf(paths).close()
    (tmp_path / "outside").mkdir()
    planted = tmp_path / "outside" / "planted"
    (paths.root / name).unlink()
    (paths.root / name).symlink_to(planted)
    with pytest.raises(ConfigError, match=rf"{name} is a link to a file that does not exist"):
        open_sf(paths).close()
    assert list((tmp_path / "outside").iterdir()) == []


def test_a_link_at_a_database_name_another_user_made_is_not_followed(tmp_path: Path) -> None:
    """The workspace's owner (or anyone who may write its folder) replaces gallery.db by a link to
    another program's SQLite database, then root runs a safeface command on the workspace: root
    opened that database, turned it to write-ahead logging and wrote the gallery's tables into it.
    A link at a database's name is followed only where this user or root made it, on a path no
    other user may change (as deployment.json's link is); the other file is left as it was."""
    from policy_support import link_gallery_to_another_programs_database, make_workspace, open_sf

    from safeface.errors import ConfigError

    if os.geteuid() != 0:
        pytest.skip("a link of another user's needs root to make")
    paths = make_workspace(tmp_path / "ws")
    open_sf(paths).close()
    other, before = link_gallery_to_another_programs_database(paths, tmp_path / "outside")
    with pytest.raises(ConfigError, match="another user"):
        open_sf(paths).close()
    assert other.read_bytes() == before and sorted(os.listdir(other.parent)) == ["app.db"]
