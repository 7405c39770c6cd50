"""Tiered mode: Redis is the cache, the backing store (SQLite here) is the record.

Write-behind delivers every acknowledged write (flush() waits for it), read-through brings back a
session Redis lost, a dirty session keeps no TTL and is not trimmed below what the backing store
lacks, delete removes both copies, and what an appender acknowledged survives the appender's death.
Runs on a real server and on the cluster, sync and async.
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from redis_sessions import (
    AgentMessage,
    ConflictError,
    SessionNotFound,
    SessionStore,
    TenantQuota,
)
from redis_sessions.keys import dirty_key, session_keys, tokens_key
from redis_sessions.persistence import SQLiteAdapter
from redis_sessions.writebehind import SyncWorker
from tests.integration.durable_support import flush
from tests.support import Backend, ids, messages_of, opened_stores

REAL = [
    pytest.param("real", marks=pytest.mark.real),
    pytest.param("cluster", marks=[pytest.mark.real, pytest.mark.cluster]),
]
pytestmark = pytest.mark.parametrize("backend", REAL, indirect=True)

Tiered = Callable[..., Any]


@pytest.fixture
def tiered(backend: Backend, front: str, database: SQLiteAdapter) -> Iterator[Tiered]:
    """``tiered(**options)``: a store made by from_url/from_cluster with ``backing=database``."""
    opener = "from_cluster" if backend.cluster else "from_url"
    assert backend.url is not None
    url = backend.url
    with opened_stores(front) as make:
        yield lambda **options: make(
            url, opener, **{"prefix": backend.prefix, "backing": database, **options}
        )


def test_every_write_reaches_the_backing_store(tiered: Tiered, database: SQLiteAdapter) -> None:
    store = tiered()
    sid = store.create("gpt-x", 4, "be brief", metadata={"team": "a"})
    store.extend(sid, messages_of(5))
    store.append(sid, AgentMessage.assistant("done", id="last"))
    store.set_metadata(sid, {"team": "b", "extra": "1"})
    flush(store)
    stored = database.load_session(sid)
    assert stored is not None
    assert ids(stored.messages) == [*ids(messages_of(5)), "last"]
    assert stored.messages == store.messages(sid)
    assert (stored.model, stored.max_turns, stored.system_message) == ("gpt-x", 4, "be brief")
    assert stored.metadata == {"team": "b", "extra": "1"}
    assert stored.seq == 6


def test_a_session_redis_lost_is_read_through(
    tiered: Tiered, database: SQLiteAdapter, backend: Backend
) -> None:
    store = tiered()
    sid = store.create("m")
    store.extend(sid, messages_of(4))
    flush(store)
    backend.raw.delete(*session_keys(backend.prefix, sid))  # as an eviction or a lost Redis would
    reader = tiered()  # another process: no cache of it
    assert ids(reader.messages(sid)) == ids(messages_of(4))
    session = reader.load(sid)
    assert session is not None
    assert (session.model, session.seq) == ("m", 4)
    # It continues from its seq: expected_seq and idempotency hold across the trip.
    with pytest.raises(ConflictError):
        reader.append(sid, AgentMessage.user("stale"), expected_seq=0)
    assert reader.append(sid, messages_of(4)[0]) == 1
    assert reader.append(sid, AgentMessage.user("fifth", id="fifth"), expected_seq=4) == 5


@pytest.mark.parametrize("operation", ["exists", "load", "append", "set_metadata"])
def test_each_operation_reads_through(tiered: Tiered, backend: Backend, operation: str) -> None:
    store = tiered()
    sid = store.create()
    store.extend(sid, messages_of(2))
    flush(store)
    backend.raw.delete(*session_keys(backend.prefix, sid))
    fresh = tiered()
    if operation == "exists":
        assert fresh.exists(sid) is True
    elif operation == "load":
        assert fresh.load(sid) is not None
    elif operation == "append":
        assert fresh.append(sid, AgentMessage.user("x", id="x")) == 3
    else:
        fresh.set_metadata(sid, {"k": "v"})
    assert fresh.load(sid).seq >= 2
    assert ids(fresh.messages(sid))[:2] == ids(messages_of(2))


def test_a_miss_in_both_tiers_is_still_a_miss(tiered: Tiered) -> None:
    store = tiered()
    sid = store.create()
    store.delete(sid)
    assert store.exists(sid) is False
    assert store.load(sid) is None
    with pytest.raises(SessionNotFound):
        store.append(sid, AgentMessage.user("x"))


def test_delete_removes_both_copies(tiered: Tiered, database: SQLiteAdapter) -> None:
    store = tiered()
    sid = store.create()
    store.extend(sid, messages_of(3))
    flush(store)
    assert database.load_session(sid) is not None
    assert store.delete(sid) is True
    assert database.load_session(sid) is None
    assert store.load(sid) is None


def test_a_dirty_session_keeps_no_ttl_until_it_is_stored(backend: Backend, database: SQLiteAdapter) -> None:
    # One front is enough here: the scripts decide, and both fronts send the same ones.
    client = backend.sync_client()
    store = SessionStore(client, prefix=backend.prefix, ttl=60, max_messages=3, backing=database)
    worker = SyncWorker(store, database)  # no thread: this test decides when it runs
    try:
        sid = store.create()
        meta = session_keys(backend.prefix, sid).meta
        assert backend.raw.pttl(meta) == -1, "created durable: no TTL until the backing store has it"
        store.extend(sid, messages_of(10))
        assert backend.raw.pttl(meta) == -1
        # Not trimmed to 3 yet: 10 messages the backing store lacks are all kept.
        assert len(store.messages(sid)) == 10
        assert backend.raw.zscore(dirty_key(backend.prefix, sid, backend.cluster), str(sid)) is not None
        lag = worker.lag()
        assert (lag.sessions, lag.messages) == (1, 10)
        worker.flush(timeout=30)
        assert 0 < backend.raw.pttl(meta) <= 60_000
        # The token counts expire with the session (they outlived it, persisted, before) and are
        # trimmed with its list.
        assert 0 < backend.raw.pttl(tokens_key(backend.prefix, sid)) <= 60_000
        assert backend.raw.llen(tokens_key(backend.prefix, sid)) == 3
        assert ids(store.messages(sid)) == ids(messages_of(10))[-3:], "trimmed once stored"
        expected = [store.context(sid, 10**6).messages, store.messages(sid)]
        assert expected[0] == expected[1]
        assert ids(database.load_session(sid).messages) == ids(messages_of(10))  # type: ignore[union-attr]
        assert backend.raw.zscore(dirty_key(backend.prefix, sid, backend.cluster), str(sid)) is None
        assert worker.lag() == (0, 0, 0.0)
        store.append(sid, AgentMessage.user("again"))
        assert backend.raw.pttl(meta) == -1, "a new append makes it dirty, and TTL-less, again"
    finally:
        client.close()


def test_what_a_dead_appender_acknowledged_is_delivered(backend: Backend, database: SQLiteAdapter) -> None:
    opener = "from_cluster" if backend.cluster else "from_url"
    code = (
        "import os, sys, uuid\n"
        "from redis_sessions import SessionStore, AgentMessage\n"
        "from redis_sessions.persistence import SQLiteAdapter\n"
        "store = getattr(SessionStore, sys.argv[3])(sys.argv[1], prefix=sys.argv[2],\n"
        "                                           backing=SQLiteAdapter(sys.argv[4]))\n"
        "store._worker.stop()  # this appender never delivers anything itself\n"
        "sid = store.create()\n"
        "for i in range(50):\n"
        "    store.append(sid, AgentMessage.user(f'm{i}', id=f'm{i}'))\n"
        "print(sid, flush=True)\n"
        "os._exit(0)  # dies without flush or close\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code, backend.url or "", backend.prefix, opener, str(database.path)],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    )
    sid = out.stdout.strip()
    assert database.load_session(sid) is None, "nothing was delivered before the worker ran"
    client = backend.sync_client()
    try:
        SyncWorker(SessionStore(client, prefix=backend.prefix), database).flush(timeout=30)
    finally:
        client.close()
    stored = database.load_session(sid)
    assert stored is not None
    assert ids(stored.messages) == [f"m{i}" for i in range(50)]


def test_a_summary_reaches_the_record_and_comes_back_counted(
    tiered: Tiered, database: SQLiteAdapter, backend: Backend
) -> None:
    store = tiered(token_counter=lambda message: 10)
    sid = store.create()
    store.extend(sid, messages_of(6))
    store.summarize(sid, "the first four", through_seq=4)
    flush(store)
    stored = database.load_session(sid)
    assert stored is not None
    assert stored.summary is not None
    assert (stored.summary, stored.summary_seq) == (
        AgentMessage.system("the first four", id=stored.summary.id),
        4,
    )
    backend.raw.delete(*session_keys(backend.prefix, sid))  # as an eviction or a lost Redis would
    reader = tiered(token_counter=lambda message: 10)
    window = reader.context(sid, 1_000)  # read through: the record's summary, the messages recounted
    assert window.summary == stored.summary
    assert (window.first_seq, window.counts, window.tokens) == (5, [10, 10], 30)
    assert reader.info(sid).tokens == 60
    assert reader.compact(sid, pytest.fail, over_tokens=30, keep_tokens=10) is None  # 30: not over


def test_a_read_through_keeps_the_tenant_ledger_right(tiered: Tiered, backend: Backend) -> None:
    quota = TenantQuota(max_sessions=5, max_bytes=1_000_000)
    store = tiered(tenant_quota=quota)
    sid = store.create("m")
    store.extend(sid, messages_of(4))
    flush(store)
    held = store.tenant_usage().bytes
    assert held > 0
    backend.raw.delete(*session_keys(backend.prefix, sid))  # lost from Redis: the ledger still has it
    reader = tiered(tenant_quota=quota)
    assert ids(reader.messages(sid)) == ids(messages_of(4))  # read through: counted anew, once
    usage = reader.tenant_usage()
    assert (usage.sessions, usage.bytes) == (1, held)
    reader.delete(sid)
    assert reader.tenant_usage().sessions == 0
