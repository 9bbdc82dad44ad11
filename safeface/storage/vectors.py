"""The protected vectors in Milvus (a server or cluster, or Milvus Lite in one process).

Milvus is an index of the record store, never the truth. It receives only protected templates
(the embedding after the workspace's keyed orthogonal transform), keyed by the record's row id,
with the row's purposes and expiry as scalar fields so that search filters inside Milvus. It
never receives a raw embedding, a subject id, a pseudonym or a token reference. Whoever runs the
Milvus cluster sees scores between this deployment's templates (an orthogonal map keeps them)
and nothing that links them to another deployment's or inverts them without the transform key.
"""

from __future__ import annotations

import contextlib
import json
import logging
import threading
import time
import urllib.parse
from pathlib import Path
from typing import Any, Callable, Iterator, Optional, Sequence, TypeVar

import numpy as np

from ..errors import BackendError, ConfigError, IndexUnavailable
from ..netaddr import is_loopback_everywhere
from .factory import milvus_userinfo

_T = TypeVar("_T")

ID, VECTOR, PURPOSES, EXPIRES = "id", "vector", "purposes", "expires_us"
# The purposes travel as one VARCHAR, "|<hex>|<hex>|" (each purpose's UTF-8 in hex, sorted), and
# the filter is `purposes like "%|<hex>|%"`. Hex cannot hold LIKE's wildcards or the separator,
# so the match is exact. Not an ARRAY with array_contains: Milvus Lite evaluates that row by row
# in Python (about 25 us a row: 0.5 s a search at 20k rows), while LIKE runs as one Arrow kernel.
PURPOSES_MAX_LEN = 65_535  # Milvus's VARCHAR limit, in bytes
INDEX_KINDS = {
    "FLAT": {},
    "HNSW": {"M": 32, "efConstruction": 200},
    "IVF_FLAT": {"nlist": 1024},
}
SEARCH_PARAMS = {"FLAT": {}, "HNSW": {"ef": 256}, "IVF_FLAT": {"nprobe": 64}}


def search_params(kind: str, allowed_fraction: float = 1.0) -> dict[str, int]:
    """The search parameters for an index `kind` when the filter allows about `allowed_fraction`
    of the rows. IVF skips the rows a filter refuses inside the cells it probes, so a filter that
    allows a fraction f leaves an nprobe-cell search about f times the candidates; probing nprobe/f
    cells keeps that number. Once that reaches half the cells, it probes them all: at most twice
    the work, and the search becomes exact over the allowed rows, which matters most for a query
    whose own row is not allowed (its best allowed row is a stranger, in no particular cell)."""
    params = dict(SEARCH_PARAMS[kind])
    if kind == "IVF_FLAT":
        nlist, f = INDEX_KINDS[kind]["nlist"], min(1.0, max(float(allowed_fraction), 1.0 / INDEX_KINDS[kind]["nlist"]))
        nprobe = int(np.ceil(params["nprobe"] / f))
        params["nprobe"] = nlist if nprobe >= nlist // 2 else nprobe
    return params
BATCH = 5000
# Ids a search may leave out inside Milvus's filter (an expression of some 40 KiB at most).
LEAVE_OUT_MAX = 4096
# Seconds each Milvus request may take (MilvusVectors.call_timeout): a search or a batch write
# of BATCH rows takes well under one on a healthy server. Collection-wide work (create, load,
# flush, drop) may take longer on a large collection.
CALL_TIMEOUT = 15.0
SLOW_CALL_TIMEOUT = 120.0
# How long after a failed request the store takes Milvus for down (MilvusVectors.down): searches
# score the records and writes leave their vector writes noted rather than each waiting out a
# hung Milvus's deadline. The first window is RETRY_FIRST_S, each failure after a window doubles
# it, up to RETRY_S: a Milvus back in a second is asked again in a second, a long outage costs a
# request every RETRY_S. Only a read that answers (MilvusVectors.probe) ends a window sooner and
# starts the next outage at RETRY_FIRST_S again: a Milvus whose metadata and writes answer while
# its searches hang is still down. A window a search's failure opened is ended by a search only:
# a Milvus whose queries answer while its searches alone hang stays down for searches after an
# enrolment's stamp read has answered.
RETRY_FIRST_S = 1.0
RETRY_S = IndexUnavailable.retry_after
# Milvus Lite searches its unflushed rows (the memtable, sealed only at 128 MiB, about 200k
# templates) by walking them in Python on every search: 0.5 s at 20k rows, seconds beyond. So on
# Milvus Lite this client flushes once it has written FLUSH_ROWS rows since its last flush, and
# the memtable stays small; flushed segments are searched by FAISS and compacted in the
# background. A Milvus server seals its growing segments itself and discourages client flushes.
FLUSH_ROWS = 2000
# The stamp's entity (no row has a negative id). Its expiry field carries the count of vector
# writes the store has confirmed, its purposes field "#<store id>#<epoch>" (see
# ServerStore._stamp). No search filter admits it: the field holds no "|", and the expiry is
# long past.
STAMP_ID = -1


