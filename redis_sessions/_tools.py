"""Sans-IO tool calls that run once: ``claim``, ``release`` and ``complete``, each
``op(core, ...) -> Call`` as every operation is (``_calls``), all three sent as ``tool_call.lua``.

A worker claims a tool call before running the tool: the claim names its holder and ends after a
ttl, so a claim whose holder died expires and the next claimant gets the next attempt number (it may
check, say, the payment provider before running the tool again). ``complete`` appends the
``ToolResult`` message and records it in one script: the first result stored wins, and every later
claim or completion gets that one back. The result message's id is derived from the tool_use_id
(``result_id``), so the append's own idempotency holds too, and a session read back from its
backing store (where only the messages are kept) still knows the call is done.
"""

from __future__ import annotations

import os
import socket
import uuid
from datetime import timedelta
from typing import Any, Final, NamedTuple

from ._calls import Script
from ._core import StoreCore, ttl_ms
from ._protocol import OK, Status
from ._write import fence_arg
from .errors import CorruptSession, InvalidArgument, InvalidArgumentType
from .keys import script_keys, tokens_key, tools_key
from .models import AgentMessage, Image, Role, SessionId, Text, ToolResult

__all__ = [
    "DEFAULT_TTL",
    "MAX_TOOL_USE_ID",
    "Claim",
    "Completion",
    "check_call",
    "check_tool_use_id",
    "check_ttl",
    "claim",
    "complete",
    "new_token",
    "release",
    "result_id",
]

DEFAULT_TTL: Final = 60.0
"""Seconds a claim lasts unless ``tool_call(ttl=...)`` says otherwise."""

MAX_TOOL_USE_ID: Final = 512
"""The longest tool_use_id taken (providers' ids are ~30 characters); it names hash fields."""


class Claim(NamedTuple):
    """What a claim found: the attempt number, and the stored result if the call is done."""

    attempt: int
    done: bool
    seq: int | None = None  # the result message's seq, when done
    result: ToolResult | None = None  # None when not done (or trimmed away: see README)


class Completion(NamedTuple):
    """What ``complete`` stored or found: the result message's seq and block, and whether this
    completion is the one stored (``False``: another result was stored first, and is returned)."""

    seq: int
    result: ToolResult | None
    stored: bool


def result_id(tool_use_id: str) -> str:
    """The id of the message that holds a tool call's result: one per tool_use_id and session."""
    return f"tool_result:{tool_use_id}"


def check_tool_use_id(sid: SessionId, tool_use_id: object) -> str:
    """A tool_use_id the store can key by: a non-empty str of at most ``MAX_TOOL_USE_ID`` characters."""
    if not isinstance(tool_use_id, str) or not tool_use_id:
        raise InvalidArgumentType(f"tool_use_id must be a non-empty str, got {tool_use_id!r}", sid)
    if len(tool_use_id) > MAX_TOOL_USE_ID:
        raise InvalidArgument(f"tool_use_id is {len(tool_use_id)} characters, over {MAX_TOOL_USE_ID}", sid)
    return tool_use_id


def check_call(
    sid: SessionId, tool_use_id: object, fence: object, ttl: object, owner: object
) -> tuple[str, int, str]:
    """``tool_call``'s arguments checked (before any I/O): the tool_use_id, the claim's ttl in ms,
    and the owner (by default this host and process)."""
    tool_use_id = check_tool_use_id(sid, tool_use_id)
    fence_arg(sid, fence)
    claim_ms = check_ttl(sid, ttl)
    if owner is None:
        owner = f"{socket.gethostname()}:{os.getpid()}"
    if not isinstance(owner, str) or not owner:
        raise InvalidArgumentType(f"a tool call's owner must be a non-empty str, got {owner!r}", sid)
    return tool_use_id, claim_ms, owner


def check_ttl(sid: SessionId, ttl: object) -> int:
    """A claim's ttl (seconds, or a timedelta) in ms, checked."""
    if ttl is None or isinstance(ttl, bool) or not isinstance(ttl, int | float | timedelta):
        raise InvalidArgumentType(f"a tool call's ttl must be seconds (or a timedelta), got {ttl!r}", sid)
    try:
        return ttl_ms(ttl)
    except InvalidArgument as exc:
        raise InvalidArgument(str(exc), sid) from None


