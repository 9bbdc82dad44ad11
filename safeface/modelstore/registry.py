"""The model registry. Two sources, one job (no model loads unless its SHA-256 is known):

* the manifest shipped with safeface names the models it knows (file, SHA-256, licence, source);
* one registry file, ``<safeface home>/models/registry.json``, records every file safeface
  installed or converted on this machine (pack files, converted ONNX graphs) with its SHA-256,
  size, licence and source, and each installed pack's own facts (archive hash, files refused).

Earlier versions kept two records (``models/converted/registry.json`` and a
``safeface-pack.json`` in each pack folder); they are read once, moved into the registry file and
deleted."""

from __future__ import annotations

import importlib.util
import json
import os
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Iterator, Optional

from ..atomicfile import exclusive_lock, write_atomic
from ..errors import ModelError
from ..hashing import sha256_file_cached


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


def forbidden_hashes() -> dict[str, str]:
    return {f["sha256"]: f["why"] for f in load_manifest().get("forbidden", [])}


def check_not_forbidden(path: Path) -> None:
    why = forbidden_hashes().get(sha256_file_cached(path))
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
    digest = sha256_file_cached(p)
    if digest != e.sha256:
        raise ModelError(
            f"model {e.name!r}: {p} has SHA-256 {digest[:16]}..., not the manifest's {e.sha256[:16]}...; "
            "the file is altered or of another version, so it is not loaded. Reinstall or re-fetch it."
        )
    return p


def verified_path(name: str) -> Path:
    return verify(entry(name))


# -- the registry file: what this machine installed or converted ---------------------------------
REGISTRY_FILE = "registry.json"
REGISTRY_FORMAT = "safeface-models/1"
LEGACY_CONVERTED = Path("converted") / "registry.json"  # before REGISTRY_FORMAT
LEGACY_PACK_RECORD = "safeface-pack.json"  # before REGISTRY_FORMAT, one in each pack folder

CONVERTED = "converted"
PACK = "pack"


def registry_path() -> Path:
    return models_home() / REGISTRY_FILE


def now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


@dataclass(frozen=True)
class FileRecord:
    """One model file safeface put on this machine. `kind` is CONVERTED or PACK; `name` the
    model or pack; `role` a pack file's job (detection, recognition); `derived_from` the SHA-256
    of the file a converted graph was built from."""

    path: Path
    sha256: str
    size: int
    kind: str
    name: str
    licence: str
    source: str
    role: str = ""
    derived_from: str = ""
    added: str = ""


def _key(path: Path) -> str:
    """How a path is stored: relative to the models folder when inside it (so the safeface home
    can move), else absolute."""
    p = Path(path).resolve()
    try:
        return p.relative_to(models_home().resolve()).as_posix()
    except ValueError:
        return str(p)


def _path(key: str) -> Path:
    p = Path(key)
    return p if p.is_absolute() else models_home() / p


class Registry:
    """The registry file's content: file records by path, and each installed pack's facts by
    its folder. Read with `load()`; changed only inside `update()`."""

    def __init__(self, files: dict[str, FileRecord], packs: dict[str, dict[str, Any]]) -> None:
        self._files = files
        self._packs = packs
        self.retired: list[Path] = []  # older record files, deleted once this registry is written

    def file(self, path: Path) -> Optional[FileRecord]:
        return self._files.get(_key(path))

    def files(self) -> list[FileRecord]:
        return sorted(self._files.values(), key=lambda r: (r.kind, r.name, str(r.path)))

    def put_file(self, record: FileRecord) -> None:
        self._files[_key(record.path)] = record

    def files_in(self, directory: Path) -> list[FileRecord]:
        prefix = _key(directory) + "/"
        return [r for k, r in sorted(self._files.items()) if k.startswith(prefix)]

    def pack(self, directory: Path) -> Optional[dict[str, Any]]:
        doc = self._packs.get(_key(directory))
        return dict(doc) if doc is not None else None

    def pack_dirs(self) -> list[Path]:
        return sorted(_path(k) for k in self._packs)

    def put_pack(self, directory: Path, doc: dict[str, Any], files: list[FileRecord]) -> None:
        """Record a pack installed in `directory`, replacing whatever was recorded there."""
        self.drop_pack(directory)
        self._packs[_key(directory)] = dict(doc)
        for f in files:
            self.put_file(f)

    def drop_pack(self, directory: Path) -> None:
        key = _key(directory)
        self._packs.pop(key, None)
        for k in [k for k in self._files if k.startswith(key + "/")]:
            del self._files[k]

    def to_dict(self) -> dict[str, Any]:
        def row(r: FileRecord) -> dict[str, Any]:
            return {**asdict(r), "path": _key(r.path)}

        return {"format": REGISTRY_FORMAT,
                "about": "Every model file safeface installed or converted here, with its SHA-256 "
                         "(checked before each load), licence and source.",
                "files": [row(r) for r in self.files()],
                "packs": [{"directory": k, **v} for k, v in sorted(self._packs.items())]}

    @classmethod
    def from_dict(cls, data: Any) -> "Registry":
        if not isinstance(data, dict) or data.get("format") != REGISTRY_FORMAT:
            raise ValueError(f"not a {REGISTRY_FORMAT} file")
        fields = FileRecord.__dataclass_fields__
        files: dict[str, FileRecord] = {}
        for row in data["files"]:
            rec = FileRecord(**{k: v for k, v in row.items() if k in fields and k != "path"},
                             path=_path(str(row["path"])))
            if not (isinstance(rec.sha256, str) and len(rec.sha256) == 64 and isinstance(rec.size, int)):
                raise ValueError(f"the record of {row['path']} has no usable SHA-256 and size")
            files[str(row["path"])] = rec
        packs = {str(p["directory"]): {k: v for k, v in p.items() if k != "directory"} for p in data["packs"]}
        return cls(files, packs)