# pymilvus logs every request that fails at ERROR, with a traceback, before raising; the store
# reports each failure itself, once, with what it does about it (IndexUnavailable, the search
# that scores the records). Its records are dropped for this module's requests only (`_own`): a
# host's own pymilvus calls still log.
_own = threading.local()


class _OwnRequests(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return not getattr(_own, "depth", 0)


for _name in ("pymilvus.decorators", "pymilvus.client.connection_manager"):
    logging.getLogger(_name).addFilter(_OwnRequests())


@contextlib.contextmanager
def _reported_here() -> Iterator[None]:
    """pymilvus's failure records are not logged inside (see _OwnRequests)."""
    _own.depth = getattr(_own, "depth", 0) + 1
    try:
        yield
    finally:
        _own.depth -= 1


def purpose_set(purposes: Sequence[str]) -> str:
    """The VARCHAR that carries a row's purposes (see PURPOSES)."""
    out = "|" + "".join(p.encode("utf-8").hex() + "|" for p in sorted(set(purposes)))
    if len(out) > PURPOSES_MAX_LEN:
        raise ConfigError(f"a row's purposes take {len(out)} bytes in Milvus, more than its {PURPOSES_MAX_LEN}; "
                          "use fewer or shorter purpose names.")
    return out


def purposes_of(value: str) -> list[str]:
    """The purposes a stored VARCHAR carries (the inverse of purpose_set). A value edited into
    something else comes back whole, as one purpose no record has, so a check reports it."""
    parts = str(value).split("|")
    try:
        if len(parts) < 2 or parts[0] or parts[-1]:
            raise ValueError(value)
        return [bytes.fromhex(h).decode("utf-8") for h in parts[1:-1]]
    except ValueError:
        return [str(value)]


def purpose_filter(purpose: str, now_us: int) -> str:
    """The Milvus filter for rows allowed for `purpose` and not expired at `now_us`."""
    return f'{PURPOSES} like "%|{purpose.encode("utf-8").hex()}|%" and {EXPIRES} > {int(now_us)}'


def _client_error() -> tuple[type[BaseException], ...]:
    import grpc
    from pymilvus.exceptions import MilvusException

    # pymilvus passes some gRPC failures through unwrapped: a deadline passed, a gateway refusing
    # a token (UNAUTHENTICATED, PERMISSION_DENIED) or shedding load (RESOURCE_EXHAUSTED).
    return (MilvusException, grpc.RpcError, grpc.FutureTimeoutError, OSError, ConnectionError, TimeoutError)


def _first_window(count: int) -> float:
    """The length of the `count`th window in a row (MilvusVectors.hold_off)."""
    return min(RETRY_S, RETRY_FIRST_S * 2.0 ** min(count - 1, 30))


class AskingAgain(IndexUnavailable):
    """Another request of this process is asking Milvus whether it is back (Outage's trial);
    this one was not sent. Not a failure: it opens no window."""


class Outage:
    """What this process knows of one collection's Milvus failing to answer (MilvusVectors.hold_off),
    shared by every handle on it (`Outage.of`): a service's worker threads each hold one, and
    each would otherwise meet a hung Milvus's deadline itself, once per window. When a window
    has passed with nothing answered since, one request alone asks (the trial); the other
    handles take Milvus for down until it answers or fails, instead of each waiting out the
    same deadline. An answer that is not a store's (a collection of another dimension, its
    credentials refused) is that handle's alone: another workspace given the same collection
    name is no outage of this one."""

    _shared: dict[tuple[str, str], "Outage"] = {}
    _shared_lock = threading.Lock()

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.down_until = 0.0  # monotonic
        self.search_down_until = 0.0  # the window a search's failure opened, which only a search ends
        self.windows = 0  # windows since a request last answered
        self.search_windows = 0  # windows since a search last answered
        self.trial: Optional[tuple[int, float]] = None  # (thread, until): the request asking alone

    @classmethod
    def of(cls, where: str, collection: str) -> "Outage":
        with cls._shared_lock:
            return cls._shared.setdefault((where, collection), cls())

    def unconfirmed(self, search: bool) -> bool:
        """Whether a failure has had no answer since (so a request now is a trial)."""
        return self.windows > 0 or (search and self.search_windows > 0)

    def drop_own_trial(self) -> None:
        """This thread's trial, if it holds one, ends (the caller holds `lock`)."""
        if self.trial is not None and self.trial[0] == threading.get_ident():
            self.trial = None

    def trial_elsewhere(self, now: float) -> bool:
        """Whether another thread's trial is out (and has not outrun its deadline)."""
        t = self.trial
        return t is not None and t[0] != threading.get_ident() and now < t[1]


class MilvusVectors:
    """One collection of protected templates. Use `MilvusVectors.connect`."""

    def __init__(self, client: Any, where: str, collection: str, dim: int, index_kind: str,
                 opener: Optional[Callable[[], Any]] = None, outage: Optional[Outage] = None) -> None:
        self._client = client
        # Makes the client when `client` is None (connect(wait=False)): at the first request,
        # and again at each later one while Milvus cannot be reached.
        self._opener = opener
        self._opening = threading.RLock()
        self.where = where
        self.collection = collection
        self._dim = dim
        self._kind = index_kind
        self._lite = False  # set by connect: Milvus Lite needs the flushes (see FLUSH_ROWS)
        self._unflushed = 0
        self._loaded = False
        self.call_timeout = CALL_TIMEOUT
        self._outage = outage or Outage()  # see down() and hold_off(); connect() shares one per collection
        self._refusal: Optional[ConfigError] = None  # this handle's own (hold_off's `refusal`)
        self._refused_until = 0.0  # monotonic

    @property
    def lite(self) -> bool:
        """Whether this is Milvus Lite (known once it has answered), which keeps deleted vectors'
        bytes in its files until it compacts them on its own schedule."""
        return self._lite

    @property
    def slow_timeout(self) -> float:
        """The deadline of collection-wide work (create, load, flush, drop)."""
        return max(self.call_timeout, SLOW_CALL_TIMEOUT)

    def __repr__(self) -> str:
        return f"MilvusVectors({self.where!r}, collection={self.collection!r})"

    @classmethod
    def connect(cls, target: str, root: Path, collection: str, dim: int, index_kind: str = "FLAT",
                token: Optional[str] = None, timeout: float = 10.0, *, wait: bool = True) -> "MilvusVectors":
        """`target` is "milvus:<uri>" (a Milvus server or cluster) or "milvus-lite:<path>"
        (relative to the workspace `root`). Checks the collection if it exists (its dimension);
        creates nothing: call `ensure` once every check of the opening store has passed. Without
        `wait`, nothing is asked yet: the first request connects (IndexUnavailable while Milvus
        cannot be reached), so a store can open during an outage."""
        try:
            from pymilvus import MilvusClient
        except ImportError:
            raise ConfigError("the deployment keeps its vectors in Milvus, but pymilvus is not installed: "
                              "pip install 'safeface[server]'.") from None
        if index_kind not in INDEX_KINDS:
            raise ConfigError(f"storage.vector_index must be one of {sorted(INDEX_KINDS)}, got {index_kind!r}.")
        if target.startswith("milvus-lite:"):
            path = Path(target[len("milvus-lite:"):])
            path = path if path.is_absolute() else root / path
            path.parent.mkdir(parents=True, exist_ok=True)
            uri, where = str(path), f"Milvus Lite at {path}"
        elif target.startswith("milvus:"):
            if milvus_userinfo(target):  # never sent, nor shown in the messages that name `where`
                raise ConfigError("storage.vectors holds user information (a user or password before '@'); set "
                                  "SAFEFACE_MILVUS_TOKEN instead.")
            uri = target[len("milvus:"):]
            where = f"Milvus at {uri}"
            if token and _in_the_clear(uri):
                raise ConfigError(f"{where} is reached without TLS on another machine (or, naming pymilvus's "
                                  "global-cluster, through a topology fetched in the clear), where "
                                  "SAFEFACE_MILVUS_TOKEN would cross the network in the clear (anyone on the path "
                                  "could read, change or drop the collection with it): name it https://, or reach it "
                                  "on this machine.")
        else:
            raise ConfigError(f"storage.vectors must be 'local', 'milvus:<uri>' or 'milvus-lite:<file>', got {target!r}.")
        lite = target.startswith("milvus-lite:")
        # gRPC sends a plain channel through $http_proxy / $grpc_proxy, to this machine too: the
        # token and every vector crossed the network to the proxy in the clear. This machine is
        # reached directly.
        direct = {} if lite else _direct_here(uri)

        def opener() -> Any:
            # pymilvus pools one channel per server address; one the server dropped while idle (a
            # keepalive GOAWAY) can fail the first connect although the server is up: retry once.
            for attempt in (1, 2):
                try:
                    with _reported_here():
                        return MilvusClient(uri=uri, token=token or "", timeout=timeout, **direct)
                except _client_error() as exc:
                    if attempt == 2:
                        raise _unreachable(where, exc) from None
                    time.sleep(0.5)

        out = cls(None, where, collection, dim, index_kind, opener, Outage.of(where, collection))
        out._lite = lite
        if wait:
            out.reachable()
        return out

    def down(self, *, search: bool = False) -> bool:
        """Whether a request failed (IndexUnavailable) less than RETRY_S seconds ago, with no
        probe answered since, in any handle of this process on the collection, or Milvus refused
        this handle (hold_off's `refusal`); with `search`, also whether a search failed in a
        window a probe does not end (a probe reads, it does not search); and whether, the window
        past, another thread's trial (Outage) is asking Milvus now. Every failure is counted
        here, where it is raised, so no caller can leave one out."""
        o, now = self._outage, time.monotonic()
        if now < o.down_until or now < self._refused_until or (search and now < o.search_down_until):
            return True
        return o.unconfirmed(search) and o.trial_elsewhere(now)

    def _failed(self, exc: IndexUnavailable, started: Optional[float] = None, *, search: bool = False) -> IndexUnavailable:
        """Count a failure (hold_off); `started`: when the failed request was sent (monotonic).
        A request not sent because another was asking (AskingAgain) is none."""
        if not isinstance(exc, AskingAgain):
            self.hold_off(waited=0.0 if started is None else time.monotonic() - started, search=search)
        return exc

    def hold_off(self, *, waited: float = 0.0, refusal: Optional[ConfigError] = None, search: bool = False) -> None:
        """Take Milvus for down for the next window: RETRY_FIRST_S, doubled after each window
        that ended in another failure with nothing answered between, at most RETRY_S; and at
        least twice what the failed request `waited` (a request that ran into its deadline, a
        hung Milvus, is not sent again a second later: each costs a caller that deadline). A
        failure inside a window (another request of the same outage) does not double it, but
        may lengthen it to its own wait. `refusal`: Milvus answered, but not as this store's
        (the collection, the credentials), which a second's wait will not mend: this handle
        alone holds off for RETRY_S, and `refused_lately` gives the refusal until then.
        `search`: a search failed, and only a search answering ends its window (RETRY_S's
        comment). This thread's trial ends with it."""
        o, now = self._outage, time.monotonic()
        with o.lock:
            if refusal is not None:
                self._refused_until, self._refusal = max(self._refused_until, now + RETRY_S), refusal
            else:
                waits = now + min(RETRY_S, 2.0 * waited)
                if now >= o.down_until:  # a new window
                    o.windows += 1
                    o.down_until = max(waits, now + _first_window(o.windows))
                else:
                    o.down_until = max(o.down_until, waits)
                if search:  # counted apart: queries that answer between do not shorten it
                    if now >= o.search_down_until:
                        o.search_windows += 1
                        o.search_down_until = max(o.down_until, now + _first_window(o.search_windows))
                    else:
                        o.search_down_until = max(o.search_down_until, o.down_until)
            o.drop_own_trial()

    def refused_lately(self) -> Optional[ConfigError]:
        """Milvus's answer that it is not this store's (hold_off's `refusal`), while its window lasts."""
        return self._refusal if time.monotonic() < self._refused_until else None

    def window_left(self, *, search: bool = False) -> float:
        """Seconds left of the present window (0 when Milvus is not taken for down); with
        `search`, of the window searches keep (down)."""
        o = self._outage
        until = max(o.down_until, self._refused_until, o.search_down_until if search else 0.0)
        return max(0.0, until - time.monotonic())

    def probe(self) -> None:
        """Read the stamp, a strongly consistent query; if Milvus answers, it is up again and
        the window ends (IndexUnavailable if not), this handle's refusal too; the next outage
        starts at RETRY_FIRST_S. A window a search opened stays (down)."""
        self.stamp()
        self._answered(read=True)
        self._refused_until, self._refusal = 0.0, None

    def _asking(self, search: bool = False) -> None:
        """Before a request: after a failure that nothing has answered since, it goes as the
        trial, alone in this process (Outage); while another thread's is out it is not sent
        (AskingAgain)."""
        o = self._outage
        if not o.unconfirmed(search):
            return
        with o.lock:
            now = time.monotonic()
            if o.trial_elsewhere(now):
                raise AskingAgain(f"{self.where} is being asked whether it is back by another request of this "
                                  "process; the records answer meanwhile.")
            o.trial = (threading.get_ident(), now + self.slow_timeout + 1.0)

    def await_trial(self) -> bool:
        """Wait while another thread's trial is out (Outage), at most until its deadline; True
        if there was one. A write needs Milvus's answer, which that trial is about to give:
        waiting for it beats refusing the caller, and beats sending a second request to a
        Milvus that may hang."""
        o, waited = self._outage, False
        while True:
            with o.lock:
                now = time.monotonic()
                if not o.trial_elsewhere(now):
                    return waited
                left = o.trial[1] - now if o.trial is not None else 0.0
            waited = True
            time.sleep(min(0.05, max(left, 0.001)))

    def _answered(self, *, read: bool = False, search: bool = False) -> None:
        """A request answered: any trial ends, and once the window has passed Milvus is
        confirmed (the next outage starts at RETRY_FIRST_S, and requests need no trial); a read
        (`read`) or a search (`search`) also ends a window still open; only a search ends a
        search's."""
        o, now = self._outage, time.monotonic()
        ends = read or search
        if o.trial is None and not o.windows and not (search and o.search_windows) and not (ends and o.down_until):
            return
        with o.lock:
            o.trial = None
            if ends:
                o.down_until = 0.0
            if now >= o.down_until:
                o.windows = 0
            if search:
                o.search_down_until, o.search_windows = 0.0, 0

    def _let_go(self) -> None:
        """This thread's trial ends without an answer (an error not Milvus's): the next request asks."""
        o = self._outage
        with o.lock:
            o.drop_own_trial()

    @property
    def _api(self) -> Any:
        """The client, connected (and the collection checked) at the first request."""
        if self._client is None:
            with self._opening:
                if self._client is None and self._opener is not None:
                    self._asking()
                    started = time.monotonic()
                    try:
                        client = self._opener()
                    except IndexUnavailable as exc:
                        raise self._failed(exc, started) from None
                    except BaseException:
                        self._let_go()
                        raise
                    try:
                        try:
                            with _reported_here():
                                version = str(client.get_server_version(timeout=self.call_timeout))
                        except _client_error() as exc:  # pymilvus connects at the first request
                            if _refused_credentials(exc):
                                # Not an outage: the token is wrong or revoked, and waiting will not
                                # mend it. A store refuses to open on it (an outage lets it open);
                                # asked again only after the window (below).
                                raise ConfigError(f"{self.where} refused the credentials ({_short(exc)}); check "
                                                  "SAFEFACE_MILVUS_TOKEN. Nothing was written.") from None
                            raise self._failed(_unreachable(self.where, exc), started) from None
                        self._lite = self._lite or version.startswith("milvus_lite")
                        self._check_existing(client)
                    except ConfigError as exc:
                        # Milvus answers, but not as this store's: asked again after the window,
                        # not at every call (each would make a client and log the error).
                        _close_quietly(client)
                        self.hold_off(refusal=exc)
                        raise
                    except BaseException:
                        _close_quietly(client)
                        self._let_go()  # not an outage (counted where it was): the trial ends
                        raise
                    self._client = client  # only once checked: another thread may use it at once
                    self._answered()
        return self._client

    def _call(self, what: str, fn: Any, *args: Any, **kwargs: Any) -> Any:
        if self._client is not None and getattr(fn, "__self__", None) is self._client:
            # Every request has a deadline: a Milvus that hangs (a stuck node, a paused process)
            # fails the call, so a search falls back to the records and an erasure holding the
            # store's write lock goes on, instead of both waiting for ever.
            kwargs.setdefault("timeout", self.call_timeout)
        search = what == "search"
        self._asking(search)
        started = time.monotonic()
        try:
            with _reported_here():
                out = fn(*args, **kwargs)
        except _client_error() as exc:
            raise self._failed(self._failure(what, exc), started, search=search) from None
        except BaseException:
            self._let_go()  # not Milvus's failure (an interrupt, a reply pymilvus could not read): the trial ends
            raise
        self._answered(search=search)
        return out

    def _failure(self, what: str, exc: BaseException) -> IndexUnavailable:
        """The error for a request that failed. Credentials refused under a running store (a
        token revoked or rotated): an outage to its callers, but one a second's wait will not
        mend, so it holds Milvus off for RETRY_S as a refusal (hold_off), not the short windows."""
        if _refused_credentials(exc):
            said = f"{self.where} refused the credentials to {what} ({_short(exc)}); check SAFEFACE_MILVUS_TOKEN."
            self.hold_off(refusal=ConfigError(said))
            return IndexUnavailable(said)
        return IndexUnavailable(f"{self.where} failed to {what} ({_short(exc)}).")

    def _check_existing(self, client: Any) -> None:
        if not self._call("list collections", client.has_collection, self.collection, timeout=self.call_timeout):
            return
        desc = self._call("describe the collection", client.describe_collection, self.collection,
                          timeout=self.call_timeout)
        fields = {f["name"]: f for f in desc.get("fields", [])}
        vec = fields.get(VECTOR)
        if vec is None or set(fields) != {ID, VECTOR, PURPOSES, EXPIRES} or not _is_varchar(fields[PURPOSES]):
            raise ConfigError(f"the collection {self.collection!r} in {self.where} was not made by safeface (fields "
                              f"{sorted(fields)}); name another collection in storage.collection.")
        have = int(vec.get("params", {}).get("dim", 0))
        if have != self._dim:
            raise ConfigError(f"the collection {self.collection!r} in {self.where} holds {have}-dimensional vectors, "
                              f"but this workspace's templates have {self._dim}; name another collection in "
                              "storage.collection or rebuild it with `safeface index rebuild`.")

    def ensure(self) -> None:
        """Create the collection (and its index) if it does not exist, and load it."""
        from pymilvus import DataType, MilvusClient

        if self.load_if_present():
            return
        schema = MilvusClient.create_schema(auto_id=False, enable_dynamic_field=False)
        schema.add_field(ID, DataType.INT64, is_primary=True)
        schema.add_field(VECTOR, DataType.FLOAT_VECTOR, dim=self._dim)
        schema.add_field(PURPOSES, DataType.VARCHAR, max_length=PURPOSES_MAX_LEN)
        schema.add_field(EXPIRES, DataType.INT64)
        params = self._api.prepare_index_params()
        params.add_index(VECTOR, index_type=self._kind, metric_type="IP", params=INDEX_KINDS[self._kind])
        self._call("create the collection", self._api.create_collection, self.collection, schema=schema,
                   index_params=params, consistency_level="Strong", timeout=self.slow_timeout)

    def load_if_present(self) -> bool:
        """Whether the collection exists, loading it if so (once per client: Milvus Lite's load
        waits behind any compaction); creates nothing, so a store can wait for a slow load
        holding no lock."""
        if not self._call("list collections", self._api.has_collection, self.collection):
            return False
        if not self._loaded:
            self._call("load the collection", self._api.load_collection, self.collection, timeout=self.slow_timeout)
            self._loaded = True
        return True

    def reachable(self) -> bool:
        """Whether the collection exists; raises IndexUnavailable when Milvus does not answer."""
        return bool(self._call("list collections", self._api.has_collection, self.collection))

    def drop(self) -> None:
        if self._call("list collections", self._api.has_collection, self.collection):
            self._call("drop the collection", self._api.drop_collection, self.collection,
                       timeout=self.slow_timeout)
        self._loaded = False

    def upsert(self, ids: Sequence[int], vectors: np.ndarray, purposes: Sequence[Sequence[str]],
               expires_us: Sequence[int]) -> None:
        """Write protected templates (never anything else) under their row ids."""
        vecs = np.asarray(vectors, dtype=np.float32)
        for i in range(0, len(ids), BATCH):
            rows = [{ID: int(r), VECTOR: v, PURPOSES: purpose_set(p), EXPIRES: int(e)}
                    for r, v, p, e in zip(ids[i:i + BATCH], vecs[i:i + BATCH], purposes[i:i + BATCH],
                                          expires_us[i:i + BATCH])]
            self._call("store vectors", self._api.upsert, self.collection, rows)
        self._written(len(ids))

    def _written(self, n: int) -> None:
        self._unflushed += n
        if self._lite and self._unflushed >= FLUSH_ROWS:
            self.flush()

    def flush(self) -> None:
        """Seal what this client wrote into searchable segments (see FLUSH_ROWS)."""
        self._call("flush", self._api.flush, self.collection, timeout=self.slow_timeout)
        self._unflushed = 0

    def delete(self, ids: Sequence[int]) -> None:
        for i in range(0, len(ids), BATCH):
            self._call("delete vectors", self._api.delete, self.collection, ids=[int(r) for r in ids[i:i + BATCH]])
        self._written(len(ids))

    def present(self, ids: Sequence[int]) -> list[int]:
        """Which of these ids Milvus still holds (a strongly consistent query by id)."""
        out: list[int] = []
        for i in range(0, len(ids), BATCH):
            part = [int(r) for r in ids[i:i + BATCH]]
            found = self._call("query vectors", self._api.query, self.collection,
                               filter=f"{ID} in {json.dumps(part)}", output_fields=[ID], consistency_level="Strong")
            out.extend(int(r[ID]) for r in found)
        return sorted(out)

    def search(self, query: np.ndarray, purpose: str, now_us: int, limit: int,
               allowed_fraction: float = 1.0, leave_out: Sequence[int] = ()) -> list[tuple[int, float]]:
        """(row id, score) of the best vectors whose purposes include `purpose` and whose expiry is
        after `now_us`, less the ids `leave_out` names (at most LEAVE_OUT_MAX: the caller keeps to
        it), filtered inside Milvus; `allowed_fraction` (about how many rows the filter allows)
        widens an IVF search (see search_params)."""
        where = purpose_filter(purpose, now_us)
        if leave_out:
            where += f" and {ID} not in {json.dumps(sorted(int(i) for i in leave_out))}"
        res = self._call("search", self._api.search, self.collection, [np.asarray(query, np.float32).tolist()],
                         limit=int(limit), filter=where, output_fields=[ID],
                         search_params={"metric_type": "IP", "params": search_params(self._kind, allowed_fraction)},
                         consistency_level="Strong")
        return [(int(h["id"]), float(h["distance"])) for h in res[0]]

    def stamp(self) -> Optional[tuple[int, str]]:
        """The stamp the store last wrote here, (count, tag); None where there is none, as in a
        collection made afresh."""
        api = self._api
        self._asking()
        started = time.monotonic()
        try:
            with _reported_here():
                got = api.query(self.collection, filter=f"{ID} in [{STAMP_ID}]", output_fields=[EXPIRES, PURPOSES],
                                consistency_level="Strong", timeout=self.call_timeout)
            self._answered()
        except BaseException as exc:
            if not isinstance(exc, _client_error()):
                self._let_go()
                raise
            # A collection that is gone has no stamp (asked again only when Milvus says so: a
            # search pays one round trip); an unreachable or hung Milvus is an error, never a
            # loss, and costs one deadline, not two.
            if _collection_missing(exc) and not self._call("list collections", self._api.has_collection,
                                                           self.collection):
                return None
            raise self._failed(self._failure("read the stamp", exc), started) from None
        return (int(got[0][EXPIRES]), str(got[0][PURPOSES])) if got else None

    def set_stamp(self, n: int, tag: str) -> None:
        if "|" in tag:
            raise ValueError("a stamp's tag may not hold '|' (a purpose filter would read it)")
        unit = np.zeros(self._dim, np.float32)
        unit[0] = 1.0  # any unit vector: an index may refuse a zero one
        self._call("write the stamp", self._api.upsert, self.collection,
                   [{ID: STAMP_ID, VECTOR: unit, PURPOSES: tag, EXPIRES: int(n)}])
        self._written(1)

    def ids(self) -> list[int]:
        """Every id the collection holds but the stamp's, sorted (for the consistency check).
        pymilvus's query iterator asks Milvus for the collection's description with no deadline
        (QueryIterator's set-up), so the whole listing runs under one: a hung Milvus would
        otherwise keep `index check` waiting for ever, holding the store's write lock."""
        pages = 2 + self.count() // BATCH
        started = time.monotonic()
        try:
            return _within(self.call_timeout * pages, f"{self.where} did not list its vectors within "
                           f"{self.call_timeout * pages:.0f} s", self._ids)
        except IndexUnavailable as exc:
            raise self._failed(exc, started) from None

    def _ids(self) -> list[int]:
        it = self._call("list vectors", self._api.query_iterator, self.collection, batch_size=BATCH,
                        filter=f"{ID} != {STAMP_ID}",
                        output_fields=[ID], consistency_level="Strong")
        out: list[int] = []
        try:
            while True:
                page = self._call("list vectors", it.next)
                if not page:
                    break
                out.extend(int(r[ID]) for r in page)
        finally:
            it.close()
        return sorted(out)

    def fetch(self, ids: Sequence[int]) -> dict[int, tuple[np.ndarray, list[str], int]]:
        """What Milvus holds under these ids: (protected vector, purposes, expiry)."""
        out: dict[int, tuple[np.ndarray, list[str], int]] = {}
        for i in range(0, len(ids), BATCH):
            part = [int(r) for r in ids[i:i + BATCH]]
            for r in self._call("read vectors", self._api.query, self.collection, filter=f"{ID} in {json.dumps(part)}",
                                output_fields=[ID, VECTOR, PURPOSES, EXPIRES], consistency_level="Strong"):
                out[int(r[ID])] = (np.asarray(r[VECTOR], dtype=np.float32), purposes_of(r[PURPOSES]),
                                   int(r[EXPIRES]))
        return out

    def count(self) -> int:
        res = self._call("count vectors", self._api.query, self.collection, filter=f"{ID} != {STAMP_ID}",
                         output_fields=["count(*)"],
                         consistency_level="Strong")
        return int(res[0]["count(*)"])

    def close(self) -> None:
        if self._client is not None:
            _close_quietly(self._client)


def _close_quietly(client: Any) -> None:
    try:
        client.close()
    except Exception:  # closing a client whose server went away is not an error worth raising
        pass


def _refused_credentials(exc: BaseException) -> bool:
    """Whether a failed first request was Milvus (or a gateway in front of it) refusing the
    token: gRPC's UNAUTHENTICATED or PERMISSION_DENIED anywhere in the chain pymilvus wraps it in."""
    import grpc

    seen: set[int] = set()
    cur: Optional[BaseException] = exc
    while cur is not None and id(cur) not in seen:
        seen.add(id(cur))
        if isinstance(cur, grpc.RpcError) and callable(getattr(cur, "code", None)):
            if cur.code() in (grpc.StatusCode.UNAUTHENTICATED, grpc.StatusCode.PERMISSION_DENIED):
                return True
        cur = cur.__cause__ or cur.__context__
    return False


def _unreachable(where: str, exc: BaseException) -> IndexUnavailable:
    return IndexUnavailable(f"{where} cannot be reached or refused the credentials ({_short(exc)}). Check that it "
                            "runs and that SAFEFACE_MILVUS_TOKEN is right; nothing was written.")


def _collection_missing(exc: BaseException) -> bool:
    """Whether Milvus said the collection does not exist (its code 100, or the words)."""
    text = str(exc).lower()
    return getattr(exc, "code", None) == 100 or "not exist" in text or "not found" in text


def _within(seconds: float, late: str, fn: Callable[[], _T]) -> _T:
    """fn's result, or IndexUnavailable(`late`) once `seconds` have passed. For client work that
    cannot be given a deadline itself: the thread left behind is a daemon, so a Milvus that never
    answers does not keep the process from exiting."""
    box: dict[str, Any] = {}

    def run() -> None:
        try:
            box["out"] = fn()
        except BaseException as exc:  # handed to the caller's thread
            box["err"] = exc

    worker = threading.Thread(target=run, name="safeface-milvus-deadline", daemon=True)
    worker.start()
    worker.join(seconds)
    if worker.is_alive():
        raise IndexUnavailable(late + ".")
    if "err" in box:
        raise box["err"]
    out: _T = box["out"]
    return out


def _is_varchar(field: dict[str, Any]) -> bool:
    from pymilvus import DataType

    return field.get("type") in (DataType.VARCHAR, int(DataType.VARCHAR), "VARCHAR")


def _plain_host(uri: str) -> Optional[str]:
    """The host a plain (http://, tcp://) channel to `uri` goes to, as Python's URL parser reads
    it, which pymilvus uses (tabs and line breaks dropped first; none named: "localhost"); None
    for a TLS or other URI, or one that does not parse (pymilvus refuses it too, sending nothing)."""
    try:
        parts = urllib.parse.urlsplit(uri)
    except ValueError:
        return None
    return parts.hostname or "localhost" if parts.scheme.lower() in ("http", "tcp") else None


def _in_the_clear(uri: str) -> bool:
    """Whether pymilvus would reach `uri` without TLS on another machine. Only a loopback address
    in its standard form or "localhost" is this machine: gRPC's resolver asks DNS about 127.1 and
    "localhost.", and reads 0177.0.0.1 as 177.0.0.1."""
    host = _plain_host(uri)
    # A URI holding "global-cluster" anywhere is pymilvus's global cluster: the token goes in an
    # HTTP request for the topology (through any $http_proxy, to this machine too), then to
    # whichever primary the answer names.
    return host is not None and ("global-cluster" in uri.lower() or not is_loopback_everywhere(host))


def _direct_here(uri: str) -> dict[str, Any]:
    """MilvusClient's arguments that keep a plain (http://, tcp://) channel to this machine off any
    proxy gRPC would take from the environment; none for another URI."""
    host = _plain_host(uri)
    return {"grpc_options": {"grpc.enable_http_proxy": 0}} if host is not None and is_loopback_everywhere(host) else {}


def _short(exc: BaseException) -> str:
    text = str(getattr(exc, "message", "") or exc) or type(exc).__name__
    return text.replace("\n", " ")[:160]
