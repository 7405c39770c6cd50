"""Each redis-py workaround in ``redis_sessions.compat`` is still needed by the installed redis-py;
when one of these fails, redis-py fixed the bug (or changed): remove or re-check the workaround."""

from __future__ import annotations

import asyncio
from types import SimpleNamespace
from typing import Any

import hiredis
import pytest
import redis
import redis.asyncio
import redis.asyncio.retry
import redis.retry
from redis._parsers.hiredis import NOT_ENOUGH_DATA
from redis.backoff import NoBackoff

from redis_sessions.compat import CHECKED_UP_TO, REDIS_PY, FastLane, turn_off_client_retry
from redis_sessions.retry import NO_CLIENT_RETRY


def test_the_installed_redis_py_is_one_the_workarounds_were_checked_against() -> None:
    assert (5, 2) <= REDIS_PY <= CHECKED_UP_TO, (
        f"redis-py {redis.__version__}: check each workaround in redis_sessions/compat.py against it,"
        " then raise CHECKED_UP_TO"
    )


def test_sync_set_retry_still_fails_on_a_blocking_pool() -> None:
    client = redis.Redis.from_pool(redis.BlockingConnectionPool())  # type: ignore[no-untyped-call]
    try:
        client.set_retry(redis.retry.Retry(NoBackoff(), 0))
    except AttributeError:
        pass  # still broken: turn_off_client_retry's fallback is needed
    else:
        raise AssertionError("redis-py's set_retry works on a BlockingConnectionPool now: drop the fallback")
    finally:
        client.close()


def test_turn_off_client_retry_reaches_a_blocking_pools_connections() -> None:
    client = redis.Redis.from_pool(redis.BlockingConnectionPool())  # type: ignore[no-untyped-call]
    try:
        turn_off_client_retry(client, NO_CLIENT_RETRY)
        assert client.get_connection_kwargs()["retry"] is NO_CLIENT_RETRY
    finally:
        client.close()


def test_driver_fault_names_the_module_it_matches() -> None:
    # driver_fault matches tracebacks ending in redis-py's connection modules: they must exist.
    import redis.asyncio.connection
    import redis.connection

    assert redis.connection.__file__ is not None
    assert redis.connection.__file__.endswith("connection.py")
    assert redis.asyncio.connection.__file__ is not None
    assert redis.asyncio.connection.__file__.endswith("connection.py")


class _Push(list[Any]):
    """What hiredis's reader makes of a RESP3 push (a list of its own type)."""


class _Parser:
    _hiredis_PushNotificationType = _Push

    def __init__(self) -> None:
        self.handled: list[Any] = []

    async def handle_push_response(self, push: Any) -> None:
        self.handled.append(push)


def test_deliver_hands_buffered_replies_on_and_stops_at_a_push_or_the_end() -> None:
    """``FastLane.deliver``: each buffered reply to its future in order; a push is kept for the
    parser's handler (``fill`` runs it, then delivering goes on); a reply not all in stops it."""

    async def main() -> None:
        loop = asyncio.get_running_loop()
        push = _Push([b"invalidate", [b"k"]])
        buffered = iter([b"a", push, b"b", NOT_ENOUGH_DATA])
        parser = _Parser()
        lane = FastLane(None, None, parser, SimpleNamespace(gets=lambda: next(buffered), feed=None))
        futures = [loop.create_future() for _ in range(3)]
        futures[0].cancel()  # a caller that gave up: its reply is read all the same
        assert lane.deliver(futures, 0) == 1
        assert not futures[1].done()
        await lane.fill()
        assert parser.handled == [push]
        assert lane.deliver(futures, 1) == 2, "b, then nothing more buffered"
        assert futures[1].result() == b"b"
        broken = iter([redis.exceptions.ConnectionError("gone")])
        lane = FastLane(None, None, parser, SimpleNamespace(gets=lambda: next(broken), feed=None))
        with pytest.raises(redis.exceptions.ConnectionError):
            lane.deliver(futures, 2)

    asyncio.run(main())


def test_fill_reads_the_stream_into_the_reader_and_a_closed_stream_is_a_connection_error() -> None:
    async def main() -> None:
        reader = hiredis.Reader(notEnoughData=NOT_ENOUGH_DATA)  # as redis-py makes it
        stream = asyncio.StreamReader()
        lane = FastLane(None, stream, _Parser(), reader)
        futures = [asyncio.get_running_loop().create_future() for _ in range(3)]
        stream.feed_data(b"+PONG\r\n:4")
        await lane.fill()
        assert lane.deliver(futures, 0) == 1, "half a reply is not one"
        stream.feed_data(b"2\r\n")
        await lane.answer(futures[1:2])
        assert [future.result() for future in futures[:2]] == [b"PONG", 42]
        stream.feed_eof()
        with pytest.raises(redis.exceptions.ConnectionError):
            await lane.answer(futures[2:])

    asyncio.run(main())
