"""How a LangChain message is stored: ``to_message`` and ``to_langchain``, and the tables and
helpers between them (the mapping is drawn in ``redis_sessions.integrations.langchain``'s docstring).

Imports LangChain: only ``redis_sessions.integrations.langchain`` imports this module, after its guard.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from typing import Any

from langchain_core.messages import BaseMessage, message_to_dict, messages_from_dict

from ..errors import InvalidArgumentType
from ..models import AgentMessage, ContentBlock, Image, Role, Text, Thinking, ToolResult, ToolUse
from ._common import clone, data_url, fill_parts, image_of, split_parts

__all__ = ["to_langchain", "to_message"]

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
