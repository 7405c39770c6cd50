"""The exceptions redis-sessions raises, under one root.

::

    SessionError
    ├── InvalidArgument         (also ValueError)  an argument the call cannot use; nothing was sent
    │   ├── InvalidArgumentType (also TypeError)   an argument of the wrong type (or kind)
    │   │   └── InvalidMessage  (also TypeError)   not an AgentMessage, or fields of the wrong type
    │   ├── InvalidSessionId    (also ValueError)  the id is not a UUID; raised before any key is built
    │   ├── MessageTooLarge     (also ValueError)  an encoded message exceeds ``max_message_bytes``
    │   └── ReplyTooLarge       (also ValueError)  a streamed reply would pass its bound of deltas or bytes
    ├── InvalidOperation        (also RuntimeError) the store is not set up for this call
    │   └── WrongEventLoop                         the caller's asyncio client, used from another loop
    ├── SessionNotFound                            no session with that id
    ├── SessionExists                              ``create`` with an id that is taken
    ├── ConflictError                              ``expected_seq`` no longer matches: someone appended
    ├── LeaseHeld                                  another owner holds the session's turn lease
    ├── LeaseLost                                  a fencing token that is not the live lease's
    ├── ToolCallPending                            another worker holds a live claim on the tool call
    ├── MessagesTrimmed                            a watcher's position was trimmed away
    ├── ReplyClosed                                a write to a streamed reply that was finished or aborted
    ├── QuotaExceeded                              an append would take a session past ``max_session_bytes``
    │   └── TenantQuotaExceeded                    ... or its tenant (prefix) past ``tenant_quota``
    ├── PersistenceError                           what is stored cannot be used as it is
    │   ├── SchemaVersionError                     stored by another schema version of this library
    │   ├── CodecMismatch                          stored with another codec than this store writes
    │   ├── CorruptSession                         stored bytes do not decode, or a key has the wrong type
    │   ├── DecryptionError                        an encrypted message whose key is missing or wrong
    │   ├── BackingMismatch                        bound to another backing record than this one
    │   └── RecordMismatch                         the backing record disagrees with Redis (refused)
    └── StoreError                                 Redis (or the backing database) refused or failed
        ├── StoreUnavailable                       Redis could not be reached, retries exhausted
        └── NotReplicated                          written, but fewer replicas than asked confirmed it

The builtin bases stay: ``except ValueError`` / ``except TypeError`` catch what they always did.
``InvalidArgument``, ``InvalidArgumentType`` and ``InvalidOperation`` are importable from here
(``redis_sessions.errors``); the package's pinned ``__all__`` does not list them (yet).

The classes live in three modules, all imported from here: the root in ``_error_root``, what is
stored and the store itself (``PersistenceError``, ``StoreError`` and below) in ``_errors_stored``,
the rest (the callers' mistakes, the sessions' states) in this one.

Driver errors are wrapped (``raise ... from exc``); our own checks never raise redis-py's types.
Every error about one session carries its ``session_id`` and names it in the message.
"""

from __future__ import annotations

import uuid

from ._error_root import SessionError
from ._errors_stored import (
    BackingMismatch,
    CodecMismatch,
    CorruptSession,
    DecryptionError,
    NotReplicated,
    PersistenceError,
    RecordMismatch,
    SchemaVersionError,
    StoreError,
    StoreUnavailable,
)

__all__ = [
    "BackingMismatch",
    "CodecMismatch",
    "ConflictError",
    "CorruptSession",
    "DecryptionError",
    "InvalidArgument",
    "InvalidArgumentType",
    "InvalidMessage",
    "InvalidOperation",
    "InvalidSessionId",
    "LeaseHeld",
    "LeaseLost",
    "MessageTooLarge",
    "MessagesTrimmed",
    "NotReplicated",
    "PersistenceError",
    "QuotaExceeded",
    "RecordMismatch",
    "ReplyClosed",
    "ReplyTooLarge",
    "SchemaVersionError",
    "SessionError",
    "SessionExists",
    "SessionNotFound",
    "StoreError",
    "StoreUnavailable",
    "TenantQuotaExceeded",
    "ToolCallPending",
    "WrongEventLoop",
]


