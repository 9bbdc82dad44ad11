"""insightface model packs: what each pack holds, which of its files safeface installs, and the
record an installed pack keeps so its files are verified by SHA-256 before they are loaded.

A pack's archive may hold five kinds of model file. safeface installs the detector (SCRFD) and
the recognizer (ArcFace); it never installs the landmark models (not needed: SCRFD gives five
points) and it refuses attribute models (gender/age), which infer sensitive attributes."""

from __future__ import annotations

import json
import re
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Optional

from ..errors import ModelError
from . import registry

RECORD_FILE = "safeface-pack.json"
RECORD_FORMAT = "safeface-pack/1"
CUSTOM = "custom"

DETECTION = "detection"
RECOGNITION = "recognition"
ATTRIBUTE = "attribute"
LANDMARKS = "landmarks"
UNKNOWN = "unknown"

ATTRIBUTE_REASON = (
    "attribute model (gender/age): safeface never infers sensitive attributes, so this file is "
    "refused and not installed"
)

_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
# Why a regex and not a list: a user's own archive may name its files freely; anything that
# looks like an attribute model is refused even when the manifest does not list it.
_ATTRIBUTE_RE = re.compile(r"(gender|emotion|attribute|ethnic|race|(^|[_.-])age([_.-]|$))")
_LANDMARK_RE = re.compile(r"(^1k3d68|^2d106|landmark|^lmk)")
_DETECTION_RE = re.compile(r"(^det_|^scrfd|^retinaface)")
_RECOGNITION_RE = re.compile(r"(^w600k|^glint|^arcface|^ms1m|^webface|^r(18|34|50|100)[_.])")


@dataclass(frozen=True)
class PackMember:
    """One file of a pack's archive as the manifest knows it."""

    file: str
    role: str
    sha256: Optional[str] = None
    size: Optional[int] = None


@dataclass(frozen=True)
class PackSpec:
    """A pack the manifest names: where to download it and the archive's SHA-256 (None when no
    trustworthy value is known: then the user must pass one)."""

    name: str
    url: Optional[str]
    sha256: Optional[str]
    size: Optional[int]
    licence: str
    source: str
    embedding_dim: Optional[int] = None
    members: tuple[PackMember, ...] = ()

    def member(self, file: str) -> Optional[PackMember]:
        for m in self.members:
            if m.file == file:
                return m
        return None


@dataclass(frozen=True)
class InstalledFile:
    """A file an installed pack holds, with the SHA-256 it had when installed."""

    file: str
    role: str
    sha256: str
    size: int


