"""A deferred flush of a streamed reply's buffered deltas.

The asyncio front schedules one on the running loop (``async_later``), so a delta written just
before the producer pauses still goes out ``flush_interval`` seconds later. The sync front has no
loop to run one on (``later`` does nothing): there a buffered delta waits for the next ``write``,
``flush``, ``finish`` or ``abort``. ``tools/unasync.py`` maps the one name to the other.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

__all__ = ["async_later", "later"]

_RUNNING: set[asyncio.Task[None]] = set()  # the loop keeps only weak references to its tasks


def async_later(delay: float, flush: Callable[[], Awaitable[None]]) -> asyncio.TimerHandle:
    """Run ``flush()`` as a task ``delay`` seconds from now; cancel the handle to call it off."""
    loop = asyncio.get_running_loop()

    def fire() -> None:
        task = loop.create_task(_run(flush))
        _RUNNING.add(task)
        task.add_done_callback(_RUNNING.discard)

    return loop.call_later(delay, fire)


async def _run(flush: Callable[[], Awaitable[None]]) -> None:
    await flush()


def later(delay: float, flush: Callable[[], Any]) -> Any:
    """The sync front's counterpart: nothing is scheduled (``None``, a handle never cancelled)."""
    del delay, flush
    return None
