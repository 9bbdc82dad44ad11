"""Deployment keys, kept apart from the data they protect.

A keyring hands out one 32-byte key per purpose ("pseudonym", "transform", "seal", "audit"), each
with numbered versions so the template keys can be rotated (re-keying the gallery) while the old
version is still readable. Two keyrings ship here:

* :class:`PassphraseKeyring`: a JSON file whose keys are wrapped with AES-256-GCM under a key
  derived from a passphrase with scrypt (its parameters are recorded in the file).
* :class:`HostKeyring`: keys supplied by the host application through a :class:`KeyProvider`,
  the interface a KMS, an HSM or a secure element can implement.

No key ever appears in a repr, a log line or an error message; only key ids (a keyed fingerprint
that reveals nothing of the key) do.
"""

from __future__ import annotations

import base64
import errno
import hashlib
import hmac
import json
import secrets
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable, Iterator, Mapping, Optional, Protocol, Sequence, Union, runtime_checkable


from ...aead import Aead, random_nonce
from ...atomicfile import DISK_FAILED, exclusive_lock, write_atomic, write_new
from ...errors import ConfigError, IntegrityError
from ...hashing import same_digest
from ...jsondepth import loads
from ...sqlite_store import disk_failed

PURPOSES: tuple[str, ...] = ("pseudonym", "transform", "seal", "audit")
KEY_BYTES = 32
# Rotating the pseudonym key would orphan every row: the subject ids needed to recompute the
# pseudonyms are never stored. It is therefore fixed for the life of a deployment.
ROTATABLE: tuple[str, ...] = ("transform", "seal", "audit")
FILE_FORMAT = "safeface-keyring"
FILE_VERSION = 1
MAX_SCRYPT_N, MAX_SCRYPT_R, MAX_SCRYPT_P = 2**20, 16, 4
SCRYPT_MAXMEM = 256 * 1024 * 1024  # what derivation may take: 128 * n * r bytes, and a little more


@dataclass(frozen=True)
class ScryptParams:
    """scrypt cost parameters. The defaults follow the usual interactive-login recommendation
    (n=2**15, r=8, p=1: about 32 MiB and a tenth of a second); tests may ask for less."""

    n: int = 2**15
    r: int = 8
    p: int = 1

    def __post_init__(self) -> None:
        # The file records them unauthenticated (they are needed to derive the key that checks
        # it): edited, a huge p made every open spin for hours, a bad n raised a bare ValueError.
        if not (2 <= self.n <= MAX_SCRYPT_N and self.n & (self.n - 1) == 0 and 1 <= self.r <= MAX_SCRYPT_R
                and 1 <= self.p <= MAX_SCRYPT_P and 129 * self.n * self.r <= SCRYPT_MAXMEM):
            raise ConfigError(f"scrypt settings n={self.n}, r={self.r}, p={self.p} are outside what safeface "
                              f"uses (n a power of two up to 2**20, r up to {MAX_SCRYPT_R}, p up to {MAX_SCRYPT_P}, "
                              f"within {SCRYPT_MAXMEM // 2**20} MiB): "
                              "if the keyring file records them, it was edited; restore it from a backup.")

    def derive(self, passphrase: str, salt: bytes) -> bytes:
        if not passphrase:
            raise ConfigError("the keyring passphrase is empty; choose a non-empty passphrase.")
        return hashlib.scrypt(passphrase.encode("utf-8"), salt=salt, n=self.n, r=self.r, p=self.p,
                              maxmem=SCRYPT_MAXMEM, dklen=32)


# What a new keyring is created with when no settings are given. A module setting rather than a
# default argument so that a test session can lower it once for every workspace it creates
# (tests/conftest.py); an existing keyring always opens with the settings its file records.
DEFAULT_SCRYPT = ScryptParams()


