"""Shared helpers for the policy tests: workspaces, a settable clock, and a pipeline that embeds
each real test image once per test session (dlib's networks on ONNX Runtime are the real engine;
the cache only avoids recomputing the same image)."""

from __future__ import annotations

import dataclasses
import datetime as dt
import functools
import json
import time
from pathlib import Path
from typing import Any, Callable, Optional, Sequence, Union

import pytest

from datasets_path import datasets  # noqa: F401  (re-exported for the policy tests)

from safeface.hazmat.templates.pseudonym import normalize_subject
from safeface.policy.deployment import Deployment
from safeface.policy.guard import CLOCK_SKEW_S, Decision, Guard, Operation, Request
from safeface.policy.issuer import issue_consent, issue_legal_basis
from safeface.policy.tokens import ConsentToken, LegalBasisToken, sign
from safeface.workspace.init import init_workspace
from safeface.workspace.keys import read_signing_key
from safeface.workspace.paths import WorkspacePaths
from safeface.sdk import SafeFace

PASSPHRASE = "test passphrase, not secret"


class EmptyStore:
    """Store facts for a guard on its own: nobody stored yet."""

    def has_subject(self, subject_id: str) -> bool:
        return False

    def subject_count(self) -> int:
        return 0


def authorize(g: Guard, operation: str, purpose: str, now: dt.datetime, **kw: Any) -> Decision:
    """One call as the facade makes it, by an operator (whose role may do everything)."""
    op = Operation.EXPORT if operation == "transmit" else Operation(operation)
    return g.authorize(Request(op, "operator", now, purpose=purpose, **kw))


def images() -> Path:
    folder = datasets() / "face_recognition" / "test_images"
    if not (folder / "obama.jpg").is_file():
        pytest.skip(f"the real test images are absent ({folder}); set SAFEFACE_DATASETS to the shared datasets")
    return folder


@functools.lru_cache(maxsize=1)
def _engine() -> Any:
    from safeface.hazmat.vision import get_engine

    # ONNX Runtime runs dlib's own networks (equal descriptors and MMOD boxes), and its MMOD is
    # many times faster than dlib's on a CPU: enrolment and verification run every detector step.
    return get_engine("onnx")


class CachedPipeline:
    """The real dlib pipeline; each distinct image file is embedded once per session."""

    def __init__(self) -> None:
        from safeface.hazmat.vision import Pipeline

        self._pipe = Pipeline(_engine())
        self.engine = self._pipe.engine  # the liveness tracker uses the same engine

    def embed(self, image: Any, *, count_all: bool = False) -> Any:
        if isinstance(image, (str, Path)):
            return _cached_embed(str(Path(image).resolve()), count_all)
        return self._pipe.embed(image, count_all=count_all)

    def detect(self, image: Any) -> Any:
        return self._pipe.detect(image)

    def embed_faces(self, image: Any, faces: Any) -> Any:
        return self._pipe.embed_faces(image, faces)

    def mask_check(self, image: Any, face: Any, embedding: Any) -> Any:
        return self._pipe.mask_check(image, face, embedding)

    def eye_check(self, image: Any, face: Any, embedding: Any) -> Any:
        return self._pipe.eye_check(image, face, embedding)

    def visible_embedding(self, image: Any, face: Any, *, masked: bool = False) -> Any:
        if isinstance(image, (str, Path)):
            return _cached_visible(str(Path(image).resolve()), masked)
        return self._pipe.visible_embedding(image, face, masked=masked)


@functools.lru_cache(maxsize=64)
def _cached_embed(path: str, count_all: bool) -> Any:
    from safeface.hazmat.vision import Pipeline

    return Pipeline(_engine()).embed(path, count_all=count_all)


@functools.lru_cache(maxsize=64)
def _cached_visible(path: str, masked: bool) -> Any:
    from safeface.hazmat.vision import Pipeline

    pipe = Pipeline(_engine())
    face = _cached_embed(path, True).face
    return pipe.visible_embedding(path, face, masked=masked)


def masked_image(path: Path, kind: str = "surgical", seed: int = 1) -> Any:
    """The image with a synthetic mask drawn where the bare face is: what a camera would see."""
    from safeface.hazmat.vision.masks import draw_mask
    from safeface.imageio import load_image

    face = CachedPipeline().embed(path).face
    assert face is not None
    return draw_mask(load_image(path), face.landmarks, face.box, kind, seed)


