"""``RedisAgentSession`` against the installed OpenAI Agents SDK: the ``Session`` protocol on every
backend and both fronts, exact round trips, atomic pops across processes, and ``Runner.run``."""

from __future__ import annotations

import asyncio
import copy
import json
import multiprocessing
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator
from typing import Any, cast

import pytest
from agents import Agent, ModelSettings, RunConfig, Runner, function_tool
from agents.agent_output import AgentOutputSchemaBase
from agents.handoffs import Handoff
from agents.items import ModelResponse, TResponseInputItem, TResponseStreamEvent
from agents.memory.session import Session
from agents.memory.session_settings import SessionSettings
from agents.models.interface import Model, ModelTracing
from agents.tool import Tool
from agents.usage import Usage
from openai.types.responses import ResponseFunctionToolCall, ResponseOutputMessage, ResponseOutputText

from redis_sessions import (
    AgentMessage,
    AsyncSessionStore,
    Image,
    Role,
    SessionStore,
    Text,
    Thinking,
    ToolResult,
    ToolUse,
)
from redis_sessions.integrations import SESSION_NAMESPACE, session_uuid
from redis_sessions.integrations.openai_agents import RedisAgentSession, to_item, to_message
from tests.integrations import workers
from tests.integrations.conftest import AnyStore


def as_json(items: list[TResponseInputItem]) -> list[dict[str, Any]]:
    """Items as the plain JSON they are at runtime: the SDK's TypedDicts are a static view only,
    and these tests index and change items as data."""
    return cast(list[dict[str, Any]], items)


PNG = "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8BQDwAEhQGAhKmMIQAAAABJRU5ErkJggg=="

# What a real two-turn run with a tool stores: items as the SDK hands them to add_items.
ITEMS: list[TResponseInputItem] = [
    {"role": "developer", "content": "Answer in one sentence."},
    {"content": "What's the weather in Oslo?", "role": "user"},
    {
        "type": "message",
        "role": "user",
        "content": [
            {"type": "input_text", "text": "And what is on this picture?"},
            {"type": "input_image", "image_url": f"data:image/png;base64,{PNG}", "detail": "low"},
            {"type": "input_image", "image_url": "https://example.com/cat.png", "detail": "auto"},
        ],
    },
    {
        "id": "rs_68c1a2",
        "type": "reasoning",
        "summary": [{"type": "summary_text", "text": "The user wants the weather: call get_weather."}],
        "encrypted_content": "gAAAAABo-opaque",
    },
    {
        "arguments": '{"city":"Oslo","unit":"celsius"}',
        "call_id": "call_Yx9",
        "name": "get_weather",
        "type": "function_call",
        "id": "fc_68c1a3",
        "status": "completed",
    },
    {"call_id": "call_Yx9", "output": "12 °C, light rain", "type": "function_call_output"},
    {
        "id": "msg_68c1a4",
        "content": [
            {
                "annotations": [
                    {
                        "type": "url_citation",
                        "start_index": 0,
                        "end_index": 22,
                        "title": "yr.no",
                        "url": "https://www.yr.no/en/forecast/Oslo",
                    }
                ],
                "text": "It is 12 °C with light rain in Oslo.",
                "type": "output_text",
                "logprobs": [],
            }
        ],
        "role": "assistant",
        "status": "completed",
        "type": "message",
    },
    {
        "id": "ws_68c1a5",
        "type": "web_search_call",
        "status": "completed",
        "action": {"type": "search", "query": "Oslo weather"},
    },
    {"arguments": '{"q": "no compact"}', "call_id": "call_2", "name": "search", "type": "function_call"},
    {
        "call_id": "call_2",
        "type": "function_call_output",
        "output": [{"type": "input_text", "text": "found"}, {"type": "input_file", "file_id": "file-1"}],
    },
    {
        "id": "msg_2",
        "type": "message",
        "role": "assistant",
        "status": "completed",
        "content": [{"type": "refusal", "refusal": "I can't help with that."}],
    },
]


@pytest.fixture
def session(any_store: AnyStore) -> RedisAgentSession:
    return RedisAgentSession("chat-" + uuid.uuid4().hex[:8], any_store)


