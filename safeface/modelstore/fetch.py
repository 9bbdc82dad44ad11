"""Explicit model download: `fetch_pack` downloads an insightface pack over HTTPS (with pooch,
which keeps a download only when its SHA-256 is the pinned one), checks its size, unpacks only
its detector and recognizer (refusing attribute models), and records the pack in the model
registry, against which the engine verifies its files at load time. Nothing is ever downloaded
silently, nothing is downloaded without a hash to check, and a failure leaves nothing installed."""

from __future__ import annotations

import hashlib
import re
import shutil
import stat
import tempfile
import urllib.parse
import uuid
import zipfile
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import IO, Any, Callable, Optional

from ..errors import ModelError, ModelFetchError
from ..hashing import TooLarge, copy_hashed, same_digest
from ..netaddr import is_loopback
from . import packs, registry
from .packs import InstalledFile, PackRecord, PackSpec

DEFAULT_TIMEOUT = 60.0
MAX_ARCHIVE_BYTES = 2 << 30  # 2 GiB: the largest insightface pack is about 360 MB
MAX_MEMBER_BYTES = 1 << 30
MAX_TOTAL_BYTES = 3 << 30
MAX_MEMBERS = 64
MAX_RATIO = 100  # uncompressed/compressed; ONNX weights compress poorly, a bomb compresses well
_CHUNK = 1 << 20
_USER_AGENT = "safeface-models-fetch/0.1"

Progress = Callable[[int, Optional[int]], None]


@dataclass(frozen=True)
class FetchResult:
    """What a fetch installed. `refused` lists attribute models left out (with the reason),
    `skipped` the files not needed (landmark models, other files)."""

    name: str
    path: Path
    url: Optional[str]
    archive_sha256: Optional[str]
    licence: str
    installed: tuple[InstalledFile, ...] = ()
    refused: tuple[dict[str, str], ...] = ()
    skipped: tuple[dict[str, str], ...] = ()
    already_installed: bool = False
    downloaded_bytes: int = 0

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name, "path": str(self.path), "url": self.url,
            "archive_sha256": self.archive_sha256, "licence": self.licence,
            "installed": [f.__dict__ for f in self.installed],
            "refused": list(self.refused), "skipped": list(self.skipped),
            "already_installed": self.already_installed, "downloaded_bytes": self.downloaded_bytes,
        }


# -- URL policy ----------------------------------------------------------------------------------
def shown_url(url: str) -> str:
    """`url` as messages, results and the registry show it: without the user information (a
    mirror's "https://user:token@host/...", which requests sends as Basic auth) and without the
    query or fragment (a signed link's signature, "?X-Amz-Signature=...", "?token=..."), which
    are credentials; "?..." says a query was there. Only the download itself uses the URL whole."""
    try:
        parts = urllib.parse.urlsplit(url)
    except ValueError:
        return "(a URL that does not parse)"
    netloc = parts.netloc.rpartition("@")[2]
    tail = "?..." if parts.query or parts.fragment else ""
    return urllib.parse.urlunsplit((parts.scheme, netloc, parts.path, "", "")) + tail


_USERINFO = re.compile(r"(?i)([a-z][a-z0-9+.-]*://)[^/?#\s@'\"]*@")
_QUERY = re.compile(r"(?<=\S)[?#][^\s'\")]+")


def _scrubbed(text: str) -> str:
    """An HTTP library's error text without the credentials of any URL it quotes (requests names
    the path and query it asked for: "Max retries exceeded with url: /pack.zip?token=...")."""
    return _QUERY.sub("?...", _USERINFO.sub(r"\1", text))


def check_url(url: str) -> str:
    """HTTPS anywhere; plain HTTP only to this machine (a local mirror or a test server)."""
    parts = urllib.parse.urlsplit(url)
    host = (parts.hostname or "").lower()
    if parts.scheme == "https" and host:
        return url
    if parts.scheme == "http" and host and is_loopback(host):
        return url
    raise ModelFetchError(
        f"refusing to download from {shown_url(url)!r}: only https:// URLs are allowed "
        "(plain http only for 127.0.0.1/localhost)."
    )


def _refuse_plain_http_redirect(response: Any, *args: Any, **kwargs: Any) -> Any:
    """A requests response hook, run before any redirect is followed: GitHub sends release
    assets elsewhere, which is fine, but never to a plain-http host."""
    if response.is_redirect:
        check_url(urllib.parse.urljoin(response.url, response.headers.get("location", "")))
    return response


