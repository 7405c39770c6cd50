"""Bad input is refused before anything is sent, and nothing is stored."""

from __future__ import annotations

import re
import uuid
from collections.abc import Callable
from typing import Any

import pytest

from redis_sessions import (
    AgentMessage,
    AsyncSessionStore,
    InvalidMessage,
    InvalidSessionId,
    MessageTooLarge,
    Role,
    SessionStore,
    Text,
    ToolResult,
    ToolUse,
)
from redis_sessions.codec import CODECS
from tests.conftest import MakeStore, Store
from tests.support import Backend, expect_no_change, ids, messages_of

SID = uuid.UUID("5d6c7b8a-9f0e-4d1c-b2a3-948576a6b7c8")
BAD_IDS = [
    "*",
    "a}b",
    "\n",
    "x" * 10000,
    123,
    b"bytes",
    f"{{{SID}}}",
    f"{SID}\n",
    f"{SID}*",
    "",
    SID.hex,
]


def operations(store: Store, sid: Any) -> dict[str, Callable[[], object]]:
    """Every method that takes a session id, called with ``sid``."""
    message = AgentMessage.user("hi")
    return {
        "create": lambda: store.create(session_id=sid),
        "append": lambda: store.append(sid, message),
        "extend": lambda: store.extend(sid, [message]),
        "messages": lambda: store.messages(sid),
        "load": lambda: store.load(sid),
        "exists": lambda: store.exists(sid),
        "delete": lambda: store.delete(sid),
        "set_metadata": lambda: store.set_metadata(sid, {"k": "v"}),
        "context": lambda: store.context(sid, 100),
        "summarize": lambda: store.summarize(sid, "s", through_seq=1),
        "compact": lambda: store.compact(sid, str, over_tokens=10, keep_tokens=5),
        "fork": lambda: store.fork(sid),
    }


@pytest.mark.parametrize("bad", [*BAD_IDS, None], ids=lambda v: repr(v)[:24])
def test_bad_session_ids_are_refused_and_nothing_is_created(store: Store, backend: Backend, bad: Any) -> None:
    store.create(session_id=SID)
    unchanged = expect_no_change(backend)
    for name, operation in operations(store, bad).items():
        if name == "create" and bad is None:
            continue  # create(session_id=None) means "make one up"
        with pytest.raises(InvalidSessionId) as info:
            operation()
        assert isinstance(info.value, ValueError), name
        assert info.value.value is bad
    unchanged()


def test_uppercase_id_is_the_same_session(store: Store) -> None:
    sid = store.create()
    store.append(str(sid).upper(), AgentMessage.user("x", id="x"))
    assert ids(store.messages(sid)) == ["x"]
    assert store.load(str(sid).upper()).id == sid  # type: ignore[union-attr]


NOT_MESSAGES: dict[str, Any] = {
    "str": "hello",
    "None": None,
    "dict": {"role": "user", "content": [{"type": "text", "text": "hi"}]},
    "block": Text("hi"),
    "content-str": AgentMessage(role="user", content="hi"),  # type: ignore[arg-type]
    "content-dict": AgentMessage(Role.USER, [{"role": "not a block"}]),  # type: ignore[list-item]
    "text-int": AgentMessage(Role.USER, [Text(42)]),  # type: ignore[arg-type]
    "role": AgentMessage("wizard", [Text("x")]),  # type: ignore[arg-type]
    "id-empty": AgentMessage(Role.USER, [Text("x")], id=""),
    "id-None": AgentMessage(Role.USER, [Text("x")], id=None),  # type: ignore[arg-type]
    "nested-block": AgentMessage(Role.TOOL, [ToolResult("t", [ToolUse("a", "b", {})])]),  # type: ignore[list-item]
    "tool-object": AgentMessage(Role.ASSISTANT, [ToolUse("a", "b", {"o": object()})]),
}


@pytest.mark.parametrize("codec", ["msgpack", "json"])
@pytest.mark.parametrize("bad", NOT_MESSAGES.values(), ids=NOT_MESSAGES.keys())
def test_bad_messages_are_refused_and_nothing_is_stored(
    make_store: MakeStore, backend: Backend, codec: str, bad: Any
) -> None:
    store = make_store(codec=codec)
    sid = store.create()
    store.append(sid, AgentMessage.user("before", id="before"))
    unchanged = expect_no_change(backend)
    with pytest.raises(InvalidMessage) as info:
        store.append(sid, bad)
    assert info.value.session_id == sid
    assert str(sid) in str(info.value)
    assert isinstance(info.value, TypeError)
    with pytest.raises(InvalidMessage):
        store.extend(sid, [*messages_of(2), bad, *messages_of(2, "after")])
    unchanged()


