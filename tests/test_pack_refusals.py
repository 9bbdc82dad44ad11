"""Model packs: what a fetch refuses in an archive, and what verification refuses in an installed
pack (a real loopback HTTP server, real zip files, the real model registry)."""

from __future__ import annotations

import io
import struct
import zipfile
from pathlib import Path

import pytest

from safeface.errors import ModelError, ModelFetchError
from safeface.modelstore import fetch, packs, registry
from tests.test_packs import Server, home, make_zip, server, sha  # noqa: F401 (home, server: its fixtures)

DET = b"detector bytes " * 8
REC = b"recognizer bytes " * 8


def mark_encrypted(data: bytes, member: str) -> bytes:
    """The archive with the 'encrypted' flag set on one member (local and central headers)."""
    raw = bytearray(data)
    name = member.encode()
    for sig, flag_at, name_len_at, name_at in ((b"PK\x03\x04", 6, 26, 30), (b"PK\x01\x02", 8, 28, 46)):
        pos = 0
        while True:
            pos = raw.index(sig, pos)
            n = struct.unpack_from("<H", raw, pos + name_len_at)[0]
            if bytes(raw[pos + name_at:pos + name_at + n]) == name:
                flags = struct.unpack_from("<H", raw, pos + flag_at)[0]
                struct.pack_into("<H", raw, pos + flag_at, flags | 0x1)
                break
            pos += 4
    return bytes(raw)


def fetch_zip(server: Server, dest: Path, data: bytes, name: str = "tinypack") -> fetch.FetchResult:
    return fetch.fetch_pack(name, dest_dir=dest, url=server.add(f"/{sha(data)[:8]}.zip", data), sha256=sha(data))


# -- what a fetch refuses -------------------------------------------------------------------------
def test_an_archive_with_two_recognizers_is_refused(server: Server, tmp_path: Path) -> None:
    """A pack holding two recognizers is refused rather than installing one of them at random."""
    data = make_zip({"det_10g.onnx": DET, "w600k_r50.onnx": REC, "glintr100.onnx": REC + b"2"})
    dest = tmp_path / "packs"
    with pytest.raises(ModelFetchError, match="several recognition models"):
        fetch_zip(server, dest, data)
    assert list(dest.iterdir()) == []


def test_a_zip_bomb_member_is_refused(server: Server, tmp_path: Path) -> None:
    """A member that compresses suspiciously well (a zip bomb) is refused before it is unpacked."""
    data = make_zip({"det_10g.onnx": bytes(4 << 20), "w600k_r50.onnx": REC})
    assert len(data) < 64 << 10
    dest = tmp_path / "packs"
    with pytest.raises(ModelFetchError, match="zip bomb"):
        fetch_zip(server, dest, data)
    assert list(dest.iterdir()) == []


def test_an_encrypted_member_is_refused_as_a_fetch_error(server: Server, tmp_path: Path) -> None:
    """An archive whose model file is encrypted is refused with a ModelFetchError, leaving nothing."""
    stored = make_zip({"det_10g.onnx": DET, "w600k_r50.onnx": REC}, method=zipfile.ZIP_STORED)
    data = mark_encrypted(stored, "w600k_r50.onnx")
    assert [i.flag_bits & 1 for i in zipfile.ZipFile(io.BytesIO(data)).infolist()] == [0, 1]
    dest = tmp_path / "packs"
    with pytest.raises(ModelFetchError, match="encrypted"):
        fetch_zip(server, dest, data)
    assert list(dest.iterdir()) == []


def test_an_absolute_member_path_is_refused(server: Server, tmp_path: Path) -> None:
    """An archive member with an absolute path is refused, even one directly under the root."""
    data = make_zip({"det_10g.onnx": DET, "w600k_r50.onnx": REC, "/evil.onnx": b"x"})
    assert "/evil.onnx" in zipfile.ZipFile(io.BytesIO(data)).namelist()
    dest = tmp_path / "packs"
    with pytest.raises(ModelFetchError, match="unsafe path"):
        fetch_zip(server, dest, data)
    assert list(dest.iterdir()) == []


