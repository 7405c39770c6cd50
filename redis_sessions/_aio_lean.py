"""``AsyncLeanLine``: the short way to Redis for the calls that dominate, on the client's own pool.

redis-py spends more Python on a command (``execute_command``, packing each argument in Python,
response callbacks, its observability hooks) than Redis spends running an append script. For the
hot calls, the transport packs the command itself (``hiredis.pack_command``, one C call), sends it
on a connection of the client's own pool (``send_packed_command``) and reads the reply
(``read_response``): the pool's TLS, auth, timeouts and health checks all still apply; only the
per-command machinery is skipped.

A store that made its client (``from_url`` & co.) and is synchronous *holds* one connection for
this line instead of taking one from the pool per call (the pool's get and release cost ~5 us, more
than the script's own server time): one thread at a time uses it (a non-blocking lock; a call that
finds it taken goes by the pool as before); a forked child takes a fresh one (redis-py's pool
resets itself on a new pid); after a second idle it is checked as the pool checks its connections
(reconnected if the server closed it); a fault disconnects it, and the next call reconnects. Not
held: a client the caller passed in (its pool is theirs); RESP3 or a client-side cache (pushes and
invalidations the pool handles when it hands a connection out); a pool of fewer than 8 connections.

Nothing unusual is handled here. ``UNSENT`` tells the transport to take its general path (a client
this line does not serve, a server that lost the script: NOSCRIPT); a connection fault drops the
connection and is raised for the transport's retry policy, whose retries go the general way. What
Redis refused (OOM, READONLY, a script's error) is raised as redis-py raises it. A cluster client is
not served (MOVED/ASK and the slot map are redis-py's), nor one whose class overrides
``execute_command`` (its hooks would be skipped), nor one whose encoding is not UTF-8 (the encoding
``hiredis.pack_command`` uses).

This module is the source of ``_lean.py`` (``python tools/unasync.py``).
"""

from __future__ import annotations

import asyncio
import os
import threading
import time
from collections.abc import Awaitable, Sequence
from typing import Any, Final

import redis.exceptions
from hiredis import pack_command
from redis.asyncio import Redis
from redis.asyncio.cluster import RedisCluster

from ._aio_pipelining import AutoPipeline  # asyncio only: left out of _lean.py

__all__ = ["UNSENT", "AsyncLeanLine"]

UNSENT: Final[Any] = object()
"""``send``'s answer when it did not send: take the general path."""
_PLAIN: Final = frozenset({"HMGET", "LLEN", "LRANGE", "PTTL", "EVALSHA"})
"""Commands whose raw reply is what redis-py returns for them, in RESP2 and RESP3 alike (no response
callback changes them): the only ones sent in lean pipelines and transactions (HGETALL is a list in
RESP2, a dict once redis-py has parsed it)."""
_HOLD_FROM: Final = 8
"""The smallest pool (``max_connections``) a connection is held from (``_holdable``)."""
_IDLE: Final = 1.0
"""Seconds a held connection may idle before it is checked as the pool checks one it hands out."""
_MULTI: Final = pack_command(("MULTI",))
_EXEC: Final = pack_command(("EXEC",))


