"""``AutoPipeline``: concurrent hot calls of one event loop coalesced into one write (asyncio only).

Fifty tasks appending at once would take fifty pool connections and make fifty writes and fifty
reads, each paying redis-py's and the event loop's overhead. Instead, what the lean line is asked
to send during one iteration of the loop is queued; at the end of the iteration (``call_soon``) the
queue goes out as one pipelined write on one pool connection (``compat.fast_lane``: on its stream,
without redis-py's per-write task and per-reply checks), and the replies are read back in order
under one deadline, each handed to its own caller: its reply, or its own error (a script's
refusal, NOSCRIPT) as a reply value for the caller to raise. A connection fault or the deadline
fails every caller of that write with redis-py's ``ConnectionError``/``TimeoutError``, which their
transport retries the general way (appends are idempotent, reads are reads). Several writes may be
in flight at once, each on its own connection. This is what ioredis calls ``enableAutoPipelining``.

One ``AutoPipeline`` serves one event loop (the lean line keeps one per loop): futures, tasks and
the connections of an asyncio pool belong to the loop that made them.
"""

from __future__ import annotations

import asyncio
import math
from typing import Any

import redis.exceptions

from .compat import fast_lane

__all__ = ["AutoPipeline"]


class AutoPipeline:
    """The commands queued in this loop iteration, and the writes in flight (see the module)."""

    def __init__(self, pool: Any, loop: asyncio.AbstractEventLoop) -> None:
        self.pool = pool
        self.loop = loop
        # This iteration's commands and, at the same positions, their callers' futures.
        self.queue: list[bytes] = []
        self.futures: list[asyncio.Future[Any]] = []
        self.writes: set[asyncio.Task[None]] = set()  # held: the loop keeps only weak references
        self.direct = 0  # calls the lean line sent on their own, not queued here, still in flight
        # Connections whose write was read while more was queued or in flight: the next write takes
        # one instead of the pool's (its get and release cost ~13 us); all go back once idle.
        self.spare: list[Any] = []
        self.flying = 0  # writes not yet done (``writes`` keeps a task until its done callback runs)

    def join(self, packed: bytes, always: bool = False) -> asyncio.Future[Any] | None:
        """``submit(packed)`` when anything is queued or in flight (or ``always``); ``None`` when
        nothing is: the caller may go at once on its own (a lone caller waits for no loop
        iteration). Every hot call's way in: ``always`` is read only when the queue is empty."""
        queue = self.queue
        if not queue:
            if not (always or self.writes or self.direct):
                return None
            self.loop.call_soon(self._flush)
        future = self.loop.create_future()
        queue.append(packed)
        self.futures.append(future)
        return future

    def submit(self, packed: bytes) -> asyncio.Future[Any]:
        """A future of ``packed``'s reply (an exception instance for an error reply): it goes in
        this iteration's write."""
        future = self.join(packed, always=True)
        assert future is not None  # join queues whatever comes with always
        return future

    async def settled(self) -> None:
        """Return once no write is in flight (those of callers that gave up included)."""
        while self.writes:
            await asyncio.wait(list(self.writes))

    def _flush(self) -> None:
        batch, futures, self.queue, self.futures = self.queue, self.futures, [], []
        self.flying += 1
        task = self.loop.create_task(self._write(batch, futures))
        self.writes.add(task)
        task.add_done_callback(self.writes.discard)

    async def _write(self, batch: list[bytes], futures: list[asyncio.Future[Any]]) -> None:
        """One write of ``batch``, then each reply to its future (``futures``), in order. A caller
        that gave up (cancelled) still has its reply read: the connection stays in step."""
        connection, kept = None, False
        try:
            connection = self.spare.pop() if self.spare else await self.pool.get_connection()
            await _exchange(connection, batch, futures)
            kept = True
        except TimeoutError as exc:  # the batch's deadline: as redis-py's own read timeout says it
            _fail(futures, redis.exceptions.TimeoutError(f"Timeout writing or reading a batch: {exc!r}"))
        except OSError as exc:  # the stream's own fault (fast_lane): as redis-py says it, retried
            _fail(futures, redis.exceptions.ConnectionError(f"Error on a batch's connection: {exc!r}"))
        except BaseException as exc:
            _fail(futures, exc)  # the callers have it: nobody awaits this task to be told again
            if not isinstance(exc, Exception):
                raise
        finally:
            self.flying -= 1
            await self._give_back(connection, kept)

    async def _give_back(self, connection: Any, healthy: bool) -> None:
        """After a write: a healthy connection is kept for the next write while more is queued or
        in flight; one that failed is dropped (replies may be on their way: never reuse it as it
        is) and goes back; once nothing is left, the spares go back too."""
        if connection is not None:
            if not healthy:
                await connection.disconnect()
                await self.pool.release(connection)
            elif self.queue or self.flying:
                self.spare.append(connection)
            else:
                await self.pool.release(connection)
        if not self.queue and not self.flying:
            while self.spare:
                await self.pool.release(self.spare.pop())


async def _exchange(connection: Any, batch: list[bytes], futures: list[asyncio.Future[Any]]) -> None:
    """Write ``batch`` on ``connection`` and hand each reply to its future (``futures``).

    One deadline for the whole batch (the connection's socket timeout), not one per reply:
    redis-py's per-read timeout schedules and cancels a timer for each, which cost more than the
    rest of the read. The write and the replies go by the connection's stream and parser where
    ``compat.fast_lane`` can reach them (no task per write, no checks per reply), else by its
    public methods (``math.inf``: redis-py's "no timer for this read")."""
    data = b"".join(batch)
    lane = fast_lane(connection)
    async with asyncio.timeout(connection.socket_timeout):
        if lane is None:
            await connection.send_packed_command([data])
            for future in futures:
                try:
                    reply = await connection.read_response(timeout=math.inf)
                except redis.exceptions.ResponseError as exc:
                    reply = exc
                if not future.done():
                    future.set_result(reply)
            return
        await lane.send(data)
        await lane.answer(futures)


def _fail(futures: list[asyncio.Future[Any]], error: BaseException) -> None:
    for future in futures:
        if future.done():
            continue
        if isinstance(error, asyncio.CancelledError):
            future.cancel()
        else:
            future.set_exception(error)
