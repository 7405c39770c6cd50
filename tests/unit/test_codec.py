"""Codecs: one message to bytes and back, and whole ranges decoded in one framed call."""

from __future__ import annotations

import uuid

import msgspec
import pytest

from redis_sessions import AgentMessage, CorruptSession, Image, Role, Text, Thinking, ToolUse
from redis_sessions.codec import CODECS, Codec, JsonCodec, MsgpackCodec

SID = uuid.UUID("6f1d8f0e-3a43-4b9e-8a57-0d7f3c1b2a90")
CODEC_NAMES = sorted(CODECS)


def every_block_message() -> list[AgentMessage]:
    return [
        AgentMessage.system("be brief", id="s"),
        AgentMessage.user("hello ünïcode 🙂", id="u"),
        AgentMessage.assistant(
            [
                Thinking("let me look"),
                Text("calling a tool"),
                ToolUse("call-1", "search", {"q": "redis", "n": 3, "nested": {"a": [1, 2.5, None, True]}}),
            ],
            id="a",
        ),
        AgentMessage.tool_result("call-1", [Text("found"), Image("image/png", b"\x89PNG\x00\xff")], id="t"),
        AgentMessage.tool_result("call-2", "boom", is_error=True, id="e"),
        AgentMessage(Role.USER, [], id="empty"),
    ]


def small(n: int) -> list[AgentMessage]:
    return [AgentMessage.user(str(i), id=str(i)) for i in range(n)]


def test_codecs_are_shared_instances_by_name() -> None:
    assert set(CODECS) == {"msgpack", "json"}
    assert isinstance(CODECS["msgpack"], MsgpackCodec)
    assert isinstance(CODECS["json"], JsonCodec)
    assert all(codec.name == name for name, codec in CODECS.items())


@pytest.mark.parametrize("name", CODEC_NAMES)
def test_every_content_block_round_trips(name: str) -> None:
    codec = CODECS[name]
    messages = every_block_message()
    items = [codec.encode(m) for m in messages]
    for item in items:
        codec.check(item)
    assert codec.decode(SID, items) == messages
    assert [codec.decode(SID, [item]) for item in items] == [[m] for m in messages]


def test_json_items_have_the_documented_shape() -> None:
    item = CODECS["json"].encode(AgentMessage.user("hello", id="m1"))
    assert msgspec.json.decode(item) == {
        "id": "m1",
        "role": "user",
        "content": [{"type": "text", "text": "hello"}],
    }


def test_msgpack_items_are_msgpack_maps() -> None:
    item = CODECS["msgpack"].encode(AgentMessage.user("hello", id="m1"))
    assert msgspec.msgpack.decode(item) == {
        "id": "m1",
        "role": "user",
        "content": [{"type": "text", "text": "hello"}],
    }


@pytest.mark.parametrize(
    ("count", "header"),
    [
        (0, b"\x90"),
        (1, b"\x91"),
        (15, b"\x9f"),
        (16, b"\xdc\x00\x10"),
        (17, b"\xdc\x00\x11"),
        (65535, b"\xdc\xff\xff"),
        (65536, b"\xdd\x00\x01\x00\x00"),
    ],
)
def test_msgpack_frame_uses_the_right_array_header(count: int, header: bytes) -> None:
    items = [b"\xc0"] * count  # the frame does not look inside items
    framed = MsgpackCodec().frame(items)
    assert framed == header + b"\xc0" * count
    assert msgspec.msgpack.decode(framed) == [None] * count


@pytest.mark.parametrize("count", [0, 1, 14, 15, 16, 17, 65535, 65536])
def test_msgpack_decodes_ranges_across_header_boundaries(count: int) -> None:
    codec = CODECS["msgpack"]
    messages = small(count)
    items = [codec.encode(m) for m in messages]
    assert codec.decode(SID, items) == messages


@pytest.mark.parametrize("count", [0, 1, 2, 100])
def test_json_frame_and_decode(count: int) -> None:
    codec = CODECS["json"]
    messages = small(count)
    items = [codec.encode(m) for m in messages]
    assert codec.frame(items) == b"[" + b",".join(items) + b"]"
    assert codec.decode(SID, items) == messages


