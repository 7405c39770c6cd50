"""``RedisChatMessageHistory`` against the installed langchain-core: lossless round trips of every
message kind, sync and async methods on both stores, and ``RunnableWithMessageHistory`` over a fake
chat model."""

from __future__ import annotations

import sys
import uuid
import warnings
from typing import Any

import pytest
from langchain_core.chat_history import BaseChatMessageHistory
from langchain_core.language_models.fake_chat_models import GenericFakeChatModel
from langchain_core.messages import (
    AIMessage,
    AIMessageChunk,
    BaseMessage,
    ChatMessage,
    FunctionMessage,
    HumanMessage,
    SystemMessage,
    ToolMessage,
)
from langchain_core.prompt_values import PromptValue
from langchain_core.runnables import RunnableLambda
from langchain_core.runnables.history import RunnableWithMessageHistory

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
from redis_sessions.integrations import SESSION_NAMESPACE
from redis_sessions.integrations.langchain import RedisChatMessageHistory, to_langchain, to_message
from tests.integrations.conftest import AnyStore

PNG = "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8BQDwAEhQGAhKmMIQAAAABJRU5ErkJggg=="

CONVERSATION: list[BaseMessage] = [
    SystemMessage("You answer weather questions in one sentence."),
    HumanMessage("What's the weather in Oslo?"),
    AIMessage(
        content="",
        id="lc_run--7f3c",
        tool_calls=[{"name": "get_weather", "args": {"city": "Oslo", "unit": "celsius"}, "id": "call_Yx9"}],
        additional_kwargs={
            "tool_calls": [
                {
                    "id": "call_Yx9",
                    "type": "function",
                    "function": {"name": "get_weather", "arguments": '{"city":"Oslo","unit":"celsius"}'},
                }
            ]
        },
        response_metadata={"model_name": "gpt-4o-2024-08-06", "finish_reason": "tool_calls"},
        usage_metadata={"input_tokens": 41, "output_tokens": 18, "total_tokens": 59},
    ),
    ToolMessage("12 °C, light rain", tool_call_id="call_Yx9", name="get_weather"),
    AIMessage(
        "It is 12 °C with light rain in Oslo.", id="lc_run--8a1d", response_metadata={"finish_reason": "stop"}
    ),
    HumanMessage(
        content=[
            {"type": "text", "text": "And what is on this picture?"},
            {"type": "image_url", "image_url": {"url": f"data:image/png;base64,{PNG}", "detail": "low"}},
        ],
        id="h-2",
    ),
    AIMessage(
        content=[
            {"type": "thinking", "thinking": "A one-pixel image.", "signature": "sig-1"},
            {"type": "text", "text": "A single pixel."},
        ],
        id="lc_run--9b2e",
    ),
    AIMessage(
        content="Two tools at once.",
        tool_calls=[
            {"name": "a", "args": {}, "id": "call_a"},
            {"name": "b", "args": {"x": [1, 2.5, None, True]}, "id": "call_b"},
        ],
    ),
    ToolMessage("division by zero", tool_call_id="call_a", status="error", artifact={"trace": ["line 1"]}),
    ToolMessage(content=[{"type": "text", "text": "ok"}, "plain part"], tool_call_id="call_b"),
    ChatMessage(content="Looks fine to me.", role="critic"),
    FunctionMessage(content="42", name="calculator"),
    AIMessageChunk(content="partial", id="chunk-1"),
    AIMessage(
        content="",
        invalid_tool_calls=[
            {"name": "f", "args": "{bad", "id": "call_x", "error": "bad JSON", "type": "invalid_tool_call"}
        ],
    ),
    HumanMessage("named", name="alice", additional_kwargs={"k": {"nested": [1, "two"]}}),
]


def _history(store: AnyStore, name: str | None = None) -> RedisChatMessageHistory:
    return RedisChatMessageHistory(name or "thread-" + uuid.uuid4().hex[:8], store)


async def _read(history: RedisChatMessageHistory) -> list[BaseMessage]:
    return await history.aget_messages()


