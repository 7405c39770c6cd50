"""The backend table: every integration test runs on fakeredis, on a real redis-server and on a real
Redis Cluster (3 primaries, 3 replicas), sync and async.

The real server is a ``redis-server`` spawned once per run on a free loopback port, or ``REDIS_URL``
when set; the cluster is six ``redis-server`` processes spawned once per run (``tests/servers.py``),
or ``REDIS_CLUSTER_URL`` (any node) when set. Either way each test works under its own key prefix
and deletes only those keys, so a shared server is never flushed. Without ``redis-server`` the real
tests skip, except under ``CI=true``, where a missing server fails the run.
"""

from __future__ import annotations

import asyncio
import os
import shutil
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from redis_sessions import AsyncSessionStore, SessionStore
from redis_sessions.embedded import RedisServer
from tests.servers import RedisClusterServers, require_redis_binaries
from tests.support import AsyncAdapter, Backend, opened_stores

BACKENDS = [
    pytest.param("fakeredis", id="fakeredis"),
    pytest.param("real", marks=pytest.mark.real, id="real"),
    pytest.param("cluster", marks=[pytest.mark.real, pytest.mark.cluster], id="cluster"),
]
FRONTS = ["sync", "async"]

Store = SessionStore | AsyncAdapter
MakeStore = Callable[..., Store]


def in_ci() -> bool:
    return os.environ.get("CI", "").strip().lower() in {"true", "1", "yes"}


@pytest.fixture(scope="session")
def redis_url() -> Iterator[str]:
    """The URL of a real Redis: ``REDIS_URL``, or a ``redis-server`` started for this run."""
    given = os.environ.get("REDIS_URL")
    if given:
        yield given
        return
    if shutil.which("redis-server") is None:
        reason = "redis-server is not on PATH and REDIS_URL is not set (apt-get install redis-server)"
        if in_ci():
            pytest.fail(f"CI=true: {reason}", pytrace=False)
        pytest.skip(reason)
    with RedisServer() as server:
        yield server.url


@pytest.fixture(scope="session")
def cluster_url() -> Iterator[str]:
    """Any node of a real Redis Cluster: ``REDIS_CLUSTER_URL``, or six nodes started for this run."""
    given = os.environ.get("REDIS_CLUSTER_URL")
    if given:
        yield given
        return
    require_redis_binaries()
    with RedisClusterServers() as cluster:
        yield cluster.url


@pytest.fixture
def spawned_server(redis_url: str) -> bool:
    """True when the real server is ours (not a shared ``REDIS_URL``), so server-wide commands are fine."""
    return not os.environ.get("REDIS_URL")


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest) -> Iterator[Backend]:
    url = None
    if request.param == "real":
        url = request.getfixturevalue("redis_url")
    elif request.param == "cluster":
        url = request.getfixturevalue("cluster_url")
    namespace = Backend(request.param, url)
    yield namespace
    namespace.close()


@pytest.fixture
def raw(backend: Backend) -> Any:
    """A sync client on the same data as the store, for writing bad data and inspecting keys."""
    return backend.raw


@pytest.fixture(params=FRONTS)
def front(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def make_store(backend: Backend, front: str) -> Iterator[MakeStore]:
    """``make_store(**options)``: a SessionStore, or an AsyncSessionStore behind ``AsyncAdapter``."""
    runner = asyncio.Runner()
    made: list[Store] = []

    def make(**options: Any) -> Store:
        options.setdefault("prefix", backend.prefix)
        store: Store
        if front == "sync":
            store = SessionStore(backend.sync_client(), **options)
        else:
            store = AsyncAdapter(AsyncSessionStore(backend.async_client(), **options), runner)
        made.append(store)
        return store

    try:
        yield make
    finally:
        for store in made:
            if isinstance(store, AsyncAdapter):
                runner.run(store.client.aclose())
            else:
                store.client.close()
        runner.close()


@pytest.fixture
def store(make_store: MakeStore) -> Store:
    return make_store()


@pytest.fixture
def closed_url() -> str:
    """A redis:// URL on a loopback port where nothing listens."""
    from redis_sessions.embedded import free_port

    return f"redis://127.0.0.1:{free_port()}/0"


@pytest.fixture
def make_unreachable(front: str, closed_url: str) -> Iterator[MakeStore]:
    """``make_unreachable(**options)``: a store (sync or async front) whose Redis cannot be reached."""
    with opened_stores(front) as make:
        yield lambda **options: make(closed_url, **options)
