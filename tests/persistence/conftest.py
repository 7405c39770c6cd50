"""The adapter table: every test here runs on SQLite, a directory and PostgreSQL, sync and async.

PostgreSQL is ``POSTGRES_DSN`` when set (as ``REDIS_URL`` is for Redis: an explicit choice wins), else
a private server started once per run with ``initdb`` and ``pg_ctl`` (``pg_server.py``), else, as
root with no ``postgres`` user to run them, the server on 127.0.0.1:5432 if one answers. Each test
works in a schema of its own and drops it afterwards, so a shared server keeps everything else.
Without a server the PostgreSQL tests skip, except under ``CI=true`` on a machine that has the
binaries, where failing to start one fails the run.
"""

from __future__ import annotations

import asyncio
import os
import socket
import uuid
from collections.abc import AsyncIterator, Awaitable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import psycopg
import pytest
from psycopg import sql

from redis_sessions import AgentMessage, SessionId, SessionState
from redis_sessions.persistence import (
    AsyncDirectoryAdapter,
    AsyncPersistenceAdapter,
    AsyncPostgresAdapter,
    AsyncSQLiteAdapter,
    DirectoryAdapter,
    PersistenceAdapter,
    PostgresAdapter,
    SQLiteAdapter,
)
from tests.persistence.pg_server import PostgresServer, find_binaries, run_as
from tests.persistence.raw import Raw, RawDirectory, RawPostgres, RawSQLite
from tests.servers import in_ci

T = TypeVar("T")

KINDS = ["sqlite", "directory", pytest.param("postgres", marks=pytest.mark.postgres, id="postgres")]
FRONTS = ["sync", "async"]
SHARED_DSN = "postgresql://postgres@127.0.0.1:5432/postgres"
STARTUP: dict[str, str] = {}


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "postgres: needs a PostgreSQL server (private, POSTGRES_DSN or :5432)")


def pytest_terminal_summary(terminalreporter: Any) -> None:
    if STARTUP:
        terminalreporter.write_line(f"tests/persistence: PostgreSQL {STARTUP['how']}")


def _answers(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=0.5):
            return True
    except OSError:
        return False


@pytest.fixture(scope="session")
def postgres_dsn() -> Iterator[str]:
    """A PostgreSQL to work on (see the module docstring for which one)."""
    given = os.environ.get("POSTGRES_DSN")
    if given:
        STARTUP["how"] = "from POSTGRES_DSN"
        yield given
        return
    binaries = find_binaries()
    if binaries is not None and run_as() is not None:
        try:
            server = PostgresServer(binaries).start()
        except (RuntimeError, OSError) as exc:
            reason = f"could not start a private PostgreSQL: {exc}"
            if in_ci():
                pytest.fail(f"CI=true: {reason}", pytrace=False)
            pytest.skip(reason)
        STARTUP["how"] = f"private server on port {server.port}, started in {server.startup_seconds:.2f} s"
        try:
            yield server.dsn
        finally:
            server.stop()
        return
    if binaries is not None and _answers("127.0.0.1", 5432):
        STARTUP["how"] = f"shared server {SHARED_DSN} (root without a 'postgres' user to run initdb)"
        yield SHARED_DSN
        return
    reason = "no PostgreSQL: initdb/pg_ctl not found and POSTGRES_DSN not set (apt-get install postgresql)"
    if binaries is not None:
        reason = "PostgreSQL binaries found, but as root with no 'postgres' user, and nothing on :5432"
        if in_ci():
            pytest.fail(f"CI=true: {reason}", pytrace=False)
    pytest.skip(reason)


@pytest.fixture
def pg_schema(postgres_dsn: str) -> Iterator[str]:
    """A schema name no other test uses; dropped (with what the adapter made in it) afterwards."""
    name = f"rs_t_{uuid.uuid4().hex[:12]}"
    yield name
    with psycopg.connect(postgres_dsn, autocommit=True) as connection:
        connection.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(name)))


