"""What is stored: schema versions (the seed's third test), codecs, corrupt bytes and wrong key types.

Every failing call must leave the stored keys byte-identical (checked with DUMP).
"""

from __future__ import annotations

import uuid
from collections.abc import Callable

import msgspec
import pytest

from redis_sessions import (
    AgentMessage,
    CodecMismatch,
    CorruptSession,
    PersistenceError,
    SchemaVersionError,
    SessionError,
)
from redis_sessions.codec import CODECS
from redis_sessions.keys import SessionKeys, session_keys
from tests.conftest import MakeStore, Store
from tests.support import Backend, expect_no_change, ids, messages_of


def write_session_by_hand(backend: Backend, version: str, count: int = 2) -> tuple[uuid.UUID, SessionKeys]:
    sid = uuid.uuid4()
    keys = session_keys(backend.prefix, sid)
    backend.raw.hset(
        keys.meta,
        mapping={"schema_version": version, "codec": "msgpack", "seq": str(count), "model": "future"},
    )
    items = [CODECS["msgpack"].encode(m) for m in messages_of(count)]
    if items:
        backend.raw.rpush(keys.messages, *items)
    return sid, keys


# -- schema version (the seed's third test) ------------------------------------------------------


def test_schema_version_mismatch_is_refused_and_nothing_changes(store: Store, backend: Backend) -> None:
    sid, _ = write_session_by_hand(backend, "2")
    unchanged = expect_no_change(backend)
    expected = f"unsupported session schema version 2 for `{sid}` (expected 1)"
    operations: dict[str, Callable[[], object]] = {
        "load": lambda: store.load(sid),
        "messages": lambda: store.messages(sid),
        "messages[-1:]": lambda: store.messages(sid, -1),
        "append": lambda: store.append(sid, AgentMessage.user("v1 writes")),
        "append (stored id)": lambda: store.append(sid, messages_of(1)[0]),
        "extend": lambda: store.extend(sid, messages_of(3, "new")),
        "extend []": lambda: store.extend(sid, []),
        "append expected_seq": lambda: store.append(sid, AgentMessage.user("x"), expected_seq=2),
        "set_metadata": lambda: store.set_metadata(sid, {"k": "v", "model": None}),
    }
    for name, operation in operations.items():
        with pytest.raises(SchemaVersionError) as info:
            operation()
        assert str(info.value) == expected, name
        assert (info.value.found, info.value.expected, info.value.session_id) == (2, 1, sid)
    unchanged()
    assert store.exists(sid), "it is still there, just not ours to read"


@pytest.mark.parametrize("version", ["0", "10", "v2", ""])
def test_other_unknown_versions(store: Store, backend: Backend, version: str) -> None:
    sid, _ = write_session_by_hand(backend, version)
    unchanged = expect_no_change(backend)
    for operation in (store.load, store.messages, lambda s: store.append(s, AgentMessage.user("x"))):
        with pytest.raises(SchemaVersionError) as info:
            operation(sid)
        assert f"version {version} for `{sid}`" in str(info.value)
    unchanged()


def test_hand_written_v1_session_is_readable(store: Store, backend: Backend) -> None:
    # The layout is the contract: a session written by hand in the documented shape reads fine.
    sid, _ = write_session_by_hand(backend, "1", count=3)
    assert ids(store.messages(sid)) == ids(messages_of(3))
    session = store.load(sid)
    assert session is not None
    assert (session.model, session.seq) == ("future", 3)


# -- codecs ---------------------------------------------------------------------------------------


def test_json_store_writes_json(make_store: MakeStore, backend: Backend) -> None:
    store = make_store(codec="json")
    sid = store.create()
    message = AgentMessage.user("hello", id="m1")
    store.append(sid, message)
    keys = session_keys(backend.prefix, sid)
    assert backend.raw.hget(keys.meta, "codec") == b"json"
    (item,) = backend.raw.lrange(keys.messages, 0, -1)
    assert msgspec.json.decode(item) == {
        "id": "m1",
        "role": "user",
        "content": [{"type": "text", "text": "hello"}],
    }
    assert store.messages(sid) == [message]
    assert store.load(sid).messages == [message]  # type: ignore[union-attr]


