"""What one service process holds: the open workspace, a bounded pool of worker threads, per-key
rate buckets and the metrics.

Calls run off the event loop on a fixed pool of threads, each with its own SafeFace on the shared
workspace (its own connections and pipeline: the same arrangement as several processes, which the
store's cross-process lock and SQLite's WAL already make safe). At most `threads + queue` calls
are admitted at once; the next is answered 503 with Retry-After, so memory stays bounded however
many clients call.
"""

from __future__ import annotations

import asyncio
import math
import os
import threading
import time
from collections import deque
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Optional, TypeVar

from .. import atomicfile
from ..atomicfile import check_disk_takes_writes
from ..errors import InvalidArgument, SafeFaceError, ServiceBusy, WorkspaceBusy, WorkspaceUnwritable
from ..sqlite_store import disk_failed, disk_read_error, file_identity
from ..workspace.apikeys import MIN_RATE
from .failures import kept
from .metrics import Metrics

T = TypeVar("T")
WARM_RETRY_S = 1.0  # how often a pool thread's failed first open is tried again
# How many console logins of one key may wait in a worker's line at once (Runtime.aside): a double
# click's two; another is answered 503 at once.
ASIDE_PER_KEY = 2
# How long a console login may wait, in its worker's line and for a key store another process
# holds, before it is answered 503 (Retry-After): the logins take turns, so one login waiting the
# store's whole LOCK_WAIT_S (30 s) kept every other login of the worker waiting behind it.
LOGIN_WAIT_S = 3.0
# How often the logouts' own handle is tried again after its open failed (a rekey's wait, a store
# refusing it): each try is an open's cost (0.3-1 s of CPU).
LOGOUTS_HANDLE_RETRY_S = 60.0
# How often /v1/ready reads again a file that failed a read (EIO), while it is the same file: each
# probe read it whole (up to the whole gallery), a cheap way for anyone to load a failing disk.
DISK_READ_AGAIN_S = 30.0


