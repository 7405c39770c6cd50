"""Tool calls that run once (issue 19, part 2): ``store.tool_call`` claims a call, ``complete``
appends its ``ToolResult`` and records it in one step, and every later claimant finds it done.

On the backend table (fakeredis, a real server, a real cluster; sync and async), then across OS
processes, a SIGKILLed holder, a lost reply, and a durable store.
"""

from __future__ import annotations

import asyncio
import multiprocessing
import os
import signal
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from redis_sessions import (
    AgentMessage,
    AsyncSessionStore,
    InvalidMessage,
    LeaseLost,
    RetryPolicy,
    Role,
    SessionNotFound,
    SessionStore,
    ToolCallPending,
    ToolResult,
)
from redis_sessions.errors import InvalidArgumentType, InvalidOperation
from redis_sessions.keys import session_keys, tools_key
from redis_sessions.persistence import SQLiteAdapter
from tests.conftest import Store
from tests.integration.durable_support import flush
from tests.integration.faults import LossyProxy
from tests.integration.tool_workers import claim_and_hang, race_worker
from tests.support import AsyncAdapter, Backend, expect_no_change, opened_stores, run_processes, wait_until

REAL = [pytest.param("real", marks=pytest.mark.real)]
REAL_AND_CLUSTER = [
    pytest.param("real", marks=pytest.mark.real),
    pytest.param("cluster", marks=[pytest.mark.real, pytest.mark.cluster]),
]


def tool_messages(store: Store, sid: uuid.UUID) -> list[AgentMessage]:
    return [m for m in store.messages(sid) if m.role == Role.TOOL]


# -- one worker -------------------------------------------------------------------------------------


def test_a_completed_call_is_done_for_every_later_claimant(store: Store) -> None:
    sid = store.create()
    store.append(sid, AgentMessage.user("pay the invoice"))
    runs = 0
    with store.tool_call(sid, "toolu_1") as call:
        assert (call.done, call.attempt, call.result) == (False, 1, None)
        runs += 1
        result = call.complete("paid: 42 EUR")
    assert result == ToolResult("toolu_1", "paid: 42 EUR")
    assert (call.done, call.stored, call.seq) == (True, True, 2)
    for _ in range(2):
        with store.tool_call(sid, "toolu_1") as again:
            if not again.done:
                runs += 1
            assert again.result == result
            assert (again.seq, again.attempt) == (2, 1)
            assert again.complete("paid twice") == result  # done: nothing is sent, nothing stored
    assert runs == 1
    (stored,) = tool_messages(store, sid)
    assert stored.content == [result]
    assert stored.id == "tool_result:toolu_1"


def test_a_live_claim_makes_another_claimant_wait(store: Store) -> None:
    sid = store.create()
    with store.tool_call(sid, "toolu_1", owner="worker-a", ttl=30):
        with pytest.raises(ToolCallPending) as info, store.tool_call(sid, "toolu_1", owner="worker-b"):
            pytest.fail("entered a call another worker holds")
        error = info.value
        assert (error.session_id, error.tool_use_id, error.holder, error.attempt) == (
            sid,
            "toolu_1",
            "worker-a",
            1,
        )
        assert 25 < error.retry_after <= 30
        assert "worker-a" in str(error)
        assert str(sid) in str(error)
        with store.tool_call(sid, "toolu_2") as other:  # other tool calls are not held
            assert other.attempt == 1


def test_an_exception_releases_the_claim_for_the_next_attempt(store: Store) -> None:
    sid = store.create()
    with pytest.raises(RuntimeError, match="provider down"), store.tool_call(sid, "toolu_1"):
        raise RuntimeError("provider down")
    with store.tool_call(sid, "toolu_1") as call:  # no ToolCallPending: the claim was released
        assert (call.done, call.attempt) == (False, 2)
    with store.tool_call(sid, "toolu_1") as call:  # left without complete(): released too
        assert call.attempt == 3
        call.complete("ok")
    assert len(tool_messages(store, sid)) == 1


def test_an_expired_claim_gives_the_next_attempt_and_the_first_result_wins(store: Store) -> None:
    sid = store.create()
    slow = store.tool_call(sid, "toolu_1", ttl=0.2, owner="slow").claim()
    time.sleep(0.3)
    with store.tool_call(sid, "toolu_1", owner="retrier") as retry:
        assert (retry.done, retry.attempt) == (False, 2)
        assert slow.complete("from the slow one") == ToolResult("toolu_1", "from the slow one")
        assert slow.stored
        # The retrier finishes second: it gets the stored result back, and stores nothing.
        assert retry.complete("from the retrier") == ToolResult("toolu_1", "from the slow one")
        assert not retry.stored
    (stored,) = tool_messages(store, sid)
    assert stored.content == [ToolResult("toolu_1", "from the slow one")]


