"""Opening what every workspace command shares: the keyring, the deployment, the audit log
anchored in the keyring and in the operator's witnesses, and the policy state. The log and the
state are kept where deployment.json's "storage" puts the records: the workspace's SQLite files,
or the PostgreSQL record store (their tables must already be there: a migration puts them)."""

from __future__ import annotations

import json
import os
import stat
from contextlib import contextmanager
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any, Callable, Iterator, Optional, Sequence, Union

from ..atomicfile import trusted_path, write_atomic
from ..errors import ConfigError, ImageError, IntegrityError
from ..policy.deployment import Deployment
from ..policy.rules import rule_for
from ..regularfile import check_path_text
from .anchor import AnchorStore, FileAnchor, HostAnchor, WitnessAnchor
from ..storage.factory import StorageConfig, secret_from_env
from .apikeys import ApiKeys
from .audit import AuditLog
from .assessment import ASSESSMENT_OPERATIONS, audit_section_problem
from .keys import ANCHOR_MAC, ASSESSMENT_MAC, POLICY_MAC, derived_key
from .migrate import refuse_if_moved
from .passphrase import open_keyring
from .paths import WorkspacePaths
from .state import PolicyState
from .storage_seal import check_storage_seal


def witness_paths(paths: WorkspacePaths, deployment: Deployment, extra: Sequence[Path] = ()) -> list[Path]:
    """The witness files: ``audit.witness`` of deployment.json (a path or a list; relative paths
    are taken from the workspace, or the folder a read-only one was copied from), then any given
    on the command line (relative to the folder it was run from, as any path given there)."""
    conf = deployment.section("audit").get("witness")
    items = [conf] if isinstance(conf, str) else [] if conf is None else conf
    # A number or an object there crashed every open (TypeError) or named files after its keys.
    if not isinstance(items, list) or any(not isinstance(i, str) for i in items):
        raise ConfigError("deployment.json audit.witness must be a path or a list of paths (text); fix it and "
                          "record it with `safeface assess`.")
    out: list[Path] = []
    # An assessor's `--witness kept/ws.anchor` taken from the workspace checked a file the
    # operator could plant there (a copy of the rolled-back anchor), not the assessor's own copy.
    named = [paths.home / i for i in items if i.strip()] + [Path(os.path.abspath(p)) for p in extra]
    for p in named:
        try:
            check_path_text(p)
        except ImageError as exc:
            raise ConfigError(f"the audit witness {exc}") from None
        p = Path(os.path.abspath(p))
        # A witness among the workspace's own files (its anchor, audit.db) is restored with the
        # log, or overwritten by the witness: it would witness nothing.
        home = WorkspacePaths(paths.home)
        if os.path.realpath(p.parent) in {os.path.realpath(f) for f in (paths.root, paths.keys, home.root, home.keys)}:
            raise ConfigError(f"the audit witness {p} is among the workspace's own files: a witness must be kept "
                              "elsewhere (another volume), or it is restored with the log. Name another path.")
        if p not in out:
            out.append(p)
    return out


def write_config(paths: WorkspacePaths, text: Union[str, bytes]) -> None:
    """Replace deployment.json by `text` atomically. Where it is a link (a configuration tool
    keeps the file elsewhere), the file it points to is replaced instead: `safeface assess`
    replaced the link by a plain file, and the tool's later changes never reached the workspace."""
    target = _config_file(paths, text)
    # The target's permissions less group and other write, and less setuid, setgid and sticky,
    # which a JSON file written by root has no use for.
    mode = None if target == paths.config else stat.S_IMODE(os.stat(target).st_mode) & 0o755
    write_atomic(target, text, mode=mode)


def _config_file(paths: WorkspacePaths, text: Union[str, bytes]) -> Path:
    """The file deployment.json names: itself, or a link's target that is a regular file in the
    workspace or of this user and none of the workspace's own files (its keys and anchor, its
    databases, a witness), whose content the write would destroy. Every link and folder on the
    way must be this user's or root's (atomicfile.trusted_path): one another user could change
    sent a root `assess` over a file of their choice (/etc/...)."""
    if not os.path.islink(paths.config):
        return paths.config
    try:
        target = trusted_path(paths.config)
        st = os.stat(target)
    except OSError as exc:
        raise ConfigError(f"{paths.config} is a link that cannot be followed ({exc.strerror}); put the file itself "
                          "there, or restore the file it points to. Nothing was written.") from None
    except ConfigError as exc:
        raise ConfigError(f"{paths.config} is a link, and {exc} Nothing was written.") from None
    witnesses: list[Path] = []
    texts: list[Callable[[], bytes]] = [lambda: Deployment.read_file(paths.config),
                                        lambda: text.encode("utf-8") if isinstance(text, str) else text]
    for read in texts:
        try:  # the witnesses of the file replaced and of the new one
            witnesses += witness_paths(paths, Deployment.load_bytes(read(), paths.config))
        except (OSError, ConfigError):
            pass
    # Compared as files, not names: a second name for one (a bind mount of WS/keys elsewhere)
    # reaches it under a path no realpath() leads back to.
    own = {_file_id(p) for p in (*paths.database_files(locks=True), *witnesses)}
    keys = _file_id(paths.keys)
    own_file = (st.st_dev, st.st_ino) in own or (keys is not None and any(_file_id(p) == keys for p in target.parents))
    ours = target.is_relative_to(os.path.realpath(paths.root)) or st.st_uid == os.geteuid()
    if own_file or not stat.S_ISREG(st.st_mode) or not ours:
        what = "one of the workspace's own files" if own_file else "no regular file of this user"
        raise ConfigError(f"{paths.config} is a link to {target}, which is {what}; put the deployment file itself "
                          "there, or link it to a file of yours. Nothing was written.")
    return target