@dataclass
class Place:
    """Where one test's sessions live; opens adapters (sync or async) and raw access on it."""

    kind: str
    path: Path
    dsn: str = ""
    schema: str = ""

    def sync(self) -> PersistenceAdapter:
        if self.kind == "sqlite":
            return SQLiteAdapter(self.path / "sessions.db")
        if self.kind == "directory":
            return DirectoryAdapter(self.path / "sessions")
        return PostgresAdapter(self.dsn, schema=self.schema, max_size=4)

    def async_(self) -> AsyncPersistenceAdapter:
        if self.kind == "sqlite":
            return AsyncSQLiteAdapter(self.path / "sessions.db")
        if self.kind == "directory":
            return AsyncDirectoryAdapter(self.path / "sessions")
        return AsyncPostgresAdapter(self.dsn, schema=self.schema, max_size=4)

    def raw(self) -> Raw:
        """Raw access; open an adapter first (it creates the tables or the directory)."""
        if self.kind == "sqlite":
            return RawSQLite(self.path / "sessions.db")
        if self.kind == "directory":
            return RawDirectory(self.path / "sessions")
        return RawPostgres(self.dsn, self.schema)

    def spec(self) -> tuple[str, str, str, str]:
        """What a worker process needs to open the same store (picklable)."""
        return self.kind, str(self.path), self.dsn, self.schema


@pytest.fixture(params=KINDS)
def place(request: pytest.FixtureRequest, tmp_path: Path) -> Place:
    if request.param == "postgres":
        return Place(
            "postgres",
            tmp_path,
            request.getfixturevalue("postgres_dsn"),
            request.getfixturevalue("pg_schema"),
        )
    return Place(request.param, tmp_path)


class SyncFront:
    """An ``AsyncPersistenceAdapter`` behind the synchronous interface, each call run on ``runner``.

    ``list_sessions`` advances the async iterator one id at a time, so an error raised mid-listing
    surfaces where it would for a synchronous adapter.
    """

    def __init__(self, adapter: AsyncPersistenceAdapter, runner: asyncio.Runner) -> None:
        self.adapter = adapter
        self.runner = runner

    def _run(self, awaitable: Awaitable[T]) -> T:
        async def wrapper() -> T:
            return await awaitable

        return self.runner.run(wrapper())

    def save_session(self, session_id: SessionId | str, state: SessionState) -> None:
        self._run(self.adapter.save_session(session_id, state))

    def load_session(self, session_id: SessionId | str) -> SessionState | None:
        return self._run(self.adapter.load_session(session_id))

    def list_sessions(self) -> Iterator[SessionId]:
        ids: AsyncIterator[SessionId] = aiter(self.adapter.list_sessions())
        while True:
            try:
                yield self._run(anext(ids))
            except StopAsyncIteration:
                return

    def delete_session(self, session_id: SessionId | str) -> bool:
        return self._run(self.adapter.delete_session(session_id))

    def append_messages(
        self,
        session_id: SessionId | str,
        messages: Sequence[AgentMessage],
        *,
        state: SessionState | None = None,
    ) -> int:
        return self._run(self.adapter.append_messages(session_id, messages, state=state))

    def close(self) -> None:
        self._run(self.adapter.aclose())

    def __enter__(self) -> SyncFront:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


@pytest.fixture(params=FRONTS)
def front(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def adapter(place: Place, front: str) -> Iterator[PersistenceAdapter | SyncFront]:
    """The adapter under test: a synchronous one, or an async one driven through ``SyncFront``."""
    if front == "sync":
        made = place.sync()
        yield made
        made.close()
        return
    with asyncio.Runner() as runner:
        wrapped = SyncFront(place.async_(), runner)
        yield wrapped
        wrapped.close()


@pytest.fixture
def raw(place: Place, adapter: PersistenceAdapter) -> Iterator[Raw]:
    """Raw access to the store ``adapter`` works on."""
    opened = place.raw()
    yield opened
    opened.close()
