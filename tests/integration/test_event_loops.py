"""One ``AsyncSessionStore`` used from many event loops: ``asyncio.run`` per request, a thread pool
with a loop per thread (one after another and at once), loops that keep running in their threads,
on a real server and a real cluster. Each loop gets a client of its own (``_loops``), closed in that
loop when it winds down; ``aclose`` closes those of loops still running."""

from __future__ import annotations

import asyncio
import threading
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
import redis

from redis_sessions import AgentMessage, AsyncSessionStore
from tests.support import Backend, ids, messages_of

REAL_AND_CLUSTER = [
    pytest.param("real", marks=pytest.mark.real),
    pytest.param("cluster", marks=[pytest.mark.real, pytest.mark.cluster]),
]
pytestmark = pytest.mark.parametrize("backend", REAL_AND_CLUSTER, indirect=True)


def open_store(backend: Backend, name: str) -> AsyncSessionStore:
    """A store that makes its own clients (so, one per loop), its connections named ``name``."""
    opener = AsyncSessionStore.from_cluster if backend.cluster else AsyncSessionStore.from_url
    return opener(backend.url or "", prefix=backend.prefix, client_name=name)


def connections(backend: Backend, name: str) -> int:
    """How many connections named ``name`` the server (every node of the cluster) holds open."""
    raw: Any = backend.raw
    if backend.cluster:
        listed = raw.client_list(target_nodes=redis.cluster.RedisCluster.ALL_NODES)
    else:
        listed = raw.client_list()
    if isinstance(listed, dict):  # the cluster client answers node by node
        listed = [client for node in listed.values() for client in node]
    return sum(1 for client in listed if client.get("name") == name)


@pytest.fixture
def name() -> str:
    return "loops-" + uuid.uuid4().hex[:12]


@pytest.fixture
def store(backend: Backend, name: str) -> Iterator[AsyncSessionStore]:
    opened = open_store(backend, name)
    yield opened
    asyncio.run(opened.aclose())


async def append_and_read(store: AsyncSessionStore, sid: uuid.UUID, message: AgentMessage) -> list[str]:
    await store.append(sid, message)
    return ids(await store.messages(sid))


def test_asyncio_run_per_request_reuses_the_store_and_closes_each_loops_client(
    store: AsyncSessionStore, backend: Backend, name: str
) -> None:
    sid = asyncio.run(store.create())
    sent = messages_of(3)
    for i, message in enumerate(sent):
        assert asyncio.run(append_and_read(store, sid, message)) == ids(sent[: i + 1])
        assert connections(backend, name) == 0, "the request's loop closed its client as it wound down"


def test_a_loop_per_thread_at_once_shares_one_session(
    store: AsyncSessionStore, backend: Backend, name: str
) -> None:
    sid = asyncio.run(store.create())
    sent = messages_of(24)
    started = threading.Barrier(4)

    def worker(batch: list[AgentMessage]) -> int:
        async def run() -> int:
            started.wait()  # all four loops hold a client at once
            for message in batch:
                await store.append(sid, message)
            return len(await store.messages(sid))

        return asyncio.run(run())

    with ThreadPoolExecutor(4) as pool:
        seen = list(pool.map(worker, [sent[i::4] for i in range(4)]))
    assert all(6 <= count <= 24 for count in seen)
    stored = asyncio.run(store.messages(sid))
    assert sorted(ids(stored)) == sorted(ids(sent))
    assert connections(backend, name) == 0


def test_aclose_closes_the_clients_of_loops_still_running_in_other_threads(
    store: AsyncSessionStore, backend: Backend, name: str
) -> None:
    sid = asyncio.run(store.create())
    loops = [asyncio.new_event_loop() for _ in range(2)]
    threads = [threading.Thread(target=loop.run_forever) for loop in loops]
    for thread in threads:
        thread.start()
    try:
        for loop, message in zip(loops, messages_of(2), strict=True):
            asyncio.run_coroutine_threadsafe(store.append(sid, message), loop).result(30)
        assert connections(backend, name) >= 2, "each running loop holds a connection of its own"
        asyncio.run(store.aclose())
        assert connections(backend, name) == 0
    finally:
        for loop, thread in zip(loops, threads, strict=True):
            loop.call_soon_threadsafe(loop.stop)
            thread.join(30)
            loop.close()


# redis-py's cluster client opens an async generator of its own as it connects, and asyncio warns
# about one started in a loop after its shutdown_asyncgens: redis-py's, harmless, not ours.
@pytest.mark.filterwarnings(
    "ignore:asynchronous generator <async_generator object NodesManager:ResourceWarning"
)
def test_a_loop_that_runs_again_after_winding_down_gets_a_new_client(
    store: AsyncSessionStore, backend: Backend, name: str
) -> None:
    """``Runner.run_sync``'s way: one loop per thread, ``shutdown_asyncgens`` after every run."""
    loop = asyncio.new_event_loop()
    try:
        sid = loop.run_until_complete(store.create())
        for message in messages_of(2):
            loop.run_until_complete(store.append(sid, message))
            loop.run_until_complete(loop.shutdown_asyncgens())
            assert connections(backend, name) == 0
        assert len(loop.run_until_complete(store.messages(sid))) == 2
        loop.run_until_complete(store.aclose())
    finally:
        loop.close()
    assert connections(backend, name) == 0
