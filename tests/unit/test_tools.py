"""The sans-IO tool-call operations (``_tools``): the calls they build and how they read replies."""

from __future__ import annotations

import uuid
from typing import Any

import pytest
from redis.crc import key_slot

from redis_sessions import AgentMessage, CorruptSession, LeaseLost, ToolCallPending, ToolResult
from redis_sessions import _tools as tools
from redis_sessions._calls import Script
from redis_sessions._core import DEFAULT_MAX_MESSAGE_BYTES, StoreCore
from redis_sessions._protocol import Status
from redis_sessions.keys import script_keys, tokens_key, tools_key

SID = uuid.UUID("0b7c6a52-7f3e-4d2a-9c1b-5e8f00a1b2c3")


def core() -> StoreCore:
    return StoreCore(
        prefix="rs", ttl=None, max_messages=None, codec="msgpack", max_message_bytes=DEFAULT_MAX_MESSAGE_BYTES
    )


def stored(tool_use_id: str = "toolu_1", content: str = "ok") -> bytes:
    message = AgentMessage.tool_result(tool_use_id, content, id=tools.result_id(tool_use_id))
    return core().encode(SID, message)


def test_every_call_is_one_script_on_the_sessions_slot() -> None:
    c = core()
    calls: list[Script[Any]] = [
        tools.claim(c, SID, "toolu_1", "ab12", "w", 1000, None),
        tools.release(c, SID, "toolu_1", "ab12"),
        tools.complete(c, SID, "toolu_1", "ab12", "ok", False, 3),
    ]
    for call in calls:
        assert (call.script, call.op, call.sid) == ("tool_call", "tool_call", SID)
        assert call.keys == (*script_keys("rs", SID, False), tools_key("rs", SID), tokens_key("rs", SID))
        assert {key_slot(k.encode()) for k in call.keys if "dirty" not in k} == {key_slot(str(SID).encode())}
    assert calls[2].args[5] == 3  # the fence
    assert calls[2].args[6] == "tool_result:toolu_1"


def test_a_claim_reads_claimed_done_and_pending() -> None:
    claim = tools.claim(core(), SID, "toolu_1", "ab12", "w", 1000, None)
    assert claim.parse([Status.OK, 2]) == tools.Claim(2, False)
    done = claim.parse([Status.TOOL_DONE, 1, 5, stored()])
    assert done == tools.Claim(1, True, 5, ToolResult("toolu_1", "ok"))
    assert claim.parse([Status.TOOL_DONE, 1, 5, b""]) == tools.Claim(1, True, 5, None)  # trimmed away
    with pytest.raises(ToolCallPending) as info:
        claim.parse([Status.TOOL_PENDING, b"worker-a", 2500, 1])
    error = info.value
    assert (error.session_id, error.tool_use_id, error.holder, error.attempt) == (
        SID,
        "toolu_1",
        "worker-a",
        1,
    )
    assert error.retry_after == 2.5


def test_a_completion_says_whether_it_was_the_one_stored() -> None:
    complete = tools.complete(core(), SID, "toolu_1", "ab12", "ok", False, 7)
    assert complete.parse([Status.OK, 3, stored(), 1]) == tools.Completion(
        3, ToolResult("toolu_1", "ok"), True
    )
    first = complete.parse([Status.OK, 3, stored(content="first"), 0])
    assert first == tools.Completion(3, ToolResult("toolu_1", "first"), False)
    with pytest.raises(LeaseLost) as info:
        complete.parse([Status.LEASE_LOST, b""])
    assert info.value.token == 7


def test_a_stored_message_without_the_result_is_corrupt() -> None:
    claim = tools.claim(core(), SID, "toolu_1", "ab12", "w", 1000, None)
    other = core().encode(SID, AgentMessage.user("not a result", id=tools.result_id("toolu_1")))
    with pytest.raises(CorruptSession, match="no ToolResult for tool call 'toolu_1'"):
        claim.parse([Status.TOOL_DONE, 1, 4, other])


def test_the_pending_error_survives_pickling() -> None:
    import pickle

    error = ToolCallPending(SID, "toolu_1", "worker-a", 2, 1.5)
    again = pickle.loads(pickle.dumps(error))
    assert (again.holder, again.attempt, again.retry_after, str(again)) == ("worker-a", 2, 1.5, str(error))