class Clock:
    def __init__(self, start: Optional[dt.datetime] = None) -> None:
        self.now = start or dt.datetime.now(dt.timezone.utc)

    def __call__(self) -> dt.datetime:
        return self.now

    def advance(self, **kw: float) -> None:
        self.now += dt.timedelta(**kw)


def demo_deployment(today: dt.date, profiles: Sequence[str] = ("cn-2025",),
                    edit: Optional[Callable[[dict[str, Any]], None]] = None, reassess: bool = True,
                    deployment_id: Optional[str] = None) -> Deployment:
    """The demo deployment assessed on `today`, its configuration changed by `edit`; `reassess`
    records the assessment as covering the edited configuration (as `safeface assess` would)."""
    from safeface.policy.deployment import demo_config

    raw = demo_config(today, tuple(profiles), deployment_id=deployment_id)
    if edit is not None:
        edit(raw)
        if reassess:
            raw["assessment"]["covers"] = Deployment.from_dict(raw).config_digest()
    return Deployment.from_dict(raw)


def make_workspace(root: Path, profiles: Sequence[str] = ("cn-2025",),
                   edit: Optional[Callable[[dict[str, Any]], None]] = None, reassess: bool = True,
                   today: Optional[dt.date] = None) -> WorkspacePaths:
    """A demo workspace, its configuration changed by `edit`; `reassess` records the assessment
    as covering the edited configuration (as `safeface assess` would)."""
    paths = init_workspace(root, demo=True, profiles=profiles, passphrase=PASSPHRASE, today=today)
    if edit is not None:
        edit_config(paths, edit, reassess=reassess)
    return paths


def _passphrase(paths: WorkspacePaths) -> Optional[str]:
    """PASSPHRASE for make_workspace's workspaces; None (the stored demo one) for the others."""
    return None if paths.demo_passphrase.is_file() else PASSPHRASE


def edit_config(paths: WorkspacePaths, edit: Callable[[dict[str, Any]], None], reassess: bool = True) -> None:
    """Change deployment.json by hand; `reassess` then records the assessment with the keys, as
    `safeface assess` does (the edited section's reference and dates)."""
    from safeface.workspace.admin import record_assessment

    raw = json.loads(paths.config.read_text())
    edit(raw)
    paths.config.write_text(json.dumps(raw, indent=2))
    if reassess:
        a = raw["assessment"]
        record_assessment(paths.root, a["reference"], a["date"], passphrase=_passphrase(paths), reviewed=a.get("reviewed"),
                          accept_changes=True)


def restore_config(paths: WorkspacePaths, text: str) -> None:
    """Put back an earlier deployment.json and record its assessment again: restored alone, it is
    an older copy the audit log no longer names last, and every call would be refused."""
    from safeface.workspace.admin import record_assessment

    paths.config.write_text(text)
    a = json.loads(text)["assessment"]
    record_assessment(paths.root, a["reference"], a["date"], passphrase=_passphrase(paths), reviewed=a.get("reviewed"),
                          accept_changes=True)


def open_sf(paths: WorkspacePaths, clock: Optional[Clock] = None, role: Optional[str] = None) -> SafeFace:
    return SafeFace.open(paths.root, PASSPHRASE, pipeline=CachedPipeline(), clock=clock, role=role)


def enrol_while(paths: WorkspacePaths, change: Callable[[SafeFace], None], monkeypatch: pytest.MonkeyPatch, *,
                subject: str = "alice", token: Optional[str] = None, legal_basis: Optional[str] = None,
                clock: Optional[Clock] = None) -> tuple[Any, int]:
    """Enrol `subject` from obama.jpg for "demo"; once the image is embedded, before the store's
    write, `change(handle)` runs: another process's change, or another call of the handle,
    landing mid-call (or time passing, on `clock`). Returns (the enrolment or its
    PolicyViolation, the rows stored)."""
    from safeface import PolicyViolation

    embed = SafeFace._embed_single

    def embed_then_change(self: SafeFace, *a: Any, **k: Any) -> Any:
        out = embed(self, *a, **k)
        change(self)
        return out

    monkeypatch.setattr(SafeFace, "_embed_single", embed_then_change)
    try:
        with open_sf(paths, clock) as sf:
            try:
                outcome: Any = sf.enroll(images() / "obama.jpg", subject, "demo", token, legal_basis=legal_basis)
            except PolicyViolation as exc:
                outcome = exc
            return outcome, len(sf.records())
    finally:
        monkeypatch.setattr(SafeFace, "_embed_single", embed)


