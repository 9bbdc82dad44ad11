"""Milvus retry windows shared by a process's handles on a collection, and the trial request
sent once a window has passed (storage/vectors.py: Outage, MilvusVectors.hold_off, _asking):
what one handle learns reaches the others, and nothing else does. Real PostgreSQL and Milvus;
Milvus's failures are injected into the client's methods."""

from __future__ import annotations

import threading
import time
from typing import Any

import pytest

from safeface.errors import ConfigError, IndexUnavailable
from safeface.storage.server import ServerStore
from safeface.storage.vectors import AskingAgain, MilvusVectors
from server_support import PG_PASSWORD, PgCluster
from test_storage_server import DIM, Setup, fill, keyring, setup, unit_rows  # noqa: F401 (fixtures)


def _counted(monkeypatch: pytest.MonkeyPatch, client: Any, name: str, log: list[str], tag: str) -> None:
    real = getattr(client, name)

    def fn(*a: Any, **kw: Any) -> Any:
        log.append(tag)
        return real(*a, **kw)

    monkeypatch.setattr(client, name, fn)


def _fails_once(monkeypatch: pytest.MonkeyPatch, client: Any, name: str) -> None:
    from pymilvus.exceptions import MilvusException

    real = getattr(client, name)

    def fn(*a: Any, **kw: Any) -> Any:
        monkeypatch.setattr(client, name, real)
        raise MilvusException(message=f"{name}: unavailable (test: a blip)")

    monkeypatch.setattr(client, name, fn)


def _open_other_workspace(setup: Setup, pg: PgCluster, keyring: Any) -> None:
    """Another workspace given the same collection name, with templates of another dimension:
    its open is refused, rightly."""
    with pytest.raises(ConfigError, match="128-dimensional"):
        ServerStore.open(pg.new_database(), PG_PASSWORD,
                         lambda: MilvusVectors.connect(setup.vectors, setup.root, setup.collection, 64, timeout=10.0,
                                                       wait=False), keyring, 64)


