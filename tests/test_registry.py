"""The model registry: every model verified by SHA-256; the 68-point model never loads; one
registry file records every installed or converted file."""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from safeface import ModelError
from safeface.modelstore import onnx_convert, packs, registry
from tests.child_process import child_env


def test_manifest_models_verify() -> None:
    names = {e.name for e in registry.entries()}
    assert {"dlib-resnet-v1", "dlib-mmod", "dlib-shape-5"} <= names
    for e in registry.entries():
        if e.package:
            p = registry.verify(e)
            assert p.stat().st_size == e.size


def test_altered_file_refused(tmp_path: Path) -> None:
    e = registry.entry("dlib-shape-5")
    copy = tmp_path / e.file
    shutil.copyfile(registry.locate(e), copy)
    with copy.open("r+b") as fh:
        fh.seek(1000)
        byte = fh.read(1)
        fh.seek(1000)
        fh.write(bytes([byte[0] ^ 0xFF]))
    with pytest.raises(ModelError, match="SHA-256"):
        registry.verify(e, copy)


def test_missing_file_and_unknown_name(tmp_path: Path) -> None:
    with pytest.raises(ModelError, match="missing"):
        registry.verify(registry.entry("dlib-mmod"), tmp_path / "nope.dat")
    with pytest.raises(ModelError, match="no model named"):
        registry.entry("shape_predictor_68")


def test_68_point_model_is_forbidden() -> None:
    e = registry.entry("dlib-shape-5")
    p68 = registry.locate(e).parent / "shape_predictor_68_face_landmarks.dat"
    if not p68.exists():
        pytest.skip("face-recognition-models without its 68-point file")
    with pytest.raises(ModelError, match="never loads"):
        registry.check_not_forbidden(p68)
    assert all("68" not in e.file for e in registry.entries())


# -- the one registry file of installed and converted models ---------------------------------------
@pytest.fixture()
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("SAFEFACE_HOME", str(tmp_path / "home"))
    return tmp_path / "home"


def _record(path: Path, name: str = "m") -> registry.FileRecord:
    return registry.FileRecord(path=path, sha256="ab" * 32, size=3, kind=registry.CONVERTED, name=name,
                               licence="CC0", source="test")


def test_older_records_move_into_the_one_registry(home: Path) -> None:
    """A models folder written before the registry file (a converted/registry.json and a
    safeface-pack.json in each pack) is read once, moved into models/registry.json, and the
    older files are deleted, so there is one record of every file."""
    src_sha = registry.sha256_file_cached(registry.verified_path("dlib-mmod"))
    onnx = home / "models" / "converted" / src_sha / "dlib-mmod.onnx"
    onnx.parent.mkdir(parents=True)
    onnx.write_bytes(b"an earlier conversion")
    onnx_sha = hashlib.sha256(b"an earlier conversion").hexdigest()
    old_converted = home / "models" / "converted" / "registry.json"
    old_converted.write_text(json.dumps({"converted": [
        {"name": "dlib-mmod", "source_sha256": src_sha, "onnx_sha256": onnx_sha}]}))
    pack = home / "models" / "packs" / "tiny"
    pack.mkdir(parents=True)
    for f in ("det_10g.onnx", "w600k_r50.onnx"):
        (pack / f).write_bytes(f.encode())
    old_pack = pack / registry.LEGACY_PACK_RECORD
    old_pack.write_text(json.dumps({
        "format": "safeface-pack/1", "name": "tiny", "licence": "MIT", "source": "https://example.org/t.zip",
        "archive_sha256": "cd" * 32, "installed_at": "2026-01-01T00:00:00+00:00",
        "refused": [{"file": "genderage.onnx", "reason": "attribute"}], "skipped": [],
        "detector": {"file": "det_10g.onnx", "role": "detection", "sha256": hashlib.sha256(b"det_10g.onnx").hexdigest(), "size": 12},
        "recognizer": {"file": "w600k_r50.onnx", "role": "recognition", "sha256": hashlib.sha256(b"w600k_r50.onnx").hexdigest(), "size": 14}}))

    reg = registry.load()
    assert not old_converted.exists() and not old_pack.exists()
    assert sorted(p.name for p in (home / "models").rglob("*.json")) == ["registry.json"]
    conv = reg.file(onnx)
    assert conv is not None and (conv.sha256, conv.derived_from, conv.kind) == (onnx_sha, src_sha, "converted")
    assert conv.licence == registry.entry("dlib-mmod").licence
    det = reg.file(pack / "det_10g.onnx")
    assert det is not None and (det.role, det.licence, det.source) == ("detection", "MIT", "https://example.org/t.zip")
    assert packs.read_record(pack).refused[0]["file"] == "genderage.onnx"
    assert packs.verify_pack(pack).recognizer == pack / "w600k_r50.onnx"
    # The migrated conversion is used as it is: no rebuild (its bytes are the earlier file's).
    assert onnx_convert.ensure_converted("dlib-mmod").path.read_bytes() == b"an earlier conversion"
    # Paths inside the models folder are stored relative to it, so the home can move.
    doc = json.loads(registry.registry_path().read_text())
    assert sorted(f["path"] for f in doc["files"]) == [
        f"converted/{src_sha}/dlib-mmod.onnx", "packs/tiny/det_10g.onnx", "packs/tiny/w600k_r50.onnx"]