async def test_is_an_agents_session(session: RedisAgentSession) -> None:
    assert isinstance(session, Session)
    assert session.session_id.startswith("chat-")
    assert session.session_settings == SessionSettings()
    assert await session.get_items() == []
    assert await session.pop_item() is None
    assert not await _exists(session)  # reading does not create the session


async def test_items_round_trip_exactly(session: RedisAgentSession) -> None:
    given = copy.deepcopy(ITEMS)
    await session.add_items(given)
    assert given == ITEMS  # add_items does not change what it is given
    got = await session.get_items()
    assert got == ITEMS
    as_json(got)[1]["content"] = "changed"  # what get_items returns is the caller's to change
    assert await session.get_items() == ITEMS


async def test_items_map_onto_typed_blocks(session: RedisAgentSession) -> None:
    await session.add_items(copy.deepcopy(ITEMS))
    stored = await _messages(session)
    assert [m.role for m in stored] == [
        Role.SYSTEM, Role.USER, Role.USER, Role.ASSISTANT, Role.ASSISTANT, Role.TOOL, Role.ASSISTANT,
        Role.ASSISTANT, Role.ASSISTANT, Role.TOOL, Role.ASSISTANT,
    ]  # fmt: skip
    developer, user, picture, reasoning, call, result, answer, search, call2, result2, refusal = stored
    assert developer.content == [Text("Answer in one sentence.")]
    assert user.content == [Text("What's the weather in Oslo?")]
    assert user.extra is None  # nothing beyond the blocks to keep
    assert picture.content[0] == Text("And what is on this picture?")
    assert isinstance(picture.content[1], Image)
    assert picture.content[1].media_type == "image/png"
    assert picture.content[1].data.startswith(b"\x89PNG")
    assert len(picture.content) == 2  # the https image stays in extra only
    assert reasoning.content == [Thinking("The user wants the weather: call get_weather.")]
    assert call.content == [ToolUse("call_Yx9", "get_weather", {"city": "Oslo", "unit": "celsius"})]
    assert call.extra == {"openai": {"id": "fc_68c1a3", "status": "completed"}}
    assert result.content == [ToolResult("call_Yx9", "12 °C, light rain")]
    assert result.extra is None
    assert answer.content == [Text("It is 12 °C with light rain in Oslo.")]
    assert search.content == []
    assert search.extra == {"openai_item": ITEMS[7]}
    assert call2.content == [ToolUse("call_2", "search", {"q": "no compact"})]
    assert result2.content == [ToolResult("call_2", [Text("found")])]
    assert refusal.content == [Text("I can't help with that.")]
    # Only the item no block can carry is kept whole; the text is never stored twice.
    assert [m.extra is not None and "openai_item" in m.extra for m in stored].count(True) == 1
    assert "Oslo." not in json.dumps([m.extra for m in stored], default=str)


async def test_get_items_limit(any_store: AnyStore) -> None:
    session = RedisAgentSession(uuid.uuid4().hex, any_store)
    await session.add_items(copy.deepcopy(ITEMS))
    assert await session.get_items(3) == ITEMS[-3:]
    assert await session.get_items(1) == ITEMS[-1:]
    assert await session.get_items(0) == []
    assert await session.get_items(100) == ITEMS
    limited = RedisAgentSession(session.session_id, any_store, session_settings={"limit": 2})
    assert await limited.get_items() == ITEMS[-2:]  # session_settings.limit is the default
    assert await limited.get_items(4) == ITEMS[-4:]  # an explicit limit wins


async def test_pop_item_returns_the_last_item_exactly(session: RedisAgentSession) -> None:
    await session.add_items(copy.deepcopy(ITEMS))
    popped = [await session.pop_item() for _ in ITEMS]
    assert popped == ITEMS[::-1]
    assert await session.pop_item() is None
    assert await session.get_items() == []
    await session.add_items([{"role": "user", "content": "again"}])
    assert await session.get_items() == [{"role": "user", "content": "again"}]


async def test_clear_then_reuse(session: RedisAgentSession) -> None:
    await session.add_items(copy.deepcopy(ITEMS[:3]))
    await session.clear_session()
    assert await session.get_items() == []
    assert not await _exists(session)
    await session.clear_session()  # clearing nothing is fine
    await session.add_items(copy.deepcopy(ITEMS[3:5]))
    assert await session.get_items() == ITEMS[3:5]


