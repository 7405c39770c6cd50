"""The sans-IO core: validation, keys and arguments of each call, slicing, reply parsing."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from datetime import timedelta
from typing import Any

import fakeredis
import pytest
import redis.exceptions
from hypothesis import given, settings
from hypothesis import strategies as st

from redis_sessions import (
    AgentMessage,
    CodecMismatch,
    ConflictError,
    CorruptSession,
    InvalidMessage,
    InvalidSessionId,
    MessageTooLarge,
    SchemaVersionError,
    SessionExists,
    SessionNotFound,
    StoreError,
    Text,
    ToolUse,
)
from redis_sessions import _admin as admin
from redis_sessions import _read as read
from redis_sessions import _write as write
from redis_sessions._calls import Transaction
from redis_sessions._core import DEFAULT_MAX_MESSAGE_BYTES, StoreCore, check_client, ttl_ms
from redis_sessions._read import load, messages
from redis_sessions._scripts import SCRIPTS
from redis_sessions.keys import (
    compact_key,
    dirty_key,
    live_keys,
    reply_keys,
    session_keys,
    tokens_key,
    tombstone_key,
    tools_key,
)

SID = uuid.UUID("9e8d7c6b-5a49-4382-a1b0-c9d8e7f6a5b4")


def core(**options: Any) -> StoreCore:
    settings_: dict[str, Any] = {
        "prefix": "rs",
        "ttl": None,
        "max_messages": None,
        "codec": "msgpack",
        "max_message_bytes": DEFAULT_MAX_MESSAGE_BYTES,
    }
    return StoreCore(**{**settings_, **options})


# -- ttl ------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("ttl", "ms"),
    [
        (None, 0),
        (1, 1000),
        (1.5, 1500),
        (0.0001, 1),
        (timedelta(minutes=2), 120_000),
        (timedelta(milliseconds=1), 1),
        (86400 * 365, 31_536_000_000),
    ],
)
def test_ttl_ms(ttl: float | timedelta | None, ms: int) -> None:
    assert ttl_ms(ttl) == ms


@pytest.mark.parametrize("ttl", [0, -1, 0.0, timedelta(0), timedelta(seconds=-5)])
def test_ttl_must_be_positive(ttl: float | timedelta) -> None:
    with pytest.raises(ValueError, match="ttl"):
        ttl_ms(ttl)


# -- configuration --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "options",
    [
        {"codec": "pickle"},
        {"codec": "JSON"},
        {"max_messages": 0},
        {"max_messages": -3},
        {"max_messages": 2.5},
        {"prefix": "a*"},
        {"prefix": ""},
        {"ttl": 0},
    ],
    ids=repr,
)
def test_bad_configuration_is_refused(options: dict[str, Any]) -> None:
    with pytest.raises(ValueError, match=next(iter(options))):
        core(**options)


def test_configuration_is_kept() -> None:
    c = core(prefix="app", ttl=timedelta(seconds=30), max_messages=50, codec="json", max_message_bytes=99)
    assert (c.prefix, c.ttl_ms, c.max_messages, c.codec.name, c.max_message_bytes) == (
        "app",
        30_000,
        50,
        "json",
        99,
    )
    assert core().max_messages == 0, "0 tells the script 'unbounded'"


def test_scripts_are_read_from_lua_files_with_headers() -> None:
    assert set(SCRIPTS) == {
        "create",
        "append",
        "read_since",
        "set_metadata",
        "delete",
        "read_after",
        "lease",
        "restore",
        "sync_read",
        "sync_mark",
        "pop",
        "rebind",
        "dirty",
        "sync_lease",
        "stream_write",
        "stream_abort",
        "tool_call",
        "context",
        "summarize",
        "compact",
        "fork_read",
        "fork",
        "info",
        "rekey",
        "tenant",
    }
    for source in SCRIPTS.values():
        assert "-- KEYS[1]" in source
        assert "ARGV[1]" in source or "ARGV" not in source.split("\n", 5)[-1]


def test_check_client_refuses_decoded_responses() -> None:
    with pytest.raises(ValueError, match="decode_responses"):
        check_client(fakeredis.FakeRedis(decode_responses=True))
    check_client(fakeredis.FakeRedis())


# -- calls ----------------------------------------------------------------------------------------


def test_create_call() -> None:
    call = write.create(core(ttl=5, max_messages=7), "m", 3, "sys", {"k": "v"}, SID)
    assert (call.op, call.sid, call.script) == ("create", SID, "create")
    assert call.keys == (*session_keys("rs", SID), dirty_key("rs", SID, False), tokens_key("rs", SID))
    version, codec, token, ttl, max_messages, *fields = call.args
    assert (version, codec, ttl, max_messages) == ("1", "msgpack", 5000, 7)
    assert len(token) == 32
    assert fields == ["model", "m", "max_turns", 3, "system_message", "sys", "m:k", "v"]
    assert call.parse([0]) == SID


def test_create_without_id_makes_a_fresh_uuid4() -> None:
    made = {write.create(core(), "", 0, None, None, None).sid for _ in range(50)}
    assert len(made) == 50
    assert all(isinstance(s, uuid.UUID) and s.version == 4 for s in made)


def test_create_tokens_differ_per_call() -> None:
    c = core()
    assert write.create(c, "", 0, None, None, SID).args[2] != write.create(c, "", 0, None, None, SID).args[2]


@pytest.mark.parametrize(
    ("model", "max_turns", "system", "metadata"),
    [
        (1, 0, None, None),
        ("m", -1, None, None),
        ("m", "3", None, None),
        ("m", 0, 5, None),
        ("m", 0, None, {"k": 1}),
        ("m", 0, None, {"": "v"}),
        ("m", 0, None, {1: "v"}),
    ],
)
def test_create_validates_before_any_io(model: Any, max_turns: Any, system: Any, metadata: Any) -> None:
    with pytest.raises(TypeError) as info:
        write.create(core(), model, max_turns, system, metadata, SID)
    assert str(SID) in str(info.value)


def test_extend_call_layout() -> None:
    c = core(ttl=1, max_messages=10)
    first, second = AgentMessage.user("a", id="i1"), AgentMessage.user("b", id="i2")
    call = write.extend(c, str(SID), [first, second], 4)
    assert (call.op, call.sid, call.script) == ("append", SID, "append")
    assert call.keys == (
        *session_keys("rs", SID),
        *live_keys("rs", SID),
        dirty_key("rs", SID, False),
        tokens_key("rs", SID),
    )
    encoded = (c.encode(SID, first), c.encode(SID, second))
    assert call.args == ("1", "msgpack", "4", "", "8,8", "i1", encoded[0], "i2", encoded[1])  # counts
    assert write.extend(core(), SID, [], None).args == ("1", "msgpack", "", "", "")
    assert write.extend(core(), SID, [], None, fence=7).args == ("1", "msgpack", "", 7, "")


@pytest.mark.parametrize("counted", [-1, 1.5, "3", None])
def test_a_token_counter_must_give_an_int(counted: Any) -> None:
    with pytest.raises(TypeError, match="token_counter returned"):
        write.extend(core(token_counter=lambda m: counted), SID, [AgentMessage.user("x")], None)


@pytest.mark.parametrize("expected", [-1, "3", 1.0])
def test_expected_seq_must_be_a_non_negative_int(expected: Any) -> None:
    with pytest.raises(TypeError, match="expected_seq"):
        write.extend(core(), SID, [AgentMessage.user("x")], expected)


@pytest.mark.parametrize("sid", ["*", "a}b", "\n", None, 123, b"x", f"{{{SID}}}"], ids=repr)
def test_every_operation_validates_the_id_first(sid: Any) -> None:
    c = core()
    message = AgentMessage.user("x")
    operations: list[Callable[[], object]] = [
        lambda: write.extend(c, sid, [message], None),
        lambda: messages(c, sid, 0, None),
        lambda: load(c, sid),
        lambda: read.exists(c, sid),
        lambda: write.delete(c, sid),
        lambda: write.set_metadata(c, sid, {"a": "b"}),
    ]
    for operation in operations:
        with pytest.raises(InvalidSessionId):
            operation()
    if sid is not None:
        with pytest.raises(InvalidSessionId):
            write.create(c, "", 0, None, None, sid)


def test_set_metadata_call_layout() -> None:
    call = write.set_metadata(core(ttl=2), SID, {"a": "1", "gone": None, "b": "2"})
    assert call.args == ("1", 2, "m:a", "1", "m:b", "2", "m:gone")


@pytest.mark.parametrize("updates", [{"a": 1}, {"": "x"}, {"": None}, {3: "x"}, [("a", "b")]], ids=repr)
def test_set_metadata_validates(updates: Any) -> None:
    with pytest.raises(TypeError):
        write.set_metadata(core(), SID, updates)


def test_delete_and_exists_calls() -> None:
    keys = session_keys("rs", SID)
    delete = write.delete(core(), SID)
    assert delete.script == "delete"
    assert delete.keys == (
        *keys,
        *live_keys("rs", SID),
        dirty_key("rs", SID, False),
        tombstone_key("rs", SID),
        *reply_keys("rs", SID)[:2],
        tools_key("rs", SID),
        tokens_key("rs", SID),
        compact_key("rs", SID),
    )
    assert (delete.parse(3), delete.parse(0)) == (True, False)
    exists = read.exists(core(), SID)
    assert exists.args == ("EXISTS", keys.meta)
    assert (exists.parse(1), exists.parse(0)) == (True, False)


def test_scan_call() -> None:
    call = admin.scan(core(prefix="app"), 17)
    assert call.args[:4] == ("SCAN", 17, "MATCH", "app:{*}:meta")
    meta = session_keys("app", SID).meta.encode()
    assert call.parse([b"0", [meta]]) == (0, [SID], [meta])  # the ids, and the keys info.lua reads


# -- encoding -------------------------------------------------------------------------------------

NOT_MESSAGES = [
    "hi",
    {"role": "user", "content": []},
    None,
    Text("hi"),
    AgentMessage(role="user", content="hi"),  # type: ignore[arg-type]
    AgentMessage(role="robot", content=[]),  # type: ignore[arg-type]
    AgentMessage("user", [{"not": "a block"}]),  # type: ignore[arg-type, list-item]
    AgentMessage("user", [Text(5)]),  # type: ignore[arg-type]
    AgentMessage("user", [], id=""),  # type: ignore[arg-type]
    AgentMessage("user", [], id=7),  # type: ignore[arg-type]
    AgentMessage.assistant([AgentMessage.user("nested")]),  # type: ignore[list-item]
]


@pytest.mark.parametrize("codec", ["msgpack", "json"])
@pytest.mark.parametrize("message", NOT_MESSAGES, ids=lambda m: repr(m)[:40])
def test_encode_refuses_what_would_not_decode(codec: str, message: Any) -> None:
    with pytest.raises(InvalidMessage) as info:
        core(codec=codec).encode(SID, message)
    assert str(SID) in str(info.value)
    assert isinstance(info.value, TypeError)


def test_encode_refuses_unencodable_tool_input() -> None:
    message = AgentMessage.assistant([ToolUse("id", "name", {"x": object()})])
    with pytest.raises(InvalidMessage):
        core().encode(SID, message)


@pytest.mark.parametrize("codec", ["msgpack", "json"])
def test_encode_refuses_ints_the_codec_cannot_hold(codec: str) -> None:
    # MessagePack holds ints in [-2**63, 2**64): a bigger one must be an InvalidMessage like any
    # other unencodable field, not msgspec's raw OverflowError.
    message = AgentMessage.assistant([ToolUse("id", "name", {"n": 2**64})])
    c = core(codec=codec)
    try:
        data = c.encode(SID, message)
    except InvalidMessage:
        return
    assert c.codec.decode(SID, [data]) == [message], "if accepted, it must read back as given"


def test_encode_refuses_a_subclass() -> None:
    class Mine(AgentMessage, frozen=True, gc=False):
        pass

    with pytest.raises(InvalidMessage):
        core().encode(SID, Mine("user", [Text("x")]))  # type: ignore[arg-type]


def test_message_size_limit() -> None:
    message = AgentMessage.user("x" * 100, id="big")
    size = len(core().encode(SID, message))
    assert core(max_message_bytes=size).encode(SID, message)
    with pytest.raises(MessageTooLarge) as info:
        core(max_message_bytes=size - 1).encode(SID, message)
    assert (info.value.size, info.value.limit, info.value.message_id) == (size, size - 1, "big")


def test_default_size_limit_is_8_mib() -> None:
    assert DEFAULT_MAX_MESSAGE_BYTES == 8 * 1024 * 1024


# -- replies --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("reply", "error"),
    [
        ([1], SessionNotFound),
        ([2, b"2"], SchemaVersionError),
        ([2, b"v9"], SchemaVersionError),
        ([3, b"7"], ConflictError),
        ([4], SessionExists),
        ([5, b"json"], CodecMismatch),
        ([42, b"?"], CorruptSession),
    ],
)
def test_check_maps_statuses(reply: list[Any], error: type[Exception]) -> None:
    with pytest.raises(error) as info:
        core().check(SID, reply, 5)
    assert str(SID) in str(info.value)


def test_check_details() -> None:
    with pytest.raises(SchemaVersionError) as version:
        core().check(SID, [2, b"2"])
    assert version.value.found == 2
    assert str(version.value) == f"unsupported session schema version 2 for `{SID}` (expected 1)"
    with pytest.raises(ConflictError) as conflict:
        core().check(SID, [3, b"7"], 5)
    assert (conflict.value.expected, conflict.value.actual) == (5, 7)
    with pytest.raises(CodecMismatch) as codec:
        core().check(SID, [5, b"json"])
    assert (codec.value.found, codec.value.expected) == ("json", "msgpack")
    core().check(SID, [0, 3])


def test_refused_maps_wrongtype_to_corrupt_and_the_rest_to_store_error() -> None:
    call = load(core(), SID)
    wrong = core().refused(call, redis.exceptions.ResponseError("WRONGTYPE Operation against a key"))
    assert isinstance(wrong, CorruptSession)
    assert wrong.session_id == SID
    other = core().refused(call, redis.exceptions.ResponseError("OOM command not allowed"))
    assert type(other) is StoreError
    assert "OOM" in str(other)
    assert str(SID) in str(other)
    assert other.operation == "load"


def test_load_parse() -> None:
    c = core()
    item = c.encode(SID, AgentMessage.user("hi", id="m"))
    meta = [b"schema_version", b"1", b"codec", b"msgpack", b"model", b"gpt", b"max_turns", b"4"]
    meta += [b"seq", b"9", b"created_at", b"1700000000000001", b"m:k", b"v", b"system_message", b""]
    session = load(c, SID).parse([dict(zip(meta[::2], meta[1::2], strict=True)), [item]])
    assert session is not None
    assert (session.id, session.model, session.max_turns, session.seq) == (SID, "gpt", 4, 9)
    assert session.system_message == ""
    assert session.metadata == {"k": "v"}
    assert session.messages == [AgentMessage.user("hi", id="m")]
    assert session.created_at is not None
    assert session.created_at.timestamp() == 1700000000.000001
    assert session.updated_at is None
    assert load(c, SID).parse([{}, []]) is None


@pytest.mark.parametrize(
    "meta",
    [
        [b"schema_version", b"1"],  # no codec
        [b"schema_version", b"1", b"codec", b"yaml"],
        [b"schema_version", b"1", b"codec", b"msgpack", b"max_turns", b"many"],
        [b"schema_version", b"1", b"codec", b"msgpack", b"model", b"\xff"],
        [b"schema_version", b"1", b"codec", b"msgpack", b"created_at", b"yesterday"],
    ],
)
def test_load_parse_reports_an_unreadable_meta_hash(meta: list[bytes]) -> None:
    with pytest.raises(CorruptSession) as info:
        load(core(), SID).parse([dict(zip(meta[::2], meta[1::2], strict=True)), []])
    assert str(SID) in str(info.value)


# -- slicing: Python slice rules translated to LRANGE ------------------------------------------------


def lrange(items: list[int], first: int, last: int) -> list[int]:
    """LRANGE's rules, as the Redis source implements them."""
    n = len(items)
    first = n + first if first < 0 else first
    last = n + last if last < 0 else last
    first = max(first, 0)
    if first > last or first >= n:
        return []
    return items[first : min(last, n - 1) + 1]


