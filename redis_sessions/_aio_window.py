"""``AsyncWindowing``: the methods of ``AsyncSessionStore`` that keep a conversation inside a
model's window: ``context`` (a token-budgeted read), ``summarize`` and ``compact`` (stored
summaries, compare-and-set), and ``fork``.

This module is the source of ``_window.py`` (``python tools/unasync.py``), like ``aio.py``.
"""

from __future__ import annotations

import inspect
import uuid

from . import _context as budget
from . import _fork as forking
from ._aio_recovery import RECOVERABLE, AsyncRecovery
from ._aio_transport import AsyncTransport
from ._core import StoreCore
from .cache import HistoryCache
from .errors import ConflictError, InvalidArgument, StoreError
from .keys import session_id as parse_session_id
from .models import AgentMessage, SessionId
from .tokens import Context, Summarizer, keep_newest

__all__ = ["AsyncWindowing"]


class AsyncWindowing:
    """Part of ``AsyncSessionStore`` (which sets these attributes)."""

    transport: AsyncTransport
    _core: StoreCore
    _recovery: AsyncRecovery
    _cache: HistoryCache | None

    async def context(self, session_id: SessionId | str, max_tokens: int, *, reserve: int = 0) -> Context:
        """The session's summary and the newest messages after it that fit ``max_tokens - reserve``
        tokens (stored counts, ``token_counter=``), in one round trip; the history cache spares
        re-sending messages it holds. It never starts with a tool result whose tool use did not fit."""
        try:
            return await self.transport.run(
                budget.context(self._core, session_id, max_tokens, reserve, self._cache)
            )
        except RECOVERABLE as exc:
            return await self._recovery.recover(
                exc, lambda: budget.context(self._core, session_id, max_tokens, reserve, None)
            )

    async def summarize(
        self,
        session_id: SessionId | str,
        summary: AgentMessage | str,
        *,
        through_seq: int,
        expected: int | None = None,
        trim: bool = False,
    ) -> int:
        """Store ``summary`` (a text one as a system message) as standing for messages
        1..``through_seq``: ``context`` then returns it and the messages after ``through_seq``. No
        message is removed or hidden from ``messages``. ``expected``: the ``through_seq`` of the
        summary you read (0 for none); ``ConflictError`` if another was stored since, or if the stored
        one covers more than ``through_seq``. ``trim=True`` drops the covered messages from Redis (a
        durable session's once its backing store holds them, which keeps them). Returns ``through_seq``."""
        return await self._recovery.through(
            lambda: budget.summarize(self._core, session_id, summary, through_seq, expected, "", trim)
        )

    async def compact(
        self,
        session_id: SessionId | str,
        summarizer: Summarizer,
        *,
        over_tokens: int,
        keep_tokens: int,
        trim: bool = False,
    ) -> int | None:
        """When the summary plus the messages after it exceed ``over_tokens``, fold all but the
        newest ``keep_tokens`` of them into a new summary with ``summarizer(messages)`` (the previous
        summary first; the asyncio store also awaits a coroutine) and store it; returns its
        ``through_seq``.

        Exactly one worker does it: the first takes the session's compaction lock (not its turn
        lease) and the others return ``None`` at once, as they do under the threshold. A summary
        stored late (its lock expired and another worker summarised) is refused and dropped.
        ``trim``: as ``summarize``'s."""
        sid = parse_session_id(session_id)
        if type(keep_tokens) is not int or keep_tokens < 0 or not keep_tokens < over_tokens:
            raise InvalidArgument("keep_tokens must be an int >= 0 and below over_tokens", sid)
        work = await self.transport.run(budget.compact_begin(self._core, sid, over_tokens))
        if work is None:
            return None
        try:
            keep = keep_newest(work.messages, work.counts, keep_tokens)
            if keep == 0:
                await self.transport.run(budget.compact_release(self._core, sid, work.token))
                return None
            folded = ([] if work.summary is None else [work.summary]) + work.messages[:keep]
            result = summarizer(folded)
            if inspect.isawaitable(result):
                result = await result
            through = work.first_seq + keep - 1
            summary = budget.settled(sid, result)
            call = budget.summarize(self._core, sid, summary, through, work.summary_seq, work.token, trim)
            return await self.transport.run(call)
        except ConflictError:  # our lock expired and another worker summarised: drop ours
            await self.transport.run(budget.compact_release(self._core, sid, work.token))
            return None
        except BaseException:
            await self.transport.run(budget.compact_release(self._core, sid, work.token))
            raise

    async def fork(
        self, session_id: SessionId | str, *, at_seq: int | None = None, new_id: SessionId | str | None = None
    ) -> SessionId:
        """A new session holding messages 1..``at_seq`` (default: all) with this one's configuration,
        metadata and summary (if it covers no more), its parent and fork point recorded (``info``).

        Idempotent by ``new_id``: a retried fork makes one copy (``SessionExists`` if ``new_id`` is
        another session). Never visible half-made, on one server or a cluster (where the two
        sessions are in different slots): the copy is staged under expiring keys, then published in
        one step. Messages are copied as stored bytes, never decoded."""
        parent = parse_session_id(session_id)
        new = uuid.uuid4() if new_id is None else parse_session_id(new_id)
        if new == parent:
            raise InvalidArgument("a fork needs a new id, not its parent's", parent)
        if new_id is not None and await self.transport.run(forking.existing(self._core, new, parent, at_seq)):
            return new
        snapshot = await self._recovery.through(lambda: forking.read(self._core, parent, at_seq))
        snapshot = forking.resealed(self._core, parent, new, snapshot)
        for _ in range(3):  # staged copies that expire before they are published are staged again
            token = uuid.uuid4().hex
            await self.transport.run(forking.stage(self._core, new, snapshot, token))
            if await self.transport.run(forking.publish(self._core, parent, new, snapshot, at_seq, token)):
                return new
        raise StoreError("fork", new, "its staged copy kept expiring before it was published")
