"""The lean line (``_aio_lean``): hot scripts packed by hiredis and sent on the client's own pool
connections, and what makes them go the general way (NOSCRIPT, faults, clients it does not serve)."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
import redis
import redis.asyncio

from redis_sessions import (
    AgentMessage,
    AsyncSessionStore,
    ConflictError,
    SessionNotFound,
    SessionStore,
    StoreUnavailable,
)
from redis_sessions.compat import FastLane, fast_lane
from tests.support import ids, messages_of, unique_prefix


@pytest.fixture
def client(redis_url: str) -> Iterator[redis.Redis]:
    with redis.Redis.from_url(redis_url) as c:
        yield c


def _refuse(*args: Any, **kwargs: Any) -> Any:
    raise AssertionError(f"the general path was taken: {args[:1]}")


def test_appends_take_the_lean_line(client: redis.Redis, monkeypatch: pytest.MonkeyPatch) -> None:
    store = SessionStore(client, prefix=unique_prefix())
    sid = store.create()
    batch = messages_of(3)
    assert store.append(sid, batch[0]) == 1  # the server may not have the script yet: NOSCRIPT
    monkeypatch.setattr(client, "execute_command", _refuse)
    assert store.append(sid, batch[0]) == 1
    assert store.extend(sid, batch) == 3
    monkeypatch.undo()
    assert ids(store.messages(sid)) == ids(batch)
    assert client.connection_pool._in_use_connections == set(), "every connection went back"


@pytest.mark.parametrize("protocol", [2, 3])
def test_reads_give_what_redis_py_would_in_either_protocol(
    redis_url: str, protocol: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    with redis.Redis.from_url(redis_url, protocol=protocol) as client:
        store = SessionStore(client, prefix=unique_prefix(), cache_messages=0)
        sid = store.create(model="m", metadata={"k": "v"})
        store.extend(sid, messages_of(3))
        session = store.load(sid)  # HGETALL: a list in RESP2, so it goes the general way
        assert session is not None
        assert (session.model, session.metadata, session.seq) == ("m", {"k": "v"}, 3)
        info = store.info(sid)
        assert info is not None
        assert (info.messages, info.seq) == (3, 3)
        monkeypatch.setattr(client, "execute_command", _refuse)
        monkeypatch.setattr(client, "pipeline", _refuse)
        assert ids(store.messages(sid, -2)) == ids(messages_of(3)[-2:])  # MULTI/EXEC, lean
        monkeypatch.undo()  # SCAN goes the general way; the page of info.lua calls does not
        assert [i.id for i in store.infos()] == [sid]  # loads info.lua if the server lacks it
        monkeypatch.setattr(client, "pipeline", _refuse)
        assert [i.id for i in store.infos()] == [sid]


def test_a_flushed_script_cache_goes_the_general_way(client: redis.Redis) -> None:
    store = SessionStore(client, prefix=unique_prefix())
    sid = store.create()
    client.script_flush()
    assert store.append(sid, AgentMessage.user("after the flush")) == 1
    assert store.append(sid, AgentMessage.user("cached again")) == 2


def test_listings_send_one_script_a_session_and_load_it_when_flushed(client: redis.Redis) -> None:
    store = SessionStore(client, prefix=unique_prefix())
    sids = {store.create(model=f"m{i}") for i in range(3)}
    store.extend(next(iter(sids)), messages_of(2))
    client.script_flush()  # the pipeline of info.lua calls meets NOSCRIPT: loaded, then sent again
    infos = {i.id: i for i in store.infos(count=2)}
    assert set(infos) == sids
    assert sorted(i.messages for i in infos.values()) == [0, 0, 2]
    assert all(i.ttl is None and i.model.startswith("m") for i in infos.values())
    assert [i.id for i in store.infos()] != [], "and again, with the script cached"


def test_a_killed_connection_is_retried_without_duplicates(client: redis.Redis) -> None:
    store = SessionStore(client, prefix=unique_prefix())
    sid = store.create()
    first = AgentMessage.user("first")
    assert store.append(sid, first) == 1
    with redis.Redis(
        host=client.connection_pool.connection_kwargs["host"],
        port=client.connection_pool.connection_kwargs["port"],
    ) as admin:
        killed = admin.client_kill_filter(_type="normal", skipme=True)
    assert killed >= 1
    assert store.append(sid, AgentMessage.user("second")) == 2
    assert store.append(sid, first) == 1
    assert [m.text for m in store.messages(sid)] == ["first", "second"]


def test_without_a_retry_policy_a_fault_is_store_unavailable(closed_url: str) -> None:
    with SessionStore.from_url(closed_url, retry=None) as store, pytest.raises(StoreUnavailable):
        store.append("00000000-0000-0000-0000-000000000001", AgentMessage.user("x"))


def test_a_client_that_is_not_utf8_is_not_served(redis_url: str) -> None:
    with redis.Redis.from_url(redis_url, encoding="latin-1") as latin:
        store = SessionStore(latin, prefix=unique_prefix())
        assert store.transport.lean.pool is None
        sid = store.create()
        assert store.append(sid, AgentMessage.user("ü")) == 1
        assert store.messages(sid)[0].text == "ü"


def test_async_appends_take_the_lean_line_and_a_cancelled_one_leaves_the_pool_clean(redis_url: str) -> None:
    async def main() -> None:
        client = redis.asyncio.Redis.from_url(redis_url)
        try:
            store = AsyncSessionStore(client, prefix=unique_prefix())
            sid = await store.create()
            assert await store.append(sid, AgentMessage.user("one")) == 1  # loads it if need be
            original = client.execute_command
            client.execute_command = _refuse  # type: ignore[method-assign]
            assert await store.append(sid, AgentMessage.user("two")) == 2
            client.execute_command = original  # type: ignore[method-assign]
            # Cancel appends mid-flight: each connection they held is dropped and given back.
            tasks = [asyncio.create_task(store.append(sid, AgentMessage.user(f"c{i}"))) for i in range(20)]
            await asyncio.sleep(0)
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            await store.transport.lean.settled()  # their replies are still read, then it is given back
            assert client.connection_pool._in_use_connections == set()
            stored = await store.messages(sid)
            assert stored[0].text == "one"
            assert len({m.id for m in stored}) == len(stored), "nothing stored twice"
            assert await store.append(sid, AgentMessage.user("after")) == len(stored) + 1
        finally:
            await client.aclose()

    asyncio.run(main())


@pytest.mark.parametrize("protocol", [2, 3])
def test_concurrent_calls_share_writes_and_each_gets_its_own_reply_or_error(
    redis_url: str, protocol: int
) -> None:
    async def main() -> None:
        async with AsyncSessionStore.from_url(redis_url, prefix=unique_prefix(), protocol=protocol) as store:
            sids = [await store.create() for _ in range(10)]
            await store.append(sids[0], AgentMessage.user("warm"))  # the script is cached from here
            await store.client.script_flush()  # and then not: the first batch meets NOSCRIPT
            missing = uuid.uuid4()

            async def writer(sid: Any, n: int) -> list[int]:
                return [
                    await store.append(sid, AgentMessage.user(f"{n}-{k}", id=f"{n}-{k}")) for k in range(20)
                ]

            results = await asyncio.gather(
                *(writer(sid, n) for n, sid in enumerate(sids)),
                store.append(missing, AgentMessage.user("nowhere")),
                store.append(sids[1], AgentMessage.user("late"), expected_seq=100),
                return_exceptions=True,
            )
            *written, lost, conflict = results
            assert isinstance(lost, SessionNotFound)
            assert lost.session_id == missing
            assert isinstance(conflict, ConflictError)
            assert conflict.session_id == sids[1]
            assert written[0] == list(range(2, 22))
            assert all(seqs == list(range(1, 21)) for seqs in written[1:])
            await store.transport.lean.settled()
            pool = store.client.connection_pool  # type: ignore[union-attr]
            assert pool._in_use_connections == set(), "spare connections went back once idle"
            for n, sid in enumerate(sids):
                stored = [m.id for m in await store.messages(sid)]
                assert stored[-20:] == [f"{n}-{k}" for k in range(20)]

    asyncio.run(main())


def test_a_fault_in_a_shared_write_is_retried_for_each_caller_once(
    redis_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    async def main() -> None:
        async with AsyncSessionStore.from_url(redis_url, prefix=unique_prefix()) as store:
            sid = await store.create()
            await store.append(sid, AgentMessage.user("warm"))
            client = store.client
            assert isinstance(client, redis.asyncio.Redis)
            connection_class = client.connection_pool.connection_class
            original = connection_class.send_packed_command
            failures: list[Any] = []

            async def once(self: Any, command: Any, check_health: bool = True) -> None:
                if not failures and len(command[0]) > 2000:  # the first multi-command write
                    failures.append(command)
                    raise redis.exceptions.ConnectionError("dropped by the test")
                await original(self, command, check_health)

            monkeypatch.setattr(connection_class, "send_packed_command", once)
            lane_send = FastLane.send

            async def lane_once(self: FastLane, data: bytes) -> None:  # the same, on the fast lane
                if not failures and len(data) > 2000:
                    failures.append(data)
                    raise ConnectionResetError("reset by the test")  # the stream's own error
                await lane_send(self, data)

            monkeypatch.setattr(FastLane, "send", lane_once)
            messages = [AgentMessage.user(f"m{k}", id=f"m{k}") for k in range(30)]
            seqs = await asyncio.gather(*(store.append(sid, m) for m in messages))
            assert failures, "a shared write failed"
            assert sorted(seqs) == list(range(2, 32)), "each caller got its own seq"
            stored = [m.id for m in await store.messages(sid)]
            assert sorted(stored[1:]) == sorted(m.id for m in messages), "each stored once"

    asyncio.run(main())


@pytest.mark.parametrize("protocol", [2, 3])
def test_shared_writes_go_by_the_fast_lane_of_the_installed_redis_py(redis_url: str, protocol: int) -> None:
    """``compat.fast_lane`` reaches into redis-py's asyncio connection (its stream and hiredis
    reader): this fails when the installed redis-py no longer has them, and the auto-pipeline
    would quietly fall back to ``send_packed_command``/``read_response``, slower."""

    async def main() -> None:
        client = redis.asyncio.Redis.from_url(redis_url, protocol=protocol)
        try:
            await client.ping()
            connection = await client.connection_pool.get_connection()  # type: ignore[no-untyped-call]
            try:
                lane = fast_lane(connection)
                assert lane is not None, f"redis-py {redis.__version__}: re-check compat.fast_lane"
                await lane.send(b"*1\r\n$4\r\nPING\r\n*2\r\n$3\r\nGET\r\n$0\r\n\r\n*1\r\n$4\r\nNOPE\r\n")
                futures = [asyncio.get_running_loop().create_future() for _ in range(3)]
                await lane.answer(futures)
                replies = [future.result() for future in futures]
                assert replies[:2] == [b"PONG", None]
                assert isinstance(replies[2], redis.exceptions.ResponseError), "an error reply, handed back"
                assert lane.deliver(futures[:1], 0) == 0, "nothing more is buffered"
            finally:
                await client.connection_pool.release(connection)
        finally:
            await client.aclose()

    asyncio.run(main())


def test_each_event_loop_pipelines_on_its_own_client(redis_url: str) -> None:
    store = AsyncSessionStore.from_url(redis_url, prefix=unique_prefix())

    async def burst(tag: str) -> list[int]:
        sid = await store.create()
        await store.append(sid, AgentMessage.user("warm", id=f"{tag}-warm"))
        seqs = await asyncio.gather(
            *(store.append(sid, AgentMessage.user(tag, id=f"{tag}-{k}")) for k in range(25))
        )
        assert len(await store.messages(sid)) == 26
        await store.transport.lean.settled()
        return sorted(seqs)

    async def close() -> None:
        await store.aclose()

    try:
        first = asyncio.run(burst("first"))
        with ThreadPoolExecutor(2) as pool:  # two loops at once, in two threads
            both = list(pool.map(lambda tag: asyncio.run(burst(tag)), ["a", "b"]))
        assert first == both[0] == both[1] == list(range(2, 27))
    finally:
        asyncio.run(close())
