"""``AutoPipeline`` (``_aio_pipelining``) on a pool whose connections answer when a test says so:
which connection each shared write takes, what each caller gets, and what goes back to the pool."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import redis.exceptions

from redis_sessions._aio_pipelining import AutoPipeline

REFUSED = redis.exceptions.ResponseError("refused for this one")


class Connection:
    """Commands are single letters; once ``gate`` is open each read answers the next one sent:
    ``E`` with an error reply, ``X`` with a connection fault, any other with itself in lower case
    (no fast lane for this class: the public ``send_packed_command``/``read_response`` path)."""

    socket_timeout = 5.0

    def __init__(self) -> None:
        self.gate = asyncio.Event()
        self.sent: list[bytes] = []
        self.unread: list[int] = []
        self.disconnected = False

    async def send_packed_command(self, command: list[bytes], check_health: bool = True) -> None:
        self.sent += command
        self.unread += b"".join(command)

    async def read_response(self, timeout: float | None = None) -> Any:
        await self.gate.wait()
        letter = bytes([self.unread.pop(0)])
        if letter == b"E":
            raise REFUSED
        if letter == b"X":
            raise redis.exceptions.ConnectionError("dropped")
        return letter.lower()

    async def disconnect(self) -> None:
        self.disconnected = True


class Pool:
    def __init__(self) -> None:
        self.made: list[Connection] = []
        self.out: set[Connection] = set()

    async def get_connection(self) -> Connection:
        connection = Connection()
        self.made.append(connection)
        self.out.add(connection)
        return connection

    async def release(self, connection: Connection) -> None:
        self.out.discard(connection)


async def _until(condition: Callable[[], bool]) -> None:
    """Let the loop run until ``condition`` holds (a bounded number of iterations, no clock)."""
    for _ in range(100):
        if condition():
            return
        await asyncio.sleep(0)
    raise AssertionError("the pipeline never got there")


async def test_a_write_read_while_more_is_in_flight_lends_its_connection_to_the_next() -> None:
    pool = Pool()
    pipeline = AutoPipeline(pool, asyncio.get_running_loop())
    first = pipeline.submit(b"A")
    await _until(lambda: len(pool.made) == 1 and pool.made[0].sent == [b"A"])
    second = pipeline.submit(b"B")  # while the first is in flight: a write of its own
    await _until(lambda: len(pool.made) == 2 and pool.made[1].sent == [b"B"])
    one, two = pool.made
    one.gate.set()
    assert await first == b"a"
    assert one in pool.out, "kept while the second write is in flight"
    third = pipeline.submit(b"C")
    await _until(lambda: one.sent == [b"A", b"C"])
    assert len(pool.made) == 2, "the third write took the first's connection, not a new one"
    two.gate.set()
    assert await second == b"b"
    assert await third == b"c"
    await pipeline.settled()
    assert pool.out == set(), "every connection went back once nothing was in flight"
    assert pipeline.spare == []


async def test_each_caller_of_a_shared_write_gets_its_own_reply_or_error() -> None:
    pool = Pool()
    pipeline = AutoPipeline(pool, asyncio.get_running_loop())
    futures = [pipeline.submit(packed) for packed in (b"A", b"E", b"C")]
    await _until(lambda: len(pool.made) == 1 and pool.made[0].sent == [b"AEC"])
    pool.made[0].gate.set()
    assert await asyncio.gather(*futures) == [b"a", REFUSED, b"c"]
    await pipeline.settled()
    assert pool.out == set()
    assert not pool.made[0].disconnected, "an error reply leaves the connection in step"


async def test_a_fault_fails_every_caller_of_its_write_and_the_connection_is_not_lent() -> None:
    pool = Pool()
    pipeline = AutoPipeline(pool, asyncio.get_running_loop())
    first = [pipeline.submit(b"X"), pipeline.submit(b"A")]
    await _until(lambda: len(pool.made) == 1 and pool.made[0].sent == [b"XA"])
    second = pipeline.submit(b"B")
    await _until(lambda: len(pool.made) == 2)
    one = pool.made[0]
    one.gate.set()
    outcomes = await asyncio.gather(*first, return_exceptions=True)
    assert all(isinstance(outcome, redis.exceptions.ConnectionError) for outcome in outcomes), outcomes
    assert one.disconnected, "dropped"
    assert one not in pool.out, "given back, never lent"
    third = pipeline.submit(b"C")
    await _until(lambda: len(pool.made) == 3)
    for connection in pool.made[1:]:
        connection.gate.set()
    assert [await second, await third] == [b"b", b"c"]
    await pipeline.settled()
    assert pool.out == set()
    assert pipeline.spare == []


async def test_join_queues_only_while_something_is_queued_or_in_flight() -> None:
    pool = Pool()
    pipeline = AutoPipeline(pool, asyncio.get_running_loop())
    assert pipeline.join(b"A") is None, "nothing queued or in flight: the caller goes on its own"
    assert pool.made == []
    pipeline.direct += 1  # a caller gone on its own, still in flight
    first = pipeline.join(b"A")
    pipeline.direct -= 1
    assert first is not None
    second = pipeline.join(b"B")  # queued in the same iteration: the same write
    assert second is not None
    await _until(lambda: len(pool.made) == 1 and pool.made[0].sent == [b"AB"])
    pool.made[0].gate.set()
    assert [await first, await second] == [b"a", b"b"]
    await pipeline.settled()
    assert pipeline.join(b"C") is None, "all done: alone again"
    assert pool.out == set()