async def test_add_items_batches_are_appended_in_order(session: RedisAgentSession) -> None:
    await session.add_items([])
    assert not await _exists(session)  # an empty batch creates nothing
    for item in ITEMS:
        await session.add_items([copy.deepcopy(item)])
    assert await session.get_items() == ITEMS


async def test_same_item_added_twice_is_stored_twice(session: RedisAgentSession) -> None:
    # Ids are random per stored message: the SDK's item ids repeat ("__fake_id__") and must not merge.
    item: TResponseInputItem
    item = {"id": "__fake_id__", "type": "message", "role": "assistant", "status": "completed",
            "content": [{"type": "output_text", "text": "hi", "annotations": []}]}  # fmt: skip
    await session.add_items([item, item])
    await session.add_items([item])
    assert await session.get_items() == [item, item, item]


async def test_first_writes_from_many_sessions_at_once(any_store: AnyStore) -> None:
    # Every one of them finds the session missing and creates it: one wins, the rest append to it.

    name = "race-" + uuid.uuid4().hex
    sessions = [RedisAgentSession(name, any_store) for _ in range(8)]
    await asyncio.gather(
        *(s.add_items([{"role": "user", "content": f"m{i}"}]) for i, s in enumerate(sessions))
    )
    got = as_json(await sessions[0].get_items())
    assert sorted(item["content"] for item in got) == [f"m{i}" for i in range(8)]


async def test_session_is_created_with_its_external_id(session: RedisAgentSession) -> None:
    await session.add_items([{"role": "user", "content": "hi"}])
    loaded = await _load(session)
    assert loaded is not None
    assert loaded.id == session.uuid
    assert loaded.metadata == {"integration": "openai-agents", "external_id": session.session_id}


async def test_free_string_ids_map_to_uuid5(any_store: AnyStore) -> None:
    session = RedisAgentSession("user-42/thread 7", any_store)
    assert session.session_id == "user-42/thread 7"
    assert session.uuid == uuid.uuid5(SESSION_NAMESPACE, "user-42/thread 7")
    assert uuid.uuid5(uuid.NAMESPACE_URL, "redis-sessions:session-id") == SESSION_NAMESPACE
    await session.add_items([{"role": "user", "content": "hi"}])
    assert await _exists(session)
    again = RedisAgentSession("user-42/thread 7", any_store)
    assert await again.get_items() == [{"role": "user", "content": "hi"}]
    other = RedisAgentSession("user-42/thread 8", any_store)
    assert await other.get_items() == []


def test_uuid_ids_map_to_themselves() -> None:
    value = uuid.uuid4()
    assert session_uuid(str(value)) == value
    assert session_uuid(str(value).upper()) == value
    assert session_uuid(value) is value
    assert session_uuid(value.hex) == uuid.uuid5(SESSION_NAMESPACE, value.hex)  # not the canonical form
    assert session_uuid("") == uuid.uuid5(SESSION_NAMESPACE, "")
    with pytest.raises(TypeError):
        session_uuid(42)  # type: ignore[arg-type]


def test_session_needs_a_store() -> None:
    with pytest.raises(TypeError, match="SessionStore or an AsyncSessionStore"):
        RedisAgentSession("x", object())  # type: ignore[arg-type]


async def test_messages_from_other_writers_read_as_items(any_store: AnyStore) -> None:
    session = RedisAgentSession(uuid.uuid4().hex, any_store)
    written = [
        AgentMessage.system("Be brief."),
        AgentMessage.user("Weather?"),
        AgentMessage.assistant([ToolUse("t1", "get_weather", {"city": "Oslo"})]),
        AgentMessage.tool_result("t1", "rain"),
        AgentMessage.assistant("Rain."),
    ]
    if isinstance(any_store, AsyncSessionStore):
        await any_store.create(session_id=session.uuid)
        await any_store.extend(session.uuid, written)
    else:
        any_store.create(session_id=session.uuid)
        any_store.extend(session.uuid, written)
    assert await session.get_items() == [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "Weather?"},
        {"type": "function_call", "call_id": "t1", "name": "get_weather", "arguments": '{"city":"Oslo"}'},
        {"type": "function_call_output", "call_id": "t1", "output": "rain"},
        {"role": "assistant", "content": "Rain."},
    ]


