"""Faults of the server itself, on redis-server processes these tests start on loopback.

A stalled server (``CLIENT PAUSE``, SIGSTOP, ``DEBUG SLEEP``) makes calls fail with ``StoreUnavailable``
within the bound the timeouts and retry policy set, leaves nothing hanging, and the next call after
the stall succeeds; a reply lost to the stall never leaves its message stored twice. ``SCRIPT FLUSH``
under many concurrent writers is invisible to them. A server SIGKILLed and restarted (AOF,
``appendfsync always``) under writers in three processes keeps every acknowledged append, once, in order.
"""

from __future__ import annotations

import asyncio
import multiprocessing
import os
import signal
import socket
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import redis
import redis.asyncio
import redis.exceptions

from redis_sessions import AgentMessage, AsyncSessionStore, RetryPolicy, SessionStore, StoreUnavailable
from redis_sessions.embedded import RedisServer
from redis_sessions.keys import session_keys
from tests.integration.durable_support import require_redis_server
from tests.integration.restart_workers import restart_writer
from tests.support import ids, unique_prefix, wait_until

pytestmark = pytest.mark.real

TIMEOUT = 0.2
POLICY = RetryPolicy(attempts=2, initial=0.01, max_wait=0.05)
SLACK = 0.5
BOUND = TIMEOUT * POLICY.attempts + (POLICY.max_wait + POLICY.jitter) * (POLICY.attempts - 1) + SLACK
"""How long a call may take to give up on a stalled server: every attempt's socket timeout, every
backoff at its longest, and slack for a busy machine."""
STALL_MS = 1500  # longer than BOUND, so the call gives up while the server is still stalled


@pytest.fixture(scope="module")
def server() -> Iterator[RedisServer]:
    """One redis-server for the stall and script tests (each test under its own prefix)."""
    require_redis_server()
    with RedisServer(extra_args=["--enable-debug-command", "yes"]) as running:
        yield running


@pytest.fixture
def admin(server: RedisServer) -> Iterator[redis.Redis]:
    with redis.Redis.from_url(server.url) as client:
        yield client


# -- stalls ----------------------------------------------------------------------------------------


def _send(port: int, command: bytes) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", port), timeout=5)
    sock.sendall(command)
    return sock


def _answers(port: int, within: float) -> bool:
    """Whether the server answers a PING within ``within`` seconds (False: it is stalled)."""
    with _send(port, b"PING\r\n") as sock:
        sock.settimeout(within)
        try:
            return sock.recv(16).startswith(b"+PONG")
        except TimeoutError:
            return False


def _state(pid: int) -> str:
    return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]


class Stall:
    """One stall of ``server``: ``begin()`` returns once the server is stalled, ``end()`` once it
    answers again (SIGCONT for SIGSTOP; the pause or sleep running out otherwise)."""

    def __init__(self, kind: str, server: RedisServer, admin: redis.Redis) -> None:
        self.kind, self.server, self.admin = kind, server, admin
        self.waiter: socket.socket | None = None  # answered when a pause or sleep is over
        assert server.process is not None
        self.pid = server.process.pid

    def begin(self) -> None:
        if self.kind == "client-pause":
            assert self.admin.client_pause(STALL_MS, all=True)
            self.waiter = _send(self.server.port, b"PING\r\n")
        elif self.kind == "debug-sleep":
            self.waiter = _send(self.server.port, f"DEBUG SLEEP {STALL_MS / 1000}\r\n".encode())
            # The sleep runs once the server has read the command: then a PING goes unanswered.
            wait_until(lambda: not _answers(self.server.port, 0.05), "DEBUG SLEEP began", 5)
        else:
            os.kill(self.pid, signal.SIGSTOP)
            wait_until(lambda: _state(self.pid) == "T", "redis-server stopped", 5)

    def end(self) -> None:
        if self.kind == "sigstop":
            os.kill(self.pid, signal.SIGCONT)
            wait_until(lambda: _answers(self.server.port, 0.5), "redis-server answers after SIGCONT", 5)
            return
        assert self.waiter is not None
        with self.waiter:
            self.waiter.settimeout(STALL_MS / 1000 + 5)
            assert self.waiter.recv(16).startswith((b"+PONG", b"+OK")), "the stall ended"
        self.waiter = None


