"""Streamed partial replies (``store.stream``) and the partial watch, on every backend and front."""

from __future__ import annotations

import asyncio
import contextlib
import threading
from typing import Any

import pytest

from redis_sessions import (
    Aborted,
    AgentMessage,
    Appended,
    AsyncSessionStore,
    Delta,
    LeaseLost,
    ReplyClosed,
    ReplyTooLarge,
    SessionStore,
    Text,
)
from redis_sessions import _partial as partial
from redis_sessions.errors import InvalidArgument
from redis_sessions.keys import live_keys, reply_keys
from tests.conftest import MakeStore
from tests.support import Backend, ids


def sync_twin(backend: Backend) -> SessionStore:
    """A sync store on the same data, for sending a call by hand."""
    return SessionStore(backend.sync_client(), prefix=backend.prefix)


class ModelFailed(Exception):
    """What a model call raised inside a ``with store.stream(...)`` block."""


def stream_then_fail(store: Any, sid: Any, message_id: str, *texts: str) -> Any:
    """Write ``texts`` to a reply, then leave its block by an exception (which aborts it)."""
    with contextlib.suppress(ModelFailed), store.stream(sid, message_id=message_id) as reply:
        for text in texts:
            reply.write(text)
        raise ModelFailed
    return reply


def events(store: Any, sid: Any, **kwargs: Any) -> list[Any]:
    kwargs.setdefault("timeout", 0.2)
    return list(store.watch(sid, partial=True, **kwargs))


def shape(seen: list[Any]) -> list[tuple[Any, ...]]:
    """Events without their event ids: what they say."""
    out: list[tuple[Any, ...]] = []
    for e in seen:
        if isinstance(e, Delta):
            out.append(("delta", e.message_id, e.index, e.text))
        elif isinstance(e, Aborted):
            out.append(("aborted", e.message_id, e.reason))
        else:
            out.append(("appended", e.seq, e.message.id, e.deltas))
    return out


def test_a_reply_streams_then_is_stored_as_one_message(make_store: MakeStore) -> None:
    store = make_store()
    sid = store.create()
    store.append(sid, AgentMessage.user("hi", id="u1"))
    with store.stream(sid, message_id="r1") as reply:
        assert [reply.write(t) for t in ["Hel", "lo", " wor", "ld"]] == [0, 1, 2, 3]
    assert reply.seq == 2
    stored = store.messages(sid)[-1]
    assert (stored.id, stored.content) == ("r1", [Text("Hello world")])
    assert shape(events(store, sid)) == [
        ("appended", 1, "u1", None),
        *[("delta", "r1", i, t) for i, t in enumerate(["Hel", "lo", " wor", "ld"])],
        ("appended", 2, "r1", 4),
    ]
    # Non-partial watching is unchanged: messages only, unpacked as (seq, message).
    assert [(seq, m.id) for seq, m in store.watch(sid, timeout=0.1)] == [(1, "u1"), (2, "r1")]
    # A watcher already past the reply's message does not get its deltas again.
    assert events(store, sid, after_seq=2) == []


def test_finish_takes_a_message_and_a_retried_finish_stores_it_once(
    make_store: MakeStore, backend: Backend
) -> None:
    store = make_store()
    sid = store.create()
    reply = store.stream(sid, message_id="r1")
    reply.write("draft")
    final = AgentMessage.assistant("the final text", id="other-id")
    assert reply.finish(final) == 1
    assert reply.finish() == 1
    # The same call sent again (a retry after a lost reply) finds it stored.
    twin = sync_twin(backend)
    stored = AgentMessage.assistant("the final text", id="r1")
    assert twin.transport.run(partial.finish(twin.transport.core, sid, stored, None)) == 1
    assert ids(store.messages(sid)) == ["r1"]
    assert store.messages(sid)[0].content == [Text("the final text")]
    with pytest.raises(ReplyClosed):
        reply.write("more")


