"""PostgreSQL specifics: the layout, the DDL race, the optional extra, and a server that is not there."""

from __future__ import annotations

import subprocess
import sys
import threading
import uuid
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from typing import Any

import psycopg
import pytest
from psycopg import sql

from redis_sessions import SessionState, StoreError
from redis_sessions.embedded import free_port
from redis_sessions.persistence import PostgresAdapter
from tests.unit.test_models import full_state


def query(dsn: str, text: str, *args: Any, schema: str = "") -> list[tuple[Any, ...]]:
    with psycopg.connect(dsn, autocommit=True) as connection:
        statement = sql.SQL(text).format(s=sql.Identifier(schema)) if schema else text
        return connection.execute(statement, args).fetchall()


@pytest.mark.postgres
def test_adapters_starting_together_create_the_tables_once(postgres_dsn: str, pg_schema: str) -> None:
    start = threading.Barrier(6)

    def open_one(_: int) -> PostgresAdapter:
        start.wait(timeout=30)
        return PostgresAdapter(postgres_dsn, schema=pg_schema, max_size=1)

    with ThreadPoolExecutor(6) as pool:
        adapters = list(pool.map(open_one, range(6)))
    for adapter in adapters:
        adapter.close()
    tables = query(
        postgres_dsn, "SELECT tablename FROM pg_tables WHERE schemaname = %s ORDER BY 1", pg_schema
    )
    assert tables == [("messages",), ("record",), ("sessions",)]
    records = query(postgres_dsn, "SELECT id FROM {s}.record", schema=pg_schema)
    assert len(records) == 1, "one identity, made once, however many adapters start together"
    assert {adapter.record_id for adapter in adapters} == {records[0][0]}


@pytest.mark.postgres
def test_layout(postgres_dsn: str, pg_schema: str) -> None:
    PostgresAdapter(postgres_dsn, schema=pg_schema).close()
    columns = query(
        postgres_dsn,
        "SELECT table_name, column_name, data_type, is_nullable FROM information_schema.columns"
        " WHERE table_schema = %s ORDER BY table_name, ordinal_position",
        pg_schema,
    )
    assert columns == [
        ("messages", "session_id", "text", "NO"),
        ("messages", "position", "bigint", "NO"),
        ("messages", "message_id", "bytea", "NO"),
        ("messages", "body", "text", "NO"),
        ("messages", "tokens", "bigint", "YES"),
        ("record", "id", "text", "NO"),
        ("sessions", "id", "text", "NO"),
        ("sessions", "schema_version", "integer", "NO"),
        ("sessions", "seq", "bigint", "NO"),
        ("sessions", "updated_at", "timestamp with time zone", "YES"),
        ("sessions", "header", "text", "NO"),
    ]
    unique = query(
        postgres_dsn,
        "SELECT pg_get_constraintdef(c.oid) FROM pg_constraint AS c"
        " JOIN pg_namespace AS n ON n.oid = c.connamespace WHERE n.nspname = %s AND c.contype = 'u'",
        pg_schema,
    )
    assert unique == [("UNIQUE (session_id, message_id)",)]


@pytest.mark.postgres
def test_stored_json_is_queryable_and_the_columns_copy_the_header(postgres_dsn: str, pg_schema: str) -> None:
    sid = uuid.uuid4()
    with PostgresAdapter(postgres_dsn, schema=pg_schema) as adapter:
        adapter.save_session(sid, full_state())
    roles = query(
        postgres_dsn,
        "SELECT body::jsonb ->> 'role', convert_from(message_id, 'UTF8') FROM {s}.messages ORDER BY position",
        schema=pg_schema,
    )
    assert roles == [("system", "m0"), ("user", "m1"), ("assistant", "m2"), ("tool", "m3"), ("tool", "m4")]
    (row,) = query(
        postgres_dsn,
        "SELECT header::jsonb ->> 'model', schema_version, seq, updated_at FROM {s}.sessions",
        schema=pg_schema,
    )
    assert row == ("claude-test", 1, 7, datetime(2024, 5, 1, 12, 5, 0, 654321, tzinfo=UTC))


@pytest.mark.postgres
def test_a_naive_updated_at_is_taken_as_utc_in_the_column(postgres_dsn: str, pg_schema: str) -> None:
    with PostgresAdapter(postgres_dsn, schema=pg_schema) as adapter:
        naive = datetime(2024, 1, 1, 8, 30)
        adapter.save_session(uuid.uuid4(), SessionState(updated_at=naive))
    (row,) = query(postgres_dsn, "SELECT updated_at FROM {s}.sessions", schema=pg_schema)
    assert row == (naive.replace(tzinfo=UTC),)


@pytest.mark.parametrize("schema", ["bad-name", "1abc", "x" * 64, "a;drop", ""])
def test_schema_names_are_checked(schema: str) -> None:
    with pytest.raises(ValueError, match="schema"):
        PostgresAdapter("postgresql://nowhere", schema=schema)


def test_an_unreachable_server_raises_store_error() -> None:
    dsn = f"postgresql://postgres@127.0.0.1:{free_port()}/postgres?connect_timeout=1"
    with pytest.raises(StoreError, match="PostgreSQL connect failed") as info:
        PostgresAdapter(dsn, timeout=0.5)
    assert isinstance(info.value.__cause__, psycopg.Error)


def test_without_the_extra_the_error_says_what_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "psycopg", None)
    with pytest.raises(ImportError, match=r"pip install 'redis-sessions\[postgres\]'"):
        PostgresAdapter("postgresql://nowhere")


def test_the_package_imports_without_psycopg() -> None:
    code = (
        "import sys; sys.modules['psycopg'] = sys.modules['psycopg_pool'] = None\n"
        "import redis_sessions.persistence as p\n"
        "assert p.SQLiteAdapter and p.PostgresAdapter\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)
    untouched = "import sys, redis_sessions.persistence; assert 'psycopg' not in sys.modules"
    subprocess.run([sys.executable, "-c", untouched], check=True, timeout=60)