GARBAGE = {
    "msgpack": [b"\xc1", b"", b"\x81", msgspec.msgpack.encode(7), msgspec.msgpack.encode({"role": "user"})],
    "json": [b"{", b"", b"null", b"not json", b'{"role": "robot", "content": []}'],
}


@pytest.mark.parametrize("name", CODEC_NAMES)
@pytest.mark.parametrize("position", [0, 3, 9])
@pytest.mark.parametrize("garbage_index", range(5))
def test_corrupt_item_is_reported_with_its_position(name: str, position: int, garbage_index: int) -> None:
    codec = CODECS[name]
    items = [codec.encode(m) for m in small(10)]
    items[position] = GARBAGE[name][garbage_index]
    with pytest.raises(CorruptSession) as info:
        codec.decode(SID, items, first=100)
    error = info.value
    assert error.session_id == SID
    assert error.position == 100 + position
    assert str(SID) in str(error)
    assert f"position {100 + position}" in str(error)
    assert name in str(error)


@pytest.mark.parametrize("name", CODEC_NAMES)
def test_first_corrupt_item_is_the_one_reported(name: str) -> None:
    codec = CODECS[name]
    items = [codec.encode(m) for m in small(6)]
    items[2] = items[4] = b"\xc1garbage"
    with pytest.raises(CorruptSession) as info:
        codec.decode(SID, items)
    assert info.value.position == 2


def test_items_of_the_other_codec_are_corrupt() -> None:
    message = AgentMessage.user("hi")
    with pytest.raises(CorruptSession):
        CODECS["json"].decode(SID, [CODECS["msgpack"].encode(message)])
    with pytest.raises(CorruptSession):
        CODECS["msgpack"].decode(SID, [CODECS["json"].encode(message)])


@pytest.mark.parametrize("name", CODEC_NAMES)
def test_json_item_with_two_messages_in_it_is_corrupt(name: str) -> None:
    # Framing must not let one stored item smuggle in an extra message.
    codec = CODECS[name]
    one, two = (codec.encode(m) for m in small(2))
    smuggled = one + b"," + two if name == "json" else one + two
    with pytest.raises(CorruptSession) as info:
        codec.decode(SID, [one, smuggled, two])
    assert info.value.position == 1


@pytest.mark.parametrize("name", CODEC_NAMES)
def test_unknown_fields_from_a_newer_writer_are_ignored(name: str) -> None:
    encode = msgspec.json.encode if name == "json" else msgspec.msgpack.encode
    item = encode(
        {
            "id": "m1",
            "role": "assistant",
            "content": [{"type": "text", "text": "hi", "lang": "en"}],
            "added_later": {"x": 1},
        }
    )
    assert CODECS[name].decode(SID, [item]) == [AgentMessage.assistant("hi", id="m1")]


@pytest.mark.parametrize("name", CODEC_NAMES)
def test_check_raises_decode_error_for_garbage(name: str) -> None:
    with pytest.raises(msgspec.DecodeError):
        CODECS[name].check(b"\xc1{")


@pytest.mark.parametrize("name", CODEC_NAMES)
def test_a_writes_check_passes_what_encode_made_and_refuses_what_is_no_message(name: str) -> None:
    codec = CODECS[name]
    codec.check_fresh(codec.encode(AgentMessage.user("hi", id="m1")))
    not_a_message = msgspec.msgpack.encode([1]) if name == "msgpack" else b"[1]"
    for data in (b"\xc1{", not_a_message):
        with pytest.raises(msgspec.DecodeError):
            codec.check_fresh(data)


def test_base_codec_has_no_framing() -> None:
    with pytest.raises(NotImplementedError):
        Codec().frame([])


def test_msgpack_header_matches_the_spec_encoding() -> None:
    # Cross-check the hand-written header against msgspec's own array encoding.
    for count in (0, 15, 16, 65535, 65536):
        own = msgspec.msgpack.encode([None] * count)
        assert MsgpackCodec().frame([b"\xc0"] * count) == own
