"""``RedisChatMessageHistory``: a LangChain ``BaseChatMessageHistory`` stored by redis-sessions.

    from redis_sessions import SessionStore
    from redis_sessions.integrations.langchain import RedisChatMessageHistory

    store = SessionStore.from_url("redis://localhost:6379/0")
    history = RedisChatMessageHistory("user-42", store)
    history.add_messages([HumanMessage("Hi"), AIMessage("Hello!")])

Each message is one ``AgentMessage``:

=================================  =========  =====================================================
LangChain                          role       blocks
=================================  =========  =====================================================
``HumanMessage``                   user       ``Text`` per text part (a string content is one
``SystemMessage``                  system     part), ``Image`` per base64 / ``data:`` URL image,
``AIMessage``                      assistant  ``Thinking`` per thinking / reasoning part; an AI
                                              message's ``tool_calls`` as ``ToolUse`` blocks
``ToolMessage``                    tool       ``ToolResult(tool_call_id, content,
                                              is_error=status == "error")``
chunks, ``ChatMessage``,           by type    as above (``ChatMessage``: by its role, else
``FunctionMessage``                / role     assistant)
=================================  =========  =====================================================

Everything else (``id``, ``name``, ``additional_kwargs``, ``response_metadata``,
``usage_metadata``, ``artifact``, the parts' other keys, a non-default ``type``) goes to
``extra["langchain"]``, leaving out fields at their defaults. Every message is checked on the way
in: if it would not come back equal, ``message_to_dict`` of it is kept whole in
``extra["langchain_message"]``. Message ids are random, not LangChain's ``id`` (which may be
``None``, and may repeat when a caller re-adds a message); the store's retries stay idempotent.

Sync and async: with a ``SessionStore`` every method works, the async ones in a worker thread.
With an ``AsyncSessionStore`` use the async methods (``aget_messages``, ``aadd_messages``,
``aclear``; ``ainvoke`` on a chain): the sync ones raise ``TypeError``, because an async
client's connections belong to its event loop and cannot be driven from synchronous code.
"""

from __future__ import annotations

import functools
import uuid
from collections.abc import Callable, Sequence
from typing import Any

from ..errors import InvalidArgumentType
from ..models import AgentMessage, ContentBlock, Image, Role, Text, Thinking, ToolResult, ToolUse
from ._common import (
    Store,
    StoreAccess,
    clone,
    data_url,
    fill_parts,
    image_of,
    missing_framework,
    split_parts,
)

try:
    from langchain_core.chat_history import BaseChatMessageHistory
    from langchain_core.messages import BaseMessage, message_to_dict, messages_from_dict
except ImportError as exc:  # tested with the import blocked
    raise missing_framework(exc, "LangChain (langchain-core)", "langchain") from exc

__all__ = ["RedisChatMessageHistory", "to_langchain", "to_message"]

_ROLES = {
    "human": Role.USER,
    "HumanMessageChunk": Role.USER,
    "ai": Role.ASSISTANT,
    "AIMessageChunk": Role.ASSISTANT,
    "system": Role.SYSTEM,
    "SystemMessageChunk": Role.SYSTEM,
    "tool": Role.TOOL,
    "ToolMessageChunk": Role.TOOL,
    "function": Role.TOOL,
    "FunctionMessageChunk": Role.TOOL,
}
_CHAT_ROLES = {"user": Role.USER, "human": Role.USER, "system": Role.SYSTEM, "tool": Role.TOOL}
_TYPES = {Role.USER: "human", Role.ASSISTANT: "ai", Role.SYSTEM: "system", Role.TOOL: "tool"}
_WITH_TOOL_CALLS = frozenset({"ai", "AIMessageChunk"})
_WITH_RESULT = frozenset({"tool", "ToolMessageChunk"})
_TEXT_KEYS = {"text": "text", "thinking": "thinking", "reasoning": "reasoning"}


