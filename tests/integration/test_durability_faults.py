"""Tiered mode under faults, on redis-server processes these tests start themselves.

Redis restarts with nothing persisted and every session comes back from the backing store, continuing
its seq; the backing store is unavailable for a while and nothing acknowledged is lost; a hostile row
met by a read-through gives a typed error and leaves nothing in Redis; stores that miss the same
session at once restore it once; and a session evicted while a worker delivers it keeps its record.
(Memory pressure: ``test_durability_eviction.py``; PostgreSQL: ``test_durability_postgres.py``.)
"""

from __future__ import annotations

import sqlite3
import threading
import uuid
from collections.abc import Callable
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import pytest
import redis

from redis_sessions import (
    AgentMessage,
    ConflictError,
    CorruptSession,
    SchemaVersionError,
    SessionStore,
    StoreError,
)
from redis_sessions.embedded import RedisServer
from redis_sessions.keys import dirty_key, session_keys
from redis_sessions.persistence import SQLiteAdapter
from redis_sessions.writebehind import SyncWorker
from tests.integration.durable_support import wait_until
from tests.persistence.raw import RawSQLite
from tests.support import ids, messages_of, unique_prefix

pytestmark = pytest.mark.real


def test_a_redis_restarted_empty_is_refilled_from_the_backing_store(
    start_redis: Callable[..., RedisServer], database: SQLiteAdapter, stack: ExitStack
) -> None:
    server = start_redis()  # --save "" and --appendonly no: a restart comes back empty
    prefix = unique_prefix()
    before = stack.enter_context(SessionStore.from_url(server.url, prefix=prefix, backing=database))
    sessions: dict[uuid.UUID, list[AgentMessage]] = {}
    for n in range(1, 6):
        sid = before.create(f"model-{n}", n, f"system {n}", metadata={"n": str(n)})
        sessions[sid] = messages_of(n * 3, tag=f"s{n}")
        before.extend(sid, sessions[sid][: n * 2])
        for message in sessions[sid][n * 2 :]:
            before.append(sid, message)
    before.flush(timeout=30)

    assert server.process is not None
    server.process.kill()  # SIGKILL: no shutdown, nothing saved
    server.process.wait(10)
    server.stop()
    server.start()  # the same port, an empty data set, no scripts loaded
    raw = stack.enter_context(redis.Redis.from_url(server.url))
    assert raw.dbsize() == 0

    fresh = stack.enter_context(SessionStore.from_url(server.url, prefix=prefix, backing=database))
    for n, (sid, messages) in enumerate(sessions.items(), start=1):
        session = fresh.load(sid)
        assert session is not None
        assert session.messages == messages
        assert (session.model, session.max_turns, session.system_message) == (f"model-{n}", n, f"system {n}")
        assert (session.metadata, session.seq) == ({"n": str(n)}, len(messages))
        with pytest.raises(ConflictError):
            fresh.append(sid, AgentMessage.user("stale"), expected_seq=len(messages) - 1)
        assert fresh.append(sid, messages[0]) == 1, "an old id keeps its seq: nothing stored twice"
        after = AgentMessage.user("after", id="after")
        assert fresh.append(sid, after, expected_seq=len(messages)) == len(messages) + 1
    # The store made before the restart reconnects (its scripts reloaded) and reads through too.
    sid, messages = next(iter(sessions.items()))
    assert ids(before.messages(sid)) == [*ids(messages), "after"]
    fresh.flush(timeout=30)
    for sid, messages in sessions.items():
        stored = database.load_session(sid)
        assert stored is not None
        assert ids(stored.messages) == [*ids(messages), "after"], "no message twice, same order"
        assert stored.seq == len(messages) + 1


def test_an_unavailable_backing_store_delays_but_loses_nothing(
    plain_redis: RedisServer, tmp_path: Path, stack: ExitStack
) -> None:
    """The database is locked (as by a long migration or a backup): appends still succeed, flush
    fails, the background worker keeps trying; once the database is free, everything arrives."""
    path = tmp_path / "record.db"
    backing = stack.enter_context(SQLiteAdapter(path, timeout=0.2))
    prefix = unique_prefix()
    store = stack.enter_context(SessionStore.from_url(plain_redis.url, prefix=prefix, backing=backing))
    sid = store.create("m")
    store.extend(sid, messages_of(3))
    store.flush(timeout=30)

    later = messages_of(30, tag="later")
    blocker = sqlite3.connect(path, isolation_level=None)
    try:
        blocker.execute("BEGIN EXCLUSIVE")  # no other connection may write to the database now
        for message in later:
            store.append(sid, message)  # Redis acknowledges; the record lags
        with pytest.raises((StoreError, TimeoutError)):
            store.flush(timeout=1)
        assert SyncWorker(store, backing).lag().messages == len(later)
    finally:
        blocker.execute("ROLLBACK")
        blocker.close()

    def delivered() -> bool:
        stored = backing.load_session(sid)
        return stored is not None and len(stored.messages) == 3 + len(later)

    wait_until(delivered, "the background worker to deliver on its own once the database is free")
    stored = backing.load_session(sid)
    assert stored is not None
    assert ids(stored.messages) == [*ids(messages_of(3)), *ids(later)]
    assert SyncWorker(store, backing).lag() == (0, 0, 0.0)


