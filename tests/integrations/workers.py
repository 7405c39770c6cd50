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


def append_events(
    url: str,
    prefix: str,
    app: str,
    user: str,
    session_id: str,
    count: int,
    barrier: Barrier,
    out: Queue[Any],
    worker: int,
) -> None:
    """Append ``count`` events to one ADK session as a worker of a web service would: read the
    session, append, and on ``StaleSession`` read it again and redo the append. Starts together
    with the other workers; puts how many appends were refused as stale on ``out``."""
    from google.adk.events import Event, EventActions
    from google.genai import types

    from redis_sessions.integrations.adk import RedisSessionService, StaleSession

    async def run() -> int:
        store = AsyncSessionStore.from_url(url, prefix=prefix)
        stale = 0
        try:
            service = RedisSessionService(store)
            await asyncio.to_thread(barrier.wait, 60)
            for i in range(count):
                while True:
                    session = await service.get_session(app_name=app, user_id=user, session_id=session_id)
                    assert session is not None
                    text = f"w{worker} {i}"
                    event = Event(
                        invocation_id=text,
                        author=f"w{worker}",
                        content=types.Content(role="model", parts=[types.Part(text=text)]),
                        actions=EventActions(state_delta={f"w{worker}": i}),
                    )
                    try:
                        await service.append_event(session, event)
                        break
                    except StaleSession:
                        stale += 1
            return stale
        finally:
            await store.aclose()

    out.put(asyncio.run(run()))