async def test_messages_round_trip_losslessly(any_store: AnyStore) -> None:
    history = _history(any_store)
    assert isinstance(history, BaseChatMessageHistory)
    assert await history.aget_messages() == []
    await history.aadd_messages(CONVERSATION[:5])
    await history.aadd_messages(CONVERSATION[5:])
    got = await history.aget_messages()
    assert got == CONVERSATION
    assert [type(m) for m in got] == [type(m) for m in CONVERSATION]
    got[-1].additional_kwargs["k"]["nested"].append(3)  # what is read is the caller's to change
    assert isinstance(got[2], AIMessage)
    assert isinstance(got[7], AIMessage)
    got[2].tool_calls[0]["args"]["city"] = "Bergen"
    got[7].tool_calls[1]["args"]["x"].append(0)
    assert await history.aget_messages() == CONVERSATION
    if isinstance(any_store, SessionStore):  # the sync methods too
        assert history.messages == CONVERSATION
        history.add_messages([HumanMessage("sync")])
        assert history.messages == [*CONVERSATION, HumanMessage("sync")]


async def test_messages_map_onto_typed_blocks(any_store: AnyStore) -> None:
    history = _history(any_store)
    await history.aadd_messages(CONVERSATION)
    stored = await _stored(history)
    assert [m.role for m in stored] == [
        Role.SYSTEM, Role.USER, Role.ASSISTANT, Role.TOOL, Role.ASSISTANT, Role.USER, Role.ASSISTANT,
        Role.ASSISTANT, Role.TOOL, Role.TOOL, Role.ASSISTANT, Role.TOOL, Role.ASSISTANT, Role.ASSISTANT,
        Role.USER,
    ]  # fmt: skip
    system, human, call, result, answer, picture, thought, two_calls, error, mixed = stored[:10]
    assert system.content == [Text("You answer weather questions in one sentence.")]
    assert system.extra is None  # nothing beyond the blocks to keep
    assert human.extra is None
    assert human.content == [Text("What's the weather in Oslo?")]
    assert call.content == [ToolUse("call_Yx9", "get_weather", {"city": "Oslo", "unit": "celsius"})]
    assert result.content == [ToolResult("call_Yx9", "12 °C, light rain")]
    assert answer.content == [Text("It is 12 °C with light rain in Oslo.")]
    assert picture.content[0] == Text("And what is on this picture?")
    assert isinstance(picture.content[1], Image)
    assert picture.content[1].data.startswith(b"\x89PNG")
    assert thought.content == [Thinking("A one-pixel image."), Text("A single pixel.")]
    assert two_calls.content == [
        Text("Two tools at once."),
        ToolUse("call_a", "a", {}),
        ToolUse("call_b", "b", {"x": [1, 2.5, None, True]}),
    ]
    assert error.content == [ToolResult("call_a", "division by zero", is_error=True)]
    assert mixed.content == [ToolResult("call_b", [Text("ok"), Text("plain part")])]
    # Nothing needed the whole-message fallback: every kind maps onto the blocks plus a small rest.
    assert not any(m.extra and "langchain_message" in m.extra for m in stored)


async def test_clear_then_reuse(any_store: AnyStore) -> None:
    history = _history(any_store)
    await history.aadd_messages(CONVERSATION[:3])
    await history.aclear()
    assert await history.aget_messages() == []
    await history.aclear()
    await history.aadd_messages(CONVERSATION[3:5])
    assert await history.aget_messages() == CONVERSATION[3:5]


async def test_max_tokens_reads_the_summary_and_what_fits(any_store: AnyStore) -> None:
    full = _history(any_store)
    budgeted = RedisChatMessageHistory(full.session_id, any_store, max_tokens=30)
    assert await budgeted.aget_messages() == []
    await full.aadd_messages([HumanMessage("a" * 40), AIMessage("b" * 40), HumanMessage("c" * 40)])
    assert await budgeted.aget_messages() == [HumanMessage("c" * 40)]  # 17 tokens each (estimated)
    summarize = any_store.summarize(full.uuid, "they said a and b", through_seq=2)
    if not isinstance(summarize, int):
        await summarize
    assert await budgeted.aget_messages() == [SystemMessage("they said a and b"), HumanMessage("c" * 40)]
    assert len(await full.aget_messages()) == 3


