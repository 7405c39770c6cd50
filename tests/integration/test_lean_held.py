"""The held connection of the synchronous lean line (``_aio_lean``): a store that made its client
sends its hot calls on one connection it keeps, not one taken from the pool and given back per call;
threads, a fork, a connection the server closed, a fault and ``close()`` must all stay correct."""

from __future__ import annotations

import os
import threading
import warnings
from collections.abc import Iterator
from typing import Any

import pytest
import redis

from redis_sessions import AgentMessage, SessionStore
from tests.support import ids, messages_of, unique_prefix


@pytest.fixture
def admin(redis_url: str) -> Iterator[redis.Redis]:
    with redis.Redis.from_url(redis_url) as client:
        yield client


def _count_takes(store: SessionStore, monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """How often the store's pool hands out a connection from now on (one list item per take)."""
    client: Any = store.client
    pool: Any = client.connection_pool
    taken: list[int] = []
    real = pool.get_connection

    def counted(*args: Any, **kwargs: Any) -> Any:
        taken.append(1)
        return real(*args, **kwargs)

    monkeypatch.setattr(pool, "get_connection", counted)
    return taken


def _lent(store: SessionStore) -> set[Any]:
    """The connections of the store's (blocking) pool that are not in it now."""
    client: Any = store.client
    pool: Any = client.connection_pool
    return set(pool._connections) - set(pool.pool.queue)


def _kill_others(admin: redis.Redis) -> None:
    assert admin.client_kill_filter(_type="normal", skipme=True) >= 1


def test_a_store_that_made_its_client_holds_one_connection(
    redis_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    with SessionStore.from_url(redis_url, prefix=unique_prefix()) as store:
        sid = store.create()
        store.append(sid, AgentMessage.user("warm"))  # loads the script (NOSCRIPT the first time)
        taken = _count_takes(store, monkeypatch)
        for message in messages_of(20):
            store.append(sid, message)
        assert taken == [], "every append went on the held connection"
        assert len(store.messages(sid)) == 21
        held = store.transport.lean._held
        assert held is not None
        assert _lent(store) == {held}, "out of the pool: held; no other"


def test_a_store_on_a_callers_client_holds_none(redis_url: str) -> None:
    with redis.Redis.from_url(redis_url) as client:
        store = SessionStore(client, prefix=unique_prefix())
        sid = store.create()
        store.extend(sid, messages_of(3))
        assert store.transport.lean._holding is None
        assert client.connection_pool._in_use_connections == set(), "their pool: every connection back"


def test_threads_share_the_store_and_each_append_lands_once(redis_url: str) -> None:
    # One thread at a time uses the held connection; the others take pool connections meanwhile.
    with SessionStore.from_url(redis_url, prefix=unique_prefix()) as store:
        shared = store.create()
        own = [store.create() for _ in range(8)]
        errors: list[BaseException] = []

        def work(n: int) -> None:
            try:
                for i in range(40):
                    store.append(own[n], AgentMessage.user(f"{n}-{i}", id=f"own-{n}-{i}"))
                    store.append(shared, AgentMessage.user(f"{n}-{i}", id=f"shared-{n}-{i}"))
            except BaseException as exc:  # re-raised in the test's thread
                errors.append(exc)

        threads = [threading.Thread(target=work, args=(n,)) for n in range(8)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert errors == []
        for n, sid in enumerate(own):
            assert ids(store.messages(sid)) == [f"own-{n}-{i}" for i in range(40)]
        stored = ids(store.messages(shared))
        assert sorted(stored) == sorted(f"shared-{n}-{i}" for n in range(8) for i in range(40))
        assert _lent(store) == {store.transport.lean._held}, "only the held one is out"


def test_a_held_connection_the_server_closed_is_reconnected_after_an_idle_spell(
    redis_url: str, admin: redis.Redis, monkeypatch: pytest.MonkeyPatch
) -> None:
    # No retry policy: the call succeeds only because the idle check found the connection closed
    # and reconnected it before sending, as the pool does for a connection it hands out.
    monkeypatch.setattr("redis_sessions._lean._IDLE", 0.0)
    with SessionStore.from_url(redis_url, prefix=unique_prefix(), retry=None) as store:
        sid = store.create()
        assert store.append(sid, AgentMessage.user("first")) == 1
        _kill_others(admin)
        assert store.append(sid, AgentMessage.user("second")) == 2
        assert [m.text for m in store.messages(sid)] == ["first", "second"]


def test_a_fault_on_the_held_connection_disconnects_it_and_the_retry_lands_once(
    redis_url: str, admin: redis.Redis
) -> None:
    # Killed between two calls less than the idle spell apart: the send finds it closed, the lean
    # line drops it and raises, the transport's retry goes the general way; the next call reconnects.
    with SessionStore.from_url(redis_url, prefix=unique_prefix()) as store:
        sid = store.create()
        first = AgentMessage.user("first")
        assert store.append(sid, first) == 1
        _kill_others(admin)
        assert store.append(sid, AgentMessage.user("second")) == 2
        assert store.append(sid, first) == 1, "a replay: stored once"
        assert store.append(sid, AgentMessage.user("third")) == 3
        assert [m.text for m in store.messages(sid)] == ["first", "second", "third"]
        held = store.transport.lean._held
        assert held is not None
        assert held._sock is not None, "the held connection was reconnected"


def test_a_forked_child_takes_its_own_connection(redis_url: str) -> None:
    with SessionStore.from_url(redis_url, prefix=unique_prefix()) as store:
        sid = store.create()
        assert store.append(sid, AgentMessage.user("parent 1")) == 1
        parents = store.transport.lean._held
        read, write = os.pipe()
        with warnings.catch_warnings():  # another test's leftover thread would make fork() warn
            warnings.simplefilter("ignore", DeprecationWarning)
            pid = os.fork()
        if pid == 0:  # the child: appends through the same store, reports, exits at once
            os.close(read)
            try:
                seq = store.append(sid, AgentMessage.user("child"))
                fresh = store.transport.lean._held is not parents
                os.write(write, f"{seq} {fresh}".encode())
            finally:
                os._exit(0)
        os.close(write)
        with os.fdopen(read) as pipe:
            report = pipe.read()
        os.waitpid(pid, 0)
        assert report == "2 True"
        assert store.transport.lean._held is parents, "the parent keeps its own"
        assert store.append(sid, AgentMessage.user("parent 2")) == 3
        assert [m.text for m in store.messages(sid)] == ["parent 1", "child", "parent 2"]


def test_a_small_pool_lends_none(redis_url: str) -> None:
    # With max_connections=1, a held connection would leave none for the general path's calls.
    with SessionStore.from_url(redis_url, prefix=unique_prefix(), max_connections=1) as store:
        sid = store.create()
        store.extend(sid, messages_of(3))
        assert store.transport.lean._holding is None
        assert store.load(sid) is not None
        assert _lent(store) == set()


def test_resp3_lends_none(redis_url: str) -> None:
    with SessionStore.from_url(redis_url, prefix=unique_prefix(), protocol=3) as store:
        sid = store.create()
        store.extend(sid, messages_of(3))
        assert store.transport.lean._holding is None
        assert len(store.messages(sid)) == 3


def test_close_disconnects_the_held_connection(redis_url: str) -> None:
    store = SessionStore.from_url(redis_url, prefix=unique_prefix())
    sid = store.create()
    store.append(sid, AgentMessage.user("x"))
    held = store.transport.lean._held
    assert held is not None
    assert held._sock is not None
    store.close()
    assert held._sock is None
