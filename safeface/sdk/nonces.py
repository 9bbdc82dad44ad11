"""Used liveness nonces, kept in two places: the policy state's used-nonce table (one atomic
insert, so two processes racing with the same evidence cannot both win) and the audit log, where
the evidence is spent by an entry appended only if no entry spent it already (one write
transaction: the chain's own lock decides a race). A used-nonce row deleted by hand, even while
two calls with the evidence overlap, or a policy state restored from an older copy, does not let
the evidence in again: the chain, which cannot be rolled back unseen, records its spending."""

from __future__ import annotations

import datetime as dt
import hashlib
from typing import Any

# The entry that spends an evidence (LIVENESS_SPENT), written where the call is judged, before
# its work, names the evidence in its token column, which is indexed: finding it is one probe,
# however busy the log.
from ..workspace.audit import LIVENESS_SPENT


def nonce_ref(nonce: str) -> str:
    """A liveness nonce as the log names it: enough to pair a check with the call it let in."""
    return hashlib.sha256(nonce.encode("utf-8")).hexdigest()[:12]


def evidence_ref(token: str) -> str:
    """A signed evidence as the log names it, in its check's entry and where it is spent: a host
    holding the keys can sign other evidence for a checked nonce (another face), which the nonce
    alone would pair with the honest check."""
    return hashlib.sha256(token.encode("utf-8")).hexdigest()[:16]


class RecordedNonces:
    def __init__(self, state: Any, audit: Any) -> None:
        self._state = state
        self._audit = audit

    def use_nonce(self, nonce: str, until: dt.datetime) -> bool:
        return bool(self._state.use_nonce(nonce, until))

    def spend(self, nonce: str, token: str) -> bool:
        """Spend the evidence `token` (of `nonce`) in the audit log; False when an entry already
        spent its nonce."""
        ref = nonce_ref(nonce)
        key = "liveness:" + hashlib.sha256(nonce.encode("utf-8")).hexdigest()  # whole: no two evidences share it
        return self._audit.append_unless(lambda: self._audit.names_token(LIVENESS_SPENT, key), LIVENESS_SPENT,
                                         "allowed", token_id=key,
                                         note=f"evidence spent; evidence {evidence_ref(token)}; liveness {ref}"
                                         ) is not None
