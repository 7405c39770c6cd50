"""Hostile bytes in a session's list or meta hash: a typed error naming the session, never a crash.

Hypothesis writes random bytes, valid MessagePack and JSON of the wrong shape, near-misses of a
message (right keys, wrong types), mangled copies of real items, and payloads other libraries
store (the OpenAI Agents SDK, LangChain, LlamaIndex) into a real session, then reads it every way
there is. A bad list item must give ``CorruptSession`` with the session id and the item's position,
from every read that covers it (whole, ranged, ``load``, the history cache's incremental read),
while ranges that avoid it still read; a bad meta field must give a ``SessionError`` about that
session. Any other exception is a failure. Many examples on fakeredis (``FUZZ_EXAMPLES=<n>`` for
more), fewer on a real server.

What it found is fixed and pinned by the tests at the end (a seq that is not a decimal integer, an
out-of-range timestamp, a range before a corrupt new item of a cached session, a watcher's position
of a corrupt item, and a foreign item without an id).
"""

from __future__ import annotations

import json
import os
import uuid
from collections.abc import Callable
from typing import Any

import msgspec
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from redis_sessions import AgentMessage, CorruptSession, SessionError
from redis_sessions.codec import CODECS
from redis_sessions.keys import session_keys
from tests.conftest import MakeStore
from tests.support import Backend, ids, messages_of

FAKE_AND_REAL = [
    pytest.param("fakeredis", id="fakeredis"),
    pytest.param("real", marks=pytest.mark.real, id="real"),
]
EXAMPLES = {"fakeredis": int(os.environ.get("FUZZ_EXAMPLES", 150)), "real": 40}

# -- what hostile items look like -----------------------------------------------------------------

json_like = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**63), 2**64 - 1)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=10),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=12,
)
near_message = st.fixed_dictionaries(
    {
        "role": st.sampled_from(["user", "assistant", "system", "tool", "narrator", "", 1]) | json_like,
        "content": st.lists(
            st.fixed_dictionaries(
                {"type": st.sampled_from(["text", "image", "tool_use", "nope"]) | json_like},
                optional={"text": json_like, "id": json_like, "input": json_like, "data": json_like},
            ),
            max_size=3,
        )
        | json_like,
    },
    optional={"id": json_like, "extra": json_like},
)
"""Shaped like a message, wrong somewhere (or, rarely, a valid message: the oracle tells)."""

FOREIGN: list[Any] = [
    # OpenAI Agents SDK (RedisSession stores json.dumps of each input item)
    {"role": "user", "content": "What is the weather in Paris?"},
    {
        "type": "message",
        "id": "msg_1",
        "role": "assistant",
        "status": "completed",
        "content": [{"type": "output_text", "text": "Sunny.", "annotations": []}],
    },
    {"type": "function_call", "call_id": "call_1", "name": "weather", "arguments": '{"city": "Paris"}'},
    {"type": "function_call_output", "call_id": "call_1", "output": "sunny"},
    # LangChain (messages_to_dict)
    {
        "type": "human",
        "data": {"content": "hi", "additional_kwargs": {}, "type": "human", "id": None, "example": False},
    },
    # LlamaIndex ChatMessage
    {"role": "user", "additional_kwargs": {}, "blocks": [{"block_type": "text", "text": "hi"}]},
    [1, 2, 3],
    "just a string",
    None,
]


def _mangle(data: bytes, cut: int, flip: int) -> bytes:
    """A real item truncated at ``cut`` or with one byte flipped at ``flip``."""
    if not data:
        return data
    if cut % 2:
        return data[: cut % len(data)]
    i = flip % len(data)
    return data[:i] + bytes([data[i] ^ 0xFF]) + data[i + 1 :]


def hostile_items(codec: str) -> st.SearchStrategy[bytes]:
    real = CODECS[codec].encode(AgentMessage.user("an intact message", id="intact"))
    return st.one_of(
        st.binary(max_size=80),
        json_like.map(msgspec.msgpack.encode),
        json_like.map(lambda v: json.dumps(v).encode()),
        near_message.map(msgspec.msgpack.encode),
        near_message.map(lambda v: json.dumps(v).encode()),
        st.sampled_from(FOREIGN).map(lambda v: json.dumps(v).encode()),
        st.sampled_from(FOREIGN).map(msgspec.msgpack.encode),
        st.builds(_mangle, st.just(real), st.integers(0, 10**6), st.integers(0, 10**6)),
    )


def decodes(codec: str, item: bytes) -> bool:
    """The oracle: does this item decode as one message on its own?"""
    try:
        CODECS[codec].check(item)
    except msgspec.DecodeError:
        return False
    return True


def corrupt_at(read: Callable[[], object], sid: uuid.UUID, position: int, what: str) -> None:
    with pytest.raises(CorruptSession) as info:
        read()
    assert info.value.session_id == sid, what
    assert str(sid) in str(info.value), what
    assert info.value.position == position, what
    assert f"position {position}" in str(info.value), what


