"""The model registry: which model files exist, where they are, and whether they are the
files the manifest names. Every model is verified by SHA-256 before it is loaded."""

from __future__ import annotations

import importlib.util
import json
import os
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

from ..errors import ModelError
from ..hashing import sha256_file as hash_file

_HASH_CACHE: dict[tuple[str, int, int], str] = {}
_HASH_LOCK = threading.Lock()


@dataclass(frozen=True)
class ModelEntry:
    name: str
    task: str
    file: str
    sha256: str
    size: int
    licence: str
    source: str
    package: Optional[str] = None
    subdir: str = ""
    embedding_dim: Optional[int] = None


def manifest_path() -> Path:
    """The manifest shipped in the installed package, or the repository's copy in a checkout."""
    here = Path(__file__).resolve().parent.parent
    for candidate in (here / "manifest.json", here.parent / "models" / "manifest.json"):
        if candidate.is_file():
            return candidate
    raise ModelError("the model manifest is missing from this installation; reinstall safeface.")


def load_manifest() -> dict[str, Any]:
    try:
        data: dict[str, Any] = json.loads(manifest_path().read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ModelError(f"the model manifest cannot be read ({exc}); reinstall safeface.") from None
    return data


def entries() -> list[ModelEntry]:
    fields = ModelEntry.__dataclass_fields__
    return [ModelEntry(**{k: v for k, v in m.items() if k in fields}) for m in load_manifest()["models"]]


def entry(name: str) -> ModelEntry:
    for e in entries():
        if e.name == name:
            return e
    known = ", ".join(e.name for e in entries())
    raise ModelError(f"no model named {name!r} in the manifest; known models: {known}.")


def safeface_home() -> Path:
    """The user's safeface folder: $SAFEFACE_HOME or ~/.safeface."""
    root = os.environ.get("SAFEFACE_HOME")
    return Path(root) if root else Path.home() / ".safeface"


def models_home() -> Path:
    """The user's model directory (packs and converted models): <safeface home>/models."""
    return safeface_home() / "models"


def sha256_file(path: Path) -> str:
    """The file's SHA-256, remembered per (path, size, mtime) so a model is hashed once per process."""
    st = path.stat()
    key = (str(path.resolve()), st.st_size, st.st_mtime_ns)
    with _HASH_LOCK:
        cached = _HASH_CACHE.get(key)
    if cached is not None:
        return cached
    digest = hash_file(path)
    with _HASH_LOCK:
        _HASH_CACHE[key] = digest
    return digest


def forbidden_hashes() -> dict[str, str]:
    return {f["sha256"]: f["why"] for f in load_manifest().get("forbidden", [])}


def check_not_forbidden(path: Path) -> None:
    why = forbidden_hashes().get(sha256_file(path))
    if why is not None:
        raise ModelError(f"{path.name} is a model safeface never loads: {why}.")


def locate(e: ModelEntry) -> Path:
    """Where the model's file is on this machine (not yet verified)."""
    if e.package:
        spec = importlib.util.find_spec(e.package)
        if spec is None or not spec.submodule_search_locations:
            raise ModelError(
                f"model {e.name!r} comes from the Python package {e.package!r}, which is not installed; "
                f"run: pip install {e.package.replace('_', '-')}"
            )
        base = Path(list(spec.submodule_search_locations)[0])
        return base / e.subdir / e.file if e.subdir else base / e.file
    return models_home() / e.file


def verify(e: ModelEntry, path: Optional[Path] = None) -> Path:
    """Return the path of the model's file after checking its SHA-256 against the manifest."""
    p = path or locate(e)
    if not p.is_file():
        raise ModelError(f"model {e.name!r}: file {p} is missing; reinstall its package or fetch it.")
    digest = sha256_file(p)
    if digest != e.sha256:
        raise ModelError(
            f"model {e.name!r}: {p} has SHA-256 {digest[:16]}..., not the manifest's {e.sha256[:16]}...; "
            "the file is altered or of another version, so it is not loaded. Reinstall or re-fetch it."
        )
    return p


def verified_path(name: str) -> Path:
    return verify(entry(name))
