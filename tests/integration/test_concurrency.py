"""Many writers on one session: coroutines, threads and OS processes.

Appends are atomic scripts, so however writers interleave: every message is stored exactly once,
each writer's own order is kept, a batch stays contiguous, and every reader sees one order.
"""

from __future__ import annotations

import asyncio
import multiprocessing
import uuid
from collections.abc import AsyncIterator, Awaitable
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

import pytest

from redis_sessions import AgentMessage, AsyncSessionStore, ConflictError, SessionExists, SessionStore
from tests.integration.workers import append_worker, message_id
from tests.support import Backend, ids, messages_of, run_processes

REAL = [pytest.param("real", marks=pytest.mark.real)]
T = TypeVar("T")


@pytest.fixture
async def async_store(backend: Backend) -> AsyncIterator[AsyncSessionStore]:
    client = backend.async_client()
    yield AsyncSessionStore(client, prefix=backend.prefix)
    await client.aclose()


async def gather_all(*awaitables: Awaitable[T]) -> list[T]:
    """Await every awaitable to its end, then raise the first error: no task outlives a failing test."""
    results = await asyncio.gather(*awaitables, return_exceptions=True)
    errors = [r for r in results if isinstance(r, BaseException)]
    if errors:
        raise errors[0]
    return results  # type: ignore[return-value]


def assert_each_writer_kept_its_order(stored: list[str], writers: dict[int, list[str]]) -> None:
    for writer, own in writers.items():
        assert [i for i in stored if i.startswith(f"w{writer}-")] == own, f"writer {writer}"


# -- coroutines -----------------------------------------------------------------------------------


async def test_concurrent_appends_get_distinct_seqs(async_store: AsyncSessionStore) -> None:
    sid = await async_store.create()
    messages = messages_of(100)  # redis.asyncio's default pool holds 100 connections
    seqs = await gather_all(*(async_store.append(sid, m) for m in messages))
    assert sorted(seqs) == list(range(1, 101))
    stored = await async_store.messages(sid)
    assert len(stored) == 100
    for seq, message in zip(seqs, messages, strict=True):
        assert stored[seq - 1] == message, "the seq returned is the message's position"


@pytest.mark.parametrize("backend", REAL, indirect=True)
async def test_more_coroutines_than_pooled_connections(backend: Backend, redis_url: str) -> None:
    # from_url picks the pool: gathering more appends than it has connections must wait for a
    # free connection, not fail (nor lean on the retry policy, meant for a Redis that is down).
    async with AsyncSessionStore.from_url(redis_url, prefix=backend.prefix) as store:
        sid = await store.create()
        seqs = await gather_all(*(store.append(sid, m) for m in messages_of(300)))
        assert sorted(seqs) == list(range(1, 301))
        assert len(await store.messages(sid)) == 300


async def test_concurrent_duplicates_are_stored_once(async_store: AsyncSessionStore) -> None:
    sid = await async_store.create()
    await async_store.append(sid, AgentMessage.user("first"))
    message = AgentMessage.user("retried from everywhere")
    seqs = await gather_all(*(async_store.append(sid, message) for _ in range(50)))
    assert set(seqs) == {2}
    assert ids(await async_store.messages(sid)).count(message.id) == 1


async def test_only_one_of_many_expected_seq_writers_wins(async_store: AsyncSessionStore) -> None:
    sid = await async_store.create()
    outcomes = await asyncio.gather(
        *(async_store.append(sid, AgentMessage.user(str(i)), expected_seq=0) for i in range(20)),
        return_exceptions=True,
    )
    winners = [o for o in outcomes if o == 1]
    losers = [o for o in outcomes if isinstance(o, ConflictError)]
    assert (len(winners), len(losers)) == (1, 19), outcomes
    assert all((e.expected, e.actual) == (0, 1) for e in losers)
    assert len(await async_store.messages(sid)) == 1


