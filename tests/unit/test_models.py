"""The data model: messages, content blocks, and the persisted session state (the seed's first test)."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import msgspec
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from redis_sessions import (
    SCHEMA_VERSION,
    AgentMessage,
    ContentBlock,
    Image,
    Role,
    SchemaVersionError,
    Session,
    SessionState,
    Text,
    Thinking,
    ToolResult,
    ToolUse,
)

SID = uuid.UUID("3b2f1c4d-5e6f-4a7b-8c9d-0e1f2a3b4c5d")
# msgspec's decode functions are overloaded on ``type=``: typed here as what the tests call.
ENCODINGS: dict[str, tuple[Callable[[Any], bytes], Callable[..., Any]]] = {
    "json": (msgspec.json.encode, msgspec.json.decode),
    "msgpack": (msgspec.msgpack.encode, msgspec.msgpack.decode),
}


def full_state() -> SessionState:
    """A state with every field set to something other than its default."""
    return SessionState(
        schema_version=SCHEMA_VERSION,
        model="claude-test",
        max_turns=12,
        system_message="You are terse.",
        messages=[
            AgentMessage.system("rules", id="m0"),
            AgentMessage.user("hi", id="m1"),
            AgentMessage.assistant(
                [Thinking("hmm"), Text("let me check"), ToolUse("tu1", "lookup", {"k": [1, "two", 3.5]})],
                id="m2",
            ),
            AgentMessage.tool_result("tu1", [Text("ok"), Image("image/jpeg", b"\x00\x01\xfe")], id="m3"),
            AgentMessage.tool_result("tu2", "failed", is_error=True, id="m4"),
        ],
        metadata={"user": "ana", "tenant": "äcme", "empty": ""},
        created_at=datetime(2024, 5, 1, 12, 0, 0, 123456, tzinfo=UTC),
        updated_at=datetime(2024, 5, 1, 12, 5, 0, 654321, tzinfo=UTC),
        seq=7,
        ttl_ms=3_600_000,
        max_messages=500,
        max_session_bytes=1_000_000,
        summary=AgentMessage.system("ana said hi", id="s1"),
        summary_seq=2,
        message_tokens=[3, 1, None, 9, 4],
        summary_tokens=5,
    )


@pytest.mark.parametrize("encoding", sorted(ENCODINGS))
def test_session_state_round_trip_every_field(encoding: str) -> None:
    encode, decode = ENCODINGS[encoding]
    state = full_state()
    assert decode(encode(state), type=SessionState) == state


def test_every_field_of_the_state_is_set_by_full_state() -> None:
    # Guards the round-trip test: a new field must be added to full_state() too.
    default, full = SessionState(), full_state()
    unset = [
        f
        for f in SessionState.__struct_fields__
        if f != "schema_version" and getattr(full, f) == getattr(default, f)
    ]
    assert unset == []


@pytest.mark.parametrize("encoding", sorted(ENCODINGS))
def test_persisted_state_always_names_its_schema_version(encoding: str) -> None:
    # A reader decides whether it can read a document by its schema_version; if the writer leaves
    # the field out, a reader of another version silently assumes its own (and the seed, which
    # requires the field, cannot read it at all).
    encode, decode = ENCODINGS[encoding]
    assert decode(encode(full_state()))["schema_version"] == SCHEMA_VERSION
    assert decode(encode(SessionState()))["schema_version"] == SCHEMA_VERSION


def test_seed_json_document_decodes() -> None:
    seed = b"""{
        "schema_version": 1,
        "model": "m",
        "max_turns": 3,
        "system_message": null,
        "messages": [{"id": "x", "role": "user", "content": [{"type": "text", "text": "hello"}]}],
        "metadata": {"k": "v"}
    }"""
    state = msgspec.json.decode(seed, type=SessionState)
    assert state.messages == [AgentMessage.user("hello", id="x")]
    assert (state.schema_version, state.model, state.max_turns) == (1, "m", 3)
    assert state.system_message is None
    assert state.metadata == {"k": "v"}
    session = Session.from_state(SID, state)
    assert session.seq == 1, "without a stored seq, every message counts"


def full_session() -> Session:
    state = full_state()
    return Session(
        id=SID,
        model=state.model,
        max_turns=state.max_turns,
        system_message=state.system_message,
        messages=state.messages,
        metadata=state.metadata,
        created_at=state.created_at,
        updated_at=state.updated_at,
        seq=state.seq or 0,
    )


def test_session_to_state_and_back_is_lossless() -> None:
    session = full_session()
    assert Session.from_state(SID, session.to_state()) == session


def test_state_to_session_and_back_is_lossless() -> None:
    state = full_state()
    # but the token counts: a store's bookkeeping (a record keeps them), not the session's
    uncounted = msgspec.structs.replace(state, message_tokens=None, summary_tokens=None)
    assert Session.from_state(SID, state).to_state() == uncounted


@pytest.mark.parametrize("encoding", sorted(ENCODINGS))
def test_session_through_encoded_state_is_lossless(encoding: str) -> None:
    encode, decode = ENCODINGS[encoding]
    session = full_session()
    assert Session.from_state(SID, decode(encode(session.to_state()), type=SessionState)) == session


def test_to_state_copies_instead_of_sharing() -> None:
    session = full_session()
    state = session.to_state()
    state.messages.append(AgentMessage.user("later"))
    state.metadata["new"] = "x"
    assert len(session.messages) == 5
    assert "new" not in session.metadata


def test_system_message_none_and_empty_are_different() -> None:
    for value in (None, ""):
        state = SessionState(system_message=value)
        assert msgspec.json.decode(msgspec.json.encode(state), type=SessionState).system_message == value
        assert Session.from_state(SID, state).to_state().system_message == value


def test_datetimes_keep_the_instant_across_time_zones() -> None:
    here = timezone(timedelta(hours=5, minutes=30))
    state = SessionState(created_at=datetime(2024, 1, 1, 10, 0, tzinfo=here))
    for encode, decode in ENCODINGS.values():
        back = decode(encode(state), type=SessionState).created_at
        assert back == state.created_at
        assert back is not None
        assert back.tzinfo is not None


@pytest.mark.parametrize("version", [0, 2, 99])
def test_from_state_refuses_another_schema_version(version: int) -> None:
    with pytest.raises(SchemaVersionError) as info:
        Session.from_state(SID, SessionState(schema_version=version))
    assert str(info.value) == f"unsupported session schema version {version} for `{SID}` (expected 1)"
    assert (info.value.found, info.value.expected, info.value.session_id) == (version, 1, SID)


def test_role_is_a_string_enum() -> None:
    assert [r.value for r in Role] == ["user", "assistant", "system", "tool"]
    assert Role.USER == "user"  # type: ignore[comparison-overlap]  # a StrEnum equals its value: mypy thinks not
    assert Role("tool") is Role.TOOL


def test_message_json_shape_matches_the_issue() -> None:
    message = AgentMessage.user("hello", id="abc")
    assert msgspec.json.decode(msgspec.json.encode(message)) == {
        "id": "abc",
        "role": "user",
        "content": [{"type": "text", "text": "hello"}],
    }


def test_content_blocks_are_tagged_by_type() -> None:
    blocks = [
        Text("t"),
        ToolUse("i", "n", {}),
        ToolResult("i", "r"),
        Image("image/png", b"x"),
        Thinking("th"),
    ]
    tags = [msgspec.json.decode(msgspec.json.encode(b))["type"] for b in blocks]
    assert tags == ["text", "tool_use", "tool_result", "image", "thinking"]


def test_image_bytes_are_base64_in_json() -> None:
    encoded = msgspec.json.decode(msgspec.json.encode(Image("image/png", b"\x00\xff")))
    assert encoded == {"type": "image", "media_type": "image/png", "data": "AP8="}


def test_default_message_ids_are_fresh_hex() -> None:
    made = {AgentMessage.user("x").id for _ in range(1000)}
    assert len(made) == 1000
    assert all(len(i) == 32 and int(i, 16) >= 0 for i in made)


def test_constructors() -> None:
    assert AgentMessage.user("u").role is Role.USER
    assert AgentMessage.system("s").content == [Text("s")]
    assert AgentMessage.assistant("a").role is Role.ASSISTANT
    blocks: list[ContentBlock] = [Text("a"), ToolUse("1", "f", {"x": 1})]
    assert AgentMessage.assistant(blocks).content == blocks
    tool = AgentMessage.tool_result("1", "out", is_error=True, id="t")
    assert tool == AgentMessage(Role.TOOL, [ToolResult("1", "out", True)], "t")
    assert AgentMessage.user("u", id="given").id == "given"


def test_assistant_copies_the_block_list() -> None:
    blocks: list[Text | ToolUse] = [Text("a")]
    message = AgentMessage.assistant(list(blocks))
    blocks.append(Text("b"))
    assert message.content == [Text("a")]


def test_text_joins_text_blocks_only() -> None:
    message = AgentMessage.assistant([Text("a"), Thinking("no"), ToolUse("1", "f", {}), Text("b")])
    assert message.text == "ab"
    assert AgentMessage.tool_result("1", "x").text == ""


def test_messages_and_blocks_are_frozen() -> None:
    message = AgentMessage.user("x")
    with pytest.raises(AttributeError):
        message.id = "other"  # type: ignore[misc]
    with pytest.raises(AttributeError):
        Text("a").text = "b"  # type: ignore[misc]


texts = st.text(max_size=20)
blocks = st.one_of(
    st.builds(Text, texts),
    st.builds(Thinking, texts),
    st.builds(
        ToolUse,
        texts,
        texts,
        st.dictionaries(
            texts, st.one_of(st.none(), st.booleans(), st.integers(-(2**63), 2**63 - 1), texts), max_size=3
        ),
    ),
    st.builds(
        ToolResult,
        texts,
        st.one_of(texts, st.lists(st.builds(Text, texts), max_size=2)),
        st.booleans(),
    ),
    st.builds(Image, texts, st.binary(max_size=20)),
)
messages = st.builds(AgentMessage, st.sampled_from(Role), st.lists(blocks, max_size=4), st.text(min_size=1))


@settings(max_examples=200, deadline=None)
@given(messages)
def test_any_message_round_trips_both_encodings(message: AgentMessage) -> None:
    for encode, decode in ENCODINGS.values():
        assert decode(encode(message), type=AgentMessage) == message
