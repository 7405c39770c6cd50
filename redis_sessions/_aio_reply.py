"""``AsyncReplyStream``: a streamed partial reply on one session of an ``AsyncSessionStore``.

This module is the source of ``_reply.py`` (``python tools/unasync.py``), like ``aio.py``.
"""

from __future__ import annotations

import contextlib
import math
import time
from typing import TYPE_CHECKING, Any, Self

import msgspec

from . import _partial as partial
from ._deferred import async_later
from ._write import fence_arg
from .errors import InvalidArgumentType, ReplyClosed, ReplyTooLarge, SessionError
from .keys import session_id as parse_session_id
from .models import AgentMessage, Role, SessionId, Text

if TYPE_CHECKING:
    from ._aio_transport import AsyncTransport

__all__ = ["AsyncReplyStream", "AsyncStreaming"]


class AsyncReplyStream:
    """One reply streamed out as it is made, for every watcher of the session to follow
    (``store.watch(sid, partial=True)``), then stored as one message by ``finish``.

    ``async with store.stream(sid, fence=lease.token) as reply: await reply.write("Hel")``.
    ``write`` buffers: deltas go to Redis in one round trip when ``flush_deltas`` are waiting, or
    at the first ``write`` ``flush_interval`` seconds after the last send (and on ``flush``,
    ``finish``, ``abort``), so a token does not cost a round trip. On the asyncio store a delta
    left waiting goes by itself ``flush_interval`` seconds on; on the sync one, with the next call.
    Leaving the block finishes the reply, or aborts it when an exception leaves it.
    """

    def __init__(
        self,
        transport: AsyncTransport,
        sid: SessionId,
        message_id: str,
        role: Role,
        fence: int | None,
        flush: tuple[float, int],
        limits: tuple[int, int, int],
    ) -> None:
        self.transport, self.session_id, self.message_id, self.role = transport, sid, message_id, role
        self.fence = fence
        self.flush_interval, self.flush_deltas = flush
        self.max_deltas, self.max_bytes, self._idle_ms = limits
        self.seq: int | None = None
        """The final message's seq, once ``finish`` stored it."""
        self.state = "open"
        """``"open"``, ``"finished"`` or ``"aborted"``."""
        self._parts: list[str] = []  # every delta written
        self._stored = 0  # deltas stored in Redis
        self._bytes = 0
        self._sent = -math.inf  # when deltas were last sent (time.monotonic): never yet
        self._timer: Any = None  # the flush scheduled for buffered deltas (asyncio only)

    async def write(self, text: str) -> int:
        """Add ``text`` to the reply; its index (0, 1, 2...). ``ReplyTooLarge`` past the reply's
        bounds (nothing written before is lost); with a fence, ``LeaseLost`` once the lease is gone."""
        if type(text) is not str:
            raise InvalidArgumentType("a delta must be a str", self.session_id)
        self._check_open()
        index, size = len(self._parts), len(text.encode())
        if index + 1 > self.max_deltas:
            raise ReplyTooLarge(self.session_id, self.message_id, "deltas", self.max_deltas)
        if self._bytes + size > self.max_bytes:
            raise ReplyTooLarge(self.session_id, self.message_id, "bytes", self.max_bytes)
        self._parts.append(text)
        self._bytes += size
        if len(self._parts) - self._stored >= self.flush_deltas or (
            time.monotonic() - self._sent >= self.flush_interval
        ):
            await self.flush()
        elif self._timer is None:
            self._timer = async_later(self.flush_interval, self._flush_later)
        return index

    async def flush(self) -> None:
        """Send the deltas written and not yet sent, now."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if self._stored == len(self._parts):
            return
        texts = self._parts[self._stored :]
        limits = (self.max_deltas, self.max_bytes, self._idle_ms)
        call = partial.write(
            self.transport.core, self.session_id, self.message_id, self.fence, self._stored, texts, limits
        )
        self._stored = max(self._stored, await self.transport.run(call))  # sends may overlap
        self._sent = time.monotonic()

    async def _flush_later(self) -> None:
        self._timer = None
        with contextlib.suppress(SessionError):  # the next write, flush or finish meets it again
            await self.flush()

    async def finish(self, message: AgentMessage | None = None) -> int:
        """Store the final message (by default one ``Text`` of every delta; given one, it gets
        this reply's ``message_id``) and close the reply, in one step; its seq. A retry stores it once."""
        if self.seq is not None:
            return self.seq
        self._check_open()
        await self.flush()
        if message is None:
            message = AgentMessage(role=self.role, content=[Text("".join(self._parts))], id=self.message_id)
        elif not isinstance(message, AgentMessage):
            raise InvalidArgumentType("finish takes an AgentMessage or None", self.session_id)
        elif message.id != self.message_id:
            message = msgspec.structs.replace(message, id=self.message_id)
        self.seq = await self.transport.run(
            partial.finish(self.transport.core, self.session_id, message, self.fence)
        )
        self.state = "finished"
        return self.seq

    async def abort(self, reason: str = "") -> None:
        """End the reply without a message: watchers get ``Aborted(message_id, reason)``; what was
        written stays readable for a while (``KEEP``). A closed reply is left as it is."""
        if self.state != "open":
            return
        if not isinstance(reason, str):
            raise InvalidArgumentType("reason must be a str", self.session_id)
        with contextlib.suppress(SessionError):  # send what is buffered, if the store still takes it
            await self.flush()
        self.state = "aborted"
        await self.transport.run(partial.abort(self.transport.core, self.session_id, self.message_id, reason))

    def _check_open(self) -> None:
        if self.state != "open":
            raise ReplyClosed(self.session_id, self.message_id, self.state)

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, kind: type[BaseException] | None, error: object, tb: object) -> None:
        if self.state != "open":
            return
        if kind is None:
            await self.finish()
        else:
            await self.abort(kind.__name__)


