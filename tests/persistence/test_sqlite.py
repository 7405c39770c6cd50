"""SQLite specifics: the layout, WAL, locks held by others, threads, and closing."""

from __future__ import annotations

import multiprocessing
import sqlite3
import threading
import uuid
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import pytest

from redis_sessions import AgentMessage, SessionState, StoreError
from redis_sessions.persistence import SQLiteAdapter
from redis_sessions.persistence._sqlite_sql import iso
from tests.persistence.workers import open_worker

PROCESSES = 8
FILES = 12


def columns(path: Path, table: str) -> list[tuple[str, str, int, int]]:
    with sqlite3.connect(path) as connection:
        rows = connection.execute(f"PRAGMA table_info({table})").fetchall()
    connection.close()
    return [(name, kind, notnull, pk) for _, name, kind, notnull, _, pk in rows]


def test_layout_and_wal(tmp_path: Path) -> None:
    path = tmp_path / "s.db"
    SQLiteAdapter(path).close()
    assert columns(path, "sessions") == [
        ("id", "TEXT", 1, 1),
        ("schema_version", "INTEGER", 1, 0),
        ("seq", "INTEGER", 1, 0),
        ("updated_at", "TEXT", 0, 0),
        ("header", "TEXT", 1, 0),
    ]
    assert columns(path, "messages") == [
        ("session_id", "TEXT", 1, 1),
        ("position", "INTEGER", 1, 2),
        ("message_id", "TEXT", 1, 0),
        ("body", "TEXT", 1, 0),
        ("tokens", "INTEGER", 0, 0),
    ]
    connection = sqlite3.connect(path)
    try:
        assert connection.execute("PRAGMA journal_mode").fetchone() == ("wal",)
        indexes = connection.execute("PRAGMA index_list(messages)").fetchall()
        unique = [i[1] for i in indexes if i[2] == 1 and i[3] == "u"]
        assert [[c[2] for c in connection.execute(f"PRAGMA index_info({name!r})")] for name in unique] == [
            ["session_id", "message_id"]
        ]
    finally:
        connection.close()


def test_the_header_columns_copy_the_header(tmp_path: Path) -> None:
    path = tmp_path / "s.db"
    sid = uuid.uuid4()
    when = datetime(2025, 6, 1, 12, 0, tzinfo=UTC)
    with SQLiteAdapter(path) as adapter:
        adapter.save_session(sid, SessionState(updated_at=when, messages=[AgentMessage.user("a", id="a")]))
    connection = sqlite3.connect(path)
    try:
        row = connection.execute("SELECT id, schema_version, seq, updated_at FROM sessions").fetchone()
    finally:
        connection.close()
    assert row == (str(sid), 1, 1, "2025-06-01T12:00:00+00:00"), "no seq in the state: its messages count"


def test_a_lock_held_past_the_timeout_raises_store_error(tmp_path: Path) -> None:
    path = tmp_path / "s.db"
    sid = uuid.uuid4()
    with SQLiteAdapter(path, timeout=0.05) as adapter:
        holder = sqlite3.connect(path, isolation_level=None)
        holder.execute("BEGIN IMMEDIATE")
        try:
            with pytest.raises(
                StoreError, match=f"SQLite append_messages for session `{sid}` failed"
            ) as info:
                adapter.append_messages(sid, [AgentMessage.user("a", id="a")])
            assert isinstance(info.value.__cause__, sqlite3.OperationalError)
            assert adapter.load_session(sid) is None, "WAL: readers are not blocked by the writer"
        finally:
            holder.execute("ROLLBACK")
            holder.close()
        assert adapter.append_messages(sid, [AgentMessage.user("a", id="a")]) == 1, "and it recovers"


def test_a_reader_sees_only_committed_data(tmp_path: Path) -> None:
    path = tmp_path / "s.db"
    sid = uuid.uuid4()
    with SQLiteAdapter(path) as adapter:
        adapter.append_messages(sid, [AgentMessage.user("a", id="a")])
        writer = sqlite3.connect(path, isolation_level=None)
        writer.execute("BEGIN IMMEDIATE")
        writer.execute("INSERT INTO messages VALUES (?, 1, 'b', '{}', NULL)", (str(sid),))
        try:
            state = adapter.load_session(sid)
            assert state is not None
            assert [m.id for m in state.messages] == ["a"]
        finally:
            writer.execute("ROLLBACK")
            writer.close()


def test_each_thread_has_its_own_connection_and_close_closes_them_all(tmp_path: Path) -> None:
    adapter = SQLiteAdapter(tmp_path / "s.db")
    seen: list[sqlite3.Connection] = []

    def use() -> None:
        adapter.append_messages(uuid.uuid4(), [AgentMessage.user("a", id="a")])
        seen.append(adapter._connection())

    threads = [threading.Thread(target=use) for _ in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len({id(c) for c in seen}) == 3
    adapter.close()
    for connection in seen:
        with pytest.raises(sqlite3.ProgrammingError):
            connection.execute("SELECT 1")
    with pytest.raises(RuntimeError, match="closed"):
        adapter.load_session(uuid.uuid4())


@pytest.mark.parametrize("path", [":memory:", ""])
def test_an_in_memory_database_is_refused(path: str) -> None:
    with pytest.raises(ValueError, match="file"):
        SQLiteAdapter(path)


def test_synchronous_is_checked(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="synchronous"):
        SQLiteAdapter(tmp_path / "s.db", synchronous="OFF")  # type: ignore[arg-type]


def test_a_path_that_cannot_be_opened_raises_store_error(tmp_path: Path) -> None:
    with pytest.raises(StoreError, match="SQLite open failed"):
        SQLiteAdapter(tmp_path / "missing-directory" / "s.db")


def test_processes_create_one_file_at_once(tmp_path: Path) -> None:
    # Switching a new file to WAL needs it to itself, and SQLite does not wait for that: without
    # the adapter's retry, some of these processes fail with "database is locked".
    context = multiprocessing.get_context("spawn")
    barrier, results = context.Barrier(PROCESSES), context.Queue()
    paths = [str(tmp_path / f"fresh-{i}.db") for i in range(FILES)]
    workers = [context.Process(target=open_worker, args=(paths, barrier, results)) for _ in range(PROCESSES)]
    for worker in workers:
        worker.start()
    try:
        outcomes = [results.get(timeout=90) for _ in workers]
    finally:
        for worker in workers:
            worker.join(timeout=30)
    errors = [error for error, _ in outcomes if error]
    assert not errors, "\n".join(errors)
    assert [sum(stored[i] for _, stored in outcomes) for i in range(FILES)] == [1] * FILES


@pytest.mark.parametrize("microsecond", [0, 1, 1000, 120000, 999999])
@pytest.mark.parametrize("tz", [UTC, None, timezone(timedelta(hours=-5, minutes=-30))])
def test_the_updated_at_column_is_isoformat(microsecond: int, tz: timezone | None) -> None:
    moment = datetime(2026, 12, 5, 7, 58, 0, microsecond, tzinfo=tz)
    assert iso(moment) == moment.isoformat()
    assert iso(None) is None
