"""Fixtures the integration tests share: private redis-servers, the SQLite record, an exit stack,
and the processes a test starts (ended when it ends)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import pytest

from redis_sessions.embedded import RedisServer
from redis_sessions.persistence import SQLiteAdapter
from tests.integration.durable_support import redis_servers, require_redis_server


@pytest.fixture
def start_redis() -> Iterator[Callable[..., RedisServer]]:
    """``start_redis(*args)``: a private redis-server with extra options, stopped after the test."""
    yield from redis_servers()


@pytest.fixture(scope="module")
def plain_redis() -> Iterator[RedisServer]:
    """A plain redis-server for the tests that need no special configuration (each its own prefix)."""
    require_redis_server()
    with RedisServer() as server:
        yield server


@pytest.fixture
def database(tmp_path: Path) -> Iterator[SQLiteAdapter]:
    """The backing store (the record) for one test: an SQLite file in its temporary directory."""
    with SQLiteAdapter(tmp_path / "record.db") as adapter:
        yield adapter


@pytest.fixture
def stack() -> Iterator[ExitStack]:
    """Stores and clients a test opens, closed when it ends."""
    with ExitStack() as opened:
        yield opened


@pytest.fixture
def stopped_at_exit() -> Iterator[list[Any]]:
    """Processes the test starts: terminated (then killed) when it ends, whatever happened."""
    processes: list[Any] = []
    yield processes
    for process in processes:
        if process.is_alive():
            process.terminate()
            process.join(5)
        if process.is_alive():
            process.kill()
            process.join(5)
