"""What the operator's commands do to a workspace (the CLI only parses and prints): trusting
keys, recording the assessment, and checking or checkpointing the audit log.

Every trust change opens the keyring (so it needs the passphrase) and is audited."""

from __future__ import annotations

import datetime as dt
import itertools
import json
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator, Mapping, Optional, Sequence

from ..errors import BackendError, ConfigError, IntegrityError, InvalidArgument, PolicyViolation
from ..hazmat.templates.pseudonym import token_pseudonym
from ..policy.deployment import Deployment
from ..policy.rules import rule_for
from ..policy.receipts import receipt_key
from ..policy.tokens import public_key_text
from ..storage.sqltables import SqliteTables
from .assessment import (ASSESSMENT_OPERATIONS, MAX_REFERENCE, assessment_note, assessment_recorded,
                         audit_section_problem, changed_settings, names_an_assessment, seal_holds, sealed)
from .audit import LIMITS as AUDIT_LIMITS, AuditReport
from .checkpoint import check_checkpoint, make_checkpoint, read_checkpoint
from ..atomicfile import exclusive_lock, write_new
from .keys import ASSESSMENT_MAC, derived_key, new_signing_key, receipt_file_problem
from .migrate import leftover_problem
from .paths import WorkspacePaths
from .readonly import verifiable
from .session import deployment_name, open_audit, opened, start_witnesses, usable_deployment_id, write_config
from .storecheck import StoreReport, check_store
from .trust import TrustedKey, TrustStore, change_trust, load_recorded, read_jwks, write_jwks


def _workspace(root: Path) -> WorkspacePaths:
    paths = WorkspacePaths(Path(root))
    if not paths.is_workspace():
        raise ConfigError(f"{paths.root} is not a safeface workspace (deployment.json or keys/keyring.json missing).")
    return paths


# -- trust ---------------------------------------------------------------------------------
def keys_new(root: Path, kind: str, out: Path, label: str = "", passphrase_file: Optional[Path] = None) -> TrustedKey:
    """Generate an Ed25519 key, write its private half to `out`, trust its public half."""
    paths = _workspace(root)
    with opened(paths, passphrase_file=passphrase_file) as r:  # the passphrase first: no key file without it
        key = new_signing_key(out)
        changed = change_trust(paths, r.keyring, r.audit, add=[(kind, key.public_key(), label or kind)])
    return changed[0]


def keys_import(root: Path, kind: str, jwks: Path, label: str = "",
                passphrase_file: Optional[Path] = None) -> list[TrustedKey]:
    """Trust every public key of a JWK Set; returns those newly trusted."""
    paths = _workspace(root)
    keys = read_jwks(jwks)
    with opened(paths, passphrase_file=passphrase_file) as r:
        return change_trust(paths, r.keyring, r.audit, add=[(kind, pk, label or kid or kind) for pk, kid in keys])


def keys_remove(root: Path, kind: str, thumbprint: str, passphrase_file: Optional[Path] = None) -> TrustedKey:
    """Stop trusting a key. Under the store's write lock, which every enrolment holds from the
    moment it decides its signer's trust again until its rows and entries commit: a removal
    lands before such an enrolment (refused) or after it (its row precedes the removal in the
    log), never in between."""
    paths = _workspace(root)
    with opened(paths, passphrase_file=passphrase_file) as r, _store_locked(paths, r):
        return change_trust(paths, r.keyring, r.audit, remove=[(kind, thumbprint)])[0]


STORE_LOCK_WAIT_S = 120.0  # how long a removal waits for a write in progress before it says so