class _OneAtATime:
    """A readiness check run by one probe at a time; a probe arriving while it runs (a flood of
    probes, or one waiting on a database lock) gets the last answer instead of queueing."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.answer: Optional[str] = None

    def run(self, check: Callable[[], None], explain: Callable[[SafeFaceError], str]) -> Optional[str]:
        """None once `check()` passes; else `explain(error)`: where the operator finds why."""
        if not self.lock.acquire(blocking=False):
            return self.answer
        try:
            check()
            self.answer = None
        except SafeFaceError as exc:
            self.answer = explain(exc)
        finally:
            self.lock.release()
        return self.answer


class _FairLane:
    """One thread running calls one at a time, fairly: each client's calls (a login's key) wait
    in a line of their own, and the next call is the first of the line served longest ago (a new
    line's first, by arrival): a client's second call waits behind every other client's first.
    A client holding `per_client` calls here (queued or running) is refused another at once
    (ServiceBusy); calls of no client (None) share one line, unbounded. On one first-come line,
    while another process held the key store, a client posting logins at its key's rate kept
    every other login of the worker waiting behind its own, each of which waited for the store
    in turn."""

    def __init__(self, name: str, per_client: int) -> None:
        self._name, self._per_client = name, per_client
        self._cv = threading.Condition()
        self._lines: dict[str, deque[tuple[Future[Any], Callable[[], Any]]]] = {}  # in arrival order
        self._served: dict[str, int] = {}  # when each client holding calls here was last served (a count)
        self._count = 0
        self._held: dict[str, int] = {}  # each client's calls queued or running
        self._thread: Optional[threading.Thread] = None
        self._closed = False

    def submit(self, client: Optional[str], fn: Callable[[], T], busy: str, retry_after: float) -> Future[T]:
        """Queue fn() for `client`; ServiceBusy(`busy`, `retry_after`) when that client holds its
        share of the lane already."""
        fut: Future[T] = Future()
        who = "" if client is None else "=" + client
        with self._cv:
            if self._closed:
                raise RuntimeError("the service is closing")
            if client is not None and self._held.get(who, 0) >= self._per_client:
                raise ServiceBusy(busy, retry_after)
            self._held[who] = self._held.get(who, 0) + 1
            self._lines.setdefault(who, deque()).append((fut, fn))
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name=self._name, daemon=True)
                self._thread.start()
            self._cv.notify()
        return fut

    def busy(self) -> bool:
        """Whether a call is queued or running here."""
        with self._cv:
            return bool(self._held)

    def _next(self) -> Optional[tuple[str, Future[Any], Callable[[], Any]]]:
        with self._cv:
            while not self._lines and not self._closed:
                self._cv.wait()
            if not self._lines:
                return None
            who = min(self._lines, key=lambda w: self._served.get(w, -1))  # the first such, by arrival
            line = self._lines[who]
            fut, fn = line.popleft()
            self._count += 1
            self._served[who] = self._count
            if not line:
                del self._lines[who]
            return who, fut, fn

    def _run(self) -> None:
        while (got := self._next()) is not None:
            who, fut, fn = got
            try:
                if fut.set_running_or_notify_cancel():
                    try:
                        fut.set_result(fn())
                    except BaseException as exc:
                        fut.set_exception(exc)
            finally:
                with self._cv:
                    self._held[who] -= 1
                    if not self._held[who]:  # forgotten once it holds nothing here (a running call counts)
                        del self._held[who]
                        self._served.pop(who, None)

    def close(self) -> None:
        """Cancel the calls not started, and wait for the one running."""
        with self._cv:
            self._closed = True
            for line in self._lines.values():
                for fut, _ in line:
                    fut.cancel()
            self._cv.notify_all()
            thread = self._thread
        if thread is not None:
            thread.join()


@dataclass(frozen=True)
class _FailedRead:
    """A file whose disk failed a read: which file had its name then (another one renamed into
    its place, a restore, is read at once; writes to it are not a reason to), why, and when it
    was last read."""

    identity: tuple[int, int]
    why: str
    read_at: float


@dataclass(frozen=True)
class ServiceConfig:
    workspace: Path
    passphrase_file: Optional[Path] = None
    threads: int = 2
    queue: int = 8
    max_body: int = 8 * 1024 * 1024


class RateLimited(ServiceBusy):
    """The key is over its rate: 429 with Retry-After."""


class _Bucket:
    def __init__(self, rate: float) -> None:
        self.rate = rate
        self.capacity = max(1.0, rate)
        self.tokens = self.capacity
        self.stamp = time.monotonic()

    def take(self) -> float:
        """0 when a request may go now, else the seconds until one may."""
        now = time.monotonic()
        self.tokens = min(self.capacity, self.tokens + (now - self.stamp) * self.rate)
        self.stamp = now
        if self.tokens >= 1.0:
            self.tokens -= 1.0
            return 0.0
        return (1.0 - self.tokens) / self.rate


class Runtime:
    def __init__(self, config: ServiceConfig) -> None:
        if config.threads < 1 or config.queue < 0:
            raise InvalidArgument("the service needs at least 1 thread and a queue of at least 0.")
        self.config = config
        self.metrics = Metrics()
        self._local = threading.local()
        self._opened: list[Any] = []
        self._opened_lock = threading.Lock()
        self._main_lock = threading.Lock()
        self._pool = ThreadPoolExecutor(max_workers=config.threads, thread_name_prefix="safeface-call")
        self._capacity = config.threads + config.queue
        self._admitted = 0
        self._buckets: dict[str, _Bucket] = {}
        self._ready = threading.Event()
        self._closing = threading.Event()
        self.start_problem: Optional[str] = None  # why the workspace did not open yet (warm)
        self._last_kept: Optional[tuple[str, str]] = None
        # The main handle: credentials and the console's light reads. An open that fails here (a
        # witness volume gone for a moment, a database busy: the window after `safeface serve`
        # checked the workspace) is left to warm, which tries again: raised from uvicorn's app
        # factory, it printed a traceback and the worker process exited.
        self.main: Optional[Any] = None
        try:
            self._open_main()
        except SafeFaceError as exc:
            self.start_problem = self._kept(exc)
        # Set by a call the workspace's disk refused (full, read-only): /v1/ready answers 503 until
        # a write of its own works there (disk_problem); also the other folders that refused one
        # (the audit witness's volume), each until it takes a write again.
        self.disk_refused = False
        self._refused_folders: set[str] = set()
        self._failed_files: dict[str, _FailedRead] = {}
        self._disk_check = _OneAtATime()
        # Set at the first call refused because a workspace file was replaced under the handles:
        # they never reopen (each would read another file than the other processes), so the
        # process serves nothing more until it is restarted, and must not be called ready.
        self.files_replaced = False
        # /v1/ready's records check runs on a handle of its own, one probe at a time: on the main
        # handle, a probe waiting behind a database lock held the lock every credential check
        # takes on the event loop, and the whole service (even /v1/health) stopped answering.
        self._probe: Optional[Any] = None
        self._records_check = _OneAtATime()
        # The console's logins and logouts, which may wait for the key store's write lock (another
        # process writing it): on a handle of their own, one at a time, off the event loop. On the
        # main handle they held the loop, and every other request of the worker, for that wait.
        # Each key's logins in turn, two at most (a double click's) (_FairLane); logouts on a line
        # and a handle of their own, so that no login waiting for the store holds one back (a
        # logout needs only the audit log): the logins' handle opened at the first login, the
        # logouts' one when a logout finds a login ahead of it (_open_logouts_handle); neither at
        # the worker's start, nor for a worker whose logouts never wait.
        self._aside_lanes = {"login": _FairLane("safeface-console-login", ASIDE_PER_KEY),
                             "logout": _FairLane("safeface-console-logout", ASIDE_PER_KEY)}
        self._aside: dict[str, Any] = {}
        self._logouts_tried = -math.inf

    def _open(self, main: bool = False) -> Any:
        from ..sdk import SafeFace

        sf = SafeFace.open(self.config.workspace, passphrase_file=self.config.passphrase_file)
        with self._opened_lock:
            if main and self._closing.is_set():  # warm's late open after close(): nobody would close it
                sf.close()
                raise RuntimeError("the service is closing")
            if main:
                self._opened.insert(0, sf)  # index_state reads the others, the pool threads'
            else:
                self._opened.append(sf)
        return sf

    def _open_main(self) -> None:
        if self.main is not None:
            return
        sf = self._open(main=True)
        with self._main_lock:
            self.main = sf

    def _thread_sf(self) -> Any:
        sf = getattr(self._local, "sf", None)
        if sf is None:
            sf = self._local.sf = self._open()
        return sf

    def warm(self) -> None:
        """Open the main handle if __init__ could not, then every pool thread's workspace handle
        and its pipeline, then mark ready. An open that fails (a witness missing, a database busy)
        is tried again every WARM_RETRY_S seconds until it succeeds or the process closes,
        `start_problem` saying meanwhile where the operator finds why: one failure left the
        process "starting" for good, with a traceback in its log, even once the cause was gone and
        its calls succeeded."""
        while not self._closing.is_set():
            try:
                self._open_main()
                self._warm_once()
            except SafeFaceError as exc:
                self.start_problem = self._kept(exc)
                self._closing.wait(WARM_RETRY_S)
            except RuntimeError:
                if not self._closing.is_set():  # the pool shut down under it: nothing to warm
                    raise
            else:
                self.start_problem = None
                self._ready.set()
                return

    def _kept(self, exc: SafeFaceError) -> str:
        """failures.kept for a failure found again and again (each probe, each retry): logged
        once while its text stays the same, not once a second."""
        cause = f"{type(exc).__name__}: {exc}"
        if self._last_kept is None or self._last_kept[0] != cause:
            self._last_kept = (cause, kept(cause))
        return self._last_kept[1]

    def _warm_once(self) -> None:
        barrier = threading.Barrier(self.config.threads)

        def one() -> None:
            try:
                self._thread_sf().acting_as("warmup", "warmup")  # loads the pipeline
            except BaseException:
                barrier.abort()  # the other threads stop waiting for this one
                raise
            barrier.wait(timeout=600)

        futures = [self._pool.submit(one) for _ in range(self.config.threads)]
        failed = [e for e in (f.exception() for f in futures) if e is not None]
        # The cause first: the threads it stopped at the barrier say only that it broke.
        failed.sort(key=lambda e: isinstance(e, threading.BrokenBarrierError))
        if failed:
            raise failed[0]

    @property
    def ready(self) -> bool:
        return self._ready.is_set()

    @property
    def index_state(self) -> str:
        """How this process's searches are answered (SafeFace.index_state), read from the pool
        threads' handles, which search, each with its own connection and retry window (the main
        handle only checks credentials: it never searches, nor finishes an open begun in an
        outage). "down" if any is, else "opening" if any is, else "up" (or "local")."""
        with self._opened_lock:
            pool = self._opened[1:] or self._opened
            states = [str(sf.index_state) for sf in pool]
        return next((s for s in ("down", "opening") if s in states), states[0] if states else "local")

    def records_problem(self) -> Optional[str]:
        """None while the workspace's records pass the check every call makes where it is judged
        (SafeFace.check_records); else where the operator finds why (failures.kept: its text names
        paths). A witness deleted under a running process refused every call while /v1/ready
        answered 200, so a balancer kept sending it traffic."""

        def check() -> None:
            try:
                if self._probe is None and not self._closing.is_set():
                    from ..sdk import SafeFace

                    self._probe = SafeFace.open(self.config.workspace, passphrase_file=self.config.passphrase_file)
                if self._probe is not None:
                    self._probe.check_records()
            except WorkspaceUnwritable as exc:
                # The disk, not the records (a read that failed: EIO): /v1/ready answers as for a
                # disk, 503 with Retry-After, where it said to restore what the check names.
                self.refused_disk(exc.folder, getattr(exc, "path", None))
                raise
            finally:
                # A close that came while this check ran (an open waiting on a lock for up to
                # LOCK_WAIT_S) found no handle, or could not wait for it: closed here instead, or
                # it stayed open, descriptors and all, until the process exited.
                if self._closing.is_set():
                    self._close_probe()

        return self._records_check.run(check, self._kept)

    def _close_probe(self) -> None:
        """Close the records check's handle; its caller holds that check's lock."""
        probe, self._probe = self._probe, None
        if probe is not None:
            probe.close()

    def refused_disk(self, folder: Optional[str] = None, failed: Optional[str] = None) -> None:
        """A call was refused because a disk refused a write: the workspace's, or `folder`'s; or
        because the file `failed` could not be read (its disk failed, WorkspaceDiskFailed): the
        call has just read it, so probes and calls wait DISK_READ_AGAIN_S before reading it again
        (a call refused by that wait, which read nothing, does not start it over)."""
        if folder is not None:
            self._refused_folders.add(folder)  # no lock: a probe may be writing meanwhile
        if failed is not None:
            identity, seen = file_identity(Path(failed)), self._failed_files.get(failed)
            if seen is None or seen.identity != identity or time.monotonic() - seen.read_at >= DISK_READ_AGAIN_S:
                self._failed_files[failed] = _FailedRead(identity, "I/O error", time.monotonic())
        self.disk_refused = True

    def _still_failing(self) -> None:
        """WorkspaceDiskFailed while a file that failed a read is within its back-off and is still
        the same file: it is not read again before then, by a probe or by a call."""
        for name in sorted(self._failed_files):
            seen = self._failed_files.get(name)
            if seen is not None and time.monotonic() - seen.read_at < DISK_READ_AGAIN_S \
                    and file_identity(Path(name)) == seen.identity:
                raise disk_failed(name, seen.why, Path(name))

    def disk_problem(self) -> Optional[str]:
        """None while the workspace's disk takes writes; else where the operator finds why
        (failures.kept). A full disk is found by a call it refuses (disk_refused); from then on each
        probe writes a little of its own until that works, so the process is ready again without
        waiting for a call a balancer no longer sends it. A read-only mount is seen before any call.
        A folder elsewhere that refused a call's write (the audit witness's volume) is written to as
        well: the workspace's disk alone took the probe's write while every call was refused."""

        def check() -> None:
            root = self.config.workspace
            try:
                read_only = bool(os.statvfs(root).f_flag & os.ST_RDONLY)
            except OSError:  # the folder gone: the records check names that
                read_only = False
            # A file that failed a read is read again once a back-off has passed (or at once if
            # another file has its name now); meanwhile it still fails, and nothing else is tried
            # (the write below too would load a failing disk at each probe).
            self._still_failing()
            if self.disk_refused or read_only or self._refused_folders or self._failed_files:
                check_disk_takes_writes(root)
                for folder in sorted(self._refused_folders):
                    check_disk_takes_writes(folder)
                    self._refused_folders.discard(folder)
                # A disk that failed a read may still take a small write (bad sectors elsewhere):
                # the file that failed must read whole again.
                for name in sorted(self._failed_files):
                    failed = disk_read_error([Path(name)])
                    if failed is not None:
                        why = failed[1].strerror or "I/O error"
                        self._failed_files[name] = _FailedRead(file_identity(Path(name)), why, time.monotonic())
                        raise disk_failed(str(failed[0]), why, failed[0])
                    self._failed_files.pop(name, None)
                self.disk_refused = False

        return self._disk_check.run(check, self._kept)

    @property
    def in_flight(self) -> int:
        return self._admitted

    def limit(self, key_id: str, rate: float) -> None:
        """Raise RateLimited when the key is over its rate (per process)."""
        b = self._buckets.get(key_id)
        if b is None or b.rate != rate:
            b = self._buckets[key_id] = _Bucket(rate)
        wait = b.take()
        if wait > 0:
            self.metrics.count("safeface_rate_limited_total")
            # Capped: a key issued before the rate had a floor may be slow enough that the wait is
            # infinite, and math.ceil of it an OverflowError (a 500 instead of 429).
            raise RateLimited(f"this API key is over its rate of {rate:g} requests per second; retry later.",
                              max(1, math.ceil(min(wait, 1 / MIN_RATE))))

    async def call(self, fn: Callable[[Any], T]) -> T:
        """Run fn(SafeFace of a pool thread) off the event loop; 503 when the queue is full, or
        while a file that failed a read waits out its back-off: each call that met it read the
        file again (up to the whole gallery.db) to tell a failing disk from damage."""
        self._still_failing()
        if self._admitted >= self._capacity:
            self.metrics.count("safeface_overload_total")
            raise ServiceBusy("the service is at capacity; nothing was done. Retry shortly.", 1)
        self._admitted += 1
        self.metrics.gauge("safeface_in_flight", self._admitted)
        try:
            loop = asyncio.get_running_loop()
            return await asyncio.wrap_future(self._pool.submit(lambda: fn(self._thread_sf())), loop=loop)
        finally:
            self._admitted -= 1
            self.metrics.gauge("safeface_in_flight", self._admitted)

    def light(self, fn: Callable[[Any], T]) -> T:
        """A quick call on the main handle (credential checks), serialised; 503 while it does not
        open yet (warm tries again), or while a file that failed a read waits out its back-off (a
        key's check reads the audit log, and met there it read the whole log again)."""
        self._still_failing()
        with self._main_lock:
            if self.main is None:
                raise ServiceBusy("the service is starting: its workspace does not open yet; nothing was done. "
                                  "Retry shortly.", WARM_RETRY_S)
            return fn(self.main)

    @staticmethod
    def login_deadline() -> float:
        """The time.monotonic() past which a console login arriving now is answered 503 rather
        than tried or waited for further (LOGIN_WAIT_S): passed to aside and to its call."""
        return time.monotonic() + LOGIN_WAIT_S

    async def aside(self, fn: Callable[[Any], T], key_id: Optional[str] = None,
                    until: Optional[float] = None) -> T:
        """Run fn(the console's own handle) off the event loop: a write of the key store (a
        login's form, a logout) that may wait for its lock while another process holds it. Not
        through the call queue (light's reasons), nor on the main handle, whose lock every
        credential check takes on the loop. `key_id`: a login's key, whose calls take their turn
        with other keys' and are ASIDE_PER_KEY at most (ServiceBusy past that, at once); None: a
        logout, on a line and a handle of its own once one found a login ahead of it. `until`: a
        time.monotonic() past which the call, still queued, is refused untried (ServiceBusy), sooner
        than LOCK_WAIT_S after it was queued (a login's: login_deadline)."""
        self._still_failing()
        queued = time.monotonic()
        if key_id is None and "logout" not in self._aside and self._aside_lanes["login"].busy() and \
                time.monotonic() - self._logouts_tried >= LOGOUTS_HANDLE_RETRY_S:
            # A login ahead of this logout may wait LOCK_WAIT_S for the key store: the logouts'
            # handle is opened now, on their own line, rather than wait behind it.
            self._logouts_tried = time.monotonic()
            try:
                await asyncio.wrap_future(self._aside_lanes["logout"].submit(None, self._open_logouts_handle, "", 0),
                                          loop=asyncio.get_running_loop())
            except RuntimeError:
                pass  # the service closing meanwhile: no handle to open
        lane = "logout" if key_id is None and "logout" in self._aside else "login"

        def run() -> T:
            # Each call may wait LOCK_WAIT_S for a key store another process holds, one after
            # another: a call queued longer than that wait is refused untried, so that logins
            # posted over and over (at a key's rate) keep no operator's login or logout waiting
            # for their waits in turn, minutes; each is answered within about twice that wait.
            if time.monotonic() > (queued + atomicfile.LOCK_WAIT_S if until is None else until):
                raise ServiceBusy("the console's logins and logouts are waiting for the key store, which another "
                                  "process is writing; nothing was done. Retry shortly.", WorkspaceBusy.retry_after)
            sf = self._aside.get(lane)
            if sf is None:
                sf = self._aside[lane] = self._open_aside()
            return fn(sf)

        busy = ("this API key's console logins are already waiting for the key store, which another process is "
                "writing; nothing was done. Retry shortly.")
        fut = self._aside_lanes[lane].submit(key_id, run, busy, WorkspaceBusy.retry_after)
        answer = asyncio.wrap_future(fut, loop=asyncio.get_running_loop())
        if until is not None:
            # Answered by `until` while still queued, whatever runs ahead of it (a logout waiting
            # for the audit log, a worker's first login opening the line's handle): refused there
            # once the call ahead ended, such a login waited that call's whole wait first. One
            # already running is waited for (it bounds its own wait): dropped, the session it
            # records would be live, held by no browser.
            await asyncio.wait({answer}, timeout=max(0.0, until - time.monotonic()))
            if not answer.done() and fut.cancel():
                raise ServiceBusy("the console's logins and logouts are waiting for the key store, which another "
                                  "process is writing; nothing was done. Retry shortly.", WorkspaceBusy.retry_after)
        return await answer

    def _open_aside(self) -> Any:
        from ..sdk import SafeFace

        # Not among the pool's handles: it never searches, so index_state must not read it.
        return SafeFace.open(self.config.workspace, passphrase_file=self.config.passphrase_file)

    def _open_logouts_handle(self) -> None:
        """Open the logouts' line's handle. A store refusing the open (a trigger added by hand,
        which a logout outlives by recording its end elsewhere) leaves the logout on the logins'
        line, as before it existed, never unanswered."""
        if "logout" in self._aside:
            return
        try:
            self._aside["logout"] = self._open_aside()
        except SafeFaceError:
            pass  # tried again by a later logout, LOGOUTS_HANDLE_RETRY_S on

    def close(self) -> None:
        self._closing.set()
        for lane in self._aside_lanes.values():
            lane.close()
        for sf in self._aside.values():
            sf.close()
        self._pool.shutdown(wait=True, cancel_futures=True)
        with self._opened_lock:
            for sf in self._opened:
                sf.close()
            self._opened.clear()
        # A check still in flight after a while (its handle opening, or waiting on a database
        # lock) closes its handle itself when it ends (records_problem).
        if self._records_check.lock.acquire(timeout=5):
            try:
                self._close_probe()
            finally:
                self._records_check.lock.release()
