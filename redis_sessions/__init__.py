"""redis-sessions: LLM-agent conversations in Redis, shared safely by many processes.

``SessionStore`` (sync, over ``redis.Redis``) and ``AsyncSessionStore`` (over ``redis.asyncio``)
have the same methods; messages are msgspec Structs; every error derives from ``SessionError``.
"""

from .aio import AsyncSessionStore
from .errors import (
    CodecMismatch,
    ConflictError,
    CorruptSession,
    InvalidMessage,
    InvalidSessionId,
    MessageTooLarge,
    PersistenceError,
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
    SessionState,
    Text,
    Thinking,
    ToolResult,
    ToolUse,
)
from .retry import RetryPolicy
from .store import SessionStore

__version__ = "0.1.0"

__all__ = [
    "SCHEMA_VERSION",
    "AgentMessage",
    "AsyncSessionStore",
    "CodecMismatch",
    "ConflictError",
    "ContentBlock",
    "CorruptSession",
    "Image",
    "InvalidMessage",
    "InvalidSessionId",
    "MessageTooLarge",
    "PersistenceError",
    "RetryPolicy",
    "Role",
    "SchemaVersionError",
    "Session",
    "SessionError",
    "SessionExists",
    "SessionId",
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
