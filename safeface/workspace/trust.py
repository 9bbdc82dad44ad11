"""The trust store: the public keys a workspace trusts to sign consent (issuers) and legal
bases (authorities), in ``WS/keys/trust.json``.

Authenticated three ways, so that writing the workspace is not enough to trust a key:

* the file carries an HMAC-SHA256 under a key derived from the keyring: a hand-edited file, or
  one copied from another workspace, is refused (IntegrityError naming the file);
* every change opens the keyring (the passphrase) and appends an audit entry ``trust-add`` or
  ``trust-remove`` naming the key's RFC 7638 thumbprint and the SHA-256 of the store after it;
* the file records the audit entry of its last change, and opening checks that this is the
  log's last trust change with the same digest: an older, genuinely MACed copy put back
  (re-trusting a removed key) is refused as long as the audit log itself cannot be rolled back
  (anchor.py).

Keys are Ed25519, identified by RFC 7638 JWK thumbprints, imported and exported as JWKS
(RFC 7517, public keys only). A removed key stays listed with the time it was removed. A key that
is not the canonical encoding of a curve point of large order is never trusted (ed25519_points.py):
under a small-order key anyone can sign.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import json
import re
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Mapping, Optional, Sequence

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from joserfc.errors import JoseError
from joserfc.jwk import OKPKey

from ..errors import ConfigError, IntegrityError
from ..hashing import same_digest
from ..jsondepth import TooDeep, loads
from ..policy.tokens import key_id
from ..regularfile import read_text, read_workspace_file
from .audit import AuditEntry, AuditLog
from .ed25519_points import public_key_problem
from ..atomicfile import exclusive_lock, shared_lock, write_atomic
from .keys import TRUST_MAC, derived_key
from .paths import WorkspacePaths

FORMAT = "safeface-trust/2"
# Far above any real trust store (a few hundred bytes a key); a bound on what a replaced file makes us read.
MAX_TRUST_BYTES = 16 * 1024 * 1024
# A JWK Set or a trust store nests a few levels ({"keys": [{"jwk": {...}}]}); deeper is no such file.
MAX_JSON_DEPTH = 16
# A JWK Set given to `keys import`: thousands of keys, far more than any issuer publishes.
MAX_JWKS_BYTES = 1024 * 1024
KINDS = ("consent-issuer", "authority")
# The names the guard is given its keys under.
GUARD_NAMES = {"consent-issuer": "consent_issuers", "authority": "authorities"}
OPERATIONS = ("trust-add", "trust-remove")
_DIGEST = re.compile(r"trust store sha256 ([0-9a-f]{64})")
_CHANGED = re.compile(r"^(consent-issuer|authority) key ([A-Za-z0-9_-]{43});")  # as _record writes it


def thumbprint(public_key: Ed25519PublicKey) -> str:
    """The key's RFC 7638 JWK thumbprint (SHA-256, base64url): the `kid` its tokens carry."""
    return key_id(public_key)


def public_jwk(public_key: Ed25519PublicKey) -> dict[str, Any]:
    return dict(OKPKey.import_key(public_key).as_dict(private=False))


def _check_kind(kind: str) -> str:
    if kind not in KINDS:
        raise ConfigError(f"the trust kind must be one of {', '.join(KINDS)}, not {kind!r}.")
    return kind


@dataclass(frozen=True)
class TrustedKey:
    kind: str
    thumbprint: str
    public_key: Ed25519PublicKey
    label: str
    added: str
    removed: Optional[str] = None

    @property
    def active(self) -> bool:
        return self.removed is None

    def record(self) -> dict[str, Any]:
        return {"kind": self.kind, "thumbprint": self.thumbprint, "jwk": public_jwk(self.public_key),
                "label": self.label, "added": self.added, "removed": self.removed}

    def listing(self) -> dict[str, Any]:
        return {k: v for k, v in self.record().items() if k != "jwk"}


def _canon(obj: Any) -> bytes:
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


def key_problem(public_key: Ed25519PublicKey) -> Optional[str]:
    """Why this key cannot be trusted to sign (not a canonical curve point, or of small order),
    or None."""
    return public_key_problem(public_key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw))


def check_public_key(public_key: Ed25519PublicKey, where: str) -> Ed25519PublicKey:
    problem = key_problem(public_key)
    if problem is not None:
        raise ConfigError(f"{where} cannot be trusted: {problem}. Ask its owner for the public key they really sign "
                          "with.")
    return public_key


