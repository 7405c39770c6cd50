"""The WAIT knob's pure parts: its configuration, its verdict, and which WAIT errors are handovers."""

from __future__ import annotations

import uuid
from datetime import timedelta

import pytest
import redis.exceptions

from redis_sessions import NotReplicated
from redis_sessions._calls import Script
from redis_sessions._replication import WRITE_SCRIPTS, Wait, handover, wait_for
from redis_sessions._scripts import SCRIPTS
from redis_sessions.retry import TRANSIENT

SID = uuid.UUID("a1b2c3d4-e5f6-4a7b-8c9d-0e1f2a3b4c5d")
CALL = Script[int]("append", SID, "append", (), (), int)


def test_zero_replicas_turns_the_knob_off() -> None:
    assert wait_for(0, 1.0) is None
    assert wait_for(2, timedelta(milliseconds=250)) == Wait(2, 250)
    assert Wait(2, 250).command == ("WAIT", 2, 250)


@pytest.mark.parametrize("bad", [-1, 1.5, "1", None, True])
def test_replicas_must_be_a_non_negative_int(bad: object) -> None:
    with pytest.raises(ValueError, match="wait_replicas"):
        wait_for(bad, 1.0)  # type: ignore[arg-type]


def test_too_few_confirmations_name_the_session() -> None:
    Wait(1, 100).check(CALL, 1)
    Wait(1, 100).check(CALL, 2)
    with pytest.raises(NotReplicated) as info:
        Wait(2, 100).check(CALL, 1)
    assert info.value.session_id == SID
    assert (info.value.acknowledged, info.value.required) == (1, 2)
    assert str(SID) in str(info.value)
    assert "100 ms" in str(info.value)


def test_write_scripts_are_scripts_and_exclude_reads() -> None:
    assert SCRIPTS.keys() >= WRITE_SCRIPTS
    assert not WRITE_SCRIPTS & {"read_since", "read_after"}


@pytest.mark.parametrize(
    "text",
    [
        "UNBLOCKED force unblock from blocking operation, instance state changed (master -> replica?)",
        "WAIT cannot be used with replica instances. Please also note that...",
    ],
)
def test_a_demoted_primary_is_a_handover_worth_retrying(text: str) -> None:
    mapped = handover(redis.exceptions.ResponseError(text))
    assert isinstance(mapped, TRANSIENT)
    assert text in str(mapped)


def test_other_wait_errors_stay_what_they_are() -> None:
    error = redis.exceptions.ResponseError("NOPERM this user has no permissions to run the 'wait' command")
    assert handover(error) is error
