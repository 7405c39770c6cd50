"""Worker processes for the tiered-store fault tests (importable by 'spawn' children: no test code here)."""

from __future__ import annotations

import traceback
import uuid
from typing import Any

from redis_sessions import AgentMessage, SessionStore
from redis_sessions.persistence import PostgresAdapter


def tiered_postgres_appender(
    url: str,
    prefix: str,
    dsn: str,
    schema: str,
    sid: uuid.UUID,
    writer: int,
    count: int,
    flush_every: int,
    barrier: Any,
    results: Any,
) -> None:
    """Append ``count`` messages to ``sid`` through a tiered store backed by PostgreSQL, calling
    ``flush()`` every ``flush_every`` appends (and once at the end) while the other writer appends too.

    Puts ``(writer, error, seqs)`` on ``results``: the seq each append returned (``error`` is a
    traceback or None).
    """
    try:
        with (
            PostgresAdapter(dsn, schema=schema, max_size=2) as backing,
            SessionStore.from_url(url, prefix=prefix, backing=backing) as store,
        ):
            barrier.wait(timeout=60)  # both writers start together, so their appends and flushes overlap
            seqs = []
            for i in range(count):
                message = AgentMessage.user(f"writer {writer} says {i}", id=f"w{writer}-{i:04d}")
                seqs.append(store.append(sid, message))
                if (i + 1) % flush_every == 0:
                    store.flush(timeout=60)
            store.flush(timeout=60)
        results.put((writer, None, seqs))
    except BaseException:
        barrier.abort()
        results.put((writer, traceback.format_exc(), []))


def sqlite_appender(
    url: str, prefix: str, path: str, sid: uuid.UUID, writer: int, count: int, barrier: Any, results: Any
) -> None:
    """Append ``count`` messages to ``sid`` through a tiered store on the SQLite record at ``path``
    (its own write-behind thread delivers meanwhile). Puts ``(writer, error)`` on ``results``."""
    from redis_sessions.persistence import SQLiteAdapter

    try:
        with (
            SQLiteAdapter(path) as backing,
            SessionStore.from_url(url, prefix=prefix, backing=backing) as store,
        ):
            barrier.wait(timeout=60)
            for i in range(count):
                store.append(sid, AgentMessage.user(f"writer {writer} says {i}", id=f"w{writer}-{i:04d}"))
        results.put((writer, None))
    except BaseException:
        barrier.abort()
        results.put((writer, traceback.format_exc()))


def stray_worker(url: str, prefix: str, path: str, stop: Any, results: Any) -> None:
    """A worker of the record at ``path`` that skips the binding check made when a store opens (as a
    process of an older version would) and delivers every dirty session until ``stop`` is set.
    Puts ``("stray", sessions it was refused, messages it delivered)`` on ``results``."""
    from redis_sessions.persistence import SQLiteAdapter
    from redis_sessions.writebehind import SyncWorker

    try:
        with SQLiteAdapter(path) as backing, SessionStore.from_url(url, prefix=prefix) as store:
            worker = SyncWorker(store, backing)  # no bind(): it goes straight to the sessions
            refused: set[uuid.UUID] = set()
            while not stop.is_set():
                worker.deliver(worker.pending())
                refused.update(worker.failures)
        results.put(("stray", len(refused), worker.delivered))
    except BaseException:
        results.put(("stray", traceback.format_exc(), 0))