class _Meter:
    """pooch's progress bar and the file it downloads into, in one: it refuses a download whose
    Content-Length is over the limit or not the expected size before a byte is written, stops one
    that sends more than the limit, and hashes what it writes (for the error message)."""

    def __init__(self, url: str, max_bytes: int, expected_size: Optional[int], progress: Optional[Progress]) -> None:
        self.url, self.max_bytes, self.expected_size, self.progress = shown_url(url), max_bytes, expected_size, progress
        self.got = 0
        self.length: Optional[int] = None
        self.sha256 = hashlib.sha256()
        self.out: Optional[IO[bytes]] = None

    # progress-bar side: pooch sets `total` from Content-Length (0 when absent)
    @property
    def total(self) -> Optional[int]:
        return self.length

    @total.setter
    def total(self, length: int) -> None:
        self.length = int(length) or None
        if self.length is not None and self.length > self.max_bytes:
            raise ModelFetchError(f"{self.url} is {self.length} bytes, more than the {self.max_bytes}-byte "
                                  "limit; not downloaded.")
        if self.length is not None and self.expected_size is not None and self.length != self.expected_size:
            raise ModelFetchError(f"{self.url} is {self.length} bytes, not the {self.expected_size} bytes the "
                                  "manifest names; it is another file or version, so it is not downloaded.")

    def update(self, n: int) -> None:
        pass

    def reset(self) -> None:
        pass

    def close(self) -> None:
        pass

    # file side
    def write(self, block: bytes) -> int:
        self.got += len(block)
        if self.got > self.max_bytes:
            raise ModelFetchError(f"{self.url} sent more than the {self.max_bytes}-byte limit; download stopped.")
        self.sha256.update(block)
        if self.out is None:
            raise ModelFetchError(f"the download of {self.url} has nowhere to go.")
        self.out.write(block)
        if self.progress is not None:
            self.progress(self.got, self.length)
        return len(block)

    def flush(self) -> None:
        if self.out is not None:
            self.out.flush()


def _download(url: str, folder: Path, expected: str, timeout: float, max_bytes: int,
              expected_size: Optional[int], progress: Optional[Progress]) -> tuple[Path, int]:
    """Download `url` into `folder` with pooch, which keeps the file only if its SHA-256 is
    `expected` (a partial or mismatched download is deleted). Returns (path, bytes)."""
    import pooch
    import requests

    pooch.get_logger().setLevel("WARNING")  # the CLI reports progress itself
    meter = _Meter(url, max_bytes, expected_size, progress)
    kwargs: dict[str, Any] = {"timeout": timeout, "headers": {"User-Agent": _USER_AGENT, "Accept-Encoding": "identity"},
                              "hooks": {"response": [_refuse_plain_http_redirect]}}
    if is_loopback(urllib.parse.urlsplit(url).hostname or ""):
        kwargs["proxies"] = {"http": None, "https": None}  # a loopback URL never goes via a proxy
    http = pooch.HTTPDownloader(progressbar=meter, chunk_size=_CHUNK, **kwargs)

    def into_meter(u: str, output_file: str, p: Any, check_only: bool = False) -> Any:
        with open(output_file, "w+b") as out:
            meter.out = out
            return http(u, meter, p, check_only)

    shown = shown_url(url)
    try:
        path = pooch.retrieve(url, known_hash=f"sha256:{expected}", fname=f"{uuid.uuid4().hex}.zip",
                              path=folder, downloader=into_meter, progressbar=False)
    except ValueError:  # pooch: the hash does not match; the file is already deleted
        if meter.length is not None and meter.got != meter.length:
            raise ModelFetchError(f"the download of {shown} was truncated: {meter.got} of {meter.length} bytes "
                                  "arrived; nothing was installed. Try again.") from None
        raise ModelFetchError(f"the archive from {shown} has SHA-256 {meter.sha256.hexdigest()}, not the expected "
                              f"{expected}; it was deleted and nothing was installed.") from None
    except requests.exceptions.HTTPError as exc:
        status = exc.response.status_code if exc.response is not None else "?"
        reason = exc.response.reason if exc.response is not None else ""
        raise ModelFetchError(f"{shown} answered HTTP {status} {reason}; nothing was installed.") from None
    except (requests.exceptions.ChunkedEncodingError, requests.exceptions.ContentDecodingError):
        raise ModelFetchError(f"the download of {shown} was cut short after {meter.got} bytes; nothing was "
                              "installed. Try again.") from None
    except (requests.exceptions.RequestException, OSError) as exc:
        raise ModelFetchError(f"cannot download {shown} ({exc.__class__.__name__}: {_scrubbed(str(exc))}); nothing was "
                              "installed.") from None
    return Path(path), meter.got


