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

import uuid
from collections.abc import Sequence

from ._common import Store, StoreAccess, missing_framework

try:
    from langchain_core.chat_history import BaseChatMessageHistory
    from langchain_core.messages import BaseMessage
except ImportError as exc:  # tested with the import blocked
    raise missing_framework(exc, "LangChain (langchain-core)", "langchain") from exc

from ._langchain import to_langchain, to_message

__all__ = ["RedisChatMessageHistory", "to_langchain", "to_message"]


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