@pytest.mark.parametrize(
    ("header", "error"),
    [
        (b'{"schema_version":99,"model":"m","max_turns":0,"metadata":{}}', SchemaVersionError),
        (b"{not json", CorruptSession),
    ],
    ids=["version-99", "bad-json"],
)
def test_a_hostile_row_met_by_a_read_through_is_a_typed_error(
    plain_redis: RedisServer, database: SQLiteAdapter, stack: ExitStack, header: bytes, error: type[Exception]
) -> None:
    prefix = unique_prefix()
    store = stack.enter_context(SessionStore.from_url(plain_redis.url, prefix=prefix, backing=database))
    raw = stack.enter_context(redis.Redis.from_url(plain_redis.url))
    sid = uuid.uuid4()
    rows = RawSQLite(database.path)
    try:
        rows.put(str(sid), header)
    finally:
        rows.close()
    for read in (store.load, store.messages, store.exists):
        with pytest.raises(error, match=str(sid)):
            read(sid)
    with pytest.raises(error, match=str(sid)):
        store.append(sid, AgentMessage.user("x"))
    assert raw.exists(*session_keys(prefix, sid)) == 0, "nothing half-restored into Redis"
    assert raw.zscore(dirty_key(prefix, sid, False), str(sid)) is None


def test_stores_that_miss_at_once_restore_the_session_once(
    plain_redis: RedisServer, database: SQLiteAdapter, stack: ExitStack
) -> None:
    """Eight stores miss the same session at the same moment and each appends one message: every
    append lands, once, after the restored history (a second restore would have wiped some)."""
    prefix = unique_prefix()
    writer = stack.enter_context(SessionStore.from_url(plain_redis.url, prefix=prefix, backing=database))
    raw = stack.enter_context(redis.Redis.from_url(plain_redis.url))
    sid = writer.create("m")
    writer.extend(sid, messages_of(5))
    writer.flush(timeout=30)
    raw.delete(*session_keys(prefix, sid))

    readers = 8
    stores = [
        SessionStore(
            stack.enter_context(redis.Redis.from_url(plain_redis.url)), prefix=prefix, backing=database
        )
        for _ in range(readers)
    ]
    barrier = threading.Barrier(readers)
    seqs: list[int] = []
    errors: list[BaseException] = []

    def miss_and_append(n: int) -> None:
        try:
            barrier.wait(timeout=30)
            seqs.append(stores[n].append(sid, AgentMessage.user(f"reader {n}", id=f"r{n}")))
        except BaseException as exc:  # reported below, in the test's thread
            errors.append(exc)

    threads = [threading.Thread(target=miss_and_append, args=(n,)) for n in range(readers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert errors == []
    assert sorted(seqs) == list(range(6, 6 + readers)), "each append got its own seq after the history"
    got = ids(writer.messages(sid))
    assert got[:5] == ids(messages_of(5))
    assert sorted(got[5:]) == sorted(f"r{n}" for n in range(readers))
    writer.flush(timeout=30)
    stored = database.load_session(sid)
    assert stored is not None
    assert ids(stored.messages) == got


class RaceWhileDelivering:
    """The backing store, seen by one worker: while that worker delivers a session (between its read
    and its mark), ``meanwhile`` runs once, as another worker, a ``flush()`` or a reader would."""

    def __init__(self, backing: SQLiteAdapter, meanwhile: Callable[[uuid.UUID], None]) -> None:
        self.backing, self.meanwhile, self.raced = backing, meanwhile, False

    def __getattr__(self, name: str) -> Any:
        return getattr(self.backing, name)

    def deliver(self, deliveries: Any) -> Any:
        stored = self.backing.deliver(deliveries)
        if not self.raced:
            self.raced = True
            self.meanwhile(deliveries[0].session_id)
        return stored


@pytest.mark.parametrize("then", ["evicted", "evicted-and-read-back"])
def test_a_session_evicted_while_a_worker_delivers_it_stays_in_the_backing_store(
    plain_redis: RedisServer, database: SQLiteAdapter, stack: ExitStack, then: str
) -> None:
    """Two workers deliver the same dirty session (the background thread and a ``flush()``, or two
    processes): the other one stores it and marks it clean, Redis evicts it (it carries a TTL now),
    and a reader may bring it back (a new incarnation) before this worker marks it. The session was
    evicted, not deleted: its record in the backing store must stay whole."""
    prefix = unique_prefix()
    client = stack.enter_context(redis.Redis.from_url(plain_redis.url))
    store = SessionStore(client, prefix=prefix, ttl=600, backing=database)
    reader = SessionStore(client, prefix=prefix, ttl=600, backing=database)
    sid = store.create("m")
    store.extend(sid, messages_of(5))

    def meanwhile(sid: uuid.UUID) -> None:
        SyncWorker(store, database).flush(timeout=30)  # the other worker: stored, marked clean
        assert client.pttl(session_keys(prefix, sid).meta) > 0, "clean: evictable"
        client.delete(*session_keys(prefix, sid))  # volatile-lru evicts it
        if then == "evicted-and-read-back":
            assert ids(reader.messages(sid)) == ids(messages_of(5))

    racing = RaceWhileDelivering(database, meanwhile)
    SyncWorker(store, racing).flush(timeout=30)
    assert racing.raced

    stored = database.load_session(sid)
    assert stored is not None, "an evicted session was deleted from the backing store"
    assert ids(stored.messages) == ids(messages_of(5))
    fresh = SessionStore(client, prefix=prefix, ttl=600, backing=database)
    client.delete(*session_keys(prefix, sid))  # evicted (again): the backing store is all there is
    assert ids(fresh.messages(sid)) == ids(messages_of(5))


def test_a_connection_reset_while_flush_reads_the_seqs_is_retried(
    plain_redis: RedisServer, database: SQLiteAdapter, stack: ExitStack
) -> None:
    """``flush()`` reads the seqs of the pending sessions in one pipeline. A connection reset there
    (a ``CLIENT KILL``, a restart) must go through the store's one retry layer like every other
    call: it used to surface at once as a plain ``StoreError("sync failed: ConnectionError ...")``,
    neither retried nor ``StoreUnavailable`` (found by the tiered soak)."""
    client = stack.enter_context(redis.Redis.from_url(plain_redis.url))
    store = SessionStore(client, prefix=unique_prefix(), backing=database)  # no worker thread
    sid = store.create()
    store.extend(sid, messages_of(3))
    worker = SyncWorker(store, database).bind()
    pipeline, resets = client.pipeline, [redis.exceptions.ConnectionError("Connection reset by peer")]

    def resetting(*args: Any, **kwargs: Any) -> Any:
        pipe = pipeline(*args, **kwargs)
        if resets:
            error = resets.pop()

            def execute(*_: Any, **__: Any) -> Any:
                raise error

            pipe.execute = execute
        return pipe

    client.pipeline = resetting
    worker.flush(timeout=30)
    assert not resets, "the reset happened"
    state = database.load_session(sid)
    assert state is not None
    assert ids(state.messages) == ids(messages_of(3))


def test_a_worker_whose_scripts_redis_forgot_still_delivers_every_session(
    plain_redis: RedisServer, database: SQLiteAdapter, stack: ExitStack
) -> None:
    # The worker pipelines its sync_read and sync_mark calls on the lean line first; after SCRIPT
    # FLUSH every one of them is refused (NOSCRIPT), and the batch takes the general path, which
    # loads the scripts again: nothing is lost or delivered twice. (8 sessions a call: 5 calls a batch.)
    prefix = unique_prefix()
    admin = stack.enter_context(redis.Redis.from_url(plain_redis.url))
    store = stack.enter_context(SessionStore(admin, prefix=prefix, backing=database))  # no worker thread
    worker = SyncWorker(SessionStore.from_url(plain_redis.url, prefix=prefix), database, sessions=8)
    stack.callback(worker.io.close)
    sids = [store.create() for _ in range(40)]
    worker.flush()
    for sid in sids:
        store.extend(sid, messages_of(3, tag=str(sid)))
    assert admin.script_flush()
    worker.flush()
    for sid in sids:
        stored = database.load_session(sid)
        assert stored is not None
        assert ids(stored.messages) == ids(messages_of(3, tag=str(sid)))