@contextmanager
def _store_locked(paths: WorkspacePaths, r: Any) -> Iterator[None]:
    """Hold the write lock of the store deployment.json names: the local gallery's lock file,
    or both halves of the server store's, taken without opening either store, so a store that
    no longer opens (edited by hand, its index unreachable) does not hold up the removal of a
    stolen key. Then make sure the workspace still keeps its records where `r` opened them: a
    move to the servers that held the lock meanwhile left `r`'s audit log behind."""
    from ..storage.factory import StorageConfig, server_write_lock
    from ..storage.gallery import write_lock

    section = r.deployment.section("storage")
    cfg = StorageConfig.from_section(section)
    if cfg.server:
        done = False
        try:
            with server_write_lock(cfg, STORE_LOCK_WAIT_S):
                _same_storage(paths, section)
                yield
                done = True
        except BackendError:
            if not done:
                raise
            # The change is in the log; what failed is the lock's release (its connections were
            # ended): an enrolment may have committed around it, which `audit verify` names.
            raise BackendError("the change was recorded, but the store's write lock was lost meanwhile (its "
                               "connection to PostgreSQL was ended), so an enrolment may have been stored around "
                               "it: run `safeface audit verify`, which names any such row.") from None
        return
    lock = write_lock(paths.gallery)
    with lock.held(timeout=STORE_LOCK_WAIT_S):
        _same_storage(paths, section)
        yield
        try:
            lock.check()
        except IntegrityError:  # as a server lock's lost connection, above
            raise IntegrityError("the change was recorded, but the store's write lock file was deleted or replaced "
                                 "meanwhile, so an enrolment may have been stored around it: run `safeface audit "
                                 "verify`, which names any such row.") from None


def _same_storage(paths: WorkspacePaths, section: Mapping[str, Any]) -> None:
    if Deployment.load(paths.config).section("storage") != dict(section):
        raise ConfigError("the workspace's records moved (safeface storage migrate) while this waited for the "
                          "store's lock; nothing was changed. Run the command again.")


def _checked_store(r: Any) -> TrustStore:
    return load_recorded(r.paths, r.keyring, r.audit)


def keys_export(root: Path, kind: str, out: Path, passphrase_file: Optional[Path] = None) -> int:
    """Write the public keys of `kind` trusted now as a JWK Set; returns how many."""
    paths = _workspace(root)
    _outside_workspace(paths, Path(out), "the export")
    with opened(paths, passphrase_file=passphrase_file) as r:
        return write_jwks(_checked_store(r), kind, out)


def _outside_workspace(paths: WorkspacePaths, out: Path, what: str) -> None:
    """Refuse an output path inside the workspace: one mistyped path would replace its keyring,
    audit log or trust store with the output."""
    try:
        inside = out.resolve().is_relative_to(paths.root.resolve())
    except (OSError, RuntimeError) as exc:  # a link loop on the way
        raise ConfigError(f"{out}: the path cannot be followed ({exc}); choose another.") from None
    if inside:
        raise ConfigError(f"{out} lies inside the workspace {paths.root}; write {what} elsewhere (the workspace's own "
                          "files are never replaced by an output).")


def keys_list(root: Path, passphrase_file: Optional[Path] = None) -> list[dict[str, Any]]:
    paths = _workspace(root)
    with opened(paths, passphrase_file=passphrase_file) as r:
        return _checked_store(r).listing()


# -- assessment ----------------------------------------------------------------------------
def check_registrable(dep: Deployment) -> None:
    """CN-15 refuses a private-space device at registration too, not only at every call: no
    assessment is recorded for it, so it never looks ready to process."""
    rule = rule_for("private-space", dep.profiles)
    for f in dep.problems(dt.datetime.now(dt.timezone.utc).date()):  # the guard's calendar
        if f.rule == rule:
            raise PolicyViolation(f.rule, f"this deployment cannot be registered: {f.message}")


@dataclass(frozen=True)
class RecordedAssessment:
    note: str  # what the audit entry says
    # The covered settings changed since the assessment recorded before, or None when there was
    # no sealed one to compare with (the first assessment, or one written by hand).
    changes: Optional[tuple[str, ...]]