def test_another_workspaces_refusal_is_no_outage_of_this_store(
        setup: Setup, pg: PgCluster, keyring: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    """A refusal ("the collection holds vectors of another dimension") went into the window all
    the process's handles on the collection share: a healthy store then scored its records,
    left erasures pending and said "down" for 30 s because another workspace was misconfigured.
    A refusal is the refused handle's alone."""
    x = unit_rows(4, seed=301)
    with setup.open() as a:
        rows = fill(a, x)
        asked: list[str] = []
        _counted(monkeypatch, a.vectors._api, "search", asked, "search")
        _open_other_workspace(setup, pg, keyring)
        assert a.index_state() == "up" and a.vectors.refused_lately() is None
        assert [m.row_id for m in a.search(x[1], "access", k=1)] == [rows[1].row_id] and asked == ["search"]
        assert a.erase_subject("s2").vectors == "removed"


def test_a_store_still_opening_is_not_refused_with_another_workspaces_error(
        setup: Setup, pg: PgCluster, keyring: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    """A store opened during a blip finishes opening at its next call; another workspace's
    refusal in between made its enrolment fail with that workspace's error for 30 s."""
    import safeface.storage.vectors as vectors_mod

    monkeypatch.setattr(vectors_mod, "RETRY_FIRST_S", 0.2)
    with setup.open() as s:
        fill(s, unit_rows(3, seed=311))
    h = setup.milvus()
    real = h._opener
    assert real is not None

    def down_once() -> Any:
        h._opener = real
        raise IndexUnavailable("Milvus (test) cannot be reached.")

    h._opener = down_once
    with ServerStore.open(setup.dsn, PG_PASSWORD, lambda: h, setup.keyring, DIM) as a:
        assert a._half_open
        time.sleep(a.vectors.window_left() + 0.05)  # Milvus is back and the window has passed
        _open_other_workspace(setup, pg, keyring)
        assert len(fill(a, unit_rows(1, seed=312), prefix="new")) == 1
        assert not a._half_open and a.index_state() == "up"


def test_once_milvus_answers_after_a_window_no_request_waits_on_a_trial(
        setup: Setup, monkeypatch: pytest.MonkeyPatch) -> None:
    """Only a probe or a search confirmed Milvus after a window: after a failed delete, whole
    enrolments answered and every later request still went as a trial, so while one handle's
    slow write was out another handle's searches scored the records, its /ready said "down" and
    its enrolment could be refused. Any answer once the window has passed confirms it."""
    import safeface.storage.vectors as vectors_mod

    monkeypatch.setattr(vectors_mod, "RETRY_FIRST_S", 0.2)
    x = unit_rows(6, seed=321)
    with setup.open() as a, setup.open() as b:
        fill(a, x[:3])
        ca, cb = a.vectors._api, b.vectors._api
        _fails_once(monkeypatch, ca, "delete")
        assert a.erase_subject("s0").vectors == "pending"
        time.sleep(a.vectors.window_left() + 0.05)
        fill(a, x[3:4], prefix="n")  # every request answers, the noted delete with them
        assert a.pending() == {}
        o = a.vectors._outage
        assert (o.windows, o.unconfirmed(False), o.unconfirmed(True)) == (0, False, False)

        entered, release = threading.Event(), threading.Event()
        real_upsert = ca.upsert

        def slow_upsert(*args: Any, **kw: Any) -> Any:  # healthy, a little slow
            entered.set()
            release.wait(10)
            return real_upsert(*args, **kw)

        monkeypatch.setattr(ca, "upsert", slow_upsert)
        writer = threading.Thread(target=lambda: fill(a, x[5:6], prefix="p"), daemon=True)
        writer.start()
        try:
            assert entered.wait(10)
            searched: list[str] = []
            _counted(monkeypatch, cb, "search", searched, "search")
            assert b.index_state() == "up"
            assert [m.row_id for m in b.search(x[1], "access", k=1)] and searched == ["search"]
        finally:
            release.set()
            writer.join(10)
        assert len(fill(b, unit_rows(1, seed=322), prefix="q")) == 1


def test_a_trial_whose_connect_raises_an_error_not_milvuss_is_let_go(
        setup: Setup, monkeypatch: pytest.MonkeyPatch) -> None:
    """The trial was claimed before the client was made and kept when making it raised anything
    but IndexUnavailable: every other handle of the process then took Milvus for down for
    121 s (the trial's own deadline)."""
    import safeface.storage.vectors as vectors_mod

    monkeypatch.setattr(vectors_mod, "RETRY_FIRST_S", 0.2)
    x = unit_rows(3, seed=331)
    with setup.open() as a:
        rows = fill(a, x)
        ca = a.vectors._api
        _fails_once(monkeypatch, ca, "search")
        a.search(x[0], "access", k=1)  # fails once: a window
        time.sleep(a.vectors.window_left(search=True) + 0.05)
        fresh = setup.milvus()  # a worker's new handle, its client not made yet

        def broken() -> Any:
            raise RuntimeError("unexpected error while making the client (test)")

        fresh._opener = broken
        with pytest.raises(RuntimeError):
            fresh.reachable()
        assert a.vectors._outage.trial is None
        searched: list[str] = []
        _counted(monkeypatch, ca, "search", searched, "search")
        assert [m.row_id for m in a.search(x[1], "access", k=1)] == [rows[1].row_id]
        assert searched == ["search"] and a.index_state() == "up"


def test_a_request_not_sent_beside_a_trial_is_no_failure() -> None:
    """AskingAgain (another thread's trial was out, this request was not sent) was counted as a
    failure where a listing wraps what its worker thread raised: it opened a window, doubled the
    next and ended the other thread's trial."""
    v = MilvusVectors(None, "Milvus at test", "c", DIM, "FLAT")
    o = v._outage
    o.windows, o.trial = 1, (-1, time.monotonic() + 5.0)  # a window past, another thread asking
    with pytest.raises(AskingAgain):
        v._asking()
    assert v._failed(AskingAgain("not sent (test)"), time.monotonic() - 1.0) is not None
    assert (o.windows, o.trial is not None, v.window_left()) == (1, True, 0.0)


def test_a_vector_write_not_sent_beside_a_trial_is_noted_and_written_later(
        setup: Setup, monkeypatch: pytest.MonkeyPatch) -> None:
    """An enrolment whose records are committed when another thread's trial is out: its vector
    write is not sent (AskingAgain) and stays noted; the next write carries it out, and the
    index check finds Milvus whole."""
    x = unit_rows(4, seed=351)
    with setup.open() as a:
        fill(a, x[:2])
        o = a.vectors._outage

        def hook(point: str) -> None:
            if point == "add:recorded":
                o.windows, o.trial = 1, (-1, time.monotonic() + 5.0)

        a._hook = hook
        got = fill(a, x[2:3], prefix="n")
        a._hook = None
        assert a.pending().get("upsert") == 1
        o.windows, o.trial = 0, None  # the other thread's trial answered
        fill(a, x[3:4], prefix="m")
        assert a.pending() == {} and a.check_index().consistent
        assert [m.row_id for m in a.search(x[2], "access", k=1)] == [got[0].row_id]


def _trial_elsewhere_ends(o: Any, after: float, *, answered: bool) -> threading.Thread:
    """Another thread's trial is out now, and ends `after` seconds later: Milvus answered it, or
    it failed (a window opens, as hold_off opens one)."""
    o.windows, o.trial = 1, (-1, time.monotonic() + 30.0)

    def end() -> None:
        time.sleep(after)
        with o.lock:
            o.trial = None
            if answered:
                o.windows = 0
            else:
                o.down_until = time.monotonic() + 5.0

    t = threading.Thread(target=end, daemon=True)
    t.start()
    return t


def test_an_enrolment_arriving_during_a_trial_waits_for_its_answer(
        setup: Setup, monkeypatch: pytest.MonkeyPatch) -> None:
    """An enrolment that found another thread asking Milvus whether it was back was refused
    (AskingAgain, the service's 503), though the answer it needed was a moment away. It waits
    for the trial; when Milvus answers, it is written."""
    x = unit_rows(3, seed=361)
    with setup.open() as a:
        fill(a, x[:2])
        ender = _trial_elsewhere_ends(a.vectors._outage, 0.4, answered=True)
        started = time.monotonic()
        got = fill(a, x[2:3], prefix="n")
        ender.join(5)
        assert time.monotonic() - started >= 0.35
        assert len(got) == 1 and a.pending() == {} and a.check_index().consistent


def test_an_enrolment_waiting_on_a_failed_trial_is_refused_without_asking_again(
        setup: Setup, monkeypatch: pytest.MonkeyPatch) -> None:
    """When the trial it waited for fails, the enrolment is refused at once with the window's
    wait, and sends Milvus nothing: each waiting writer asking a hung Milvus in turn would cost
    each its deadline."""
    x = unit_rows(3, seed=371)
    with setup.open() as a:
        fill(a, x[:2])
        asked: list[str] = []
        client = a.vectors._api
        for name in ("query", "upsert", "has_collection", "describe_collection", "load_collection"):
            _counted(monkeypatch, client, name, asked, name)
        ender = _trial_elsewhere_ends(a.vectors._outage, 0.3, answered=False)
        with pytest.raises(IndexUnavailable, match="nothing was written. Try again in"):
            fill(a, x[2:3], prefix="n")
        ender.join(5)
        assert asked == [] and len(a) == 2