def test_an_exception_aborts_and_keeps_what_was_written(make_store: MakeStore) -> None:
    store = make_store()
    sid = store.create()
    reply = stream_then_fail(store, sid, "r1", "half a ")
    assert reply.state == "aborted"
    assert store.messages(sid) == []
    assert shape(events(store, sid)) == [("delta", "r1", 0, "half a "), ("aborted", "r1", "ModelFailed")]
    with pytest.raises(ReplyClosed):
        reply.finish()
    # Another stream of the same id (a retried turn must use a new id) is refused too.
    with pytest.raises(ReplyClosed):
        store.stream(sid, message_id="r1").finish()


def test_a_fenced_stream_is_refused_once_its_lease_was_taken_over(
    make_store: MakeStore, backend: Backend
) -> None:
    store = make_store()
    sid = store.create()
    lease = store.lease(sid, "worker-a", 30).acquire()
    reply = store.stream(sid, fence=lease.token, message_id="r1", flush_deltas=1)
    reply.write("mine")
    backend.raw.delete(live_keys(backend.prefix, sid)[0])  # its lease expired while it was paused
    store.lease(sid, "worker-b", 30).acquire()
    with pytest.raises(LeaseLost):
        reply.write("too late")
    with pytest.raises(LeaseLost):
        reply.finish()
    assert store.messages(sid) == []
    # A reader takes the reply for dead (its lease is not the live one) and ends it.
    assert shape(events(store, sid, poll_interval=0.05)) == [
        ("delta", "r1", 0, "mine"),
        ("aborted", "r1", partial.STOPPED),
    ]


def test_over_a_bound_is_a_typed_error_and_nothing_stored_is_lost(
    make_store: MakeStore, backend: Backend
) -> None:
    store = make_store()
    sid = store.create()
    reply = store.stream(sid, message_id="r1", max_deltas=3, max_bytes=100)
    for t in "abc":
        reply.write(t)
    with pytest.raises(ReplyTooLarge) as info:
        reply.write("d")
    assert (info.value.what, info.value.limit) == ("deltas", 3)
    assert reply.finish() == 1
    assert store.messages(sid)[0].content == [Text("abc")]
    big = store.stream(sid, message_id="r2", max_bytes=4)
    big.write("1234")
    with pytest.raises(ReplyTooLarge):
        big.write("5")
    # The script checks the bounds too (a producer cannot pass them by sending more at once).
    twin = sync_twin(backend)
    call = partial.write(twin.transport.core, sid, "r3", None, 0, ["x", "y", "z"], (2, 100, 1000))
    with pytest.raises(ReplyTooLarge):
        twin.transport.run(call)
    with pytest.raises(InvalidArgument):
        store.stream(sid, max_deltas=0)


def test_deltas_are_coalesced(make_store: MakeStore, backend: Backend) -> None:
    store = make_store()
    sid = store.create()
    stream_key = reply_keys(backend.prefix, sid)[0]
    reply = store.stream(sid, message_id="r1", flush_deltas=10, flush_interval=3600)
    reply.write("first")  # the first delta goes at once
    assert backend.raw.xlen(stream_key) == 1
    for i in range(9):
        reply.write(str(i))
    assert backend.raw.xlen(stream_key) == 1, "nine deltas wait for the tenth"
    reply.write("9")
    assert backend.raw.xlen(stream_key) == 11
    reply.write("last")
    assert reply.finish() == 1
    assert backend.raw.xlen(stream_key) == 13  # the last delta, then the entry that closed the reply
    assert 0 < backend.raw.pttl(stream_key) <= partial.FINISHED_GRACE * 1000


def test_resume_after_any_event_continues_with_no_gap_and_no_repeat(make_store: MakeStore) -> None:
    store = make_store()
    sid = store.create()
    store.append(sid, AgentMessage.user("q", id="u1"))
    with store.stream(sid, message_id="r1", flush_deltas=2) as reply:
        for i in range(5):
            reply.write(f"t{i} ")
    store.append(sid, AgentMessage.user("q2", id="u2"))
    stream_then_fail(store, sid, "r2", "x")
    every = events(store, sid)
    assert len(every) == 1 + 5 + 1 + 1 + 2
    assert len({e.event_id for e in every}) == len(every)
    for k, event in enumerate(every):
        assert shape(events(store, sid, resume=event.event_id)) == shape(every[k + 1 :]), k
    with pytest.raises(InvalidArgument):
        events(store, sid, resume="not an id")


