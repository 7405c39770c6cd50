"""redis-sessions: LLM-agent conversations in Redis, shared safely by many processes.

``SessionStore`` (sync, over ``redis.Redis``) and ``AsyncSessionStore`` (over ``redis.asyncio``)
have the same methods; messages are msgspec Structs; every error derives from ``SessionError``.
"""

from ._aio_reply import AsyncReplyStream
from ._live import Appended
from ._partial import Aborted, Delta
from ._reply import ReplyStream
from .aio import AsyncLease, AsyncSessionStore, AsyncToolCall
from .errors import (
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
from .store import Lease, SessionStore, ToolCall
from .telemetry import Telemetry  # imports no OpenTelemetry until one is made
from .tenant import TenantQuota, TenantUsage
from .tokens import Context

__version__ = "0.1.0"

__all__ = [
    "SCHEMA_VERSION",
    "Aborted",
    "AgentMessage",
    "Appended",
    "AsyncLease",
    "AsyncReplyStream",
    "AsyncSessionStore",
    "AsyncToolCall",
    "BackingMismatch",
    "CodecMismatch",
    "ConflictError",
    "ContentBlock",
    "Context",
    "CorruptSession",
    "DecryptionError",
    "Delta",
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
    "QuotaExceeded",
    "RecordMismatch",
    "ReplyClosed",
    "ReplyStream",
    "ReplyTooLarge",
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
    "Telemetry",
    "TenantQuota",
    "TenantQuotaExceeded",
    "TenantUsage",
    "Text",
    "Thinking",
    "ToolCall",
    "ToolCallPending",
    "ToolResult",
    "ToolUse",
    "WrongEventLoop",
]