def key_id_of(key: bytes) -> str:
    """A public fingerprint of a key: 16 hex digits of HMAC-SHA256(key, label). It identifies the
    key without revealing anything about it."""
    return hmac.new(key, b"safeface key id v1", hashlib.sha256).hexdigest()[:16]


def _check_purpose(purpose: str) -> None:
    if purpose not in PURPOSES:
        raise ConfigError(f"unknown key purpose {purpose!r}; the purposes are: {', '.join(PURPOSES)}.")


def _check_key(key: bytes, purpose: str, version: int) -> bytes:
    if not isinstance(key, (bytes, bytearray)) or len(key) != KEY_BYTES:
        # Never echo the value: only its type and length.
        size = len(key) if isinstance(key, (bytes, bytearray)) else type(key).__name__
        raise ConfigError(f"the {purpose} key version {version} must be {KEY_BYTES} bytes, got {size}.")
    return bytes(key)


@runtime_checkable
class Keyring(Protocol):
    """Where the gallery gets its keys. ``version=None`` means the newest version."""

    def key(self, purpose: str, version: Optional[int] = None) -> bytes: ...

    def key_id(self, purpose: str, version: Optional[int] = None) -> str: ...

    def version(self, purpose: str) -> int: ...

    def versions(self, purpose: str) -> Sequence[int]: ...


@runtime_checkable
class KeyProvider(Protocol):
    """What a host application (a KMS client, an HSM, a secure element) implements to hand keys to
    :class:`HostKeyring`. ``key`` returns the 32 bytes of one version; ``versions`` lists the
    versions it holds for a purpose, oldest first."""

    def key(self, purpose: str, version: int) -> bytes: ...

    def versions(self, purpose: str) -> Sequence[int]: ...


@runtime_checkable
class AnchorProvider(Protocol):
    """What a host implements to keep the audit log's head outside the log (a KMS monotonic
    counter, a secure element, an append-only service): the last (seq, hash) recorded, or None;
    ``advance_anchor`` must never move it backwards (keep the larger seq)."""

    def read_anchor(self) -> Optional[tuple[int, str]]: ...

    def advance_anchor(self, seq: int, head_hash: str) -> None: ...


class _KeyringBase:
    """Version bookkeeping shared by both keyrings. Subclasses implement `_raw` and `versions`."""

    def _raw(self, purpose: str, version: int) -> bytes:
        raise NotImplementedError

    def versions(self, purpose: str) -> Sequence[int]:
        raise NotImplementedError

    def version(self, purpose: str) -> int:
        _check_purpose(purpose)
        vs = self.versions(purpose)
        if not vs:
            raise ConfigError(f"the keyring holds no {purpose} key.")
        return max(vs)

    def key(self, purpose: str, version: Optional[int] = None) -> bytes:
        _check_purpose(purpose)
        v = self.version(purpose) if version is None else int(version)
        if v not in self.versions(purpose):
            raise ConfigError(f"the keyring holds no {purpose} key version {v}; "
                              f"it holds versions {list(self.versions(purpose))}.")
        return _check_key(self._raw(purpose, v), purpose, v)

    def key_id(self, purpose: str, version: Optional[int] = None) -> str:
        return key_id_of(self.key(purpose, version))

    def refresh(self) -> None:
        """Pick up versions added by another process (a no-op where nothing can change)."""