# -- archive checks ------------------------------------------------------------------------------
def _member_basename(info: zipfile.ZipInfo) -> Optional[str]:
    """The file name a member unpacks to, or None for a directory entry. Raises on anything that
    could escape the pack directory or is not a plain file."""
    raw = info.filename
    if "\\" in raw or raw.startswith("/") or "\x00" in raw or (len(raw) > 1 and raw[1] == ":"):
        raise ModelFetchError(f"the archive member {raw!r} has an unsafe path; the archive is refused.")
    parts = PurePosixPath(raw).parts
    if any(p in ("..", ".") for p in parts) or not parts:
        raise ModelFetchError(f"the archive member {raw!r} tries to leave the pack directory; the archive is refused.")
    mode = info.external_attr >> 16
    if stat.S_ISLNK(mode):
        raise ModelFetchError(f"the archive member {raw!r} is a symbolic link; the archive is refused.")
    if info.is_dir():
        if len(parts) > 1:
            raise ModelFetchError(f"the archive nests directories ({raw!r}); an insightface pack does not.")
        return None
    if stat.S_IFMT(mode) not in (0, stat.S_IFREG):  # no type bits: written by a tool that leaves them out
        raise ModelFetchError(f"the archive member {raw!r} is not a plain file; the archive is refused.")
    # insightface packs hold their files at the top level or in one folder named after the pack.
    if len(parts) > 2:
        raise ModelFetchError(f"the archive member {raw!r} is nested too deep; an insightface pack does not do that.")
    if info.flag_bits & 0x1:
        raise ModelFetchError(f"the archive member {raw!r} is encrypted; the archive is refused.")
    return parts[-1]


@dataclass
class _Plan:
    install: list[tuple[zipfile.ZipInfo, str, str]] = field(default_factory=list)  # (info, file, role)
    refused: list[dict[str, str]] = field(default_factory=list)
    skipped: list[dict[str, str]] = field(default_factory=list)


def _plan(zf: zipfile.ZipFile, spec: Optional[PackSpec], name: str) -> _Plan:
    infos = zf.infolist()
    if len(infos) > MAX_MEMBERS:
        raise ModelFetchError(f"the archive has {len(infos)} members, more than {MAX_MEMBERS}; it is refused.")
    plan = _Plan()
    seen: set[str] = set()
    total = 0
    for info in infos:
        base = _member_basename(info)
        if base is None:
            continue
        if base in seen:
            raise ModelFetchError(f"the archive holds two files named {base!r}; it is refused.")
        seen.add(base)
        if info.file_size > MAX_MEMBER_BYTES:
            raise ModelFetchError(f"the archive member {info.filename!r} unpacks to {info.file_size} bytes, over the limit.")
        if info.compress_size and info.file_size / info.compress_size > MAX_RATIO and info.file_size > _CHUNK:
            raise ModelFetchError(f"the archive member {info.filename!r} is compressed suspiciously well (a zip bomb?); refused.")
        total += info.file_size
        if total > MAX_TOTAL_BYTES:
            raise ModelFetchError("the archive unpacks to more than the size limit; it is refused.")
        role = packs.classify(base, spec)
        if role == packs.ATTRIBUTE:
            plan.refused.append({"file": base, "reason": packs.ATTRIBUTE_REASON})
        elif role in (packs.DETECTION, packs.RECOGNITION):
            plan.install.append((info, base, role))
        elif role == packs.LANDMARKS:
            plan.skipped.append({"file": base, "reason": "landmark model, not needed (the detector gives five points)"})
        else:
            plan.skipped.append({"file": base, "reason": "not a detector or recognizer safeface uses"})
    for role, label in ((packs.DETECTION, "detector (SCRFD, det_*.onnx)"), (packs.RECOGNITION, "recognizer (ArcFace, w600k_*.onnx or glintr100.onnx)")):
        found = [f for _, f, r in plan.install if r == role]
        if not found:
            raise ModelFetchError(f"the archive for pack {name!r} holds no {label}; nothing was installed.")
        if len(found) > 1:
            raise ModelFetchError(
                f"the archive for pack {name!r} holds several {role} models ({', '.join(found)}); "
                "safeface cannot tell which to use, so nothing was installed."
            )
    return plan


