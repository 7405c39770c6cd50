"""``RedisSessionService`` against the installed Google ADK: the ``BaseSessionService`` contract on
every backend (fakeredis, a real server, a real cluster) and both fronts, state scopes, lossless
events, idempotent and fenced appends, ADK's ``Runner`` over two workers, appends from several
processes, and durable mode."""

from __future__ import annotations

import asyncio
import multiprocessing
import subprocess
import sys
import uuid
from collections.abc import AsyncGenerator
from pathlib import Path
from typing import Any

import pytest
from google.adk.agents import LlmAgent
from google.adk.errors import StaleSessionError
from google.adk.errors.already_exists_error import AlreadyExistsError
from google.adk.errors.session_not_found_error import SessionNotFoundError
from google.adk.events import Event, EventActions
from google.adk.models.base_llm import BaseLlm
from google.adk.models.llm_request import LlmRequest
from google.adk.models.llm_response import LlmResponse
from google.adk.runners import Runner
from google.adk.sessions import BaseSessionService
from google.adk.sessions.base_session_service import GetSessionConfig
from google.adk.tools.tool_context import ToolContext
from google.genai import types
from pydantic import Field

from redis_sessions import (
    AgentMessage,
    AsyncSessionStore,
    ConflictError,
    CorruptSession,
    Role,
    SessionError,
    SessionStore,
    StoreUnavailable,
    Text,
    ToolResult,
    ToolUse,
)
from redis_sessions.integrations._adk import user_record
from redis_sessions.integrations.adk import (
    InvalidName,
    NoSuchSession,
    RedisSessionService,
    SessionAlreadyExists,
    StaleSession,
    WrongType,
)
from redis_sessions.persistence import SQLiteAdapter
from tests.integrations import workers
from tests.integrations.conftest import AnyStore
from tests.support import Backend

APP = "weather-app"


@pytest.fixture
def service(any_store: AnyStore) -> RedisSessionService:
    return RedisSessionService(any_store)


def _text_event(author: str, text: str, **delta: Any) -> Event:
    role = "user" if author == "user" else "model"
    return Event(
        invocation_id="inv-" + uuid.uuid4().hex[:8],
        author=author,
        content=types.Content(role=role, parts=[types.Part(text=text)]),
        actions=EventActions(state_delta=dict(delta)),
    )


async def test_is_a_session_service(service: RedisSessionService) -> None:
    assert isinstance(service, BaseSessionService)
    assert await service.get_session(app_name=APP, user_id="u", session_id="nope") is None
    assert (await service.list_sessions(app_name=APP)).sessions == []
    assert await service.get_user_state(app_name=APP, user_id="u") == {}
    async with service as entered:  # as ADK's database service; closes nothing (the store is ours)
        assert entered is service
    assert await service.create_session(app_name=APP, user_id="u", session_id="after")


async def test_create_get_delete(service: RedisSessionService) -> None:
    created = await service.create_session(app_name=APP, user_id="u", state={"k": "v"})
    assert created.id
    assert created.state == {"k": "v"}
    assert created.events == []
    got = await service.get_session(app_name=APP, user_id="u", session_id=created.id)
    assert got == created
    named = await service.create_session(app_name=APP, user_id="u", session_id=" chosen ")
    assert named.id == "chosen"  # stripped, as ADK's own services do
    with pytest.raises(SessionAlreadyExists) as caught:
        await service.create_session(app_name=APP, user_id="u", session_id="chosen")
    assert isinstance(caught.value, AlreadyExistsError)
    assert "'chosen'" in str(caught.value)
    # the same id under another user or app is another session
    other = await service.create_session(app_name=APP, user_id="v", session_id="chosen", state={"x": 1})
    assert other.state == {"x": 1}
    await service.delete_session(app_name=APP, user_id="u", session_id="chosen")
    assert await service.get_session(app_name=APP, user_id="u", session_id="chosen") is None
    assert await service.get_session(app_name=APP, user_id="v", session_id="chosen") is not None
    await service.delete_session(app_name=APP, user_id="u", session_id="chosen")  # twice: fine


