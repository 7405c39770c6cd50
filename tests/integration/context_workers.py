"""Worker processes for the compaction test (importable by 'spawn' children: no test code here)."""

from __future__ import annotations

import traceback
import uuid
from typing import Any

from redis_sessions import AgentMessage, Role, SessionStore

TOKENS = 10  # every message and summary counts this much: the thresholds are known


def ten(message: AgentMessage) -> int:
    return TOKENS


def append_and_compact(
    url: str, prefix: str, sid: uuid.UUID, worker: int, count: int, barrier: Any, results: Any
) -> None:
    """Append ``count`` messages, calling ``compact`` after each; the fake summarizer's summary is
    the ids of every message it stands for, the previous summary's first. Puts ``(worker, error,
    summarizer calls, the through_seqs this worker stored)`` on ``results``."""
    calls, stored = 0, []

    def summarizer(messages: list[AgentMessage]) -> str:
        nonlocal calls
        calls += 1
        ids = [m.text if m.role is Role.SYSTEM else m.id for m in messages]
        return ",".join(i for i in ids if i)

    try:
        with SessionStore.from_url(url, prefix=prefix, token_counter=ten) as store:
            barrier.wait(timeout=60)
            for n in range(count):
                store.append(sid, AgentMessage.user(f"{worker}.{n}", id=f"w{worker}-{n}"))
                through = store.compact(sid, summarizer, over_tokens=200, keep_tokens=100)
                if through is not None:
                    stored.append(through)
        results.put((worker, None, calls, stored))
    except BaseException:
        barrier.abort()
        results.put((worker, traceback.format_exc(), calls, stored))
