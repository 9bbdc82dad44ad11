"""Which purge entries of the audit log may name a subject, kept in memory and read forward.

A purge entry names its subjects in one JSON list that no index of the log reads, so finding a
subject's purges meant reading every purge since its enrolment at each verify and at each
candidate an identify found (about 100 ms a call with 100,000 purges in the log). This map is
read once (as far back as a subject's first enrolment asks), then only for the entries appended
since, and answers with the entries' numbers: the caller reads those entries themselves and
decides by them, so the map only narrows the reading and never decides what the log says."""

from __future__ import annotations

import threading
from typing import Any, Callable, Sequence

import numpy as np

from ..jsondepth import loads

Query = Callable[[str, Sequence[Any]], list[tuple[Any, ...]]]

# A subject's key: a 64-bit hash of its first characters as written, lower-cased (SQLite's LIKE
# ignores ASCII case). Two subjects sharing a key only cost a read more; 16 bytes a mention (a
# million purged templates: 16 MB), where a dict of strings took 190.
KEY_CHARS = 16
# Mentions read since the sorted arrays were last rebuilt, looked through one by one until then.
TAIL_MAX = 4096
PAGE = 2000  # purge entries read at once


def _key(subject: str) -> int:
    return hash(subject.lower()[:KEY_CHARS])


class PurgeIndex:
    """Subject key -> the numbers of the allowed purge entries naming it, between the oldest point
    asked about and the log's end as last read. Each `naming` reads the entries appended since
    (and older ones, if it asks from further back), after checking that the entry it read up to
    is still there with the same hash (a log put back from another copy, whose numbers mean
    other entries, is read again from the start). Subjects written in no form safeface writes
    (a hand edit) are kept apart and their entries handed out for every subject."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._reset()

    def _reset(self) -> None:
        self._from = self._to = 0  # the entries read: those numbered in (_from, _to]
        self._hash: Any = None
        self._keys = np.empty(0, dtype=np.int64)  # sorted
        self._seqs = np.empty(0, dtype=np.int64)  # each key's entry
        self._tail: list[tuple[int, int]] = []  # (key, seq) read since the arrays were rebuilt
        self._odd: list[int] = []

    def naming(self, q: Query, subject: str, after: int = 0) -> list[int]:
        """The numbers of the allowed purge entries after `after` that may name `subject`."""
        key = _key(subject)
        with self._lock:
            self._read_forward(q, max(0, int(after)))
            lo = int(np.searchsorted(self._keys, key, side="left"))
            hi = int(np.searchsorted(self._keys, key, side="right"))
            seqs = {int(s) for s in self._seqs[lo:hi]}
            seqs.update(s for k, s in self._tail if k == key)
            seqs.update(self._odd)
        return sorted(s for s in seqs if s > after)

    def _read_forward(self, q: Query, after: int) -> None:
        """Read what is not read yet of the entries after `after`: those older than any asked
        for before (only as far back as asked: the purges before a subject's first enrolment,
        which removed none of its rows, are not read for it), and those appended since."""
        if self._to and q("SELECT hash FROM {t}entries WHERE seq = ?", (self._to,)) != [(self._hash,)]:
            self._reset()  # the log is not the one read: from the start
        end = q("SELECT seq, hash FROM {t}entries ORDER BY seq DESC LIMIT 1", ())
        if not end:
            return
        upto = int(end[0][0])
        if not self._to:
            self._from = self._to = min(after, upto)
        if after < self._from:
            self._read(q, after, self._from)
            self._from = after
        if upto > self._to:
            # Up to the end read first: an entry appended meanwhile is read at the next call.
            self._read(q, self._to, upto)
            self._to, self._hash = upto, end[0][1]
        elif self._hash is None:
            self._hash = q("SELECT hash FROM {t}entries WHERE seq = ?", (self._to,))[0][0] if self._to else None

    def _read(self, q: Query, last: int, upto: int) -> None:
        """The purge entries numbered in (last, upto], a page at a time: the subject lists of
        100,000 purges held at once took 90 MB."""
        while True:
            page = q("SELECT seq, subjects FROM {t}entries WHERE operation = 'purge' AND decision = 'allowed' AND "
                     "seq > ? AND seq <= ? ORDER BY seq LIMIT ?", (last, upto, PAGE))
            for seq, subjects in page:
                keys = self._keys_of(subjects)
                if keys is None:
                    self._odd.append(int(seq))
                else:
                    self._tail.extend((k, int(seq)) for k in keys)
            if len(page) < PAGE:
                self._merge(TAIL_MAX)
                return
            self._merge(64 * TAIL_MAX)  # now and then while reading many: a sort costs the whole map
            last = int(page[-1][0])

    def _merge(self, past: int) -> None:
        """The tail into the sorted arrays, once it is longer than `past`."""
        if len(self._tail) > past:
            keys = np.concatenate([self._keys, np.fromiter((k for k, _ in self._tail), np.int64, len(self._tail))])
            seqs = np.concatenate([self._seqs, np.fromiter((s for _, s in self._tail), np.int64, len(self._tail))])
            order = np.argsort(keys, kind="stable")
            self._keys, self._seqs, self._tail = keys[order], seqs[order], []

    @staticmethod
    def _keys_of(subjects: Any) -> Any:
        """The keys of the subjects a purge entry names; None where its list is not one safeface
        writes, so that the entry is read for every subject (as a LIKE over its text would)."""
        try:  # (nested past one list, as one edited into 100,000 brackets: json.loads raised RecursionError)
            got = loads(subjects, 1) if isinstance(subjects, str) else None
        except ValueError:
            return None
        if not isinstance(got, list) or not all(isinstance(s, str) and '"' not in s and "\\" not in s for s in got):
            return None
        return [_key(s) for s in got]
