"""Token counts in the durable record (issue 20): write-behind carries each message's count to the
record, and a read-through restores those counts, not a recount by the reading store's counter.

On SQLite and PostgreSQL (both real), sync and async fronts: a counter changed between the write and
the read-through still gives the stored counts; a record made before it kept counts (SQLite file or
PostgreSQL tables without the column) is upgraded when opened, and its old rows are recounted;
``context()`` after a read-through equals ``context()`` before it, summary included.
"""

from __future__ import annotations

import sqlite3
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
import redis
from psycopg import sql

from redis_sessions import AgentMessage
from redis_sessions.embedded import RedisServer
from redis_sessions.keys import session_keys, tokens_key
from redis_sessions.persistence import PersistenceAdapter, PostgresAdapter, SQLiteAdapter
from tests.integration.durable_support import flush, postgres
from tests.support import opened_stores, unique_prefix

pytestmark = pytest.mark.real

RECORDS = ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)]
Tiered = Callable[..., Any]


def chars(message: AgentMessage) -> int:
    """The writers' counter: one token per character."""
    return len(message.text) or 10


def tens(message: AgentMessage) -> int:
    """The readers' counter, another one (as after a tokenizer upgrade)."""
    return 10 * (len(message.text) or 10)


@pytest.fixture(scope="module")
def pg_dsn() -> Iterator[str]:
    yield from postgres()


@pytest.fixture
def pg_schema(request: pytest.FixtureRequest) -> Iterator[str]:
    """A schema of this test's own on the module's PostgreSQL, dropped afterwards."""
    name = f"rs_t_{uuid.uuid4().hex[:12]}"
    yield name
    if "pg_dsn" in request.fixturenames:
        dsn = request.getfixturevalue("pg_dsn")
        with psycopg.connect(dsn, autocommit=True) as connection:
            connection.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(name)))


@pytest.fixture
def opener(request: pytest.FixtureRequest, tmp_path: Path, pg_schema: str) -> Callable[[], Any]:
    """``opener()``: a new adapter on this test's record (the test closes it)."""
    if request.param == "postgres":
        dsn = request.getfixturevalue("pg_dsn")
        return lambda: PostgresAdapter(dsn, schema=pg_schema, max_size=4)
    return lambda: SQLiteAdapter(tmp_path / "record.db")


@pytest.fixture
def prefix() -> str:
    return unique_prefix()


@pytest.fixture
def tiered(plain_redis: RedisServer, front: str, prefix: str) -> Iterator[Tiered]:
    """``tiered(backing, counter)``: a tiered store on ``plain_redis`` under this test's prefix."""
    with opened_stores(front) as make:

        def tiered(backing: PersistenceAdapter, counter: Callable[[AgentMessage], int]) -> Any:
            return make(plain_redis.url, prefix=prefix, backing=backing, token_counter=counter)

        yield tiered


def evict(plain_redis: RedisServer, prefix: str, sid: uuid.UUID) -> None:
    """What an eviction or an expiry leaves of a clean durable session: nothing."""
    raw = redis.Redis.from_url(plain_redis.url)
    try:
        raw.delete(*session_keys(prefix, sid), tokens_key(prefix, sid))
    finally:
        raw.close()


@pytest.mark.parametrize("front", ["sync", "async"])
@pytest.mark.parametrize("opener", RECORDS, indirect=True)
def test_a_read_through_keeps_the_counts_the_writer_made(
    tiered: Tiered, opener: Callable[[], Any], plain_redis: RedisServer, prefix: str
) -> None:
    with opener() as backing:
        writer = tiered(backing, chars)
        sid = writer.create("m")
        writer.extend(sid, [AgentMessage.user("x" * n) for n in (3, 5, 7)])
        writer.summarize(sid, "gist", through_seq=1)
        writer.append(sid, AgentMessage.assistant("y" * 11))
        before = writer.context(sid, 1000)
        assert (before.tokens, before.counts) == (4 + 5 + 7 + 11, [5, 7, 11])
        flush(writer)
        state = backing.load_session(sid)
        assert state is not None
        assert (state.message_tokens, state.summary_tokens) == ([3, 5, 7, 11], 4)
        evict(plain_redis, prefix, sid)
        reader = tiered(backing, tens)  # another counter: what the record kept wins
        after = reader.context(sid, 1000)
        assert after == before
        assert reader.info(sid).tokens == 3 + 5 + 7 + 11
        # New messages are the reader's to count, and reach the record counted so.
        reader.append(sid, AgentMessage.user("zz"))
        flush(reader)
        state = backing.load_session(sid)
        assert state is not None
        assert state.message_tokens == [3, 5, 7, 11, 20]