@settings(max_examples=1000, deadline=None)
@given(
    st.integers(0, 30),
    st.integers(-40, 40),
    st.one_of(st.none(), st.integers(-40, 40)),
)
def test_messages_call_reads_exactly_the_python_slice(length: int, start: int, stop: int | None) -> None:
    items = list(range(length))
    call = messages(core(), SID, start, stop)
    assert call.script is None
    command, _, first, last = call.multi[-1]
    assert command == "LRANGE"
    assert lrange(items, first, last) == items[start:stop]


@settings(max_examples=300, deadline=None)
@given(st.integers(1, 20), st.integers(-25, 25), st.data())
def test_messages_parse_reports_absolute_positions(length: int, start: int, data: st.DataObject) -> None:
    c = core()
    items = [c.encode(SID, AgentMessage.user(str(i))) for i in range(length)]
    call = messages(c, SID, start, None)
    assert isinstance(call, Transaction)  # an uncached slice: a MULTI/EXEC
    _, _, first, last = call.multi[-1]
    read = lrange(list(range(length)), first, last)
    head = [b"1", b"msgpack", b"epoch", str(length).encode(), None]
    if not read:
        assert call.parse([head, length, []]) == []
        return
    bad = data.draw(st.sampled_from(read))
    window = [b"\xc1" if i == bad else items[i] for i in read]
    with pytest.raises(CorruptSession) as info:
        call.parse([head, length, window])
    assert info.value.position == bad


@pytest.mark.parametrize(("start", "stop"), [("0", None), (0, "3"), (0.5, None), (0, 2.0)])
def test_messages_bounds_must_be_ints(start: Any, stop: Any) -> None:
    with pytest.raises(TypeError):
        messages(core(), SID, start, stop)