def test_a_watcher_joining_mid_reply_gets_the_deltas_so_far_then_live_ones(
    make_store: MakeStore, backend: Backend
) -> None:
    store = make_store()
    writer = SessionStore(backend.sync_client(), prefix=backend.prefix)
    sid = writer.create()
    reply = writer.stream(sid, message_id="r1", flush_deltas=1)
    for i in range(3):
        reply.write(f"{i}")
    seen: list[Any] = []
    started = threading.Event()

    def watch() -> None:
        for event in store.watch(sid, partial=True, timeout=10, poll_interval=0.05):
            seen.append(event)
            started.set()
            if isinstance(event, Appended):
                return

    thread = threading.Thread(target=watch)
    thread.start()
    try:
        assert started.wait(10)
        for i in range(3, 6):
            reply.write(f"{i}")
        reply.finish()
    finally:
        thread.join(10)
    assert shape(seen) == [*[("delta", "r1", i, str(i)) for i in range(6)], ("appended", 1, "r1", 6)]
    writer.client.close()


def test_a_reader_gives_up_an_unfenced_reply_that_went_idle(make_store: MakeStore) -> None:
    store = make_store()
    sid = store.create()
    reply = store.stream(sid, message_id="r1", idle=0.2)
    reply.write("lost")
    seen: list[Any] = []
    for event in store.watch(sid, partial=True, timeout=5, poll_interval=0.05):
        seen.append(event)
        if isinstance(event, Aborted):
            break
    assert shape(seen) == [("delta", "r1", 0, "lost"), ("aborted", "r1", partial.STOPPED)]
    with pytest.raises(ReplyClosed):
        reply.write("back")


def test_a_watcher_skips_replies_closed_before_its_position(make_store: MakeStore) -> None:
    store = make_store()
    sid = store.create()
    with store.stream(sid, message_id="r1") as reply:
        reply.write("done")
    store.append(sid, AgentMessage.user("next", id="u2"))
    stream_then_fail(store, sid, "r2", "cut")
    store.append(sid, AgentMessage.user("after", id="u3"))
    assert shape(events(store, sid, after_seq=1)) == [
        ("appended", 2, "u2", None),
        ("delta", "r2", 0, "cut"),
        ("aborted", "r2", "ModelFailed"),
        ("appended", 3, "u3", None),
    ]
    assert shape(events(store, sid, after_seq=3)) == []


def test_delete_takes_the_streamed_replies_with_it(make_store: MakeStore, backend: Backend) -> None:
    store = make_store()
    sid = store.create()
    reply = store.stream(sid, message_id="r1")
    reply.write("x")
    reply.flush()
    assert store.delete(sid)
    assert not backend.raw.exists(*reply_keys(backend.prefix, sid)[:2])
    assert events(store, sid) == []


def test_a_reply_with_no_delta_finishes_as_an_empty_text(make_store: MakeStore) -> None:
    store = make_store()
    sid = store.create()
    with store.stream(sid, message_id="r1"):
        pass
    assert store.messages(sid)[0].content == [Text("")]
    assert shape(events(store, sid)) == [("appended", 1, "r1", 0)]


async def test_on_the_asyncio_store_a_buffered_delta_goes_by_itself(backend: Backend) -> None:
    client = backend.async_client()
    store = AsyncSessionStore(client, prefix=backend.prefix)
    sid = await store.create()
    stream_key = reply_keys(backend.prefix, sid)[0]
    reply = store.stream(sid, message_id="r1", flush_interval=0.05)
    await reply.write("a")  # the first goes at once
    await reply.write("b")  # within flush_interval of it: waits
    assert backend.raw.xlen(stream_key) == 1
    await asyncio.sleep(0.5)
    assert backend.raw.xlen(stream_key) == 2, "sent without another call"
    await reply.write("c")
    assert await reply.finish() == 1
    await asyncio.sleep(0.1)  # a flush scheduled for "c" was called off by finish
    assert backend.raw.xlen(stream_key) == 4  # three deltas and the entry that closed the reply
    assert (await store.messages(sid))[0].content == [Text("abc")]
    await client.aclose()
