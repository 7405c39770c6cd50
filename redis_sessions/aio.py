"""``AsyncSessionStore``: the session store over ``redis.asyncio``.

This module is the source of ``store.py`` (``python tools/unasync.py``; a test fails when the two
differ). Everything but the sending lives in ``_core``; a method here builds a call and sends it.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable, Mapping, Sequence
from datetime import timedelta
from typing import TYPE_CHECKING, Any, Self

from redis.asyncio import Redis
from redis.asyncio.cluster import RedisCluster

from . import _read as read
from . import _write as write
from ._aio_base import AsyncStoreBase
from ._aio_lease import AsyncLease
from ._aio_open import open_client
from ._aio_recovery import RECOVERABLE, AsyncRecovery
from ._aio_tool_call import AsyncToolCall
from ._aio_transport import AsyncTransport
from ._core import (
    DEFAULT_CACHE_MESSAGES,
    DEFAULT_MAX_MESSAGE_BYTES,
    Messages,
    check_client,
    ttl_ms,
)
from ._replication import wait_for
from .cache import HistoryCache
from .config import DEFAULT_RETRY, StoreConfig
from .encryption import Encryption
from .errors import InvalidArgumentType, InvalidOperation
from .keys import session_id as parse_session_id
from .models import AgentMessage, Session, SessionId
from .retry import ASYNC_NO_CLIENT_RETRY, RetryPolicy, turn_off_client_retry
from .store import SessionStore as SyncStore
from .tokens import TokenCounter, estimate_tokens

if TYPE_CHECKING:
    from .persistence import PersistenceAdapter
    from .telemetry import Telemetry
    from .tenant import TenantQuota
    from .writebehind import SyncWorker

__all__ = ["AsyncLease", "AsyncSessionStore", "AsyncToolCall"]


class AsyncSessionStore(AsyncStoreBase):
    """Conversations in Redis, shared safely by many processes.

    The options are ``StoreConfig``'s (``redis_sessions.config``), each documented there; kept as
    ``config``. ``retry`` is the one retry policy for transport errors: the store turns the client's
    own retry off; with ``retry=None`` the store does not retry, and leaves the client's retry alone.
    ``client`` is a ``Redis`` (also one from a ``Sentinel``) or a ``RedisCluster``; ``from_url``,
    ``from_cluster`` and ``from_sentinel`` build one with sensible timeouts.

    ``backing`` (a ``redis_sessions.persistence`` adapter) makes Redis the cache of a durable
    store: sessions this store creates are written behind to it, a session Redis lacks is read
    through from it, and ``delete`` removes both copies. ``from_url`` & co. also start a
    write-behind worker thread; see the docs' *Durability* page. The one rule for persistence in the
    asyncio store: ``backing`` is a synchronous ``PersistenceAdapter`` (the write-behind worker is a
    thread, and read-through runs it in ``asyncio.to_thread``); ``save`` and ``restore``, which the
    caller awaits, take an ``AsyncPersistenceAdapter``.
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
        retry: RetryPolicy | None = DEFAULT_RETRY,
        wait_replicas: int = 0,
        wait_timeout: float | timedelta = 1.0,
        backing: PersistenceAdapter | None = None,
        encryption: Encryption | None = None,
        token_counter: TokenCounter = estimate_tokens,
        telemetry: Telemetry | None = None,
        max_session_bytes: int | None = None,
        tenant_quota: TenantQuota | None = None,
    ) -> None:
        check_client(client)
        self.config = StoreConfig(
            prefix=prefix,
            ttl=ttl,
            max_messages=max_messages,
            codec=codec,
            max_message_bytes=max_message_bytes,
            cache_messages=cache_messages,
            retry=retry,
            wait_replicas=wait_replicas,
            wait_timeout=wait_timeout,
            backing=backing,
            encryption=encryption,
            token_counter=token_counter,
            telemetry=telemetry,
            max_session_bytes=max_session_bytes,
            tenant_quota=tenant_quota,
        )
        self._core = self.config.core(cluster=isinstance(client, RedisCluster))
        self.client = client
        # Decoded histories for re-reads: the store's own state (the core keeps none).
        self._cache = HistoryCache(cache_messages) if cache_messages > 0 else None
        wait = wait_for(wait_replicas, wait_timeout)
        self.transport = AsyncTransport(client, self._core, retry, wait, telemetry)
        """Sends this store's calls: for components that are not the store (the sync worker...)."""
        self._recovery = AsyncRecovery(self.transport, backing)
        self._backing = backing
        self._worker: SyncWorker | None = None
        # One retry layer: ours. (Only when not already off: a BlockingConnectionPool cannot
        # take a new retry in redis-py 8.1.)
        if retry is not None:
            turn_off_client_retry(client, ASYNC_NO_CLIENT_RETRY)

    @classmethod
    def from_url(cls, url: str, **options: Any) -> Self:
        """A store with its own client for ``url`` (``redis://``, ``rediss://``, ``unix://``).

        Options that are ``StoreConfig`` fields configure the store; every other option goes to
        redis-py's connection pool. Socket timeouts default to 5 s so a stalled server cannot hang a
        caller. The pool blocks (up to ``timeout``, 20 s) when all ``max_connections`` (50) are
        busy, instead of failing the call: more concurrent callers than connections wait their turn.
        An asyncio store made here (or by ``from_cluster``/``from_sentinel``) works from any event
        loop: each loop gets such a client of its own (the docs' *Store* page, "Event loops").
        """
        return cls._opening("from_url", (url,), options)

    @classmethod
    def from_cluster(cls, url: str, **options: Any) -> Self:
        """A store on a Redis Cluster, found through any one node's ``url`` (``redis://host:port``).

        The cluster client discovers the other nodes, sends each call to the primary of the
        session's slot and follows MOVED/ASK itself; every key of a session shares one slot.
        Options that are ``StoreConfig`` fields configure the store; the rest go to ``RedisCluster``.
        """
        return cls._opening("from_cluster", (url,), options)

    @classmethod
    def from_sentinel(cls, sentinels: Sequence[tuple[str, int]], service_name: str, **options: Any) -> Self:
        """A store on the primary that Redis Sentinel names for ``service_name``.

        ``sentinels`` are ``(host, port)`` pairs. After a failover the client asks the sentinels
        again and follows the new primary. ``sentinel_kwargs`` (a dict) configures the connections
        to the sentinels; options that are not ``StoreConfig`` fields go to the primary's connections.
        """
        return cls._opening("from_sentinel", (sentinels, service_name), options)

    @classmethod
    def _opening(cls, opener: str, args: tuple[Any, ...], options: dict[str, Any]) -> Self:
        """A store on a client of its own (``_open``), able to open another like it (another loop)."""
        config, given = StoreConfig.split(options)
        client_options = config.client_options(given, ASYNC_NO_CLIENT_RETRY)
        client, owned = open_client(opener, args, client_options)
        store = cls(client, **config.store_options())
        store.transport.clients.own(owned, lambda: open_client(opener, args, client_options))
        return store._behind(opener, args, given)

    def _behind(self, opener: str, args: tuple[Any, ...], given: dict[str, Any]) -> Self:
        """With a backing store, start the write-behind worker: a thread with its own connections."""
        if self._backing is not None:
            config = self.config  # (tenant_quota: the worker's repairs keep the tenant's ledgers)
            options = {**given, "prefix": config.prefix, "telemetry": config.telemetry}
            options["tenant_quota"] = config.tenant_quota
            own = getattr(SyncStore, opener)(*args, **options)  # the worker's: a sync store, always
            from .writebehind import SyncWorker  # here: a store without a backing never loads it

            self._worker = SyncWorker.open(own, self._backing).start()
            if self.config.telemetry is not None:
                self.config.telemetry.watch_worker(self._worker)
            self._recovery.worker = self._worker
        return self

    async def create(
        self,
        model: str = "",
        max_turns: int = 0,
        system_message: str | None = None,
        *,
        metadata: Mapping[str, str] | None = None,
        session_id: SessionId | str | None = None,
    ) -> SessionId:
        """Create a session and return its id; ``SessionExists`` if ``session_id`` is taken."""
        call = write.create(self._core, model, max_turns, system_message, metadata, session_id)
        return await self._run(call)

    async def append(
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
            return await self._run(write.extend(self._core, session_id, (message,), expected_seq, fence))
        except RECOVERABLE as exc:
            return await self._recovery.recover(
                exc, lambda: write.extend(self._core, session_id, (message,), expected_seq, fence)
            )

    async def extend(
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
            return await self._run(write.extend(self._core, session_id, messages, expected_seq, fence))
        except RECOVERABLE as exc:
            return await self._recovery.recover(
                exc, lambda: write.extend(self._core, session_id, messages, expected_seq, fence)
            )

    async def messages(
        self, session_id: SessionId | str, start: int = 0, stop: int | None = None
    ) -> Messages:
        """The stored messages ``[start:stop]`` (Python slice rules); only that range is read."""
        try:
            return await self._run(read.messages(self._core, session_id, start, stop, self._cache))
        except RECOVERABLE as exc:
            return await self._recovery.recover(
                exc, lambda: read.messages(self._core, session_id, start, stop, self._cache)
            )

    async def load(self, session_id: SessionId | str) -> Session | None:
        """The whole session as one consistent snapshot, or ``None`` if there is none."""
        return await self._recovery.through(
            lambda: read.load(self._core, session_id, self._cache), lambda found: found is None
        )

    async def exists(self, session_id: SessionId | str) -> bool:
        """Whether the session exists."""
        return await self._recovery.through(
            lambda: read.exists(self._core, session_id), lambda found: not found
        )

    async def delete(self, session_id: SessionId | str) -> bool:
        """Delete the session and its messages; ``False`` if there was none."""
        call = write.delete(self._core, session_id)
        if self._cache is not None:
            self._cache.discard(parse_session_id(session_id))
        deleted = await self._run(call)
        if self._backing is None:
            return deleted
        stored = await asyncio.to_thread(self._backing.delete_session, parse_session_id(session_id))
        return deleted or stored

    async def set_metadata(self, session_id: SessionId | str, updates: Mapping[str, str | None]) -> None:
        """Merge ``updates`` into the session's metadata atomically; a ``None`` value removes the key."""
        await self._recovery.through(lambda: write.set_metadata(self._core, session_id, updates))

    async def flush(self, timeout: float | None = None) -> None:
        """Return once every write acknowledged so far, by any process, is in the backing store
        (delivering what is pending itself); ``TimeoutError`` after ``timeout`` seconds."""
        if self._worker is None:
            raise InvalidOperation(
                "flush needs a store made by from_url/from_cluster/from_sentinel with backing="
            )
        await asyncio.to_thread(self._worker.flush, timeout)

    def lease(self, session_id: SessionId | str, owner: str, ttl: float | timedelta) -> AsyncLease:
        """The session's turn lease for ``owner``: use it as a context manager (or ``acquire()``).

        While held, appends through ``lease.append`` carry its fencing token, and the append script
        refuses them (``LeaseLost``) once the lease expired or a newer holder took over.
        """
        if not isinstance(owner, str) or not owner:
            raise InvalidArgumentType("a lease owner must be a non-empty str")
        return AsyncLease(self, parse_session_id(session_id), owner, ttl_ms(ttl))

    async def aclose(self) -> None:
        """Close the clients this store created (``from_url``, ``from_cluster``, ``from_sentinel``),
        in every event loop it was used from (``_loops``)."""
        if self._worker is not None:
            await asyncio.to_thread(self._worker.close)
        await self.transport.clients.aclose()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()
