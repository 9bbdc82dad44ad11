"""What SQLite replays from a database's -wal, read without SQLite: whether the frames its own
recovery would replay hold the pages a database file lost from its end (sqlite_store.refuse_cut
asks). The walk is one pass, bounded in memory (four bytes a frame it reads, and a chunk of
frames at a time) and in time: the checksums of a chunk's frames are summed at once (numpy),
since a -wal can be gigabytes and a word-by-word loop took 40 s a gigabyte."""

from __future__ import annotations

import os
import stat
import struct
from array import array
from pathlib import Path

import numpy as np

# A -wal's header: its magic number (either byte order of its checksums), then the file format.
_WAL_MAGIC = (0x377F0682, 0x377F0683)
_WAL_FORMAT = 3007000
_WAL_HEADER, _FRAME_HEADER = 32, 24
_CHUNK_BYTES = 1 << 20  # frames read (and summed) at a time
_M32 = 0xFFFFFFFF


def wal_decides_pages(wal: Path, page: int, cut: int) -> bool:
    """Whether the -wal beside a database holds what SQLite replays for its pages from number
    `cut` (1-based: the first page the file does not hold whole) to the database's end: a header for this page
    size whose checksum holds, then frames that carry the header's salts and whose checksums
    chain on from it, as SQLite's own recovery reads them, up to the last commit frame; that
    commit either ends the database before page `cut` (SQLite never reads it from the file) or
    every page from `cut` to its end is in a committed frame. A checkpoint writes pages in
    order, so a crash that tore one leaves every later page in the -wal; a -wal holding only
    the cut page let a file cut further than that page open with the pages past it read as
    zeros. A header alone was not enough either: one written by hand, with nothing SQLite would
    replay behind it. Read only for a file that lacks pages (refuse_cut), not at every open."""
    try:
        fd = os.open(wal, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))  # a FIFO is not waited on
    except FileNotFoundError:
        return False
    with os.fdopen(fd, "rb") as fh:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            return False
        head = fh.read(_WAL_HEADER)
        if len(head) < _WAL_HEADER:
            return False
        magic, fmt, wal_page, _, salt1, salt2, sum1, sum2 = struct.unpack(">8I", head)
        if magic not in _WAL_MAGIC or fmt != _WAL_FORMAT or wal_page != page:
            return False
        order = ">" if magic & 1 else "<"
        sums = _checksum(head[:24], order, (0, 0))
        if sums != (sum1, sum2):
            return False
        size = _FRAME_HEADER + page
        frame_sums = _FrameSums(page, order)
        # Page numbers less `cut`, of frames from page `cut` on: four bytes a frame read, not a
        # byte a frame the file has room for (a sparse -wal of terabytes has room for billions).
        committed, since_commit = array("I"), array("I")
        pages = 0  # the database's size in pages at the last commit read
        per = max(1, _CHUNK_BYTES // size)
        replayed = True
        while replayed:
            chunk = fh.read(per * size)
            count = len(chunk) // size
            if not count:
                break
            parts = frame_sums.parts(chunk[:count * size])
            for j in range(count):
                number, db_pages, s1, s2, f1, f2 = struct.unpack_from(">6I", chunk, j * size)
                sums = frame_sums.after(sums, parts[j])
                if number == 0 or (s1, s2) != (salt1, salt2) or sums != (f1, f2):
                    replayed = False  # where SQLite's recovery stops: nothing from here on is replayed
                    break
                if number >= cut:
                    since_commit.append(number - cut)
                if db_pages:
                    committed.extend(since_commit)
                    del since_commit[:]
                    pages = db_pages
            if count < per:
                break
        if pages == 0:
            return False  # nothing is replayed: the file is read as it is
        lost = pages - cut + 1  # pages `cut`..`pages`
        if lost <= 0:
            return True
        if lost > len(committed):
            return False  # fewer frames than pages to hold
        numbers = np.frombuffer(committed, dtype=np.uintc)
        held = np.zeros(lost, dtype=bool)
        held[numbers[numbers < lost]] = True
        return bool(held.all())


def _checksum(data: bytes, order: str, start: tuple[int, int]) -> tuple[int, int]:
    """SQLite's WAL checksum of `data` (32-bit words in `order`), going on from `start`."""
    s1, s2 = start
    words = struct.unpack(f"{order}{len(data) // 4}I", data)
    for i in range(0, len(words), 2):
        s1 = (s1 + words[i] + s2) & _M32
        s2 = (s2 + words[i + 1] + s1) & _M32
    return s1, s2


class _FrameSums:
    """_checksum over frames (the first 8 bytes of a frame's header, then its page), many at
    once. Each pair of words (a, b) takes the sums (s1, s2) to M (s1, s2) + (a, a + b), with
    M = [[1, 1], [1, 2]], so a frame of n pairs takes them to M^n (s1, s2) plus a part that
    depends on the frame alone: sum over i of M^(n-1-i) (a_i, a_i + b_i). The parts of many
    frames are one numpy product; chaining them on stays a step a frame. Sums are taken in
    uint64, whose wrap-around keeps them right modulo 2^32."""

    def __init__(self, page: int, order: str) -> None:
        pairs = (8 + page) // 8
        powers = [(1, 0, 0, 1)]  # M^0, M^1, ... as (m00, m01, m10, m11) modulo 2^32
        for _ in range(pairs):
            a, b, c, d = powers[-1]
            powers.append(((a + b) & _M32, (a + 2 * b) & _M32, (c + d) & _M32, (c + 2 * d) & _M32))
        self._whole = powers[pairs]
        self._weights = np.array(powers[pairs - 1::-1], dtype=np.uint64).T  # [m][i] of M^(n-1-i)
        self._dtype = np.dtype(f"{order}u4")
        self._size = _FRAME_HEADER + page

    def parts(self, frames: bytes) -> list[tuple[int, int]]:
        """Each frame's own part of its checksum."""
        words = np.frombuffer(frames, dtype=self._dtype).reshape(-1, self._size // 4)
        covered = np.concatenate([words[:, :2], words[:, _FRAME_HEADER // 4:]], axis=1).astype(np.uint64)
        a, b = covered[:, 0::2], covered[:, 1::2]
        ab = (a + b) & np.uint64(_M32)
        m00, m01, m10, m11 = self._weights
        with np.errstate(over="ignore"):
            p1 = (a * m00).sum(axis=1) + (ab * m01).sum(axis=1)
            p2 = (a * m10).sum(axis=1) + (ab * m11).sum(axis=1)
        return list(zip((p1 & np.uint64(_M32)).tolist(), (p2 & np.uint64(_M32)).tolist()))

    def after(self, sums: tuple[int, int], part: tuple[int, int]) -> tuple[int, int]:
        """The sums after a frame whose part is `part`, from `sums` before it."""
        m00, m01, m10, m11 = self._whole
        s1, s2 = sums
        return (m00 * s1 + m01 * s2 + part[0]) & _M32, (m10 * s1 + m11 * s2 + part[1]) & _M32