def raised(call: Callable[[], object]) -> Exception | None:
    """What ``call()`` raised (``None`` if it returned)."""
    try:
        call()
    except Exception as exc:
        return exc
    return None


def _settings(backend: Backend) -> settings:
    return settings(
        max_examples=EXAMPLES[backend.name],
        deadline=None,
        suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
    )


# -- a bad item in the list -------------------------------------------------------------------------


@pytest.mark.parametrize("front", ["sync"])
@pytest.mark.parametrize("backend", FAKE_AND_REAL, indirect=True)
@pytest.mark.parametrize("codec", ["msgpack", "json"])
def test_a_bad_list_item_is_a_typed_error_at_its_position(
    make_store: MakeStore, backend: Backend, codec: str
) -> None:
    store = make_store(codec=codec)

    @_settings(backend)
    @given(item=hostile_items(codec), n=st.integers(1, 6), data=st.data())
    @example(item=b"\xc1", n=3, data=None)
    @example(item=json.dumps(FOREIGN[0]).encode(), n=2, data=None)
    @example(item=b"\x81\xa4role\xa4\x00\x00\x00\x80", n=2, data=None)  # invalid UTF-8: msgspec
    @example(item=b'{"role": "\xff"}', n=2, data=None)  # raises UnicodeDecodeError, not DecodeError
    def check(item: bytes, n: int, data: st.DataObject | None) -> None:
        k = 1 if data is None else data.draw(st.integers(0, n - 1), label="position")
        sid = store.create()
        intact = messages_of(n, tag=f"m{uuid.uuid4().hex[:6]}")
        store.extend(sid, intact)
        backend.raw.lset(session_keys(backend.prefix, sid).messages, k, item)
        if decodes(codec, item):  # rarely: the item happens to be a valid message
            assert len(store.messages(sid)) == n
            return
        reads: dict[str, Callable[[], object]] = {
            "messages()": lambda: store.messages(sid),
            "messages(k)": lambda: store.messages(sid, k),
            "messages(k, k+1)": lambda: store.messages(sid, k, k + 1),
            "messages(-(n-k))": lambda: store.messages(sid, k - n),
            "load()": lambda: store.load(sid),
        }
        for what, read in reads.items():
            corrupt_at(read, sid, k, what)
        with pytest.raises(CorruptSession) as watched:
            store.next_message(sid, k, timeout=0.01)
        assert watched.value.session_id == sid
        # The intact ranges on either side still read: only the asked range is fetched.
        assert ids(store.messages(sid, 0, k)) == ids(intact[:k])
        assert ids(store.messages(sid, k + 1)) == ids(intact[k + 1 :])
        store.delete(sid)

    check()


@pytest.mark.parametrize("front", ["sync"])
@pytest.mark.parametrize("backend", FAKE_AND_REAL, indirect=True)
def test_a_bad_item_after_the_cached_history_is_reported_at_its_position(
    make_store: MakeStore, backend: Backend
) -> None:
    # The history cache reads only what is new since its last read (read_since.lua): a bad item
    # there is reported at its list position too, and the cached part is not served instead.
    store = make_store()

    @_settings(backend)
    @given(item=hostile_items("msgpack"), n=st.integers(1, 5))
    def check(item: bytes, n: int) -> None:
        if decodes("msgpack", item):
            return
        sid = store.create()
        tag = f"c{uuid.uuid4().hex[:6]}"
        store.extend(sid, messages_of(n, tag=tag))
        assert len(store.messages(sid)) == n  # now cached
        store.append(sid, AgentMessage.user("soon corrupt", id="late"))
        backend.raw.lset(session_keys(backend.prefix, sid).messages, n, item)
        corrupt_at(lambda: store.messages(sid), sid, n, "cached messages()")
        corrupt_at(lambda: store.load(sid), sid, n, "cached load()")
        assert ids(store.messages(sid, 0, n)) == ids(messages_of(n, tag=tag)), "a range before it reads"
        store.delete(sid)

    check()


# -- a bad field in the meta hash -----------------------------------------------------------------

META_FIELDS = [
    "schema_version",
    "codec",
    "seq",
    "epoch",
    "model",
    "max_turns",
    "system_message",
    "created_at",
    "updated_at",
    "m:topic",
]
meta_values = st.one_of(
    st.binary(max_size=24),
    st.integers(-(2**70), 2**70).map(lambda n: str(n).encode()),
    st.sampled_from([b"", b"nan", b"inf", b"-1", b"1e3", b"0x10", b" 2 ", b"9" * 30, b"\xff\xfe", b"1.5"]),
)


