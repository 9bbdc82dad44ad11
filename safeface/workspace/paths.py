"""Where each part of a workspace lives on disk.

    WS/deployment.json          what the operator declares (purposes, notice, assessment, ...)
    WS/keys/keyring.json        template, pseudonym, seal and audit keys, wrapped under a passphrase
    WS/keys/trust.json          PUBLIC keys trusted to sign consent and legal bases, MACed (trust.py)
    WS/keys/audit-anchor.json   the audit log's head, kept outside the log and MACed (anchor.py)
    WS/keys/receipt_public.txt  public key that checks erasure receipts and audit checkpoints
    WS/gallery.db               protected, sealed templates
    WS/audit.db                 the hash-chained audit log (audit.py)
    WS/policy.db                revocations, liveness challenges and nonces (state.py)
    WS/apikeys.db               the service's API keys, as keyed hashes only (apikeys.py)
    WS/reports/                 compliance reports; reports/evaluation/ from `safeface eval`

With records in PostgreSQL (deployment.json "storage"), gallery.db, audit.db, policy.db and
apikeys.db are not here: the rows, the audit chain, the policy state and the API keys are tables
of the record store.

A --demo workspace also holds DEMO-INSECURE-* files: the consent issuer's and an authority's
private keys and the keyring passphrase, so that everything can be tried on one machine. A real
deployment never keeps those next to its data.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Optional


@dataclass(frozen=True)
class WorkspacePaths:
    root: Path
    # The workspace `root` is a private copy of (readonly.py: a read-only workspace verified on a
    # copy); relative witness paths in deployment.json are taken from there.
    origin: Optional[Path] = None

    @property
    def home(self) -> Path:
        """Where the workspace lives: `root`, or the folder it was copied from."""
        return self.root if self.origin is None else self.origin

    @property
    def config(self) -> Path:
        return self.root / "deployment.json"

    @property
    def config_lock(self) -> Path:
        """Held while `safeface assess` writes deployment.json and names the assessment in the
        audit log, so two of them cannot leave the file and the log naming different ones; a
        call judging the file again holds it shared, so it never reads one without the other."""
        return self.keys / "assessment.lock"

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
    def lock_guard(self) -> Path:
        """The file the lock files in `keys` are also taken on (atomicfile.take_guard), so a lock
        file deleted while held lets no second holder in: the keyring, which every workspace has
        here (on servers too) and only a key rotation replaces."""
        return self.keyring

    @property
    def trust_lock(self) -> Path:
        """Held while a trust change is recorded in the audit log and written to trust.json, and
        shared by whoever reads the two together."""
        return self.keys / "trust.json.lock"

    @property
    def owed_marks(self) -> Path:
        """The lock file on whose bytes a live process holds the rows whose commit mark it owes
        (workspace.owed_marks): in keys, so that only the workspace's owner can lock it."""
        return self.keys / "owed-marks.lock"

    @property
    def anchor(self) -> Path:
        return self.keys / "audit-anchor.json"

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
    def demo_mark(self) -> Path:
        return self.keys / "DEMO-INSECURE-mark"

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
    def apikeys(self) -> Path:
        return self.root / "apikeys.db"

    @property
    def console_logouts(self) -> Path:
        """Console logouts that neither the audit log nor the key table could record, one small
        MACed file per session (workspace/apikeys.py), read by every process of the workspace."""
        return self.root / "console-logouts"

    @property
    def databases(self) -> tuple[Path, ...]:
        """The local databases (a workspace on the servers has none: `storage migrate` erases them)."""
        return (self.gallery, self.audit, self.policy, self.apikeys)

    def database_files(self, *, locks: bool = False) -> list[Path]:
        """Each local database with the -wal and -shm SQLite keeps beside it (and its lock file,
        with `locks`): what a migration moves and erases, and what a writer must be able to write."""
        parts = ("", "-wal", "-shm") + ((".lock",) if locks else ())
        return [Path(f"{db}{part}") for db in self.databases for part in parts]

    @property
    def reports(self) -> Path:
        return self.root / "reports"

    @property
    def evaluation(self) -> Path:
        return self.reports / "evaluation" / "latest.json"

    def is_workspace(self) -> bool:
        return self.config.is_file() and self.keyring.is_file()


def enclosing_workspace(path: Path) -> "Path | None":
    """The workspace folder `path` lies in (itself or a folder above it), if any: a workspace
    holds protected templates only, so what is not sealed (an evaluation cache, raw embeddings)
    is refused there whether or not the command was told which workspace it serves."""
    here = Path(path).resolve()
    for folder in (here, *here.parents):
        if WorkspacePaths(folder).is_workspace():
            return folder
    return None
