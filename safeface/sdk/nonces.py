"""Used liveness nonces, read from two places: the policy state's used-nonce table (one atomic
insert, so two processes racing with the same evidence cannot both win) and the audit log, whose
call entries name the evidence that let each call in. A used-nonce row deleted by hand, or a
policy state restored from an older copy, does not let the evidence in again while the chain
still records its use."""

from __future__ import annotations

import datetime as dt
import hashlib
from typing import Any

# The calls whose entries name the liveness evidence that let them in (SafeFace._record).
_GATED = ("enroll", "verify", "identify")


def nonce_ref(nonce: str) -> str:
    """A liveness nonce as the log names it: enough to pair a check with the call it let in."""
    return hashlib.sha256(nonce.encode("utf-8")).hexdigest()[:12]


class RecordedNonces:
    def __init__(self, state: Any, audit: Any) -> None:
        self._state = state
        self._audit = audit

    def use_nonce(self, nonce: str, until: dt.datetime) -> bool:
        return bool(self._state.use_nonce(nonce, until))

    def recorded_use(self, nonce: str, since: dt.datetime) -> bool:
        return bool(self._audit.mentions_since(_GATED, f"liveness {nonce_ref(nonce)}", since))