def _read(path: Path) -> Registry:
    if not path.is_file():
        return Registry({}, {})
    try:
        return Registry.from_dict(json.loads(path.read_text(encoding="utf-8")))
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
        raise ModelError(
            f"the model registry {path} is unreadable ({exc}); move it aside, then run "
            "`safeface models convert` and fetch your packs again."
        ) from None


def load() -> Registry:
    """The registry as it is now (after moving any older records into it)."""
    if _legacy_present():
        with update() as reg:
            return reg
    return _read(registry_path())


@contextmanager
def update() -> Iterator[Registry]:
    """Change the registry: under an exclusive lock, from the file as it is now, written back
    atomically when the block succeeds (and not at all when it fails)."""
    home = models_home()
    home.mkdir(parents=True, exist_ok=True)
    with exclusive_lock(home / f".{REGISTRY_FILE}.lock") as still_held:
        reg = _read(registry_path())
        _migrate(reg)
        yield reg
        still_held()
        write_atomic(registry_path(), json.dumps(reg.to_dict(), indent=2) + "\n")
        for legacy in reg.retired:  # only once their content is safely in the registry
            legacy.unlink(missing_ok=True)


# -- migration from the two older records --------------------------------------------------------
def _legacy_pack_records() -> list[Path]:
    root = models_home() / "packs"
    return sorted(root.glob(f"*/{LEGACY_PACK_RECORD}")) if root.is_dir() else []


def _legacy_present() -> bool:
    return (models_home() / LEGACY_CONVERTED).is_file() or bool(_legacy_pack_records())


def _migrate(reg: Registry) -> None:
    """Move the older records of the models folder into `reg`."""
    old = models_home() / LEGACY_CONVERTED
    if old.is_file():
        try:
            rows = json.loads(old.read_text(encoding="utf-8"))["converted"]
            for r in rows:
                name, src, onnx = str(r["name"]), str(r["source_sha256"]), str(r["onnx_sha256"])
                path = old.parent / src / f"{name}.onnx"
                if path.is_file() and reg.file(path) is None:
                    reg.put_file(converted_record(name, path, onnx, path.stat().st_size, src))
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise ModelError(f"the converted-model registry {old} is unreadable ({exc}); delete it and run "
                             "`safeface models convert` again.") from None
        reg.retired.append(old)
    for record in _legacy_pack_records():
        migrate_pack_record(reg, record.parent)


def converted_record(name: str, path: Path, sha256: str, size: int, source_sha256: str) -> FileRecord:
    """The record of an ONNX graph converted from manifest model `name` (whose file has
    SHA-256 `source_sha256`): it inherits that model's licence."""
    e = entry(name)
    return FileRecord(path=path, sha256=sha256, size=size, kind=CONVERTED, name=name,
                      licence=e.licence, source=f"converted by safeface from {e.file} (SHA-256 {source_sha256})",
                      derived_from=source_sha256, added=now())


def migrate_pack_record(reg: Registry, directory: Path) -> bool:
    """Move an older pack folder's own record file into `reg` (deleted once `reg` is written).
    False when the folder has none or it is unreadable (then it is left where it is)."""
    path = directory / LEGACY_PACK_RECORD
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
        files = []
        for role in ("detector", "recognizer"):
            f = doc[role]
            files.append(FileRecord(path=directory / str(f["file"]), sha256=str(f["sha256"]), size=int(f["size"]),
                                    kind=PACK, name=str(doc["name"]), licence=str(doc["licence"]),
                                    source=str(doc.get("source", "")), role=str(f["role"]),
                                    added=str(doc.get("installed_at", ""))))
        facts = {k: doc.get(k) for k in ("name", "licence", "source", "archive_sha256", "refused", "skipped",
                                           "installed_at")}
    except (OSError, ValueError, KeyError, TypeError):
        return False
    if reg.pack(directory) is None:
        reg.put_pack(directory, facts, files)
    reg.retired.append(path)
    return True
