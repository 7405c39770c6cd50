"""The protocol between the Lua scripts and Python: what a script's status code means.

Every script that answers with a status replies ``{status, ...}``, the status one of ``Status``; its
header names the statuses it returns (``-- Status: OK=0 NOT_FOUND=1 ...``) and
``tests/unit/test_protocol.py`` checks each header, and each ``return {n`` in the script, against this
enum. Python never compares a reply with a bare number: it names the status. ``ERRORS`` is the one
table from a refusing status to the exception it stands for.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from enum import IntEnum
from typing import Any, Final, NamedTuple

from .errors import (
    BackingMismatch,
    CodecMismatch,
    ConflictError,
    CorruptSession,
    InvalidArgument,
    LeaseHeld,
    LeaseLost,
    MessagesTrimmed,
    QuotaExceeded,
    ReplyClosed,
    ReplyTooLarge,
    SchemaVersionError,
    SessionError,
    SessionExists,
    SessionNotFound,
    StoreError,
    TenantQuotaExceeded,
    ToolCallPending,
)
from .models import SessionId

__all__ = ["ERRORS", "OK", "Refusal", "Status", "error_for"]


class Status(IntEnum):
    """The first item of a script's reply."""

    OK = 0
    NOT_FOUND = 1  # no meta hash: the session does not exist (or expired)
    VERSION_MISMATCH = 2  # {2, version}: stored by another schema version
    CONFLICT = 3  # {3, seq}: expected seq differs; {3, epoch} (sync_mark): another incarnation;
    # {3, synced seq} (rebind): the old record took more meanwhile
    EXISTS = 4  # the id is taken
    CODEC = 5  # {5, codec}: stored with another codec
    CORRUPT = 6  # {6, detail}: the meta hash is unusable
    TRIMMED = 7  # {7, first seq}: the messages asked for were trimmed away
    LEASE_HELD = 8  # {8, holder}: another owner holds the lease
    LEASE_LOST = 9  # {9, token}: the fencing token is not the live lease's
    EVICTED = 10  # a durable session lost its list or ids to eviction
    DELETED = 11  # (sync_mark) this very incarnation was deleted
    DURABLE = 12  # (pop) not supported on a durable session
    OTHER_RECORD = 13  # {13, record id}: the session is bound to another backing record
    REPLY_CLOSED = 14  # {14, 'finished' | 'aborted' | 'expired'}: a streamed reply takes no more writes
    REPLY_FULL = 15  # {15, 'deltas' | 'bytes', limit}: a streamed reply would pass its bound
    AHEAD = 16  # {16, seq}: (summarize, fork) a seq past the session's own
    QUOTA = 17  # {17, limit, size}: (append, tool_call) the session would pass its max_session_bytes
    TENANT = 18  # {18, 'sessions' | 'bytes', usage, add, allowed}: (create, append, tool_call, tenant)
    # the tenant's ledger has no room (the transport asks for room, then for the limit: tenant_quota)
    # 20-29: tool calls (tool_call.lua)
    TOOL_PENDING = 20  # {20, holder, ms left, attempt}: another live claim on the tool call
    TOOL_DONE = 21  # {21, attempt, seq, encoded message}: (claim) its result is stored already


OK: Final = Status.OK
"""``Status.OK`` as a plain global: the hot paths compare with it (an enum attribute costs ~70 ns)."""


class Refusal(NamedTuple):
    """A refusing reply and what the call knew when it was sent, for building the error."""

    sid: SessionId
    detail: str
    schema: int  # the schema version this store writes
    codec: str  # the codec this store writes
    op: str
    prefix: str = ""  # the store's key prefix
    record: str = ""  # the backing record the call was made for
    expected: int | None = None  # the caller's expected_seq
    token: int | None = None  # the caller's fencing token
    after: int = -1  # the seq a read asked for messages after
    message_id: str = ""  # the streamed reply a call was about
    tool_use_id: str = ""  # the tool call a tool_call script was about
    reply: Sequence[Any] = ()  # the whole reply, for the statuses that carry more than one detail


def _version(r: Refusal) -> SessionError:
    return SchemaVersionError(r.sid, int(r.detail) if r.detail.isdigit() else r.detail, r.schema)