def record_assessment(root: Path, reference: str, date: str, passphrase_file: Optional[Path] = None, *,
                      passphrase: Optional[str] = None, reviewed: Optional[str] = None,
                      accept_changes: bool = False) -> RecordedAssessment:
    """Record the impact assessment as covering the configuration as it is now: the section,
    sealed under the keyring, then its audit entry. A workspace processes only under the
    assessment its log names last and whose seal holds, so whoever can write deployment.json but
    holds no key cannot put a weakened setting into force. When the covered settings changed
    since the last sealed assessment, nothing is recorded unless `accept_changes`: the error
    lists them, so an operator asked to "run safeface assess" sees what they would sign off."""
    paths = _workspace(root)
    day = _iso_date(date, "date")
    # The guard judges the review date by the UTC calendar (its clock): the host's local date let a
    # review dated tomorrow in UTC through, which then stopped every call, and refused one dated today.
    today = dt.datetime.now(dt.timezone.utc).date()
    if reviewed is not None and not (day <= _iso_date(reviewed, "reviewed date") <= today):
        raise InvalidArgument(f"the review date {reviewed} must fall between the assessment's date ({date}) and "
                              f"today ({today.isoformat()}: dates are UTC calendar days).")
    if not isinstance(reference, str) or not reference.strip() or len(reference) > MAX_REFERENCE:
        raise InvalidArgument(f"the assessment needs a reference (the document's identifier) of 1 to "
                              f"{MAX_REFERENCE} characters.")
    # `assessing`: the witnesses of the audit section to be assessed are started on record below,
    # once every check passed (a refused `assess` started them: "nothing was recorded" was not so),
    # and before the assessment entry, so no backup holds the assessment without the start.
    config_lock = exclusive_lock(paths.config_lock, paths.lock_guard)
    with opened(paths, passphrase, passphrase_file, assessing=True) as r, config_lock as still_held:
        dep = Deployment.load(paths.config)  # read under the lock, after the passphrase: nothing written without it
        check_registrable(dep)
        key = derived_key(r.keyring, ASSESSMENT_MAC)
        before = dep.section("assessment")
        covered = dep.covered_settings()
        last = r.audit.last_entry(ASSESSMENT_OPERATIONS)
        assessed_before = last is not None and names_an_assessment(last.note)
        changes: Optional[tuple[str, ...]] = None
        # The baseline is the section the log names last, and only if its seal holds: an older
        # sealed section restored with its configuration would make a rollback look unchanged.
        if seal_holds(key, before) and assessment_recorded(before, last.note if last is not None else None):
            changes = tuple(changed_settings(before.get("covered"), covered))
            if changes and not accept_changes:
                raise ConfigError(f"the settings an assessment covers changed since assessment "
                                  f"{ascii(str(before.get('reference')))} of {before.get('date')}: "
                                  f"{'; '.join(changes)}. Nothing was recorded: review these changes, then record "
                                  "the assessment again, accepting them (--accept-changes).")
        elif assessed_before and not accept_changes:
            raise ConfigError("the assessment section of deployment.json is not the sealed one the audit log names last "
                              "(written, edited or removed without the keys, restored from an older copy, or left by an "
                              "`assess` that stopped before its audit entry), so what changed since the last "
                              "assessment cannot be shown. Nothing was recorded: check every setting the assessment "
                              "covers (purposes, matching, filing, location, roles, profiles, bipa, minors, id, audit, "
                              "liveness_model, go_live), then record it again with --accept-changes.")
        # A new assessment starts its own review cycle: an earlier review date is not carried over.
        section = {k: v for k, v in before.items() if k not in ("covered", "seal", "reviewed")}
        section.update(reference=reference, date=date, covers=dep.config_digest(), reviewed=reviewed)
        section = sealed(key, section, covered)
        note = assessment_note(section)
        if len(note) > AUDIT_LIMITS["note"]:  # a cut note would never name it: nothing would process
            raise ConfigError(f"this assessment's audit entry would run to {len(note)} characters, over the log's "
                              f"{AUDIT_LIMITS['note']}, because of the roles section; define fewer or shorter roles.")
        start_witnesses(r.audit, first=True)
        still_held()  # a second `assess` let in by a replaced lock file would be lost
        write_config(paths, Deployment.from_dict({**dep.raw, "assessment": section}).text())
        # The file first: a crash before the entry leaves an assessment the log does not name,
        # which processes nothing until it is recorded again; never the other way round.
        r.audit.append("assessment", "allowed", note=note)
    return RecordedAssessment(note, changes)