@pytest.mark.parametrize("front", ["sync"])
@pytest.mark.parametrize("backend", FAKE_AND_REAL, indirect=True)
@pytest.mark.parametrize("field", META_FIELDS)
def test_a_bad_meta_field_is_a_typed_error_about_the_session(
    make_store: MakeStore, backend: Backend, field: str
) -> None:
    store = make_store()
    examples = max(10, EXAMPLES[backend.name] // 5)

    @settings(
        max_examples=examples,
        deadline=None,
        suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
    )
    @given(value=meta_values)
    def check(value: bytes) -> None:
        sid = store.create(metadata={"topic": "x"}, system_message="be brief")
        store.extend(sid, messages_of(3))
        backend.raw.hset(session_keys(backend.prefix, sid).meta, field, value)
        reads: dict[str, Callable[[], object]] = {
            "messages": lambda: store.messages(sid),
            "range": lambda: store.messages(sid, 1, 2),
            "load": lambda: store.load(sid),
            "exists": lambda: store.exists(sid),
            "next_message": lambda: store.next_message(sid, 0, timeout=0.01),
            "append": lambda: store.append(sid, AgentMessage.user("more", id="more")),
        }
        for what, read in reads.items():
            error = raised(read)
            if isinstance(error, SessionError):
                assert error.session_id == sid, (what, value)
                assert str(sid) in str(error), (what, value)
            elif error is not None:
                raise AssertionError(f"{what} with {field}={value!r} raised {error!r}") from error
        store.delete(sid)

    check()


# -- what the fuzzing found, pinned ------------------------------------------------------------


@pytest.mark.parametrize("backend", FAKE_AND_REAL, indirect=True)
def test_messages_with_a_non_numeric_seq_is_corrupt(store: Any, backend: Backend) -> None:
    sid = store.create()
    store.extend(sid, messages_of(2))
    backend.raw.hset(session_keys(backend.prefix, sid).meta, "seq", b"x")
    with pytest.raises(CorruptSession) as info:
        store.messages(sid)
    assert info.value.session_id == sid


@pytest.mark.parametrize("backend", FAKE_AND_REAL, indirect=True)
@pytest.mark.parametrize("field", ["created_at", "updated_at"])
def test_load_with_an_out_of_range_timestamp_is_corrupt(store: Any, backend: Backend, field: str) -> None:
    sid = store.create()
    backend.raw.hset(session_keys(backend.prefix, sid).meta, field, b"9" * 20)
    with pytest.raises(CorruptSession) as info:
        store.load(sid)
    assert info.value.session_id == sid


@pytest.mark.parametrize("backend", FAKE_AND_REAL, indirect=True)
def test_a_range_before_a_corrupt_new_item_reads_from_a_store_that_cached_the_session(
    store: Any, backend: Backend
) -> None:
    sid = store.create()
    store.extend(sid, messages_of(3))
    assert len(store.messages(sid)) == 3  # cached
    store.append(sid, AgentMessage.user("soon corrupt", id="late"))
    backend.raw.lset(session_keys(backend.prefix, sid).messages, 3, b"\xc1")
    assert ids(store.messages(sid, 0, 3)) == ids(messages_of(3))


@pytest.mark.parametrize("backend", FAKE_AND_REAL, indirect=True)
def test_a_watcher_names_the_list_position_of_a_corrupt_item(store: Any, backend: Backend) -> None:
    sid = store.create()
    store.extend(sid, messages_of(8))
    backend.raw.lset(session_keys(backend.prefix, sid).messages, 5, b"\xc1")
    corrupt_at(lambda: store.next_message(sid, 3, timeout=0.01), sid, 5, "next_message(3)")


@pytest.mark.parametrize("backend", FAKE_AND_REAL, indirect=True)
@pytest.mark.parametrize("seq", [b"inf", b"1e3", b"0x10"])
def test_append_to_a_session_whose_seq_is_not_an_integer_is_refused(
    store: Any, backend: Backend, seq: bytes
) -> None:
    sid = store.create()
    store.extend(sid, messages_of(2))
    keys = session_keys(backend.prefix, sid)
    backend.raw.hset(keys.meta, "seq", seq)
    before = backend.raw.lrange(keys.messages, 0, -1)
    with pytest.raises(CorruptSession):
        store.append(sid, AgentMessage.user("x", id="x"))
    assert backend.raw.lrange(keys.messages, 0, -1) == before, "nothing written"


@pytest.mark.parametrize("backend", FAKE_AND_REAL, indirect=True)
def test_a_foreign_item_without_an_id_is_corrupt(make_store: MakeStore, backend: Backend) -> None:
    store = make_store(codec="json")
    sid = store.create()
    store.extend(sid, messages_of(2))
    foreign = json.dumps({"role": "user", "content": [{"type": "text", "text": "hi"}]}).encode()
    backend.raw.rpush(session_keys(backend.prefix, sid).messages, foreign)
    corrupt_at(lambda: store.messages(sid, 2), sid, 2, "messages(2)")  # not a new random id each read
    assert "missing required field `id`" in str(raised(lambda: store.messages(sid)))
    assert ids(store.messages(sid, 0, 2)) == ids(messages_of(2)), "the intact part still reads"
    assert AgentMessage.user("new").id, "a message built in code still gets a fresh id"