@dataclass(frozen=True)
class PackRecord:
    """The record written next to an installed pack's files (RECORD_FILE)."""

    name: str
    licence: str
    source: str
    archive_sha256: Optional[str]
    detector: InstalledFile
    recognizer: InstalledFile
    refused: tuple[dict[str, str], ...] = ()
    skipped: tuple[dict[str, str], ...] = ()
    installed_at: str = ""
    format: str = RECORD_FORMAT

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["refused"] = list(self.refused)
        d["skipped"] = list(self.skipped)
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "PackRecord":
        try:
            if d.get("format") != RECORD_FORMAT:
                raise ValueError(f"unknown format {d.get('format')!r}")
            return cls(
                name=str(d["name"]),
                licence=str(d["licence"]),
                source=str(d.get("source", "")),
                archive_sha256=d.get("archive_sha256"),
                detector=InstalledFile(**d["detector"]),
                recognizer=InstalledFile(**d["recognizer"]),
                refused=tuple(d.get("refused", ())),
                skipped=tuple(d.get("skipped", ())),
                installed_at=str(d.get("installed_at", "")),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise ModelError(f"the pack record is malformed ({exc}); fetch the pack again.") from None


# -- the manifest's packs ------------------------------------------------------------------------
def pack_specs() -> list[PackSpec]:
    out = []
    for p in registry.load_manifest().get("packs", []):
        members = tuple(
            PackMember(file=m["file"], role=m["role"], sha256=m.get("sha256"), size=m.get("size"))
            for m in p.get("members", [])
        )
        out.append(
            PackSpec(
                name=p["name"], url=p.get("url"), sha256=p.get("sha256"), size=p.get("size"),
                licence=p["licence"], source=p.get("source", ""),
                embedding_dim=p.get("embedding_dim"), members=members,
            )
        )
    return out


def pack_spec(name: str) -> Optional[PackSpec]:
    """The manifest's entry for a pack, or None for a name the manifest does not know."""
    for spec in pack_specs():
        if spec.name == name:
            return spec
    return None


def check_pack_name(name: str) -> str:
    if not _NAME_RE.match(name) or name in (".", ".."):
        raise ModelError(
            f"{name!r} is not a usable pack name: use letters, digits, '_', '.' or '-' (at most 64)."
        )
    return name


def classify(file: str, spec: Optional[PackSpec] = None) -> str:
    """The role of an archive member: the manifest's word when it lists the file, else a rule
    on its name. Attribute-looking names are attribute whatever the manifest says."""
    base = file.rsplit("/", 1)[-1].lower()
    if _ATTRIBUTE_RE.search(base):
        return ATTRIBUTE
    known = spec.member(file.rsplit("/", 1)[-1]) if spec else None
    if known is not None:
        return known.role
    if not base.endswith(".onnx"):
        return UNKNOWN
    if _LANDMARK_RE.search(base):
        return LANDMARKS
    if _DETECTION_RE.search(base):
        return DETECTION
    if _RECOGNITION_RE.search(base):
        return RECOGNITION
    return UNKNOWN


# -- where packs live ----------------------------------------------------------------------------
def packs_home() -> Path:
    """Where fetched packs are installed by default: <models_home>/packs."""
    return registry.models_home() / "packs"


def pack_dir(name: str, dest_dir: Optional[Path] = None) -> Path:
    return Path(dest_dir or packs_home()) / check_pack_name(name)


def read_record(directory: Path) -> PackRecord:
    path = Path(directory) / RECORD_FILE
    if not path.is_file():
        raise ModelError(
            f"{directory} holds no safeface pack record ({RECORD_FILE}); install the pack with "
            "`safeface models fetch NAME` (or `safeface models add-custom` for your own files)."
        )
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ModelError(f"the pack record {path} cannot be read ({exc}); fetch the pack again.") from None
    if not isinstance(data, dict):
        raise ModelError(f"the pack record {path} is malformed; fetch the pack again.")
    return PackRecord.from_dict(data)


def write_record(directory: Path, record: PackRecord) -> None:
    (Path(directory) / RECORD_FILE).write_text(json.dumps(record.to_dict(), indent=2) + "\n", encoding="utf-8")


@dataclass(frozen=True)
class VerifiedPack:
    """An installed pack whose detector and recognizer match their recorded SHA-256."""

    directory: Path
    record: PackRecord
    detector: Path
    recognizer: Path


def _check_file(directory: Path, f: InstalledFile, spec: Optional[PackSpec]) -> Path:
    if Path(f.file).name != f.file or classify(f.file) == ATTRIBUTE:
        raise ModelError(f"the pack record in {directory} names an unusable file {f.file!r}; fetch the pack again.")
    path = directory / f.file
    if not path.is_file() or path.is_symlink():
        raise ModelError(f"pack file {path} is missing; fetch the pack again.")
    digest = registry.sha256_file(path)
    if digest != f.sha256:
        raise ModelError(
            f"pack file {path} has SHA-256 {digest[:16]}..., not the recorded {f.sha256[:16]}...; "
            "it was altered after installation, so it is not loaded. Fetch the pack again (--force)."
        )
    # For a pack the manifest knows, the record itself is checked against the manifest, so an
    # edited record cannot vouch for a swapped file.
    known = spec.member(f.file) if spec else None
    if known is not None and known.sha256 and known.sha256 != digest:
        raise ModelError(
            f"pack file {path} is not the file the manifest names for pack {spec.name!r} "  # type: ignore[union-attr]
            f"(SHA-256 {digest[:16]}..., expected {known.sha256[:16]}...); it is not loaded."
        )
    return path


def verify_pack(directory: Path) -> VerifiedPack:
    """Check an installed pack: its record, its two model files' hashes, and that no attribute
    model sits in the directory. Raises ModelError naming what is wrong."""
    directory = Path(directory)
    if not directory.is_dir():
        raise ModelError(f"no installed pack at {directory}; run `safeface models fetch NAME` first.")
    record = read_record(directory)
    for p in sorted(directory.iterdir()):
        if p.name != RECORD_FILE and classify(p.name) == ATTRIBUTE:
            raise ModelError(
                f"{p} is an attribute model (gender/age), which safeface never loads: it does not "
                "infer sensitive attributes. Remove the file from the pack directory to use this pack."
            )
    spec = pack_spec(record.name)
    if spec is not None and spec.sha256 and record.archive_sha256 and record.archive_sha256 != spec.sha256:
        raise ModelError(
            f"the pack at {directory} was installed from an archive that is not the manifest's "
            f"{record.name!r}; fetch it again (--force)."
        )
    det = _check_file(directory, record.detector, spec)
    rec = _check_file(directory, record.recognizer, spec)
    return VerifiedPack(directory=directory, record=record, detector=det, recognizer=rec)


def installed_pack_dirs(dest_dir: Optional[Path] = None) -> list[Path]:
    root = Path(dest_dir or packs_home())
    if not root.is_dir():
        return []
    return sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith(".") and (p / RECORD_FILE).is_file())


