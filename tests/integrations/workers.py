"""Process entry points for the cross-process tests (importable by name, for the spawn start method)."""

from __future__ import annotations

import asyncio
from multiprocessing.queues import Queue
from multiprocessing.synchronize import Barrier
from typing import Any

from redis_sessions import AsyncSessionStore


def pop_all(url: str, prefix: str, session_id: str, barrier: Barrier, out: Queue[Any]) -> None:
    """Pop items from the session until it is empty, starting together with the other workers
    and waiting for them again after the first pop (so every worker is popping while the others
    are, however the OS schedules them); put the list of popped items on ``out``."""
    from redis_sessions.integrations.openai_agents import RedisAgentSession

    async def run() -> list[Any]:
        store = AsyncSessionStore.from_url(url, prefix=prefix)
        try:
            session = RedisAgentSession(session_id, store)
            await session.get_items(1)  # connect before the start line
            popped = []
            await asyncio.to_thread(barrier.wait, 60)
            while (item := await session.pop_item()) is not None:
                popped.append(item)
                if len(popped) == 1:
                    await asyncio.to_thread(barrier.wait, 60)
            return popped
        finally:
            await store.aclose()

    out.put(asyncio.run(run()))