class InvalidArgument(SessionError, ValueError):
    """An argument the call cannot use (out of range, unknown name...); nothing was sent to Redis."""

    def __init__(self, message: str, session_id: uuid.UUID | None = None) -> None:
        about = f"session `{session_id}`: " if session_id is not None else ""
        super().__init__(about + message)
        self.session_id = session_id


class InvalidArgumentType(InvalidArgument, TypeError):
    """An argument of the wrong type, or of the right type but not a valid one of its kind (a
    negative ``expected_seq``): a ``TypeError`` as it always was, and a ``ValueError`` too."""


class InvalidOperation(SessionError, RuntimeError):
    """A call the store is not set up for (``flush`` on a store without a write-behind worker)."""


class WrongEventLoop(InvalidOperation):
    """An ``AsyncSessionStore`` built on the caller's own client, called from another event loop
    than the one that first used it: that client's connections belong to that loop (nothing sent)."""

    def __init__(self) -> None:
        super().__init__(
            "this AsyncSessionStore runs on the Redis client it was given, whose connections belong"
            " to the event loop that first used it, and this call runs in another loop. Build the"
            " store with AsyncSessionStore.from_url / from_cluster / from_sentinel, which opens a"
            " client for each event loop (Runner.run_sync, asyncio.run per request, a loop per"
            " thread), or make one store per loop, or use the synchronous SessionStore"
        )


class InvalidSessionId(InvalidArgument):
    """A session id that is not a UUID (nothing was sent to Redis)."""

    def __init__(self, value: object) -> None:
        shown = repr(value)
        if len(shown) > 80:
            shown = shown[:77] + "..."
        super().__init__(f"session id must be a UUID, got {shown}")
        self.value = value


class InvalidMessage(InvalidArgumentType):
    """Not an ``AgentMessage``, or one whose fields do not match the schema (nothing was sent)."""

    def __init__(self, session_id: uuid.UUID, detail: str) -> None:
        super().__init__(f"invalid message for session `{session_id}`: {detail}")  # names it itself
        self.session_id = session_id


class MessageTooLarge(InvalidArgument):
    """An encoded message is larger than the store's ``max_message_bytes`` (nothing was sent)."""

    def __init__(self, session_id: uuid.UUID, message_id: str, size: int, limit: int) -> None:
        super().__init__(  # the message names the session itself: no prefix
            f"message {message_id!r} for session `{session_id}` is {size} bytes encoded,"
            f" over the limit of {limit} bytes"
        )
        self.session_id = session_id
        self.message_id = message_id
        self.size = size
        self.limit = limit


class SessionNotFound(SessionError, KeyError):
    """No session with this id exists (or it expired)."""

    def __init__(self, session_id: uuid.UUID) -> None:
        super().__init__(session_id)
        self.session_id = session_id

    def __str__(self) -> str:
        return f"session `{self.session_id}` not found"


class SessionExists(SessionError):
    """``create`` was given an id that already names a session."""

    def __init__(self, session_id: uuid.UUID) -> None:
        super().__init__(f"session `{session_id}` already exists")
        self.session_id = session_id


class ConflictError(SessionError):
    """The session's sequence number is not the ``expected_seq`` the caller gave; or (``of="summary"``)
    its stored summary is not the one the caller read (``summarize(expected=)``), or covers more."""

    def __init__(self, session_id: uuid.UUID, expected: int, actual: int, *, of: str = "seq") -> None:
        super().__init__(
            f"session `{session_id}` holds a summary through seq {actual} (expected {expected}):"
            " another worker summarised first"
            if of == "summary"
            else f"session `{session_id}` is at seq {actual}, not the expected {expected}:"
            " another writer appended first"
        )
        self.session_id = session_id
        self.expected = expected
        self.actual = actual


class LeaseHeld(SessionError):
    """Another owner holds a live turn lease on the session."""

    def __init__(self, session_id: uuid.UUID, holder: str) -> None:
        super().__init__(f"session `{session_id}` is leased by {holder!r}")
        self.session_id = session_id
        self.holder = holder