def _file_id(path: Path) -> Optional[tuple[int, int]]:
    """The (device, inode) `path` reaches; None where nothing is there."""
    try:
        st = os.stat(path)
    except OSError:
        return None
    return st.st_dev, st.st_ino


def workspace_anchors(paths: WorkspacePaths, keyring: Any, deployment: Deployment, *, strict: bool = False,
                      extra_witnesses: Sequence[Path] = ()) -> list[AnchorStore]:
    """The keyring's anchor (a MACed file in WS/keys, and the host's anchor where a HostKeyring
    offers one) and the witnesses. With `strict` (audit verify), a witness file that does not
    exist is an error; otherwise the opener records its start and so writes it (start_witnesses)."""
    key = derived_key(keyring, ANCHOR_MAC)
    anchors: list[AnchorStore] = [FileAnchor(paths.anchor, key, name="keyring's audit anchor", required=True)]
    host = getattr(keyring, "anchor_provider", None)
    if host is not None:
        anchors.append(HostAnchor(host))
    rule = str(rule_for("records", deployment.profiles))
    anchors += [WitnessAnchor(w, key, required=strict, rule=rule)
                for w in witness_paths(paths, deployment, extra_witnesses)]
    return anchors


def start_witnesses(log: AuditLog, restart: Optional[Path] = None,
                    unassessed: Callable[[], Optional[str]] = lambda: None, *, first: bool = False) -> None:
    """Bind each witness of `log` to the log's record of its start, and record the start of any
    the log does not name yet: one present (a witness an earlier safeface wrote), or, with
    `first` (init, `safeface assess`), one missing, its first write, only while `unassessed()`
    finds no problem with the audit section; a missing witness is refused (IntegrityError)
    otherwise, unless it is `restart` (`safeface audit restart-witness`), restarted on record."""
    witnesses = [a for a in log.anchors if isinstance(a, WitnessAnchor)]
    wanted = None if restart is None else Path(os.path.abspath(restart))
    if wanted is not None and wanted not in [w.path for w in witnesses]:
        raise ConfigError(f"{wanted} is not a witness deployment.json names (audit.witness: "
                          f"{', '.join(str(w.path) for w in witnesses) or 'none'}); nothing was restarted.")
    for w in witnesses:
        w.started = partial(_witness_recorded, log, w.path)
        w.start(partial(_record_witness, log, w.path), unassessed, restart=w.path == wanted, first=first)


def follow_witnesses(log: AuditLog, paths: WorkspacePaths, keyring: Any, deployment: Deployment) -> None:
    """Make an open log's witnesses those `deployment` names, once its audit section is the one the
    last sealed assessment covers (a hand edit changes nothing here): what opening it afresh would
    do. A handle opened before a witness was moved on record (copied to a new volume, named,
    `safeface assess`) kept checking the old path, and refused every call once that volume was
    unmounted, and never wrote the new one. The assessment is read with the log held to every
    anchor but its witnesses (the old one may be gone); a witness kept keeps its state, and a new
    one is bound to the log's record of its start (start_witnesses)."""
    old = {a.path: a for a in log.anchors if isinstance(a, WitnessAnchor)}
    if list(old) == witness_paths(paths, deployment):
        return
    others = [a for a in log.anchors if not isinstance(a, WitnessAnchor)]
    last = log.last_entry(ASSESSMENT_OPERATIONS, held_to=others)
    if audit_section_problem(derived_key(keyring, ASSESSMENT_MAC), deployment, last.note if last else None):
        return
    before, fresh = log.anchors, workspace_anchors(paths, keyring, deployment)
    log.use_anchors(others + [old.get(a.path, a) for a in fresh if isinstance(a, WitnessAnchor)])
    try:
        start_witnesses(log, None, partial(_audit_section_problem, log, keyring, deployment))
    except BaseException:
        # Kept, a new witness refused here (missing, its start on record) would be written afresh
        # by the next append, as one never started: the next call follows again, and is refused.
        log.use_anchors(before)
        raise


