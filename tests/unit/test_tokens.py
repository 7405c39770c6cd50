"""Token counts without Redis: the default estimate, where a context may start, and the arguments
``context``, ``summarize``, ``compact`` and ``fork`` refuse before any I/O (once per front)."""

from __future__ import annotations

import uuid
from typing import Any

import pytest

from redis_sessions import AgentMessage, Image, Text, ToolResult, ToolUse
from redis_sessions.errors import InvalidArgument, InvalidArgumentType
from redis_sessions.tokens import IMAGE_TOKENS, MESSAGE_OVERHEAD, estimate_tokens, is_tool_result, keep_newest
from tests.conftest import MakeStore

SID = uuid.UUID("9e8d7c6b-5a49-4382-a1b0-c9d8e7f6a5b4")


def test_the_estimate_is_a_token_per_four_characters_plus_overheads() -> None:
    assert estimate_tokens(AgentMessage.user("x" * 40)) == MESSAGE_OVERHEAD + 3 + 10
    assert estimate_tokens(AgentMessage.user("x" * 41)) == MESSAGE_OVERHEAD + 3 + 11  # rounds up
    use = AgentMessage.assistant([ToolUse("t", "find", {"q": "x" * 30})])  # {"q":"xxx..."}: 38 bytes
    assert estimate_tokens(use) == MESSAGE_OVERHEAD + 3 + 1 + 10
    image = AgentMessage.user("")
    picture = AgentMessage(image.role, [Image("image/png", b"\x89PNG")])
    assert estimate_tokens(picture) == MESSAGE_OVERHEAD + 3 + IMAGE_TOKENS
    result = AgentMessage(image.role, [ToolResult("t", [Text("x" * 8), Image("image/png", b"")])])
    assert estimate_tokens(result) == MESSAGE_OVERHEAD + 3 + 2 + IMAGE_TOKENS


def test_a_context_never_starts_on_a_tool_result() -> None:
    user, use = AgentMessage.user("q"), AgentMessage.assistant([ToolUse("t", "f", {})])
    result = AgentMessage.tool_result("t", "ok")
    inline = AgentMessage(user.role, [ToolResult("t", "ok")])  # a user message carrying a result
    assert [is_tool_result(m) for m in (user, use, result, inline)] == [False, False, True, True]
    history = [user, use, result, inline, user]
    assert keep_newest(history, [1] * 5, 3) == 4  # both results cut from their use: dropped
    assert keep_newest(history, [1] * 5, 4) == 1
    assert keep_newest(history, [1] * 5, 0) == 5
    assert keep_newest(history, [5, 1, 1, 1, 1], 9) == 0
    assert keep_newest(history, [5, 1, 1, 1, 1], 8) == 1


@pytest.mark.parametrize(
    "call",
    [
        lambda s: s.context(SID, -1),
        lambda s: s.context(SID, 10, reserve=-1),
        lambda s: s.context(SID, 10, reserve=11),
        lambda s: s.context(SID, 1.5),
        lambda s: s.summarize(SID, "x", through_seq=-1),
        lambda s: s.summarize(SID, "x", through_seq=1, expected=-2),
        lambda s: s.summarize(SID, 42, through_seq=1),
        lambda s: s.compact(SID, str, over_tokens=10, keep_tokens=10),
        lambda s: s.compact(SID, str, over_tokens=-1, keep_tokens=0),
        lambda s: s.fork(SID, at_seq=-1),
        lambda s: s.fork(SID, new_id=SID),
    ],
)
def test_bad_arguments_are_refused_before_any_redis_call(make_unreachable: MakeStore, call: Any) -> None:
    store = make_unreachable(retry=None)  # had anything been sent: StoreUnavailable
    with pytest.raises(InvalidArgument) as info:
        call(store)
    assert str(SID) in str(info.value)
    if isinstance(info.value, InvalidArgumentType):
        assert isinstance(info.value, TypeError)