def test_msgpack_is_the_default(store: Store, backend: Backend) -> None:
    sid = store.create()
    store.append(sid, AgentMessage.user("hello", id="m1"))
    keys = session_keys(backend.prefix, sid)
    assert backend.raw.hget(keys.meta, "codec") == b"msgpack"
    (item,) = backend.raw.lrange(keys.messages, 0, -1)
    assert msgspec.msgpack.decode(item)["id"] == "m1"


@pytest.mark.parametrize(("written", "other"), [("msgpack", "json"), ("json", "msgpack")])
def test_appending_with_another_codec_is_refused(
    make_store: MakeStore, backend: Backend, written: str, other: str
) -> None:
    writer, intruder = make_store(codec=written), make_store(codec=other)
    sid = writer.create()
    writer.extend(sid, messages_of(2))
    unchanged = expect_no_change(backend)
    writes: tuple[Callable[[], object], ...] = (
        lambda: intruder.append(sid, AgentMessage.user("x")),
        lambda: intruder.extend(sid, messages_of(2, "o")),
    )
    for write in writes:
        with pytest.raises(CodecMismatch) as info:
            write()
        assert (info.value.found, info.value.expected, info.value.session_id) == (written, other, sid)
        assert str(sid) in str(info.value)
    unchanged()
    # Reads decode with the codec the session was stored with, whatever the store writes.
    assert intruder.messages(sid) == messages_of(2)
    assert intruder.load(sid).messages == messages_of(2)  # type: ignore[union-attr]
    intruder.set_metadata(sid, {"ok": "yes"})


def test_each_session_keeps_its_own_codec(make_store: MakeStore) -> None:
    packed, json = make_store(codec="msgpack"), make_store(codec="json")
    a, b = packed.create(), json.create()
    packed.append(a, AgentMessage.user("a", id="a"))
    json.append(b, AgentMessage.user("b", id="b"))
    assert ids(json.messages(a)) == ["a"]
    assert ids(packed.messages(b)) == ["b"]


# -- corrupt bytes in the list --------------------------------------------------------------------


@pytest.mark.parametrize("codec", ["msgpack", "json"])
@pytest.mark.parametrize("garbage", [b"\xc1\xff not a message", b"", b"null"])
def test_corrupt_item_names_session_and_position(
    make_store: MakeStore, backend: Backend, codec: str, garbage: bytes
) -> None:
    store = make_store(codec=codec)
    sid = store.create()
    store.extend(sid, messages_of(8))
    k = 5
    backend.raw.lset(session_keys(backend.prefix, sid).messages, k, garbage)
    unchanged = expect_no_change(backend)
    reads: dict[str, Callable[[], object]] = {
        "load": lambda: store.load(sid),
        "messages()": lambda: store.messages(sid),
        "messages(2)": lambda: store.messages(sid, 2),
        "messages(-4)": lambda: store.messages(sid, -4),
        "messages(-3, -2)": lambda: store.messages(sid, -3, -2),
        "messages(5, 6)": lambda: store.messages(sid, 5, 6),
    }
    for name, read in reads.items():
        with pytest.raises(CorruptSession) as info:
            read()
        assert info.value.session_id == sid, name
        assert info.value.position == k, name
        assert str(sid) in str(info.value)
        assert f"position {k}" in str(info.value)
    unchanged()
    # Ranges that do not include the bad item still read: only the range is fetched.
    assert ids(store.messages(sid, 0, k)) == ids(messages_of(8))[:k]
    assert ids(store.messages(sid, k + 1)) == ids(messages_of(8))[k + 1 :]
    assert ids(store.messages(sid, -2)) == ids(messages_of(8))[-2:]
    # Appends do not read old items, so the session stays writable.
    assert store.append(sid, AgentMessage.user("after")) == 9


