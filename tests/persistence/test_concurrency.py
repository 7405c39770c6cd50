"""Many writers on one session at once: processes ('spawn'), threads, and asyncio tasks.

Every writer appends its own messages one call at a time; afterwards the session must hold every
message exactly once, each writer's in the order it wrote them, with ``seq`` counting all of them.
"""

from __future__ import annotations

import asyncio
import itertools
import multiprocessing
import queue
import threading
import uuid
from concurrent.futures import ThreadPoolExecutor

from redis_sessions import AgentMessage
from redis_sessions.persistence import PersistenceAdapter
from tests.persistence.conftest import Place
from tests.persistence.workers import append_worker, message_id

WRITERS = 4
PER_WRITER = 100


def check_history(adapter: PersistenceAdapter, sid: uuid.UUID, writers: int, per_writer: int) -> list[str]:
    """Assert every message is stored once, in each writer's order; return the stored ids."""
    state = adapter.load_session(sid)
    assert state is not None
    stored = [m.id for m in state.messages]
    assert len(stored) == writers * per_writer
    assert len(set(stored)) == len(stored), "no duplicates"
    for writer in range(writers):
        mine = [i for i in stored if i.startswith(f"w{writer}-")]
        assert mine == [message_id(writer, i) for i in range(per_writer)], f"writer {writer}'s order"
    assert state.seq == writers * per_writer
    return stored


def switches(stored: list[str]) -> int:
    """How often the writer changes along the stored order (0 would mean no overlap at all)."""
    return sum(a.split("-")[0] != b.split("-")[0] for a, b in itertools.pairwise(stored))


def test_processes_append_to_one_session(place: Place) -> None:
    # The writers also open the store at the same moment: on a fresh one, they race to create it.
    context = multiprocessing.get_context("spawn")
    barrier = context.Barrier(WRITERS)
    results = context.Queue()
    sid = uuid.uuid4()
    workers = [
        context.Process(target=append_worker, args=(place.spec(), sid, w, PER_WRITER, barrier, results))
        for w in range(WRITERS)
    ]
    for worker in workers:
        worker.start()
    try:
        outcomes = [results.get(timeout=90) for _ in workers]
    except queue.Empty:
        raise AssertionError("a writer process did not report back") from None
    finally:
        for worker in workers:
            worker.join(timeout=30)
    errors = [error for _, error, _ in outcomes if error]
    assert not errors, "\n".join(errors)
    assert sum(stored for _, _, stored in outcomes) == WRITERS * PER_WRITER
    with place.sync() as adapter:
        stored = check_history(adapter, sid, WRITERS, PER_WRITER)
    if place.kind != "sqlite":
        assert switches(stored) >= WRITERS, "the writers ran one after another, not at the same time"
    # SQLite is not fair: waiters sleep and poll (busy_timeout), so the writer that holds the lock
    # mostly wins it again, and the writers' messages come out in a few long runs.


def test_threads_append_to_one_session(place: Place) -> None:
    sid = uuid.uuid4()
    writers, per_writer = 8, 25
    start = threading.Barrier(writers)

    def write(writer: int) -> int:
        start.wait(timeout=30)
        return sum(
            adapter.append_messages(sid, [AgentMessage.user("x", id=message_id(writer, i))])
            for i in range(per_writer)
        )

    with place.sync() as adapter, ThreadPoolExecutor(writers) as pool:
        assert sum(pool.map(write, range(writers))) == writers * per_writer
        check_history(adapter, sid, writers, per_writer)


def test_async_tasks_append_to_one_session(place: Place) -> None:
    sid = uuid.uuid4()
    writers, per_writer = 8, 25

    async def main() -> None:
        async with place.async_() as adapter:

            async def write(writer: int) -> int:
                stored = 0
                for i in range(per_writer):
                    message = AgentMessage.user("x", id=message_id(writer, i))
                    stored += await adapter.append_messages(sid, [message])
                return stored

            counts = await asyncio.gather(*(write(w) for w in range(writers)))
            assert sum(counts) == writers * per_writer

    asyncio.run(main())
    with place.sync() as adapter:
        check_history(adapter, sid, writers, per_writer)