def test_sync_methods_on_a_session_store(sync_store: SessionStore) -> None:
    history = _history(sync_store, "user-42/thread 7")
    assert history.uuid == uuid.uuid5(SESSION_NAMESPACE, "user-42/thread 7")
    assert history.messages == []
    history.add_messages([])
    assert not sync_store.exists(history.uuid)
    history.add_user_message("Hi")
    history.add_ai_message("Hello!")
    assert history.messages == [HumanMessage("Hi"), AIMessage("Hello!")]
    loaded = sync_store.load(history.uuid)
    assert loaded is not None
    assert loaded.metadata == {"integration": "langchain", "external_id": "user-42/thread 7"}
    assert "Hi" in str(history)
    history.clear()
    assert history.messages == []
    assert not sync_store.exists(history.uuid)


async def test_sync_methods_on_an_async_store_say_what_to_use(async_store: AsyncSessionStore) -> None:
    history = _history(async_store)
    for call in (lambda: history.messages, lambda: history.add_messages([HumanMessage("x")]), history.clear):
        with pytest.raises(TypeError, match="aget_messages, aadd_messages, aclear"):
            call()
    await history.aadd_messages([HumanMessage("x")])
    assert await history.aget_messages() == [HumanMessage("x")]


async def test_messages_from_other_writers_read_as_langchain_messages(any_store: AnyStore) -> None:
    history = _history(any_store)
    written = [
        AgentMessage.system("Be brief."),
        AgentMessage.user("Weather?"),
        AgentMessage.assistant([Text("Checking."), ToolUse("t1", "get_weather", {"city": "Oslo"})]),
        AgentMessage.tool_result("t1", "rain", is_error=True),
        AgentMessage.assistant([Thinking("rain it is"), Text("Rain.")]),
    ]
    if isinstance(any_store, AsyncSessionStore):
        await any_store.create(session_id=history.uuid)
        await any_store.extend(history.uuid, written)
    else:
        any_store.create(session_id=history.uuid)
        any_store.extend(history.uuid, written)
    assert await history.aget_messages() == [
        SystemMessage("Be brief."),
        HumanMessage("Weather?"),
        AIMessage("Checking.", tool_calls=[{"name": "get_weather", "args": {"city": "Oslo"}, "id": "t1"}]),
        ToolMessage("rain", tool_call_id="t1", status="error"),
        AIMessage([{"type": "thinking", "thinking": "rain it is"}, {"type": "text", "text": "Rain."}]),
    ]


@pytest.mark.parametrize(
    "message",
    [
        HumanMessage(""),
        HumanMessage(content=[]),
        HumanMessage(content=[{"type": "text"}]),  # a part that lacks its text
        HumanMessage(content=[{"type": "image_url", "image_url": "data:image/png;base64,iVBORw0KGgo="}]),
        HumanMessage(content=[{"type": "image_url", "image_url": {"url": "https://example.com/a.png"}}]),
        HumanMessage(
            content=[{"type": "image", "source_type": "base64", "data": PNG, "mime_type": "image/png"}]
        ),
        AIMessage(content="", tool_calls=[{"name": "f", "args": {}, "id": None}]),
        AIMessage(content=[{"type": "tool_use", "id": "t", "name": "f", "input": {}}]),
        ToolMessage(content="", tool_call_id="c"),
        ToolMessage(
            content=[{"type": "image_url", "image_url": {"url": f"data:image/png;base64,{PNG}"}}],
            tool_call_id="c",
        ),
        ChatMessage(content="hi", role="user"),
    ],
)
def test_odd_messages_still_round_trip(message: BaseMessage) -> None:
    assert to_langchain(to_message(message)) == message


