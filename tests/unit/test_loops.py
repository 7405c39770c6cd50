"""``_loops``: an asyncio store on the caller's own client refuses a call from a second event loop
(``WrongEventLoop``) before sending anything; the synchronous store has one client for all."""

from __future__ import annotations

import asyncio

import fakeredis
import pytest

from redis_sessions import AgentMessage, AsyncSessionStore, SessionError, SessionStore
from redis_sessions.errors import InvalidOperation, WrongEventLoop


def test_the_callers_client_serves_its_first_loop_and_a_second_is_refused() -> None:
    server = fakeredis.FakeServer()
    client = fakeredis.FakeAsyncRedis(server=server)
    store = AsyncSessionStore(client, prefix="loops")
    sid = asyncio.run(store.create())  # the first loop to use it: its home
    with pytest.raises(WrongEventLoop, match="from_url") as refused:
        asyncio.run(store.append(sid, AgentMessage.user("lost?")))
    assert isinstance(refused.value, InvalidOperation | SessionError | RuntimeError)
    assert fakeredis.FakeRedis(server=server).llen(f"loops:{{{sid}}}:messages") == 0, "nothing sent"


def test_the_sync_store_has_one_client_for_every_caller() -> None:
    client = fakeredis.FakeRedis()
    store = SessionStore(client, prefix="loops")
    assert store.transport.client is client
    assert store.transport.clients.current() is client