STALLS = ["client-pause", "sigstop", "debug-sleep"]


def _in_use(client: Any, held: Any = None) -> int:
    """Connections out of the pool but ``held``: the synchronous lean line's, which a store that
    made its client keeps (``_aio_lean``); a fault disconnects it (checked where it is passed)."""
    return len([c for c in client.connection_pool._get_in_use_connections() if c is not held])


def _store_options(prefix: str) -> dict[str, Any]:
    return {
        "prefix": prefix,
        "retry": POLICY,
        "socket_timeout": TIMEOUT,
        "socket_connect_timeout": TIMEOUT,
    }


@pytest.mark.parametrize("kind", STALLS)
def test_a_stalled_server_times_out_then_recovers_sync(
    kind: str, server: RedisServer, admin: redis.Redis
) -> None:
    threads_before = set(threading.enumerate())
    with SessionStore.from_url(server.url, **_store_options(unique_prefix())) as store:
        sid = store.create()
        first, lost, after = (AgentMessage.user(text, id=text) for text in ("first", "lost", "after"))
        assert store.append(sid, first) == 1
        stall = Stall(kind, server, admin)
        stall.begin()
        try:
            started = time.monotonic()
            with pytest.raises(StoreUnavailable) as info:
                store.append(sid, lost)
            took = time.monotonic() - started
            held = store.transport.lean._held
            assert _in_use(store.client, held) == 0, "every connection went back to the pool"
            assert held is None or held._sock is None, "the held connection was dropped on the fault"
        finally:
            stall.end()
        landed = "lost" in ids(store.messages(sid))  # the timed-out write may run after the stall
        print(f"{kind} sync: StoreUnavailable after {took:.3f} s (bound {BOUND:.2f} s); applied: {landed}")
        assert took < BOUND
        assert info.value.attempts == POLICY.attempts
        assert info.value.session_id == sid
        # The stall is over: the next call succeeds at once, and a resend stores the message once.
        assert store.append(sid, lost) == 2
        assert store.append(sid, after) == 3
        assert ids(store.messages(sid)) == ["first", "lost", "after"]
        assert _in_use(store.client, store.transport.lean._held) == 0
    assert set(threading.enumerate()) == threads_before, "no thread left behind"


@pytest.mark.parametrize("kind", STALLS)
def test_a_stalled_server_times_out_then_recovers_async(
    kind: str, server: RedisServer, admin: redis.Redis
) -> None:
    async def scenario() -> float:
        async with AsyncSessionStore.from_url(server.url, **_store_options(unique_prefix())) as store:
            sid = await store.create()
            first, lost, after = (AgentMessage.user(text, id=text) for text in ("first", "lost", "after"))
            assert await store.append(sid, first) == 1
            stall = Stall(kind, server, admin)
            await asyncio.to_thread(stall.begin)
            try:
                started = time.monotonic()
                with pytest.raises(StoreUnavailable) as info:
                    async with asyncio.timeout(BOUND * 4):  # a hang fails here, not at the test timeout
                        await store.append(sid, lost)
                took = time.monotonic() - started
                assert _in_use(store.client) == 0, "every connection went back to the pool"
            finally:
                await asyncio.to_thread(stall.end)
            assert info.value.attempts == POLICY.attempts
            assert info.value.session_id == sid
            assert await store.append(sid, lost) == 2
            assert await store.append(sid, after) == 3
            assert ids(await store.messages(sid)) == ["first", "lost", "after"]
            assert _in_use(store.client) == 0
            assert asyncio.all_tasks() == {asyncio.current_task()}, "no task left behind"
            return took

    took = asyncio.run(scenario())
    print(f"{kind} async: StoreUnavailable after {took:.3f} s (bound {BOUND:.2f} s)")
    assert took < BOUND


