"""What both integrations share: session ids, the store behind async and sync calls, content parts.

No framework is imported here.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import re
import uuid
from collections.abc import Callable, Iterator, Sequence
from typing import Any, Final

import msgspec

from ..aio import AsyncSessionStore
from ..errors import InvalidArgumentType, InvalidSessionId, SessionExists, SessionNotFound
from ..keys import session_id as parse_session_id
from ..models import AgentMessage, ContentBlock, Image
from ..store import SessionStore
from ..tokens import Context

__all__ = [
    "SESSION_NAMESPACE",
    "StoreAccess",
    "clone",
    "data_url",
    "fill_parts",
    "image_of",
    "missing_framework",
    "session_uuid",
    "split_parts",
]

SESSION_NAMESPACE: Final = uuid.UUID("4ef87f54-9742-528e-a729-e6721d7d8f21")
"""The uuid5 namespace of framework session ids: ``uuid5(NAMESPACE_URL, "redis-sessions:session-id")``.
Fixed forever: changing it would orphan every stored conversation."""

Store = SessionStore | AsyncSessionStore
_CREATE_ATTEMPTS = 3  # create-then-append, again if another process deletes in between
_DATA_URL = re.compile(r"data:([\w.+-]+/[\w.+-]+);base64,([A-Za-z0-9+/]*={0,2})\Z")
_ENCODER = msgspec.msgpack.Encoder()
_DECODER = msgspec.msgpack.Decoder()


def session_uuid(session_id: str | uuid.UUID) -> uuid.UUID:
    """The UUID a framework's session id is stored under: a UUID (or its canonical 36-character
    string, either case) is itself; any other string is ``uuid5(SESSION_NAMESPACE, session_id)``."""
    if isinstance(session_id, uuid.UUID):
        return session_id
    if not isinstance(session_id, str):
        raise InvalidArgumentType(f"a session id is a str or a uuid.UUID, got {type(session_id).__name__}")
    try:
        return parse_session_id(session_id)
    except InvalidSessionId:
        return uuid.uuid5(SESSION_NAMESPACE, session_id)


def missing_framework(exc: ImportError, framework: str, extra: str) -> ImportError:
    """The error an integration raises when its framework cannot be imported."""
    return ImportError(
        f"redis_sessions.integrations.{extra.replace('-', '_')} needs {framework}: "
        f"pip install 'redis-sessions[{extra}]' ({exc})"
    )


def clone(value: Any) -> Any:
    """A deep copy of stored JSON-like data: messages read may be shared with the store's cache."""
    return _DECODER.decode(_ENCODER.encode(value))


def image_of(url: object) -> Image | None:
    """The image in a ``data:<type>;base64,<data>`` URL, or ``None`` for anything else."""
    if not isinstance(url, str) or not url.startswith("data:"):
        return None
    match = _DATA_URL.match(url)
    if match is None:
        return None
    try:
        return Image(match[1], base64.b64decode(match[2], validate=True))
    except binascii.Error:
        return None


def data_url(image: Image) -> str:
    """An image as a ``data:`` URL (the inverse of ``image_of``)."""
    return f"data:{image.media_type};base64,{base64.b64encode(image.data).decode('ascii')}"


Split = Callable[[Any], tuple[ContentBlock, Any] | None]
Fill = Callable[[Any, Callable[[], ContentBlock | None]], Any]


def split_parts(parts: Sequence[Any], split: Split) -> tuple[list[ContentBlock], list[Any]]:
    """Content parts -> (typed blocks, the parts with what the blocks carry taken out).

    ``split(part)`` returns ``(block, rest of the part)`` for a part a block can carry, else
    ``None`` (the part is kept whole). Blocks come in the parts' order, which ``fill_parts`` uses.
    """
    blocks: list[ContentBlock] = []
    rest: list[Any] = []
    for part in parts:
        taken = split(part)
        if taken is None:
            rest.append(part)
        else:
            blocks.append(taken[0])
            rest.append(taken[1])
    return blocks, rest


def fill_parts(rest: Sequence[Any], blocks: Sequence[ContentBlock], fill: Fill) -> list[Any]:
    """The inverse of ``split_parts``: ``fill(part, next_block)`` puts a block back into a part
    that lacks it (taking blocks in order) and returns any other part as it is."""
    pending: Iterator[ContentBlock] = iter(blocks)
    return [fill(part, lambda: next(pending, None)) for part in rest]


