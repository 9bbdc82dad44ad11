"""Which purge entries of the audit log may name a subject, kept in memory and read forward.

A purge entry names its subjects in one JSON list that no index of the log reads, so finding a
subject's purges meant reading every purge since its enrolment at each verify and at each
candidate an identify found (about 100 ms a call with 100,000 purges in the log). This map is
read once, then only for the entries appended since, and answers with the entries' numbers: the
caller reads those entries themselves and decides by them, so the map only narrows the reading
and never decides what the log says."""

from __future__ import annotations

import json
import threading
from typing import Any, Callable, Sequence

Query = Callable[[str, Sequence[Any]], list[tuple[Any, ...]]]

# The map is keyed by this many leading characters of a subject as written, lower-cased (SQLite's
# LIKE ignores ASCII case): a pseudonym's 64 bits, and a few bytes a key where a full 64-character
# key would cost five times as much. Two subjects sharing a key only cost a read more.
KEY_CHARS = 16


def _key(subject: str) -> str:
    return subject.lower()[:KEY_CHARS]


class PurgeIndex:
    """Subject key -> the numbers of the allowed purge entries naming it, up to the log's end as
    last read. Each `naming` reads the entries appended since, after checking that the entry it
    read up to is still there with the same hash (a log put back from another copy, whose numbers
    mean other entries, is read again from the start). Subjects written in no form safeface writes
    (a hand edit) are kept apart and their entries handed out for every subject."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._reset()

    def _reset(self) -> None:
        self._to = 0
        self._hash: Any = None
        self._by: dict[str, list[int]] = {}
        self._odd: list[int] = []

    def naming(self, q: Query, subject: str, after: int = 0) -> list[int]:
        """The numbers of the allowed purge entries after `after` that may name `subject`."""
        with self._lock:
            self._read_forward(q)
            seqs = self._by.get(_key(subject), []) + self._odd
        return sorted(s for s in set(seqs) if s > after)

    def _read_forward(self, q: Query) -> None:
        if self._to and q("SELECT hash FROM {t}entries WHERE seq = ?", (self._to,)) != [(self._hash,)]:
            self._reset()  # the log is not the one read: from the start
        end = q("SELECT seq, hash FROM {t}entries ORDER BY seq DESC LIMIT 1")
        if not end or int(end[0][0]) <= self._to:
            return
        # Up to the end read first: an entry appended meanwhile is read at the next call, not lost.
        for seq, subjects in q("SELECT seq, subjects FROM {t}entries WHERE operation = 'purge' AND "
                               "decision = 'allowed' AND seq > ? AND seq <= ?", (self._to, int(end[0][0]))):
            for key in self._keys(subjects):
                if key is None:
                    self._odd.append(int(seq))
                else:
                    self._by.setdefault(key, []).append(int(seq))
        self._to, self._hash = int(end[0][0]), end[0][1]

    @staticmethod
    def _keys(subjects: Any) -> list[Any]:
        """The keys of the subjects a purge entry names; [None] where its list is not one safeface
        writes, so that the entry is read for every subject (as a LIKE over its text would)."""
        try:
            got = json.loads(subjects) if isinstance(subjects, str) else None
        except ValueError:
            got = None
        if not isinstance(got, list) or not all(isinstance(s, str) and '"' not in s and "\\" not in s for s in got):
            return [None]
        return [_key(s) for s in got]