def test_extend_keeps_a_long_tool_claimed(store: Store) -> None:
    sid = store.create()
    with store.tool_call(sid, "toolu_1", ttl=0.3, owner="slow") as call:
        time.sleep(0.2)
        call.extend(5)
        time.sleep(0.2)  # past the first ttl: still held
        with pytest.raises(ToolCallPending) as info, store.tool_call(sid, "toolu_1"):
            pytest.fail("entered a call whose claim was extended")
        assert info.value.retry_after > 4
        call.extend(0.2)
        time.sleep(0.3)
        call.extend()  # lapsed, but nobody claimed it since: taken back, the same attempt
        assert (call.attempt, call.done) == (1, False)
        call.complete("done at last")
    lapsed = store.tool_call(sid, "toolu_2", ttl=0.2).claim()
    time.sleep(0.3)
    with store.tool_call(sid, "toolu_2") as other:
        assert other.attempt == 2
        with pytest.raises(ToolCallPending):
            lapsed.extend()  # another worker claimed it after the lapse
        other.complete("by the other")
    lapsed.extend()  # done meanwhile: extend finds the result
    assert lapsed.done
    assert lapsed.result == ToolResult("toolu_2", "by the other")
    gone = store.tool_call(sid, "toolu_3", ttl=0.2).claim()
    time.sleep(0.3)
    with store.tool_call(sid, "toolu_3") as between:  # claims attempt 2, then gives up
        assert between.attempt == 2
    gone.extend()
    assert (gone.attempt, gone.done) == (3, False), "others claimed it meanwhile: a new attempt"
    gone.complete("by the first, after all")


def test_a_result_is_stored_with_its_error_flag_and_blocks(store: Store) -> None:
    from redis_sessions import Text

    sid = store.create()
    with store.tool_call(sid, "a") as call:
        assert call.complete([Text("card declined")], is_error=True) == ToolResult(
            "a", [Text("card declined")], True
        )
    with store.tool_call(sid, "a") as call:
        assert call.result == ToolResult("a", [Text("card declined")], True)


def test_a_fence_refuses_claim_and_complete_once_the_lease_is_gone(store: Store, backend: Backend) -> None:
    sid = store.create()
    lease = store.lease(sid, "turn-worker", ttl=30).acquire()
    token = lease.token
    with store.tool_call(sid, "toolu_1", fence=token) as call:
        lease.release()  # the turn passed on while the tool ran
        check = expect_no_change(backend)
        with pytest.raises(LeaseLost) as info:
            call.complete("too late")
        check()
        assert info.value.token == token
    with pytest.raises(LeaseLost), store.tool_call(sid, "toolu_2", fence=token):
        pytest.fail("claimed under a dead lease")
    with (
        store.lease(sid, "next-worker", ttl=30) as live,
        store.tool_call(sid, "toolu_1", fence=live.token) as call,
    ):
        assert call.attempt == 2  # the fenced-out claim was released on the way out
        call.complete("under the live lease")
    assert len(tool_messages(store, sid)) == 1


def test_delete_takes_the_tool_calls_with_the_session(store: Store, backend: Backend) -> None:
    sid = store.create()
    with store.tool_call(sid, "toolu_1") as call:
        call.complete("done")
    assert backend.raw.exists(tools_key(backend.prefix, sid))
    store.delete(sid)
    assert not backend.raw.exists(tools_key(backend.prefix, sid))
    store.create(session_id=sid)
    with store.tool_call(sid, "toolu_1") as call:  # a new incarnation: its own tool calls
        assert (call.done, call.attempt) == (False, 1)


def test_the_result_message_alone_marks_the_call_done(store: Store, backend: Backend) -> None:
    # The tool calls hash expired (it has the session's ttl) but the messages are there: still done.
    sid = store.create()
    with store.tool_call(sid, "toolu_1") as call:
        call.complete("done")
    store.extend(sid, [AgentMessage.user("thanks"), AgentMessage.assistant("welcome")])
    backend.raw.delete(tools_key(backend.prefix, sid))
    with store.tool_call(sid, "toolu_1") as again:
        assert again.done
        assert again.result == ToolResult("toolu_1", "done")
        assert again.seq == 1
    assert len(tool_messages(store, sid)) == 1


def test_a_session_deleted_while_the_tool_ran_is_left_quietly(store: Store) -> None:
    sid = store.create()
    with store.tool_call(sid, "toolu_1"):
        store.delete(sid)
    assert not store.exists(sid)