def test_a_stall_under_a_shared_write_fails_each_caller_within_the_bound(
    server: RedisServer, admin: redis.Redis
) -> None:
    """Concurrent appends share writes (``_aio_pipelining``), whose replies are read with one
    deadline per write, not one per reply: a stalled server still fails each caller, on its own
    session, within the bound, and leaves no connection out of the pool and no task behind."""

    async def scenario() -> float:
        async with AsyncSessionStore.from_url(server.url, **_store_options(unique_prefix())) as store:
            sids = [await store.create() for _ in range(8)]
            # Concurrent, so the pool holds open connections: the stalled write is sent, not refused.
            firsts = [store.append(sid, AgentMessage.user("first", id="first")) for sid in sids]
            assert await asyncio.gather(*firsts) == [1] * len(sids)
            stall = Stall("sigstop", server, admin)
            await asyncio.to_thread(stall.begin)
            try:
                started = time.monotonic()
                async with asyncio.timeout(BOUND * 4):  # a hang fails here, not at the test timeout
                    outcomes = await asyncio.gather(
                        *(store.append(sid, AgentMessage.user("lost", id="lost")) for sid in sids),
                        return_exceptions=True,
                    )
                took = time.monotonic() - started
                assert _in_use(store.client) == 0, "every connection went back to the pool"
            finally:
                await asyncio.to_thread(stall.end)
            assert all(isinstance(outcome, StoreUnavailable) for outcome in outcomes), outcomes
            assert [outcome.session_id for outcome in outcomes] == sids  # type: ignore[union-attr]
            seqs = await asyncio.gather(
                *(store.append(sid, AgentMessage.user("lost", id="lost")) for sid in sids)
            )
            assert seqs == [2] * len(sids), "each stored once, after the stall"
            await store.transport.lean.settled()
            assert _in_use(store.client) == 0
            assert asyncio.all_tasks() == {asyncio.current_task()}, "no task left behind"
            return took

    took = asyncio.run(scenario())
    print(f"shared write: StoreUnavailable after {took:.3f} s (bound {BOUND:.2f} s)")
    assert took < BOUND


# -- script cache lost under concurrency -----------------------------------------------------------

FLUSHES = 5
STORM_APPENDS = 400


def _flush_among(
    admin: redis.Redis, acknowledged: dict[int, list[str]], running: Callable[[], bool], storm: bool
) -> int:
    """``SCRIPT FLUSH`` while the writers append; returns how many flushes were sent.

    One at a time (``storm=False``): the next flush only once every writer has finished two appends
    since the last returned, so each append meets at most one flush. A storm: back to back until the writers
    have made ``STORM_APPENDS`` appends, so an append's reload can itself be flushed away."""
    flushes = 0
    if storm:
        deadline = time.monotonic() + 10
        while sum(map(len, acknowledged.values())) < STORM_APPENDS and running():
            assert time.monotonic() < deadline, "the writers make progress through the storm"
            assert admin.script_flush()
            flushes += 1
        return flushes
    for _ in range(FLUSHES):
        assert admin.script_flush()
        flushes += 1
        # Two appends a writer finishes after the flush returned: the second was sent after the
        # flush, so whatever append met this flush is over before the next flush.
        marks = {w: len(own) for w, own in acknowledged.items()}
        wait_until(
            lambda: all(len(acknowledged[w]) >= n + 2 for w, n in marks.items()) or not running(),  # noqa: B023
            "every writer appends again",
            10,
        )
    return flushes


class ScriptLeak(AssertionError):
    """A caller saw the server's NOSCRIPT (wrapped or not): what the storm used to find, when a
    reload with SCRIPT LOAD could be flushed again before its EVALSHA."""


