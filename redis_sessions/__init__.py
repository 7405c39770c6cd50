"""redis-sessions: LLM-agent conversations in Redis, shared safely by many processes.

``SessionStore`` (sync, over ``redis.Redis``) and ``AsyncSessionStore`` (over ``redis.asyncio``)
have the same methods; messages are msgspec Structs; every error derives from ``SessionError``.
"""

from ._live import Appended
from .aio import AsyncLease, AsyncSessionStore
from .errors import (
    BackingMismatch,
    CodecMismatch,
    ConflictError,
    CorruptSession,
    InvalidMessage,
    InvalidSessionId,
    LeaseHeld,
    LeaseLost,
    MessagesTrimmed,
    MessageTooLarge,
    NotReplicated,
    PersistenceError,
    RecordMismatch,
    SchemaVersionError,
    SessionError,
    SessionExists,
    SessionNotFound,
    StoreError,
    StoreUnavailable,
)
from .models import (
    SCHEMA_VERSION,
    AgentMessage,
    ContentBlock,
    Image,
    Role,
    Session,
    SessionId,
    SessionInfo,
    SessionState,
    Text,
    Thinking,
    ToolResult,
    ToolUse,
)
from .retry import RetryPolicy
from .store import Lease, SessionStore

__version__ = "0.1.0"

__all__ = [
    "SCHEMA_VERSION",
    "AgentMessage",
    "Appended",
    "AsyncLease",
    "AsyncSessionStore",
    "BackingMismatch",
    "CodecMismatch",
    "ConflictError",
    "ContentBlock",
    "CorruptSession",
    "Image",
    "InvalidMessage",
    "InvalidSessionId",
    "Lease",
    "LeaseHeld",
    "LeaseLost",
    "MessageTooLarge",
    "MessagesTrimmed",
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
    "StoreUnavailable",
    "Text",
    "Thinking",
    "ToolResult",
    "ToolUse",
]