def _unpack(zf: zipfile.ZipFile, plan: _Plan, staging: Path, spec: Optional[PackSpec]) -> list[InstalledFile]:
    out = []
    for info, base, role in plan.install:
        with zf.open(info) as src, open(staging / base, "xb") as dst:
            try:
                digest, written = copy_hashed(src, dst, limit=min(info.file_size, MAX_MEMBER_BYTES))
            except TooLarge:
                raise ModelFetchError(f"the archive member {info.filename!r} is larger than its header says; "
                                      "refused.") from None
        known = spec.member(base) if spec else None
        if known is not None and known.sha256 and not same_digest(known.sha256, digest):
            raise ModelFetchError(
                f"{base} in the archive has SHA-256 {digest[:16]}..., not the manifest's "
                f"{known.sha256[:16]}...; nothing was installed."
            )
        out.append(InstalledFile(file=base, role=role, sha256=digest, size=written))
    return out


def _install_staging(staging: Path, target: Path, record: PackRecord) -> None:
    """Replace `target` by `staging` with renames and record the pack in the model registry, as
    one step: if the swap or the registry write fails, the old pack (or nothing) is back in place
    and `staging` still holds the new files for the caller to remove."""
    backup: Optional[Path] = None
    if target.exists() or target.is_symlink():
        if target.is_symlink() or not target.is_dir():
            raise ModelFetchError(f"{target} exists and is not a pack directory; move it away and fetch again.")
        backup = target.with_name(f".{target.name}.old-{uuid.uuid4().hex}")
    try:
        with registry.update() as reg:
            if backup is not None:
                target.rename(backup)
            staging.rename(target)
            record.register(reg, target)
    except BaseException:
        if not staging.exists() and target.exists():
            target.rename(staging)
        if backup is not None and backup.exists():
            backup.rename(target)
        raise
    if backup is not None:
        shutil.rmtree(backup, ignore_errors=True)


# -- the public functions ------------------------------------------------------------------------
def fetch_pack(
    name: str,
    dest_dir: Optional[Path] = None,
    url: Optional[str] = None,
    sha256: Optional[str] = None,
    timeout: float = DEFAULT_TIMEOUT,
    force: bool = False,
    progress: Optional[Progress] = None,
) -> FetchResult:
    """Download, verify and install pack `name` into `dest_dir/name` (default: packs_home()).

    A manifest pack uses the manifest's URL and SHA-256 unless `url` names a mirror; a `sha256`
    that contradicts the manifest is refused. Any other name needs both `url` and `sha256`.
    An installed pack that still verifies is left as it is unless `force`."""
    packs.check_pack_name(name)
    spec = packs.pack_spec(name)
    if name == packs.CUSTOM:
        raise ModelFetchError(
            "the 'custom' pack is your own files, not a download: run "
            "`safeface models add-custom --detector DET.onnx --recognizer REC.onnx`."
        )
    expected = _expected_sha256(name, spec, sha256)
    src = url or (spec.url if spec else None)
    if not src:
        known = ", ".join(s.name for s in packs.pack_specs() if s.url)
        raise ModelFetchError(f"no pack named {name!r} in the manifest (known: {known}); pass --url and --sha256.")
    check_url(src)
    licence = spec.licence if spec else "unknown: not a manifest pack; check the licence of the files you fetched"
    root = Path(dest_dir) if dest_dir else packs.packs_home()
    target = packs.pack_dir(name, root)

    if target.exists() and not force:
        try:
            v = packs.verify_pack(target)
            return FetchResult(name=name, path=target, url=shown_url(src), archive_sha256=v.record.archive_sha256,
                               licence=v.record.licence, installed=(v.record.detector, v.record.recognizer),
                               refused=v.record.refused, skipped=v.record.skipped, already_installed=True)
        except ModelError as exc:
            raise ModelFetchError(f"{target} exists but does not verify ({exc}); fetch again with --force.") from None

    try:
        return _fetch_into(name, spec, src, expected, licence, root, target, timeout, bool(url), progress)
    except OSError as exc:
        raise ModelFetchError(f"cannot install pack {name!r} into {root} ({exc}); nothing was installed.") from None


