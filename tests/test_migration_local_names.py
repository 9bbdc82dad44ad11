"""`safeface storage migrate` and the names of the local files it retires and erases: a folder
planted at `gallery.db.moved` before the migration, while it copies or between its renames, one
planted at a lock file's name, and a database linked from another folder. Real SQLite files, a real PostgreSQL cluster and Milvus Lite; a
migration is held at a step by wrapping the step, never by a mock."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
from policy_support import images, open_sf  # noqa: E402
from server_support import PgCluster  # noqa: E402
from test_migration_faults import LOCAL, _rows, _two_people  # noqa: E402

from safeface import ConfigError  # noqa: E402


def _storage(ws: Any) -> dict[str, Any]:
    return dict(json.loads((ws.root / "deployment.json").read_text()).get("storage") or {})


def test_a_folder_at_an_aside_name_refuses_the_migration_before_it_copies(pg: PgCluster, tmp_path: Path) -> None:
    """A folder planted as `gallery.db.moved`: refused by name before anything is copied."""
    ws, token = _two_people(tmp_path)
    dsn = pg.new_database()
    (ws.root / "gallery.db.moved").mkdir()
    with open_sf(ws) as sf:
        with pytest.raises(ConfigError, match="gallery.db.moved"):
            sf.migrate_storage({"records": dsn, "vectors": "milvus-lite:v1.db"})
    assert "records" not in _storage(ws) and _rows(dsn) == 0
    with open_sf(ws) as sf:
        sf.audit_verify()
        assert sf.identify(images() / "obama2.jpg", "demo", token)  # alice, still local


@pytest.mark.parametrize("when", ["while-copying", "between-the-renames"])
def test_a_rename_aside_that_fails_gives_the_local_files_back(pg: PgCluster, tmp_path: Path,
                                                              monkeypatch: pytest.MonkeyPatch, when: str) -> None:
    """A folder planted at `audit.db.moved` during the migration: deployment.json names the local
    files again, so an erasure of another handle is kept, and a rerun moves what is left."""
    import os

    from safeface.storage.server import ServerStore

    ws, token = _two_people(tmp_path)
    dsn = pg.new_database()
    section = {"records": dsn, "vectors": "milvus-lite:v1.db"}
    copy, replace = ServerStore.import_sealed, os.replace

    def plant_then_copy(self: ServerStore, rows: Any, **kw: Any) -> None:
        (ws.root / "audit.db.moved").mkdir(exist_ok=True)
        copy(self, rows, **kw)

    def rename_then_plant(src: Any, dst: Any) -> None:  # between the renames: after every check
        replace(src, dst)
        if str(dst).endswith("gallery.db.moved"):
            (ws.root / "audit.db.moved").mkdir(exist_ok=True)

    if when == "while-copying":
        monkeypatch.setattr(ServerStore, "import_sealed", plant_then_copy)
    else:
        monkeypatch.setattr(os, "replace", rename_then_plant)
    mover, other = open_sf(ws), open_sf(ws)
    try:
        with pytest.raises(ConfigError, match="stand where" if when == "while-copying" else "renamed aside"):
            mover.migrate_storage(section)
        assert "records" not in _storage(ws)
        assert other.erase("alice").templates_removed == 1  # into the files the workspace still names
    finally:
        mover.close()
        other.close()
    monkeypatch.undo()
    (ws.root / "audit.db.moved").rmdir()
    with open_sf(ws) as sf:  # the erasure's entry and the anchor agree: it opens, alice gone
        sf.audit_verify()
        assert not sf.identify(images() / "obama2.jpg", "demo", token)
        assert sf.migrate_storage(section)["templates"] == 1
    assert _rows(dsn) == 1 and not [p.name for p in ws.root.iterdir() if p.name.startswith(LOCAL)]
    with open_sf(ws) as sf:
        sf.audit_verify()
        assert not sf.identify(images() / "obama2.jpg", "demo", token)


def test_a_folder_at_a_name_the_migration_erases_is_named_and_the_rest_erased(pg: PgCluster,
                                                                               tmp_path: Path) -> None:
    """A folder planted as `audit.db.lock`: every local database is erased, the folder named."""
    ws, _ = _two_people(tmp_path)
    dsn = pg.new_database()
    (ws.root / "audit.db.lock").mkdir()
    (ws.root / "audit.db.lock" / "keep").write_text("not safeface's")
    with open_sf(ws) as sf:
        with pytest.raises(ConfigError, match="audit.db.lock"):
            sf.migrate_storage({"records": dsn, "vectors": "milvus-lite:v1.db"})
    assert not [p.name for p in ws.root.iterdir() if p.name.startswith(LOCAL) and not p.name.endswith(".lock")]
    assert (ws.root / "audit.db.lock" / "keep").read_text() == "not safeface's"
    assert _rows(dsn) == 2
    with open_sf(ws) as sf:
        sf.audit_verify()


@pytest.mark.parametrize("link", ["symbolic", "hard"])
def test_a_database_linked_from_another_folder_refuses_the_migration(pg: PgCluster, tmp_path: Path,
                                                                     link: str) -> None:
    """`gallery.db` linked to another folder: the migration is refused, where it erased the name
    alone and left every template in the file, unnamed by `audit verify`."""
    ws, token = _two_people(tmp_path)
    dsn = pg.new_database()
    volume = tmp_path / "volume"
    volume.mkdir()
    if link == "symbolic":
        (ws.root / "gallery.db").rename(volume / "gallery.db")
        (ws.root / "gallery.db").symlink_to(volume / "gallery.db")
    else:
        (volume / "gallery.db").hardlink_to(ws.root / "gallery.db")
    with open_sf(ws) as sf:
        with pytest.raises(ConfigError, match="gallery.db in .* is a link"):
            sf.migrate_storage({"records": dsn, "vectors": "milvus-lite:v1.db"})
    assert "records" not in _storage(ws) and _rows(dsn) == 0
    with open_sf(ws) as sf:
        sf.audit_verify()
        assert sf.identify(images() / "obama2.jpg", "demo", token)  # alice, still local