async def test_list_sessions_per_user_and_per_app(service: RedisSessionService) -> None:
    for user, sid in [("u1", "a"), ("u1", "b"), ("u2", "c")]:
        await service.create_session(app_name=APP, user_id=user, session_id=sid, state={"key": sid})
    await service.create_session(app_name="other-app", user_id="u1", session_id="z")
    session = await service.get_session(app_name=APP, user_id="u1", session_id="a")
    assert session is not None
    await service.append_event(session, _text_event("user", "hi"))  # "a" is now the newest
    mine = (await service.list_sessions(app_name=APP, user_id="u1")).sessions
    assert [s.id for s in mine] == ["b", "a"]  # oldest update first
    assert all(s.events == [] for s in mine)
    assert {s.id: s.state for s in mine} == {"a": {"key": "a"}, "b": {"key": "b"}}
    everyone = (await service.list_sessions(app_name=APP)).sessions
    assert sorted((s.user_id, s.id) for s in everyone) == [("u1", "a"), ("u1", "b"), ("u2", "c")]
    await service.delete_session(app_name=APP, user_id="u1", session_id="b")
    assert [s.id for s in (await service.list_sessions(app_name=APP, user_id="u1")).sessions] == ["a"]


async def test_state_scopes(service: RedisSessionService) -> None:
    first = await service.create_session(
        app_name=APP,
        user_id="u1",
        state={"own": 1, "app:theme": "dark", "user:lang": "nb", "temp:scratch": "x"},
    )
    assert first.state == {"own": 1, "app:theme": "dark", "user:lang": "nb"}  # temp: never stored
    event = _text_event("agent", "ok", own=2, **{"app:count": 1, "user:lang": "en", "temp:t": 9})
    await service.append_event(first, event)
    assert first.state["temp:t"] == 9  # the caller's copy sees temp: for this invocation...
    assert "temp:t" not in event.actions.state_delta  # ...but it is not in the stored event
    again = await service.get_session(app_name=APP, user_id="u1", session_id=first.id)
    assert again is not None
    assert again.state == {"own": 2, "app:theme": "dark", "app:count": 1, "user:lang": "en"}
    # another session of the same user shares user: and app: state, not the session's own
    second = await service.create_session(app_name=APP, user_id="u1")
    assert second.state == {"app:theme": "dark", "app:count": 1, "user:lang": "en"}
    # another user of the app shares only app: state
    stranger = await service.create_session(app_name=APP, user_id="u2", state={"user:lang": "de"})
    assert stranger.state == {"app:theme": "dark", "app:count": 1, "user:lang": "de"}
    assert await service.get_user_state(app_name=APP, user_id="u1") == {"lang": "en"}
    # another app shares nothing
    assert (await service.create_session(app_name="other", user_id="u1")).state == {}
    # deleting a session keeps the shared state
    await service.delete_session(app_name=APP, user_id="u1", session_id=first.id)
    assert await service.get_user_state(app_name=APP, user_id="u1") == {"lang": "en"}


async def test_events_round_trip_losslessly(service: RedisSessionService) -> None:
    session = await service.create_session(app_name=APP, user_id="u")
    call = types.FunctionCall(id="call-1", name="get_weather", args={"city": "Oslo", "days": [1, 2]})
    answer = types.FunctionResponse(id="call-1", name="get_weather", response={"result": "12 °C"})
    events = [
        _text_event("user", "Weather in Oslo?"),
        Event(
            invocation_id="inv",
            author="weather",
            content=types.Content(
                role="model",
                parts=[types.Part(text="let me think", thought=True), types.Part(function_call=call)],
            ),
            actions=EventActions(artifact_delta={"report.txt": 2}, transfer_to_agent=None),
            custom_metadata={"trace": {"n": 1}},
        ),
        Event(
            invocation_id="inv",
            author="weather",
            content=types.Content(
                role="user",
                parts=[
                    types.Part(function_response=answer),
                    types.Part.from_bytes(data=b"\x89PNG\x00", mime_type="image/png"),
                ],
            ),
            actions=EventActions(state_delta={"nested": {"a": [1, {"b": None}]}}),
        ),
        Event(invocation_id="inv", author="weather", turn_complete=True, error_code="X", branch="a.b"),
    ]
    for event in events:
        await service.append_event(session, event)
    got = await service.get_session(app_name=APP, user_id="u", session_id=session.id)
    assert got is not None
    assert got.events == events
    assert got.state == {"nested": {"a": [1, {"b": None}]}}
    assert got.last_update_time == events[-1].timestamp
    stored = await _messages(service, session.id)
    assert [m.role for m in stored] == [Role.USER, Role.ASSISTANT, Role.TOOL, Role.ASSISTANT]
    assert stored[0].content == [Text("Weather in Oslo?")]
    assert stored[1].content[1] == ToolUse("call-1", "get_weather", {"city": "Oslo", "days": [1, 2]})
    assert stored[2].content == [ToolResult("call-1", '{"result":"12 °C"}')]


