"""The validated history cache is never stale: whatever changes in Redis shows on the very next read."""

from __future__ import annotations

import subprocess
import sys
import uuid
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from redis_sessions import AgentMessage, CorruptSession, SchemaVersionError, SessionNotFound
from redis_sessions.keys import session_keys
from tests.conftest import MakeStore
from tests.support import Backend, ids, messages_of


def test_reread_reuses_the_decoded_messages(make_store: MakeStore) -> None:
    store = make_store()
    sid = store.create()
    store.extend(sid, messages_of(5))
    first = store.messages(sid)
    store.append(sid, AgentMessage.user("new", id="new"))
    second = store.messages(sid)
    assert ids(second) == [*ids(first), "new"]
    # The first five came from the cache (the very same objects), only the new one was decoded.
    assert all(a is b for a, b in zip(first, second[:5], strict=True))


def test_write_by_another_process_is_seen_on_the_next_read(make_store: MakeStore, backend: Backend) -> None:
    if backend.url is None:
        pytest.skip("another OS process needs a real server")
    reader = make_store()
    sid = reader.create()
    reader.extend(sid, messages_of(3))
    assert len(reader.messages(sid)) == 3
    code = (
        "import sys, uuid\n"
        "from redis_sessions import SessionStore, AgentMessage\n"
        "with getattr(SessionStore, sys.argv[4])(sys.argv[1], prefix=sys.argv[2]) as s:\n"
        "    s.append(uuid.UUID(sys.argv[3]), AgentMessage.user('from afar', id='afar'))\n"
    )
    opener = "from_cluster" if backend.cluster else "from_url"
    subprocess.run([sys.executable, "-c", code, backend.url, backend.prefix, str(sid), opener], check=True)
    assert ids(reader.messages(sid))[-1] == "afar"
    session = reader.load(sid)
    assert session is not None
    assert session.seq == 4
    assert ids(session.messages)[-1] == "afar"


def test_trim_by_another_writer_is_seen(make_store: MakeStore) -> None:
    reader, writer = make_store(), make_store()
    sid = writer.create()
    writer.extend(sid, messages_of(4))
    assert len(reader.messages(sid)) == 4
    limited = make_store(max_messages=3)
    sid2 = limited.create()
    limited.extend(sid2, messages_of(3))
    assert ids(reader.messages(sid2)) == ids(messages_of(3))
    limited.extend(sid2, messages_of(5, "x"))
    assert ids(reader.messages(sid2)) == ids(messages_of(5, "x"))[-3:]
    assert ids(reader.messages(sid2, -1)) == ["x-0004"]


def test_delete_and_recreate_are_seen(make_store: MakeStore) -> None:
    reader, writer = make_store(), make_store()
    sid = writer.create()
    writer.extend(sid, messages_of(3))
    assert len(reader.messages(sid)) == 3
    writer.delete(sid)
    with pytest.raises(SessionNotFound):
        reader.messages(sid)
    assert reader.load(sid) is None
    # Same id, new incarnation with as many messages: the cache must not pass for it.
    writer.create(session_id=sid)
    writer.extend(sid, messages_of(3, "again"))
    assert reader.load(sid) is not None
    writer.delete(sid)
    writer.create(session_id=sid)
    writer.extend(sid, messages_of(3, "third"))
    assert ids(reader.messages(sid)) == ids(messages_of(3, "third"))


def test_hand_changes_that_refuse_reads_are_seen(make_store: MakeStore, backend: Backend) -> None:
    store = make_store()
    sid = store.create()
    store.extend(sid, messages_of(3))
    assert len(store.messages(sid)) == 3
    keys = session_keys(backend.prefix, sid)
    store.append(sid, AgentMessage.user("four", id="four"))
    backend.raw.lset(keys.messages, 3, b"\xc1garbage")
    with pytest.raises(CorruptSession) as info:
        store.messages(sid)
    assert info.value.position == 3
    assert str(sid) in str(info.value)
    backend.raw.hset(keys.meta, "schema_version", "2")
    with pytest.raises(SchemaVersionError):
        store.messages(sid)
    with pytest.raises(SchemaVersionError):
        store.load(sid)


def test_cache_off_and_bounded(make_store: MakeStore) -> None:
    off, tiny = make_store(cache_messages=0), make_store(cache_messages=2)
    sid = off.create()
    off.extend(sid, messages_of(3))
    assert ids(off.messages(sid)) == ids(tiny.messages(sid)) == ids(messages_of(3))
    off.append(sid, AgentMessage.user("4", id="4"))
    assert ids(off.messages(sid))[-1] == ids(tiny.messages(sid))[-1] == "4"


OPS = st.lists(
    st.one_of(
        st.tuples(st.just("append"), st.integers(1, 3)),
        st.tuples(st.just("read"), st.integers(-6, 6), st.one_of(st.none(), st.integers(-6, 6))),
        st.tuples(st.just("load")),
        st.tuples(st.just("recreate")),
    ),
    max_size=25,
)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(ops=OPS, limit=st.one_of(st.none(), st.integers(1, 6)))
def test_cached_reads_equal_uncached_reads(
    make_store: MakeStore, ops: list[tuple[Any, ...]], limit: int | None
) -> None:
    writer = make_store(max_messages=limit, cache_messages=0)
    cached, plain = make_store(), make_store(cache_messages=0)
    sid = writer.create()
    for n, op in enumerate(ops):
        if op[0] == "append":
            writer.extend(sid, messages_of(op[1], f"b{n}"))
        elif op[0] == "read":
            assert ids(cached.messages(sid, op[1], op[2])) == ids(plain.messages(sid, op[1], op[2]))
        elif op[0] == "load":
            got, want = cached.load(sid), plain.load(sid)
            assert got is not None
            assert want is not None
            assert (ids(got.messages), got.seq) == (ids(want.messages), want.seq)
        else:
            writer.delete(sid)
            writer.create(session_id=sid)
    assert ids(cached.messages(sid)) == ids(plain.messages(sid))
    assert isinstance(sid, uuid.UUID)
