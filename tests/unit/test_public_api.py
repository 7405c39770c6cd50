"""The public surface: ``__all__`` is pinned, so adding or removing a name is a deliberate change."""

from __future__ import annotations

import redis_sessions

PUBLIC = {
    "SCHEMA_VERSION",
    "Appended",
    "AsyncLease",
    "Lease",
    "LeaseHeld",
    "QuotaExceeded",
    "TenantQuotaExceeded",
    "TenantQuota",
    "TenantUsage",
    "LeaseLost",
    "MessagesTrimmed",
    "AgentMessage",
    "AsyncSessionStore",
    "BackingMismatch",
    "CodecMismatch",
    "ConflictError",
    "ContentBlock",
    "Context",
    "CorruptSession",
    "Image",
    "InvalidMessage",
    "InvalidSessionId",
    "MessageTooLarge",
    "NotReplicated",
    "PersistenceError",
    "RecordMismatch",
    "RetryPolicy",
    "Role",
    "SchemaVersionError",
    "Session",
    "SessionError",
    "SessionExists",
    "SessionId",
    "SessionInfo",
    "SessionNotFound",
    "SessionState",
    "SessionStore",
    "StoreError",
    "Telemetry",
    "StoreUnavailable",
    "Text",
    "Thinking",
    "ToolResult",
    "ToolUse",
    "Aborted",
    "AsyncReplyStream",
    "Delta",
    "ReplyClosed",
    "ReplyStream",
    "ReplyTooLarge",
    "ToolCall",
    "AsyncToolCall",
    "ToolCallPending",
    "WrongEventLoop",
    "DecryptionError",
}


def test_all_is_pinned() -> None:
    assert set(redis_sessions.__all__) == PUBLIC
    assert len(redis_sessions.__all__) == len(PUBLIC), "duplicates in __all__"


def test_every_public_name_is_importable() -> None:
    for name in redis_sessions.__all__:
        assert getattr(redis_sessions, name) is not None, name


def test_star_import_gives_exactly_all() -> None:
    namespace: dict[str, object] = {}
    exec("from redis_sessions import *", namespace)
    assert set(namespace) - {"__builtins__"} == PUBLIC


def test_schema_version_is_one() -> None:
    assert redis_sessions.SCHEMA_VERSION == 1


def test_version_matches_the_distribution() -> None:
    from importlib.metadata import version

    assert redis_sessions.__version__ == version("redis-sessions")


def test_package_is_typed() -> None:
    from importlib import resources

    assert resources.files("redis_sessions").joinpath("py.typed").is_file()
