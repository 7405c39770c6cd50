"""``RedisAgentSession``: the OpenAI Agents SDK's ``Session``, stored by redis-sessions.

    from agents import Agent, Runner
    from redis_sessions import AsyncSessionStore
    from redis_sessions.integrations.openai_agents import RedisAgentSession

    store = AsyncSessionStore.from_url("redis://localhost:6379/0")
    result = await Runner.run(agent, "Hi", session=RedisAgentSession("user-42", store))

Each item is one ``AgentMessage``. What the typed blocks can say they carry, so any reader (the
``show`` command, an agent on another framework) sees a real conversation:

==========================================  ============  ==========================================
item                                        role          blocks
==========================================  ============  ==========================================
message (user / system / developer /        that role     ``Text`` per ``input_text`` /
assistant; string or list content)          (developer:   ``output_text`` / ``refusal`` part, an
                                            system)       ``Image`` per ``data:`` URL ``input_image``
``function_call``                           assistant     ``ToolUse(call_id, name, arguments)``
``function_call_output``                    tool          ``ToolResult(call_id, output)``
``reasoning``                               assistant     ``Thinking`` per summary text
anything else (web search, computer,        assistant     none
MCP, shell calls, ...)
==========================================  ============  ==========================================

The rest of the item (ids, status, annotations, logprobs, image detail, ...) goes to the message's
``extra["openai"]``, and nothing when there is no rest; an item of another kind is kept whole in
``extra["openai_item"]``. Every item is checked on the way in: if it would not come back equal, it
is kept whole too. So ``get_items`` gives back dicts equal to what ``add_items`` took.

Message ids are random, not the item's ``id``: the SDK may give distinct items one id (Chat
Completions output items all carry ``"__fake_id__"``) and a user may pass old items as new input;
the store's own retries are still idempotent, because the id is chosen before the first send.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any, cast

import msgspec

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
    from agents.items import TResponseInputItem
    from agents.memory.session_settings import SessionSettings, coerce_session_settings, resolve_session_limit
except ImportError as exc:  # tested with the import blocked
    raise missing_framework(exc, "the OpenAI Agents SDK (openai-agents)", "openai-agents") from exc

if TYPE_CHECKING:
    from agents.memory.session import Session

__all__ = ["RedisAgentSession", "to_item", "to_message"]

Item = dict[str, Any]
_ROLES = {"user": Role.USER, "assistant": Role.ASSISTANT, "system": Role.SYSTEM, "developer": Role.SYSTEM}
_ROLE_NAMES = {Role.USER: "user", Role.ASSISTANT: "assistant", Role.SYSTEM: "system", Role.TOOL: "user"}
_JSON_ENCODER = msgspec.json.Encoder()
_JSON_DECODER = msgspec.json.Decoder()
_TEXT_KEYS = {"input_text": "text", "output_text": "text", "summary_text": "text", "refusal": "refusal"}


class RedisAgentSession:
    """A ``Session`` of the OpenAI Agents SDK over a ``SessionStore`` or an ``AsyncSessionStore``.

    ``session_id`` is the SDK's free string; the conversation is stored under
    ``session_uuid(session_id)`` (``self.uuid``). The session is created by the first
    ``add_items`` (with metadata ``integration`` and ``external_id``), so any number of processes
    can open the same id. ``pop_item`` is one atomic script: two processes popping at once never
    get the same item (not on a store with a ``backing`` adapter, which keeps every message).
    ``clear_session`` deletes the session, metadata included; the next ``add_items`` starts anew.
    A ``SessionStore``'s calls run in a worker thread, so the event loop never blocks.
    """

    session_settings: SessionSettings | None = None

    def __init__(
        self,
        session_id: str | uuid.UUID,
        store: Store,
        *,
        session_settings: SessionSettings | dict[str, Any] | None = None,
    ) -> None:
        self._access = StoreAccess(store, session_id, type(self).__name__, "openai-agents")
        self.session_id = self._access.session_id
        self.uuid = self._access.sid
        self.session_settings = (
            SessionSettings() if session_settings is None else coerce_session_settings(session_settings)
        )

    @property
    def store(self) -> Store:
        return self._access.store

    async def get_items(self, limit: int | None = None) -> list[TResponseInputItem]:
        """The history, oldest first; with ``limit`` (else ``session_settings.limit``) the last
        ``limit`` items. Only those are read from Redis."""
        limit = resolve_session_limit(limit, self.session_settings)
        if limit is not None and limit <= 0:
            return []
        messages = await self._access.messages(0 if limit is None else -limit)
        return [cast("TResponseInputItem", to_item(m)) for m in messages]

    async def add_items(self, items: list[TResponseInputItem]) -> None:
        """Append ``items`` in one atomic step (all or none), creating the session if needed."""
        if items:
            await self._access.extend([to_message(cast(Item, item)) for item in items])

    async def pop_item(self) -> TResponseInputItem | None:
        """Remove and return the last item atomically; ``None`` when there is none."""
        message = await self._access.pop()
        return None if message is None else cast("TResponseInputItem", to_item(message))

    async def clear_session(self) -> None:
        """Delete the session and everything in it."""
        await self._access.delete()

    def __repr__(self) -> str:
        return f"RedisAgentSession({self.session_id!r}, uuid={self.uuid})"


def to_message(item: Mapping[str, Any]) -> AgentMessage:
    """One SDK item as an ``AgentMessage`` that ``to_item`` turns back into an equal dict."""
    if not isinstance(item, Mapping):
        raise InvalidArgumentType(f"an Agents SDK item is a dict, got {type(item).__name__}")
    item = dict(item)
    role, blocks, rest = _split(item)
    if rest is not None:
        message = AgentMessage(role, blocks, extra={"openai": rest} if rest else None)
        if to_item(message) == item:
            return message
    return AgentMessage(role, blocks, extra={"openai_item": clone(item)})


def to_item(message: AgentMessage) -> Item:
    """The SDK item an ``AgentMessage`` holds; a message another writer stored becomes the nearest
    item (a text message, a ``function_call`` or a ``function_call_output``)."""
    extra = clone(message.extra) if message.extra else {}
    whole = extra.get("openai_item")
    if isinstance(whole, dict):
        return whole
    item: Item = extra.get("openai") or {}
    blocks = message.content
    kind = item.get("type") or _kind_of(blocks)
    if kind == "function_call":
        use = next((b for b in blocks if isinstance(b, ToolUse)), None)
        if use is not None:
            item = {"type": "function_call", "call_id": use.id, "name": use.name, **item}
            item.setdefault("arguments", _dumps(use.input))
        return item
    if kind == "function_call_output":
        result = next((b for b in blocks if isinstance(b, ToolResult)), None)
        if result is not None:
            item = {"type": "function_call_output", "call_id": result.tool_use_id, **item}
            item["output"] = _body(item.get("output"), result.content)
        return item
    if kind == "reasoning":
        if isinstance(item.get("summary"), list):
            item["summary"] = fill_parts(item["summary"], blocks, _fill)
        return item
    # a message
    item.setdefault("role", _ROLE_NAMES[message.role])
    content = item.get("content")
    if isinstance(content, list):
        item["content"] = fill_parts(content, blocks, _fill)
    elif "content" not in item:
        if any(isinstance(b, Image) for b in blocks):
            item["content"] = [_part(b) for b in blocks if isinstance(b, Text | Image)]
        else:
            item["content"] = message.text
    return item


def _split(item: Item) -> tuple[Role, list[ContentBlock], Item | None]:
    """(role, blocks, rest): ``rest`` is what ``to_item`` needs besides the blocks (``None``: keep
    the item whole). Never raises on odd shapes; the round-trip check in ``to_message`` decides."""
    kind = item.get("type")
    role = item.get("role")
    if kind in (None, "message") and isinstance(role, str) and role in _ROLES:
        rest = {k: v for k, v in item.items() if k != "content"}
        if rest["role"] == _ROLE_NAMES[_ROLES[role]]:
            del rest["role"]
        content = item.get("content")
        if isinstance(content, str):
            return _ROLES[role], [Text(content)] if content else [], rest
        if isinstance(content, list):
            blocks, parts = split_parts(content, _take)
            return _ROLES[role], blocks, {**rest, "content": parts}
    elif kind == "function_call":
        call_id, name, arguments = item.get("call_id"), item.get("name"), item.get("arguments")
        if isinstance(call_id, str) and isinstance(name, str) and isinstance(arguments, str):
            rest = {k: v for k, v in item.items() if k not in ("type", "call_id", "name", "arguments")}
            arguments_dict = _loads(arguments)
            if arguments_dict is None or _dumps(arguments_dict) != arguments:
                rest["arguments"] = arguments
            return Role.ASSISTANT, [ToolUse(call_id, name, arguments_dict or {})], rest
    elif kind == "function_call_output":
        call_id, output = item.get("call_id"), item.get("output")
        rest = {k: v for k, v in item.items() if k not in ("type", "call_id", "output")}
        if isinstance(call_id, str) and isinstance(output, str):
            return Role.TOOL, [ToolResult(call_id, output)], rest
        if isinstance(call_id, str) and isinstance(output, list):
            blocks, parts = split_parts(output, _take)
            content = [b for b in blocks if isinstance(b, Text | Image)]
            return Role.TOOL, [ToolResult(call_id, content)], {**rest, "output": parts}
    elif kind == "reasoning" and isinstance(item.get("summary"), list):
        blocks, parts = split_parts(item["summary"], _take)
        thoughts: list[ContentBlock] = [Thinking(b.text) for b in blocks if isinstance(b, Text)]
        return Role.ASSISTANT, thoughts, {**item, "summary": parts}
    return Role.ASSISTANT, [], None


def _kind_of(blocks: list[ContentBlock]) -> str:
    """The item kind a message without a recorded ``type`` holds."""
    if any(isinstance(b, ToolResult) for b in blocks):
        return "function_call_output"
    if any(isinstance(b, ToolUse) for b in blocks) and not any(isinstance(b, Text) for b in blocks):
        return "function_call"
    return "message"


def _take(part: Any) -> tuple[ContentBlock, Any] | None:
    """A content part -> (its block, the part without the block's value), when a block fits."""
    if not isinstance(part, dict):
        return None
    kind = part.get("type")
    key = _TEXT_KEYS.get(kind) if isinstance(kind, str) else None
    if key is not None and isinstance(part.get(key), str):
        return Text(part[key]), {k: v for k, v in part.items() if k != key}
    if kind == "input_image":
        image = image_of(part.get("image_url"))
        if image is not None:
            return image, {k: v for k, v in part.items() if k != "image_url"}
    return None


def _fill(part: Any, next_block: Callable[[], ContentBlock | None]) -> Any:
    """Put a block's value back into a part ``_take`` emptied."""
    if not isinstance(part, dict):
        return part
    kind = part.get("type")
    key = _TEXT_KEYS.get(kind) if isinstance(kind, str) else None
    if key is not None and key not in part:
        block = next_block()
        if isinstance(block, Text | Thinking):
            return {**part, key: block.text}
    elif kind == "input_image" and "image_url" not in part and "file_id" not in part:
        block = next_block()
        if isinstance(block, Image):
            return {**part, "image_url": data_url(block)}
    return part


def _part(block: Text | Image) -> Item:
    if isinstance(block, Text):
        return {"type": "input_text", "text": block.text}
    return {"type": "input_image", "image_url": data_url(block), "detail": "auto"}


def _body(stored: Any, content: str | list[Text | Image]) -> Any:
    """A ``function_call_output``'s ``output``: stored parts refilled, else the result's content."""
    if isinstance(stored, list):
        return fill_parts(stored, content if isinstance(content, list) else [], _fill)
    if stored is not None:
        return stored
    return content if isinstance(content, str) else [_part(b) for b in content]


def _loads(arguments: str) -> dict[str, Any] | None:
    try:
        value = _JSON_DECODER.decode(arguments)
    except msgspec.DecodeError:
        return None
    return value if isinstance(value, dict) else None


def _dumps(arguments: dict[str, Any]) -> str:
    """Tool-call arguments as the OpenAI APIs write them: compact JSON, not ASCII-escaped."""
    return _JSON_ENCODER.encode(arguments).decode()


if TYPE_CHECKING:

    def _is_a_session(session: RedisAgentSession) -> Session:
        return session  # mypy checks that RedisAgentSession satisfies the Session protocol