def test_int_too_big_for_msgpack_is_an_invalid_message(make_store: MakeStore, backend: Backend) -> None:
    store = make_store(codec="msgpack")
    sid = store.create()
    unchanged = expect_no_change(backend)
    with pytest.raises(InvalidMessage):
        store.append(sid, AgentMessage.assistant([ToolUse("a", "b", {"n": 2**64})]))
    unchanged()


def test_json_stores_big_ints_exactly(make_store: MakeStore) -> None:
    store = make_store(codec="json")
    sid = store.create()
    message = AgentMessage.assistant([ToolUse("a", "b", {"n": 2**64, "m": -(2**70)})])
    store.append(sid, message)
    assert store.messages(sid) == [message]


def test_dict_lookalike_block_reads_back_as_a_real_block(store: Store) -> None:
    # A dict shaped like a content block encodes to the same bytes as the block: storing it is
    # harmless, and it reads back as the typed block.
    sid = store.create()
    lookalike = AgentMessage(Role.USER, [{"type": "text", "text": "hi"}], id="d")  # type: ignore[list-item]
    store.append(sid, lookalike)
    assert store.messages(sid) == [AgentMessage.user("hi", id="d")]


def test_oversize_message_is_refused_and_nothing_is_stored(make_store: MakeStore, backend: Backend) -> None:
    store = make_store(max_message_bytes=200)
    sid = store.create()
    fits = AgentMessage.user("x" * 100)
    assert store.append(sid, fits) == 1
    unchanged = expect_no_change(backend)
    big = AgentMessage.user("x" * 1000, id="big")
    with pytest.raises(MessageTooLarge) as info:
        store.append(sid, big)
    assert (info.value.message_id, info.value.limit, info.value.session_id) == ("big", 200, sid)
    assert info.value.size > 1000
    assert isinstance(info.value, ValueError)
    with pytest.raises(MessageTooLarge):
        store.extend(sid, [*messages_of(3), big])
    unchanged()


def test_message_at_exactly_the_limit_is_stored(make_store: MakeStore, backend: Backend) -> None:
    message = AgentMessage.user("y" * 300, id="edge")
    size = len(CODECS["msgpack"].encode(message))
    sid = make_store().create()
    with pytest.raises(MessageTooLarge):
        make_store(max_message_bytes=size - 1).append(sid, message)
    assert make_store(max_message_bytes=size).append(sid, message) == 1


def test_large_image_is_stored_under_the_default_limit(store: Store) -> None:
    from redis_sessions import Image

    sid = store.create()
    picture = AgentMessage.tool_result("t", [Image("image/png", bytes(range(256)) * 8192)])  # 2 MiB
    assert store.append(sid, picture) == 1
    assert store.messages(sid) == [picture]


@pytest.mark.parametrize(
    "call",
    [
        lambda s, sid: s.messages(sid, "0"),
        lambda s, sid: s.messages(sid, 0, 1.5),
        lambda s, sid: s.append(sid, AgentMessage.user("x"), expected_seq=-1),
        lambda s, sid: s.append(sid, AgentMessage.user("x"), expected_seq="1"),
        lambda s, sid: s.create(model=5),
        lambda s, sid: s.create(max_turns=-1),
        lambda s, sid: s.create(system_message=b"bytes"),
        lambda s, sid: s.create(metadata={"k": 1}),
        lambda s, sid: s.set_metadata(sid, {"k": 1}),
        lambda s, sid: s.set_metadata(sid, [("k", "v")]),
    ],
)
def test_wrong_argument_types(store: Store, backend: Backend, call: Callable[[Store, Any], object]) -> None:
    sid = store.create()
    unchanged = expect_no_change(backend)
    with pytest.raises(TypeError):
        call(store, sid)
    unchanged()


@pytest.mark.parametrize(
    "options",
    [
        {"model": 5},
        {"max_turns": -1},
        {"system_message": b"x"},
        {"metadata": {"k": 1}},
        {"metadata": {"": "v"}},
    ],
    ids=repr,
)
def test_a_failed_create_names_the_call_not_an_id_the_caller_never_saw(
    store: Store, options: dict[str, Any]
) -> None:
    with pytest.raises(TypeError) as generated:
        store.create(**options)
    assert str(generated.value).startswith("create(): ")
    assert not re.search(r"[0-9a-f]{8}-[0-9a-f]{4}-", str(generated.value))
    with pytest.raises(TypeError) as chosen:  # an id the caller gave is still named
        store.create(**options, session_id=SID)
    assert str(chosen.value).startswith(f"session `{SID}`: ")
    assert str(chosen.value).removeprefix(f"session `{SID}`: ") == str(generated.value).removeprefix(
        "create(): "
    )


@pytest.mark.real
def test_from_url_refuses_decode_responses(redis_url: str) -> None:
    with pytest.raises(ValueError, match="decode_responses"):
        SessionStore.from_url(redis_url, decode_responses=True)
    with pytest.raises(ValueError, match="decode_responses"):
        AsyncSessionStore.from_url(redis_url, decode_responses=True)