def test_tool_call_state_expires_with_a_session_ttl(
    make_store: Callable[..., Store], backend: Backend
) -> None:
    store = make_store(ttl=60)
    sid = store.create()
    with store.tool_call(sid, "toolu_1", ttl=5):
        ttl = backend.raw.pttl(tools_key(backend.prefix, sid))
        assert 55_000 < ttl <= 60_000


def test_a_bad_result_is_refused_and_nothing_is_stored(store: Store, backend: Backend) -> None:
    # (tool_call's own arguments are checked before any I/O: tests/unit/test_validation.py)
    sid = store.create()
    with store.tool_call(sid, "t") as call:
        check = expect_no_change(backend)
        with pytest.raises(InvalidMessage) as invalid:
            call.complete(42)  # type: ignore[arg-type]
        assert invalid.value.session_id == sid
        with pytest.raises(InvalidArgumentType):
            call.complete("ok", is_error="yes")  # type: ignore[arg-type]
        check()
    assert tool_messages(store, sid) == []
    with pytest.raises(SessionNotFound), store.tool_call(uuid.uuid4(), "t"):
        pass
    with pytest.raises(InvalidOperation):
        store.tool_call(sid, "t").complete("not claimed")


# -- many coroutines --------------------------------------------------------------------------------


async def test_coroutines_racing_for_one_call_run_the_tool_once(backend: Backend) -> None:
    client = backend.async_client()
    store = AsyncSessionStore(client, prefix=backend.prefix)
    sid = await store.create()
    runs = 0

    async def worker(n: int) -> ToolResult | None:
        nonlocal runs
        while True:
            try:
                async with store.tool_call(sid, "toolu_1", owner=f"task-{n}") as call:
                    if not call.done:
                        runs += 1
                        await asyncio.sleep(0.05)
                        await call.complete(f"by task {n}")
                    return call.result
            except ToolCallPending as pending:
                await asyncio.sleep(min(pending.retry_after, 0.01))

    try:
        results = await asyncio.gather(*(worker(n) for n in range(20)))
        assert runs == 1
        assert len(set(results)) == 1
        assert [m.role for m in await store.messages(sid)] == [Role.TOOL]
    finally:
        await client.aclose()


# -- many processes ---------------------------------------------------------------------------------

WORKERS = 4


@pytest.mark.parametrize("backend", REAL, indirect=True)
def test_processes_racing_for_one_call_run_the_tool_once(backend: Backend, redis_url: str) -> None:
    with SessionStore.from_url(redis_url, prefix=backend.prefix) as store:
        sid = store.create()
        counter = f"{backend.prefix}:runs"
        context = multiprocessing.get_context("spawn")
        barrier = context.Barrier(WORKERS)
        results = context.Queue()
        processes = [
            context.Process(
                target=race_worker,
                args=(redis_url, backend.prefix, sid, "toolu_pay", counter, n, barrier, results),
                daemon=True,
            )
            for n in range(WORKERS)
        ]
        outcomes = run_processes(processes, results, timeout=90)
        errors = [error for _, error, _, _, _ in outcomes if error]
        assert not errors, "\n".join(errors)
        assert int(backend.raw.get(counter)) == 1, "the tool ran more than once"
        assert sum(ran for _, _, ran, _, _ in outcomes) == 1
        assert len({content for _, _, _, content, _ in outcomes}) == 1, "workers saw different results"
        assert all(attempt == 1 for _, _, _, _, attempt in outcomes)
        (stored,) = tool_messages(store, sid)
        assert stored.content[0].content == outcomes[0][3]  # type: ignore[union-attr]


@pytest.mark.parametrize("backend", REAL, indirect=True)
def test_a_holder_killed_mid_tool_lets_the_next_claim_in_after_expiry(
    backend: Backend, redis_url: str
) -> None:
    with SessionStore.from_url(redis_url, prefix=backend.prefix) as store:
        sid = store.create()
        context = multiprocessing.get_context("spawn")
        claimed = context.Queue()
        holder = context.Process(
            target=claim_and_hang,
            args=(redis_url, backend.prefix, sid, "toolu_mail", 4.0, claimed),
            daemon=True,
        )
        holder.start()
        try:
            assert claimed.get(timeout=60) == 1
            assert holder.pid is not None
            os.kill(holder.pid, signal.SIGKILL)
            holder.join(timeout=10)
        finally:
            if holder.is_alive():
                holder.kill()
        assert holder.exitcode == -signal.SIGKILL
        with pytest.raises(ToolCallPending) as info, store.tool_call(sid, "toolu_mail"):
            pytest.fail("entered while the dead holder's claim was live")
        assert info.value.holder == "doomed-worker"

        def attempt_two() -> bool:
            try:
                with store.tool_call(sid, "toolu_mail") as call:
                    assert (call.done, call.attempt) == (False, 2)
                    call.complete("sent (after checking the outbox)")
                    return True
            except ToolCallPending:
                return False

        wait_until(attempt_two, "the dead holder's claim expired", timeout=15)
        assert len(tool_messages(store, sid)) == 1


