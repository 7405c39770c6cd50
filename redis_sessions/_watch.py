"""``Watching``: the live methods of ``SessionStore`` (``watch``, ``next_message``).

GENERATED from ``_aio_watch.py`` by ``python tools/unasync.py``: do not edit; edit the source and
regenerate. See the source's docstring.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Generator

from . import _live as live
from ._transport import Transport
from ._core import StoreCore
from ._live import Appended
from .keys import live_keys
from .keys import session_id as parse_session_id
from .models import SessionId
from .retry import TRANSIENT

__all__ = ["Watching"]


class Watching:
    """Part of ``SessionStore`` (which sets these attributes)."""

    transport: Transport
    _core: StoreCore

    def watch(
        self,
        session_id: SessionId | str,
        after_seq: int = 0,
        *,
        timeout: float | None = None,
        poll_interval: float = 1.0,
    ) -> Generator[Appended, None, None]:
        """Every message appended after ``after_seq``, in order, each once, as soon as it is stored.

        Ends when the session is deleted (or recreated), or when ``timeout`` seconds pass without a
        new message. Notifications come over pub/sub, but each wake-up reads "everything after the
        last seq seen" from the list, so a lost notification or a reconnect delays, never skips;
        ``poll_interval`` bounds that delay. ``MessagesTrimmed`` if trimming removed the position.
        """
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