def issued_consent(paths: WorkspacePaths, subject: str, purposes: Sequence[str] = ("demo",),
                   **kw: Any) -> tuple[str, ConsentToken]:
    """A consent from the workspace's demo issuer: (wire form, what it says)."""
    dep = Deployment.load(paths.config)
    return issue_consent(read_signing_key(paths.demo_issuer), dep, subject, purposes, **kw)


def consent(paths: WorkspacePaths, subject: str, purposes: Sequence[str] = ("demo",), **kw: Any) -> str:
    return issued_consent(paths, subject, purposes, **kw)[0]


def past_the_skew() -> dt.datetime:
    """When a consent given afresh after its subject's erasure or withdrawal is dated: the guard
    counts one dated within CLOCK_SKEW_S after a withdrawal as withdrawn, so it is dated as if
    given that much later (as late as the guard takes a token now), where a person would wait
    that long. A token's date is in whole seconds, so this first waits for the next whole second
    (at most one): an erasure a moment before, in the same second, is then behind it."""
    time.sleep(1.0 - time.time() % 1.0)
    return dt.datetime.now(dt.timezone.utc) + dt.timedelta(seconds=CLOCK_SKEW_S)


def foreign_consent(paths: WorkspacePaths, subject: str, purposes: Sequence[str] = ("demo",)) -> str:
    """A consent for `subject` signed by the workspace's issuer key but minted by other code (any
    JOSE library), which our issuer refuses to write: say, one to enrol under an id that prints
    as another, or one naming a purpose the deployment does not declare."""
    return resigned(paths, issued_consent(paths, "placeholder")[1], subject=normalize_subject(subject),
                    purposes=tuple(purposes))


def issued_legal_basis(paths: WorkspacePaths, purposes: Sequence[str] = ("demo",),
                       **kw: Any) -> tuple[str, LegalBasisToken]:
    """A legal basis from the workspace's demo authority: (wire form, what it says)."""
    kw.setdefault("authority", "Test Public Security Bureau")
    kw.setdefault("provision", "PIPL art. 13(1)(3)")
    kw.setdefault("reference", "case 2026-17")
    kw.setdefault("audience", Deployment.load(paths.config).deployment_id)
    return issue_legal_basis(read_signing_key(paths.demo_authority), purposes=purposes, **kw)


def legal_basis(paths: WorkspacePaths, purposes: Sequence[str] = ("demo",), **kw: Any) -> str:
    return issued_legal_basis(paths, purposes, **kw)[0]


def resigned(paths: WorkspacePaths, token: Union[ConsentToken, LegalBasisToken], **changes: Any) -> str:
    """`token` with `changes`, signed by the key the workspace trusts for its kind: what another
    party's minting code (any JOSE library) could sign although our issuer refuses to write it,
    such as a blank provision or a birth date that is not a date."""
    key = paths.demo_authority if isinstance(token, LegalBasisToken) else paths.demo_issuer
    return sign(dataclasses.replace(token, **changes), read_signing_key(key))


def last_call(sf: Any) -> Any:
    """The newest audit entry of a call: an enrolment's store-commit mark, which follows its
    entry, is skipped."""
    return [e for e in sf.audit_entries() if e.operation != "enroll-committed"][-1]


def link_gallery_to_another_programs_database(paths: WorkspacePaths, outside: Path) -> tuple[Path, bytes]:
    """Replace the workspace's gallery.db by a link another user (uid 1000; root only) made to
    a database of another program's, made in the new folder `outside`: (that database, its bytes
    now), to show it is left as it was."""
    import os
    import sqlite3
    from contextlib import closing

    outside.mkdir()
    other = outside / "app.db"
    with closing(sqlite3.connect(other)) as db, db:
        db.execute("CREATE TABLE accounts (name TEXT)")
    before = other.read_bytes()
    paths.gallery.unlink()
    paths.gallery.symlink_to(other)
    os.lchown(paths.gallery, 1000, 1000)
    return other, before