def _fetch_into(name: str, spec: Optional[PackSpec], src: str, expected: str, licence: str, root: Path,
                target: Path, timeout: float, mirrored: bool, progress: Optional[Progress]) -> FetchResult:
    root.mkdir(parents=True, exist_ok=True)
    # The archive and the unpacked files wait in hidden folders beside the target; whatever
    # happens, both are gone when this returns, and only a verified pack is renamed into place.
    download = Path(tempfile.mkdtemp(prefix=f".{name}.download-", dir=root))
    staging: Optional[Path] = None
    try:
        size = spec.size if spec and not mirrored else None
        archive, got = _download(src, download, expected, timeout, MAX_ARCHIVE_BYTES, size, progress)
        try:
            zf = zipfile.ZipFile(archive)
        except (zipfile.BadZipFile, OSError) as exc:
            raise ModelFetchError(f"the archive from {shown_url(src)} is not a readable zip file ({exc}); nothing was "
                                  "installed.") from None
        with zf:
            plan = _plan(zf, spec, name)
            staging = Path(tempfile.mkdtemp(prefix=f".{name}.staging-", dir=root))
            try:
                installed = _unpack(zf, plan, staging, spec)
            except (zipfile.BadZipFile, zipfile.LargeZipFile, OSError, EOFError) as exc:
                raise ModelFetchError(f"the archive from {shown_url(src)} cannot be unpacked ({exc}); nothing was "
                                      "installed.") from None
        by_role = {f.role: f for f in installed}
        record = PackRecord(
            name=name, licence=licence, source=shown_url(src), archive_sha256=expected,
            detector=by_role[packs.DETECTION], recognizer=by_role[packs.RECOGNITION],
            refused=tuple(plan.refused), skipped=tuple(plan.skipped), installed_at=registry.now(),
        )
        _install_staging(staging, target, record)
        staging = None
    finally:
        shutil.rmtree(download, ignore_errors=True)
        if staging is not None:
            shutil.rmtree(staging, ignore_errors=True)
    return FetchResult(name=name, path=target, url=shown_url(src), archive_sha256=expected, licence=licence,
                       installed=tuple(installed), refused=tuple(plan.refused), skipped=tuple(plan.skipped),
                       downloaded_bytes=got)


def _expected_sha256(name: str, spec: Optional[PackSpec], given: Optional[str]) -> str:
    given_hex = given.strip().lower() if given else None
    if given_hex is not None and (len(given_hex) != 64 or any(c not in "0123456789abcdef" for c in given_hex)):
        raise ModelFetchError("--sha256 must be 64 hexadecimal digits.")
    pinned = spec.sha256 if spec else None
    if pinned and given_hex and given_hex != pinned:
        raise ModelFetchError(
            f"pack {name!r} is pinned by the manifest to SHA-256 {pinned}; the {given_hex} you passed "
            "differs, so nothing is downloaded. Use another pack name for another archive."
        )
    expected = pinned or given_hex
    if not expected:
        raise ModelFetchError(
            f"no trustworthy SHA-256 is known for pack {name!r}; safeface never downloads without a "
            "hash to check. Pass --sha256 with the archive's published SHA-256."
        )
    return expected


def install_custom(
    detector: Path,
    recognizer: Path,
    name: str = packs.CUSTOM,
    licence: str = "stated by the user: check the licence of your own model files",
    dest_dir: Optional[Path] = None,
    force: bool = False,
) -> FetchResult:
    """Install a user's own SCRFD detector and ArcFace recognizer ONNX files as pack `name`:
    copy them into the packs directory and record their SHA-256, which is checked at each load."""
    packs.check_pack_name(name)
    if packs.pack_spec(name) is not None and name != packs.CUSTOM:
        raise ModelFetchError(f"{name!r} is a manifest pack; fetch it with `safeface models fetch {name}`.")
    sources = {packs.DETECTION: Path(detector), packs.RECOGNITION: Path(recognizer)}
    for role, path in sources.items():
        if not path.is_file():
            raise ModelFetchError(f"the {role} model {path} does not exist.")
        if packs.classify(path.name) == packs.ATTRIBUTE:
            raise ModelFetchError(f"{path.name} is an {packs.ATTRIBUTE_REASON}.")
    if sources[packs.DETECTION].name == sources[packs.RECOGNITION].name:
        raise ModelFetchError("the detector and recognizer files must have different names.")
    root = Path(dest_dir) if dest_dir else packs.packs_home()
    target = packs.pack_dir(name, root)
    if target.exists() and not force:
        raise ModelFetchError(f"{target} already exists; pass --force to replace it.")
    root.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{name}.staging-", dir=root))
    try:
        installed = []
        for role, path in sources.items():
            with open(path, "rb") as src, open(staging / path.name, "xb") as out:
                digest, size = copy_hashed(src, out)
            installed.append(InstalledFile(file=path.name, role=role, sha256=digest, size=size))
        record = PackRecord(name=name, licence=licence, source="user files: " + ", ".join(str(p) for p in sources.values()),
                            archive_sha256=None, detector=installed[0], recognizer=installed[1],
                            installed_at=registry.now())
        _install_staging(staging, target, record)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return FetchResult(name=name, path=target, url=None, archive_sha256=None, licence=licence,
                       installed=tuple(installed))


# Re-exported so the CLI needs one import for the models commands.
list_models = packs.list_models
verify_installed = packs.verify_installed

__all__ = ["FetchResult", "check_url", "fetch_pack", "install_custom", "list_models", "verify_installed"]
