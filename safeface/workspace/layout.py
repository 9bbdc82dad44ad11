"""The workspace directory: one deployment with its configuration, keys, gallery and audit log.

    WS/deployment.json      what the operator declares (purposes, notice, assessment, ...)
    WS/keys/keyring.json    template, pseudonym, seal and audit keys, wrapped under a passphrase
    WS/keys/trust.json      PUBLIC keys trusted to sign consent (issuers) and legal bases (authorities)
    WS/keys/receipt_public.txt   public key that checks erasure receipts
    WS/gallery.db           protected, sealed templates (templates/gallery.py)
    WS/audit.db             the hash-chained audit log (audit.py)
    WS/policy.db            revocations, filing crossing, purpose ends (state.py)
    WS/reports/             compliance reports; reports/evaluation/ from `safeface eval`

A --demo workspace also holds DEMO-INSECURE-* files: the consent issuer's and an authority's
private keys and the keyring passphrase, so that everything can be tried on one machine. A real
deployment never keeps those next to its data.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import secrets
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional, Sequence

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from ..errors import ConfigError, PolicyViolation
from ..policy.deployment import Deployment, blank_config, demo_config
from ..policy.rules import DEFAULT_PROFILE, check_profiles, rule_for
from ..policy.tokens import key_id, load_private_key, private_key_pem, public_key_from_text, public_key_text

PASSPHRASE_ENV = "SAFEFACE_PASSPHRASE"
TRUST_KINDS = ("consent_issuers", "authorities")


@dataclass(frozen=True)
class WorkspacePaths:
    root: Path

    @property
    def config(self) -> Path:
        return self.root / "deployment.json"

    @property
    def keys(self) -> Path:
        return self.root / "keys"

    @property
    def keyring(self) -> Path:
        return self.keys / "keyring.json"

    @property
    def trust(self) -> Path:
        return self.keys / "trust.json"

    @property
    def receipt_public(self) -> Path:
        return self.keys / "receipt_public.txt"

    @property
    def demo_issuer(self) -> Path:
        return self.keys / "DEMO-INSECURE-consent-issuer.pem"

    @property
    def demo_authority(self) -> Path:
        return self.keys / "DEMO-INSECURE-authority.pem"

    @property
    def demo_passphrase(self) -> Path:
        return self.keys / "DEMO-INSECURE-passphrase.txt"

    @property
    def gallery(self) -> Path:
        return self.root / "gallery.db"

    @property
    def audit(self) -> Path:
        return self.root / "audit.db"

    @property
    def policy(self) -> Path:
        return self.root / "policy.db"

    @property
    def reports(self) -> Path:
        return self.root / "reports"

    @property
    def evaluation(self) -> Path:
        return self.reports / "evaluation" / "latest.json"


def resolve_passphrase(root: Path, passphrase: Optional[str] = None, passphrase_file: Optional[Path] = None) -> str:
    """The keyring passphrase: given, else from a file, else (demo workspaces only) the insecure
    demo passphrase stored in the workspace, else $SAFEFACE_PASSPHRASE."""
    if passphrase:
        return passphrase
    if passphrase_file is not None:
        try:
            text = Path(passphrase_file).read_text(encoding="utf-8").strip()
        except OSError as exc:
            raise ConfigError(f"cannot read the passphrase file {passphrase_file} ({exc.strerror}).") from None
        if not text:
            raise ConfigError(f"the passphrase file {passphrase_file} is empty.")
        return text
    # A demo workspace's own passphrase comes before the environment's, which is meant for real
    # workspaces: a user with $SAFEFACE_PASSPHRASE set can still try the demo.
    demo = WorkspacePaths(Path(root)).demo_passphrase
    if demo.is_file():
        return demo.read_text(encoding="utf-8").strip()
    env = os.environ.get(PASSPHRASE_ENV)
    if env:
        return env
    raise ConfigError(f"the workspace keyring needs its passphrase: set ${PASSPHRASE_ENV} or pass --passphrase-file.")


def _write_private(path: Path, data: bytes) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(data)


# -- trust store ---------------------------------------------------------------------------
def load_trust(paths: WorkspacePaths) -> dict[str, dict[str, Ed25519PublicKey]]:
    try:
        doc = json.loads(paths.trust.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return {k: {} for k in TRUST_KINDS}
    except (OSError, ValueError) as exc:
        raise ConfigError(f"{paths.trust} is not readable JSON ({exc}).") from None
    out: dict[str, dict[str, Ed25519PublicKey]] = {}
    for kind in TRUST_KINDS:
        keys: dict[str, Ed25519PublicKey] = {}
        for item in doc.get(kind, []):
            pk = public_key_from_text(str(item.get("public_key", "")))
            keys[key_id(pk)] = pk
        out[kind] = keys
    return out


def trust_public_key(paths: WorkspacePaths, kind: str, public_key: Ed25519PublicKey, label: str) -> str:
    """Add a public key to the trust store; returns its key id."""
    if kind not in TRUST_KINDS:
        raise ConfigError(f"trust kind must be one of {TRUST_KINDS}.")
    try:
        doc: dict[str, Any] = json.loads(paths.trust.read_text(encoding="utf-8"))
    except FileNotFoundError:
        doc = {k: [] for k in TRUST_KINDS}
    kid = key_id(public_key)
    items = doc.setdefault(kind, [])
    if not any(i.get("kid") == kid for i in items):
        items.append({"kid": kid, "public_key": public_key_text(public_key), "label": label,
                      "added": dt.date.today().isoformat()})
    paths.trust.write_text(json.dumps(doc, indent=2) + "\n", encoding="utf-8")
    return kid


def new_signing_key(out: Path) -> Ed25519PrivateKey:
    """Generate an Ed25519 key and write its private half (PEM, mode 0600) to `out`."""
    key = Ed25519PrivateKey.generate()
    out.parent.mkdir(parents=True, exist_ok=True)
    try:
        _write_private(out, private_key_pem(key))
    except FileExistsError:
        raise ConfigError(f"{out} already exists; choose another path.") from None
    return key


def read_signing_key(path: Path) -> Ed25519PrivateKey:
    try:
        return load_private_key(Path(path).read_bytes())
    except OSError as exc:
        raise ConfigError(f"cannot read the signing key {path} ({exc.strerror}).") from None


# -- creating a workspace ----------------------------------------------------------------------
def check_registrable(dep: Deployment) -> None:
    """CN-15 refuses a private-space device at registration too, not only at every call: no
    assessment is recorded for it, so it never looks ready to process."""
    rule = rule_for("private-space", dep.profiles)
    for f in dep.problems(dt.date.today()):
        if f.rule == rule:
            raise PolicyViolation(f.rule, f"this deployment cannot be registered: {f.message}")


def init_workspace(root: Path, *, demo: bool = False, profiles: Sequence[str] = (DEFAULT_PROFILE,),
                   passphrase: Optional[str] = None, today: Optional[dt.date] = None,
                   keyring_factory: Any = None) -> WorkspacePaths:
    """Create a workspace. With `demo`, a complete sample deployment with demo keys; without,
    a configuration to fill in (which refuses every call until complete)."""
    from .audit import AuditLog
    from ..hazmat.templates.keyring import PassphraseKeyring
    from ..policy.receipts import receipt_key

    paths = WorkspacePaths(Path(root))
    profs = check_profiles(list(profiles))
    if paths.config.exists():
        raise ConfigError(f"{paths.root} already holds a deployment; choose an empty directory.")
    paths.root.mkdir(parents=True, exist_ok=True)
    paths.keys.mkdir(mode=0o700, exist_ok=True)
    today = today or dt.datetime.now(dt.timezone.utc).date()
    if demo and not passphrase:
        passphrase = "demo-" + secrets.token_urlsafe(18)
        _write_private(paths.demo_passphrase, (passphrase + "\n").encode())
    passphrase = resolve_passphrase(paths.root, passphrase)
    raw = demo_config(today, profs) if demo else blank_config(profs)
    Deployment.from_dict(raw).save(paths.config)
    keyring = (keyring_factory or PassphraseKeyring.create)(paths.keyring, passphrase)
    paths.trust.write_text(json.dumps({k: [] for k in TRUST_KINDS}, indent=2) + "\n", encoding="utf-8")
    paths.receipt_public.write_text(public_key_text(receipt_key(keyring.key("pseudonym")).public_key()) + "\n",
                                    encoding="utf-8")
    if demo:
        issuer = new_signing_key(paths.demo_issuer)
        trust_public_key(paths, "consent_issuers", issuer.public_key(), "DEMO consent service (insecure)")
        authority = new_signing_key(paths.demo_authority)
        trust_public_key(paths, "authorities", authority.public_key(), "DEMO authority (insecure)")
    paths.reports.mkdir(exist_ok=True)
    with AuditLog(paths.audit, keyring.key("audit")) as log:
        log.append("init", "allowed", note=("demo workspace" if demo else "workspace") + f"; profiles {','.join(profs)}")
    return paths
