"""Stores for the framework integrations: the repo's backend table (fakeredis, a real server, a real
cluster) crossed with both fronts, as the real ``SessionStore`` or ``AsyncSessionStore`` objects (the
integrations take either, so no adapter sits in between)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

import pytest

from redis_sessions import AsyncSessionStore, SessionStore
from tests.support import Backend

AnyStore = SessionStore | AsyncSessionStore


@pytest.fixture
async def any_store(backend: Backend, front: str) -> AsyncIterator[AnyStore]:
    """A ``SessionStore`` or an ``AsyncSessionStore`` on this test's namespace (built in the test's
    event loop, where the async client's connections belong)."""
    if front == "sync":
        store = SessionStore(backend.sync_client(), prefix=backend.prefix)
        yield store
        store.client.close()
    else:
        async_store = AsyncSessionStore(backend.async_client(), prefix=backend.prefix)
        yield async_store
        await async_store.client.aclose()


@pytest.fixture
def sync_store(backend: Backend) -> Iterator[SessionStore]:
    store = SessionStore(backend.sync_client(), prefix=backend.prefix)
    yield store
    store.client.close()


@pytest.fixture
async def async_store(backend: Backend) -> AsyncIterator[AsyncSessionStore]:
    store = AsyncSessionStore(backend.async_client(), prefix=backend.prefix)
    yield store
    await store.client.aclose()