class AsyncLeanLine:
    """Sends pre-built commands of one store on its client's pool connections (see the module)."""

    def __init__(self, client: Redis | RedisCluster, hold: bool = False) -> None:
        encoding = client.get_encoder().encoding.lower().replace("_", "-")
        self.pool: Any = None
        if (
            isinstance(client, Redis)
            and type(client).execute_command is Redis.execute_command  # no subclass hooks bypassed
            and encoding in ("utf-8", "utf8")
        ):
            self.pool = client.connection_pool
        # The held connection (see the module): its lock, or None when this line holds none.
        self._holding: threading.Lock | None = None
        self._held: Any = None
        self._held_pid = 0
        self._held_used = 0.0
        if hold and self.pool is not None and _holdable(self.pool):
            self._holding = threading.Lock()
        # asyncio only
        self.pipelining = True  # concurrent sends of a loop coalesced into one write (_aio_pipelining)
        self._pipelines: dict[asyncio.AbstractEventLoop, AutoPipeline] = {}
        self._last: tuple[asyncio.AbstractEventLoop | None, AutoPipeline | None] = (None, None)
        # end asyncio only

    # asyncio only
    def _pipeline(self) -> AutoPipeline:
        """The running loop's auto-pipeline (futures and pool connections belong to one loop)."""
        loop = asyncio.get_running_loop()
        last_loop, last = self._last  # one tuple: read whole, even while another thread writes it
        if last_loop is loop and last is not None:
            return last
        pipeline = self._pipelines.get(loop)
        if pipeline is None:
            for closed in [other for other in self._pipelines if other.is_closed()]:
                del self._pipelines[closed]
            pipeline = self._pipelines[loop] = AutoPipeline(self.pool, loop)
        self._last = (loop, pipeline)
        return pipeline

    async def settled(self) -> None:
        """Return once this loop's auto-pipeline has no write in flight."""
        await self._pipeline().settled()

    # end asyncio only
    def send(self, packed: bytes) -> Awaitable[Any]:
        """The reply of ``packed`` (one command, ``_scripts.packed_evalsha``), or ``UNSENT`` (take the
        general path); see the module for faults."""
        # asyncio only
        if self.pipelining and self.pool is not None:
            # Others are sending: join this iteration's write (_aio_pipelining). Its future, awaited
            # by the transport with no frame of ours in between: an error reply (NOSCRIPT too) is
            # the reply then, an exception instance the transport raises.
            last_loop, pipeline = self._last  # _pipeline()'s first lines: a call fewer
            if last_loop is not asyncio.get_running_loop() or pipeline is None:
                pipeline = self._pipeline()
            joined = pipeline.join(packed)
            if joined is not None:
                return joined
        return self._alone(packed)

    async def _alone(self, packed: bytes) -> Any:
        """``send`` with no shared write to join: at once, on its own."""
        # end asyncio only
        if self.pool is None:
            return UNSENT
        # asyncio only
        if self.pipelining:
            pipeline = self._pipeline()
            pipeline.direct += 1  # a lone caller goes at once: no loop iteration to wait for
            try:
                return await self._send(packed)
            finally:
                pipeline.direct -= 1
        # end asyncio only
        return await self._send(packed)

    async def _send(self, packed: bytes) -> Any:
        """``packed`` alone, on the held connection when it is free, else on one from the pool."""
        pool = self.pool
        holding = self._holding
        if holding is not None and holding.acquire(blocking=False):
            try:
                return await self._send_held([packed])
            finally:
                holding.release()
        connection = await pool.get_connection()
        try:
            return await _exchange(connection, [packed])
        finally:
            await pool.release(connection)

    async def _send_held(self, packed: list[bytes]) -> Any:
        """``packed`` on the held connection (the caller holds its lock): taken from the pool on
        first use and in a forked child, checked after an idle second, disconnected on a fault."""
        connection, now = self._held, time.monotonic()
        if connection is None or self._held_pid != os.getpid():
            connection = self._held = await self.pool.get_connection()  # never released: held
            self._held_pid = os.getpid()
        elif now - self._held_used > _IDLE:
            await self.pool.ensure_connection(connection)  # the server may have closed it meanwhile
        self._held_used = now
        return await _exchange(connection, packed)  # a fault disconnects it: the next call reconnects

    async def pipeline(self, commands: Sequence[tuple[Any, ...]]) -> Any:
        """The replies of ``commands`` pipelined in one round trip, or ``UNSENT`` when any was an
        error (the general way raises it as it always has, or loads a script that was missing)."""
        pool = self.pool
        if pool is None or not _plain(commands):
            return UNSENT
        packed = [b"".join([pack_command(command) for command in commands])]
        connection = await pool.get_connection()
        try:
            await connection.send_packed_command(packed)
            replies, refused = [], False
            for _ in commands:
                try:
                    replies.append(await connection.read_response())
                except redis.exceptions.ResponseError:
                    refused = True
            return UNSENT if refused else replies
        except BaseException:
            await connection.disconnect()  # as in send(): the connection may be mid-reply
            raise
        finally:
            await pool.release(connection)

    async def transaction(self, commands: Sequence[tuple[Any, ...]]) -> Any:
        """The replies of ``commands`` run as one MULTI/EXEC, or ``UNSENT``: anything refused (a
        command refused when queued, EXECABORT, an error among the replies) goes the general way,
        which raises it as it always has (or runs the read-only fallback when Redis is out of memory)."""
        pool = self.pool
        if pool is None or not _plain(commands):
            return UNSENT
        packed = [b"".join([_MULTI, *(pack_command(command) for command in commands), _EXEC])]
        connection = await pool.get_connection()
        try:
            await connection.send_packed_command(packed)
            refused = False
            for _ in range(len(commands) + 1):  # +OK, then QUEUED for each command
                try:
                    await connection.read_response()
                except redis.exceptions.ResponseError:
                    refused = True
            try:
                replies = await connection.read_response()
            except redis.exceptions.ResponseError:
                return UNSENT
            if refused or any(isinstance(reply, Exception) for reply in replies):
                return UNSENT
            return replies
        except BaseException:
            await connection.disconnect()  # as in send(): the connection may be mid-reply
            raise
        finally:
            await pool.release(connection)


def _holdable(pool: Any) -> bool:
    """A pool that may lend this line a connection for good: RESP2 (nothing arrives unasked: no
    pushes, no maintenance notifications), no client-side cache, and room for at least
    ``_HOLD_FROM`` connections (the held one is one fewer for every other call, pub/sub included)."""
    return (
        getattr(pool, "cache", None) is None
        and pool.connection_kwargs.get("protocol") in (None, 2, "2")
        and getattr(pool, "max_connections", 0) >= _HOLD_FROM
    )


def _plain(commands: Sequence[tuple[Any, ...]]) -> bool:
    return all(command[0] in _PLAIN for command in commands)


async def _exchange(connection: Any, packed: list[bytes]) -> Any:
    """Send ``packed`` (one command) on ``connection`` and read its reply; ``UNSENT`` for NOSCRIPT."""
    try:
        await connection.send_packed_command(packed)
        return await connection.read_response()
    except redis.exceptions.NoScriptError:
        return UNSENT
    except redis.exceptions.ResponseError:
        raise  # a whole reply was read: the connection is fine
    except BaseException:
        # A reply may be on its way or half read: the connection must not be used again as it is
        # (redis-py's own read does this for socket errors; cancellation and the rest too).
        await connection.disconnect()
        raise