async def test_messages_from_other_writers_read_as_text_events(service: RedisSessionService) -> None:
    session = await service.create_session(app_name=APP, user_id="u")
    store, sid = service.store, service.storage_id(APP, "u", session.id)
    foreign = [AgentMessage.user("typed at the CLI"), AgentMessage.assistant("an agent on another framework")]
    if isinstance(store, AsyncSessionStore):
        await store.extend(sid, foreign)
    else:
        store.extend(sid, foreign)
    got = await service.get_session(app_name=APP, user_id="u", session_id=session.id)
    assert got is not None
    assert [(e.id, e.author) for e in got.events] == [(foreign[0].id, "user"), (foreign[1].id, "model")]
    assert [e.content.parts[0].text for e in got.events if e.content and e.content.parts] == [
        "typed at the CLI",
        "an agent on another framework",
    ]
    await service.append_event(got, _text_event("user", "and on it goes"))  # the count includes them
    assert got._storage_update_marker == "3"


async def test_corrupt_adk_data_is_a_corrupt_session(service: RedisSessionService) -> None:
    session = await service.create_session(app_name=APP, user_id="u", state={"user:k": 1})
    sid = service.storage_id(APP, "u", session.id)
    await _store_call(service, "append", sid, AgentMessage(Role.USER, [], "bad", {"adk": "{not json"}))
    with pytest.raises(CorruptSession, match="its ADK data does not decode") as caught:
        await service.get_session(app_name=APP, user_id="u", session_id=session.id)
    assert caught.value.session_id == sid
    await _store_call(service, "set_metadata", user_record(APP, "u"), {"s:k": "{not json"})
    with pytest.raises(CorruptSession, match="a state value of the ADK record does not decode"):
        await service.get_user_state(app_name=APP, user_id="u")


async def test_markerless_session_retry_is_not_applied_twice(service: RedisSessionService) -> None:
    session = await service.create_session(app_name=APP, user_id="u")
    session._storage_update_marker = None  # a Session this service did not hand out: no fence
    event = _text_event("user", "once")
    await service.append_event(session, event)
    await service.append_event(session, event)
    assert session.events == [event]
    assert len(await _messages(service, session.id)) == 1


async def test_get_session_config(service: RedisSessionService) -> None:
    session = await service.create_session(app_name=APP, user_id="u")
    events = [_text_event("user", f"m{i}") for i in range(5)]
    for i, event in enumerate(events):
        event.timestamp = 1000.0 + i
        await service.append_event(session, event)

    async def get(**config: Any) -> list[Event]:
        got = await service.get_session(
            app_name=APP, user_id="u", session_id=session.id, config=GetSessionConfig(**config)
        )
        assert got is not None
        assert got.state == {}
        assert got.last_update_time == 1004.0
        return got.events

    assert await get() == events
    assert await get(num_recent_events=2) == events[3:]
    assert await get(num_recent_events=0) == []
    assert await get(num_recent_events=9) == events
    assert await get(after_timestamp=1002.0) == events[2:]
    assert await get(after_timestamp=1001.5, num_recent_events=1) == events[4:]
    assert await get(after_timestamp=2000.0) == []


async def test_equal_event_again_is_stored_once(service: RedisSessionService) -> None:
    session = await service.create_session(app_name=APP, user_id="u")
    event = _text_event("user", "once", **{"app:n": 1})
    await service.append_event(session, event)
    await service.append_event(session, event)  # a retry: nothing new
    assert len(session.events) == 1
    twin = event.model_copy(update={"content": types.Content(role="user", parts=[types.Part(text="b")])})
    await service.append_event(session, twin)  # same id, other event: kept, as ADK's in-memory does
    got = await service.get_session(app_name=APP, user_id="u", session_id=session.id)
    assert got is not None
    assert got.events == [event, twin]