def test_message_of_another_shape_is_corrupt(store: Store, backend: Backend) -> None:
    sid = store.create()
    store.extend(sid, messages_of(3))
    item = msgspec.msgpack.encode({"id": "x", "role": "narrator", "content": []})
    backend.raw.lset(session_keys(backend.prefix, sid).messages, 0, item)
    with pytest.raises(CorruptSession) as info:
        store.messages(sid)
    assert info.value.position == 0


@pytest.mark.parametrize("codec", [b"yaml", b""])
def test_unknown_codec_in_meta(store: Store, backend: Backend, codec: bytes) -> None:
    sid = store.create()
    store.append(sid, AgentMessage.user("x"))
    backend.raw.hset(session_keys(backend.prefix, sid).meta, "codec", codec)
    unchanged = expect_no_change(backend)
    with pytest.raises(CorruptSession):
        store.messages(sid)
    with pytest.raises(CorruptSession):
        store.load(sid)
    with pytest.raises(PersistenceError):
        store.append(sid, AgentMessage.user("y"))
    unchanged()


@pytest.mark.parametrize(
    ("field", "value"), [("max_turns", b"lots"), ("created_at", b"monday"), ("seq", b"x")]
)
def test_unreadable_meta_field_on_load(store: Store, backend: Backend, field: str, value: bytes) -> None:
    sid = store.create()
    backend.raw.hset(session_keys(backend.prefix, sid).meta, field, value)
    with pytest.raises(CorruptSession) as info:
        store.load(sid)
    assert str(sid) in str(info.value)


def test_unreadable_seq_on_append_is_a_persistence_error(store: Store, backend: Backend) -> None:
    # load() calls this session corrupt; append() must not call it a Redis failure (StoreError).
    sid = store.create()
    backend.raw.hset(session_keys(backend.prefix, sid).meta, "seq", b"garbage")
    unchanged = expect_no_change(backend)
    with pytest.raises(PersistenceError) as info:
        store.append(sid, AgentMessage.user("x"))
    assert info.value.session_id == sid
    unchanged()


# -- keys of the wrong Redis type ------------------------------------------------------------------


def test_meta_key_holding_a_string(store: Store, backend: Backend) -> None:
    sid = uuid.uuid4()
    meta = session_keys(backend.prefix, sid).meta
    backend.raw.set(meta, b"not a hash")
    unchanged = expect_no_change(backend)
    operations: dict[str, Callable[[], object]] = {
        "load": lambda: store.load(sid),
        "messages": lambda: store.messages(sid),
        "append": lambda: store.append(sid, AgentMessage.user("x")),
        "extend": lambda: store.extend(sid, messages_of(2)),
        "set_metadata": lambda: store.set_metadata(sid, {"k": "v"}),
    }
    for name, operation in operations.items():
        with pytest.raises(CorruptSession) as info:
            operation()
        assert info.value.session_id == sid, name
        assert str(sid) in str(info.value)
    with pytest.raises(SessionError):
        store.create(session_id=sid)
    unchanged()
    assert backend.raw.get(meta) == b"not a hash"


@pytest.mark.parametrize("which", ["messages", "ids"])
def test_messages_or_ids_key_holding_a_string(store: Store, backend: Backend, which: str) -> None:
    sid = store.create()
    store.append(sid, AgentMessage.user("first"))
    key = getattr(session_keys(backend.prefix, sid), which)
    backend.raw.delete(key)
    backend.raw.set(key, b"squatter")
    unchanged = expect_no_change(backend)
    with pytest.raises(CorruptSession):
        store.append(sid, AgentMessage.user("x"))
    with pytest.raises(CorruptSession):
        store.extend(sid, messages_of(2))
    if which == "messages":
        with pytest.raises(CorruptSession):
            store.messages(sid)
        with pytest.raises(CorruptSession):
            store.load(sid)
    unchanged()
    assert backend.raw.get(key) == b"squatter"
    assert store.delete(sid) is True, "a corrupt session can still be deleted"
    assert backend.stored_keys() == set()
