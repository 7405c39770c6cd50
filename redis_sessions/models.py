"""The data model: messages, content blocks and sessions, as msgspec Structs.

``SessionState`` is the persisted form (the seed's JSON shape); ``Session`` is what ``load`` returns.
Schema evolution follows msgspec's advice: new fields get defaults, unknown fields are ignored, and
``SCHEMA_VERSION`` changes only when old code could no longer read new data correctly.
"""

from __future__ import annotations

import enum
import uuid
from datetime import datetime
from typing import Annotated, Any

import msgspec

from ._stored import id_of_a_new_message
from .errors import SchemaVersionError

__all__ = [
    "SCHEMA_VERSION",
    "AgentMessage",
    "ContentBlock",
    "Image",
    "Role",
    "Session",
    "SessionId",
    "SessionInfo",
    "SessionState",
    "Text",
    "Thinking",
    "ToolResult",
    "ToolUse",
]

SCHEMA_VERSION = 1
"""The version of the stored layout this code reads and writes."""

SessionId = uuid.UUID


class Role(enum.StrEnum):
    """Who said it."""

    USER = "user"
    ASSISTANT = "assistant"
    SYSTEM = "system"
    TOOL = "tool"


class Text(msgspec.Struct, frozen=True, gc=False, tag="text", tag_field="type"):
    """Plain text."""

    text: str


class Image(msgspec.Struct, frozen=True, gc=False, tag="image", tag_field="type"):
    """An image; ``data`` is raw bytes (base64 in JSON, binary in MessagePack)."""

    media_type: str
    data: bytes


class ToolUse(msgspec.Struct, frozen=True, gc=False, tag="tool_use", tag_field="type"):
    """The model asks for a tool call."""

    id: str
    name: str
    input: dict[str, Any]


class ToolResult(msgspec.Struct, frozen=True, gc=False, tag="tool_result", tag_field="type"):
    """The answer to a ``ToolUse`` with the same ``tool_use_id``."""

    tool_use_id: str
    content: str | list[Text | Image]
    is_error: bool = False


class Thinking(msgspec.Struct, frozen=True, gc=False, tag="thinking", tag_field="type"):
    """The model's visible reasoning."""

    text: str


ContentBlock = Text | ToolUse | ToolResult | Image | Thinking


class AgentMessage(msgspec.Struct, frozen=True, gc=False, omit_defaults=True):
    """One message of a conversation.

    Messages and content blocks are not tracked by the garbage collector (``gc=False``): decoded
    histories hold thousands of them and can form no reference cycles; this cut decoding time by
    about 30 % and spares full collections. Do not build cycles through a message's own fields.

    ``id`` makes appends idempotent: appending a message whose id is already stored is a no-op
    that returns the stored position, so a retried append never duplicates.

    ``extra`` keeps, verbatim, what a framework needs back that the typed blocks do not carry (an
    OpenAI Agents item's ``id`` and ``status``, a LangChain message's ``additional_kwargs``). It is
    JSON-like data the store never interprets; left out of the stored bytes when ``None``, and older
    readers ignore it, so adding it needed no schema version.
    """

    role: Role
    content: list[ContentBlock]
    id: str = msgspec.field(default_factory=id_of_a_new_message)
    extra: dict[str, Any] | None = None

    @classmethod
    def user(cls, text: str, *, id: str | None = None) -> AgentMessage:
        """A user message holding one text block."""
        return cls._of(Role.USER, text, id)

    @classmethod
    def assistant(cls, content: str | list[ContentBlock], *, id: str | None = None) -> AgentMessage:
        """An assistant message: text, or a list of blocks (text, tool calls, thinking)."""
        return cls._of(Role.ASSISTANT, content, id)

    @classmethod
    def system(cls, text: str, *, id: str | None = None) -> AgentMessage:
        """A system message holding one text block."""
        return cls._of(Role.SYSTEM, text, id)

    @classmethod
    def tool_result(
        cls,
        tool_use_id: str,
        content: str | list[Text | Image],
        *,
        is_error: bool = False,
        id: str | None = None,
    ) -> AgentMessage:
        """A tool message answering the ``ToolUse`` whose id is ``tool_use_id``."""
        return cls._of(Role.TOOL, [ToolResult(tool_use_id, content, is_error)], id)

    @classmethod
    def _of(cls, role: Role, content: str | list[ContentBlock], id: str | None) -> AgentMessage:
        blocks: list[ContentBlock] = [Text(content)] if isinstance(content, str) else list(content)
        return cls(role, blocks) if id is None else cls(role, blocks, id)

    @property
    def text(self) -> str:
        """The text blocks joined, for display."""
        return "".join(b.text for b in self.content if isinstance(b, Text))