async def test_a_failed_shared_write_is_completed_by_appending_again(
    service: RedisSessionService, monkeypatch: pytest.MonkeyPatch
) -> None:
    session = await service.create_session(app_name=APP, user_id="u")

    def down(*args: Any, **kwargs: Any) -> Any:
        raise StoreUnavailable("set_metadata", None, 3)

    async def adown(*args: Any, **kwargs: Any) -> Any:
        down()

    with monkeypatch.context() as patch:  # the event is stored, then Redis goes away
        patch.setattr(
            service.store, "set_metadata", adown if isinstance(service.store, AsyncSessionStore) else down
        )
        event = _text_event("user", "hi", own=1, **{"app:k": 1, "user:k": 2})
        with pytest.raises(StoreUnavailable):
            await service.append_event(session, event)
    assert session.events == []  # the caller's copy did not take an event that failed
    await service.append_event(session, event)  # the same event again: stored once, shared state done
    assert session.events == [event]
    got = await service.get_session(app_name=APP, user_id="u", session_id=session.id)
    assert got is not None
    assert got.events == [event]
    assert got.state == {"own": 1, "app:k": 1, "user:k": 2}


async def test_stale_writer_gets_a_typed_error_and_writes_nothing(service: RedisSessionService) -> None:
    session = await service.create_session(app_name=APP, user_id="u")
    first = await service.get_session(app_name=APP, user_id="u", session_id=session.id)
    second = await service.get_session(app_name=APP, user_id="u", session_id=session.id)
    assert first is not None
    assert second is not None
    await service.append_event(first, _text_event("user", "from worker 1", **{"app:x": 1}))
    late = _text_event("user", "from worker 2", **{"app:x": 2, "k": 2})
    with pytest.raises(StaleSession) as caught:
        await service.append_event(second, late)
    error = caught.value
    assert isinstance(error, StaleSessionError)
    assert isinstance(error, ConflictError)
    assert (error.expected, error.actual) == (0, 1)
    assert "get_session again" in str(error)
    assert "modified in storage" in str(error)  # the words of ADK's own message, which callers match
    assert repr(session.id) in str(error)
    assert second.events == []
    assert "k" not in second.state
    now = await service.get_session(app_name=APP, user_id="u", session_id=session.id)
    assert now is not None
    assert [e.content.parts[0].text for e in now.events if e.content and e.content.parts] == ["from worker 1"]
    assert now.state == {"app:x": 1}  # the refused event's app: key was not applied
    await service.append_event(now, late)  # a fresh copy appends
    assert len(now.events) == 2


async def test_bad_input_is_refused_with_typed_errors(service: RedisSessionService) -> None:
    for bad in ["", None, 7]:
        with pytest.raises(InvalidName, match="app_name"):
            await service.create_session(app_name=bad, user_id="u")  # type: ignore[arg-type]
    with pytest.raises(InvalidName, match="user_id") as caught:
        await service.get_session(app_name=APP, user_id="", session_id="s")
    assert isinstance(caught.value, SessionError)
    assert isinstance(caught.value, ValueError)
    ghost = await service.create_session(app_name=APP, user_id="u")
    await service.delete_session(app_name=APP, user_id="u", session_id=ghost.id)
    with pytest.raises(NoSuchSession) as missing:
        await service.append_event(ghost, _text_event("user", "hi"))
    assert isinstance(missing.value, SessionNotFoundError)
    assert repr(ghost.id) in str(missing.value)
    with pytest.raises(WrongType, match="Event") as wrong:
        await service.append_event(ghost, {"author": "user"})  # type: ignore[arg-type]
    assert isinstance(wrong.value, TypeError)
    with pytest.raises(WrongType, match="Session, got dict"):
        await service.append_event({}, _text_event("user", "hi"))  # type: ignore[arg-type]
    with pytest.raises(WrongType, match="SessionStore"):
        RedisSessionService(object())  # type: ignore[arg-type]


async def test_a_partial_event_is_not_stored(service: RedisSessionService) -> None:
    session = await service.create_session(app_name=APP, user_id="u")
    event = _text_event("model", "stream")
    event.partial = True
    await service.append_event(session, event)
    assert await _messages(service, session.id) == []