async def test_only_one_concurrent_create_of_an_id_wins(async_store: AsyncSessionStore) -> None:
    sid = uuid.uuid4()
    outcomes = await asyncio.gather(
        *(async_store.create(f"model {i}", session_id=sid) for i in range(10)), return_exceptions=True
    )
    assert outcomes.count(sid) == 1, outcomes
    assert sum(isinstance(o, SessionExists) for o in outcomes) == 9, outcomes


async def test_concurrent_batches_stay_contiguous(async_store: AsyncSessionStore) -> None:
    sid = await async_store.create()
    batches = [[AgentMessage.user(f"{b}.{i}", id=message_id(b, i)) for i in range(10)] for b in range(20)]
    await gather_all(*(async_store.extend(sid, batch) for batch in batches))
    stored = ids(await async_store.messages(sid))
    assert len(stored) == 200
    for start in range(0, 200, 10):
        chunk = stored[start : start + 10]
        writer = chunk[0].split("-")[0]
        assert all(i.startswith(f"{writer}-") for i in chunk), "a batch was interleaved"
    assert_each_writer_kept_its_order(stored, {b: ids(batches[b]) for b in range(20)})


async def test_concurrent_writes_to_many_sessions(async_store: AsyncSessionStore) -> None:
    sids = [await async_store.create() for _ in range(10)]
    await gather_all(*(async_store.extend(sid, messages_of(5, str(sid))) for sid in sids))
    for sid in sids:
        assert ids(await async_store.messages(sid)) == ids(messages_of(5, str(sid)))
    assert {s async for s in async_store.list()} == set(sids)


# -- threads --------------------------------------------------------------------------------------


def test_threads_share_one_store(backend: Backend) -> None:
    client = backend.sync_client()
    store = SessionStore(client, prefix=backend.prefix)
    sid = store.create()

    def write(writer: int) -> list[int]:
        return [store.append(sid, AgentMessage.user(str(i), id=message_id(writer, i))) for i in range(100)]

    with ThreadPoolExecutor(8) as pool:
        seqs = list(pool.map(write, range(8)))
    stored = ids(store.messages(sid))
    client.close()
    assert sorted(s for per in seqs for s in per) == list(range(1, 801))
    assert len(set(stored)) == 800
    assert_each_writer_kept_its_order(stored, {w: [message_id(w, i) for i in range(100)] for w in range(8)})


# -- OS processes ---------------------------------------------------------------------------------

WRITERS, PER_WRITER = 4, 500


@pytest.mark.slow
@pytest.mark.parametrize("backend", REAL, indirect=True)
def test_processes_share_one_session(backend: Backend, redis_url: str) -> None:
    with SessionStore.from_url(redis_url, prefix=backend.prefix) as store:
        sid = store.create("shared")
        context = multiprocessing.get_context("spawn")
        barrier = context.Barrier(WRITERS)
        results = context.Queue()
        processes = [
            context.Process(
                target=append_worker,
                args=(redis_url, backend.prefix, sid, writer, PER_WRITER, barrier, results),
                daemon=True,
            )
            for writer in range(WRITERS)
        ]
        try:
            outcomes = sorted(run_processes(processes, results, timeout=90))
        finally:
            results.close()
            results.join_thread()
        assert [p.exitcode for p in processes] == [0] * WRITERS
        errors = [error for _, error, _, _ in outcomes if error]
        assert not errors, "\n".join(errors)

        stored = ids(store.messages(sid))
        assert len(stored) == WRITERS * PER_WRITER
        assert len(set(stored)) == len(stored), "no duplicates"
        own = {w: [message_id(w, i) for i in range(PER_WRITER)] for w in range(WRITERS)}
        assert_each_writer_kept_its_order(stored, own)
        assert set(stored) == {i for per in own.values() for i in per}
        all_seqs = [seq for _, _, seqs, _ in outcomes for seq in seqs]
        assert sorted(all_seqs) == list(range(1, WRITERS * PER_WRITER + 1))
        for writer, _, seqs, seen in outcomes:
            assert seen == stored, f"process {writer} reads another order"
            assert [stored[seq - 1] for seq in seqs] == own[writer]
        assert store.load(sid).seq == WRITERS * PER_WRITER  # type: ignore[union-attr]