class RedisChatMessageHistory(BaseChatMessageHistory):
    """A chat history in redis-sessions, shared by every process that opens the same id.

    ``session_id`` is a free string, stored under ``session_uuid(session_id)`` (``self.uuid``);
    the session is created by the first write, with metadata ``integration`` and ``external_id``.
    ``clear`` deletes the session, metadata included. See the module docstring for what is stored
    and for sync/async use. With ``max_tokens``, reading gives what fits that many tokens: the
    session's summary (``store.summarize``/``compact``) and the newest messages (``store.context``).
    """

    def __init__(self, session_id: str | uuid.UUID, store: Store, *, max_tokens: int | None = None) -> None:
        super().__init__()
        self.max_tokens = max_tokens
        self._access = StoreAccess(store, session_id, type(self).__name__, "langchain")
        self.session_id = self._access.session_id
        self.uuid = self._access.sid

    @property
    def store(self) -> Store:
        return self._access.store

    @property
    def messages(self) -> list[BaseMessage]:  # type: ignore[override]  # LangChain's documented way
        """Every message, oldest first, or what fits ``max_tokens`` (needs a ``SessionStore``)."""
        if self.max_tokens is not None:
            return [to_langchain(m) for m in self._access.context_sync(self.max_tokens)]
        return [to_langchain(m) for m in self._access.messages_sync()]

    async def aget_messages(self) -> list[BaseMessage]:
        if self.max_tokens is not None:
            return [to_langchain(m) for m in await self._access.context(self.max_tokens)]
        return [to_langchain(m) for m in await self._access.messages()]

    def add_messages(self, messages: Sequence[BaseMessage]) -> None:
        """Append ``messages`` atomically, all or none (needs a ``SessionStore``)."""
        if messages:
            self._access.extend_sync([to_message(m) for m in messages])

    async def aadd_messages(self, messages: Sequence[BaseMessage]) -> None:
        if messages:
            await self._access.extend([to_message(m) for m in messages])

    def clear(self) -> None:
        """Delete the session (needs a ``SessionStore``)."""
        self._access.delete_sync()

    async def aclear(self) -> None:
        await self._access.delete()

    def __repr__(self) -> str:
        return f"RedisChatMessageHistory({self.session_id!r}, uuid={self.uuid})"


def to_message(message: BaseMessage) -> AgentMessage:
    """A LangChain message as an ``AgentMessage`` that ``to_langchain`` turns back into an equal one."""
    if not isinstance(message, BaseMessage):
        raise InvalidArgumentType(f"a LangChain message is a BaseMessage, got {type(message).__name__}")
    whole = message_to_dict(message)
    kind: str = whole["type"]
    data: dict[str, Any] = whole["data"]
    role = _role(kind, data)
    blocks, rest = _split(kind, data)
    defaults = _defaults(type(message))
    rest = {k: v for k, v in rest.items() if k != "type" and not (k in defaults and v == defaults[k])}
    if kind != _TYPES[role]:
        rest["type"] = kind
    candidate = AgentMessage(role, blocks, extra={"langchain": rest} if rest else None)
    # The check compares LangChain's own serialized form (what message_to_dict gives and
    # messages_from_dict takes), which is cheaper than building the message again.
    rebuilt = _as_dict(candidate)
    if rebuilt["type"] == kind and {**defaults, "type": kind, **rebuilt["data"]} == data:
        return candidate
    return AgentMessage(role, blocks, extra={"langchain_message": clone(whole)})


def to_langchain(message: AgentMessage) -> BaseMessage:
    """The LangChain message an ``AgentMessage`` holds; a message another writer stored becomes
    the message of its role (tool calls and results included)."""
    return messages_from_dict([_as_dict(message)])[0]


def _as_dict(message: AgentMessage) -> dict[str, Any]:
    """The ``message_to_dict`` form of the LangChain message an ``AgentMessage`` holds (fields at
    their defaults may be left out)."""
    extra = clone(message.extra) if message.extra else {}
    whole = extra.get("langchain_message")
    if isinstance(whole, dict):
        return whole
    data: dict[str, Any] = extra.get("langchain") or {}
    kind = data.pop("type", None) or _TYPES[message.role]
    blocks = [b for b in message.content if isinstance(b, Text | Image | Thinking)]
    result = next((b for b in message.content if isinstance(b, ToolResult)), None)
    if kind in _WITH_RESULT:
        data.setdefault("tool_call_id", result.tool_use_id if result is not None else "")
        if result is not None and result.is_error:
            data.setdefault("status", "error")
        if result is not None:
            body = result.content
            blocks = [Text(body)] if isinstance(body, str) else list(body)
    content = data.get("content")
    if isinstance(content, list):
        data["content"] = fill_parts(content, blocks, _fill)
    elif content is None:
        data["content"] = _content(blocks)
    if kind in _WITH_TOOL_CALLS and "tool_calls" not in data:
        data["tool_calls"] = [
            {"name": b.name, "args": clone(b.input), "id": b.id, "type": "tool_call"}
            for b in message.content
            if isinstance(b, ToolUse)
        ]
    return {"type": kind, "data": data}