# --- Runner with a deterministic model, on two workers ---------------------------------------------


class ScriptedLlm(BaseLlm):
    """Calls ``get_weather`` when the newest user text asks for the weather, else answers
    ``answer <n>``; records the contents of every request."""

    seen: list[list[types.Content]] = Field(default_factory=list)

    async def generate_content_async(
        self, llm_request: LlmRequest, stream: bool = False
    ) -> AsyncGenerator[LlmResponse, None]:
        self.seen.append([c.model_copy(deep=True) for c in llm_request.contents])
        last = llm_request.contents[-1]
        parts = last.parts or []
        if any(p.function_response for p in parts) or "weather" not in (parts[0].text or ""):
            reply = types.Part(text=f"answer {len(self.seen)}")
        else:
            reply = types.Part(function_call=types.FunctionCall(name="get_weather", args={"city": "Oslo"}))
        yield LlmResponse(content=types.Content(role="model", parts=[reply]))


def get_weather(city: str, tool_context: ToolContext) -> str:
    """The weather in a city."""
    tool_context.state["user:last_city"] = city
    tool_context.state["temp:scratch"] = "never stored"
    return f"12 °C and rain in {city}"


async def _turn(runner: Runner, session_id: str, text: str) -> list[Event]:
    message = types.Content(role="user", parts=[types.Part(text=text)])
    return [e async for e in runner.run_async(user_id="u", session_id=session_id, new_message=message)]


async def test_runner_over_two_turns_on_two_workers(backend: Backend, front: str) -> None:
    stores: list[AnyStore] = []
    if front == "sync":
        stores = [SessionStore(backend.sync_client(), prefix=backend.prefix) for _ in range(2)]
    else:
        stores = [AsyncSessionStore(backend.async_client(), prefix=backend.prefix) for _ in range(2)]
    try:
        model = ScriptedLlm(model="scripted")
        agent = LlmAgent(
            name="weather", model=model, instruction="Be brief.", tools=[get_weather], output_key="last"
        )
        worker_1, worker_2 = (
            Runner(app_name=APP, agent=agent, session_service=RedisSessionService(s)) for s in stores
        )
        session = await worker_1.session_service.create_session(app_name=APP, user_id="u")
        first = await _turn(worker_1, session.id, "What's the weather in Oslo?")
        assert first[-1].content is not None
        assert first[-1].content.parts is not None
        assert first[-1].content.parts[0].text == "answer 2"  # the tool call, then the answer
        second = await _turn(worker_2, session.id, "Thanks! And tomorrow?")
        assert second[-1].content is not None
        assert second[-1].content.parts is not None
        assert second[-1].content.parts[0].text == "answer 3"
        texts = [p.text or "" for c in model.seen[-1] for p in c.parts or []]
        assert "What's the weather in Oslo?" in texts
        assert "answer 2" in texts
        got = await worker_1.session_service.get_session(app_name=APP, user_id="u", session_id=session.id)
        assert got is not None
        assert len(got.events) == 6  # two user messages, then what the runner yielded
        assert [e.id for e in got.events if e.author != "user"] == [e.id for e in [*first, *second]]
        assert got.state == {"user:last_city": "Oslo", "last": "answer 3"}  # no temp:
        assert await worker_2.session_service.get_user_state(app_name=APP, user_id="u") == {
            "last_city": "Oslo"
        }
        service = worker_2.session_service
        assert isinstance(service, RedisSessionService)
        stored = await _messages(service, session.id)
        assert [m.role for m in stored] == [
            Role.USER, Role.ASSISTANT, Role.TOOL, Role.ASSISTANT, Role.USER, Role.ASSISTANT
        ]  # fmt: skip
    finally:
        for store in stores:
            if isinstance(store, AsyncSessionStore):
                await store.client.aclose()
            else:
                store.client.close()


# --- several processes, durable mode, the import guard ---------------------------------------------


