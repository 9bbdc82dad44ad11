"""insightface model packs: what each pack holds, which of its files safeface installs, and the
record of an installed pack (in the model registry) by which its files are verified by SHA-256
before they are loaded.

A pack's archive may hold five kinds of model file. safeface installs the detector (SCRFD) and
the recognizer (ArcFace); it never installs the landmark models (not needed: SCRFD gives five
points) and it refuses attribute models (gender/age), which infer sensitive attributes."""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Optional

from ..errors import ModelError
from ..hashing import forget_cached_hashes, sha256_file_cached
from . import registry

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
    """What the registry holds about an installed pack."""

    name: str
    licence: str
    source: str
    archive_sha256: Optional[str]
    detector: InstalledFile
    recognizer: InstalledFile
    refused: tuple[dict[str, str], ...] = ()
    skipped: tuple[dict[str, str], ...] = ()
    installed_at: str = ""

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["refused"] = list(self.refused)
        d["skipped"] = list(self.skipped)
        return d

    def register(self, reg: registry.Registry, directory: Path) -> None:
        """Record this pack, installed in `directory`, and its two files in `reg`."""
        facts = {k: v for k, v in self.to_dict().items() if k not in ("detector", "recognizer")}
        files = [registry.FileRecord(path=directory / f.file, sha256=f.sha256, size=f.size, kind=registry.PACK,
                                     name=self.name, licence=self.licence, source=self.source, role=f.role,
                                     added=self.installed_at)
                 for f in (self.detector, self.recognizer)]
        reg.put_pack(directory, facts, files)

    @classmethod
    def from_registry(cls, reg: registry.Registry, directory: Path) -> Optional["PackRecord"]:
        doc = reg.pack(directory)
        if doc is None:
            return None
        try:
            by_role = {r.role: InstalledFile(file=r.path.name, role=r.role, sha256=r.sha256, size=r.size)
                       for r in reg.files_in(directory)}
            return cls(
                name=str(doc["name"]), licence=str(doc["licence"]), source=str(doc.get("source") or ""),
                archive_sha256=doc.get("archive_sha256"),
                detector=by_role[DETECTION], recognizer=by_role[RECOGNITION],
                refused=tuple(doc.get("refused") or ()), skipped=tuple(doc.get("skipped") or ()),
                installed_at=str(doc.get("installed_at") or ""),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise ModelError(f"the registry's record of the pack at {directory} is malformed ({exc}); "
                             "fetch the pack again (--force).") from None


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
    if not _NAME_RE.fullmatch(name) or name in (".", ".."):  # match() and "$" let a final "\n" through
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


def find_record(directory: Path) -> Optional[PackRecord]:
    """The registry's record of the pack in `directory`, or None. A folder installed by an
    earlier version keeps its record inside; that record is moved into the registry here."""
    directory = Path(directory)
    record = PackRecord.from_registry(registry.load(), directory)
    if record is None and (directory / registry.LEGACY_PACK_RECORD).is_file():
        with registry.update() as reg:
            registry.migrate_pack_record(reg, directory)
            record = PackRecord.from_registry(reg, directory)
    return record


def read_record(directory: Path) -> PackRecord:
    record = find_record(directory)
    if record is None:
        raise ModelError(
            f"{directory} is not a pack safeface installed (the model registry {registry.registry_path()} "
            "has no record of it); install it with `safeface models fetch NAME` (or `safeface models "
            "add-custom` for your own files)."
        )
    return record


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
    digest = sha256_file_cached(path)
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
        if classify(p.name) == ATTRIBUTE:
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
    """The folders in `dest_dir` (default: packs_home()) the registry records a pack in."""
    root = Path(dest_dir or packs_home())
    if not root.is_dir():
        return []
    for legacy in root.glob(f"*/{registry.LEGACY_PACK_RECORD}"):
        find_record(legacy.parent)  # moved into the registry
    here = root.resolve()
    return sorted(d for d in registry.load().pack_dirs() if d.is_dir() and d.resolve().parent == here)


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
        installed = d.is_dir() and find_record(d) is not None
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
    for r in _converted_files():
        ok = sha256_file_cached(r.path) == r.sha256
        out.append({"name": r.name, "kind": "onnx", "task": f"{registry.entry(r.name).task} (converted)",
                    "licence": r.licence, "installed": True, "verified": ok, "path": str(r.path)})
    return out


def _converted_files() -> list[registry.FileRecord]:
    """Converted files the registry records that are still there (a missing one is rebuilt on
    its next use, so it is neither listed nor a failure)."""
    return [r for r in registry.load().files() if r.kind == registry.CONVERTED and r.path.is_file()]


def verify_installed(dest_dir: Optional[Path] = None) -> list[dict[str, Any]]:
    """Check every installed model file against its hash. Each: name, path, ok, reason. Package
    models that are not installed are listed with ok False; packs not installed are left out.
    Every file is hashed afresh, not by a hash this process remembers."""
    forget_cached_hashes()
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
    for r in _converted_files():
        ok = sha256_file_cached(r.path) == r.sha256
        out.append({"name": f"{r.name} (converted)", "path": str(r.path), "ok": ok,
                    "reason": "SHA-256 matches the model registry" if ok else
                    "altered since it was converted; run `safeface models convert --force`"})
    return out


__all__ = [
    "ATTRIBUTE", "ATTRIBUTE_REASON", "CUSTOM", "DETECTION", "InstalledFile", "LANDMARKS", "PackMember",
    "PackRecord", "PackSpec", "RECOGNITION", "UNKNOWN", "VerifiedPack", "check_pack_name",
    "classify", "find_record", "installed_pack_dirs", "list_models", "pack_dir", "pack_spec", "pack_specs",
    "packs_home", "read_record", "verify_installed", "verify_pack",
]