def _check_errors(errors: list[BaseException]) -> None:
    leaks = [e for e in errors if isinstance(e.__cause__ or e, redis.exceptions.NoScriptError)]
    others = [e for e in errors if e not in leaks]
    assert not others, f"a caller saw {others[0]!r}"
    if leaks:
        raise ScriptLeak(f"{len(leaks)} caller(s) saw NOSCRIPT: {leaks[0]!r}")


SPACING = [
    pytest.param(False, id="one-at-a-time"),
    pytest.param(True, id="storm"),
]


def _check_stored(stored: list[str], acknowledged: dict[int, list[str]]) -> int:
    duplicates = [i for i, n in Counter(stored).items() if n > 1]
    assert not duplicates, f"stored twice: {duplicates[:10]}"
    for writer, own in acknowledged.items():
        mine = [i for i in stored if i.startswith(f"w{writer}-")]
        assert mine == own, f"writer {writer}: every acknowledged append once, in order"
    return len(stored)


@pytest.mark.parametrize("storm", SPACING)
def test_script_flush_under_eight_threads(server: RedisServer, admin: redis.Redis, storm: bool) -> None:
    prefix = unique_prefix()
    stop = threading.Event()
    acknowledged: dict[int, list[str]] = {w: [] for w in range(8)}
    errors: list[BaseException] = []
    with SessionStore.from_url(server.url, prefix=prefix) as store:
        sid = store.create()

        def write(writer: int) -> None:
            try:
                index = 0
                while not stop.is_set():
                    message = AgentMessage.user("x", id=f"w{writer}-{index:05d}")
                    store.append(sid, message)
                    acknowledged[writer].append(message.id)
                    index += 1
            except BaseException as exc:  # any error reaching a caller fails the test
                errors.append(exc)

        threads = [threading.Thread(target=write, args=(w,)) for w in range(8)]
        for thread in threads:
            thread.start()
        try:
            flushes = _flush_among(admin, acknowledged, lambda: not errors, storm)
        finally:
            stop.set()
            for thread in threads:
                thread.join(10)
        assert not any(thread.is_alive() for thread in threads)
        _check_errors(errors)
        total = _check_stored(ids(store.messages(sid)), acknowledged)
    print(f"8 threads, {flushes} SCRIPT FLUSH: {total} appends, each stored once")
    assert total >= (STORM_APPENDS if storm else FLUSHES * 2 * len(acknowledged))


@pytest.mark.parametrize("storm", SPACING)
def test_script_flush_under_fifty_tasks(server: RedisServer, admin: redis.Redis, storm: bool) -> None:
    prefix = unique_prefix()
    acknowledged: dict[int, list[str]] = {w: [] for w in range(50)}

    async def scenario() -> tuple[int, int]:
        stop = asyncio.Event()
        async with AsyncSessionStore.from_url(server.url, prefix=prefix) as store:
            sid = await store.create()

            async def write(writer: int) -> None:
                index = 0
                while not stop.is_set():
                    message = AgentMessage.user("x", id=f"w{writer}-{index:05d}")
                    await store.append(sid, message)
                    acknowledged[writer].append(message.id)
                    index += 1

            writers = [asyncio.create_task(write(w)) for w in range(50)]
            flusher = asyncio.to_thread(
                _flush_among, admin, acknowledged, lambda: not any(w.done() for w in writers), storm
            )
            try:
                flushes = await flusher
            finally:
                stop.set()
                results = await asyncio.gather(*writers, return_exceptions=True)
            errors = [r for r in results if isinstance(r, BaseException)]
            _check_errors(errors)
            assert asyncio.all_tasks() == {asyncio.current_task()}
            return flushes, _check_stored(ids(await store.messages(sid)), acknowledged)

    flushes, total = asyncio.run(scenario())
    print(f"50 tasks, {flushes} SCRIPT FLUSH: {total} appends, each stored once")
    assert total >= (STORM_APPENDS if storm else FLUSHES * 2 * len(acknowledged))


# -- server SIGKILLed and restarted, with AOF ------------------------------------------------------