class StoreAccess:
    """The session of a framework's ``session_id`` in a ``SessionStore`` or an ``AsyncSessionStore``.

    The session is stored under ``session_uuid(session_id)`` (``sid``) and created by the first
    write, with metadata ``integration`` and ``external_id``; a missing session reads as empty.
    The async methods await an ``AsyncSessionStore`` and run a ``SessionStore`` in a worker thread
    (``asyncio.to_thread``), so they never block the event loop. The ``*_sync`` methods need a
    ``SessionStore``: an ``AsyncSessionStore``'s connections belong to its event loop, which a
    synchronous caller cannot safely drive, so they raise ``TypeError`` instead.
    """

    def __init__(self, store: Store, session_id: str | uuid.UUID, owner: str, integration: str) -> None:
        if not isinstance(store, SessionStore | AsyncSessionStore):
            raise InvalidArgumentType(
                f"{owner} needs a SessionStore or an AsyncSessionStore, got {type(store).__name__}"
            )
        self.store = store
        self.session_id = str(session_id)
        self.sid = session_uuid(session_id)
        self._owner = owner
        self._metadata = {"integration": integration, "external_id": self.session_id}

    async def _call(self, method: str, *args: Any, **kwargs: Any) -> Any:
        """``store.<method>(...)``, awaited, or in a worker thread for a ``SessionStore``."""
        bound = getattr(self.store, method)
        if isinstance(self.store, AsyncSessionStore):
            return await bound(*args, **kwargs)
        return await asyncio.to_thread(bound, *args, **kwargs)

    async def messages(self, start: int = 0) -> list[AgentMessage]:
        try:
            messages: list[AgentMessage] = await self._call("messages", self.sid, start)
        except SessionNotFound:
            return []
        return messages

    async def context(self, max_tokens: int) -> list[AgentMessage]:
        """The summary and the newest messages that fit ``max_tokens`` (``store.context``)."""
        try:
            window: Context = await self._call("context", self.sid, max_tokens)
        except SessionNotFound:
            return []
        return window.as_list()

    async def extend(self, messages: Sequence[AgentMessage]) -> None:
        for attempt in range(_CREATE_ATTEMPTS):
            try:
                await self._call("extend", self.sid, messages)
                return
            except SessionNotFound:
                if attempt == _CREATE_ATTEMPTS - 1:
                    raise
            with contextlib.suppress(SessionExists):  # another process created it first: fine
                await self._call("create", metadata=self._metadata, session_id=self.sid)

    async def pop(self) -> AgentMessage | None:
        try:
            message: AgentMessage | None = await self._call("pop", self.sid)
        except SessionNotFound:
            return None
        return message

    async def delete(self) -> None:
        await self._call("delete", self.sid)

    def messages_sync(self, start: int = 0) -> list[AgentMessage]:
        try:
            return self._sync("messages").messages(self.sid, start)
        except SessionNotFound:
            return []

    def context_sync(self, max_tokens: int) -> list[AgentMessage]:
        try:
            return self._sync("messages").context(self.sid, max_tokens).as_list()
        except SessionNotFound:
            return []

    def extend_sync(self, messages: Sequence[AgentMessage]) -> None:
        store = self._sync("add_messages")
        for attempt in range(_CREATE_ATTEMPTS):
            try:
                store.extend(self.sid, messages)
                return
            except SessionNotFound:
                if attempt == _CREATE_ATTEMPTS - 1:
                    raise
            with contextlib.suppress(SessionExists):
                store.create(metadata=self._metadata, session_id=self.sid)

    def delete_sync(self) -> None:
        self._sync("clear").delete(self.sid)

    def _sync(self, method: str) -> SessionStore:
        if isinstance(self.store, SessionStore):
            return self.store
        raise InvalidArgumentType(
            f"{self._owner}.{method} is synchronous and this history holds an AsyncSessionStore: "
            f"use the async methods (aget_messages, aadd_messages, aclear; ainvoke on a chain), "
            f"or give it a SessionStore"
        )
