"""A trust change recorded while a workspace is open (a stolen issuer key removed from another
process) takes effect at the open handle's next call: a running service's workers open the
workspace once, and judged by the keys trusted at that moment."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
from policy_support import PASSPHRASE, consent, enrol_while, images, make_workspace, open_sf  # noqa: E402

from safeface import PolicyViolation  # noqa: E402
from safeface.policy.deployment import Deployment  # noqa: E402
from safeface.policy.issuer import issue_consent  # noqa: E402
from safeface.workspace.admin import keys_new, keys_remove  # noqa: E402
from safeface.workspace.keys import read_signing_key  # noqa: E402


def test_a_key_removed_while_a_handle_is_open_is_refused_at_its_next_call(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The operator removed a leaked consent-issuer key with `safeface keys remove`; a handle
    opened before (a service worker) went on verifying and identifying under consents minted with
    it, until it was opened again. Now the handle reads the trust store again at its next call,
    and refuses them (CN-04) as a fresh handle does; consents of the keys still trusted work."""
    monkeypatch.setenv("SAFEFACE_PASSPHRASE", PASSPHRASE)
    ws = make_workspace(tmp_path / "ws")
    imgs = images()
    b = keys_new(ws.root, "consent-issuer", tmp_path / "b.pem", label="consent service B")
    key_b = read_signing_key(tmp_path / "b.pem")
    dep = Deployment.load(ws.config)
    with open_sf(ws) as sf:
        sf.enroll(imgs / "obama.jpg", "alice", "demo", consent(ws, "alice"))
        minted, _ = issue_consent(key_b, dep, "alice", ["demo"], operations=["verify", "identify"])
        assert sf.verify(imgs / "obama2.jpg", "alice", "demo", minted).match  # trusted: it works
        keys_remove(ws.root, "consent-issuer", b.thumbprint)
        with pytest.raises(PolicyViolation) as refused:
            sf.verify(imgs / "obama2.jpg", "alice", "demo", minted)
        assert refused.value.rule == "CN-04"
        with pytest.raises(PolicyViolation):
            sf.identify(imgs / "obama2.jpg", "demo", minted)
        assert sf.verify(imgs / "obama2.jpg", "alice", "demo", consent(ws, "alice")).match
        view = sf.acting_as("operator", "console")  # views judge by the same reading
        with pytest.raises(PolicyViolation):
            view.verify(imgs / "obama2.jpg", "alice", "demo", minted)


