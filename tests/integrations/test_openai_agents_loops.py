"""``RedisAgentSession`` over an ``AsyncSessionStore`` driven by ``Runner.run_sync``, which runs each
call on its thread's event loop (winding it down after every run), from two threads: the store opens
a client per loop (``_loops``), so turn after turn sees the ones before (real server and cluster)."""

from __future__ import annotations

import asyncio
import uuid
from concurrent.futures import ThreadPoolExecutor

import pytest
from agents import Agent, RunConfig, Runner

from redis_sessions import AsyncSessionStore
from redis_sessions.integrations.openai_agents import RedisAgentSession
from tests.integrations.test_openai_agents import ScriptedModel, get_weather
from tests.support import Backend

REAL_AND_CLUSTER = [
    pytest.param("real", marks=pytest.mark.real),
    pytest.param("cluster", marks=[pytest.mark.real, pytest.mark.cluster]),
]


# redis-py's cluster client opens an async generator of its own as it connects, and asyncio warns
# about one started in a loop after its shutdown_asyncgens (run_sync's way): redis-py's, harmless.
@pytest.mark.filterwarnings(
    "ignore:asynchronous generator <async_generator object NodesManager:ResourceWarning"
)
@pytest.mark.parametrize("backend", REAL_AND_CLUSTER, indirect=True)
def test_run_sync_turn_after_turn_and_from_another_thread(backend: Backend) -> None:
    opener = AsyncSessionStore.from_cluster if backend.cluster else AsyncSessionStore.from_url
    store = opener(backend.url or "", prefix=backend.prefix)
    model = ScriptedModel()
    agent = Agent(name="weather", instructions="Be brief.", model=model, tools=[get_weather])
    session = RedisAgentSession("run-sync-" + uuid.uuid4().hex, store)
    config = RunConfig(tracing_disabled=True)

    def turns(*inputs: str) -> list[str]:
        """``run_sync`` once per input on this thread's loop, which is closed at the end."""
        try:
            return [str(Runner.run_sync(agent, text, session=session, run_config=config).final_output)
                    for text in inputs]  # fmt: skip
        finally:
            asyncio.get_event_loop_policy().get_event_loop().close()

    try:
        with ThreadPoolExecutor(1) as first_thread, ThreadPoolExecutor(1) as second_thread:
            answers = first_thread.submit(turns, "What's the weather in Oslo?", "Thanks!").result(60)
            answers += second_thread.submit(turns, "And tomorrow?").result(60)
        assert answers == ["answer 2", "answer 3", "answer 4"]  # the first turn called the tool
        items = asyncio.run(session.get_items())
        assert [item.get("type", "message") for item in items] == [
            "message", "function_call", "function_call_output", "message",
            "message", "message", "message", "message",
        ]  # fmt: skip
        assert model.inputs[-1][: len(items) - 1] == items[:-1], "the last turn saw every earlier one"
    finally:
        asyncio.run(store.aclose())