# -- inventory for `safeface models list|verify` -------------------------------------------------
def _package_model_status(e: registry.ModelEntry) -> tuple[Optional[Path], bool, bool, str]:
    try:
        path = registry.locate(e)
    except ModelError as exc:
        return None, False, False, str(exc)
    if not path.is_file():
        return path, False, False, f"file {path} is missing"
    try:
        registry.verify(e, path)
    except ModelError as exc:
        return path, True, False, str(exc)
    return path, True, True, "SHA-256 matches the manifest"


def list_models(dest_dir: Optional[Path] = None) -> list[dict[str, Any]]:
    """Every model safeface knows: the manifest's package models, its packs, and any other pack
    installed (custom ones). Each: name, kind, task, licence, installed, verified, path."""
    out: list[dict[str, Any]] = []
    for e in registry.entries():
        path, installed, ok, _ = _package_model_status(e)
        out.append({"name": e.name, "kind": "package", "task": e.task, "licence": e.licence,
                    "installed": installed, "verified": ok, "path": str(path) if path else None})
    seen = set()
    for spec in pack_specs():
        seen.add(spec.name)
        d = pack_dir(spec.name, dest_dir)
        installed = (d / RECORD_FILE).is_file()
        ok = False
        if installed:
            try:
                verify_pack(d)
                ok = True
            except ModelError:
                ok = False
        out.append({"name": spec.name, "kind": "pack", "task": "detection+recognition",
                    "licence": spec.licence, "installed": installed, "verified": ok,
                    "path": str(d) if installed else None,
                    "fetchable": bool(spec.url), "archive_sha256": spec.sha256})
    for d in installed_pack_dirs(dest_dir):
        if d.name in seen:
            continue
        try:
            record = read_record(d)
            licence = record.licence
            verify_pack(d)
            ok = True
        except ModelError:
            licence, ok = "unknown (record unreadable)", False
        out.append({"name": d.name, "kind": "pack", "task": "detection+recognition", "licence": licence,
                    "installed": True, "verified": ok, "path": str(d), "fetchable": False,
                    "archive_sha256": None})
    return out


def verify_installed(dest_dir: Optional[Path] = None) -> list[dict[str, Any]]:
    """Check every installed model file against its hash. Each: name, path, ok, reason. Package
    models that are not installed are listed with ok False; packs not installed are left out."""
    out: list[dict[str, Any]] = []
    for e in registry.entries():
        path, _, ok, reason = _package_model_status(e)
        out.append({"name": e.name, "path": str(path) if path else None, "ok": ok, "reason": reason})
    for d in installed_pack_dirs(dest_dir):
        try:
            v = verify_pack(d)
            out.append({"name": d.name, "path": str(d), "ok": True,
                        "reason": f"{v.detector.name} and {v.recognizer.name} match the pack record"})
        except ModelError as exc:
            out.append({"name": d.name, "path": str(d), "ok": False, "reason": str(exc)})
    return out


__all__ = [
    "ATTRIBUTE", "ATTRIBUTE_REASON", "CUSTOM", "DETECTION", "InstalledFile", "LANDMARKS", "PackMember",
    "PackRecord", "PackSpec", "RECOGNITION", "RECORD_FILE", "UNKNOWN", "VerifiedPack", "check_pack_name",
    "classify", "installed_pack_dirs", "list_models", "pack_dir", "pack_spec", "pack_specs", "packs_home",
    "read_record", "verify_installed", "verify_pack", "write_record",
]