class LeaseLost(SessionError):
    """The lease behind a fencing token expired or passed to a newer holder: the write was refused."""

    def __init__(self, session_id: uuid.UUID, token: int | None) -> None:
        super().__init__(
            f"session `{session_id}`: fencing token {token} is not the live lease's (expired or taken over)"
        )
        self.session_id = session_id
        self.token = token


class ReplyTooLarge(InvalidArgument):
    """A streamed reply would pass its bound (``max_deltas`` deltas or ``max_bytes`` bytes of text):
    the delta was refused, every delta stored before it stays (and ``finish`` may still store them)."""

    def __init__(self, session_id: uuid.UUID, message_id: str, what: str, limit: int) -> None:
        super().__init__(  # the message names the session itself: no prefix
            f"streamed reply {message_id!r} of session `{session_id}` would pass its bound of {limit} {what}"
        )
        self.session_id = session_id
        self.message_id = message_id
        self.what = what
        self.limit = limit


class ReplyClosed(SessionError):
    """A write or ``finish`` to a streamed reply that is closed: finished, aborted, or given up as
    dead by a reader (its lease expired, or it wrote nothing for its idle time)."""

    def __init__(self, session_id: uuid.UUID, message_id: str, state: str) -> None:
        super().__init__(f"session `{session_id}`: streamed reply {message_id!r} is {state}")
        self.session_id = session_id
        self.message_id = message_id
        self.state = state


class QuotaExceeded(SessionError):
    """An append (or a tool call's result) would take a session past its limit (``limit`` names it:
    ``max_session_bytes``): refused in the append script itself, so nothing of the call is stored.
    ``size`` is the bytes the session would have held with it; ``quota`` the limit's value."""

    def __init__(self, session_id: uuid.UUID, limit: str, quota: int, size: int) -> None:
        super().__init__(f"session `{session_id}`: {size} bytes would pass its {limit} of {quota}")
        self.session_id = session_id
        self.limit = limit
        self.quota = quota
        self.size = size


class TenantQuotaExceeded(QuotaExceeded):
    """A create or an append would take the session's tenant (its key prefix, ``tenant``) past a
    limit of the store's ``tenant_quota`` (``limit``: ``max_sessions`` or ``max_bytes``; ``quota``
    its value): refused in the script, nothing stored. ``usage`` is what the tenant held (on a
    cluster, what its slots were granted: a bound of it), ``size`` what it would have held."""

    def __init__(
        self, session_id: uuid.UUID, tenant: str, limit: str, quota: int, usage: int, size: int
    ) -> None:
        what = f"tenant {tenant!r} holds {usage}; {size} would pass its {limit} of {quota}"
        SessionError.__init__(self, f"session `{session_id}`: {what}")
        self.session_id, self.limit, self.quota, self.size = session_id, limit, quota, size
        self.tenant, self.usage = tenant, usage


class ToolCallPending(SessionError):
    """Another worker holds a live claim on this tool call: it is running the tool now (or died
    doing so, and its claim has not expired yet). Try again after ``retry_after`` seconds: by then
    the call is done (``call.done``) or the claim expired (the next claimant gets the next attempt)."""

    def __init__(
        self, session_id: uuid.UUID, tool_use_id: str, holder: str, attempt: int, retry_after: float
    ) -> None:
        super().__init__(
            f"session `{session_id}`: tool call {tool_use_id!r} is claimed by {holder!r}"
            f" (attempt {attempt}; the claim expires in {retry_after:.3f} s unless it completes)"
        )
        self.session_id = session_id
        self.tool_use_id = tool_use_id
        self.holder = holder
        self.attempt = attempt
        self.retry_after = retry_after


class MessagesTrimmed(SessionError):
    """A watcher asked for messages after a seq that trimming (``max_messages``) already removed."""

    def __init__(self, session_id: uuid.UUID, after_seq: int, first_seq: int) -> None:
        super().__init__(
            f"session `{session_id}`: messages after seq {after_seq} were trimmed;"
            f" the oldest stored is seq {first_seq}"
        )
        self.session_id, self.after_seq, self.first_seq = session_id, after_seq, first_seq