class PassphraseKeyring(_KeyringBase):
    """Keys in a JSON file, each wrapped with AES-256-GCM under a scrypt-derived key."""

    def __init__(self, path: Path, doc: dict[str, Any], kek: bytes,
                 keys: dict[str, dict[int, bytes]]) -> None:
        self._path = Path(path)
        self._doc = doc
        self._kek = kek
        self._keys = keys

    def __repr__(self) -> str:
        ids = {p: {v: key_id_of(k) for v, k in vs.items()} for p, vs in self._keys.items()}
        return f"PassphraseKeyring(path={str(self._path)!r}, key_ids={ids})"

    __str__ = __repr__

    @property
    def path(self) -> Path:
        return self._path

    @classmethod
    def create(cls, path: Union[str, Path], passphrase: str,
               scrypt: Optional[ScryptParams] = None) -> "PassphraseKeyring":
        """A new keyring with fresh random keys for every purpose (version 1), written to `path`,
        which must not exist yet; `scrypt` defaults to DEFAULT_SCRYPT."""
        path = Path(path)
        scrypt = DEFAULT_SCRYPT if scrypt is None else scrypt
        if path.exists():
            raise ConfigError(f"{path} already exists; open it with PassphraseKeyring.open or choose another path.")
        salt = secrets.token_bytes(16)
        kek = scrypt.derive(passphrase, salt)
        doc: dict[str, Any] = {
            "format": FILE_FORMAT,
            "version": FILE_VERSION,
            "kdf": {"name": "scrypt", "n": scrypt.n, "r": scrypt.r, "p": scrypt.p,
                    "salt": base64.b64encode(salt).decode("ascii")},
            "wrap": "AES-256-GCM",
            "keys": {p: [] for p in PURPOSES},
        }
        ring = cls(path, doc, kek, {p: {} for p in PURPOSES})
        for p in PURPOSES:
            ring._add_version(p, 1, secrets.token_bytes(KEY_BYTES))
        ring._write(new=True)
        return ring

    @classmethod
    def open(cls, path: Union[str, Path], passphrase: str) -> "PassphraseKeyring":
        """The keyring at `path`, unwrapped with `passphrase`. A wrong passphrase or an altered file
        raises IntegrityError."""
        path = Path(path)
        doc = _read_doc(path)
        try:
            kdf = doc["kdf"]
            if kdf.get("name") != "scrypt":
                raise ConfigError(f"the keyring at {path} uses an unknown key derivation {kdf.get('name')!r}.")
            params = ScryptParams(int(kdf["n"]), int(kdf["r"]), int(kdf["p"]))
            salt = base64.b64decode(kdf["salt"])
        except (KeyError, TypeError, ValueError, AttributeError):
            raise ConfigError(f"the keyring at {path} is malformed; restore it from a backup.") from None
        kek = params.derive(passphrase, salt)
        doc, keys = cls._load(path, kek, doc)
        return cls(path, doc, kek, keys)

    @staticmethod
    def _load(path: Path, kek: bytes, doc: Optional[dict[str, Any]] = None
              ) -> tuple[dict[str, Any], dict[str, dict[int, bytes]]]:
        doc = _read_doc(path) if doc is None else doc
        aead = Aead(kek, "the keyring's passphrase key")
        refused = f"the keyring at {path} could not be unlocked: the passphrase is wrong or the file was altered."
        keys: dict[str, dict[int, bytes]] = {p: {} for p in PURPOSES}
        for p in PURPOSES:
            try:
                items = list(doc["keys"][p])
            except (KeyError, TypeError):
                raise ConfigError(f"the keyring at {path} is malformed; restore it from a backup.") from None
            for item in items:
                try:
                    v = int(item["version"])
                    nonce = base64.b64decode(item["nonce"])
                    wrapped = base64.b64decode(item["wrapped"])
                    key = aead.decrypt(nonce, wrapped, _wrap_aad(p, v), refused)
                except (KeyError, TypeError, ValueError):
                    raise ConfigError(f"the keyring at {path} is malformed; restore it from a backup.") from None
                if not same_digest(key_id_of(key), str(item.get("key_id", ""))):
                    raise IntegrityError(f"the keyring at {path} was altered: the {p} key version {v} "
                                         f"does not match its recorded key id.")
                keys[p][v] = key
            if not keys[p]:
                raise ConfigError(f"the keyring at {path} holds no {p} key; restore it from a backup.")
        return doc, keys

    def versions(self, purpose: str) -> Sequence[int]:
        _check_purpose(purpose)
        return sorted(self._keys[purpose])

    def _raw(self, purpose: str, version: int) -> bytes:
        return self._keys[purpose][version]

    def rotate(self, *purposes: str) -> dict[str, int]:
        """Add a fresh newest version for each purpose (default: "transform" and "seal", the keys
        a gallery re-key moves to) and save the file. Old versions stay until `retire`, so a
        gallery that has not been re-keyed yet, or whose re-key was interrupted, still opens."""
        chosen = purposes or ("transform", "seal")
        for p in chosen:
            _check_purpose(p)
            if p not in ROTATABLE:
                raise ConfigError(f"the {p} key cannot be rotated: stored rows are keyed by it and the "
                                  f"subject ids needed to recompute them are never kept.")
        out: dict[str, int] = {}
        with self._exclusive() as still_held:
            for p in chosen:
                v = max(self._keys[p]) + 1
                self._add_version(p, v, secrets.token_bytes(KEY_BYTES))
                out[p] = v
            still_held()  # two rotations numbering their keys alike: the one rows move to would be lost
            self._write()
        return out

    def retire(self, purpose: str, version: int) -> None:
        """Delete an old key version for good (after every gallery has been re-keyed past it)."""
        _check_purpose(purpose)
        with self._exclusive() as still_held:
            if version not in self._keys[purpose]:
                raise ConfigError(f"the keyring holds no {purpose} key version {version}.")
            if version == max(self._keys[purpose]):
                raise ConfigError(f"the {purpose} key version {version} is the newest; rotate before retiring it.")
            del self._keys[purpose][version]
            self._doc["keys"][purpose] = [e for e in self._doc["keys"][purpose] if int(e["version"]) != version]
            still_held()
            self._write()

    @contextmanager
    def _exclusive(self) -> Iterator[Callable[[], None]]:
        """Hold an exclusive lock on the keyring and start from the file as it is now, so two
        holders rotating at once cannot overwrite each other's new versions. Yields the check to
        call before writing (atomicfile.refuse_lost_lock). The keyring file itself is the lock's
        guard (atomicfile.take_guard): its lock file deleted while held lets no second writer in."""
        with exclusive_lock(self._path.with_name(self._path.name + ".lock"), self._path) as still_held:
            self.refresh()
            yield still_held

    def refresh(self) -> None:
        """Re-read the file, e.g. after another process rotated a key. The passphrase-derived key
        is kept (the salt never changes), so no passphrase is needed again. A file that lacks a
        version newer than any it holds, which this handle has, is an older copy put back: it is
        refused and the keys in memory are kept (a rotation over it would write a second key
        under that version number, and the one the rows are sealed under would be lost). So is a
        file holding another key under a version this handle holds: an older copy put back and
        rotated since by another process."""
        doc, keys = self._load(self._path, self._kek)
        for p, mine in self._keys.items():
            theirs = keys.get(p, {})
            lost = [v for v in mine if v not in theirs and v > max(theirs, default=0)]
            if lost:
                raise ConfigError(f"the keyring file {self._path.name} lacks {p} key version {max(lost)}, which this "
                                  "process holds: it was restored from an older copy. Put back the newest copy "
                                  "of the keyring before rotating or re-keying.")
            other = [v for v, key in mine.items() if v in theirs and not hmac.compare_digest(key, theirs[v])]
            if other:
                raise ConfigError(f"the keyring file {self._path.name} holds another {p} key under version "
                                  f"{max(other)} than this process: it was restored from an older copy and rotated "
                                  "since. Put back the newest copy of the keyring before rotating or re-keying.")
        self._doc, self._keys = doc, keys

    def _add_version(self, purpose: str, version: int, key: bytes) -> None:
        nonce = random_nonce()
        wrapped = Aead(self._kek, "the keyring's passphrase key").encrypt(nonce, key, _wrap_aad(purpose, version))
        self._keys[purpose][version] = key
        self._doc["keys"][purpose].append({
            "version": version,
            "key_id": key_id_of(key),
            "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "nonce": base64.b64encode(nonce).decode("ascii"),
            "wrapped": base64.b64encode(wrapped).decode("ascii"),
        })

    def _write(self, new: bool = False) -> None:
        # Atomic and owner-only: a crash leaves the old file or the new one, never half. A new
        # keyring is created only where none exists (two creators racing: one wins, one fails).
        data = json.dumps(self._doc, indent=2, sort_keys=True).encode("utf-8")
        if new:
            try:
                write_new(self._path, data, mode=0o600)
            except FileExistsError:
                raise ConfigError(f"{self._path} already exists; open it with PassphraseKeyring.open or choose "
                                  "another path.") from None
        else:
            write_atomic(self._path, data, mode=0o600)

