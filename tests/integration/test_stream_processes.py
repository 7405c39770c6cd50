"""Streamed replies across OS processes, on a real server: a watcher in another process, resume by
event id, a fenced producer taken over, a producer SIGKILLed, a reply over its bound."""

from __future__ import annotations

import multiprocessing
import os
import signal
import time
from collections.abc import Iterator
from typing import Any

import pytest

from redis_sessions import SessionStore, Text
from redis_sessions import _partial as partial
from redis_sessions.keys import live_keys
from tests.integration.stream_workers import produce_worker, watch_worker
from tests.support import Backend

REAL = [pytest.param("real", marks=pytest.mark.real)]
pytestmark = [pytest.mark.slow, pytest.mark.parametrize("backend", REAL, indirect=True)]
CONTEXT = multiprocessing.get_context("spawn")


@pytest.fixture
def store(backend: Backend, redis_url: str) -> Iterator[SessionStore]:
    with SessionStore.from_url(redis_url, prefix=backend.prefix) as store:
        yield store


class Child:
    """A spawned process with its queue and events; ended (and checked) when the test ends."""

    def __init__(self, target: Any, *args: Any) -> None:
        self.results, self.ready, self.go = CONTEXT.Queue(), CONTEXT.Event(), CONTEXT.Event()
        extra = (self.ready, self.results) if target is watch_worker else (self.ready, self.go, self.results)
        self.process = CONTEXT.Process(target=target, args=(*args, *extra), daemon=True)
        self.process.start()

    def events(self) -> list[tuple[Any, ...]]:
        """What a watcher process saw, up to its end (which must be clean)."""
        seen = []
        while (item := self.results.get(timeout=60))[0] != "end":
            seen.append(item)
        assert item[1] is None, item[1]
        return seen

    def stop(self) -> None:
        self.process.join(timeout=30)
        if self.process.is_alive():
            self.process.kill()
            self.process.join()


@pytest.fixture
def spawn() -> Iterator[Any]:
    children: list[Child] = []

    def start(target: Any, *args: Any) -> Child:
        child = Child(target, *args)
        children.append(child)
        return child

    yield start
    for child in children:
        child.stop()


def deltas_then_final(seen: list[tuple[Any, ...]], count: int, seq: int) -> None:
    assert [e[2] for e in seen[:-1]] == list(range(count)), "every delta once, in order"
    assert {e[0] for e in seen[:-1]} == {"delta"}
    assert seen[-1][:4] == ("appended", seq, "r1", count)


def test_a_watcher_in_another_process_gets_every_delta_once_then_the_message(
    store: SessionStore, backend: Backend, redis_url: str, spawn: Any
) -> None:
    sid = store.create()
    watcher = spawn(watch_worker, redis_url, backend.prefix, sid, None, 0)
    assert watcher.ready.wait(30)
    with store.stream(sid, message_id="r1") as reply:
        for i in range(2000):
            reply.write(f"{i} ")
    seen = watcher.events()
    deltas_then_final(seen, 2000, 1)
    final = store.messages(sid)[0].content[0]
    assert isinstance(final, Text)
    assert "".join(e[3] for e in seen[:-1]) == final.text


def test_resume_by_event_id_in_a_new_process_has_no_gap_and_no_repeat(
    store: SessionStore, backend: Backend, redis_url: str, spawn: Any
) -> None:
    sid = store.create()
    first = spawn(watch_worker, redis_url, backend.prefix, sid, None, 700)
    assert first.ready.wait(30)
    with store.stream(sid, message_id="r1", flush_deltas=7) as reply:
        for i in range(1500):
            reply.write(f"{i} ")
    before = first.events()
    assert len(before) == 700
    second = spawn(watch_worker, redis_url, backend.prefix, sid, before[-1][-1], 0)
    deltas_then_final(before + second.events(), 1500, 1)


def test_a_fenced_producer_whose_lease_was_taken_over_is_refused(
    store: SessionStore, backend: Backend, redis_url: str, spawn: Any
) -> None:
    sid = store.create()
    producer = spawn(produce_worker, redis_url, backend.prefix, sid, "fenced", 10)
    assert producer.ready.wait(30)
    backend.raw.delete(live_keys(backend.prefix, sid)[0])  # its lease expired while it was paused
    store.lease(sid, "another worker", 30).acquire()
    producer.go.set()
    outcome, detail = producer.results.get(timeout=30)
    assert outcome == "LeaseLost", detail
    assert store.messages(sid) == []


@pytest.mark.parametrize("fenced", [True, False], ids=["lease-expires", "idle"])
def test_a_producer_killed_mid_reply_is_seen_as_aborted(
    store: SessionStore, backend: Backend, redis_url: str, spawn: Any, fenced: bool
) -> None:
    sid = store.create()
    if fenced:
        producer = spawn(produce_worker, redis_url, backend.prefix, sid, "hang", 10)
        assert producer.ready.wait(30)
    else:
        reply = store.stream(sid, message_id="r1", idle=1.0)  # this "producer" just stops writing
        for i in range(10):
            reply.write(f"{i} ")
        reply.flush()
    watcher = spawn(watch_worker, redis_url, backend.prefix, sid, None, 0)
    killed = time.monotonic()
    if fenced:
        os.kill(producer.process.pid, signal.SIGKILL)
    seen = watcher.events()
    waited = time.monotonic() - killed
    assert [e[2] for e in seen[:-1]] == list(range(10))
    assert seen[-1][:3] == ("aborted", "r1", partial.STOPPED)
    assert 0.5 < waited < 10, "after the lease (1 s) or idle time (1 s), not at once nor never"


def test_a_reply_over_its_bound_is_a_typed_error_in_the_producer(
    store: SessionStore, backend: Backend, redis_url: str, spawn: Any
) -> None:
    sid = store.create()
    producer = spawn(produce_worker, redis_url, backend.prefix, sid, "bound", 5)
    outcome, seq = producer.results.get(timeout=30)
    assert (outcome, seq) == ("ReplyTooLarge", 1)
    final = store.messages(sid)[0].content[0]
    assert isinstance(final, Text)
    assert final.text == "0 1 2 3 4 "
