"""Move a prefix's durable sessions to another backing record on purpose (SQLite -> PostgreSQL...).

Write-behind binds a prefix to one record (see ``writebehind``), so pointing the workers at a new
database is refused until the prefix is moved. ``rebind`` moves it, online and resumable:

1. The prefix is bound to the new record. Workers of the old one see it on their next pass, stop
   delivering, and their stores stop reading through the old record (``BackingMismatch``); what
   they had not delivered stays pending in Redis, where nothing is lost (dirty sessions keep no TTL).
2. Every session the old record holds is copied to the new one (skipped when the new one already
   holds as much: a rerun copies only what is left).
3. Every durable session in Redis is rebound: copied again from the old record, then moved to the
   new one by ``rebind.lua`` only if the old record took nothing more meanwhile; the new record's
   workers deliver the rest from Redis. Passes repeat until one finds nothing left to move (an old
   store may have read a session back in the meantime).

``redis-sessions rebind --from OLD --to NEW`` runs it with a progress bar. Start the workers on the
new record once it has finished (they may already run: they deliver what has been rebound).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, NamedTuple

from ._calls import Command
from ._sync_calls import rebind as rebind_call
from .errors import BackingMismatch
from .keys import record_key, session_keys
from .models import SessionId

if TYPE_CHECKING:
    from .persistence import PersistenceAdapter
    from .store import SessionStore

__all__ = ["Rebound", "rebind"]

Step = Callable[[str, SessionId], None]


class Rebound(NamedTuple):
    """What a rebind did: sessions copied between the records, and sessions moved in Redis."""

    copied: int
    moved: int
    passes: int


def rebind(
    store: SessionStore, old: PersistenceAdapter, new: PersistenceAdapter, step: Step | None = None
) -> Rebound:
    """Move ``store``'s prefix from record ``old`` to ``new`` (``step(phase, sid)`` per session);
    ``BackingMismatch`` if the prefix is bound to a third record."""
    transport = store.transport  # the store's calls, not its private parts
    prefix = transport.core.prefix
    key = record_key(prefix)
    bound = transport.run(Command("rebind", None, (key,), ("GET", key), _text))
    if bound not in (None, old.record_id, new.record_id):
        raise BackingMismatch(f"prefix {prefix!r}", bound, f"{old.record_id} ({old!r})")
    transport.run(Command("rebind", None, (key,), ("SET", key, new.record_id), bool))
    copied = moved = passes = 0
    for sid in old.list_sessions():
        copied += _copy(old, new, sid)
        if step is not None:
            step("copy", sid)
    while True:
        passes += 1
        moved_now = 0
        for sid in store.list():
            moved_now += _move(store, old, new, sid)
            if step is not None:
                step("rebind", sid)
        moved += moved_now
        if moved_now == 0:
            return Rebound(copied, moved, passes)


def _copy(old: PersistenceAdapter, new: PersistenceAdapter, sid: SessionId) -> int:
    """Copy ``sid`` from ``old`` to ``new`` unless ``new`` holds as much; the seq ``new`` holds is
    then at least the seq ``old`` held when read. Returns 1 if it copied."""
    state = old.load_session(sid)
    if state is None:
        return 0
    seq = state.seq if state.seq is not None else len(state.messages)
    if new.seqs([sid])[sid] >= seq:
        return 0
    new.save_session(sid, state)
    return 1


def _move(store: SessionStore, old: PersistenceAdapter, new: PersistenceAdapter, sid: SessionId) -> int:
    """Rebind one session in Redis if it is a durable session of the old record; 1 if it moved."""
    transport = store.transport
    meta = session_keys(transport.core.prefix, sid).meta
    fields = ("HMGET", meta, "durable", "record")
    durable, record = transport.run(Command("rebind", sid, (meta,), fields, list))
    if durable != b"1" or (record is not None and record.decode() != old.record_id):
        return 0  # not durable, or bound to the new record already (a third one: the script says)
    for _ in range(100):
        _copy(old, new, sid)
        if (
            transport.run(
                rebind_call(transport.core, sid, old.record_id, new.record_id, new.seqs([sid])[sid])
            )
            != "retry"
        ):
            return 1
    raise BackingMismatch(f"prefix {transport.core.prefix!r}", old.record_id, new.record_id, sid)


def _text(reply: object) -> str | None:
    return reply.decode() if isinstance(reply, bytes) else None
