"""Worker processes for the multi-process tests (importable by 'spawn' children: no test code here)."""

from __future__ import annotations

import traceback
import uuid
from typing import Any

from redis_sessions import AgentMessage, SessionStore


def message_id(writer: int, index: int) -> str:
    return f"w{writer}-{index:04d}"


def append_worker(
    url: str, prefix: str, sid: uuid.UUID, writer: int, count: int, barrier: Any, results: Any
) -> None:
    """Append ``count`` messages to ``sid`` once every writer is ready, then read the whole session.

    Puts ``(writer, error, seqs, seen)`` on ``results``: the seq each append returned, and the
    message ids this process reads after every writer has finished (``error`` is a traceback or None).
    """
    try:
        with SessionStore.from_url(url, prefix=prefix) as store:
            barrier.wait(timeout=60)  # all writers start together, so their appends overlap
            seqs = [
                store.append(sid, AgentMessage.user(f"writer {writer} says {i}", id=message_id(writer, i)))
                for i in range(count)
            ]
            barrier.wait(timeout=60)  # everyone has written: now every reader must see the same list
            seen = [m.id for m in store.messages(sid)]
        results.put((writer, None, seqs, seen))
    except BaseException:
        barrier.abort()
        results.put((writer, traceback.format_exc(), [], []))