# A keyring file nests a few levels ({"keys": {purpose: [{...}]}}); deeper is no keyring, from any
# caller's depth (jsondepth.py).
MAX_FILE_DEPTH = 16


def _read_doc(path: Path) -> dict[str, Any]:
    # A failing disk (EIO) said "unreadable" and nothing to do: it is the disk's error, to retry
    # once the device works, as for the workspace's other small files. At the open only EIO
    # counts: ENXIO there is a socket put in the file's place (regularfile.read_workspace_file).
    try:
        with open(path, "rb") as fh:
            try:
                data = fh.read()
            except OSError as exc:
                if exc.errno in DISK_FAILED:
                    raise disk_failed("the keyring", exc.strerror or "I/O error", path) from None
                raise
        doc = loads(data.decode("utf-8"), MAX_FILE_DEPTH)
    except FileNotFoundError:
        raise ConfigError(f"no keyring at {path}; create one with PassphraseKeyring.create.") from None
    except OSError as exc:
        if exc.errno == errno.EIO:
            raise disk_failed("the keyring", exc.strerror or "I/O error", path) from None
        raise ConfigError(f"the keyring at {path} is unreadable ({exc.__class__.__name__}).") from None
    except ValueError as exc:
        raise ConfigError(f"the keyring at {path} is unreadable ({exc.__class__.__name__}).") from None
    if not isinstance(doc, dict) or doc.get("format") != FILE_FORMAT or doc.get("version") != FILE_VERSION:
        raise ConfigError(f"{path} is not a safeface keyring of format version {FILE_VERSION}.")
    return doc