def confirm_storage(root: Path, section: Mapping[str, Any], passphrase_file: Optional[Path] = None, *,
                    passphrase: Optional[str] = None) -> dict[str, Any]:
    """Seal the storage section of a workspace moved to the servers by an earlier safeface. The
    operator restates where the records and vectors are (`section`); nothing is sealed unless
    deployment.json says exactly that, so a target written there by someone else is not
    confirmed unseen. Then audited, on the servers."""
    from ..storage.factory import StorageConfig
    from .passphrase import open_keyring
    from .storage_seal import SEAL, sealed_storage

    paths = _workspace(root)
    keyring = open_keyring(paths, passphrase, passphrase_file)
    with exclusive_lock(paths.config_lock, paths.lock_guard) as still_held:
        dep = Deployment.load(paths.config)
        written = {k: v for k, v in dep.section("storage").items() if k != SEAL}
        target = StorageConfig.from_section(written)
        if target != StorageConfig.from_section(section):
            raise ConfigError(f"deployment.json's storage section is {json.dumps(written)}, not what was given "
                              f"({json.dumps(dict(section))}); nothing was sealed. If the file is not what you set "
                              "up, someone else wrote it: restore it before confirming.")
        if not target.server:
            raise ConfigError("this workspace keeps its records locally; there is no server target to confirm.")
        dep = Deployment.from_dict({**dep.raw, "storage": sealed_storage(keyring, written)})
        still_held()
        write_config(paths, dep.text())
    with open_audit(paths, keyring, dep) as log:  # the keyring already open: one scrypt, not two
        log.append("storage-confirm", "allowed", note=f"storage target confirmed: records "
                       f"{_safe_target(str(written['records']))}, vectors {str(written.get('vectors'))[:200]}")
    return {"confirmed": True, "storage": written}


def _safe_target(dsn: str) -> str:
    from ..storage.server import _safe_dsn

    return _safe_dsn(dsn)[:200]


def _iso_date(value: Any, what: str) -> dt.date:
    try:
        return dt.date.fromisoformat(value)
    except (TypeError, ValueError):
        raise InvalidArgument(f"the assessment {what} must be YYYY-MM-DD, not {value!r}.") from None


# -- audit evidence ------------------------------------------------------------------------
@dataclass(frozen=True)
class AuditStatus:
    report: AuditReport
    trusted_keys: int
    checkpoints: tuple[dict[str, Any], ...]
    store: StoreReport


def audit_verify(root: Path, passphrase_file: Optional[Path] = None, *, checkpoints: Sequence[Path] = (),
                 witnesses: Sequence[Path] = ()) -> AuditStatus:
    """The whole chain, its signed head, every anchor (keyring, configured and given witnesses,
    which must exist), the trust store against its audit record, each checkpoint, and the
    template store against the log (storecheck.py). Opening the store changes nothing in it. A
    workspace this process may not write is checked on a private copy (readonly.py)."""
    docs = [read_checkpoint(c) for c in checkpoints]
    with verifiable(_workspace(root)) as paths:
        return _audit_verify(paths, passphrase_file, docs, witnesses)