def test_history_needs_a_store() -> None:
    with pytest.raises(TypeError, match="SessionStore or an AsyncSessionStore"):
        RedisChatMessageHistory("x", object())  # type: ignore[arg-type]


def test_to_message_needs_a_message() -> None:
    with pytest.raises(TypeError, match="BaseMessage"):
        to_message({"type": "human", "content": "hi"})  # type: ignore[arg-type]


# --- RunnableWithMessageHistory over a fake chat model ----------------------------------------------


class Recorder:
    """A step before the model that records the prompt it receives."""

    def __init__(self) -> None:
        self.prompts: list[list[BaseMessage]] = []

    def __call__(self, prompt: Any) -> Any:
        messages = prompt.to_messages() if isinstance(prompt, PromptValue) else list(prompt)
        self.prompts.append(messages)
        return messages


def _chain(
    recorder: Recorder, histories: dict[str, RedisChatMessageHistory], store: AnyStore
) -> RunnableWithMessageHistory:
    model = GenericFakeChatModel(messages=iter([AIMessage("Hello, Ada!"), AIMessage("Your name is Ada.")]))

    def history_for(session_id: str) -> RedisChatMessageHistory:
        return histories.setdefault(session_id, RedisChatMessageHistory(session_id, store))

    with warnings.catch_warnings():  # deprecated (langchain-core 1.3.3) for LangGraph; still supported
        warnings.simplefilter("ignore", DeprecationWarning)
        return RunnableWithMessageHistory(RunnableLambda(recorder) | model, history_for)


def test_runnable_with_message_history_sync(sync_store: SessionStore) -> None:
    recorder, histories = Recorder(), dict[str, RedisChatMessageHistory]()
    chain = _chain(recorder, histories, sync_store)
    config: Any = {"configurable": {"session_id": "ada"}}
    first = chain.invoke([HumanMessage("Hi, I am Ada.")], config=config)
    second = chain.invoke([HumanMessage("What is my name?")], config=config)
    _check_two_turns(recorder, histories["ada"].messages, first, second)


async def test_runnable_with_message_history_async(any_store: AnyStore) -> None:
    recorder, histories = Recorder(), dict[str, RedisChatMessageHistory]()
    chain = _chain(recorder, histories, any_store)
    config: Any = {"configurable": {"session_id": "ada-" + uuid.uuid4().hex}}
    first = await chain.ainvoke([HumanMessage("Hi, I am Ada.")], config=config)
    second = await chain.ainvoke([HumanMessage("What is my name?")], config=config)
    (history,) = histories.values()
    _check_two_turns(recorder, await history.aget_messages(), first, second)


def _check_two_turns(recorder: Recorder, stored: list[BaseMessage], first: Any, second: Any) -> None:
    assert first.content == "Hello, Ada!"
    assert second.content == "Your name is Ada."
    assert [m.content for m in recorder.prompts[0]] == ["Hi, I am Ada."]
    # the second turn's prompt held the first turn, read back from Redis
    assert [m.content for m in recorder.prompts[1]] == ["Hi, I am Ada.", "Hello, Ada!", "What is my name?"]
    assert recorder.prompts[1][1] == first
    assert stored == [HumanMessage("Hi, I am Ada."), first, HumanMessage("What is my name?"), second]


# --- the import guard --------------------------------------------------------------------------------


def test_missing_langchain_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("langchain_core", "langchain_core.chat_history", "langchain_core.messages"):
        monkeypatch.setitem(sys.modules, name, None)
    monkeypatch.delitem(sys.modules, "redis_sessions.integrations.langchain")
    with pytest.raises(ImportError, match=r"pip install 'redis-sessions\[langchain\]'"):
        import redis_sessions.integrations.langchain  # noqa: F401


async def _stored(history: RedisChatMessageHistory) -> list[AgentMessage]:
    store = history.store
    if isinstance(store, AsyncSessionStore):
        return await store.messages(history.uuid)
    return store.messages(history.uuid)