def test_rows_enrolled_under_a_key_before_its_removal_stay_explained(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """After an honest `safeface keys remove`, every row enrolled under the removed key before
    the removal failed the store check ("does not verify against the trusted keys"), a false
    alarm for each, for as long as they were kept. The check now explains them by the key's
    trusted period in the log; a key never trusted still explains nothing."""
    from safeface.workspace.admin import audit_verify

    monkeypatch.setenv("SAFEFACE_PASSPHRASE", PASSPHRASE)
    ws = make_workspace(tmp_path / "ws")
    imgs = images()
    b = keys_new(ws.root, "consent-issuer", tmp_path / "b.pem", label="consent service B")
    minted, _ = issue_consent(read_signing_key(tmp_path / "b.pem"), Deployment.load(ws.config), "alice", ["demo"])
    with open_sf(ws) as sf:
        sf.enroll(imgs / "obama.jpg", "alice", "demo", minted)
    keys_remove(ws.root, "consent-issuer", b.thumbprint)
    with open_sf(ws) as sf:
        assert sf.verify_store().ok
    assert audit_verify(ws.root).store.ok


def test_the_trusted_keys_listing_follows_a_removal_made_elsewhere(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """An open handle (the console's /keys page) listed a key removed from another process until
    some guarded call ran; the listing reads the trust store again."""
    monkeypatch.setenv("SAFEFACE_PASSPHRASE", PASSPHRASE)
    ws = make_workspace(tmp_path / "ws")
    b = keys_new(ws.root, "consent-issuer", tmp_path / "b.pem", label="consent service B")
    with open_sf(ws) as sf:
        before = sum(len(v) for v in sf.trusted_keys().values())
        keys_remove(ws.root, "consent-issuer", b.thumbprint)
        assert sum(len(v) for v in sf.trusted_keys().values()) == before - 1


def _enrol_with_a_removal_started(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, where: str
                                  ) -> tuple[Any, Any, Any]:
    """Enrol alice under a consent of key B while an operator runs `safeface keys remove` on B
    in the middle of the call: `where` is "processing" (after the call was judged, before the
    store's write) or "write" (from another thread, once the write has judged again, before its
    commit). Returns (the enrolment or the refusal, the workspace's paths, the removal's thread)."""
    import threading

    from safeface.policy.guard import Guard

    monkeypatch.setenv("SAFEFACE_PASSPHRASE", PASSPHRASE)
    ws = make_workspace(tmp_path / "ws")
    b = keys_new(ws.root, "consent-issuer", tmp_path / "b.pem", label="consent service B")
    minted, _ = issue_consent(read_signing_key(tmp_path / "b.pem"), Deployment.load(ws.config), "alice", ["demo"])
    remover = threading.Thread(target=keys_remove, args=(ws.root, "consent-issuer", b.thumbprint))

    if where != "processing":
        recheck = Guard.recheck_at_write

        def recheck_then_remove(self: Any, *a: Any, **k: Any) -> None:
            recheck(self, *a, **k)
            remover.start()
            remover.join(1.0)  # it waits for the store's write lock, which this enrolment holds

        monkeypatch.setattr(Guard, "recheck_at_write", recheck_then_remove)
    outcome, rows = enrol_while(ws, lambda _: remover.run() if where == "processing" else None, monkeypatch,
                                token=minted)
    assert rows == (0 if isinstance(outcome, PolicyViolation) else 1)
    return outcome, ws, remover


def test_a_key_removed_while_an_enrolment_is_processed_stores_nothing(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The enrolment was judged before `safeface keys remove` ran elsewhere and stored after it:
    the caller was told it was done, and every `audit verify` from then on named the row as
    enrolled under a key no longer trusted. The store's write decides the signer's trust again,
    as it does a withdrawal: nothing is stored, and the log stays clean."""
    from safeface.workspace.admin import audit_verify

    outcome, ws, _ = _enrol_with_a_removal_started(tmp_path, monkeypatch, "processing")
    assert isinstance(outcome, PolicyViolation) and outcome.rule == "CN-04", outcome
    assert "stopped being trusted" in str(outcome)
    report = audit_verify(ws.root)
    assert report.store.ok and report.store.rows == 0, report.store.problems


def test_a_key_removal_waits_for_an_enrolment_the_write_already_judged(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A removal started after the write judged the signer's trust again, before its commit,
    waits for the commit (it takes the store's write lock): the row precedes the removal in the
    log, so it is explained by the key's trusted period, and the log's order alone says so (an
    entry's own claim about when it was judged is not needed, nor trusted)."""
    from safeface.workspace.admin import audit_verify

    outcome, ws, remover = _enrol_with_a_removal_started(tmp_path, monkeypatch, "write")
    remover.join(30)
    assert not remover.is_alive() and not isinstance(outcome, PolicyViolation), outcome
    with open_sf(ws) as sf:
        seqs = {e.operation: e.seq for e in sf.audit_entries() if e.operation in ("enroll", "trust-remove")}
    assert seqs["enroll"] < seqs["trust-remove"], seqs
    report = audit_verify(ws.root)
    assert report.store.ok and report.store.rows == 1, report.store.problems


def test_a_call_made_while_a_trust_change_is_half_written_sees_the_old_store_or_the_new(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """`safeface keys new` records its entry, then writes trust.json. A call of an open handle
    (a service worker) that read the two in between took the honest change for an older
    trust.json put back, refused, and logged a failed call. Readers now wait for the change."""
    import threading
    import time

    import safeface.workspace.trust as trust
    from safeface.workspace.admin import audit_verify, keys_list

    monkeypatch.setenv("SAFEFACE_PASSPHRASE", PASSPHRASE)
    ws = make_workspace(tmp_path / "ws")
    recorded, record = threading.Event(), trust._record

    def slow_record(*a: Any, **k: Any) -> int:
        seq = record(*a, **k)
        recorded.set()
        time.sleep(0.5)  # the entry is in the log; the file is written after this
        return seq

    monkeypatch.setattr(trust, "_record", slow_record)
    with open_sf(ws) as sf:
        before = sum(len(v) for v in sf.trusted_keys().values())
        change = threading.Thread(target=keys_new, args=(ws.root, "consent-issuer", tmp_path / "c.pem"))
        change.start()
        assert recorded.wait(30)
        try:
            assert sum(len(v) for v in sf.trusted_keys().values()) == before + 1
            assert sf.audit_verify().entries > 0  # raises on any finding
        finally:
            change.join()
        # The command-line readers too (`safeface audit verify`, `keys list`).
        recorded.clear()
        change = threading.Thread(target=keys_new, args=(ws.root, "consent-issuer", tmp_path / "d.pem"))
        change.start()
        assert recorded.wait(30)
        try:
            assert keys_list(ws.root)  # raised as an older trust.json put back
            assert audit_verify(ws.root).store.ok
        finally:
            change.join()


def test_a_call_made_while_an_assessment_is_half_recorded_is_not_refused(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """`safeface assess` writes deployment.json, then its audit entry. A call of an open handle
    judged in between was refused (CN-09) as if the file had been restored from an older copy;
    it now waits for the entry and goes ahead."""
    import threading
    import time

    from safeface.workspace import admin
    from safeface.workspace.admin import record_assessment

    monkeypatch.setenv("SAFEFACE_PASSPHRASE", PASSPHRASE)
    ws = make_workspace(tmp_path / "ws")
    saved, save = threading.Event(), admin.write_config

    def slow_save(paths: Any, text: Any) -> None:
        save(paths, text)
        if paths.config == ws.config and threading.current_thread() is not threading.main_thread():
            saved.set()
            time.sleep(0.5)  # the new file is in place; its audit entry follows

    monkeypatch.setattr(admin, "write_config", slow_save)
    with open_sf(ws) as sf:
        sf.enroll(images() / "obama.jpg", "alice", "demo", consent(ws, "alice"))
        assess = threading.Thread(target=record_assessment, args=(ws.root, "DPIA-2", "2026-12-01"),
                                  kwargs={"passphrase": PASSPHRASE})
        assess.start()
        assert saved.wait(30)
        try:
            assert sf.verify(images() / "obama2.jpg", "alice", "demo", consent(ws, "alice")).match
        finally:
            assess.join()
        assert sf.verify(images() / "obama2.jpg", "alice", "demo", consent(ws, "alice")).match


def test_an_assessment_recorded_between_a_calls_two_readings_of_the_file_is_not_refused(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A call reads deployment.json, sees it changed, then takes the assessment's lock to judge
    it. An `assess` that finished between the two judged the first reading against the new
    entry, an older file put back (CN-09); the file is read again under the lock."""
    from safeface.workspace.admin import record_assessment

    monkeypatch.setenv("SAFEFACE_PASSPHRASE", PASSPHRASE)
    ws = make_workspace(tmp_path / "ws")
    with open_sf(ws) as sf:
        sf.enroll(images() / "obama.jpg", "alice", "demo", consent(ws, "alice"))
        read, readings = sf._config_bytes, []

        def read_then_assess() -> bytes:
            raw = read()
            readings.append(raw)
            if len(readings) == 1:
                record_assessment(ws.root, "DPIA-2", "2026-12-01", passphrase=PASSPHRASE)
            return raw

        ws.config.write_bytes(ws.config.read_bytes() + b"\n")  # changed: the next call judges it again
        record_assessment(ws.root, "DPIA-1", "2026-12-01", passphrase=PASSPHRASE)
        monkeypatch.setattr(sf, "_config_bytes", read_then_assess)
        assert sf.verify(images() / "obama2.jpg", "alice", "demo", consent(ws, "alice")).match
        assert len(readings) >= 2 and readings[0] != readings[-1]


def test_a_row_stored_under_a_removed_key_is_named_whatever_judging_point_its_entry_claims(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A host holding the passphrase stores a row under a consent of a key already removed (a
    stolen one), through hazmat, and logs it as an enrolment "judged after entry 1", before the
    removal. The store check orders the row by its entry's place in the log, not by that claim."""
    import datetime as dt

    import numpy as np

    from safeface.errors import IntegrityError
    from safeface.hazmat.templates import PassphraseKeyring
    from safeface.storage.gallery import Gallery
    from safeface.workspace.admin import audit_verify
    from safeface.workspace.session import open_audit

    monkeypatch.setenv("SAFEFACE_PASSPHRASE", PASSPHRASE)
    ws = make_workspace(tmp_path / "ws")
    b = keys_new(ws.root, "consent-issuer", tmp_path / "b.pem", label="consent service B")
    minted, tok = issue_consent(read_signing_key(tmp_path / "b.pem"), Deployment.load(ws.config), "mallory", ["demo"])
    with open_sf(ws) as sf:
        ref, pseudonym = sf.token_ref(tok.token_id), sf.pseudonym("mallory")
    keys_remove(ws.root, "consent-issuer", b.thumbprint)
    keyring = PassphraseKeyring.open(ws.keyring, PASSPHRASE)
    expires = dt.datetime.now(dt.timezone.utc) + dt.timedelta(days=30)
    vec = np.random.default_rng(7).standard_normal(128).astype(np.float32)
    with Gallery.open(ws.gallery, keyring, 128) as g:
        row = g.add("mallory", vec / np.linalg.norm(vec), ["demo"], ref, expires, "consent", token=minted)
    with open_audit(ws, keyring, Deployment.load(ws.config)) as log:
        log.append("enroll", "allowed", purpose="demo", token_id=ref, basis="consent", subjects=[pseudonym],
                   note=f"rows={row.row_id}; expires {expires.date().isoformat()}; judged after entry 1; "
                        f"token issued {int(tok.issued_at)}")
        log.append("enroll-committed", "allowed", note=f"rows={row.row_id}; stored")
    with pytest.raises(IntegrityError, match="no longer trusted when the row was stored"):
        audit_verify(ws.root)


def _enrol_under_a_legal_basis(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, change: str) -> tuple[Any, int]:
    """Enrol carol under a legal basis of authority key B while a trust change lands mid-call:
    B removed, or an unrelated consent issuer added."""
    from safeface.policy.issuer import issue_legal_basis

    monkeypatch.setenv("SAFEFACE_PASSPHRASE", PASSPHRASE)
    ws = make_workspace(tmp_path / "ws")
    b = keys_new(ws.root, "authority", tmp_path / "b.pem", label="authority B")
    lb, _ = issue_legal_basis(read_signing_key(tmp_path / "b.pem"), audience=Deployment.load(ws.config).deployment_id,
                              authority="Test Public Security Bureau", provision="PIPL art. 13(1)(3)",
                              reference="case 2026-17", purposes=["demo"], operations=["enroll"])

    def landing() -> None:
        if change == "remove B":
            keys_remove(ws.root, "authority", b.thumbprint)
        else:
            keys_new(ws.root, "consent-issuer", tmp_path / "c.pem", label="consent service C")

    return enrol_while(ws, lambda _: landing(), monkeypatch, subject="carol", legal_basis=lb)


def test_an_authority_key_removed_while_a_legal_basis_enrolment_is_processed_stores_nothing(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    outcome, rows = _enrol_under_a_legal_basis(tmp_path, monkeypatch, "remove B")
    assert isinstance(outcome, PolicyViolation) and "stopped being trusted" in str(outcome), outcome
    assert rows == 0


def test_an_unrelated_trust_change_mid_call_lets_an_honest_legal_basis_enrolment_in(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    outcome, rows = _enrol_under_a_legal_basis(tmp_path, monkeypatch, "add C")
    assert not isinstance(outcome, PolicyViolation), outcome
    assert rows == 1


def test_a_stolen_key_is_removed_even_when_the_gallery_no_longer_opens(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The removal waits on the store's write lock, not on the store: a gallery that fails to
    open (here overwritten with junk) must not hold up the removal of a stolen key."""
    monkeypatch.setenv("SAFEFACE_PASSPHRASE", PASSPHRASE)
    ws = make_workspace(tmp_path / "ws")
    b = keys_new(ws.root, "consent-issuer", tmp_path / "b.pem", label="consent service B")
    with open_sf(ws) as sf:
        sf.enroll(images() / "obama.jpg", "alice", "demo", consent(ws, "alice"))
    ws.gallery.write_bytes(b"not a database" * 100)
    assert keys_remove(ws.root, "consent-issuer", b.thumbprint).thumbprint == b.thumbprint


def test_a_removal_behind_a_held_store_lock_says_so_and_one_behind_a_move_changes_nothing(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The removal waits for the store's write lock: behind a stuck holder it waited for ever,
    saying nothing; now it gives up after STORE_LOCK_WAIT_S with a typed error, the key still
    trusted. And a removal that waited while the workspace moved its records to the servers
    wrote its entry into the local log left behind; it now changes nothing and says to retry."""
    import json

    import safeface.workspace.admin as admin
    from safeface.errors import ConfigError
    from safeface.storage.gallery import write_lock
    from safeface.workspace.admin import keys_list
    from safeface.workspace.session import opened

    monkeypatch.setenv("SAFEFACE_PASSPHRASE", PASSPHRASE)
    monkeypatch.setattr(admin, "STORE_LOCK_WAIT_S", 0.5)
    ws = make_workspace(tmp_path / "ws")
    b = keys_new(ws.root, "consent-issuer", tmp_path / "b.pem", label="consent service B")

    def trusted() -> bool:
        return any(k["thumbprint"] == b.thumbprint and not k.get("removed") for k in keys_list(ws.root))

    with write_lock(ws.gallery).held():
        with pytest.raises(ConfigError, match="not free within"):
            keys_remove(ws.root, "consent-issuer", b.thumbprint)
    assert trusted()
    with opened(ws) as r:
        raw = json.loads(ws.config.read_text())
        raw["storage"] = {"records": "postgresql://db.example/safeface", "vectors": "milvus-lite:vectors.db"}
        ws.config.write_text(json.dumps(raw))
        with pytest.raises(ConfigError, match="records moved"):
            with admin._store_locked(ws, r):
                pass


def test_a_removal_is_not_starved_by_a_stream_of_short_writes(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Waiting by polling, the removal was overtaken by every writer already blocked on the
    lock: two writers taking it for 20 ms in turn kept it out until it gave up, blaming a
    stuck holder, and the stolen key stayed trusted. It now waits in line."""
    import threading
    import time

    import safeface.workspace.admin as admin
    from safeface.storage.gallery import write_lock

    monkeypatch.setenv("SAFEFACE_PASSPHRASE", PASSPHRASE)
    monkeypatch.setattr(admin, "STORE_LOCK_WAIT_S", 5.0)
    ws = make_workspace(tmp_path / "ws")
    b = keys_new(ws.root, "consent-issuer", tmp_path / "b.pem", label="consent service B")
    stop = threading.Event()

    def writer() -> None:
        lock = write_lock(ws.gallery)  # a descriptor of its own, as another process has
        while not stop.is_set():
            with lock.held():
                time.sleep(0.02)

    writers = [threading.Thread(target=writer, daemon=True) for _ in range(2)]
    for w in writers:
        w.start()
    try:
        time.sleep(0.2)
        assert keys_remove(ws.root, "consent-issuer", b.thumbprint).thumbprint == b.thumbprint
    finally:
        stop.set()
        for w in writers:
            w.join(5)


def test_a_folder_planted_as_the_gallerys_lock_file_is_a_typed_error(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from safeface.errors import ConfigError

    monkeypatch.setenv("SAFEFACE_PASSPHRASE", PASSPHRASE)
    ws = make_workspace(tmp_path / "ws")
    b = keys_new(ws.root, "consent-issuer", tmp_path / "b.pem", label="consent service B")
    lock = ws.gallery.with_name(ws.gallery.name + ".lock")
    lock.unlink(missing_ok=True)
    lock.mkdir()
    with pytest.raises(ConfigError, match="remove what is in its place"):
        keys_remove(ws.root, "consent-issuer", b.thumbprint)


def test_a_lock_file_on_a_read_only_file_system_is_a_typed_error(tmp_path: Path) -> None:
    """A lock file that cannot be made (a read-only mount) was a raw OSError for writers, and
    readers went ahead without the lock; both are now told what to fix."""
    import shutil
    import subprocess

    from safeface.atomicfile import exclusive_lock, shared_lock
    from safeface.errors import ConfigError

    mnt = tmp_path / "ro"
    mnt.mkdir()
    if os.geteuid() != 0 or shutil.which("mount") is None or subprocess.run(
            ["mount", "-t", "tmpfs", "-o", "ro,size=1m", "none", str(mnt)], capture_output=True).returncode != 0:
        pytest.skip("mounting a read-only file system needs root and mount(8)")
    try:
        for lock in (shared_lock, exclusive_lock):
            with pytest.raises(ConfigError, match="cannot be made or opened .*Read-only"):
                with lock(mnt / "trust.lock"):
                    pass
    finally:
        subprocess.run(["umount", str(mnt)], capture_output=True)


@pytest.mark.parametrize("code", ["EACCES", "EPERM"])
def test_a_lock_file_the_user_may_not_make_is_a_typed_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                            code: str) -> None:
    """The folder's permissions refusing the lock file (this suite runs as root, which they never
    refuse: the refusal is the operating system's, given here)."""
    import errno

    import safeface.atomicfile as af
    from safeface.errors import ConfigError

    real, number = os.open, getattr(errno, code)

    def refusing(path: Any, *a: Any, **kw: Any) -> int:
        if str(path).endswith(".lock"):
            raise OSError(number, os.strerror(number), str(path))
        return real(path, *a, **kw)

    monkeypatch.setattr(af.os, "open", refusing)
    for lock in (af.shared_lock, af.exclusive_lock):
        with pytest.raises(ConfigError, match="cannot be made or opened"):
            with lock(tmp_path / "trust.lock"):
                pass