def _audit_verify(paths: WorkspacePaths, passphrase_file: Optional[Path], docs: Sequence[Any],
                  witnesses: Sequence[Path]) -> AuditStatus:
    with opened(paths, passphrase_file=passphrase_file, strict=True, extra_witnesses=witnesses) as r:
        _check_assessed_audit(r)
        for db, what in ((paths.policy, "policy state"), (paths.apikeys, "API key store")):
            if db.exists():  # opened as a call opens it: a trigger added by hand is refused there
                SqliteTables(db, what, "").close()
        rows, end = _store_rows(paths, r)
        report = r.audit.verify(through=end)
        store = _checked_store(r)
        public = receipt_key(r.keyring.key("pseudonym")).public_key()
        name, named = deployment_name(paths, r.deployment), bool(r.deployment.raw.get("name"))
        seen = tuple(check_checkpoint(d, public, deployment=name, log_end=report.entries, hash_at=r.audit.hash_at,
                                      deployment_id=usable_deployment_id(r.deployment), named=named)
                     for d in docs)
        published = receipt_file_problem(paths, public_key_text(public)) or leftover_problem(
            paths, r.deployment.section("storage"))
        trusted = store.for_guard()
        token_key = r.keyring.key("pseudonym")
        entries = itertools.takewhile(lambda e: int(e.seq) <= end[0], r.audit.entries())
        checked = check_store(rows, entries, trusted["consent_issuers"], trusted["authorities"],
                              lambda token_id: token_pseudonym(token_key, token_id), token_key,
                              store.no_longer_trusted())
    checked.raise_for_problems()
    if published is not None:
        raise IntegrityError(published)
    return AuditStatus(report, len(store.active()), seen, checked)


def restart_witness(root: Path, witness: Path, passphrase_file: Optional[Path] = None, *,
                    keyring: Any = None) -> int:
    """Write again, from the log's head, a witness the log records that was lost, and record that
    it was restarted: a rollback of the log before this entry can no longer be seen by it. Returns
    the entry that restarted it. `keyring`: a workspace whose keys the host holds (a HostKeyring,
    as given to SafeFace.open) has no passphrase for `safeface audit restart-witness` to open;
    its host restarts the witness here, on record all the same."""
    paths = _workspace(root)
    # Named as audit.witness names it: a relative path is the workspace's (witness_paths), not the
    # shell's folder's, where it named no witness unless run from the workspace.
    with opened(paths, passphrase_file=passphrase_file, restart_witness=paths.root / witness,
                keyring=keyring) as r:
        return r.audit.end()


def _check_assessed_audit(r: Any) -> None:
    last = r.audit.last_entry(ASSESSMENT_OPERATIONS)
    problem = audit_section_problem(derived_key(r.keyring, ASSESSMENT_MAC), r.deployment,
                                    last.note if last is not None else None)
    if problem is not None:
        raise IntegrityError(problem)


def _store_rows(paths: WorkspacePaths, r: Any) -> tuple[list[Any], tuple[int, str]]:
    """Every stored row's description and the log's signed end, read together under the store's
    write lock (an enrolment, erasure or purge in another process writes its entries and rows
    under it, so the two agree); no rows if the store file is gone (the check then names every
    row the log says is stored as missing). The store deployment.json names: the local gallery,
    or the PostgreSQL record store."""
    from ..storage.factory import StorageConfig, open_store

    cfg = StorageConfig.from_section(r.deployment.section("storage"))
    try:
        if not cfg.server and not paths.gallery.is_file():
            return [], r.audit.signed_end()
        dim = int(r.deployment.section("matching").get("dim") or 128)
        with open_store(cfg, paths.home, paths.gallery, r.keyring, dim) as store, store.locked():
            return list(store.rows()), r.audit.signed_end()
    except IntegrityError:
        r.audit.verify()  # names the break, outside the store's lock (it reads the whole log)
        raise


def audit_checkpoint(root: Path, out: Path, passphrase_file: Optional[Path] = None) -> dict[str, Any]:
    """Verify the log, then sign its head for an assessor to keep; the issue is itself audited."""
    paths = _workspace(root)
    with opened(paths, passphrase_file=passphrase_file) as r:
        report = r.audit.verify()
        doc = make_checkpoint(receipt_key(r.keyring.key("pseudonym")), deployment=deployment_name(paths, r.deployment),
                              seq=report.head_seq, head_hash=report.head_hash,
                              deployment_id=usable_deployment_id(r.deployment))
        try:
            write_new(Path(out), (json.dumps(doc, indent=2) + "\n").encode("utf-8"))
        except FileExistsError:
            raise ConfigError(f"{out} already exists; choose another path.") from None
        r.audit.append("checkpoint", "allowed", note=f"signed checkpoint of entry {report.head_seq} "
                                                     f"({report.head_hash[:16]}...)")
    return doc