class SessionState(msgspec.Struct, kw_only=True):
    """The persisted form of a session: the seed's JSON fields, plus optional bookkeeping.

    Every field is always written (``schema_version`` above all), so a reader of any version knows
    what it holds; fields added later get defaults so older documents still decode.
    """

    schema_version: int = SCHEMA_VERSION
    model: str = ""
    max_turns: int = 0
    system_message: str | None = None
    messages: list[AgentMessage] = msgspec.field(default_factory=list)
    metadata: dict[str, str] = msgspec.field(default_factory=dict)
    created_at: datetime | None = None
    updated_at: datetime | None = None
    seq: int | None = None
    # The session's own settings (the meta hash's), so an export, a save or the record carries
    # them back: ``None`` where a document predates them (the importing store's defaults apply).
    ttl_ms: Annotated[int, msgspec.Meta(ge=0)] | None = None  # 0: never expires
    max_messages: Annotated[int, msgspec.Meta(ge=0)] | None = None  # 0: unbounded
    max_session_bytes: Annotated[int, msgspec.Meta(ge=0)] | None = None  # 0: no byte limit
    summary: AgentMessage | None = None  # store.summarize: stands for messages 1..summary_seq
    summary_seq: int = 0
    # Token counts as the store's token_counter made them when the messages were appended, so a
    # read-through restores those, not a recount by whatever counter the reading store has:
    # message_tokens lines up with messages (None: that one was never counted); used only when it
    # is as long as messages. A record keeps them beside the messages, not in the header.
    message_tokens: list[int | None] | None = None
    summary_tokens: int | None = None


class Session(msgspec.Struct, kw_only=True):
    """A session as read from the store: configuration, messages and bookkeeping.

    ``seq`` counts every message ever appended (trimming does not lower it), so with
    ``max_messages`` set, ``messages`` may hold fewer than ``seq`` entries.
    """

    id: SessionId
    model: str = ""
    max_turns: int = 0
    system_message: str | None = None
    messages: list[AgentMessage] = msgspec.field(default_factory=list)
    metadata: dict[str, str] = msgspec.field(default_factory=dict)
    created_at: datetime | None = None
    updated_at: datetime | None = None
    seq: int = 0
    ttl_ms: int = 0  # the session's own TTL in ms, renewed by each write (0: never expires)
    max_messages: int = 0  # the session's own bound on kept messages (0: unbounded)
    max_session_bytes: int = 0  # the session's own bound on its stored bytes (0: none; QuotaExceeded)
    summary: AgentMessage | None = None  # store.summarize: stands for messages 1..summary_seq
    summary_seq: int = 0

    def to_state(self) -> SessionState:
        """The persisted form of this session (the id is the key it is stored under)."""
        return SessionState(
            schema_version=SCHEMA_VERSION,
            model=self.model,
            max_turns=self.max_turns,
            system_message=self.system_message,
            messages=list(self.messages),
            metadata=dict(self.metadata),
            created_at=self.created_at,
            updated_at=self.updated_at,
            seq=self.seq,
            ttl_ms=self.ttl_ms,
            max_messages=self.max_messages,
            max_session_bytes=self.max_session_bytes,
            summary=self.summary,
            summary_seq=self.summary_seq,
        )

    @classmethod
    def from_state(cls, session_id: SessionId, state: SessionState) -> Session:
        """Rebuild a session from its persisted form; refuses a schema version it does not know."""
        if state.schema_version != SCHEMA_VERSION:
            raise SchemaVersionError(session_id, state.schema_version, SCHEMA_VERSION)
        return cls(
            id=session_id,
            model=state.model,
            max_turns=state.max_turns,
            system_message=state.system_message,
            messages=list(state.messages),
            metadata=dict(state.metadata),
            created_at=state.created_at,
            updated_at=state.updated_at,
            seq=state.seq if state.seq is not None else len(state.messages),
            ttl_ms=state.ttl_ms or 0,
            max_messages=state.max_messages or 0,
            max_session_bytes=state.max_session_bytes or 0,
            summary=state.summary,
            summary_seq=state.summary_seq,
        )


class SessionInfo(msgspec.Struct, frozen=True, kw_only=True):
    """What Redis holds of a session, without its messages: for listings and statistics.

    ``messages`` is how many are held (trimming lowers it), ``seq`` how many were ever appended;
    ``ttl`` is the seconds left before Redis expires it (``None``: no expiry); ``bytes`` is Redis's
    ``MEMORY USAGE`` of its keys, only when asked for (it costs a command per key). ``problem`` says
    why this library cannot read the session (a newer schema version, a corrupt meta hash: the
    fields it could not parse are then zero or ``None``); ``None`` when it can. ``tokens`` is the
    running total of the counts of its messages (``token_counter=``), ``summary_seq`` the seq its
    summary stands for (0: none); a fork names its ``parent`` and ``fork_seq``.
    """

    id: SessionId
    model: str
    messages: int
    seq: int
    schema_version: int
    created_at: datetime | None = None
    updated_at: datetime | None = None
    ttl: float | None = None
    bytes: int | None = None
    problem: str | None = None
    tokens: int = 0
    summary_seq: int = 0
    parent: SessionId | None = None
    fork_seq: int | None = None
