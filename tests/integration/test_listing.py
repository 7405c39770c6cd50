"""``info_pages`` (``_aio_listing``): ``infos`` relays SCAN pages and info.lua pages on one connection,
the next exchange sent before a page is parsed, and leaves it for the general way at anything
unusual: a killed connection, a flushed script cache, a listing abandoned halfway. ``row_pages``
(``ls``'s rows) goes the same ways and lists what ``infos`` does."""

from __future__ import annotations

import asyncio
import types
from collections import Counter
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from typing import Any

import pytest
import redis
import redis.asyncio

from redis_sessions import AsyncSessionStore, SessionId, SessionStore
from redis_sessions import _admin as admin
from redis_sessions._listing import row_pages
from redis_sessions._ls_rows import NEVER
from redis_sessions.keys import session_keys
from tests.support import Backend, messages_of, unique_prefix

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
SESSIONS = 120
PAGE = 25  # sessions a page


@pytest.fixture(autouse=True)
def small_scans(monkeypatch: pytest.MonkeyPatch) -> None:
    """Many exchanges on the relay, not one: a SCAN looks at 20 keys, not 5,000."""
    monkeypatch.setattr(admin, "SCAN_COUNT", 20)


@pytest.fixture
def client(redis_url: str) -> Iterator[redis.Redis]:
    with redis.Redis.from_url(redis_url) as c:
        yield c


def _filled(store: SessionStore) -> set[SessionId]:
    sids = {store.create(f"m{n % 3}") for n in range(SESSIONS)}
    for n, sid in enumerate(sorted(sids)[:10]):
        store.extend(sid, messages_of(n + 1))
    return sids


def _general_calls(store: SessionStore, monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The ops the store sends the general way (``transport.run``) from now on."""
    sent: list[str] = []
    run = store.transport.run

    def counted(call: Any, node: Any = None) -> Any:
        sent.append(call.op)
        return run(call, node)

    monkeypatch.setattr(store.transport, "run", counted)
    return sent


def test_a_listing_is_relayed_on_one_connection(client: redis.Redis, monkeypatch: pytest.MonkeyPatch) -> None:
    store = SessionStore(client, prefix=unique_prefix())
    sids = _filled(store)
    alone = {sid: store.info(sid) for sid in sids}
    assert len(list(store.infos())) == SESSIONS  # info.lua loaded (the first NOSCRIPT goes the general way)
    sent = _general_calls(store, monkeypatch)
    listed = list(store.infos(count=PAGE))
    assert sent == [], "SCAN and info.lua went on the relay, not call by call"
    assert Counter(i.id for i in listed) == Counter(sids)  # each once
    assert {i.id: i for i in listed} == alone  # what info() reads, field by field
    assert client.connection_pool._in_use_connections == set(), "the relay's connection went back"


def _rows_of(store: SessionStore, count: int = PAGE) -> Iterator[Any]:
    return (row for page in row_pages(store.transport, store.transport.core, count) for row in page)


def test_rows_list_what_infos_do(backend: Backend) -> None:
    store = SessionStore(backend.sync_client(), prefix=backend.prefix)
    sids = _filled(store)
    with SessionStore(backend.sync_client(), prefix=backend.prefix, ttl=3600) as expiring:
        sids.add(expiring.create("m"))
    newer, corrupt, bad_time = sorted(sids)[-3:]
    backend.raw.hset(session_keys(backend.prefix, newer).meta, "schema_version", "99")
    backend.raw.hset(session_keys(backend.prefix, corrupt).meta, "seq", "not-a-number")
    backend.raw.hset(session_keys(backend.prefix, bad_time).meta, "updated_at", "9" * 20)
    infos = {str(i.id): i for i in store.infos()}
    rows = {row[1]: row for row in _rows_of(store)}
    assert set(rows) == set(infos) == {str(sid) for sid in sids}
    for sid, (recent, _, model, messages, updated, pttl, problem) in rows.items():
        info = infos[sid]
        assert (model, messages, problem) == (info.model, info.messages, info.problem)
        micros = [
            None if t is None else (t - EPOCH) // EPOCH.resolution for t in (info.updated_at, info.created_at)
        ]
        assert updated == micros[0]
        assert recent == next((t for t in micros if t is not None), NEVER)
        assert (pttl >= 0) == (info.ttl is not None)
    assert rows[str(newer)][6] == "schema version 99, newer than this library's 1"
    assert str(rows[str(corrupt)][6]).startswith("corrupt meta hash: ")
    assert str(rows[str(bad_time)][6]).startswith("corrupt meta hash: ")
    assert sum(row[5] > 3_500_000 for row in rows.values()) == 1  # the expiring one's PTTL (ms)


def _kill_the_relay(client: redis.Redis) -> None:
    assert client.client_kill_filter(_type="normal", skipme=True) >= 1  # the relay's connection too


@pytest.mark.parametrize(
    "disturb",
    [_kill_the_relay, redis.Redis.script_flush],  # script_flush: the next page meets NOSCRIPT
    ids=["connection-killed", "script-cache-flushed"],
)
@pytest.mark.parametrize("rows", [False, True], ids=["infos", "rows"])
def test_a_listing_disturbed_midway_goes_on_the_general_way(
    client: redis.Redis, monkeypatch: pytest.MonkeyPatch, disturb: Callable[[redis.Redis], object], rows: bool
) -> None:
    store = SessionStore(client, prefix=unique_prefix())
    sids = _filled(store)
    list(_rows_of(store))  # info.lua loaded: the relay's first page is not the general way's
    sent = _general_calls(store, monkeypatch)
    listing = (row[1] for row in _rows_of(store)) if rows else (str(i.id) for i in store.infos(count=PAGE))
    listed = [next(listing)]
    assert sent == [], "relayed"
    disturb(client)
    listed += list(listing)
    assert Counter(listed) == Counter(map(str, sids)), "every session once, none twice"
    assert "info" in sent, "the pages the relay lost were read again the general way"


def test_an_abandoned_listing_hands_no_reply_on(client: redis.Redis) -> None:
    store = SessionStore(client, prefix=unique_prefix())
    sids = _filled(store)
    listing = store.infos(count=PAGE)
    first = next(listing)
    assert isinstance(listing, types.GeneratorType)
    listing.close()  # an exchange is on its way: its connection must not serve anyone else
    assert client.connection_pool._in_use_connections == set()
    info = store.info(first.id)
    assert info == first
    assert {i.id for i in store.infos()} == sids


def test_the_asyncio_store_relays_too(redis_url: str) -> None:
    async def main() -> None:
        async with redis.asyncio.Redis.from_url(redis_url) as client:
            store = AsyncSessionStore(client, prefix=unique_prefix())
            sids = {await store.create(f"m{n}") for n in range(SESSIONS)}
            assert len([i async for i in store.infos()]) == SESSIONS  # info.lua loaded
            sent: list[str] = []
            run = store.transport.run

            async def counted(call: Any, node: Any = None) -> Any:
                sent.append(call.op)
                return await run(call, node)

            store.transport.run = counted  # type: ignore[method-assign]
            listed = [i.id async for i in store.infos(count=PAGE)]
            assert sent == []
            assert Counter(listed) == Counter(sids)
            await store.aclose()

    asyncio.run(main())