# Each witness entry names every witness started so far, and the newest is read through the signed
# head (AuditLog.last_entry): an older start entry edited in the file for the length of one open,
# then put back, would otherwise pass for no start, and the open would write the deleted witness
# afresh from a rolled-back head.
_ON_RECORD = "; on record: "


def _witness_recorded(log: AuditLog, path: Path) -> bool:
    return str(path) in witnesses_on_record(log)


def _record_witness(log: AuditLog, path: Path, restart: bool) -> None:
    known = sorted(set(witnesses_on_record(log)) | {str(path)})
    log.append("witness", "allowed", note=f"witness {'restarted' if restart else 'started'}: "
                                          f"{json.dumps(str(path))}{_ON_RECORD}{json.dumps(known)}")


def witnesses_on_record(log: AuditLog) -> list[str]:
    """Every witness path whose start the log records, as its newest witness entry names them."""
    last = log.last_entry(("witness",))
    if last is None:
        return []
    note = str(last.note)
    try:
        _, end = json.JSONDecoder().raw_decode(note, note.index(": ") + 2)  # the path, which may hold anything
        if not note.startswith(_ON_RECORD, end):
            raise ValueError
        known = json.loads(note[end + len(_ON_RECORD):])
        if not isinstance(known, list) or not all(isinstance(k, str) for k in known):
            raise ValueError
    except ValueError:
        raise IntegrityError(f"audit entry {last.seq}, the log's newest witness entry, is not as safeface writes "
                             "it: run `safeface audit verify` and restore the log from a backup.") from None
    return known


def _audit_section_problem(log: AuditLog, keyring: Any, deployment: Deployment) -> Optional[str]:
    last = log.last_entry(ASSESSMENT_OPERATIONS)
    return audit_section_problem(derived_key(keyring, ASSESSMENT_MAC), deployment, last.note if last else None)


def open_audit(paths: WorkspacePaths, keyring: Any, deployment: Deployment, *, strict: bool = False,
               extra_witnesses: Sequence[Path] = (), restart_witness: Optional[Path] = None,
               assessing: bool = False) -> AuditLog:
    """The workspace's audit log, anchored; its head checked against itself and every anchor, and
    (unless `strict`, which writes nothing, or `assessing`, whose caller starts them once its checks
    pass) each witness's start on record (start_witnesses)."""
    anchors = workspace_anchors(paths, keyring, deployment, strict=strict, extra_witnesses=extra_witnesses)
    check_storage_seal(keyring, deployment.section("storage"))  # the first connection of every opening
    tables = _server_tables(paths, deployment, "audit", "audit log")
    if tables is None and not paths.audit.is_file():
        raise IntegrityError(f"the audit log {paths.audit} is missing: it was deleted. Restore it before processing.")
    log = (AuditLog(tables, keyring.key("audit"), anchors) if tables is not None
           else AuditLog(paths.audit, keyring.key("audit"), anchors, partial(refuse_if_moved, paths, keyring)))
    try:
        log.check_head()
        if not (strict or assessing):
            start_witnesses(log, restart_witness, partial(_audit_section_problem, log, keyring, deployment))
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
    # A logout file reaches every process only where they share the workspace's folder: on
    # servers, other hosts would not read it, and a logout kept there would be one in name only.
    return ApiKeys(paths.apikeys if tables is None else tables, key,
                   logouts=paths.console_logouts if tables is None else None)


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
           strict: bool = False, extra_witnesses: Sequence[Path] = (),
           restart_witness: Optional[Path] = None, assessing: bool = False,
           keyring: Any = None) -> Iterator[Records]:
    """Keyring, deployment and anchored audit log, for a command that changes or checks records.
    `keyring`: one the host holds (a HostKeyring), instead of the passphrase-wrapped file."""
    if keyring is None:
        keyring = open_keyring(paths, passphrase, passphrase_file)
    deployment = Deployment.load(paths.config)
    with open_audit(paths, keyring, deployment, strict=strict, extra_witnesses=extra_witnesses,
                    restart_witness=restart_witness, assessing=assessing) as log:
        yield Records(paths, keyring, deployment, log)


def deployment_name(paths: WorkspacePaths, deployment: Deployment) -> str:
    """How receipts and checkpoints name the deployment."""
    return str(deployment.raw.get("name") or paths.root.name)


def usable_deployment_id(deployment: Deployment) -> Optional[str]:
    """deployment.json's "id" (what `safeface init` wrote, the audience of every token), which a
    move, a renamed folder or a name filled in later leaves as it is; None if it has none usable."""
    try:
        return deployment.deployment_id
    except ConfigError:
        return None
