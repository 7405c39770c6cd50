"""``Managing``: the methods of ``SessionStore`` for looking after sessions.

GENERATED from ``_aio_manage.py`` by ``python tools/unasync.py``: do not edit; edit the source and
regenerate. See the source's docstring.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING

from . import _admin as admin
from . import _durable as durable
from . import _rekey as sealing
from ._listing import info_pages
from ._quota import tenant_usage
from ._recovery import Recovery
from ._transport import Transport
from ._core import StoreCore
from .errors import InvalidArgument, SessionExists
from .keys import session_id as parse_session_id
from .models import AgentMessage, Session, SessionId, SessionInfo, SessionState
from .tenant import TenantUsage

if TYPE_CHECKING:
    from .persistence import PersistenceAdapter

__all__ = ["Managing"]


class Managing:
    """Part of ``SessionStore`` (which sets these attributes)."""

    transport: Transport
    _core: StoreCore
    _recovery: Recovery

    def load(self, session_id: SessionId | str) -> Session | None:
        raise NotImplementedError  # SessionStore's

    def save(self, session_id: SessionId | str, adapter: PersistenceAdapter) -> bool:
        """Write a snapshot of the session (as ``load`` sees it) to ``adapter``, replacing what it
        had for this id; ``False`` if the session is not in Redis."""
        session = self.load(session_id)
        if session is None:
            return False
        adapter.save_session(session.id, sealing.for_record(self._core, session.id, session.to_state()))
        return True

    def restore(
        self, session_id: SessionId | str, adapter: PersistenceAdapter, *, replace: bool = False
    ) -> bool:
        """Put the session ``adapter`` holds back into Redis, in one atomic step, continuing from its
        stored seq; ``False`` if the adapter has none. ``SessionExists`` if the session is live in
        Redis, unless ``replace=True`` (watchers of the replaced session then end)."""
        sid = parse_session_id(session_id)
        state = adapter.load_session(sid)
        if state is None:
            return False
        self.transport.run(durable.restore(self._core, sid, state, replace))
        return True

    def list(self) -> Iterator[SessionId]:
        """Every session id under this store's prefix, found with SCAN (never KEYS).

        On a cluster every primary is scanned in turn."""
        seen = set[SessionId]()
        for node in self.transport.scan_nodes():
            cursor = 0
            while True:
                cursor, found, _ = self.transport.run(admin.scan(self._core, cursor), node)
                for sid in found:
                    if sid not in seen:
                        seen.add(sid)
                        yield sid
                if cursor == 0:
                    break

    def info(self, session_id: SessionId | str, *, memory: bool = False) -> SessionInfo | None:
        """What Redis holds of the session (counts, times, TTL; with ``memory``, its bytes), without
        reading its messages; ``None`` if Redis has none (a backing store is not consulted)."""
        return self.transport.run(admin.info(self._core, session_id, memory))

    def infos(self, *, memory: bool = False, count: int = 500) -> Iterator[SessionInfo]:
        """The ``SessionInfo`` of every session in Redis under this prefix: SCAN (every primary of
        a cluster) and ``info.lua`` pages of at most ``count`` sessions (``_aio_listing``)."""
        if count < 1:
            raise InvalidArgument(f"count must be >= 1, got {count!r}")
        for page in info_pages(self.transport, self._core, memory, count):
            for item in page:
                yield item

    def tenant_usage(self) -> TenantUsage:
        """The sessions and bytes this store's prefix (its tenant) holds and its ``tenant_quota``
        limits, summed over its ledgers (expired sessions swept out first); zeros for a prefix no
        store with ``tenant_quota`` has counted. On a cluster it reads every slot's ledger."""
        return tenant_usage(self.transport.run, self._core)

    def pop(self, session_id: SessionId | str) -> AgentMessage | None:
        """Remove the last message and return it (``None`` if there is none), atomically: two
        processes popping at once never get the same message, and a retried call does not pop a
        second one. It rewrites history: seq goes down by one and watchers end, as on a re-create.
        Not for durable sessions (``StoreError``): their backing store keeps every message."""
        return self._recovery.through(lambda: admin.pop(self._core, session_id))

    def import_state(
        self, session_id: SessionId | str, state: SessionState, *, replace: bool = False
    ) -> bool:
        """Put a whole session (an export, a ``SessionState``) into Redis in one atomic step,
        keeping its seq and timestamps; ``False``, changing nothing, if the id exists already
        (so importing twice is harmless), unless ``replace``. A durable store writes it behind."""
        try:
            self.transport.run(admin.put(self._core, session_id, state, replace))
        except SessionExists:
            return False
        return True
