"""The model registry: every model verified by SHA-256; the 68-point model never loads."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from safeface import ModelError
from safeface.modelstore import registry


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
