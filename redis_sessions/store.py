"""``SessionStore``: the session store over ``redis.Redis`` (synchronous).

GENERATED from ``aio.py`` by ``python tools/unasync.py``: do not edit; edit ``aio.py`` and regenerate.
Everything but the sending lives in ``_core``; a method here builds a call and sends it.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Generator, Iterator, Iterable, Mapping, Sequence
from datetime import timedelta
from typing import TYPE_CHECKING, Any, Self, TypeVar

from redis import BlockingConnectionPool, Redis
from redis.cluster import RedisCluster
from redis.sentinel import Sentinel

from ._admin import info, info_page, pop, put
from ._base import RECOVERABLE, StoreBase
from ._core import (
    DEFAULT_CACHE_MESSAGES,
    DEFAULT_MAX_MESSAGE_BYTES,
    Messages,
    StoreCore,
    check_client,
    ttl_ms,
)
from ._durable import restore as restore_call
from ._live import PUBSUB_PROBE, SHARDED_FROM, Appended, read_after
from ._live import lease as lease_call
from ._read import load as load_call
from ._read import messages as messages_call
from ._replication import wait_for
from .errors import (
    LeaseLost,
    SessionExists,
)
from .keys import live_keys
from .keys import session_id as parse_session_id
from .models import AgentMessage, Session, SessionId, SessionInfo, SessionState
from .retry import NO_CLIENT_RETRY, TRANSIENT, RetryPolicy, turn_off_client_retry
from .writebehind import SyncWorker

if TYPE_CHECKING:
    from .persistence import PersistenceAdapter

__all__ = ["Lease", "SessionStore"]

T = TypeVar("T")
_DEFAULT_RETRY = RetryPolicy()
_STORE_OPTIONS = frozenset(
    {
        "prefix",
        "ttl",
        "max_messages",
        "codec",
        "max_message_bytes",
        "cache_messages",
        "retry",
        "wait_replicas",
        "wait_timeout",
        "backing",
    }
)
_TIMEOUTS = {"socket_timeout": 5.0, "socket_connect_timeout": 5.0}


class SessionStore(StoreBase):
    """Conversations in Redis, shared safely by many processes.

    ``ttl`` (seconds or a ``timedelta``; ``None`` = never expire) is refreshed on every key of a
    session by each write; ``max_messages`` keeps only the newest messages (``seq`` still counts
    all of them); both are recorded by ``create`` and kept by the session whoever writes to it.
    ``codec`` is how new sessions store messages (``"msgpack"`` or ``"json"``).
    ``cache_messages`` bounds the validated history cache: re-reads fetch only what is new, in one
    round trip that also proves the rest current (``0`` turns it off).
    ``retry`` is the one retry policy for transport errors: the store turns the client's own
    retry off; pass ``retry=None`` to keep the client's retry as it is and not retry here.
    ``wait_replicas`` (default 0: off) makes every write wait until that many replicas confirm it,
    up to ``wait_timeout`` seconds, else raise ``NotReplicated``; the docs' *Scaling out* page says
    what Redis's asynchronous replication promises with and without it.

    ``client`` is a ``Redis`` (also one from a ``Sentinel``) or a ``RedisCluster``; ``from_url``,
    ``from_cluster`` and ``from_sentinel`` build one with sensible timeouts.

    ``backing`` (a ``redis_sessions.persistence`` adapter) makes Redis the cache of a durable
    store: sessions this store creates are written behind to it, a session Redis lacks is read
    through from it, and ``delete`` removes both copies. ``from_url`` & co. also start a
    write-behind worker thread; see the docs' *Durability* page.
    """

    def __init__(
        self,
        client: Redis | RedisCluster,
        *,
        prefix: str = "rs",
        ttl: float | timedelta | None = None,
        max_messages: int | None = None,
        codec: str = "msgpack",
        max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES,
        cache_messages: int = DEFAULT_CACHE_MESSAGES,
        retry: RetryPolicy | None = _DEFAULT_RETRY,
        wait_replicas: int = 0,
        wait_timeout: float | timedelta = 1.0,
        backing: PersistenceAdapter | None = None,
    ) -> None:
        check_client(client)
        self._core = StoreCore(
            prefix=prefix,
            ttl=ttl,
            max_messages=max_messages,
            codec=codec,
            max_message_bytes=max_message_bytes,
            cache_messages=cache_messages,
            durable=backing is not None,
            record="" if backing is None else backing.record_id,
            cluster=isinstance(client, RedisCluster),
        )
        self.client = client
        self._backing = backing
        self._worker: SyncWorker | None = None
        self._cluster = isinstance(client, RedisCluster)
        self._retry = retry
        self._wait = wait_for(wait_replicas, wait_timeout)
        # One retry layer: ours. (Only when not already off: a BlockingConnectionPool cannot
        # take a new retry in redis-py 8.1.)
        if retry is not None:
            turn_off_client_retry(client, NO_CLIENT_RETRY)
        self._owned: tuple[Any, ...] = ()  # clients this store made (from_url...) and so closes
        self._sharded: bool | None = None  # sharded pub/sub? asked of the server on first watch

    @classmethod
    def from_url(cls, url: str, **options: Any) -> Self:
        """A store with its own client for ``url`` (``redis://``, ``rediss://``, ``unix://``).

        Options the store knows (``prefix``, ``ttl``, ``max_messages``, ``codec``,
        ``max_message_bytes``, ``retry``) configure the store; the rest go to redis-py's
        connection pool. Socket timeouts default to 5 s so a stalled server cannot hang a caller.
        The pool blocks (up to ``timeout``, 20 s) when all ``max_connections`` (50) are busy,
        instead of failing the call: more concurrent callers than connections just wait their turn.
        """
        worker = _worker_options(options)
        store_options = _split_options(options)
        client = Redis.from_pool(BlockingConnectionPool.from_url(url, **options))
        return cls._owning(client, (client,), store_options)._behind("from_url", (url,), worker)

    @classmethod
    def from_cluster(cls, url: str, **options: Any) -> Self:
        """A store on a Redis Cluster, found through any one node's ``url`` (``redis://host:port``).

        The cluster client discovers the other nodes, sends each call to the primary of the
        session's slot and follows MOVED/ASK itself; every key of a session shares one slot.
        Options the store knows configure the store; the rest go to ``RedisCluster``.
        """
        worker = _worker_options(options)
        store_options = _split_options(options)
        client = RedisCluster.from_url(url, **options)
        return cls._owning(client, (client,), store_options)._behind("from_cluster", (url,), worker)

    @classmethod
    def from_sentinel(cls, sentinels: Sequence[tuple[str, int]], service_name: str, **options: Any) -> Self:
        """A store on the primary that Redis Sentinel names for ``service_name``.

        ``sentinels`` are ``(host, port)`` pairs. After a failover the client asks the sentinels
        again and follows the new primary. ``sentinel_kwargs`` (a dict) configures the connections
        to the sentinels; other options the store does not know go to the primary's connections.
        """
        worker = _worker_options(options)
        sentinel_kwargs = {**_TIMEOUTS, **options.pop("sentinel_kwargs", {})}
        store_options = _split_options(options)
        sentinel = Sentinel(sentinels, sentinel_kwargs=sentinel_kwargs, **options)  # type: ignore[no-untyped-call, unused-ignore]
        client = sentinel.master_for(service_name)  # type: ignore[no-untyped-call, unused-ignore]
        store = cls._owning(client, (client, *sentinel.sentinels), store_options)
        return store._behind("from_sentinel", (sentinels, service_name), worker)

    @classmethod
    def _owning(cls, client: Any, owned: tuple[Any, ...], store_options: dict[str, Any]) -> Self:
        store = cls(client, **store_options)
        store._owned = owned
        return store

    def _behind(self, opener: str, args: tuple[Any, ...], options: dict[str, Any]) -> Self:
        """With a backing store, start the write-behind worker: a thread with its own connections."""
        if self._backing is not None:
            self._worker = SyncWorker.open(opener, args, options, self._backing).start()
        return self

    def create(
        self,
        model: str = "",
        max_turns: int = 0,
        system_message: str | None = None,
        *,
        metadata: Mapping[str, str] | None = None,
        session_id: SessionId | str | None = None,
    ) -> SessionId:
        """Create a session and return its id; ``SessionExists`` if ``session_id`` is taken."""
        call = self._core.create(model, max_turns, system_message, metadata, session_id)
        return self._run(call)

    def append(
        self,
        session_id: SessionId | str,
        message: AgentMessage,
        *,
        expected_seq: int | None = None,
        fence: int | None = None,
    ) -> int:
        """Append one message atomically and return the session's seq after it.

        A message whose id is already stored is not stored again: its stored seq is returned.
        With ``expected_seq``, ``ConflictError`` unless the session is still at that seq.
        With ``fence`` (a lease's token), ``LeaseLost`` unless that lease is still the live one.
        """
        try:  # the hot path: no extra frame; misses, old versions and evictions recover below
            return self._run(self._core.extend(session_id, (message,), expected_seq, fence))
        except RECOVERABLE as exc:
            return self._recover(
                exc, lambda: self._core.extend(session_id, (message,), expected_seq, fence)
            )

    def extend(
        self,
        session_id: SessionId | str,
        messages: Iterable[AgentMessage],
        *,
        expected_seq: int | None = None,
        fence: int | None = None,
    ) -> int:
        """Append a batch, all or nothing, in one round trip; returns the seq after it."""
        messages = tuple(messages)  # it may be sent twice (read-through)
        try:
            return self._run(self._core.extend(session_id, messages, expected_seq, fence))
        except RECOVERABLE as exc:
            return self._recover(
                exc, lambda: self._core.extend(session_id, messages, expected_seq, fence)
            )

    def messages(
        self, session_id: SessionId | str, start: int = 0, stop: int | None = None
    ) -> Messages:
        """The stored messages ``[start:stop]`` (Python slice rules); only that range is read."""
        try:
            return self._run(messages_call(self._core, session_id, start, stop))
        except RECOVERABLE as exc:
            return self._recover(exc, lambda: messages_call(self._core, session_id, start, stop))

    def load(self, session_id: SessionId | str) -> Session | None:
        """The whole session as one consistent snapshot, or ``None`` if there is none."""
        return self._through(lambda: load_call(self._core, session_id), lambda found: found is None)

    def exists(self, session_id: SessionId | str) -> bool:
        """Whether the session exists."""
        return self._through(lambda: self._core.exists(session_id), lambda found: not found)

    def delete(self, session_id: SessionId | str) -> bool:
        """Delete the session and its messages; ``False`` if there was none."""
        deleted = self._run(self._core.delete(session_id))
        if self._backing is None:
            return deleted
        stored = self._backing.delete_session(parse_session_id(session_id))
        return deleted or stored

    def set_metadata(self, session_id: SessionId | str, updates: Mapping[str, str | None]) -> None:
        """Merge ``updates`` into the session's metadata atomically; a ``None`` value removes the key."""
        self._through(lambda: self._core.set_metadata(session_id, updates))

    def flush(self, timeout: float | None = None) -> None:
        """Return once every write acknowledged so far, by any process, is in the backing store
        (delivering what is pending itself); ``TimeoutError`` after ``timeout`` seconds."""
        if self._worker is None:
            raise RuntimeError(
                "flush needs a store made by from_url/from_cluster/from_sentinel with backing="
            )
        self._worker.flush(timeout)

    def save(self, session_id: SessionId | str, adapter: PersistenceAdapter) -> bool:
        """Write a snapshot of the session (as ``load`` sees it) to ``adapter``, replacing what it
        had for this id; ``False`` if the session is not in Redis."""
        session = self.load(session_id)
        if session is None:
            return False
        adapter.save_session(session.id, session.to_state())
        return True

    def restore(
        self, session_id: SessionId | str, adapter: PersistenceAdapter, *, replace: bool = False
    ) -> bool:
        """Put the session ``adapter`` holds back into Redis, in one atomic step, continuing from its
        stored seq; ``False`` if the adapter has none. ``SessionExists`` if the session is live in
        Redis, unless ``replace=True`` (watchers of the replaced session then end)."""
        sid = parse_session_id(session_id)
        state = adapter.load_session(sid)
        if state is None:
            return False
        self._run(restore_call(self._core, sid, state, replace))
        return True

    def list(self) -> Iterator[SessionId]:
        """Every session id under this store's prefix, found with SCAN (never KEYS).

        On a cluster every primary is scanned in turn."""
        seen = set[SessionId]()
        for node in self._scan_nodes():
            cursor = 0
            while True:
                cursor, found = self._run(self._core.scan(cursor), node)
                for sid in found:
                    if sid not in seen:
                        seen.add(sid)
                        yield sid
                if cursor == 0:
                    break

    def info(self, session_id: SessionId | str, *, memory: bool = False) -> SessionInfo | None:
        """What Redis holds of the session (counts, times, TTL; with ``memory``, its bytes), without
        reading its messages; ``None`` if Redis has none (a backing store is not consulted)."""
        return self._run(info(self._core, session_id, memory))

    def infos(self, *, memory: bool = False, count: int = 500) -> Iterator[SessionInfo]:
        """The ``SessionInfo`` of every session in Redis under this prefix: SCAN (every primary of
        a cluster), then one pipelined round trip per ``count`` sessions found."""
        if count < 1:
            raise ValueError(f"count must be >= 1, got {count!r}")
        page: list[SessionId] = []
        for sid in self.list():
            page.append(sid)
            if len(page) >= count:
                for item in self._run(info_page(self._core, page, memory)):
                    yield item
                page = []
        if page:
            for item in self._run(info_page(self._core, page, memory)):
                yield item

    def pop(self, session_id: SessionId | str) -> AgentMessage | None:
        """Remove the last message and return it (``None`` if there is none), atomically: two
        processes popping at once never get the same message, and a retried call does not pop a
        second one. It rewrites history: seq goes down by one and watchers end, as on a re-create.
        Not for durable sessions (``StoreError``): their backing store keeps every message."""
        return self._through(lambda: pop(self._core, session_id))

    def import_state(
        self, session_id: SessionId | str, state: SessionState, *, replace: bool = False
    ) -> bool:
        """Put a whole session (an export, a ``SessionState``) into Redis in one atomic step,
        keeping its seq and timestamps; ``False``, changing nothing, if the id exists already
        (so importing twice is harmless), unless ``replace``. A durable store writes it behind."""
        try:
            self._run(put(self._core, session_id, state, replace))
        except SessionExists:
            return False
        return True

    def watch(
        self,
        session_id: SessionId | str,
        after_seq: int = 0,
        *,
        timeout: float | None = None,
        poll_interval: float = 1.0,
    ) -> Generator[Appended, None, None]:
        """Every message appended after ``after_seq``, in order, each once, as soon as it is stored.

        Ends when the session is deleted (or recreated), or when ``timeout`` seconds pass without a
        new message. Notifications come over pub/sub, but each wake-up reads "everything after the
        last seq seen" from the list, so a lost notification or a reconnect delays, never skips;
        ``poll_interval`` bounds that delay. ``MessagesTrimmed`` if trimming removed the position.
        """
        sid = parse_session_id(session_id)
        channel = live_keys(self._core.prefix, sid)[1]
        if self._sharded is None:
            self._sharded = self._run(PUBSUB_PROBE) >= SHARDED_FROM
        pubsub = self._subscribe(sid, channel)
        seq, epoch = after_seq, None
        deadline = None if timeout is None else time.monotonic() + timeout
        try:
            while True:
                batch = self._run(read_after(self._core, sid, seq))
                if batch is None or epoch not in (None, batch.epoch):
                    return
                epoch = batch.epoch
                for item in batch.appended:
                    seq = item.seq
                    deadline = None if timeout is None else time.monotonic() + timeout
                    yield item
                if seq < batch.seq:
                    continue  # more than one read's worth: read on
                wait = poll_interval if deadline is None else min(poll_interval, deadline - time.monotonic())
                if wait <= 0:
                    return
                try:
                    if self._cluster and self._sharded:
                        pubsub.get_sharded_message(ignore_subscribe_messages=True, timeout=wait)
                    else:
                        pubsub.get_message(ignore_subscribe_messages=True, timeout=wait)
                except TRANSIENT:
                    with contextlib.suppress(*TRANSIENT):
                        pubsub.close()
                    pubsub = self._subscribe(sid, channel)
        finally:
            pubsub.close()

    def next_message(
        self, session_id: SessionId | str, after_seq: int, *, timeout: float
    ) -> Appended | None:
        """The first message after ``after_seq``, waiting up to ``timeout`` seconds; else ``None``."""
        watching = self.watch(session_id, after_seq, timeout=timeout)
        try:
            for item in watching:
                return item
            return None
        finally:
            watching.close()

    def lease(self, session_id: SessionId | str, owner: str, ttl: float | timedelta) -> Lease:
        """The session's turn lease for ``owner``: use it as a context manager (or ``acquire()``).

        While held, appends through ``lease.append`` carry its fencing token, and the append script
        refuses them (``LeaseLost``) once the lease expired or a newer holder took over.
        """
        if not isinstance(owner, str) or not owner:
            raise TypeError("a lease owner must be a non-empty str")
        return Lease(self, parse_session_id(session_id), owner, ttl_ms(ttl))

    def _subscribe(self, sid: SessionId, channel: str) -> Any:
        """A pub/sub connection listening on ``channel``; an outage is retried under the policy,
        then ``StoreUnavailable``, as for any call."""

        def subscribe() -> Any:
            pubsub = self.client.pubsub()  # type: ignore[no-untyped-call, unused-ignore]
            try:
                if self._sharded:
                    pubsub.ssubscribe(channel)
                else:
                    pubsub.subscribe(channel)
            except BaseException:
                pubsub.close()  # type: ignore[no-untyped-call, unused-ignore]
                raise
            return pubsub

        try:
            return subscribe()
        except TRANSIENT as exc:
            return self._retried("watch", sid, exc, subscribe)

    def close(self) -> None:
        """Close the clients this store created (``from_url``, ``from_cluster``, ``from_sentinel``)."""
        if self._worker is not None:
            self._worker.close()
        for client in self._owned:
            client.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


def _worker_options(options: dict[str, Any]) -> dict[str, Any]:
    """What the write-behind worker's own (synchronous) store is opened with: the caller's client
    options and the prefix."""
    worker = {k: v for k, v in options.items() if k not in _STORE_OPTIONS}
    return {**worker, "prefix": options.get("prefix", "rs")}


def _split_options(options: dict[str, Any]) -> dict[str, Any]:
    """Take the store's own options out of ``options``, and give the client our defaults:
    5 s socket timeouts (a stalled server cannot hang a caller) and, when the store retries,
    no retry of its own."""
    store_options = {k: options.pop(k) for k in _STORE_OPTIONS & options.keys()}
    for name, value in _TIMEOUTS.items():
        options.setdefault(name, value)
    if store_options.get("retry", _DEFAULT_RETRY) is not None:
        options["retry"] = NO_CLIENT_RETRY
    return store_options


class Lease:
    """A turn lease on one session, with its fencing token once acquired.

    ``with store.lease(sid, "worker-1", ttl=30) as lease: lease.append(message)``.
    Each acquisition gets a token greater than any before for this session; ``extend`` renews,
    leaving the context (or ``release``) gives the lease up early.
    """

    def __init__(self, store: SessionStore, sid: SessionId, owner: str, ttl_ms: int) -> None:
        self.store, self.session_id, self.owner, self.ttl_ms = store, sid, owner, ttl_ms
        self.token: int | None = None

    def acquire(self) -> Self:
        """Take the lease (``LeaseHeld`` if another owner holds it) and get a new fencing token."""
        self.token = self._call("acquire", self.ttl_ms)
        return self

    def extend(self, ttl: float | timedelta | None = None) -> None:
        """Renew the lease for ``ttl`` (default: the original ttl); ``LeaseLost`` if it is gone."""
        self._call("renew", self.ttl_ms if ttl is None else ttl_ms(ttl))

    def release(self) -> None:
        """Give the lease up now; ``LeaseLost`` if it had already expired or passed on."""
        if self.token is not None:
            self._call("release", 0)
            self.token = None

    def append(self, message: AgentMessage, *, expected_seq: int | None = None) -> int:
        """``store.append`` under this lease's fencing token."""
        return self.store.append(
            self.session_id, message, expected_seq=expected_seq, fence=self._token()
        )

    def extend_messages(
        self, messages: Iterable[AgentMessage], *, expected_seq: int | None = None
    ) -> int:
        """``store.extend`` under this lease's fencing token."""
        return self.store.extend(
            self.session_id, messages, expected_seq=expected_seq, fence=self._token()
        )

    def _token(self) -> int:
        if self.token is None:
            raise LeaseLost(self.session_id, None)
        return self.token

    def _call(self, action: str, ttl: int) -> int:
        call = lease_call(self.store._core, self.session_id, action, self.owner, self.token, ttl)
        return self.store._run(call)

    def __enter__(self) -> Self:
        return self.acquire()

    def __exit__(self, *exc_info: object) -> None:
        with contextlib.suppress(LeaseLost):  # expired meanwhile: nothing left to give up
            self.release()