def _key_from_jwk(jwk: Any, where: str, *, judged: bool = True) -> Ed25519PublicKey:
    """The Ed25519 public key of a JWK; with `judged`, refused unless it can be trusted to sign
    (check_public_key). The store reads its own keys unjudged, so that one trusted before this
    check existed can still be listed and removed; it is judged again before any use (for_guard)."""
    if not isinstance(jwk, Mapping) or jwk.get("kty") != "OKP" or jwk.get("crv") != "Ed25519":
        raise ConfigError(f"{where}: only Ed25519 keys (kty OKP, crv Ed25519) can be trusted.")
    if "d" in jwk:
        raise ConfigError(f"{where} holds a PRIVATE key: trust only the public half (drop the 'd' member); keep "
                          "the private key with the consent service or authority.")
    try:
        key = OKPKey.import_key(dict(jwk)).public_key
    except (JoseError, ValueError, TypeError) as exc:
        raise ConfigError(f"{where} is not a valid Ed25519 public key ({exc}).") from None
    if not isinstance(key, Ed25519PublicKey):
        raise ConfigError(f"{where} is not an Ed25519 public key.")
    return check_public_key(key, where) if judged else key


class TrustStore:
    """The trust store as read from disk (MAC checked). Use `check_recorded` against the audit
    log before believing it; `load_trust` does both."""

    def __init__(self, paths: WorkspacePaths, keys: Sequence[TrustedKey], audit_seq: int) -> None:
        self.paths = paths
        self.keys = tuple(keys)
        self.audit_seq = audit_seq

    @staticmethod
    def _mac(keyring: Any, body: Mapping[str, Any]) -> str:
        return hmac.new(derived_key(keyring, TRUST_MAC), _canon(body), hashlib.sha256).hexdigest()

    @property
    def digest(self) -> str:
        """SHA-256 of the keys as recorded; the audit entry of each change names it."""
        return hashlib.sha256(_canon([k.record() for k in self.keys])).hexdigest()

    @classmethod
    def load(cls, paths: WorkspacePaths, keyring: Any) -> "TrustStore":
        path = paths.trust
        data = read_workspace_file(path, str(path), MAX_TRUST_BYTES)
        if data is None:
            return cls(paths, (), 0)  # nothing trusted; check_recorded says whether it was deleted
        try:
            doc = loads(data, MAX_JSON_DEPTH)
        except ValueError as exc:
            raise IntegrityError(f"{path} is not readable JSON ({exc}): it was altered.") from None
        if isinstance(doc, dict) and "format" not in doc and any(k in doc for k in GUARD_NAMES.values()):
            raise ConfigError(
                f"{path} is in the unauthenticated format of earlier safeface versions and is no longer believed. "
                "Move it away and trust each key again with `safeface keys import WS --kind ... --jwks FILE` "
                "(or `keys new`); the public keys it listed are in the old file.")
        if not isinstance(doc, dict) or doc.get("format") != FORMAT:
            raise IntegrityError(f"{path} is not a safeface trust store ({FORMAT}): it was replaced.")
        body = {k: v for k, v in doc.items() if k != "mac"}
        if not same_digest(cls._mac(keyring, body), str(doc.get("mac", ""))):
            raise IntegrityError(f"{path} does not carry this workspace's MAC: it was edited by hand or copied in "
                                 "from elsewhere. Restore it from a backup; trust keys only with `safeface keys`.")
        keys = []
        try:
            for item in doc["keys"]:
                pk = _key_from_jwk(item["jwk"], f"{path}", judged=False)
                keys.append(TrustedKey(_check_kind(str(item["kind"])), thumbprint(pk), pk, str(item.get("label", "")),
                                       str(item["added"]), item.get("removed")))
            audit_seq = int(doc["audit_seq"])
        except (KeyError, TypeError, ValueError):
            raise IntegrityError(f"{path} is malformed although its MAC verifies; restore it from a backup.") from None
        return cls(paths, keys, audit_seq)

    def check_recorded(self, audit: AuditLog) -> None:
        """Raise IntegrityError unless this store is the one the audit log's last trust change
        produced (or the empty store, if the log records no trust change)."""
        last = audit.last_entry(OPERATIONS)
        path = self.paths.trust
        if last is None:
            if self.keys or self.audit_seq != 0:
                raise IntegrityError(f"{path} trusts keys that no audit entry records: it was copied in.")
            return
        found = _DIGEST.findall(last.note or "")
        if not path.is_file():
            raise IntegrityError(f"{path} is missing although audit entry {last.seq} records a trust change: it was "
                                 "deleted. Restore it from a backup.")
        if self.audit_seq != last.seq or not found or not same_digest(found[-1], self.digest):
            raise IntegrityError(
                f"{path} is not the trust store the audit log's last trust change (entry {last.seq}) produced: an "
                "older copy was put back, or that change was interrupted. Restore the file from a backup, or repeat "
                "the change with `safeface keys`.")
        # The digest matches, yet a change may have been made on an older copy while the log's
        # removal was hidden from it (renamed, then named back): that change wrote the removed key
        # forward under a genuine entry.
        _check_no_removed_key(self, audit, ())

    def active(self, kind: Optional[str] = None) -> list[TrustedKey]:
        return [k for k in self.keys if k.active and (kind is None or k.kind == kind)]

    def usable(self, kind: Optional[str] = None) -> list[TrustedKey]:
        """The keys trusted now, once each is judged fit to sign; a store that still trusts one that
        is not (trusted before that was checked) is refused until it is removed."""
        keys = self.active(kind)
        for k in keys:
            problem = key_problem(k.public_key)
            if problem is not None:
                raise ConfigError(f"{self.paths.trust} trusts the {k.kind} key {k.thumbprint} ({k.label!r}), which "
                                  f"cannot be trusted: {problem}. Stop trusting it with `safeface keys remove WS "
                                  f"--kind {k.kind} --thumbprint {k.thumbprint}`.")
        return keys

    def for_guard(self) -> dict[str, dict[str, Ed25519PublicKey]]:
        """{"consent_issuers": {key id: key}, "authorities": {...}} of the keys trusted now; ids are
        those tokens name their signer by (policy.tokens.key_id)."""
        out: dict[str, dict[str, Ed25519PublicKey]] = {name: {} for name in GUARD_NAMES.values()}
        for k in self.usable():
            out[GUARD_NAMES[k.kind]][key_id(k.public_key)] = k.public_key
        return out

    def no_longer_trusted(self) -> dict[str, list[tuple[str, Ed25519PublicKey]]]:
        """{"consent_issuers": [(thumbprint, key)], "authorities": [...]} of the keys removed and
        not trusted again: the store check explains by them the rows enrolled before the removal."""
        active = {(k.kind, k.thumbprint) for k in self.active()}
        out: dict[str, list[tuple[str, Ed25519PublicKey]]] = {name: [] for name in GUARD_NAMES.values()}
        for k in self.keys:
            if not k.active and (k.kind, k.thumbprint) not in active:
                out[GUARD_NAMES[k.kind]].append((k.thumbprint, k.public_key))
        return out

    def jwks(self, kind: str) -> dict[str, Any]:
        """The keys of `kind` trusted now as a JWK Set (RFC 7517), `kid` = RFC 7638 thumbprint."""
        _check_kind(kind)
        return {"keys": [{**public_jwk(k.public_key), "kid": k.thumbprint, "use": "sig"} for k in self.usable(kind)]}

    def listing(self) -> list[dict[str, Any]]:
        """Every key ever trusted: kind, thumbprint, label, added, removed (for the report)."""
        return [k.listing() for k in self.keys]

    def _write(self, keyring: Any, audit_seq: int) -> None:
        body = {"format": FORMAT, "keys": [k.record() for k in self.keys], "audit_seq": audit_seq}
        doc = {**body, "mac": self._mac(keyring, body)}
        write_atomic(self.paths.trust, json.dumps(doc, indent=2, sort_keys=True) + "\n", mode=0o600)
        self.audit_seq = audit_seq


