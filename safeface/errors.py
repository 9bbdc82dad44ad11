"""Every error safeface raises. Each names what went wrong in a sentence a person can act on;
a refusal by a compliance rule carries that rule's ID (see the rule catalogue)."""

from __future__ import annotations

from typing import Optional


class SafeFaceError(Exception):
    """Base of all safeface errors."""


class ImageError(SafeFaceError):
    """An input image could not be read: missing, empty, corrupt, truncated, too large or of an
    unsupported kind."""


class EyesCovered(ImageError):
    """The face's eyes are hidden (dark glasses, a visor): it is refused for recognition, since
    strangers covered alike look alike to the recognizer. Ask the person to uncover their eyes."""


class ModelError(SafeFaceError):
    """A model file is missing, altered (SHA-256 mismatch), forbidden or malformed."""


class ModelFetchError(ModelError):
    """An explicit model download failed: network, hash, truncation or a forbidden pack member."""


class ConfigError(SafeFaceError):
    """A configuration or workspace is unusable as written."""


class WorkspaceBusy(ConfigError):
    """A workspace database or the store's write lock stayed held by another process (a rekey, a
    large erasure or purge, a migration) past the time a call waits for it; nothing was changed.
    Try again once it has finished: `retry_after` seconds is what the service sends with its 503."""

    retry_after = 5.0


class WorkspaceUnwritable(ConfigError):
    """The disk under the workspace refused a write: it is full or over its quota, or it went
    read-only (a file system remounts so after a disk error). The write that failed was rolled
    back; the same call works once the disk takes writes again (free space, or remount it
    read-write): `retry_after` seconds is what the service sends with its 503. `folder`: the
    folder that refused, where it is not the workspace's own (the audit witness's volume)."""

    retry_after = 30.0

    def __init__(self, message: str, folder: Optional[str] = None) -> None:
        super().__init__(message)
        self.folder = folder


class WorkspaceDiskFailed(WorkspaceUnwritable):
    """The disk under the workspace failed a read with an I/O error (EIO: a failing or detached
    device, a broken file system): no tampering, and nothing was changed. Calls are refused until
    it reads again (check the device and the kernel's log); if the disk is lost, restore the
    workspace from a backup. A disk that fails reads cannot be trusted with writes either, hence
    a WorkspaceUnwritable: the service answers 503 with Retry-After. `path`: the file that failed."""

    def __init__(self, message: str, path: Optional[str] = None) -> None:
        super().__init__(message)
        self.path = path


class SchemaOwnerNeeded(ConfigError):
    """A server record store lacks a table this release needs (made by an earlier release) or the
    database role the service connects as lacks rights on it, and that role may not mend it.
    `statement`: the SQL for the schema's owner to run once; it names the table, its schema and
    the role, nothing else of the server."""

    def __init__(self, message: str, statement: str) -> None:
        super().__init__(message)
        self.statement = statement


class IntegrityError(SafeFaceError):
    """Stored data failed its integrity check: a sealed row, the audit chain or a signature."""


class ReplacedFile(IntegrityError):
    """A workspace database, or its -wal or -shm file, was replaced or removed under an open
    handle: that handle refuses every call until the workspace is opened again."""


class PolicyViolation(SafeFaceError):
    """A compliance rule refused the call. `rule` is the rule's ID, e.g. ``"CN-04"``."""

    def __init__(self, rule: str, message: str) -> None:
        super().__init__(f"[{rule}] {message}")
        self.rule = rule
        self.message = message

    def to_dict(self) -> dict[str, str]:
        return {"error": "PolicyViolation", "rule": self.rule, "message": self.message}


class InvalidArgument(SafeFaceError, ValueError):
    """An argument is of the wrong kind or out of range; the message says what is accepted."""


class BackendError(SafeFaceError):
    """A component under safeface (ONNX Runtime, SQLite, NumPy) failed inside an authorised call;
    the call was audited as failed and nothing was stored."""


class IndexUnavailable(BackendError):
    """The server store's vector index (Milvus) failed a call or could not be reached. Its
    records are intact: a write is refused or noted for later, a search answers from the records.
    `retry_after`: the longest a store leaves a failed Milvus alone before asking it again
    (storage.vectors.RETRY_S; what the service sends as Retry-After with its 503)."""

    retry_after = 30.0


class StoreConnectionLost(BackendError):
    """The PostgreSQL record store's connection ended inside a call (a server restart, a failover,
    an operator's `pg_terminate_backend`, a network cut): the call's transaction was rolled back,
    and the next call opens a new connection. A 503 with Retry-After in the service."""

    retry_after = 1.0


class AuthenticationError(SafeFaceError):
    """A service credential (API key or console session) is missing, unknown, revoked or expired."""


class LoginFormTaken(AuthenticationError):
    """A console login form posted with an API key after it gave out a session, still live, for
    another key (two tabs of one browser posting it with two keys at once): refused, so that no
    session is left live and held by no browser. `key_id`: that other key's id."""

    def __init__(self, message: str, key_id: str) -> None:
        super().__init__(message)
        self.key_id = key_id


class ServiceBusy(SafeFaceError):
    """The service refused the call for now (its work queue is full, or the key is over its rate);
    nothing was done. `retry_after` is the number of seconds to wait."""

    def __init__(self, message: str, retry_after: float) -> None:
        super().__init__(message)
        self.retry_after = retry_after
