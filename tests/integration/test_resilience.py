"""Scripts flushed, connections killed, replies lost, Redis unreachable: what a caller sees."""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import socket
import uuid
from collections.abc import Callable, Iterator
from urllib.parse import urlparse

import pytest
import redis.asyncio.cluster
import redis.cluster
import redis.exceptions

from redis_sessions import (
    AgentMessage,
    AsyncSessionStore,
    RetryPolicy,
    SessionStore,
    StoreError,
    StoreUnavailable,
)
from redis_sessions.embedded import RedisServer
from tests.conftest import MakeStore, Store
from tests.integration.faults import LossyProxy
from tests.support import AsyncAdapter, Backend, ids, messages_of

QUICK = RetryPolicy(attempts=2, initial=0.01, max_wait=0.02)
REAL = [pytest.param("real", marks=pytest.mark.real)]


# -- NOSCRIPT ---------------------------------------------------------------------------------------


def test_every_script_reloads_after_script_flush(store: Store, backend: Backend) -> None:
    sid = store.create()
    store.append(sid, AgentMessage.user("before", id="a"))
    backend.raw.script_flush()
    assert store.append(sid, AgentMessage.user("after", id="b")) == 2
    backend.raw.script_flush()
    assert ids(store.messages(sid)) == ["a", "b"]
    backend.raw.script_flush()
    store.set_metadata(sid, {"k": "v"})
    backend.raw.script_flush()
    other = store.create()
    backend.raw.script_flush()
    assert store.load(sid).metadata == {"k": "v"}  # type: ignore[union-attr]
    assert store.exists(other)


def test_append_on_a_fresh_server_loads_the_script(make_store: MakeStore, backend: Backend) -> None:
    backend.raw.script_flush()
    store = make_store()
    sid = store.create()
    assert store.extend(sid, messages_of(3)) == 3


# -- Redis unreachable ------------------------------------------------------------------------------


def test_unreachable_redis_gives_store_unavailable(make_unreachable: MakeStore) -> None:
    store = make_unreachable(retry=QUICK)
    sid = uuid.uuid4()
    per_session: dict[str, Callable[[], object]] = {
        "append": lambda: store.append(sid, AgentMessage.user("x")),
        "extend": lambda: store.extend(sid, messages_of(2)),
        "messages": lambda: store.messages(sid),
        "load": lambda: store.load(sid),
        "exists": lambda: store.exists(sid),
        "delete": lambda: store.delete(sid),
        "set_metadata": lambda: store.set_metadata(sid, {"k": "v"}),
        "create": lambda: store.create(session_id=sid),
    }
    for name, operation in per_session.items():
        with pytest.raises(StoreUnavailable) as info:
            operation()
        assert info.value.attempts == 2, name
        assert info.value.session_id == sid
        assert str(sid) in str(info.value)
        assert "after 2 attempt" in str(info.value)
        assert isinstance(info.value.__cause__, redis.exceptions.ConnectionError)
    with pytest.raises(StoreUnavailable) as listing:
        list(store.list())
    assert listing.value.attempts == 2
    assert listing.value.session_id is None


def test_without_a_retry_policy_one_attempt_is_made(make_unreachable: MakeStore) -> None:
    store = make_unreachable(retry=None)
    with pytest.raises(StoreUnavailable) as info:
        store.load(uuid.uuid4())
    assert info.value.attempts == 1


@contextlib.contextmanager
def silent_server() -> Iterator[str]:
    """A port that accepts connections and never answers (a hung Redis)."""
    with socket.create_server(("127.0.0.1", 0)) as listener:
        yield f"redis://127.0.0.1:{listener.getsockname()[1]}/0"


@pytest.mark.parametrize("front", ["sync", "async"])
def test_a_hung_server_times_out_into_store_unavailable(front: str) -> None:
    sid = uuid.uuid4()
    with silent_server() as url, asyncio.Runner() as runner:
        options = {"retry": QUICK, "socket_timeout": 0.05, "socket_connect_timeout": 0.05}
        store: Store
        if front == "sync":
            store = SessionStore.from_url(url, **options)
        else:
            store = AsyncAdapter(AsyncSessionStore.from_url(url, **options), runner)
        try:
            with pytest.raises(StoreUnavailable) as info:
                store.append(sid, AgentMessage.user("x"))
        finally:
            store.close()
    assert info.value.attempts == 2
    assert str(sid) in str(info.value)
    assert isinstance(info.value.__cause__, redis.exceptions.TimeoutError | redis.exceptions.ConnectionError)


def test_client_retry_is_turned_off_by_the_store(make_store: MakeStore, backend: Backend) -> None:
    # One retry layer: the store's. redis-py's own retry would replay EVALSHA underneath it.
    store = make_store()
    client = store.client
    cluster = redis.cluster.RedisCluster | redis.asyncio.cluster.RedisCluster
    retry = client.retry if isinstance(client, cluster) else client.get_retry()
    assert retry is not None
    assert retry.get_retries() == 0


# -- dropped connections on a real server ------------------------------------------------------------


def client_id(store: Store) -> int:
    if isinstance(store, AsyncAdapter):
        client = store.client

        async def ask() -> int:
            return await client.client_id()

        return int(store.runner.run(ask()))
    return int(store.client.client_id())


@pytest.mark.parametrize("backend", REAL, indirect=True)
def test_killed_connection_is_replaced(store: Store, backend: Backend, spawned_server: bool) -> None:
    sid = store.create()
    first, second = AgentMessage.user("one"), AgentMessage.user("two")
    assert store.append(sid, first) == 1
    if spawned_server:
        killed = backend.raw.client_kill_filter(_type="normal", skipme=True)
    else:  # a shared REDIS_URL: kill only our own connection
        killed = backend.raw.client_kill_filter(_id=str(client_id(store)))
    assert killed >= 1
    assert store.append(sid, second) == 2
    assert store.messages(sid) == [first, second]


