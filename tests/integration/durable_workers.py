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