def _conflict(r: Refusal) -> SessionError:
    expected = -1 if r.expected is None else r.expected
    return ConflictError(r.sid, expected, int(r.detail), of="summary" if r.op == "summarize" else "seq")


def _pending(r: Refusal) -> SessionError:
    ms_left, attempt = (int(n) for n in r.reply[2:4]) if len(r.reply) >= 4 else (0, 0)
    return ToolCallPending(r.sid, r.tool_use_id, r.detail, attempt, ms_left / 1000)


def _full(r: Refusal) -> SessionError:
    return ReplyTooLarge(r.sid, r.message_id, r.detail, int(_text(r.reply[2])) if len(r.reply) > 2 else 0)


def _quota(r: Refusal) -> SessionError:
    size = int(_text(r.reply[2])) if len(r.reply) > 2 else 0
    return QuotaExceeded(r.sid, "max_session_bytes", int(r.detail), size)


def _tenant(r: Refusal) -> SessionError:
    usage, add, allowed = (int(_text(n)) for n in r.reply[2:5]) if len(r.reply) >= 5 else (0, 0, 0)
    limit = "max_sessions" if r.detail == "sessions" else "max_bytes"
    return TenantQuotaExceeded(r.sid, r.prefix, limit, allowed, usage, usage + add)


ERRORS: Final[Mapping[Status, Callable[[Refusal], SessionError]]] = {
    Status.NOT_FOUND: lambda r: SessionNotFound(r.sid),
    Status.VERSION_MISMATCH: _version,
    Status.CONFLICT: _conflict,
    Status.EXISTS: lambda r: SessionExists(r.sid),
    Status.CODEC: lambda r: CodecMismatch(r.sid, r.detail, r.codec),
    Status.CORRUPT: lambda r: CorruptSession(r.sid, r.detail),
    Status.TRIMMED: lambda r: MessagesTrimmed(r.sid, r.after, int(r.detail)),
    Status.LEASE_HELD: lambda r: LeaseHeld(r.sid, r.detail),
    Status.LEASE_LOST: lambda r: LeaseLost(r.sid, r.token),
    Status.EVICTED: lambda r: CorruptSession(
        r.sid, "Redis evicted part of it (a backing store restores it)", evicted=True
    ),
    Status.DURABLE: lambda r: StoreError(
        r.op, r.sid, "not supported on a durable session: its backing store keeps every message"
    ),
    Status.OTHER_RECORD: lambda r: BackingMismatch(f"prefix {r.prefix!r}", r.detail, r.record, r.sid),
    Status.REPLY_CLOSED: lambda r: ReplyClosed(r.sid, r.message_id, r.detail),
    Status.REPLY_FULL: _full,
    Status.QUOTA: _quota,
    Status.TENANT: _tenant,
    Status.TOOL_PENDING: _pending,
    Status.AHEAD: lambda r: InvalidArgument(
        f"{r.op}: seq {r.after} is past the session's seq {r.detail}", r.sid
    ),
}
"""The error each refusing status stands for. (``DELETED`` and ``TOOL_DONE`` are answers, not
errors: ``sync_mark`` reports the one to the write-behind worker, ``tool_call`` the other to a
claimant, whose tool then does not run.)"""


def error_for(
    reply: Sequence[Any],
    sid: SessionId,
    *,
    schema: int,
    codec: str,
    op: str,
    prefix: str = "",
    record: str = "",
    expected: int | None = None,
    token: int | None = None,
    after: int = -1,
    message_id: str = "",
    tool_use_id: str = "",
) -> SessionError:
    """The typed error a refusing reply stands for (``CorruptSession`` for a status no table
    entry knows: a script and this module out of step)."""
    detail = _text(reply[1]) if len(reply) > 1 else ""
    make = ERRORS.get(reply[0])
    if make is None:
        return CorruptSession(sid, f"unexpected script status {list(reply)!r}")
    refusal = Refusal(
        sid, detail, schema, codec, op, prefix, record, expected, token, after, message_id, tool_use_id, reply
    )
    return make(refusal)


def _text(raw: Any) -> str:
    return raw.decode("utf-8", "backslashreplace") if isinstance(raw, bytes) else str(raw)