@pytest.mark.parametrize(
    "item",
    [
        {"role": "user", "content": ""},
        {"role": "user", "content": [{"type": "input_text"}]},  # a part that lacks its text
        {"role": "assistant", "content": None},
        {"type": "function_call", "call_id": "c", "name": "f", "arguments": "[1, 2]"},
        {"type": "function_call", "call_id": "c", "name": "f", "arguments": "{not json"},
        {"type": "function_call", "call_id": 7, "name": "f", "arguments": "{}"},
        {"type": "function_call_output", "call_id": "c", "output": [{"type": "input_image", "file_id": "f"}]},
        {"role": "user", "content": [{"type": "input_image", "image_url": "data:image/png;base64,!!"}]},
        {
            "role": "user",
            "content": [{"type": "input_image", "image_url": "data:image/png;base64,iVBORw0KGgp="}],
        },
        {"type": "reasoning", "id": "rs", "summary": []},
        {"type": "item_reference", "id": "msg_1"},
        {"role": "robot", "content": "beep"},
        {"type": "computer_call_output", "call_id": "c", "output": {"type": "computer_screenshot"}},
    ],
)
def test_odd_items_still_round_trip(item: dict[str, Any]) -> None:
    message = to_message(item)
    assert to_item(message) == item
    assert (
        to_item(AgentMessage(message.role, message.content, message.id, copy.deepcopy(message.extra))) == item
    )


def test_items_must_be_dicts() -> None:
    with pytest.raises(TypeError, match="dict"):
        to_message([("role", "user")])  # type: ignore[arg-type]


@pytest.mark.real
def test_pop_item_from_two_processes_never_returns_one_item_twice(redis_url: str) -> None:
    prefix = "rs-t-" + uuid.uuid4().hex[:12]
    name = "popped-" + uuid.uuid4().hex
    count = 300
    given: list[TResponseInputItem] = [{"role": "user", "content": f"item {i}"} for i in range(count)]
    items = as_json(given)
    store = SessionStore.from_url(redis_url, prefix=prefix)
    try:
        asyncio.run(RedisAgentSession(name, store).add_items(given))
        context = multiprocessing.get_context("spawn")
        barrier = context.Barrier(2)
        out = context.Queue()
        procs = [
            context.Process(target=workers.pop_all, args=(redis_url, prefix, name, barrier, out))
            for _ in range(2)
        ]
        for proc in procs:
            proc.start()
        results = [out.get(timeout=60) for _ in procs]
        for proc in procs:
            proc.join(timeout=30)
            assert proc.exitcode == 0
        popped = [item["content"] for result in results for item in result]
        assert len(popped) == count  # each item popped exactly once...
        assert sorted(popped) == sorted(item["content"] for item in items)  # ...and none twice
        for result in results:  # each process saw the list shrink from the end
            positions = [int(item["content"].split()[1]) for item in result]
            assert positions == sorted(positions, reverse=True)
        assert all(results), "each process pops once before either goes on (the barrier)"
    finally:
        store.delete(session_uuid(name))
        store.close()


# --- Runner.run with a deterministic model (no network) ---------------------------------------------


@function_tool
def get_weather(city: str) -> str:
    """The weather in a city."""
    return f"12 °C and rain in {city}"


