"""Processes for the streamed-reply tests (importable by 'spawn' children: no test code here)."""

from __future__ import annotations

import time
import traceback
import uuid
from typing import Any

from redis_sessions import Aborted, Appended, Delta, SessionError, SessionStore


def as_tuple(event: Any) -> tuple[Any, ...]:
    """An event as plain data for a queue."""
    if isinstance(event, Delta):
        return ("delta", event.message_id, event.index, event.text, event.event_id)
    if isinstance(event, Aborted):
        return ("aborted", event.message_id, event.reason, event.event_id)
    assert isinstance(event, Appended)
    return ("appended", event.seq, event.message.id, event.deltas, event.event_id)


def watch_worker(
    url: str, prefix: str, sid: uuid.UUID, resume: str | None, stop_after: int, ready: Any, results: Any
) -> None:
    """Watch ``sid`` with ``partial=True`` (from ``resume``) until a reply ends or ``stop_after``
    events; puts every event on ``results``, then ``("end", traceback or None)``."""
    error = None
    try:
        with SessionStore.from_url(url, prefix=prefix) as store:
            watching = store.watch(sid, partial=True, resume=resume, timeout=30, poll_interval=0.1)
            ready.set()
            for n, event in enumerate(watching, 1):
                results.put(as_tuple(event))
                if n == stop_after or isinstance(event, Aborted) or getattr(event, "deltas", None):
                    break
    except BaseException:
        error = traceback.format_exc()
    finally:
        ready.set()
        results.put(("end", error))


def produce_worker(
    url: str, prefix: str, sid: uuid.UUID, mode: str, count: int, ready: Any, go: Any, results: Any
) -> None:
    """Stream ``count`` deltas into ``sid`` under a lease (1 s for ``"hang"``), then, by ``mode``:
    ``"hang"`` sleep until killed; ``"fenced"`` wait for ``go`` and write again; ``"bound"`` write
    past ``max_deltas=count`` then finish. Puts ``(outcome, detail)`` on ``results``."""
    try:
        with SessionStore.from_url(url, prefix=prefix) as store:
            lease = store.lease(sid, "producer", 1.0 if mode == "hang" else 30).acquire()
            limit = count if mode == "bound" else 100_000
            reply = store.stream(sid, fence=lease.token, message_id="r1", max_deltas=limit)
            for i in range(count):
                reply.write(f"{i} ")
            reply.flush()
            ready.set()
            if mode == "hang":
                time.sleep(60)
            elif mode == "fenced":
                go.wait(30)
                try:
                    reply.write("too late")
                    reply.flush()  # (sent at once anyway unless within flush_interval of the last send)
                    results.put(("written", None))
                except SessionError as exc:
                    results.put((type(exc).__name__, str(exc)))
            elif mode == "bound":
                try:
                    reply.write("one too many")
                    results.put(("written", None))
                except SessionError as exc:
                    results.put((type(exc).__name__, reply.finish()))
    except BaseException:
        ready.set()
        results.put(("error", traceback.format_exc()))
