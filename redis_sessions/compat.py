"""Workarounds for redis-py, quarantined: each names the versions it is for, and a test in
``tests/unit/test_compat.py`` fails once the installed redis-py no longer needs it (or is outside
the versions it was checked against), so that it is re-examined rather than carried on forever.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Sequence
from typing import Any, Final

import redis
import redis.asyncio.connection

try:  # what redis-py's hiredis reader returns for a reply not all in yet (5.2 to 8.2)
    from redis._parsers.hiredis import NOT_ENOUGH_DATA as _NOT_ENOUGH_DATA
except ImportError:  # pragma: no cover - a redis-py that moved it: fast_lane is then off
    _NOT_ENOUGH_DATA = None

__all__ = [
    "CHECKED_UP_TO",
    "REDIS_PY",
    "FastLane",
    "broken_connection",
    "driver_fault",
    "fast_lane",
    "turn_off_client_retry",
]

REDIS_PY: Final = tuple(int(part) for part in redis.__version__.split(".")[:2] if part.isdigit())
"""The installed redis-py as (major, minor)."""

CHECKED_UP_TO: Final = (8, 2)
"""The newest redis-py these workarounds were checked against (``tests/unit/test_compat.py``)."""

_CONNECTION_MODULES: Final = (
    os.path.join("redis", "connection.py"),
    os.path.join("redis", "asyncio", "connection.py"),
)


def turn_off_client_retry(client: Any, off: Any) -> None:
    """Give ``client`` (a Redis or RedisCluster, sync or asyncio) the ``off`` retry (no retries).

    redis-py 8.1 and 8.2: the synchronous ``set_retry`` fails on a ``BlockingConnectionPool`` (it
    walks a list that pool does not have); such a pool then gets the setting for the connections it
    makes from now on, and the ones it has already get it directly.
    """
    if hasattr(client, "get_retry"):
        if client.get_retry() is off:
            return
        try:
            client.set_retry(off)
        except AttributeError:
            client.get_connection_kwargs()["retry"] = off
            for connection in list(getattr(client.connection_pool, "_connections", ())):
                connection.retry = off
    else:  # a cluster client keeps its retry on itself
        client.set_retry(off)


def driver_fault(error: BaseException) -> bool:
    """An ``AttributeError``/``TypeError`` raised inside redis-py's connection code itself.

    redis-py 8.1 and 8.2: the asyncio cluster client sometimes sends on a connection whose stream
    another task has just reset, when many tasks make their first calls at once (``'NoneType'
    object has no attribute 'writelines'``; redis-py #3546 is a sibling). The connection is broken,
    not the call: the stores treat this as a connection error, which their retry policy handles.
    """
    if not isinstance(error, AttributeError | TypeError):
        return False
    tb = error.__traceback__
    while tb is not None and tb.tb_next is not None:
        tb = tb.tb_next
    return tb is not None and tb.tb_frame.f_code.co_filename.endswith(_CONNECTION_MODULES)


def broken_connection(error: BaseException) -> redis.exceptions.ConnectionError:
    """A ``driver_fault``, as the connection error it stands for (what the retry policy retries)."""
    broken = redis.exceptions.ConnectionError(f"redis-py connection fault: {error!r}")
    broken.__cause__ = error
    return broken


_READ_RESPONSE: Final = redis.asyncio.connection.AbstractConnection.read_response
_CONNECTION_ERROR: Final = redis.exceptions.ConnectionError


class FastLane:
    """Writes and reads of one asyncio pool connection without redis-py's per-call machinery.

    Not a fix but a reach, quarantined here all the same (redis-py 5.2 to ``CHECKED_UP_TO``): an
    asyncio connection can only ``send_packed_command`` (an ``asyncio.wait_for``, so a task and a
    loop iteration of its own, per write) and ``read_response`` (~1 us of checks per reply). The
    auto-pipeline (``_aio_pipelining``) writes one buffer for many callers and reads their replies
    back to back; this does both on the connection's own stream and hiredis reader, under the
    caller's deadline. What ``read_response`` does that matters here is kept: an error reply is
    handed back as redis-py's exception instance, a ``ConnectionError`` reply raised, a RESP3 push
    handed to the parser's own handler, a closed stream a ``ConnectionError``; more of the replies
    are read from the connection's stream into the hiredis reader as its parser reads them
    (``read_response`` wraps that in three coroutines and an error message formatted a read).
    ``tests/unit/test_compat.py`` fails when redis-py no longer has what this reaches for.
    """

    __slots__ = ("_feed", "_gets", "_handle_push", "_push_type", "_pushes", "_size", "_stream", "_writer")

    def __init__(self, writer: Any, stream: Any, parser: Any, reader: Any, size: int = 65536) -> None:
        self._writer, self._stream, self._size = writer, stream, size
        self._gets, self._feed = reader.gets, reader.feed
        self._push_type = getattr(parser, "_hiredis_PushNotificationType", None)
        self._handle_push = getattr(parser, "handle_push_response", None)
        self._pushes: list[Any] = []

    async def send(self, data: bytes) -> None:
        """Write ``data``; wait only if the socket's buffer is full (an ``OSError`` on a fault). As
        redis-py's own write: a stream the server closed is a ``ConnectionError`` before writing."""
        writer = self._writer
        transport = getattr(writer, "transport", None)
        if transport is not None and transport.is_closing():
            raise redis.exceptions.ConnectionError("Connection closed by the server before write")
        try:
            writer.writelines((data,))
            await writer.drain()
        except (TypeError, AttributeError) as exc:  # CPython before gh-136234, as redis-py says it
            if transport is not None and transport.is_closing():
                closed = "Connection closed by the server while writing"
                raise redis.exceptions.ConnectionError(closed) from exc
            raise

    def deliver(self, futures: Sequence[asyncio.Future[Any]], start: int) -> int:
        """Hand the buffered replies to ``futures[start:]`` in order, in one call for a whole batch
        (a call a reply cost more than its checks); the index of the first future left without one
        (``len(futures)``: none). A push is kept for ``fill``; a ``ConnectionError`` reply (or one
        first in a list reply) is raised, as redis-py's ``read_response`` raises it."""
        gets, push_type, at, end = self._gets, self._push_type, start, len(futures)
        while at < end:
            reply = gets()
            if reply is _NOT_ENOUGH_DATA:
                break
            # A plain list (most replies) is neither a push (a list of its own type) nor an error.
            if type(reply) is not list or (reply and isinstance(reply[0], _CONNECTION_ERROR)):
                if push_type is not None and isinstance(reply, push_type):
                    self._pushes.append(reply)  # for the parser's handler (fill)
                    break
                if isinstance(reply, _CONNECTION_ERROR):
                    raise reply
                if type(reply) is list:
                    raise reply[0]
            future = futures[at]
            if not future.done():
                future.set_result(reply)
            at += 1
        return at

    async def fill(self) -> None:
        """Wait for more replies: the parser's handler runs on the pushes ``deliver`` kept
        (what follows them may be buffered already), else what the stream has is read into the
        reader. A stream the server closed is redis-py's ``ConnectionError``; a socket's fault is
        its ``OSError``, which the caller turns into one."""
        if self._pushes:
            pushes, self._pushes = self._pushes, []
            for push in pushes:
                if self._handle_push is not None:
                    await self._handle_push(push)
            return
        data = await self._stream.read(self._size)
        if not data:
            raise redis.exceptions.ConnectionError("Connection closed by server.")
        self._feed(data)

    async def answer(self, futures: Sequence[asyncio.Future[Any]]) -> None:
        """Hand ``futures`` their replies in order, reading more as they come in."""
        done = self.deliver(futures, 0)  # what is buffered already, in one call
        while done < len(futures):
            await self.fill()
            done = self.deliver(futures, done)


def fast_lane(connection: Any) -> FastLane | None:
    """``connection``'s ``FastLane``, or ``None`` (use its public methods): a redis-py these reaches
    were not checked against, a parser other than its hiredis one, a connection not open, or one
    whose class reads replies its own way (fakeredis's: its stream holds no bytes)."""
    if _NOT_ENOUGH_DATA is None or not (5, 2) <= REDIS_PY <= CHECKED_UP_TO:
        return None
    if type(connection).read_response is not _READ_RESPONSE:
        return None
    parser = getattr(connection, "_parser", None)
    writer, stream = getattr(connection, "_writer", None), getattr(connection, "_reader", None)
    reader = getattr(parser, "_reader", None)
    if type(parser).__name__ != "_AsyncHiredisParser" or writer is None or stream is None or reader is None:
        return None
    return FastLane(writer, stream, parser, reader, getattr(parser, "_read_size", 65536))
