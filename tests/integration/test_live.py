"""Watching a conversation live, and turn leases with fencing tokens, against real pub/sub."""

from __future__ import annotations

import threading
import time

import pytest

from redis_sessions import (
    AgentMessage,
    Appended,
    LeaseHeld,
    LeaseLost,
    MessagesTrimmed,
    SessionNotFound,
    SessionStore,
)
from redis_sessions.keys import live_keys
from tests.conftest import MakeStore
from tests.support import Backend, ids, messages_of


def writer_for(backend: Backend) -> SessionStore:
    """A second, independent sync store on the same data: "another agent process"."""
    return SessionStore(backend.sync_client(), prefix=backend.prefix)


def test_watch_sees_every_append_in_order_once_and_ends_on_delete(
    make_store: MakeStore, backend: Backend
) -> None:
    watcher, writer = make_store(), writer_for(backend)
    sid = writer.create()
    writer.extend(sid, messages_of(2, "old"))
    seen_all = threading.Event()

    def write() -> None:
        for i in range(5):
            writer.append(sid, AgentMessage.user(f"live {i}", id=f"live-{i}"))
        assert seen_all.wait(10), "the watcher never saw the five messages"
        writer.delete(sid)

    thread = threading.Thread(target=write)
    seen: list[Appended] = []
    thread.start()
    try:
        for item in watcher.watch(sid, after_seq=2, timeout=10):
            seen.append(item)
            if len(seen) == 5:
                seen_all.set()
    finally:
        seen_all.set()
        thread.join(10)
    assert [a.seq for a in seen] == [3, 4, 5, 6, 7]
    assert ids(a.message for a in seen) == [f"live-{i}" for i in range(5)]
    writer.client.close()


def test_watch_catches_up_from_a_position_without_any_notification(make_store: MakeStore) -> None:
    store = make_store()
    sid = store.create()
    store.extend(sid, messages_of(4))
    caught_up = list(store.watch(sid, after_seq=1, timeout=0.05))
    assert [a.seq for a in caught_up] == [2, 3, 4]
    assert ids(a.message for a in caught_up) == ids(messages_of(4))[1:]


def test_next_message_waits_for_the_next_one_or_gives_none(make_store: MakeStore, backend: Backend) -> None:
    store, writer = make_store(), writer_for(backend)
    sid = store.create()
    assert store.next_message(sid, 0, timeout=0.05) is None
    timer = threading.Timer(0.05, writer.append, (sid, AgentMessage.user("hi", id="hi")))
    timer.start()
    started = time.monotonic()
    got = store.next_message(sid, 0, timeout=10)
    timer.join()
    assert got is not None
    assert (got.seq, got.message.id) == (1, "hi")
    assert time.monotonic() - started < 10, "woken by the notification, not by the timeout"
    writer.client.close()


def test_a_trimmed_position_is_a_clear_signal(make_store: MakeStore) -> None:
    store = make_store(max_messages=3)
    sid = store.create()
    store.extend(sid, messages_of(6))
    with pytest.raises(MessagesTrimmed) as info:
        list(store.watch(sid, after_seq=1, timeout=0.05))
    assert (info.value.after_seq, info.value.first_seq) == (1, 4)
    assert str(sid) in str(info.value)
    assert [a.seq for a in store.watch(sid, after_seq=3, timeout=0.05)] == [4, 5, 6]


def test_watch_of_a_missing_session_ends_at_once(make_store: MakeStore) -> None:
    store = make_store()
    sid = store.create()
    store.delete(sid)
    assert list(store.watch(sid, timeout=5)) == []


# -- leases -----------------------------------------------------------------------------------------


def test_one_holder_at_a_time_and_tokens_only_grow(make_store: MakeStore) -> None:
    store = make_store()
    sid = store.create()
    first = store.lease(sid, "worker-a", 30).acquire()
    with pytest.raises(LeaseHeld) as info:
        store.lease(sid, "worker-b", 30).acquire()
    assert info.value.holder == "worker-a"
    assert first.append(AgentMessage.user("a1", id="a1")) == 1
    first.release()
    with store.lease(sid, "worker-b", 30) as second:
        assert second.token is not None
        assert first.token is None
        assert second.token > 1
        assert second.append(AgentMessage.user("b1", id="b1")) == 2
        second_token = second.token
    assert second.token is None, "leaving the block released it"
    third = store.lease(sid, "worker-a", 30).acquire()
    assert third.token is not None
    assert third.token > second_token
    assert ids(store.messages(sid)) == ["a1", "b1"]


def test_a_stale_token_cannot_write_after_a_takeover(make_store: MakeStore, backend: Backend) -> None:
    store = make_store()
    sid = store.create()
    paused = store.lease(sid, "worker-a", 30).acquire()
    stale_token = paused.token
    backend.raw.delete(live_keys(backend.prefix, sid)[0])  # its lease expired while it was paused
    newer = store.lease(sid, "worker-b", 30).acquire()
    before = ids(store.messages(sid))
    with pytest.raises(LeaseLost) as info:
        paused.append(AgentMessage.user("too late", id="late"))
    assert info.value.token == stale_token
    with pytest.raises(LeaseLost):
        store.extend(sid, messages_of(2), fence=stale_token)
    assert ids(store.messages(sid)) == before, "nothing written with the stale token"
    assert newer.append(AgentMessage.user("on time", id="ok")) == 1
    with pytest.raises(LeaseLost):
        paused.extend()
    newer.extend(60)
    assert 30_000 < backend.raw.pttl(live_keys(backend.prefix, sid)[0]) <= 60_000
    # Without a token, sessions that do not use leases keep working.
    assert store.append(sid, AgentMessage.user("plain", id="plain")) == 2


def test_a_retried_fenced_append_stays_idempotent(make_store: MakeStore) -> None:
    store = make_store()
    sid = store.create()
    lease = store.lease(sid, "w", 30).acquire()
    message = AgentMessage.user("once", id="once")
    assert lease.append(message) == 1
    assert lease.append(message) == 1
    assert ids(store.messages(sid)) == ["once"]


def test_lease_on_a_missing_session(make_store: MakeStore) -> None:
    store = make_store()
    sid = store.create()
    store.delete(sid)
    with pytest.raises(SessionNotFound):
        store.lease(sid, "w", 30).acquire()
    with pytest.raises(TypeError):
        store.lease(sid, "", 30)
