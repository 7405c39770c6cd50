"""``AsyncManaging``: the methods of ``AsyncSessionStore`` for looking after sessions rather than
conversing in them: listing, ``info``, ``pop``, imports, and snapshots to and from an adapter.

This module is the source of ``_manage.py`` (``python tools/unasync.py``), like ``aio.py``.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import TYPE_CHECKING

from . import _admin as admin
from . import _durable as durable
from . import _rekey as sealing
from ._aio_listing import info_pages
from ._aio_quota import tenant_usage
from ._aio_recovery import AsyncRecovery
from ._aio_transport import AsyncTransport
from ._core import StoreCore
from .errors import InvalidArgument, SessionExists
from .keys import session_id as parse_session_id
from .models import AgentMessage, Session, SessionId, SessionInfo, SessionState
from .tenant import TenantUsage

if TYPE_CHECKING:
    from .persistence import AsyncPersistenceAdapter

__all__ = ["AsyncManaging"]


class AsyncManaging:
    """Part of ``AsyncSessionStore`` (which sets these attributes)."""

    transport: AsyncTransport
    _core: StoreCore
    _recovery: AsyncRecovery

    async def load(self, session_id: SessionId | str) -> Session | None:
        raise NotImplementedError  # AsyncSessionStore's

    async def save(self, session_id: SessionId | str, adapter: AsyncPersistenceAdapter) -> bool:
        """Write a snapshot of the session (as ``load`` sees it) to ``adapter``, replacing what it
        had for this id; ``False`` if the session is not in Redis."""
        session = await self.load(session_id)
        if session is None:
            return False
        await adapter.save_session(session.id, sealing.for_record(self._core, session.id, session.to_state()))
        return True

    async def restore(
        self, session_id: SessionId | str, adapter: AsyncPersistenceAdapter, *, replace: bool = False
    ) -> bool:
        """Put the session ``adapter`` holds back into Redis, in one atomic step, continuing from its
        stored seq; ``False`` if the adapter has none. ``SessionExists`` if the session is live in
        Redis, unless ``replace=True`` (watchers of the replaced session then end)."""
        sid = parse_session_id(session_id)
        state = await adapter.load_session(sid)
        if state is None:
            return False
        await self.transport.run(durable.restore(self._core, sid, state, replace))
        return True

    async def list(self) -> AsyncIterator[SessionId]:
        """Every session id under this store's prefix, found with SCAN (never KEYS).

        On a cluster every primary is scanned in turn."""
        seen = set[SessionId]()
        for node in await self.transport.scan_nodes():
            cursor = 0
            while True:
                cursor, found, _ = await self.transport.run(admin.scan(self._core, cursor), node)
                for sid in found:
                    if sid not in seen:
                        seen.add(sid)
                        yield sid
                if cursor == 0:
                    break

    async def info(self, session_id: SessionId | str, *, memory: bool = False) -> SessionInfo | None:
        """What Redis holds of the session (counts, times, TTL; with ``memory``, its bytes), without
        reading its messages; ``None`` if Redis has none (a backing store is not consulted)."""
        return await self.transport.run(admin.info(self._core, session_id, memory))

    async def infos(self, *, memory: bool = False, count: int = 500) -> AsyncIterator[SessionInfo]:
        """The ``SessionInfo`` of every session in Redis under this prefix: SCAN (every primary of
        a cluster) and ``info.lua`` pages of at most ``count`` sessions (``_aio_listing``)."""
        if count < 1:
            raise InvalidArgument(f"count must be >= 1, got {count!r}")
        async for page in info_pages(self.transport, self._core, memory, count):
            for item in page:
                yield item

    async def tenant_usage(self) -> TenantUsage:
        """The sessions and bytes this store's prefix (its tenant) holds and its ``tenant_quota``
        limits, summed over its ledgers (expired sessions swept out first); zeros for a prefix no
        store with ``tenant_quota`` has counted. On a cluster it reads every slot's ledger."""
        return await tenant_usage(self.transport.run, self._core)

    async def pop(self, session_id: SessionId | str) -> AgentMessage | None:
        """Remove the last message and return it (``None`` if there is none), atomically: two
        processes popping at once never get the same message, and a retried call does not pop a
        second one. It rewrites history: seq goes down by one and watchers end, as on a re-create.
        Not for durable sessions (``StoreError``): their backing store keeps every message."""
        return await self._recovery.through(lambda: admin.pop(self._core, session_id))

    async def import_state(
        self, session_id: SessionId | str, state: SessionState, *, replace: bool = False
    ) -> bool:
        """Put a whole session (an export, a ``SessionState``) into Redis in one atomic step,
        keeping its seq and timestamps; ``False``, changing nothing, if the id exists already
        (so importing twice is harmless), unless ``replace``. A durable store writes it behind."""
        try:
            await self.transport.run(admin.put(self._core, session_id, state, replace))
        except SessionExists:
            return False
        return True