class ScriptedModel(Model):
    """Answers from a script and records every input it was given."""

    def __init__(self) -> None:
        self.inputs: list[list[TResponseInputItem]] = []
        self.turn = 0

    async def get_response(
        self,
        system_instructions: str | None,
        input: str | list[TResponseInputItem],
        model_settings: ModelSettings,
        tools: list[Tool],
        output_schema: AgentOutputSchemaBase | None,
        handoffs: list[Handoff],
        tracing: ModelTracing,
        *,
        previous_response_id: str | None,
        conversation_id: str | None,
        prompt: Any,
    ) -> ModelResponse:
        given = [{"role": "user", "content": input}] if isinstance(input, str) else copy.deepcopy(input)
        self.inputs.append(given)  # type: ignore[arg-type]
        self.turn += 1
        last = given[-1]
        if last.get("type") != "function_call_output" and "weather" in str(last.get("content", "")):
            output: list[Any] = [
                ResponseFunctionToolCall(
                    arguments='{"city":"Oslo"}', call_id=f"call_{self.turn}", name="get_weather",
                    type="function_call", id=f"fc_{self.turn}", status="completed",
                )
            ]  # fmt: skip
        else:
            text = f"answer {self.turn}"
            output = [
                ResponseOutputMessage(
                    id=f"msg_{self.turn}", role="assistant", status="completed", type="message",
                    content=[ResponseOutputText(text=text, annotations=[], type="output_text")],
                )
            ]  # fmt: skip
        return ModelResponse(output=output, usage=Usage(), response_id=f"resp_{self.turn}")

    def stream_response(self, *args: Any, **kwargs: Any) -> AsyncIterator[TResponseStreamEvent]:
        raise NotImplementedError


async def test_runner_run_over_two_turns_sees_the_first(any_store: AnyStore) -> None:
    model = ScriptedModel()
    agent = Agent(name="weather", instructions="Be brief.", model=model, tools=[get_weather])
    session = RedisAgentSession("runner-" + uuid.uuid4().hex, any_store)
    config = RunConfig(tracing_disabled=True)

    first = await Runner.run(agent, "What's the weather in Oslo?", session=session, run_config=config)
    assert first.final_output == "answer 2"  # tool call, then the answer
    after_first = await session.get_items()
    kinds = [item.get("type", "message") for item in after_first]
    assert kinds == ["message", "function_call", "function_call_output", "message"]

    second = await Runner.run(agent, "Thanks! And tomorrow?", session=session, run_config=config)
    assert second.final_output == "answer 3"
    seen = as_json(model.inputs[-1])
    assert seen[: len(after_first)] == after_first  # the second turn's model input held the first turn
    assert seen[-1] == {"role": "user", "content": "Thanks! And tomorrow?"} or seen[-1]["content"] == (
        "Thanks! And tomorrow?"
    )
    assert len(await session.get_items()) == len(after_first) + 2
    stored = await _messages(session)
    assert [m.role for m in stored] == [
        Role.USER,
        Role.ASSISTANT,
        Role.TOOL,
        Role.ASSISTANT,
        Role.USER,
        Role.ASSISTANT,
    ]
    assert stored[1].content == [ToolUse("call_1", "get_weather", {"city": "Oslo"})]
    assert stored[2].content == [ToolResult("call_1", "12 °C and rain in Oslo")]
    assert stored[3].text == "answer 2"


# --- the import guard --------------------------------------------------------------------------------


def test_missing_sdk_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:

    monkeypatch.setitem(sys.modules, "agents", None)
    monkeypatch.setitem(sys.modules, "agents.items", None)
    monkeypatch.delitem(sys.modules, "redis_sessions.integrations.openai_agents")
    with pytest.raises(ImportError, match=r"pip install 'redis-sessions\[openai-agents\]'"):
        import redis_sessions.integrations.openai_agents  # noqa: F401


def test_importing_redis_sessions_imports_no_framework() -> None:

    code = (
        "import sys, redis_sessions, redis_sessions.integrations\n"
        "loaded = [m for m in ('agents', 'openai', 'langchain_core') if m in sys.modules]\n"
        "assert not loaded, loaded\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode == 0, done.stderr


# --- helpers ----------------------------------------------------------------------------------------


async def _messages(session: RedisAgentSession) -> list[AgentMessage]:
    store = session.store
    if isinstance(store, AsyncSessionStore):
        return await store.messages(session.uuid)
    return store.messages(session.uuid)


async def _exists(session: RedisAgentSession) -> bool:
    store = session.store
    if isinstance(store, AsyncSessionStore):
        return await store.exists(session.uuid)
    return store.exists(session.uuid)


async def _load(session: RedisAgentSession) -> Any:
    store = session.store
    if isinstance(store, AsyncSessionStore):
        return await store.load(session.uuid)
    return store.load(session.uuid)