@pytest.mark.real
def test_appends_from_several_processes_lose_and_interleave_nothing(redis_url: str) -> None:
    prefix, count, procs_n = "rs-t-" + uuid.uuid4().hex[:12], 25, 3
    store = SessionStore.from_url(redis_url, prefix=prefix)
    service = RedisSessionService(store)
    try:
        session = _run(service.create_session(app_name=APP, user_id="u"))
        context = multiprocessing.get_context("spawn")
        barrier, out = context.Barrier(procs_n), context.Queue()
        args = (redis_url, prefix, APP, "u", session.id, count, barrier, out)
        procs = [context.Process(target=workers.append_events, args=(*args, w)) for w in range(procs_n)]
        for proc in procs:
            proc.start()
        # each worker reports how many of its appends were refused as stale (and redone): how many
        # depends on scheduling, so it is only printed
        print("stale appends redone:", sum(out.get(timeout=90) for _ in procs))
        for proc in procs:
            proc.join(timeout=30)
            assert proc.exitcode == 0
        got = _run(service.get_session(app_name=APP, user_id="u", session_id=session.id))
        assert got is not None
        texts = [e.content.parts[0].text for e in got.events if e.content and e.content.parts]
        assert len(texts) == procs_n * count == len(set(texts))  # none lost, none twice
        for w in range(procs_n):  # each worker's events in its order, each one whole
            assert [t for t in texts if t.startswith(f"w{w} ")] == [f"w{w} {i}" for i in range(count)]
        assert got.state == {f"w{w}": count - 1 for w in range(procs_n)}
        assert got._storage_update_marker == str(procs_n * count)
    finally:
        _run(service.delete_session(app_name=APP, user_id="u", session_id=session.id))
        store.close()


@pytest.mark.real
@pytest.mark.parametrize(
    "backend", [pytest.param("real"), pytest.param("cluster", marks=pytest.mark.cluster)], indirect=True
)
def test_durable_sessions_come_back_from_the_backing_store(backend: Backend, tmp_path: Path) -> None:
    opener = SessionStore.from_cluster if backend.cluster else SessionStore.from_url
    assert backend.url is not None
    with SQLiteAdapter(tmp_path / "record.db") as database:
        with opener(backend.url, prefix=backend.prefix, backing=database) as store:
            service = RedisSessionService(store)
            session = _run(service.create_session(app_name=APP, user_id="u", state={"app:a": 1, "user:b": 2}))
            for i in range(3):
                _run(service.append_event(session, _text_event("user", f"m{i}", own=i)))
            before = _run(service.get_session(app_name=APP, user_id="u", session_id=session.id))
            store.flush(30)
        for key in backend.stored_keys():  # Redis loses everything
            backend.raw.delete(key)
        assert not backend.stored_keys()
        with opener(backend.url, prefix=backend.prefix, backing=database) as store:
            service = RedisSessionService(store)
            after = _run(service.get_session(app_name=APP, user_id="u", session_id=session.id))
            assert after == before
            assert after is not None
            assert after.state == {"app:a": 1, "user:b": 2, "own": 2}
            assert [s.id for s in _run(service.list_sessions(app_name=APP)).sessions] == [session.id]
            _run(service.append_event(after, _text_event("user", "after the loss")))
            assert len(after.events) == 4


def test_missing_adk_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "google.adk", None)
    monkeypatch.setitem(sys.modules, "google.adk.events.event", None)
    monkeypatch.delitem(sys.modules, "redis_sessions.integrations.adk")
    with pytest.raises(ImportError, match=r"pip install 'redis-sessions\[adk\]'"):
        import redis_sessions.integrations.adk  # noqa: F401


def test_importing_redis_sessions_imports_no_adk() -> None:
    code = "import sys, redis_sessions, redis_sessions.integrations\nassert 'google.adk' not in sys.modules\n"
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode == 0, done.stderr


# --- helpers ----------------------------------------------------------------------------------------


def _run(coroutine: Any) -> Any:
    return asyncio.run(coroutine)


async def _store_call(service: RedisSessionService, method: str, *args: Any) -> Any:
    store = service.store
    if isinstance(store, AsyncSessionStore):
        return await getattr(store, method)(*args)
    return getattr(store, method)(*args)


async def _messages(service: RedisSessionService, session_id: str, user: str = "u") -> list[Any]:
    store, sid = service.store, service.storage_id(APP, user, session_id)
    if isinstance(store, AsyncSessionStore):
        return list(await store.messages(sid))
    return list(store.messages(sid))