def load_trust(paths: WorkspacePaths, keyring: Any, audit: AuditLog) -> TrustStore:
    """The trust store, once its MAC and its audit record check (`for_guard()`: the keys trusted
    now)."""
    store = load_recorded(paths, keyring, audit)
    store.for_guard()  # a key unfit to sign is refused here, as at every use
    return store


def load_recorded(paths: WorkspacePaths, keyring: Any, audit: AuditLog) -> TrustStore:
    """The trust store, once its MAC and its audit record check, whatever keys it holds (a
    listing shows a key unfit to sign, so that it can be removed)."""
    # A change records its entry, then writes the file: read between the two, an honest change
    # would look like an older trust.json put back.
    with shared_lock(paths.trust_lock, paths.lock_guard):
        store = TrustStore.load(paths, keyring)
        store.check_recorded(audit)
    return store


def write_empty(paths: WorkspacePaths, keyring: Any) -> None:
    """The store of a new workspace: no key trusted, no change recorded."""
    TrustStore(paths, (), 0)._write(keyring, 0)


def change_trust(paths: WorkspacePaths, keyring: Any, audit: AuditLog, *,
                 add: Sequence[tuple[str, Ed25519PublicKey, str]] = (),
                 remove: Sequence[tuple[str, str]] = ()) -> list[TrustedKey]:
    """Trust `add` [(kind, public key, label)] and stop trusting `remove` [(kind, thumbprint)],
    each change audited; returns the keys changed (a key already trusted is left as it is)."""
    changed: list[TrustedKey] = []
    with exclusive_lock(paths.trust_lock, paths.lock_guard) as still_held:
        # The MAC is checked but not the audit record: repeating an interrupted change is how
        # an operator mends a store that fell behind its log. Not by writing forward a key the
        # log says was removed, which an older copy put back still trusts.
        store = TrustStore.load(paths, keyring)
        # The entries since the change that made this store, each as written: a removal renamed
        # there would be hidden from the check below, and the store written forward trusting it.
        audit.check_since(store.audit_seq)
        _check_no_removed_key(store, audit, [(kind, tp) for kind, tp in remove])
        last_seq = store.audit_seq
        for kind, pk, label in add:
            _check_kind(kind)
            tp = thumbprint(check_public_key(pk, f"the {kind} key {thumbprint(pk)}"))
            if any(k.thumbprint == tp for k in store.active(kind)):
                continue
            key = TrustedKey(kind, tp, pk, str(label or kind)[:200],
                             dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"))
            store.keys = store.keys + (key,)
            last_seq = _record(audit, "trust-add", key, store.digest)
            changed.append(key)
        for kind, tp in remove:
            _check_kind(kind)
            hits = [i for i, k in enumerate(store.keys) if k.active and k.kind == kind and k.thumbprint == tp]
            if not hits:
                raise ConfigError(f"no {kind} key with thumbprint {tp} is trusted; `safeface keys list WS` shows them.")
            keys = list(store.keys)
            now = dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")
            keys[hits[0]] = replace(keys[hits[0]], removed=now)
            store.keys = tuple(keys)
            last_seq = _record(audit, "trust-remove", keys[hits[0]], store.digest)
            changed.append(keys[hits[0]])
        if changed:
            still_held()  # another change let in by a replaced lock file would be lost, or undo this one
            store._write(keyring, last_seq)
    return changed


def _check_no_removed_key(store: TrustStore, audit: AuditLog, removing: Sequence[tuple[str, str]]) -> None:
    """IntegrityError when `store` trusts a key whose newest trust change in the log is its
    removal and `removing` (a change's removals) does not remove it again: a change made on an
    older copy put back would otherwise trust a removed (leaked) key again, recorded under the
    digest of another key's addition. A change checks before it writes an entry; a reading of the
    store checks too, for a change made while the removal's entry was hidden."""
    newest: dict[tuple[str, str], AuditEntry] = {}
    for e in audit.newest_first(OPERATIONS):
        m = _CHANGED.match(e.note or "")
        if m:
            newest.setdefault((m[1], m[2]), e)
    for k in store.active():
        last = newest.get((k.kind, k.thumbprint))
        if last is not None and last.operation == "trust-remove" and (k.kind, k.thumbprint) not in removing:
            raise IntegrityError(
                f"{store.paths.trust} trusts the {k.kind} key {k.thumbprint}, which audit entry {last.seq} records as removed: "
                "an older copy of the file was put back (and perhaps changed), or that removal was interrupted. Restore "
                f"the file from a backup, or repeat the removal: `safeface keys remove WS --kind {k.kind} "
                f"--thumbprint {k.thumbprint}`.")


def _record(audit: AuditLog, operation: str, key: TrustedKey, digest: str) -> int:
    # The digest goes last and the label is cut first, so the note's length limit never cuts it.
    entry = audit.append(operation, "allowed",
                         note=f"{key.kind} key {key.thumbprint}; label {key.label[:80]!r}; trust store sha256 {digest}")
    return entry.seq


def read_jwks(path: Path) -> list[tuple[Ed25519PublicKey, str]]:
    """The public keys of a JWK Set file (or of a single JWK), each with its `kid` as label."""
    # Read as the other files a user names are (a token file, a passphrase file): a FIFO at the
    # path made the command wait for ever, and /dev/zero was read until memory ran out.
    text = read_text(Path(path), f"the JWK Set {path}", MAX_JWKS_BYTES)
    try:
        # Each member once: a reader by eye takes the first of two `x`, Python's parser the last.
        doc = loads(text, MAX_JSON_DEPTH, object_pairs_hook=_members_once)
    except TooDeep:
        raise ConfigError(f"cannot read the JWK Set {path} (nested deeper than any key set).") from None
    except ValueError as exc:
        raise ConfigError(f"cannot read the JWK Set {path} ({exc}).") from None
    items = doc.get("keys") if isinstance(doc, dict) and "keys" in doc else [doc]
    if not isinstance(items, list) or not items:
        raise ConfigError(f"{path} holds no keys: a JWK Set is {{\"keys\": [ ... ]}}.")
    return [(_key_from_jwk(jwk, f"{path} key {i + 1}"), str(jwk.get("kid") or "")) for i, jwk in enumerate(items)]


def _members_once(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out = dict(pairs)
    if len(out) != len(pairs):
        raise ValueError("a member name appears twice in one object")
    return out


def write_jwks(store: TrustStore, kind: str, out: Path) -> int:
    doc = store.jwks(kind)
    write_atomic(Path(out), json.dumps(doc, indent=2) + "\n")
    return len(doc["keys"])
