"""The error tree: one root, the documented parents, and messages that name the session."""

from __future__ import annotations

import pickle
import uuid

import pytest
import redis.exceptions

import redis_sessions
from redis_sessions import (
    BackingMismatch,
    CodecMismatch,
    ConflictError,
    CorruptSession,
    DecryptionError,
    InvalidMessage,
    InvalidSessionId,
    LeaseHeld,
    LeaseLost,
    MessagesTrimmed,
    MessageTooLarge,
    NotReplicated,
    PersistenceError,
    QuotaExceeded,
    RecordMismatch,
    ReplyClosed,
    ReplyTooLarge,
    SchemaVersionError,
    SessionError,
    SessionExists,
    SessionNotFound,
    StoreError,
    StoreUnavailable,
    TenantQuotaExceeded,
    ToolCallPending,
    WrongEventLoop,
)
from redis_sessions.errors import InvalidArgument, InvalidOperation

SID = uuid.UUID("a1b2c3d4-e5f6-4a7b-8c9d-0e1f2a3b4c5d")

PARENTS = {
    InvalidSessionId: (SessionError, ValueError),
    InvalidMessage: (SessionError, TypeError),
    MessageTooLarge: (SessionError, ValueError),
    SessionNotFound: (SessionError, KeyError),
    SessionExists: (SessionError,),
    ConflictError: (SessionError,),
    PersistenceError: (SessionError,),
    SchemaVersionError: (PersistenceError,),
    CodecMismatch: (PersistenceError,),
    CorruptSession: (PersistenceError,),
    BackingMismatch: (PersistenceError,),
    RecordMismatch: (PersistenceError,),
    StoreError: (SessionError,),
    StoreUnavailable: (StoreError,),
    NotReplicated: (StoreError,),
    LeaseHeld: (SessionError,),
    LeaseLost: (SessionError,),
    ToolCallPending: (SessionError,),
    WrongEventLoop: (InvalidOperation, RuntimeError),
    DecryptionError: (PersistenceError,),
    MessagesTrimmed: (SessionError,),
    ReplyTooLarge: (InvalidArgument, ValueError),
    ReplyClosed: (SessionError,),
    QuotaExceeded: (SessionError,),
    TenantQuotaExceeded: (QuotaExceeded, SessionError),
}


def one_of_each() -> list[SessionError]:
    """An instance of every error about session SID."""
    return [
        InvalidMessage(SID, "not an AgentMessage"),
        MessageTooLarge(SID, "m1", 2000, 1000),
        ReplyTooLarge(SID, "m1", "deltas", 10),
        ReplyClosed(SID, "m1", "finished"),
        QuotaExceeded(SID, "max_session_bytes", 1000, 1200),
        TenantQuotaExceeded(SID, "rs", "max_sessions", 10, 10, 11),
        SessionNotFound(SID),
        SessionExists(SID),
        ConflictError(SID, 3, 5),
        SchemaVersionError(SID, 2, 1),
        CodecMismatch(SID, "msgpack", "json"),
        CorruptSession(SID, "bad bytes", 4),
        BackingMismatch("rs", "a1", "b2", SID),
        RecordMismatch(SID, "it holds seq 3, the batch starts at 7"),
        StoreError("append", SID, "OOM command not allowed"),
        StoreUnavailable("append", SID, 3),
        NotReplicated("append", SID, 0, 1, 100),
    ]


def test_every_public_error_is_in_the_tree() -> None:
    errors = {
        obj
        for name in redis_sessions.__all__
        if isinstance(obj := getattr(redis_sessions, name), type) and issubclass(obj, BaseException)
    }
    assert errors == {SessionError, *PARENTS}


@pytest.mark.parametrize(("error", "parents"), PARENTS.items(), ids=lambda x: getattr(x, "__name__", ""))
def test_documented_parents(error: type[Exception], parents: tuple[type[Exception], ...]) -> None:
    for parent in parents:
        assert issubclass(error, parent)
    assert issubclass(error, SessionError)


@pytest.mark.parametrize("error", [SessionError, *PARENTS], ids=lambda e: e.__name__)
def test_driver_types_are_never_ours(error: type[Exception]) -> None:
    assert not issubclass(error, redis.exceptions.RedisError)


def test_the_tree_is_drawn_in_the_module_docstring() -> None:
    doc = redis_sessions.errors.__doc__ or ""
    for error in [SessionError, *PARENTS]:
        assert error.__name__ in doc


@pytest.mark.parametrize("error", one_of_each(), ids=lambda e: type(e).__name__)
def test_every_error_names_its_session(error: SessionError) -> None:
    assert error.session_id == SID
    assert f"`{SID}`" in str(error)


def test_schema_version_message_is_exact() -> None:
    error = SchemaVersionError(SID, 2, 1)
    assert str(error) == f"unsupported session schema version 2 for `{SID}` (expected 1)"
    assert (error.found, error.expected) == (2, 1)


def test_session_not_found_reads_well_despite_keyerror() -> None:
    # KeyError's own str() would be the repr of the id in quotes.
    assert str(SessionNotFound(SID)) == f"session `{SID}` not found"


def test_attributes() -> None:
    conflict = ConflictError(SID, 3, 5)
    assert (conflict.expected, conflict.actual) == (3, 5)
    assert "seq 5" in str(conflict)
    assert "expected 3" in str(conflict)
    large = MessageTooLarge(SID, "m1", 2000, 1000)
    assert (large.message_id, large.size, large.limit) == ("m1", 2000, 1000)
    assert "2000" in str(large)
    assert "1000" in str(large)
    assert "'m1'" in str(large)
    corrupt = CorruptSession(SID, "bad", 4)
    assert corrupt.position == 4
    assert "at position 4" in str(corrupt)
    assert CorruptSession(SID, "bad").position is None
    assert "position" not in str(CorruptSession(SID, "bad"))
    mismatch = CodecMismatch(SID, "msgpack", "json")
    assert (mismatch.found, mismatch.expected) == ("msgpack", "json")
    unavailable = StoreUnavailable("append", SID, 3)
    assert (unavailable.attempts, unavailable.operation) == (3, "append")
    assert "after 3 attempt" in str(unavailable)


def test_store_error_without_a_session() -> None:
    error = StoreError("list", None, "READONLY")
    assert error.session_id is None
    assert str(error) == "list failed: READONLY"


def test_invalid_session_id_shortens_huge_values() -> None:
    error = InvalidSessionId("x" * 10000)
    assert len(str(error)) < 130
    assert error.value == "x" * 10000
    assert str(InvalidSessionId("a}b")) == "session id must be a UUID, got 'a}b'"


PICKLED = [*one_of_each(), PersistenceError(f"key 'rs:{{x}}:meta' of `{SID}`", SID), InvalidSessionId("*")]


@pytest.mark.parametrize("error", PICKLED, ids=lambda e: type(e).__name__)
def test_errors_survive_pickling(error: SessionError) -> None:
    # Many processes share a session, and errors cross process boundaries: a worker of a
    # ProcessPoolExecutor that raises ConflictError is pickled to the parent; when the error
    # cannot be rebuilt there, the parent gets BrokenProcessPool instead of the error.
    back = pickle.loads(pickle.dumps(error))
    assert type(back) is type(error)
    assert str(back) == str(error)
    assert back.session_id == error.session_id
    assert vars(back) == vars(error)