def _keys(core: StoreCore, sid: SessionId) -> tuple[str, ...]:
    return (
        *script_keys(core.prefix, sid, core.cluster),
        tools_key(core.prefix, sid),
        tokens_key(core.prefix, sid),
        *core.ledger(sid),
    )


def _result(core: StoreCore, sid: SessionId, tool_use_id: str, payload: bytes) -> ToolResult | None:
    """The ``ToolResult`` block of a stored result message (``None`` for ``b''``: trimmed away)."""
    if not payload:
        return None
    (message,) = core.reader.decode(sid, [payload])
    for block in message.content:
        if isinstance(block, ToolResult) and block.tool_use_id == tool_use_id:
            return block
    raise CorruptSession(sid, f"message {message.id!r} holds no ToolResult for tool call {tool_use_id!r}")


def claim(
    core: StoreCore,
    sid: SessionId,
    tool_use_id: str,
    token: str,
    holder: str,
    ttl_ms: int,
    fence: int | None,
    renew: int = 0,
) -> Script[Claim]:
    """Claim the tool call for ``ttl_ms`` under ``token``; ``ToolCallPending`` while another live
    claim holds it; a ``Claim`` that is ``done`` (with the stored result) when a result is stored.
    ``renew`` (the attempt that claim was): the claim ``token`` holds, or held if no one holds
    the call now, lasts ``ttl_ms`` from now."""
    action = "renew" if renew else "claim"
    args = (
        *(core.version, core.codec.name, action, tool_use_id, token, fence_arg(sid, fence)),
        *(result_id(tool_use_id), holder, ttl_ms, renew),
    )

    def parse(reply: list[Any]) -> Claim:
        if reply[0] == Status.TOOL_DONE:
            _, attempt, seq, payload = reply
            return Claim(int(attempt), True, int(seq), _result(core, sid, tool_use_id, payload))
        if reply[0] != OK:
            core.check(sid, reply, op="tool_call", token=fence, tool_use_id=tool_use_id)
        return Claim(int(reply[1]), False)

    return Script("tool_call", sid, "tool_call", _keys(core, sid), args, parse)


def release(core: StoreCore, sid: SessionId, tool_use_id: str, token: str) -> Script[int]:
    """Give the claim ``token`` up (if it still holds the call); the attempts so far."""
    args = (core.version, core.codec.name, "release", tool_use_id, token, "", result_id(tool_use_id))

    def parse(reply: list[Any]) -> int:
        core.check(sid, reply, op="tool_call", tool_use_id=tool_use_id)
        return int(reply[1])

    return Script("tool_call", sid, "tool_call", _keys(core, sid), args, parse)


def complete(
    core: StoreCore,
    sid: SessionId,
    tool_use_id: str,
    token: str,
    content: str | list[Text | Image],
    is_error: bool,
    fence: int | None,
) -> Script[Completion]:
    """Append the tool call's ``ToolResult`` message and record it, atomically; a result stored
    first is returned instead (and this one is not stored)."""
    if not isinstance(is_error, bool):
        raise InvalidArgumentType(f"is_error must be a bool, got {is_error!r}", sid)
    message = AgentMessage(Role.TOOL, [ToolResult(tool_use_id, content, is_error)], result_id(tool_use_id))
    data = core.encode(sid, message)  # checks the content: InvalidMessage, MessageTooLarge
    count = core.tokens(sid, message)
    args = (
        core.version,
        core.codec.name,
        "complete",
        tool_use_id,
        token,
        fence_arg(sid, fence),
        message.id,
        data,
        "",
        "",
        count,
    )

    def parse(reply: list[Any]) -> Completion:
        if reply[0] != OK:
            core.check(sid, reply, op="tool_call", token=fence, tool_use_id=tool_use_id)
        _, seq, payload, stored = reply
        return Completion(int(seq), _result(core, sid, tool_use_id, payload), stored == 1)

    return Script("tool_call", sid, "tool_call", _keys(core, sid), args, parse)


def new_token() -> str:
    """A claim's token: unique per claim, so a retried claim knows itself."""
    return uuid.uuid4().hex
