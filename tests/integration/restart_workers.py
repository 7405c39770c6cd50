"""Writer processes for the server-restart test (importable by 'spawn' children: no test code here).

Each writer appends its own messages (``message_id`` of ``workers.py``) to one session while the test
SIGKILLs and restarts Redis, and records what the store told it about each append.
"""

from __future__ import annotations

import traceback
import uuid
from typing import Any

from redis_sessions import AgentMessage, RetryPolicy, SessionStore, StoreUnavailable
from tests.integration.workers import message_id

TRIES = 5
"""How often a writer sends one message (same id) before it gives that message up as failed."""

POLICY = RetryPolicy(attempts=3, initial=0.02, max_wait=0.1)
"""The store's own retry, under the writer's resends: each try lasts a few hundred ms at most."""


def restart_writer(
    url: str, prefix: str, sid: uuid.UUID, writer: int, count: int, barrier: Any, results: Any
) -> None:
    """Once every writer is ready, append ``count`` messages; one that raised ``StoreUnavailable``
    is sent again (same id), up to ``TRIES`` times in all.

    Puts ``(writer, error, acknowledged, failed, sends)`` on ``results``: the ids whose append
    returned, the ids given up after every try raised, and how many sends were made in all
    (``error`` is a traceback of anything else raised, or None).
    """
    acknowledged: list[str] = []
    failed: list[str] = []
    sends = 0
    try:
        options = {"socket_timeout": 0.5, "socket_connect_timeout": 0.5}
        with SessionStore.from_url(url, prefix=prefix, retry=POLICY, **options) as store:
            barrier.wait(timeout=60)  # the writers start together, so their appends overlap
            for index in range(count):
                message = AgentMessage.user(f"writer {writer} says {index}", id=message_id(writer, index))
                for _ in range(TRIES):
                    sends += 1
                    try:
                        store.append(sid, message)
                    except StoreUnavailable:
                        continue
                    acknowledged.append(message.id)
                    break
                else:
                    failed.append(message.id)
        results.put((writer, None, acknowledged, failed, sends))
    except BaseException:
        barrier.abort()
        results.put((writer, traceback.format_exc(), acknowledged, failed, sends))
