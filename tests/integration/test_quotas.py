"""``max_session_bytes``: the append script refuses a write that would take a session past its
limit (``QuotaExceeded``, nothing stored), and keeps the meta's running byte total right across
trims, pops and restores. Every test runs on the backend table (fakeredis, real, cluster) x fronts."""

from __future__ import annotations

from typing import Any

import msgspec
import pytest

from redis_sessions import AgentMessage, QuotaExceeded
from redis_sessions.keys import session_keys
from tests.conftest import MakeStore
from tests.support import Backend


def stored_bytes(backend: Backend, sid: Any) -> int:
    """The bytes of the session's stored bodies, summed from the list itself."""
    return sum(len(body) for body in backend.raw.lrange(session_keys(backend.prefix, sid).messages, 0, -1))


def meta_bytes(backend: Backend, sid: Any) -> int | None:
    raw = backend.raw.hget(session_keys(backend.prefix, sid).meta, "bytes")
    return None if raw is None else int(raw)


def test_an_append_past_the_limit_is_refused_and_stores_nothing(
    make_store: MakeStore, backend: Backend
) -> None:
    store = make_store(max_session_bytes=400)
    sid = store.create()
    store.append(sid, AgentMessage.user("small", id="a"))
    before = backend.dump()
    with pytest.raises(QuotaExceeded) as caught:
        store.extend(sid, [AgentMessage.user("x", id="b"), AgentMessage.user("y" * 500, id="c")])
    error = caught.value
    assert (error.session_id, error.limit, error.quota) == (sid, "max_session_bytes", 400)
    assert error.size > 400
    assert str(sid) in str(error)
    assert backend.dump() == before, "nothing of the refused call is stored"
    assert store.append(sid, AgentMessage.user("ok", id="b")) == 2  # the id was not taken
    assert meta_bytes(backend, sid) == stored_bytes(backend, sid)


def test_the_running_total_is_the_stored_bodies_and_the_limit_is_inclusive(
    make_store: MakeStore, backend: Backend
) -> None:
    probe = make_store(prefix=backend.prefix + "p")
    psid = probe.create()
    probe.extend(psid, [AgentMessage.user(f"m{i}", id=f"m{i}") for i in range(3)])
    exact = sum(len(b) for b in backend.raw.lrange(session_keys(backend.prefix + "p", psid).messages, 0, -1))
    store = make_store(max_session_bytes=exact)
    sid = store.create()
    assert store.extend(sid, [AgentMessage.user(f"m{i}", id=f"m{i}") for i in range(3)]) == 3
    assert meta_bytes(backend, sid) == exact == stored_bytes(backend, sid)
    with pytest.raises(QuotaExceeded):
        store.append(sid, AgentMessage.user("", id="one-more"))
    # A replay of stored messages is answered, not refused: its write was done.
    assert store.append(sid, AgentMessage.user("m2", id="m2")) == 3


def test_trimming_pop_and_restore_keep_the_total_right(make_store: MakeStore, backend: Backend) -> None:
    store = make_store(max_session_bytes=10_000, max_messages=3)
    sid = store.create()
    for i in range(6):
        store.append(sid, AgentMessage.user("z" * (10 * i), id=f"t{i}"))
        assert meta_bytes(backend, sid) == stored_bytes(backend, sid)
    assert len(store.messages(sid)) == 3
    store.pop(sid)
    store.append(sid, AgentMessage.user("after pop", id="p"))
    assert meta_bytes(backend, sid) == stored_bytes(backend, sid)
    state = store.load(sid)
    assert state is not None
    store.import_state(sid, state.to_state(), replace=True)
    store.append(sid, AgentMessage.user("after import", id="i"))
    assert meta_bytes(backend, sid) == stored_bytes(backend, sid)


def test_the_session_keeps_its_own_limit(make_store: MakeStore, backend: Backend) -> None:
    sid = make_store(max_session_bytes=300).create()
    other = make_store()  # no limit of its own: the session's applies to its writes too
    with pytest.raises(QuotaExceeded):
        other.append(sid, AgentMessage.user("w" * 400))
    assert store_len(backend, sid) == 0


def test_a_session_without_a_limit_keeps_no_byte_total(make_store: MakeStore, backend: Backend) -> None:
    store = make_store()
    sid = store.create()
    store.append(sid, AgentMessage.user("w" * 10_000))
    assert meta_bytes(backend, sid) is None


def store_len(backend: Backend, sid: Any) -> int:
    return int(backend.raw.llen(session_keys(backend.prefix, sid).messages))


def test_a_tool_result_past_the_limit_is_refused_and_stores_nothing(
    make_store: MakeStore, backend: Backend
) -> None:
    store = make_store(max_session_bytes=300)
    sid = store.create()
    with pytest.raises(QuotaExceeded), store.tool_call(sid, "toolu_1") as call:
        call.complete("r" * 400)
    assert store_len(backend, sid) == 0
    with store.tool_call(sid, "toolu_1") as again:  # not done: the next attempt may store a smaller one
        assert not again.done
        again.complete("ok")
    assert store_len(backend, sid) == 1


def test_an_export_carries_the_sessions_limit(make_store: MakeStore, backend: Backend) -> None:
    store = make_store(max_session_bytes=500)
    sid = store.create()
    store.append(sid, AgentMessage.user("hi"))
    session = store.load(sid)
    assert session is not None
    assert session.max_session_bytes == 500
    state = session.to_state()
    assert state.max_session_bytes == 500
    other = make_store(prefix=backend.prefix + "x")  # no limit of its own: the state's applies
    other.import_state(sid, state)
    with pytest.raises(QuotaExceeded):
        other.append(sid, AgentMessage.user("v" * 600))
    bounded = make_store(prefix=backend.prefix + "y", max_session_bytes=300)
    bounded.import_state(sid, msgspec.structs.replace(state, max_session_bytes=None))  # an older export
    with pytest.raises(QuotaExceeded):
        bounded.append(sid, AgentMessage.user("v" * 400))


def test_a_streamed_reply_past_the_limit_is_refused_at_finish_and_stays_open(
    make_store: MakeStore, backend: Backend
) -> None:
    store = make_store(max_session_bytes=300)
    sid = store.create()
    reply = store.stream(sid, message_id="r1")
    reply.write("draft")
    with pytest.raises(QuotaExceeded):
        reply.finish(AgentMessage.assistant("f" * 400))
    assert store_len(backend, sid) == 0
    assert reply.finish(AgentMessage.assistant("short")) == 1  # not closed by the refusal


def test_a_fork_keeps_the_limit_and_counts_its_own_bytes(make_store: MakeStore, backend: Backend) -> None:
    store = make_store(max_session_bytes=10_000)
    sid = store.create()
    for i in range(4):
        store.append(sid, AgentMessage.user("q" * (40 * i), id=f"f{i}"))
    fork = store.fork(sid, at_seq=2)
    store.extend(fork, [AgentMessage.user("a", id="x1"), AgentMessage.user("b", id="x2")])
    assert meta_bytes(backend, fork) == stored_bytes(backend, fork)
    with pytest.raises(QuotaExceeded):
        store.append(fork, AgentMessage.user("z" * 10_000))
