"""``Recovery``: what ``SessionStore`` does when a call finds a session it can mend.

GENERATED from ``_aio_recovery.py`` by ``python tools/unasync.py``: do not edit; edit the source and
regenerate. See the source's docstring.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeVar

from . import _durable as durable
from ._transport import Transport
from ._calls import Call
from ._read import StaleCache
from .errors import (
    ConflictError,
    CorruptSession,
    SchemaVersionError,
    SessionError,
    SessionExists,
    SessionNotFound,
    StoreError,
)
from .models import SessionId

if TYPE_CHECKING:
    from .persistence import PersistenceAdapter
    from .writebehind import SyncWorker

__all__ = ["RECOVERABLE", "Recovery"]

T = TypeVar("T")
RECOVERABLE = (SessionNotFound, SchemaVersionError, CorruptSession)
"""What a call can find that ``recover`` may mend (with a backing store, or a schema upgrade)."""


class Recovery:
    """Mends sessions for one store: its transport, and its backing store if it has one (a
    sync adapter, driven in a worker thread: see ``SessionStore``)."""

    def __init__(self, transport: Transport, backing: PersistenceAdapter | None) -> None:
        self.transport = transport
        self.backing = backing
        self.worker: SyncWorker | None = None  # the store's write-behind worker, once it has one

    def through(self, make: Callable[[], Call[T]], missing: Callable[[T], bool] | None = None) -> T:
        """Run the call, recovering from a miss, an older schema version or an eviction (see
        ``_recover``); ``missing(result)`` says a result means "not in Redis" (``load``, ``exists``)."""
        call = make()
        try:
            result = self.transport.run(call)
        except RECOVERABLE as exc:
            return self.recover(exc, make, missing)
        if missing is not None and self.backing is not None and call.sid is not None and missing(result):
            found, again = self._again(make, call.sid, missing)
            return again if found else result
        return result

    def recover(
        self, error: SessionError, make: Callable[[], Call[T]], missing: Callable[[T], bool] | None = None
    ) -> T:
        """After ``error``, mend the session and run the call again, or raise ``error``:
        a cache entry out of step with Redis is dropped and the call read again uncached;
        a session Redis lacks is read through from the backing store (two processes that miss at
        once restore it once: the restore is one script, the second finds the first's session);
        an older schema version is upgraded in place; a session eviction took keys of is restored
        over what is left."""
        if isinstance(error, StaleCache):  # the entry is dropped: the call now reads uncached
            return self.transport.run(make())
        sid = error.session_id
        if sid is not None:
            if isinstance(error, SessionNotFound) and self.backing is not None:
                found, again = self._again(make, sid, missing)
                if found:
                    return again  # type: ignore[no-any-return]
            elif isinstance(error, SchemaVersionError) and self._upgrade(sid, error):
                return self.transport.run(make())
            elif isinstance(error, CorruptSession) and error.evicted and self.backing is not None:
                found, again = self._again(make, sid, missing, repair=True)
                if found:
                    return again  # type: ignore[no-any-return]
        raise error

    def _again(
        self,
        make: Callable[[], Call[T]],
        sid: SessionId,
        missing: Callable[[T], bool] | None,
        repair: bool = False,
    ) -> tuple[bool, Any]:
        """Restore the session from the backing store and run the call again; ``(False, None)`` if
        the backing store has no such session. A restored session is clean, so under a volatile
        eviction policy Redis may evict it again before the call, whole or key by key: a few tries,
        each restoring over what is left."""
        for _ in range(3):
            if not self._hydrate(sid, repair=repair):
                return False, None
            try:
                result = self.transport.run(make())
            except SessionNotFound:
                repair = False
                continue
            except CorruptSession as exc:
                if not exc.evicted:
                    raise
                repair = True  # evicted in part again: restore over what is left
                continue
            if missing is None or not missing(result):
                return True, result
        raise StoreError("read-through", sid, "Redis evicted the session each time it was restored")

    def _upgrade(self, sid: SessionId, error: SchemaVersionError) -> bool:
        """Bring a session of an older schema version up to this one in Redis, in place (see
        ``migrations``); ``False`` if it cannot be (newer, or no upgrade step registered)."""
        schema = self.transport.core.schema
        if type(error.found) is not int or error.found >= schema.current or not schema.can_read(error.found):
            return False
        raw = self.transport.run(durable.raw_session(self.transport.core, sid))
        if raw is None:
            return True  # gone meanwhile: the call again says what it finds
        with contextlib.suppress(ConflictError):  # changed meanwhile (or upgraded by another): again
            self.transport.run(
                durable.restore(
                    self.transport.core,
                    sid,
                    durable.upgraded(self.transport.core, sid, raw),
                    True,
                    upgrading=raw,
                )
            )
        return True

    def _hydrate(self, sid: SessionId, *, repair: bool = False) -> bool:
        """Restore the session from the backing store (``repair``: over what eviction left of it)."""
        assert self.backing is not None
        if self.worker is not None and self.worker.unbound is not None:
            raise self.worker.unbound  # the prefix moved to another record: ours is stale now
        state = self.backing.load_session(sid)
        if state is None:
            return False
        with contextlib.suppress(SessionExists):  # another process restored it first
            self.transport.run(
                durable.restore(self.transport.core, sid, state, "!" if repair else False)
            )
        return True