def test_a_hand_edited_or_foreign_registry_is_refused(home: Path) -> None:
    path = registry.registry_path()
    path.parent.mkdir(parents=True)
    for bad in ("[]", '{"format": "safeface-models/9", "files": [], "packs": []}',
                '{"format": "safeface-models/1", "files": [{"path": "x", "sha256": "short", "size": 1}], "packs": []}'):
        path.write_text(bad)
        with pytest.raises(ModelError, match="model registry .* is unreadable"):
            registry.load()
        with pytest.raises(ModelError, match="unreadable"):
            with registry.update():
                pass
        assert path.read_text() == bad  # a refused file is never overwritten


def test_a_failed_update_writes_nothing(home: Path) -> None:
    with registry.update() as reg:
        reg.put_file(_record(home / "models" / "a.onnx"))
    before = registry.registry_path().read_bytes()
    with pytest.raises(RuntimeError):
        with registry.update() as reg:
            reg.put_file(_record(home / "models" / "b.onnx"))
            raise RuntimeError("interrupted")
    assert registry.registry_path().read_bytes() == before
    assert [r.path.name for r in registry.load().files()] == ["a.onnx"]


@pytest.mark.slow
def test_two_processes_updating_at_once_lose_nothing(home: Path, tmp_path: Path) -> None:
    """Two installs racing (each a read-modify-write of the registry) both end up recorded."""
    script = textwrap.dedent("""
        import sys
        from pathlib import Path
        from safeface.modelstore import registry
        tag = sys.argv[1]
        for i in range(25):
            with registry.update() as reg:
                reg.put_file(registry.FileRecord(path=registry.models_home() / f"{tag}-{i}.onnx", sha256="ab" * 32,
                                                 size=1, kind=registry.CONVERTED, name=tag, licence="CC0", source="t"))
    """)
    env = child_env(SAFEFACE_HOME=str(home))
    children = [subprocess.Popen([sys.executable, "-c", script, tag], env=env, cwd=tmp_path) for tag in ("a", "b")]
    assert [c.wait(timeout=120) for c in children] == [0, 0]
    assert len(registry.load().files()) == 50


def _registry_with(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, **fields: object) -> None:
    monkeypatch.setenv("SAFEFACE_HOME", str(tmp_path / "home"))
    row = {"path": "converted/x/m.onnx", "sha256": "ab" * 32, "size": 3, "kind": registry.CONVERTED,
           "name": "m", "licence": "CC0", "source": "test", **fields}
    path = registry.registry_path()
    path.parent.mkdir(parents=True)
    path.write_text(json.dumps({"format": registry.REGISTRY_FORMAT, "files": [row], "packs": []}))


@pytest.mark.parametrize("bad", [{"sha256": "ab" * 8}, {"sha256": "ab" * 40}, {"size": "3"}])
def test_a_record_with_a_malformed_hash_or_size_is_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                           bad: dict[str, object]) -> None:
    _registry_with(tmp_path, monkeypatch, **bad)
    with pytest.raises(ModelError, match="unreadable"):
        registry.load()


def test_a_whole_record_loads(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _registry_with(tmp_path, monkeypatch)
    assert len(registry.load().files()) == 1
