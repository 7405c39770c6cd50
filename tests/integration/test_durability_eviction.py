"""Tiered mode under memory pressure, on redis-server processes these tests start themselves.

A tiny ``maxmemory`` with ``volatile-lru`` evicts clean sessions (they carry a TTL) while dirty ones
(not yet in the backing store, no TTL) stay. Nothing acknowledged may be lost: a session evicted,
wholly or one key of it, or expired, is read back through from the backing store; a write Redis
refuses for want of memory goes through after ``flush()``; and reading needs no memory.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from contextlib import ExitStack
from functools import partial
from typing import Any

import pytest
import redis

from redis_sessions import AgentMessage, SessionNotFound, SessionState, SessionStore, StoreError
from redis_sessions.embedded import RedisServer
from redis_sessions.keys import session_keys
from redis_sessions.persistence import SQLiteAdapter
from redis_sessions.writebehind import SyncWorker
from tests.integration.durable_support import (
    EvictsPartOfWhatItRestores,
    EvictsWhatItRestores,
    accepted,
    keys_present,
    squeeze,
    volatile_lru,
    wait_until,
)
from tests.support import ids, messages_of, unique_prefix

pytestmark = pytest.mark.real

BODY = "x" * 1000  # ~1 KB per message
SESSIONS, MESSAGES = 300, 20  # ~6 MB of messages through a 2 or 4 MB Redis

Acknowledged = dict[uuid.UUID, list[str]]


@pytest.mark.parametrize(
    "maxmemory",
    [
        pytest.param("2mb", id="2mb-writes-refused"),  # the worker falls behind: OOM refusals, flushes
        pytest.param("4mb", id="4mb-evicting"),  # fewer refusals, more sessions evicted in part
    ],
)
def test_eviction_under_a_tiny_maxmemory_loses_nothing_acknowledged(
    start_redis: Callable[..., RedisServer], database: SQLiteAdapter, stack: ExitStack, maxmemory: str
) -> None:
    """300 sessions x 20 messages of 1 KB through a 2 or 4 MB Redis while the background worker delivers.

    A write refused for want of memory is retried after a ``flush()`` (when everything in Redis is
    dirty nothing is evictable until the worker has stored some). At the end every message the writer
    was told succeeded is read back through a fresh tiered store, from Redis or, where eviction took
    the session, from the backing store; and a replayed append is still recognised.
    """
    server = start_redis(*volatile_lru(maxmemory))
    raw = stack.enter_context(redis.Redis.from_url(server.url))
    prefix = unique_prefix()
    store = stack.enter_context(SessionStore.from_url(server.url, prefix=prefix, ttl=600, backing=database))
    acknowledged: Acknowledged = {}
    refusals = 0

    def write(operation: Callable[[], object]) -> None:
        nonlocal refusals
        for _ in range(20):
            if accepted(operation):
                return
            refusals += 1
            try:
                store.flush(timeout=30)
            except StoreError as exc:
                pytest.fail(f"flush() after an OOM refusal was itself refused: {exc}")
        pytest.fail("a write was still refused for want of memory after 20 flushes")

    began = time.monotonic()
    for s in range(SESSIONS):
        sid = uuid.uuid4()
        write(partial(store.create, "m", session_id=sid))
        acknowledged[sid] = []
        for i in range(MESSAGES):
            message = AgentMessage.user(BODY, id=f"s{s}-m{i:02d}")
            write(partial(store.append, sid, message))
            acknowledged[sid].append(message.id)
    written = time.monotonic() - began
    store.flush(timeout=30)

    evicted_keys = int(raw.info("stats")["evicted_keys"])
    presence = {sid: keys_present(raw, prefix, sid) for sid in acknowledged}
    evicted = sum(1 for found in presence.values() if not found[0])
    in_part = {sid: found for sid, found in presence.items() if found[0] and not all(found)}

    fresh = stack.enter_context(SessionStore.from_url(server.url, prefix=prefix, ttl=600, backing=database))
    lost: dict[uuid.UUID, int] = {}  # session -> acknowledged messages a reader does not get back
    not_found = 0  # reads told SessionNotFound for a session the writer was told exists
    doubled = 0  # sessions that stored a replayed message again (their idempotency index was lost)
    for s, (sid, expected) in enumerate(acknowledged.items()):
        try:
            got = ids(fresh.messages(sid))
        except SessionNotFound:
            got, not_found = [], not_found + 1
        if got != expected:
            lost[sid] = len(set(expected) - set(got)) or len(expected)
        replayed = AgentMessage.user(BODY, id=f"s{s}-m00")  # a retry of the session's first append
        try:
            doubled += fresh.append(sid, replayed) != 1
        except SessionNotFound:
            not_found += 1
    not_stored = []  # sessions the backing store does not hold exactly as acknowledged
    for sid, expected in acknowledged.items():
        stored = database.load_session(sid)
        if stored is None or ids(stored.messages) != expected:
            not_stored.append(sid)
    messages = sum(len(expected) for expected in acknowledged.values())
    print(
        f"\neviction, maxmemory {maxmemory}: {len(acknowledged)} sessions, {messages} messages"
        f" acknowledged in {written:.1f} s; {refusals} OOM refusals; {evicted_keys} keys evicted;"
        f" {evicted} sessions evicted whole, {len(in_part)} in part;"
        f" {sum(lost.values())} acknowledged messages lost to a reader ({len(lost)} sessions,"
        f" {not_found} calls told SessionNotFound);"
        f" {doubled} replayed messages stored twice; {len(not_stored)} sessions incomplete in the"
        " backing store"
    )
    assert evicted_keys > 0, "the test must make Redis evict"
    assert evicted > 0, "some sessions must have been evicted (and read back through)"
    assert not_stored == [], "the backing store holds every acknowledged message"
    assert lost == {}, (
        f"{sum(lost.values())} acknowledged messages of {len(lost)} sessions not read back;"
        f" keys (meta, messages, ids) left of partly evicted sessions: {sorted(set(in_part.values()))}"
    )
    assert not_found == 0, f"{not_found} reads or replays of acknowledged sessions raised SessionNotFound"
    assert doubled == 0, f"{doubled} sessions stored a replayed message id again"


def write_dirty_sessions(store: SessionStore, sessions: int = 30) -> Acknowledged:
    """``sessions`` sessions of 20 x 1 KB that no worker delivers: dirty, without TTL, not evictable."""
    acknowledged: Acknowledged = {}
    for s in range(sessions):
        sid = store.create("m")
        messages = [AgentMessage.user(BODY, id=f"s{s}-m{i:02d}") for i in range(MESSAGES)]
        store.extend(sid, messages)
        acknowledged[sid] = ids(messages)
    return acknowledged


def test_flush_mends_a_redis_full_of_dirty_sessions(
    start_redis: Callable[..., RedisServer], database: SQLiteAdapter, stack: ExitStack
) -> None:
    """Redis is over ``maxmemory`` and every session is dirty (no TTL, nothing evictable): writes are
    refused with OOM. ``flush()`` must deliver them and mark them clean, so eviction can make room."""
    server = start_redis(*volatile_lru("100mb"))
    client = stack.enter_context(redis.Redis.from_url(server.url))
    store = stack.enter_context(SessionStore(client, prefix=unique_prefix(), ttl=600, backing=database))
    worker = SyncWorker(store, database)  # no thread: nothing is delivered until this test says so
    acknowledged = write_dirty_sessions(store)
    squeeze(client)
    sid = next(iter(acknowledged))
    message = AgentMessage.user(BODY, id="refused")
    assert not accepted(partial(store.append, sid, message)), "over maxmemory, nothing evictable: refused"

    worker.flush(timeout=30)  # marking a session clean must be allowed while Redis is over maxmemory

    assert store.append(sid, message) == MESSAGES + 1, "the refused append goes through now"
    acknowledged[sid].append(message.id)
    assert int(client.info("stats")["evicted_keys"]) > 0, "room was made by evicting clean sessions"
    worker.flush(timeout=30)
    for sid, expected in acknowledged.items():
        stored = database.load_session(sid)
        assert stored is not None
        assert ids(stored.messages) == expected


def test_reads_work_while_redis_refuses_writes(
    start_redis: Callable[..., RedisServer], database: SQLiteAdapter, stack: ExitStack
) -> None:
    """Over ``maxmemory`` with nothing evictable, Redis refuses what needs memory; a read needs none
    (Redis itself still serves HGETALL and LRANGE), so another process can still read a conversation
    while the worker catches up."""
    server = start_redis(*volatile_lru("100mb"))
    client = stack.enter_context(redis.Redis.from_url(server.url))
    prefix = unique_prefix()
    writer = stack.enter_context(SessionStore(client, prefix=prefix, ttl=600, backing=database))
    acknowledged = write_dirty_sessions(writer)
    squeeze(client)
    sid = next(iter(acknowledged))
    assert not accepted(partial(writer.append, sid, AgentMessage.user("x"))), "over maxmemory: refused"
    assert len(client.lrange(session_keys(prefix, sid).messages, 0, -1)) == MESSAGES, "Redis serves reads"

    other = stack.enter_context(redis.Redis.from_url(server.url))
    reader = stack.enter_context(SessionStore(other, prefix=prefix, backing=database))  # a cold cache
    assert reader.exists(sid) is True
    session = reader.load(sid)
    assert session is not None
    assert ids(session.messages) == acknowledged[sid]
    assert ids(reader.messages(sid, 5, 10)) == acknowledged[sid][5:10]


@pytest.mark.parametrize("lost_key", ["meta", "messages", "ids"])
def test_a_session_evicted_in_part_is_read_through(
    plain_redis: RedisServer, database: SQLiteAdapter, stack: ExitStack, lost_key: str
) -> None:
    """``volatile-lru`` evicts keys, not sessions: one key of a clean session may go while the others
    stay (the eviction test meets every such combination). The reader must still get the whole
    session, from the backing store, and a replayed append must still be recognised."""
    prefix = unique_prefix()
    url = plain_redis.url
    store = stack.enter_context(SessionStore.from_url(url, prefix=prefix, ttl=600, backing=database))
    raw = stack.enter_context(redis.Redis.from_url(url))
    sid = store.create("m")
    store.extend(sid, messages_of(5))
    store.flush(timeout=30)
    assert raw.pttl(session_keys(prefix, sid).meta) > 0, "clean: evictable under volatile-lru"
    raw.delete(getattr(session_keys(prefix, sid), lost_key))  # as eviction takes one key

    fresh = stack.enter_context(SessionStore.from_url(url, prefix=prefix, ttl=600, backing=database))
    assert ids(fresh.messages(sid)) == ids(messages_of(5))
    session = fresh.load(sid)
    assert session is not None
    assert session.seq == 5
    assert fresh.append(sid, messages_of(5)[2]) == 3, "an old message id is recognised, not stored again"
    assert fresh.append(sid, AgentMessage.user("new", id="new"), expected_seq=5) == 6
    fresh.flush(timeout=30)
    assert ids(fresh.messages(sid)) == [*ids(messages_of(5)), "new"]
    stored = database.load_session(sid)
    assert stored is not None
    assert ids(stored.messages) == [*ids(messages_of(5)), "new"]


@pytest.mark.parametrize("client_class", [EvictsWhatItRestores, EvictsPartOfWhatItRestores])
def test_a_read_through_answers_even_when_redis_evicts_what_it_restored(
    plain_redis: RedisServer,
    database: SQLiteAdapter,
    stack: ExitStack,
    client_class: type[EvictsWhatItRestores],
) -> None:
    """A cache too small for what is being read (the 2 MB eviction test meets this): the restored
    session is evicted again before the read that follows the restore. The reader must still get the
    session, which the backing store holds, not ``SessionNotFound``."""
    sid = uuid.uuid4()
    history = messages_of(5)
    database.save_session(sid, SessionState(model="m", messages=history, seq=len(history)))
    client = stack.enter_context(client_class.from_url(plain_redis.url))
    store = stack.enter_context(SessionStore(client, prefix=unique_prefix(), ttl=600, backing=database))
    assert ids(store.messages(sid)) == ids(history)
    assert client.evictions == 1, "the session was restored, and evicted again"
    session = store.load(sid)
    assert session is not None
    assert (ids(session.messages), session.seq) == (ids(history), len(history))


def test_a_clean_session_that_expired_is_read_through(
    plain_redis: RedisServer, database: SQLiteAdapter, stack: ExitStack
) -> None:
    prefix = unique_prefix()
    url = plain_redis.url
    store = stack.enter_context(SessionStore.from_url(url, prefix=prefix, ttl=0.2, backing=database))
    raw = stack.enter_context(redis.Redis.from_url(url))
    sid = store.create("m", metadata={"k": "v"})
    store.extend(sid, messages_of(3))
    assert raw.pttl(session_keys(prefix, sid).meta) == -1, "dirty: it cannot expire"
    store.flush(timeout=30)
    wait_until(lambda: raw.exists(*session_keys(prefix, sid)) == 0, "the session's TTL to expire it")
    session = store.load(sid)
    assert session is not None
    assert (ids(session.messages), session.seq, session.metadata) == (ids(messages_of(3)), 3, {"k": "v"})


def test_a_session_found_gone_and_written_again_right_after_stays_listed_as_dirty(
    plain_redis: RedisServer, database: SQLiteAdapter, stack: ExitStack
) -> None:
    """A worker finds a listed session gone (``sync_read``: evicted once clean). If, right after, the
    session is read back through the record and written to (its append lists it again), that entry
    must stay: the write is not in the record yet, and ``flush()`` only waits for listed sessions.
    The worker used to take the session off the dirty index in a call of its own after the read, so
    an append landing in between was unlisted, and ``flush()`` returned without it."""
    prefix = unique_prefix()
    client = stack.enter_context(redis.Redis.from_url(plain_redis.url))
    store = stack.enter_context(SessionStore(client, prefix=prefix, ttl=600, backing=database))
    sid = store.create()
    store.append(sid, AgentMessage.user("first", id="first"))
    interleave = [lambda: store.append(sid, AgentMessage.user("second", id="second"))]

    worker = SyncWorker(SessionStore(client, prefix=prefix), database).bind()
    run = worker.io.run

    def interleaving(call: Any) -> Any:  # the worker's one way to Redis, interposed
        reply = run(call)
        if call.script == "sync_read" and reply == [None] and interleave:
            interleave.pop()()  # read back through the record, written, listed again
        return reply

    worker.io.run = interleaving  # type: ignore[method-assign]
    worker.flush(timeout=30)  # "first" is in the record; the session is clean, with its TTL
    client.delete(*session_keys(prefix, sid))  # evicted
    worker.deliver([sid])  # it was listed when this pass began (say): gone now, then back and dirty
    assert not interleave, "the interleaving ran"

    assert sid in worker.pending(), "the write after the read-through is no longer listed as dirty"
    worker.flush(timeout=30)
    state = database.load_session(sid)
    assert state is not None
    assert ids(state.messages) == ["first", "second"], "flush returned without the acknowledged write"
