"""``Watching``: the live methods of ``SessionStore`` (``watch``, ``next_message``).

GENERATED from ``_aio_watch.py`` by ``python tools/unasync.py``: do not edit; edit the source and
regenerate. See the source's docstring.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Generator
from typing import Any, Literal, overload

from . import _live as live
from . import _partial as partial
from ._transport import Transport
from ._core import StoreCore
from ._live import Appended
from ._partial import Event
from .errors import InvalidArgument
from .keys import live_keys, reply_keys
from .keys import session_id as parse_session_id
from .models import SessionId
from .retry import TRANSIENT

__all__ = ["Watching"]


class Watching:
    """Part of ``SessionStore`` (which sets these attributes)."""

    transport: Transport
    _core: StoreCore

    @overload
    def watch(
        self,
        session_id: SessionId | str,
        after_seq: int = 0,
        *,
        timeout: float | None = None,
        poll_interval: float = 1.0,
        partial: Literal[False] = False,
    ) -> Generator[Appended, None, None]: ...

    @overload
    def watch(
        self,
        session_id: SessionId | str,
        after_seq: int = 0,
        *,
        timeout: float | None = None,
        poll_interval: float = 1.0,
        partial: Literal[True],
        resume: str | None = None,
    ) -> Generator[Event, None, None]: ...

    def watch(
        self,
        session_id: SessionId | str,
        after_seq: int = 0,
        *,
        timeout: float | None = None,
        poll_interval: float = 1.0,
        partial: bool = False,
        resume: str | None = None,
    ) -> Any:
        """Every message appended after ``after_seq``, in order, each once, as soon as it is stored.

        Ends when the session is deleted (or recreated), or when ``timeout`` seconds pass without a
        new message. Notifications come over pub/sub, but each wake-up reads "everything after the
        last seq seen" from the list, so a lost notification or a reconnect delays, never skips;
        ``poll_interval`` bounds that delay. ``MessagesTrimmed`` if trimming removed the position.

        ``partial=True`` also yields the streamed replies (``store.stream``) as they are written:
        ``Delta(message_id, index, text, event_id)`` and ``Aborted(message_id, reason, event_id)``;
        a streamed reply's final ``Appended`` comes after its deltas and has ``deltas`` set. A new
        watcher first gets the deltas so far of a reply not yet finished. Every event has an
        ``event_id``: ``resume=event_id`` continues right after that event (no gap, no repeat).
        While a reply is open, each ``poll_interval`` without news also checks that its producer
        lives (lease or idle time) and, if not, ends the reply with ``Aborted``.
        """
        if partial:
            return self._follow(session_id, after_seq, resume, timeout, poll_interval)
        if resume is not None:
            raise InvalidArgument("resume= needs partial=True (event ids are a partial watch's)")
        return self._watch(session_id, after_seq, timeout, poll_interval)

    def _watch(
        self, session_id: SessionId | str, after_seq: int, timeout: float | None, poll_interval: float
    ) -> Generator[Appended, None, None]:
        sid = parse_session_id(session_id)
        channel = live_keys(self._core.prefix, sid)[1]
        pubsub = self.transport.subscribe(sid, channel)
        seq, epoch = after_seq, None
        deadline = None if timeout is None else time.monotonic() + timeout
        try:
            while True:
                batch = self.transport.run(live.read_after(self._core, sid, seq))
                if batch is None or epoch not in (None, batch.epoch):
                    return
                epoch = batch.epoch
                for item in batch.appended:
                    seq = item.seq
                    deadline = None if timeout is None else time.monotonic() + timeout
                    yield item
                if seq < batch.seq:
                    continue  # more than one read's worth: read on
                wait = poll_interval if deadline is None else min(poll_interval, deadline - time.monotonic())
                if wait <= 0:
                    return
                try:
                    self.transport.notified(pubsub, wait)
                except TRANSIENT:
                    with contextlib.suppress(*TRANSIENT):
                        pubsub.close()
                    pubsub = self.transport.subscribe(sid, channel)
        finally:
            pubsub.close()

    def _follow(
        self,
        session_id: SessionId | str,
        after_seq: int,
        resume: str | None,
        timeout: float | None,
        poll_interval: float,
    ) -> Generator[Event, None, None]:
        sid = parse_session_id(session_id)
        position = None if resume is None else live_position(sid, resume, after_seq)
        follower = partial.Follower(after_seq, position)
        channels = (live_keys(self._core.prefix, sid)[1], reply_keys(self._core.prefix, sid)[2])
        pubsub = self.transport.subscribe(sid, *channels)
        epoch = None
        deadline = None if timeout is None else time.monotonic() + timeout
        try:
            while True:
                batch = self.transport.run(
                    partial.read_live(self._core, sid, follower.seq, follower.cursor)
                )
                if batch is None or epoch not in (None, batch.epoch):
                    return
                epoch = batch.epoch
                events, more = follower.absorb(batch)
                for event in events:
                    deadline = None if timeout is None else time.monotonic() + timeout
                    yield event
                if more:
                    continue
                wait = poll_interval if deadline is None else min(poll_interval, deadline - time.monotonic())
                if wait <= 0:
                    return
                try:
                    woken = self.transport.notified(pubsub, wait)
                except TRANSIENT:
                    with contextlib.suppress(*TRANSIENT):
                        pubsub.close()
                    pubsub = self.transport.subscribe(sid, *channels)
                    continue
                if not woken and follower.open:
                    self.transport.run(partial.reap(self._core, sid))  # its producer may be gone
        finally:
            pubsub.close()

    def next_message(
        self, session_id: SessionId | str, after_seq: int, *, timeout: float
    ) -> Appended | None:
        """The first message after ``after_seq``, waiting up to ``timeout`` seconds; else ``None``."""
        watching = self.watch(session_id, after_seq, timeout=timeout)
        try:
            for item in watching:
                return item
            return None
        finally:
            watching.close()


def live_position(sid: SessionId, resume: str, after_seq: int) -> tuple[int, str]:
    """Where ``resume`` (an ``event_id``) puts a partial watcher; not with an ``after_seq`` too."""
    if after_seq:
        raise InvalidArgument("give after_seq or resume, not both", sid)
    return partial.parse_event_id(sid, resume)
