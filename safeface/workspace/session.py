"""Opening what every workspace command shares: the keyring, the deployment, the audit log
anchored in the keyring and in the operator's witnesses, and the policy state. The log and the
state are kept where deployment.json's "storage" puts the records: the workspace's SQLite files,
or the PostgreSQL record store (their tables must already be there: a migration puts them)."""

from __future__ import annotations

from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator, Optional, Sequence

from ..errors import IntegrityError
from ..policy.deployment import Deployment
from .anchor import AnchorStore, FileAnchor, HostAnchor
from ..storage.factory import StorageConfig, secret_from_env
from .apikeys import ApiKeys
from .audit import AuditLog
from .keys import ANCHOR_MAC, POLICY_MAC, derived_key
from .passphrase import open_keyring
from .paths import WorkspacePaths
from .state import PolicyState
from .storage_seal import check_storage_seal


def witness_paths(paths: WorkspacePaths, deployment: Deployment, extra: Sequence[Path] = ()) -> list[Path]:
    """The witness files: ``audit.witness`` of deployment.json (a path or a list; relative paths
    are taken from the workspace), then any given on the command line."""
    conf = deployment.section("audit").get("witness")
    items = [conf] if isinstance(conf, str) else list(conf or [])
    out = [p if p.is_absolute() else paths.root / p for p in (Path(str(i)) for i in items if str(i).strip())]
    for p in extra:
        if Path(p) not in out:
            out.append(Path(p))
    return out


def workspace_anchors(paths: WorkspacePaths, keyring: Any, deployment: Deployment, *, strict: bool = False,
                      extra_witnesses: Sequence[Path] = ()) -> list[AnchorStore]:
    """The keyring's anchor (a MACed file in WS/keys, and the host's anchor where a HostKeyring
    offers one) and the witnesses. With `strict` (audit verify), a witness file that does not
    exist is an error; otherwise the next append creates it."""
    key = derived_key(keyring, ANCHOR_MAC)
    anchors: list[AnchorStore] = [FileAnchor(paths.anchor, key, name="keyring's audit anchor", required=True)]
    host = getattr(keyring, "anchor_provider", None)
    if host is not None:
        anchors.append(HostAnchor(host))
    anchors += [FileAnchor(w, key, name="audit witness", required=strict)
                for w in witness_paths(paths, deployment, extra_witnesses)]
    return anchors


def open_audit(paths: WorkspacePaths, keyring: Any, deployment: Deployment, *, strict: bool = False,
               extra_witnesses: Sequence[Path] = ()) -> AuditLog:
    """The workspace's audit log, anchored; its head checked against itself and every anchor."""
    anchors = workspace_anchors(paths, keyring, deployment, strict=strict, extra_witnesses=extra_witnesses)
    check_storage_seal(keyring, deployment.section("storage"))  # the first connection of every opening
    tables = _server_tables(paths, deployment, "audit", "audit log")
    if tables is None and not paths.audit.is_file():
        raise IntegrityError(f"the audit log {paths.audit} is missing: it was deleted. Restore it before processing.")
    log = AuditLog(paths.audit if tables is None else tables, keyring.key("audit"), anchors)
    try:
        log.check_head()
    except BaseException:
        log.close()
        raise
    return log


def open_state(paths: WorkspacePaths, deployment: Deployment, keyring: Any = None) -> PolicyState:
    """The workspace's policy state (revocations, filing, purpose ends, liveness nonces); with the
    keyring, its liveness rows can be written and checked (state.py)."""
    tables = _server_tables(paths, deployment, "state", "policy state")
    key = None if keyring is None else derived_key(keyring, POLICY_MAC)
    return PolicyState(paths.policy if tables is None else tables, key)


def open_apikeys(paths: WorkspacePaths, deployment: Deployment, key: bytes) -> ApiKeys:
    """The service's API keys, kept with the policy state."""
    tables = _server_tables(paths, deployment, "service", "API key store")
    return ApiKeys(paths.apikeys if tables is None else tables, key)


def _server_tables(paths: WorkspacePaths, deployment: Deployment, part: str, what: str) -> Any:
    """The record store's tables for `part` when deployment.json puts the records in
    PostgreSQL; None for a local workspace."""
    cfg = StorageConfig.from_section(deployment.section("storage"))
    if not cfg.server:
        return None
    from ..storage.sqltables import PgTables

    return PgTables.open(cfg.records, secret_from_env("SAFEFACE_PG_PASSWORD"), cfg.namespace, part, what)


@dataclass
class Records:
    paths: WorkspacePaths
    keyring: Any
    deployment: Deployment
    audit: AuditLog


@contextmanager
def opened(paths: WorkspacePaths, passphrase: Optional[str] = None, passphrase_file: Optional[Path] = None, *,
           strict: bool = False, extra_witnesses: Sequence[Path] = ()) -> Iterator[Records]:
    """Keyring, deployment and anchored audit log, for a command that changes or checks records."""
    keyring = open_keyring(paths, passphrase, passphrase_file)
    deployment = Deployment.load(paths.config)
    with open_audit(paths, keyring, deployment, strict=strict, extra_witnesses=extra_witnesses) as log:
        yield Records(paths, keyring, deployment, log)


def deployment_name(paths: WorkspacePaths, deployment: Deployment) -> str:
    """How receipts and checkpoints name the deployment."""
    return str(deployment.raw.get("name") or paths.root.name)
