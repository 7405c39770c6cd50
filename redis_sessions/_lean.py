"""``LeanLine``: the short way to Redis for the calls that dominate, on the client's own pool.

GENERATED from ``_aio_lean.py`` by ``python tools/unasync.py``: do not edit; edit the source and
regenerate. See the source's docstring.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Sequence
from typing import Any, Final

import redis.exceptions
from hiredis import pack_command
from redis import Redis
from redis.cluster import RedisCluster


__all__ = ["UNSENT", "LeanLine"]

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


class LeanLine:
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

    def send(self, packed: bytes) -> Any:
        """The reply of ``packed`` (one command, ``_scripts.packed_evalsha``), or ``UNSENT`` (take the
        general path); see the module for faults."""
        if self.pool is None:
            return UNSENT
        return self._send(packed)

    def _send(self, packed: bytes) -> Any:
        """``packed`` alone, on the held connection when it is free, else on one from the pool."""
        pool = self.pool
        holding = self._holding
        if holding is not None and holding.acquire(blocking=False):
            try:
                return self._send_held([packed])
            finally:
                holding.release()
        connection = pool.get_connection()
        try:
            return _exchange(connection, [packed])
        finally:
            pool.release(connection)

    def _send_held(self, packed: list[bytes]) -> Any:
        """``packed`` on the held connection (the caller holds its lock): taken from the pool on
        first use and in a forked child, checked after an idle second, disconnected on a fault."""
        connection, now = self._held, time.monotonic()
        if connection is None or self._held_pid != os.getpid():
            connection = self._held = self.pool.get_connection()  # never released: held
            self._held_pid = os.getpid()
        elif now - self._held_used > _IDLE:
            self.pool.ensure_connection(connection)  # the server may have closed it meanwhile
        self._held_used = now
        return _exchange(connection, packed)  # a fault disconnects it: the next call reconnects

    def pipeline(self, commands: Sequence[tuple[Any, ...]]) -> Any:
        """The replies of ``commands`` pipelined in one round trip, or ``UNSENT`` when any was an
        error (the general way raises it as it always has, or loads a script that was missing)."""
        pool = self.pool
        if pool is None or not _plain(commands):
            return UNSENT
        packed = [b"".join([pack_command(command) for command in commands])]
        connection = pool.get_connection()
        try:
            connection.send_packed_command(packed)
            replies, refused = [], False
            for _ in commands:
                try:
                    replies.append(connection.read_response())
                except redis.exceptions.ResponseError:
                    refused = True
            return UNSENT if refused else replies
        except BaseException:
            connection.disconnect()  # as in send(): the connection may be mid-reply
            raise
        finally:
            pool.release(connection)

    def transaction(self, commands: Sequence[tuple[Any, ...]]) -> Any:
        """The replies of ``commands`` run as one MULTI/EXEC, or ``UNSENT``: anything refused (a
        command refused when queued, EXECABORT, an error among the replies) goes the general way,
        which raises it as it always has (or runs the read-only fallback when Redis is out of memory)."""
        pool = self.pool
        if pool is None or not _plain(commands):
            return UNSENT
        packed = [b"".join([_MULTI, *(pack_command(command) for command in commands), _EXEC])]
        connection = pool.get_connection()
        try:
            connection.send_packed_command(packed)
            refused = False
            for _ in range(len(commands) + 1):  # +OK, then QUEUED for each command
                try:
                    connection.read_response()
                except redis.exceptions.ResponseError:
                    refused = True
            try:
                replies = connection.read_response()
            except redis.exceptions.ResponseError:
                return UNSENT
            if refused or any(isinstance(reply, Exception) for reply in replies):
                return UNSENT
            return replies
        except BaseException:
            connection.disconnect()  # as in send(): the connection may be mid-reply
            raise
        finally:
            pool.release(connection)


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


def _exchange(connection: Any, packed: list[bytes]) -> Any:
    """Send ``packed`` (one command) on ``connection`` and read its reply; ``UNSENT`` for NOSCRIPT."""
    try:
        connection.send_packed_command(packed)
        return connection.read_response()
    except redis.exceptions.NoScriptError:
        return UNSENT
    except redis.exceptions.ResponseError:
        raise  # a whole reply was read: the connection is fine
    except BaseException:
        # A reply may be on its way or half read: the connection must not be used again as it is
        # (redis-py's own read does this for socket errors; cancellation and the rest too).
        connection.disconnect()
        raise