def _wrap_aad(purpose: str, version: int) -> bytes:
    # Binds each wrapped key to its purpose and version: swapping entries in the file fails.
    return f"safeface-keyring|{purpose}|{version}".encode("ascii")


class HostKeyring(_KeyringBase):
    """Keys supplied by the host application through a :class:`KeyProvider` (a KMS, an HSM, a
    secure element). Rotation, if any, is the provider's business: expose a new version in
    ``versions`` and re-key the gallery."""

    def __init__(self, provider: KeyProvider, anchor: Optional["AnchorProvider"] = None) -> None:
        self._provider = provider
        self._anchor = anchor

    @classmethod
    def from_callback(cls, get_key: Callable[[str, int], bytes],
                      versions: Optional[Mapping[str, Sequence[int]]] = None,
                      anchor: Optional["AnchorProvider"] = None) -> "HostKeyring":
        """A keyring over a host function ``get_key(purpose, version) -> 32 bytes``; `versions`
        lists the versions per purpose (default: version 1 of every purpose)."""
        return cls(_CallbackProvider(get_key, versions or {p: (1,) for p in PURPOSES}), anchor)

    @property
    def anchor_provider(self) -> Optional["AnchorProvider"]:
        """Where the host keeps the audit log's head outside the log, if it does: the `anchor`
        given, else the key provider itself when it implements :class:`AnchorProvider`."""
        if self._anchor is not None:
            return self._anchor
        return self._provider if isinstance(self._provider, AnchorProvider) else None

    def __repr__(self) -> str:
        return f"HostKeyring(provider={type(self._provider).__name__})"

    __str__ = __repr__

    def versions(self, purpose: str) -> Sequence[int]:
        _check_purpose(purpose)
        return sorted(int(v) for v in self._provider.versions(purpose))

    def _raw(self, purpose: str, version: int) -> bytes:
        return self._provider.key(purpose, version)

    def rotate(self, *purposes: str) -> dict[str, int]:
        """Ask the provider for new versions, where it can make them (``provider.rotate``)."""
        rotate = getattr(self._provider, "rotate", None)
        if rotate is None:
            raise ConfigError(f"the key provider {type(self._provider).__name__} cannot rotate keys; "
                              f"add a new version at the host and re-key the gallery.")
        out: dict[str, int] = rotate(*purposes)
        return out