# -- a lost reply ------------------------------------------------------------------------------------


@pytest.mark.parametrize("backend", REAL, indirect=True)
@pytest.mark.parametrize("front", ["sync", "async"])
def test_a_retry_after_a_lost_reply_stores_one_result(backend: Backend, redis_url: str, front: str) -> None:
    host, port = redis_url.removeprefix("redis://").split("/")[0].split(":")
    policy = RetryPolicy(attempts=3, initial=0.01, max_wait=0.02)
    with LossyProxy(host, int(port)) as proxy, asyncio.Runner() as runner:
        store: Any
        if front == "sync":
            store = SessionStore.from_url(proxy.url, prefix=backend.prefix, retry=policy)
        else:
            store = AsyncAdapter(
                AsyncSessionStore.from_url(proxy.url, prefix=backend.prefix, retry=policy), runner
            )
        try:
            sid = store.create()
            proxy.lose_replies(1)  # the claim runs, its reply is lost, the retry is this very claim
            with store.tool_call(sid, "toolu_1") as call:
                assert (call.done, call.attempt) == (False, 1)
                proxy.lose_replies(1)  # complete runs, its reply is lost, the retry finds it stored
                result = call.complete("paid")
            assert proxy.lost == 2
            assert result == ToolResult("toolu_1", "paid")
            assert call.stored, "the stored result is this call's own, though the reply was lost"
            assert [m.id for m in tool_messages(store, sid)] == ["tool_result:toolu_1"]
            assert store.load(sid).seq == 1
        finally:
            store.close()


# -- a durable store ---------------------------------------------------------------------------------


@pytest.fixture
def tiered(backend: Backend, front: str, database: SQLiteAdapter) -> Iterator[Callable[..., Any]]:
    """``tiered()``: a store made by from_url/from_cluster with ``backing=database``."""
    opener = "from_cluster" if backend.cluster else "from_url"
    assert backend.url is not None
    url = backend.url
    with opened_stores(front) as make:
        yield lambda: make(url, opener, prefix=backend.prefix, backing=database)


@pytest.mark.parametrize("backend", REAL_AND_CLUSTER, indirect=True)
def test_a_durable_sessions_result_reaches_the_record_and_survives_redis(
    tiered: Callable[..., Any], database: SQLiteAdapter, backend: Backend
) -> None:
    store = tiered()
    sid = store.create()
    store.append(sid, AgentMessage.user("book it"))
    with store.tool_call(sid, "toolu_book") as call:
        call.complete("booked: ref 7")
    flush(store)
    record = database.load_session(sid)
    assert record is not None
    assert [m.id for m in record.messages][-1] == "tool_result:toolu_book"
    assert record.messages[-1].content == [ToolResult("toolu_book", "booked: ref 7")]
    # Redis loses the session (and its tool calls): a claim reads it back and finds the call done.
    keys = session_keys(backend.prefix, sid)
    for key in (*keys, tools_key(backend.prefix, sid)):
        backend.raw.delete(key)
    with store.tool_call(sid, "toolu_book") as again:
        assert again.done
        assert again.result == ToolResult("toolu_book", "booked: ref 7")
    assert len(tool_messages(store, sid)) == 1


# -- the docs' example (docs/multi-agent.md) -----------------------------------------------------------------


@pytest.mark.parametrize("backend", REAL, indirect=True)
def test_the_readme_example_runs(
    backend: Backend, redis_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    readme = (Path(__file__).resolve().parents[2] / "docs" / "multi-agent.md").read_text("utf-8")
    section = readme[readme.index("## Tool calls that run once") :]
    code = section[section.index("```python\n") + 10 : section.index("```\n", section.index("```python"))]
    given = 'SessionStore.from_url("redis://localhost:6379/0")'
    assert given in code
    code = code.replace(given, f'SessionStore.from_url("{redis_url}", prefix="{backend.prefix}")')
    exec(compile(code, "docs/multi-agent.md", "exec"), {})
    assert "content='charged 42 EUR'" in capsys.readouterr().out
