"""``watch`` and ``next_message`` while Redis is down: a typed ``StoreUnavailable``, like every call.

Found by the soak (test_soak.py): the watch loop subscribed to the session's channel, and
resubscribed after its pub/sub connection broke, with redis-py's own calls outside the store's
retry layer, so an outage reached the caller as ``redis.exceptions.ConnectionError`` instead of
``StoreUnavailable``. Fixed: (re)subscribing runs under the retry policy like every call.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator

import pytest
import redis

from redis_sessions import AsyncSessionStore, RetryPolicy, SessionStore, StoreUnavailable
from redis_sessions.embedded import RedisServer
from tests.integration.durable_support import require_redis_server
from tests.support import wait_until

pytestmark = pytest.mark.real

QUICK = RetryPolicy(attempts=2, initial=0.01, max_wait=0.02)
OPTIONS = {"retry": QUICK, "socket_timeout": 1.0, "socket_connect_timeout": 1.0}


@pytest.fixture
def server() -> Iterator[RedisServer]:
    require_redis_server()
    with RedisServer() as running:
        yield running


def kill_once_waiting(server: RedisServer) -> threading.Thread:
    """SIGKILL ``server`` once a watcher is subscribed and its catch-up read has run, i.e. it is
    waiting for a notification; the server stays down."""
    with redis.Redis.from_url(server.url) as admin:
        reads = int(admin.info("commandstats").get("cmdstat_evalsha", {}).get("calls", 0))

    def kill() -> None:
        with redis.Redis.from_url(server.url) as admin:

            def waiting() -> bool:
                stats = admin.info("commandstats").get("cmdstat_evalsha", {})
                subscribed = admin.client_list(_type="pubsub")
                return bool(subscribed) and int(stats.get("calls", 0)) > reads

            wait_until(waiting, "the watcher subscribed and read", 10)
        assert server.process is not None
        server.process.kill()
        server.process.wait(10)

    return threading.Thread(target=kill, daemon=True)


def test_next_message_while_redis_is_down_sync(server: RedisServer) -> None:
    with SessionStore.from_url(server.url, **OPTIONS) as store:
        sid = store.create()
        assert store.next_message(sid, 0, timeout=0.01) is None  # the pub/sub probe is done
        server.stop()
        with pytest.raises(StoreUnavailable) as info:
            store.next_message(sid, 0, timeout=0.5)
        assert info.value.session_id == sid


def test_next_message_while_redis_is_down_async(server: RedisServer) -> None:
    async def scenario() -> None:
        async with AsyncSessionStore.from_url(server.url, **OPTIONS) as store:
            sid = await store.create()
            assert await store.next_message(sid, 0, timeout=0.01) is None
            server.stop()
            with pytest.raises(StoreUnavailable) as info:
                await store.next_message(sid, 0, timeout=0.5)
            assert info.value.session_id == sid

    asyncio.run(scenario())


def test_a_watcher_whose_redis_dies_gets_store_unavailable_sync(server: RedisServer) -> None:
    with SessionStore.from_url(server.url, **OPTIONS) as store:
        sid = store.create()
        assert store.next_message(sid, 0, timeout=0.01) is None  # scripts loaded, probe done
        killer = kill_once_waiting(server)
        killer.start()
        try:
            with pytest.raises(StoreUnavailable):
                store.next_message(sid, 0, timeout=10)
        finally:
            killer.join(15)


def test_a_watcher_whose_redis_dies_gets_store_unavailable_async(server: RedisServer) -> None:
    async def scenario() -> None:
        async with AsyncSessionStore.from_url(server.url, **OPTIONS) as store:
            sid = await store.create()
            assert await store.next_message(sid, 0, timeout=0.01) is None
            killer = kill_once_waiting(server)
            killer.start()
            try:
                with pytest.raises(StoreUnavailable):
                    await store.next_message(sid, 0, timeout=10)
            finally:
                await asyncio.to_thread(killer.join, 15)

    asyncio.run(scenario())
