"""The store interface behind the guard: what the SDK needs of a template store, whatever the
backend (the local one is SQLite plus the in-process index, ``storage.gallery``)."""

from __future__ import annotations

from contextlib import AbstractContextManager
from datetime import datetime
from typing import Any, Collection, Mapping, Optional, Protocol, Sequence

import numpy as np


# How a store transaction reference names the server it ran on (writing_transaction).
IN_CLUSTER = "in cluster"

class TemplateStore(Protocol):
    def locked(self) -> AbstractContextManager[None]:
        """The write lock that enrolment's write, erasure and revocation all hold."""
        ...

    def pseudonym(self, subject_id: str) -> str: ...

    def never_committed(self, ids: Sequence[int], transactions: Mapping[int, str] = {}) -> list[int]:
        """Of these row ids (named by enrolment entries that have no commit mark after them),
        those no committed transaction of the store ever wrote. `transactions`: the store
        transaction each id's enrolment entry names (writing_transaction), where the store can
        tell its outcome. Called under `locked()`."""
        ...

    def writing_transaction(self) -> Optional[str]:
        """Inside an enrolment's `before_commit`: a reference to the store's transaction that an
        audit entry can name and never_committed can ask about later ("<id>", or "<id> in cluster
        <n>", IN_CLUSTER, where ids are a server's own), or None where the store cannot tell a
        transaction's outcome once it is over."""
        ...

    def stored_ids(self, ids: Sequence[int]) -> set[int]:
        """Of these row ids, those the store holds now, read from the table itself."""
        ...

    def skip_ids(self, upto: int) -> None:
        """Never hand out row ids up to `upto` again."""
        ...

    def has_subject(self, subject_id: str) -> bool: ...

    def subject_count(self) -> int: ...

    def rows(self) -> list[Any]: ...

    def rows_for(self, subject_id: str) -> list[Any]: ...

    def row_ids_of(self, pseudonym: str) -> set[int]:
        """The ids of the rows stored under this pseudonym (nothing unsealed beyond what the
        store already reads)."""
        ...

    # `path` (storage.rows.PATHS): None matches every row's main template; a masked probe meets
    # "visible", the visible-region templates of rows enrolled from a bare image, "visible-masked",
    # those of rows enrolled from a masked one (each with its own threshold: two masked strangers
    # look more alike), "plain-only", the main templates of rows without a visible-region one, and
    # "plain-bare", the main templates of rows not enrolled masked (how the SDK matches a plain
    # probe: a masked enrolment is met only through its visible-region template).
    # `exclude` (search and verify): row ids that take no part, left out before ranking (rows the
    # audit log records removed, put back since).
    def search(self, embedding: np.ndarray, purpose: str, k: int = 5, threshold: Optional[float] = None,
               now: Optional[datetime] = None, *, path: Optional[str] = None,
               exclude: Collection[int] = ()) -> list[object]: ...

    def verify(self, subject_id: str, embedding: np.ndarray, purpose: str,
               now: Optional[datetime] = None, *, path: Optional[str] = None,
               exclude: Collection[int] = ()) -> Optional[float]: ...

    def may_hold(self, path: Optional[str], purpose: str, now: Optional[datetime] = None, *,
                 subject_id: Optional[str] = None, exclude: Collection[int] = ()) -> bool:
        """False only when no row allowed for `purpose` at `now` (of `subject_id`, or of anyone)
        takes part in `path`, less the rows `exclude` names (as search and verify leave them out);
        a store that cannot tell cheaply says True."""
        ...

    def touch(self, subject_id: str, now: Optional[datetime] = None, new_expiry: Optional[datetime] = None, *,
              purpose: Optional[str] = None) -> int:
        """Record an interaction under `purpose` with the subject's rows held for it, and move
        their expiry to `new_expiry` (US-01), never a row's held for other purposes too later
        than it was. Moving an expiry needs the purpose."""
        ...

    def index_state(self) -> str:
        """How searches are answered now: "local" (the in-process index), "up" (the server's
        index), "opening" (opened while it could not be reached: the records answer, an
        enrolment is refused until it is asked again), "down" (it failed a request lately: the
        records answer until its retry window passes)."""
        ...

    def close(self) -> None: ...

