"""Withdrawn consents, read from two places: the policy state's revocation tables (written
before the templates go, under the store's write lock) and the audit log, whose "revoke" and
"erase" entries name the token reference or the subject. A policy state restored from an older
copy, or deleted, does not let a withdrawn consent in again while the chain records it. The
BIPA interaction limit is read from the log alone (its enrolment entries)."""

from __future__ import annotations

import datetime as dt
from typing import Any, Optional


class RecordedRevocations:
    def __init__(self, state: Any, audit: Any) -> None:
        self._state = state
        self._audit = audit

    def is_revoked(self, token_id: str, pseudonym: Optional[str], issued_at: int) -> bool:
        return bool(self._state.is_revoked(token_id, pseudonym, issued_at)
                    or self._audit.records_withdrawal(token_id, pseudonym, issued_at))

    def interaction_limit(self, pseudonym: str, purpose: str) -> Optional[dt.datetime]:
        return self._audit.interaction_limit(pseudonym, purpose)  # type: ignore[no-any-return]
