"""``AsyncLease``: a turn lease on one session of an ``AsyncSessionStore``, with its fencing token.

This module is the source of ``_lease.py`` (``python tools/unasync.py``), like ``aio.py``.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterable
from datetime import timedelta
from typing import TYPE_CHECKING, Self

from . import _live as live
from ._core import ttl_ms
from .errors import LeaseLost
from .models import AgentMessage, SessionId

if TYPE_CHECKING:
    from .aio import AsyncSessionStore

__all__ = ["AsyncLease"]


class AsyncLease:
    """A turn lease on one session, with its fencing token once acquired.

    ``async with store.lease(sid, "worker-1", ttl=30) as lease: await lease.append(message)``.
    Each acquisition gets a token greater than any before for this session; ``extend`` renews,
    leaving the context (or ``release``) gives the lease up early.
    """

    def __init__(self, store: AsyncSessionStore, sid: SessionId, owner: str, ttl_ms: int) -> None:
        self.store, self.session_id, self.owner, self.ttl_ms = store, sid, owner, ttl_ms
        self.token: int | None = None

    async def acquire(self) -> Self:
        """Take the lease (``LeaseHeld`` if another owner holds it) and get a new fencing token."""
        self.token = await self._call("acquire", self.ttl_ms)
        return self

    async def extend(self, ttl: float | timedelta | None = None) -> None:
        """Renew the lease for ``ttl`` (default: the original ttl); ``LeaseLost`` if it is gone."""
        await self._call("renew", self.ttl_ms if ttl is None else ttl_ms(ttl))

    async def release(self) -> None:
        """Give the lease up now; ``LeaseLost`` if it had already expired or passed on."""
        if self.token is not None:
            await self._call("release", 0)
            self.token = None

    async def append(self, message: AgentMessage, *, expected_seq: int | None = None) -> int:
        """``store.append`` under this lease's fencing token."""
        return await self.store.append(
            self.session_id, message, expected_seq=expected_seq, fence=self._token()
        )

    async def extend_messages(
        self, messages: Iterable[AgentMessage], *, expected_seq: int | None = None
    ) -> int:
        """``store.extend`` under this lease's fencing token."""
        return await self.store.extend(
            self.session_id, messages, expected_seq=expected_seq, fence=self._token()
        )

    def _token(self) -> int:
        if self.token is None:
            raise LeaseLost(self.session_id, None)
        return self.token

    async def _call(self, action: str, ttl: int) -> int:
        transport = self.store.transport
        return await transport.run(
            live.lease(transport.core, self.session_id, action, self.owner, self.token, ttl)
        )

    async def __aenter__(self) -> Self:
        return await self.acquire()

    async def __aexit__(self, *exc_info: object) -> None:
        with contextlib.suppress(LeaseLost):  # expired meanwhile: nothing left to give up
            await self.release()