def _role(kind: str, data: dict[str, Any]) -> Role:
    if kind in ("chat", "ChatMessageChunk"):
        return _CHAT_ROLES.get(str(data.get("role")), Role.ASSISTANT)
    return _ROLES.get(kind, Role.ASSISTANT)


def _split(kind: str, data: dict[str, Any]) -> tuple[list[ContentBlock], dict[str, Any]]:
    """(blocks, the rest of the message's fields)."""
    rest = dict(data)
    content = rest.pop("content", None)
    blocks: list[ContentBlock]
    if isinstance(content, str):
        blocks = [Text(content)] if content else []
    elif isinstance(content, list):
        blocks, rest["content"] = split_parts(content, _take)
    else:
        blocks, rest["content"] = [], content
    if kind in _WITH_RESULT and isinstance(rest.get("tool_call_id"), str):
        status = rest.pop("status", "success")
        if status not in ("success", "error"):
            rest["status"] = status
        parts = [b for b in blocks if isinstance(b, Text | Image)]
        body: str | list[Text | Image] = content if isinstance(content, str) else parts
        blocks = [ToolResult(rest.pop("tool_call_id"), body, status == "error")]
    if kind in _WITH_TOOL_CALLS:
        calls = rest.get("tool_calls") or []
        uses = [_use(call) for call in calls]
        blocks += [use for use in uses if use is not None]
        if all(use is not None for use in uses):
            rest.pop("tool_calls", None)
    return blocks, rest


def _use(call: Any) -> ToolUse | None:
    if (
        isinstance(call, dict)
        and call.keys() == {"name", "args", "id", "type"}
        and call["type"] == "tool_call"
        and isinstance(call["id"], str)
        and isinstance(call["name"], str)
        and isinstance(call["args"], dict)
    ):
        return ToolUse(call["id"], call["name"], call["args"])
    return None


def _take(part: Any) -> tuple[ContentBlock, Any] | None:
    """A content part -> (its block, the part without the block's value), when a block fits.
    A plain string part becomes ``None``."""
    if isinstance(part, str):
        return Text(part), None
    if not isinstance(part, dict):
        return None
    kind = part.get("type")
    key = _TEXT_KEYS.get(kind) if isinstance(kind, str) else None
    if key is not None and isinstance(part.get(key), str):
        block: ContentBlock = Text(part[key]) if kind == "text" else Thinking(part[key])
        return block, {k: v for k, v in part.items() if k != key}
    if kind == "image_url":
        url = part.get("image_url")
        if isinstance(url, dict) and (image := image_of(url.get("url"))) is not None:
            return image, {**part, "image_url": {k: v for k, v in url.items() if k != "url"}}
        if (image := image_of(url)) is not None:
            return image, {k: v for k, v in part.items() if k != "image_url"}
    return None


def _fill(part: Any, next_block: Callable[[], ContentBlock | None]) -> Any:
    """Put a block's value back into a part ``_take`` emptied."""
    if part is None:
        block = next_block()
        return block.text if isinstance(block, Text) else part
    if not isinstance(part, dict):
        return part
    kind = part.get("type")
    key = _TEXT_KEYS.get(kind) if isinstance(kind, str) else None
    if key is not None and key not in part:
        block = next_block()
        if isinstance(block, Text | Thinking):
            return {**part, key: block.text}
    elif kind == "image_url":
        url = part.get("image_url")
        if url is None or (isinstance(url, dict) and "url" not in url):
            block = next_block()
            if isinstance(block, Image):
                if isinstance(url, dict):
                    return {**part, "image_url": {**url, "url": data_url(block)}}
                return {**part, "image_url": data_url(block)}
    return part


def _content(blocks: Sequence[ContentBlock]) -> str | list[Any]:
    """The content of a message stored without its parts: the text, or parts for images and thoughts."""
    if all(isinstance(b, Text) for b in blocks):
        return "".join(b.text for b in blocks if isinstance(b, Text))
    parts: list[Any] = []
    for block in blocks:
        if isinstance(block, Text):
            parts.append({"type": "text", "text": block.text})
        elif isinstance(block, Thinking):
            parts.append({"type": "thinking", "thinking": block.text})
        elif isinstance(block, Image):
            parts.append({"type": "image_url", "image_url": {"url": data_url(block)}})
    return parts


@functools.cache
def _defaults(cls: type[BaseMessage]) -> dict[str, Any]:
    """The fields of a message class that have defaults, with those defaults."""
    return {
        name: field.get_default(call_default_factory=True)
        for name, field in cls.model_fields.items()
        if not field.is_required()
    }