def test_a_download_exactly_at_the_size_limit_is_accepted(server: Server, tmp_path: Path,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    """A download whose announced length equals the size limit is within it and installs."""
    data = make_zip({"det_10g.onnx": DET, "w600k_r50.onnx": REC})
    monkeypatch.setattr(fetch, "MAX_ARCHIVE_BYTES", len(data))
    assert fetch_zip(server, tmp_path / "packs", data).downloaded_bytes == len(data)


def test_add_custom_does_not_replace_an_installed_pack_without_force(tmp_path: Path) -> None:
    """Installing custom files over an existing pack needs force; without it the old pack stays."""
    det, rec = tmp_path / "my_det.onnx", tmp_path / "my_rec.onnx"
    det.write_bytes(DET)
    rec.write_bytes(REC)
    dest = tmp_path / "packs"
    first = fetch.install_custom(det, rec, name="mine", dest_dir=dest)
    rec.write_bytes(REC + b"v2")
    with pytest.raises(ModelFetchError, match="already exists"):
        fetch.install_custom(det, rec, name="mine", dest_dir=dest)
    assert packs.verify_pack(first.path).record.recognizer.sha256 == sha(REC)


def test_an_age_model_cannot_be_installed_or_sit_in_a_pack(tmp_path: Path) -> None:
    """A model named as an age estimator is an attribute model: not installed, and it blocks a pack."""
    for name in ("age.onnx", "fairface_age.onnx", "age-net.onnx"):
        assert packs.classify(name) == packs.ATTRIBUTE, name
    det, age = tmp_path / "my_det.onnx", tmp_path / "age.onnx"
    det.write_bytes(DET)
    age.write_bytes(REC)
    with pytest.raises(ModelFetchError, match="attribute model"):
        fetch.install_custom(det, age, name="mine", dest_dir=tmp_path / "packs")


# -- what verification refuses ----------------------------------------------------------------------
def _record_manifest_pack(directory: Path, name: str, archive_sha256: str | None) -> None:
    """Write two files and a registry record claiming they are manifest pack `name`, with the
    record's hashes edited to match the files (what someone swapping the files would do)."""
    spec = packs.pack_spec(name)
    assert spec is not None and spec.sha256
    det_m = next(m for m in spec.members if m.role == packs.DETECTION)
    rec_m = next(m for m in spec.members if m.role == packs.RECOGNITION)
    directory.mkdir(parents=True)
    (directory / det_m.file).write_bytes(DET)
    (directory / rec_m.file).write_bytes(REC)
    record = packs.PackRecord(
        name=name, licence=spec.licence, source=spec.url or "", archive_sha256=archive_sha256,
        detector=packs.InstalledFile(det_m.file, packs.DETECTION, sha(DET), len(DET)),
        recognizer=packs.InstalledFile(rec_m.file, packs.RECOGNITION, sha(REC), len(REC)),
        installed_at=registry.now(),
    )
    with registry.update() as reg:
        record.register(reg, directory)


def test_swapped_files_of_a_manifest_pack_are_refused_despite_an_edited_record(tmp_path: Path) -> None:
    """For a manifest pack, files whose hashes the manifest does not name are refused, even when
    the registry record was edited to match them."""
    d = tmp_path / "packs" / "buffalo_l"
    _record_manifest_pack(d, "buffalo_l", packs.pack_spec("buffalo_l").sha256)  # type: ignore[union-attr]
    with pytest.raises(ModelError, match="not the file the manifest names"):
        packs.verify_pack(d)
    rows = {r["name"]: r for r in packs.verify_installed(tmp_path / "packs")}
    assert rows["buffalo_l"]["ok"] is False


def test_a_manifest_pack_recorded_from_another_archive_is_refused(tmp_path: Path) -> None:
    """A manifest pack whose record names an archive other than the manifest's pinned one is
    refused for that reason."""
    d = tmp_path / "packs" / "buffalo_s"
    _record_manifest_pack(d, "buffalo_s", "0" * 64)
    with pytest.raises(ModelError, match="installed from an archive that is not the manifest's"):
        packs.verify_pack(d)


def test_a_pack_file_replaced_by_a_symlink_is_refused(tmp_path: Path) -> None:
    """A pack file replaced by a symbolic link (even to identical bytes) is not loaded."""
    det, rec = tmp_path / "my_det.onnx", tmp_path / "my_rec.onnx"
    det.write_bytes(DET)
    rec.write_bytes(REC)
    installed = fetch.install_custom(det, rec, name="mine", dest_dir=tmp_path / "packs")
    packs.verify_pack(installed.path)
    target = installed.path / "my_rec.onnx"
    target.unlink()
    target.symlink_to(rec)
    with pytest.raises(ModelError, match="missing"):
        packs.verify_pack(installed.path)


@pytest.mark.parametrize("name", ["../escape", "sub/escape", "-dash", "x" * 65])
def test_a_pack_name_that_is_not_a_plain_folder_name_is_refused(tmp_path: Path, name: str) -> None:
    """A pack name that could leave the packs folder (or is not a plain name) is refused before
    anything is written."""
    det, rec = tmp_path / "my_det.onnx", tmp_path / "my_rec.onnx"
    det.write_bytes(DET)
    rec.write_bytes(REC)
    dest = tmp_path / "a" / "packs"
    with pytest.raises(ModelError, match="not a usable pack name"):
        fetch.install_custom(det, rec, name=name, dest_dir=dest)
    assert not (tmp_path / "a").exists()
