"""Worker processes for the tool-call tests (importable by 'spawn' children: no test code here)."""

from __future__ import annotations

import time
import traceback
import uuid
from typing import Any

import redis

from redis_sessions import SessionStore, ToolCallPending


def race_worker(
    url: str,
    prefix: str,
    sid: uuid.UUID,
    tool_use_id: str,
    counter: str,
    worker: int,
    barrier: Any,
    results: Any,
) -> None:
    """Run the tool call ``tool_use_id`` once all workers are ready: whoever claims it runs the
    "tool" (INCR ``counter``, a pause) and completes it; the others wait until it is done.
    Puts ``(worker, error, ran, result content, attempt)`` on ``results``."""
    try:
        raw = redis.Redis.from_url(url)
        with SessionStore.from_url(url, prefix=prefix) as store:
            barrier.wait(timeout=60)
            ran = False
            deadline = time.monotonic() + 30
            while True:
                try:
                    with store.tool_call(sid, tool_use_id, ttl=20, owner=f"worker-{worker}") as call:
                        if not call.done:
                            raw.incr(counter)
                            ran = True
                            time.sleep(0.3)
                            call.complete(f"charged by worker {worker}")
                        assert call.result is not None
                        results.put((worker, None, ran, call.result.content, call.attempt))
                        return
                except ToolCallPending:
                    if time.monotonic() > deadline:
                        raise
                    time.sleep(0.02)
    except BaseException:
        barrier.abort()
        results.put((worker, traceback.format_exc(), False, None, 0))


def claim_and_hang(url: str, prefix: str, sid: uuid.UUID, tool_use_id: str, ttl: float, claimed: Any) -> None:
    """Claim the tool call, say so, and hang "inside the tool" until killed."""
    with SessionStore.from_url(url, prefix=prefix) as store:
        call = store.tool_call(sid, tool_use_id, ttl=ttl, owner="doomed-worker").claim()
        claimed.put(call.attempt)
        time.sleep(3600)