@pytest.fixture
def proxy(redis_url: str) -> Iterator[LossyProxy]:
    target = urlparse(redis_url)
    with LossyProxy(target.hostname or "127.0.0.1", target.port or 6379) as running:
        yield running


@pytest.fixture
def proxied_store(front: str, proxy: LossyProxy, backend: Backend) -> Iterator[Store]:
    with asyncio.Runner() as runner:
        store: Store
        if front == "sync":
            store = SessionStore.from_url(proxy.url, prefix=backend.prefix, retry=QUICK)
        else:
            store = AsyncAdapter(
                AsyncSessionStore.from_url(proxy.url, prefix=backend.prefix, retry=QUICK), runner
            )
        yield store
        store.close()


@pytest.mark.parametrize("backend", REAL, indirect=True)
def test_lost_reply_is_retried_and_stored_once(proxied_store: Store, proxy: LossyProxy) -> None:
    store = proxied_store
    sid = store.create()
    first, second = AgentMessage.user("one"), AgentMessage.user("two")
    assert store.append(sid, first) == 1
    proxy.lose_replies(1)
    assert store.append(sid, second) == 2, "the retry finds the message stored and returns its seq"
    assert proxy.lost == 1, "the fault really happened"
    assert store.messages(sid) == [first, second]
    assert store.load(sid).seq == 2  # type: ignore[union-attr]


@pytest.mark.parametrize("backend", REAL, indirect=True)
def test_lost_reply_of_a_batch_is_retried_and_stored_once(proxied_store: Store, proxy: LossyProxy) -> None:
    store = proxied_store
    sid = store.create()
    store.append(sid, AgentMessage.user("warm up", id="w"))
    proxy.lose_replies(1)
    assert store.extend(sid, messages_of(50)) == 51
    assert proxy.lost == 1
    assert ids(store.messages(sid)) == ["w", *ids(messages_of(50))]


@pytest.mark.parametrize("backend", REAL, indirect=True)
def test_when_every_reply_is_lost_the_caller_gets_store_unavailable(
    proxied_store: Store, proxy: LossyProxy
) -> None:
    store = proxied_store
    sid = store.create()
    store.append(sid, AgentMessage.user("warm up", id="w"))
    message = AgentMessage.user("maybe stored", id="m")
    proxy.lose_replies(QUICK.attempts)
    with pytest.raises(StoreUnavailable) as info:
        store.append(sid, message)
    assert info.value.attempts == QUICK.attempts
    assert proxy.lost == QUICK.attempts
    # The outcome was unknown to the caller; resending the same message settles it, once.
    assert store.append(sid, message) == 2
    assert ids(store.messages(sid)) == ["w", "m"]


# -- credentials ------------------------------------------------------------------------------------


@pytest.mark.real
@pytest.mark.parametrize("front", ["sync", "async"])
def test_a_wrong_password_is_refused_at_once_not_retried(redis_url: str, front: str) -> None:
    # redis-py's AuthenticationError is a ConnectionError; retrying it only delays the truth.
    if shutil.which("redis-server") is None:
        pytest.skip("needs a redis-server binary to start one with a password")
    with RedisServer(extra_args=["--requirepass", "right"]) as server:
        url = f"redis://:wrong@{server.host}:{server.port}/0"
        policy = RetryPolicy(attempts=5, initial=1.0, max_wait=1.0)  # would take > 4 s if used
        if front == "sync":
            with SessionStore.from_url(url, retry=policy) as store, pytest.raises(StoreError) as info:
                store.create()
        else:

            async def attempt() -> None:
                async with AsyncSessionStore.from_url(url, retry=policy) as store:
                    await store.create()

            with pytest.raises(StoreError) as info:
                asyncio.run(attempt())
        assert not isinstance(info.value, StoreUnavailable)
        assert "password" in str(info.value).lower() or "auth" in str(info.value).lower()
        assert isinstance(info.value.__cause__, redis.exceptions.AuthenticationError)
        with SessionStore.from_url(f"redis://:right@{server.host}:{server.port}/0") as good:
            assert good.exists(good.create())


@pytest.mark.parametrize("backend", REAL, indirect=True)
def test_a_client_on_a_blocking_pool_gets_its_retry_turned_off(backend: Backend) -> None:
    # redis-py 8.1's set_retry fails on a BlockingConnectionPool; the store must still take it.
    import redis.asyncio

    assert backend.url is not None
    client = redis.Redis.from_pool(redis.BlockingConnectionPool.from_url(backend.url))
    try:
        client.ping()  # a connection exists before the store is made
        store = SessionStore(client, prefix=backend.prefix)
        retry = client.get_retry()
        assert retry is not None
        assert retry.get_retries() == 0
        sid = store.create()
        assert store.append(sid, AgentMessage.user("x")) == 1
    finally:
        client.close()

    async def asynchronous() -> int:
        aclient = redis.asyncio.Redis.from_pool(
            redis.asyncio.BlockingConnectionPool.from_url(backend.url or "")
        )
        try:
            astore = AsyncSessionStore(aclient, prefix=backend.prefix)
            aretry = aclient.get_retry()
            assert aretry is not None
            assert aretry.get_retries() == 0
            return await astore.append(sid, AgentMessage.user("y"))
        finally:
            await aclient.aclose()

    assert asyncio.run(asynchronous()) == 2