@pytest.mark.parametrize("front", ["sync"])
def test_an_old_sqlite_record_is_upgraded_and_its_rows_recounted(
    tiered: Tiered, tmp_path: Path, plain_redis: RedisServer, prefix: str
) -> None:
    path = tmp_path / "old.db"
    with SQLiteAdapter(path) as backing:  # a record written before counts were kept
        writer = tiered(backing, chars)
        sid = writer.create("m")
        writer.extend(sid, [AgentMessage.user("x" * n) for n in (2, 4)])
        flush(writer)
    _drop_sqlite_tokens_column(path)
    with SQLiteAdapter(path) as backing:  # opening it adds the column: NULL in the old rows
        with sqlite3.connect(path) as connection:
            rows = connection.execute("SELECT tokens FROM messages ORDER BY position").fetchall()
        connection.close()
        assert rows == [(None,), (None,)]
        state = backing.load_session(sid)
        assert state is not None
        assert state.message_tokens is None
        evict(plain_redis, prefix, sid)
        reader = tiered(backing, tens)
        assert reader.context(sid, 1000).counts == [20, 40]  # no counts kept: the reader's
        reader.append(sid, AgentMessage.user("abc"))
        flush(reader)
        state = backing.load_session(sid)
        assert state is not None
        assert state.message_tokens == [None, None, 30]
        evict(plain_redis, prefix, sid)
        third = tiered(backing, chars)  # only the messages without a count are counted
        assert third.context(sid, 1000).counts == [2, 4, 30]


def _drop_sqlite_tokens_column(path: Path) -> None:
    """Make ``path`` what an older version left: the messages table without its tokens column."""
    with sqlite3.connect(path) as connection:
        connection.execute("ALTER TABLE messages DROP COLUMN tokens")
    connection.close()
    with sqlite3.connect(path) as connection:
        columns = [row[1] for row in connection.execute("PRAGMA table_info(messages)")]
    connection.close()
    assert "tokens" not in columns


@pytest.mark.postgres
def test_old_postgres_tables_get_the_column_when_opened(pg_dsn: str, pg_schema: str) -> None:
    sid = uuid.uuid4()
    with PostgresAdapter(pg_dsn, schema=pg_schema) as backing:
        backing.append_messages(sid, [AgentMessage.user("hi", id="a")])
    ident = sql.Identifier(pg_schema)
    with psycopg.connect(pg_dsn, autocommit=True) as connection:  # as an older version made them
        connection.execute(sql.SQL("ALTER TABLE {}.messages DROP COLUMN tokens").format(ident))
    with PostgresAdapter(pg_dsn, schema=pg_schema) as backing:
        state = backing.load_session(sid)
        assert state is not None
        assert [m.id for m in state.messages] == ["a"]
        assert state.message_tokens is None
        with psycopg.connect(pg_dsn, autocommit=True) as connection:
            query = sql.SQL("SELECT tokens FROM {}.messages").format(ident)
            assert connection.execute(query).fetchall() == [(None,)]
    with PostgresAdapter(pg_dsn, schema=pg_schema) as backing:  # and once only: nothing to add
        assert backing.load_session(sid) is not None


@pytest.mark.parametrize("front", ["sync"])
def test_a_count_that_is_not_one_reaches_the_record_as_none(
    tiered: Tiered, tmp_path: Path, plain_redis: RedisServer, prefix: str
) -> None:
    with SQLiteAdapter(tmp_path / "record.db") as backing:
        writer = tiered(backing, chars)
        sid = writer.create("m")
        writer.extend(sid, [AgentMessage.user("x" * n) for n in (2, 4)])
        raw = redis.Redis.from_url(plain_redis.url)
        try:
            raw.lset(tokens_key(prefix, sid), 0, "not a count")  # by hand, not by this library
        finally:
            raw.close()
        flush(writer)  # delivered all the same: the record keeps no count for that one
        state = backing.load_session(sid)
        assert state is not None
        assert state.message_tokens == [None, 4]
        evict(plain_redis, prefix, sid)
        assert tiered(backing, tens).context(sid, 1000).counts == [20, 4]
