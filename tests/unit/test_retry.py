"""The retry policy: validation, what is retried, and how often (no Redis needed)."""

from __future__ import annotations

import dataclasses
import os

import pytest
import redis.exceptions

from redis_sessions import RetryPolicy
from redis_sessions.retry import ASYNC_NO_CLIENT_RETRY, NO_CLIENT_RETRY, TRANSIENT, driver_fault

FAST = RetryPolicy(attempts=3, initial=0.001, max_wait=0.002, jitter=0.001)


def test_defaults_are_bounded() -> None:
    policy = RetryPolicy()
    assert policy.attempts >= 2
    assert 0 < policy.initial <= policy.max_wait
    assert policy.jitter >= 0


@pytest.mark.parametrize("attempts", [0, -1])
def test_attempts_must_be_at_least_one(attempts: int) -> None:
    with pytest.raises(ValueError, match="attempts"):
        RetryPolicy(attempts=attempts)


def test_policy_is_frozen() -> None:
    with pytest.raises(dataclasses.FrozenInstanceError):
        FAST.attempts = 10  # type: ignore[misc]


def test_transient_errors_are_transport_and_cluster_handovers() -> None:
    assert set(TRANSIENT) == {
        redis.exceptions.ConnectionError,
        redis.exceptions.TimeoutError,
        redis.exceptions.ClusterDownError,
        redis.exceptions.TryAgainError,
        redis.exceptions.SlotNotCoveredError,
    }
    assert issubclass(redis.exceptions.BusyLoadingError, TRANSIENT)
    assert issubclass(redis.exceptions.MasterDownError, TRANSIENT)
    # Redirections are the cluster client's own business, and errors in a script are final.
    assert not issubclass(redis.exceptions.MovedError, TRANSIENT)
    assert not issubclass(redis.exceptions.AskError, TRANSIENT)
    assert not issubclass(redis.exceptions.ResponseError, TRANSIENT)


def test_client_retry_is_off() -> None:
    assert NO_CLIENT_RETRY.get_retries() == 0
    assert ASYNC_NO_CLIENT_RETRY.get_retries() == 0


def failing(error: Exception, calls: list[int]) -> None:
    calls.append(1)
    raise error


def retry_sync(policy: RetryPolicy, error: Exception) -> None:
    """Run a call that always fails with ``error`` under ``policy``; reraise it with the call count."""
    calls: list[int] = []
    try:
        for attempt in policy.retrying():
            with attempt:
                failing(error, calls)
    except type(error) as exc:
        exc.add_note(f"calls={len(calls)}")
        raise
    raise AssertionError("the policy swallowed the error")


async def retry_async(policy: RetryPolicy, error: Exception) -> None:
    calls: list[int] = []
    try:
        async for attempt in policy.async_retrying():
            with attempt:
                failing(error, calls)
    except type(error) as exc:
        exc.add_note(f"calls={len(calls)}")
        raise
    raise AssertionError("the policy swallowed the error")


@pytest.mark.parametrize("attempts", [1, 2, 5])
def test_transport_errors_are_retried_attempts_times(attempts: int) -> None:
    policy = dataclasses.replace(FAST, attempts=attempts)
    with pytest.raises(redis.exceptions.ConnectionError) as info:
        retry_sync(policy, redis.exceptions.ConnectionError("down"))
    assert info.value.__notes__ == [f"calls={attempts}"]


def test_timeouts_are_retried_then_success_returns() -> None:
    calls: list[int] = []
    for attempt in FAST.retrying():
        with attempt:
            if len(calls) < 2:
                failing(redis.exceptions.TimeoutError("slow"), calls)
            calls.append(0)
    assert calls == [1, 1, 0]


@pytest.mark.parametrize(
    "error",
    [redis.exceptions.ResponseError("WRONGTYPE"), ValueError("bug"), redis.exceptions.DataError("x")],
)
def test_other_errors_are_not_retried(error: Exception) -> None:
    with pytest.raises(type(error)) as info:
        retry_sync(FAST, error)
    assert info.value.__notes__ == ["calls=1"]


async def test_async_retrying_counts_the_same() -> None:
    with pytest.raises(redis.exceptions.ConnectionError) as info:
        await retry_async(FAST, redis.exceptions.ConnectionError("down"))
    assert info.value.__notes__ == [f"calls={FAST.attempts}"]


def test_each_call_gets_a_fresh_controller() -> None:
    assert FAST.retrying() is not FAST.retrying()


def _raised_in(filename: str, source: str) -> BaseException:
    namespace: dict[str, object] = {}
    exec(compile(f"def fault():\n    {source}\n", filename, "exec"), namespace)
    try:
        namespace["fault"]()  # type: ignore[operator]
    except Exception as exc:
        return exc
    raise AssertionError("the snippet should raise")


def test_a_fault_inside_redis_py_connection_code_counts_as_a_broken_connection() -> None:
    inside = os.path.join("site-packages", "redis", "asyncio", "connection.py")
    assert driver_fault(_raised_in(inside, "None.writelines([])"))
    assert driver_fault(_raised_in(inside, "(lambda: None)()()"))  # TypeError: not callable
    sync_inside = os.path.join("site-packages", "redis", "connection.py")
    assert driver_fault(_raised_in(sync_inside, "None.sendall(b'')"))


def test_the_same_errors_elsewhere_are_bugs_not_faults() -> None:
    assert not driver_fault(_raised_in("mine.py", "None.writelines([])"))
    assert not driver_fault(_raised_in(os.path.join("redis", "client.py"), "None.x"))
    assert not driver_fault(redis.exceptions.ConnectionError("down"))
