"""What a caller is told of a failure of the service's own storage, configuration or records.
Their messages name the record store (its host, user and database) and what was found in it,
which are the operator's to read, not an API key holder's or a browser's: the caller gets the
error's kind and a reference, and the service's log the cause under that reference."""

from __future__ import annotations

import logging
import secrets
from typing import Optional

from ..errors import (BackendError, ConfigError, IntegrityError, ModelError, SchemaOwnerNeeded, StoreConnectionLost,
                      WorkspaceBusy, WorkspaceDiskFailed, WorkspaceUnwritable)

# Causes only the operator can act on, whose messages name the server's paths and files (a model
# file's path and its hash, a store's location): the caller gets a log reference instead.
OPERATOR_ONLY = (BackendError, ConfigError, IntegrityError, ModelError)
_log = logging.getLogger("safeface.service")


def kept(text: str) -> str:
    """A failed check's text (in a report) as a caller may read it: a reference, and the text in
    the service's log under it, as told gives for a failed call."""
    ref = secrets.token_hex(6)
    _log.error("check failed, reference %s: %s", ref, text)
    return f"its cause is kept from the caller; the operator finds it in the service's log under reference {ref}."


def told(exc: Exception) -> tuple[str, Optional[str]]:
    """(the message a caller may read, the log reference when the cause was kept from it)."""
    if not isinstance(exc, OPERATOR_ONLY):
        return str(exc), None
    ref = secrets.token_hex(6)
    _log.error("call failed, reference %s: %s: %s", ref, type(exc).__name__, exc)
    if isinstance(exc, SchemaOwnerNeeded):
        # Its message names the database role, the schema and the table, and the key check itself
        # may be what failed: any caller can meet it, so the statement stays in the log.
        return (f"the service's database role lacks a right or a table this call needs; nothing was done. Its "
                f"operator finds the statement to run once as the schema's owner in the service's log under "
                f"reference {ref}; retry once it has run.", ref)
    if isinstance(exc, WorkspaceBusy):  # its message names the file; the caller needs only to retry
        return (f"the workspace is busy with another process's long write; nothing was done. Retry later "
                f"(reference {ref}).", ref)
    if isinstance(exc, StoreConnectionLost):  # the record store restarted or failed over: the caller retries
        return (f"the service lost its connection to its records during the call, which did not complete; retry "
                f"it (reference {ref}).", ref)
    if isinstance(exc, WorkspaceDiskFailed):  # the same: the operator sees to the device; the caller retries
        return (f"the service cannot read its records now (its disk failed); the call did not complete. Retry later "
                f"(reference {ref}).", ref)
    if isinstance(exc, WorkspaceUnwritable):  # the same: the operator frees space; the caller retries
        return (f"the service cannot write its records now (its disk is full or read-only); the call did not "
                f"complete. Retry later (reference {ref}).", ref)
    return (f"the service could not complete the call; its operator finds the cause in the service's log under "
            f"reference {ref}.", ref)
