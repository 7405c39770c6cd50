"""The errors about what is stored (``PersistenceError`` and below) and about the store itself
(``StoreError`` and below): a part of the tree drawn in ``errors``, which re-exports each of them.
"""

from __future__ import annotations

import uuid

from ._error_root import SessionError

__all__ = [
    "BackingMismatch",
    "CodecMismatch",
    "CorruptSession",
    "DecryptionError",
    "NotReplicated",
    "PersistenceError",
    "RecordMismatch",
    "SchemaVersionError",
    "StoreError",
    "StoreUnavailable",
]


class PersistenceError(SessionError):
    """What is stored cannot be used by this code; nothing was changed."""

    def __init__(self, message: str, session_id: uuid.UUID | None = None) -> None:
        super().__init__(message)
        self.session_id = session_id


class SchemaVersionError(PersistenceError):
    """The session was written by a schema version this code does not know."""

    def __init__(self, session_id: uuid.UUID, found: object, expected: int) -> None:
        super().__init__(
            f"unsupported session schema version {found} for `{session_id}` (expected {expected})",
            session_id,
        )
        self.found = found
        self.expected = expected


class CodecMismatch(PersistenceError):
    """The session's messages were written with another codec than this store writes."""

    def __init__(self, session_id: uuid.UUID, found: str, expected: str) -> None:
        super().__init__(
            f"session `{session_id}` stores messages as {found}, this store writes {expected}",
            session_id,
        )
        self.found = found
        self.expected = expected


class CorruptSession(PersistenceError):
    """Stored bytes that do not decode, or a key of the session holding the wrong Redis type."""

    def __init__(
        self, session_id: uuid.UUID, detail: str, position: int | None = None, *, evicted: bool = False
    ) -> None:
        where = f" at position {position}" if position is not None else ""
        super().__init__(f"session `{session_id}` is corrupt{where}: {detail}", session_id)
        self.position = position
        self.evicted = evicted  # Redis evicted some of its keys: a backing store can restore it


class DecryptionError(PersistenceError):
    """An encrypted message that does not open: no keyring (``encryption=``), no key of its id, or
    a wrong key or altered bytes (a body copied from another session or message). Never garbage:
    names the session, the message's position in the list, its id and the key id."""

    def __init__(
        self, session_id: uuid.UUID, position: int | None, message_id: str, key_id: str, reason: str
    ) -> None:
        where = f"at position {position} " if position is not None else ""
        super().__init__(
            f"session `{session_id}`: the message {where}(id {message_id!r}), encrypted with key"
            f" {key_id!r}, does not decrypt: {reason}",
            session_id,
        )
        self.position = position
        self.message_id = message_id
        self.key_id = key_id


class BackingMismatch(PersistenceError):
    """A store or worker whose backing record is not the one the prefix (or session) is bound to,
    or a record file replaced by another record underneath an open adapter.

    The write-behind bookkeeping in Redis (``synced_seq``, the dirty index) describes one record; a
    worker delivering to another would advance it for messages the first never got. Nothing was
    changed: open the store with the bound record, or move to the new one on purpose with
    ``redis-sessions rebind``. ``subject`` says what is bound (``prefix 'rs'``, a file).
    """

    def __init__(self, subject: str, bound: str, backing: str, session_id: uuid.UUID | None = None) -> None:
        about = f"session `{session_id}` under " if session_id is not None else ""
        super().__init__(
            f"{about}{subject} is bound to backing record {bound}, not to {backing};"
            " nothing was changed (to move to another record on purpose: redis-sessions rebind)",
            session_id,
        )
        self.subject = subject
        self.bound = bound
        self.backing = backing


class RecordMismatch(PersistenceError):
    """The backing record does not hold what Redis says it holds (a gap, or other messages at those
    seqs): refused rather than merged, so no hole is ever filled with later messages."""

    def __init__(self, session_id: uuid.UUID, detail: str) -> None:
        super().__init__(
            f"the backing record of session `{session_id}` disagrees with Redis: {detail}", session_id
        )
        self.detail = detail


class StoreError(SessionError):
    """Redis refused the command (for example out of memory, or a read-only replica), or the
    backing database of ``redis_sessions.persistence`` failed (the driver's error is the cause)."""

    def __init__(self, operation: str, session_id: uuid.UUID | None, detail: str) -> None:
        about = f" for session `{session_id}`" if session_id is not None else ""
        super().__init__(f"{operation}{about} failed: {detail}")
        self.session_id = session_id
        self.operation = operation


class StoreUnavailable(StoreError):
    """Redis could not be reached or did not answer in time, after the retry policy gave up."""

    def __init__(
        self, operation: str, session_id: uuid.UUID | None, attempts: int, cause: object = None
    ) -> None:
        reason = f" ({cause})" if cause is not None and str(cause) else ""
        super().__init__(operation, session_id, f"Redis unavailable after {attempts} attempt(s){reason}")
        self.attempts = attempts


class NotReplicated(StoreError):
    """The write was applied on the primary, but ``WAIT`` saw fewer replicas confirm it in time.

    The write is not undone: it stands, and is lost only if the primary fails before a replica
    catches up. Sending the same call again is safe (appends are idempotent) and waits again.
    """

    def __init__(
        self, operation: str, session_id: uuid.UUID | None, acknowledged: int, required: int, timeout_ms: int
    ) -> None:
        super().__init__(
            operation,
            session_id,
            f"written on the primary, but {acknowledged} of the {required} replica(s) asked for "
            f"confirmed it within {timeout_ms} ms",
        )
        self.acknowledged = acknowledged
        self.required = required