class AsyncStreaming:
    """Part of ``AsyncSessionStore`` (which sets this attribute): ``stream``."""

    transport: AsyncTransport

    def stream(
        self,
        session_id: SessionId | str,
        *,
        fence: int | None = None,
        message_id: str | None = None,
        role: Role = Role.ASSISTANT,
        flush_interval: float = 0.002,
        flush_deltas: int = 64,
        max_deltas: int = partial.MAX_DELTAS,
        max_bytes: int = partial.MAX_REPLY_BYTES,
        idle: float = partial.IDLE,
    ) -> AsyncReplyStream:
        """A reply streamed into the session as it is made: use it as a context manager, ``write`` deltas,
        and leaving the block stores the final message (``finish``) or, on an exception, aborts.

        Every watcher with ``partial=True``, in any process, follows the deltas as they come. With
        ``fence`` (a lease's token) every write and the finish are refused (``LeaseLost``) once that
        lease is no longer live. Deltas are sent ``flush_deltas`` at a time, or every
        ``flush_interval`` seconds; a reply holds at most ``max_deltas`` deltas and ``max_bytes``
        bytes (``ReplyTooLarge``). Unfenced, readers take a reply that wrote nothing for ``idle``
        seconds for dead. ``message_id`` (default: a new one) becomes the final message's id.
        """
        sid = parse_session_id(session_id)
        partial.check_options(sid, flush_interval, flush_deltas, (max_deltas, max_bytes, idle))
        if message_id is None:
            message_id = AgentMessage(role=role, content=[]).id
        elif not isinstance(message_id, str) or not message_id:
            raise InvalidArgumentType("message_id must be a non-empty str or None", sid)
        if not isinstance(role, Role):
            raise InvalidArgumentType("role must be a Role", sid)
        fence_arg(sid, fence)
        limits = (max_deltas, max_bytes, max(1, round(idle * 1000)))
        reply = AsyncReplyStream(
            self.transport, sid, message_id, role, fence, (flush_interval, flush_deltas), limits
        )
        if self.transport.telemetry is not None:
            self.transport.telemetry.watch_stream(reply)
        return reply