class _CallbackProvider:
    def __init__(self, get_key: Callable[[str, int], bytes], versions: Mapping[str, Sequence[int]]) -> None:
        self._get = get_key
        self._versions = {p: tuple(int(v) for v in vs) for p, vs in versions.items()}

    def key(self, purpose: str, version: int) -> bytes:
        return self._get(purpose, version)

    def versions(self, purpose: str) -> Sequence[int]:
        return self._versions.get(purpose, ())


class StaticKeyProvider:
    """A :class:`KeyProvider` over keys the host already holds in memory, e.g. fetched once from a
    secrets manager at start-up: ``{"transform": {1: b"...", 2: b"..."}, ...}``.

    `keep`: where the keys made by ``rotate`` go before anything is sealed under them, called once
    per rotation with every new key, ``keep({"transform": (2, key), "seal": (2, key)})``. It must
    store all of them or none (raise to stop the rotation), and must refuse a version it already
    holds: a process whose keys are out of date would otherwise overwrite the key the templates
    are under. Without it ``rotate`` refuses: a re-key would move every template to a key that
    exists only in this process, and they would be lost with it."""

    def __init__(self, keys: Mapping[str, Mapping[int, bytes]],
                 keep: Optional[Callable[[Mapping[str, tuple[int, bytes]]], None]] = None) -> None:
        self._keys = {p: {int(v): _check_key(k, p, int(v)) for v, k in vs.items()} for p, vs in keys.items()}
        self._keep = keep

    def __repr__(self) -> str:
        return f"StaticKeyProvider(purposes={sorted(self._keys)})"

    @classmethod
    def generate(cls, keep: Optional[Callable[[Mapping[str, tuple[int, bytes]]], None]] = None
                 ) -> "StaticKeyProvider":
        """Fresh random keys, version 1 of every purpose (for tests and ephemeral deployments)."""
        return cls({p: {1: secrets.token_bytes(KEY_BYTES)} for p in PURPOSES}, keep)

    def key(self, purpose: str, version: int) -> bytes:
        try:
            return self._keys[purpose][version]
        except KeyError:
            raise ConfigError(f"the host holds no {purpose} key version {version}.") from None

    def versions(self, purpose: str) -> Sequence[int]:
        return sorted(self._keys.get(purpose, {}))

    def rotate(self, *purposes: str) -> dict[str, int]:
        """New versions of `purposes` (the transform and seal keys by default), handed to `keep`
        together before any is added; a `keep` that raises adds none of them."""
        if self._keep is None:
            raise ConfigError("this StaticKeyProvider holds its keys only in memory, so a key it made would be lost "
                              "with the process, and every template re-keyed to it. Give it keep=, a function that "
                              "stores each new key where the host keeps the others.")
        made: dict[str, tuple[int, bytes]] = {}
        for p in purposes or ("transform", "seal"):
            if p not in ROTATABLE:
                raise ConfigError(f"the {p} key cannot be rotated.")
            made[p] = (max(self._keys[p]) + 1, secrets.token_bytes(KEY_BYTES))
        self._keep(dict(made))
        for p, (v, k) in made.items():
            self._keys[p][v] = k
        return {p: v for p, (v, _) in made.items()}
