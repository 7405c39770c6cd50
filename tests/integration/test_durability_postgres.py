"""Tiered mode with PostgreSQL as the backing store, on servers these tests start themselves.

Write-behind and read-through as ``test_durability.py`` checks them on SQLite (sync and async fronts),
and two processes appending to one session through tiered stores while both flush: PostgreSQL ends
up holding Redis's list, every message once, in order.
PostgreSQL is ``POSTGRES_DSN`` when set, else a private server (``tests/persistence/pg_server.py``).
"""

from __future__ import annotations

import multiprocessing
import uuid
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from typing import Any

import psycopg
import pytest
import redis
from psycopg import sql

from redis_sessions import AgentMessage, ConflictError, SessionStore
from redis_sessions.embedded import RedisServer
from redis_sessions.keys import session_keys
from redis_sessions.persistence import PostgresAdapter
from tests.integration.durable_support import flush, postgres
from tests.integration.durable_workers import tiered_postgres_appender
from tests.support import ids, messages_of, opened_stores, unique_prefix

pytestmark = [pytest.mark.real, pytest.mark.postgres]


@pytest.fixture(scope="module")
def pg_dsn() -> Iterator[str]:
    yield from postgres()


@pytest.fixture
def pg_schema(pg_dsn: str) -> Iterator[str]:
    """A schema of this test's own, dropped afterwards (a shared server keeps everything else)."""
    name = f"rs_t_{uuid.uuid4().hex[:12]}"
    yield name
    with psycopg.connect(pg_dsn, autocommit=True) as connection:
        connection.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(name)))


@pytest.fixture
def pg(pg_dsn: str, pg_schema: str) -> Iterator[PostgresAdapter]:
    """The backing store, and (the same object) what the tests inspect it with."""
    with PostgresAdapter(pg_dsn, schema=pg_schema, max_size=4) as adapter:
        yield adapter


@pytest.fixture
def tiered(plain_redis: RedisServer, pg: PostgresAdapter) -> Iterator[Callable[[str, str], Any]]:
    """``tiered(front, prefix)``: a tiered store (sync, or async behind ``AsyncAdapter``) over
    ``plain_redis`` with PostgreSQL as the backing store."""
    with opened_stores("sync") as sync, opened_stores("async") as async_:

        def make(front: str, prefix: str) -> Any:
            return (sync if front == "sync" else async_)(plain_redis.url, prefix=prefix, backing=pg)

        yield make


@pytest.mark.parametrize("front", ["sync", "async"])
def test_write_behind_and_read_through_with_postgres(
    plain_redis: RedisServer, pg: PostgresAdapter, tiered: Callable[[str, str], Any], front: str
) -> None:
    prefix = unique_prefix()
    store = tiered(front, prefix)
    sid = store.create("gpt-x", 4, "be brief", metadata={"team": "a"})
    store.extend(sid, messages_of(5))
    store.append(sid, AgentMessage.assistant("done", id="last"))
    store.set_metadata(sid, {"team": "b", "extra": "1"})
    flush(store)
    stored = pg.load_session(sid)
    assert stored is not None
    assert ids(stored.messages) == [*ids(messages_of(5)), "last"]
    assert stored.messages == store.messages(sid)
    assert (stored.model, stored.max_turns, stored.system_message) == ("gpt-x", 4, "be brief")
    assert (stored.metadata, stored.seq) == ({"team": "b", "extra": "1"}, 6)

    with redis.Redis.from_url(plain_redis.url) as raw:
        raw.delete(*session_keys(prefix, sid))  # as an eviction or a lost Redis would
    reader = tiered(front, prefix)  # another process: no cache of it
    session = reader.load(sid)
    assert session is not None
    assert session.messages == stored.messages
    assert (session.model, session.metadata, session.seq) == ("gpt-x", {"team": "b", "extra": "1"}, 6)
    with pytest.raises(ConflictError):
        reader.append(sid, AgentMessage.user("stale"), expected_seq=5)
    assert reader.append(sid, messages_of(5)[0]) == 1, "an old id keeps its seq: nothing stored twice"
    assert reader.append(sid, AgentMessage.user("seventh", id="seventh"), expected_seq=6) == 7
    flush(reader)
    stored = pg.load_session(sid)
    assert stored is not None
    assert ids(stored.messages) == [*ids(messages_of(5)), "last", "seventh"]
    assert stored.seq == 7

    assert reader.delete(sid) is True
    assert pg.load_session(sid) is None
    assert reader.load(sid) is None


def test_two_processes_append_to_one_session_while_flushing_to_postgres(
    plain_redis: RedisServer, pg: PostgresAdapter, pg_dsn: str, pg_schema: str
) -> None:
    writers, each, flush_every = 2, 300, 25
    prefix = unique_prefix()
    with ExitStack() as stack:
        store = stack.enter_context(SessionStore.from_url(plain_redis.url, prefix=prefix, backing=pg))
        sid = store.create("m")
        ctx = multiprocessing.get_context("spawn")
        barrier, results = ctx.Barrier(writers), ctx.Queue()
        common = (plain_redis.url, prefix, pg_dsn, pg_schema, sid)
        processes = [
            ctx.Process(
                target=tiered_postgres_appender,
                args=(*common, w, each, flush_every, barrier, results),
                daemon=True,
            )
            for w in range(writers)
        ]
        for process in processes:
            process.start()
        reports = [results.get(timeout=90) for _ in processes]
        for process in processes:
            process.join(30)
        errors = [error for _, error, _ in reports if error]
        assert not errors, errors[0]
        seqs = sorted(seq for _, _, written in reports for seq in written)
        assert seqs == list(range(1, writers * each + 1)), "every append got its own seq"

        # Each writer flushed after its last append, so the later of the two final flushes covered
        # everything both acknowledged: PostgreSQL holds it all before anyone else flushes.
        stored = pg.load_session(sid)
        assert stored is not None
        in_redis = ids(store.messages(sid))
        assert len(in_redis) == writers * each
        assert ids(stored.messages) == in_redis, "PostgreSQL holds Redis's list: same messages, same order"
        assert stored.seq == writers * each
        for w in range(writers):
            mine = [m for m in in_redis if m.startswith(f"w{w}-")]
            assert mine == [f"w{w}-{i:04d}" for i in range(each)], "each writer's messages in its order"