WRITERS = 3
PER_WRITER = 1500
KILLS = ((0.2, 0.0), (0.5, 1.5))
"""SIGKILL when this share of all appends is stored, and keep Redis down this long (seconds): the
first restart is within the writers' retries, the second outlasts them, so some appends raise."""


def test_sigkill_and_restart_with_aof_keeps_every_acknowledged_append(tmp_path: Path) -> None:
    require_redis_server()
    aof = ["--appendonly", "yes", "--appendfsync", "always"]
    server = RedisServer(directory=tmp_path, extra_args=aof).start()
    context = multiprocessing.get_context("spawn")
    results = context.Queue()
    barrier = context.Barrier(WRITERS)
    prefix = unique_prefix()
    writers: list[Any] = []
    try:
        with SessionStore.from_url(server.url, prefix=prefix) as store:
            sid = store.create()
        messages_key = session_keys(prefix, sid).messages
        args = (server.url, prefix, sid)
        writers = [
            context.Process(target=restart_writer, args=(*args, w, PER_WRITER, barrier, results))
            for w in range(WRITERS)
        ]
        for process in writers:
            process.start()
        downtimes: list[float] = []
        for share, down in KILLS:
            with redis.Redis.from_url(server.url, socket_timeout=5) as raw:
                wait_until(
                    lambda: raw.llen(messages_key) >= share * WRITERS * PER_WRITER,  # noqa: B023
                    f"{share:.0%} of the appends stored",
                    60,
                )
            assert server.process is not None
            assert all(process.is_alive() for process in writers), "the kill lands mid-stream"
            killed = time.monotonic()
            server.process.kill()  # SIGKILL: no shutdown; only what the AOF holds survives
            server.process.wait(10)
            server.stop()  # reaps the process; the directory is the test's, so it stays
            time.sleep(down)  # the fault's duration: Redis is down
            server.start()  # same port, same directory: Redis replays the AOF, with no scripts
            downtimes.append(time.monotonic() - killed)
        outcomes = [results.get(timeout=60) for _ in writers]
        for process in writers:
            process.join(10)
        with SessionStore.from_url(server.url, prefix=prefix) as store:
            stored = ids(store.messages(sid))
            seq = store.load(sid).seq  # type: ignore[union-attr]
    finally:
        for process in writers:
            if process.is_alive():
                process.kill()
                process.join()
        server.stop()

    errors = [error for _, error, *_ in outcomes if error]
    assert not errors, errors[0]
    acknowledged = {writer: acked for writer, _, acked, _, _ in outcomes}
    failed = {writer: lost for writer, _, _, lost, _ in outcomes}
    sends = sum(n for *_, n in outcomes)
    counts = Counter(stored)
    assert [i for i, n in counts.items() if n > 1] == [], "no message stored twice"
    for writer in range(WRITERS):
        mine = [i for i in stored if i.startswith(f"w{writer}-")]
        assert [i for i in mine if i in set(acknowledged[writer])] == acknowledged[writer], (
            f"writer {writer}: every acknowledged append present, in order"
        )
        assert set(mine) <= set(acknowledged[writer]) | set(failed[writer]), "nothing never sent"
        assert sorted(mine) == mine, f"writer {writer}: its own order"
    assert seq == len(stored), "seq counts each stored message once"
    total_acked = sum(map(len, acknowledged.values()))
    total_failed = sum(map(len, failed.values()))
    assert total_acked + total_failed == WRITERS * PER_WRITER, "every message acknowledged or failed"
    assert total_failed > 0, "the long outage made some appends raise"
    assert sends > WRITERS * PER_WRITER, "and writers sent them again"
    present_failed = sum(1 for lost in failed.values() for i in lost if i in counts)
    print(
        f"restart: {len(KILLS)} SIGKILLs (down {', '.join(f'{d:.2f}' for d in downtimes)} s);"
        f" messages {WRITERS * PER_WRITER}, sends {sends}, acknowledged {total_acked},"
        f" failed {total_failed} (of which present {present_failed}), stored {len(stored)}"
    )
