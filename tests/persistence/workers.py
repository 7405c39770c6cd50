"""Worker processes for the multi-process tests (importable by 'spawn' children: no test code here)."""

from __future__ import annotations

import traceback
import uuid
from pathlib import Path
from typing import Any

from redis_sessions import AgentMessage
from redis_sessions.persistence import DirectoryAdapter, PersistenceAdapter, PostgresAdapter, SQLiteAdapter


def message_id(writer: int, index: int) -> str:
    return f"w{writer}-{index:03d}"


def open_adapter(kind: str, path: str, dsn: str, schema: str) -> PersistenceAdapter:
    if kind == "sqlite":
        return SQLiteAdapter(Path(path) / "sessions.db")
    if kind == "directory":
        return DirectoryAdapter(Path(path) / "sessions")
    return PostgresAdapter(dsn, schema=schema, max_size=1)


def append_worker(
    spec: tuple[str, str, str, str], sid: uuid.UUID, writer: int, count: int, barrier: Any, results: Any
) -> None:
    """Open the store (all writers at once: the tables may not exist yet), then append ``count``
    messages one call each; puts ``(writer, error, newly_stored)`` on ``results``."""
    try:
        barrier.wait(timeout=60)
        with open_adapter(*spec) as adapter:
            barrier.wait(timeout=60)  # every writer is open: now they append at the same time
            stored = sum(
                adapter.append_messages(sid, [AgentMessage.user(f"{writer}:{i}", id=message_id(writer, i))])
                for i in range(count)
            )
        results.put((writer, None, stored))
    except BaseException:
        barrier.abort()
        results.put((writer, traceback.format_exc(), 0))


def open_worker(paths: list[str], barrier: Any, results: Any) -> None:
    """Open each fresh SQLite file in ``paths`` together with the other workers and append one
    message there; puts ``(error, [newly stored per file])`` on ``results``."""
    stored: list[int] = []
    try:
        for path in paths:
            barrier.wait(timeout=60)
            with SQLiteAdapter(path) as adapter:
                stored.append(adapter.append_messages(uuid.UUID(int=1), [AgentMessage.user("a", id="a")]))
        results.put((None, stored))
    except BaseException:
        barrier.abort()
        results.put((traceback.format_exc(), stored))
