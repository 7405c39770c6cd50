"""Finding the write-behind work: the binding to a record, the dirty indexes, and the backlog.

The dirty indexes have known names (``keys.dirty_keys``: one per slot on a cluster, one per slot
group on one server), so what is pending is found by asking them, in one script call per node,
never by scanning the keyspace: an idle pass costs the same at one key or ten million. Only
``adopt_legacy``, run once when a worker starts, scans: for the per-slot indexes a single server
had before its indexes were grouped.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Iterable
from typing import Any, NamedTuple

import redis.exceptions

from ._calls import Command
from ._core import scan_page
from ._sync_calls import dirty_sessions
from ._sync_io import SyncTransport
from .errors import BackingMismatch, StoreError
from .keys import (
    GROUP_SLOTS,
    SLOT_GROUPS,
    dirty_key,
    dirty_keys,
    legacy_dirty_pattern,
    record_key,
    session_keys,
)
from .models import SessionId

__all__ = [
    "Lag",
    "adopt_legacy",
    "bind",
    "bound_record",
    "check_binding",
    "exists",
    "fields",
    "lag",
    "listed",
    "pending",
]


log = logging.getLogger("redis_sessions.writebehind")  # the worker's own log


class Lag(NamedTuple):
    """How far the backing store is behind Redis: sessions and messages not yet delivered, and the
    age in seconds of the oldest pending write (0 when nothing is pending)."""

    sessions: int
    messages: int
    seconds: float


def bound_record(io: SyncTransport) -> str | None:
    """The record id the prefix is bound to, if any."""
    key = record_key(io.core.prefix)
    return io.run(Command("bind", None, (key,), ("GET", key), _text))


def bind(io: SyncTransport, record: str) -> str | None:
    """Bind the prefix to ``record`` unless it is bound already; the record it is bound to now.
    (Two commands, not SET NX GET: redis-py's reply callback for SET turns a value into a bool.)"""
    key = record_key(io.core.prefix)
    io.run(Command("bind", None, (key,), ("SET", key, record, "NX"), bool))
    return bound_record(io)


def check_binding(io: SyncTransport, record: str, name: str) -> BackingMismatch | None:
    """Bind the prefix to ``record`` if nothing is bound yet; the mismatch if another record is
    bound (``name`` describes this one). A Redis refusing writes (out of memory) leaves the binding
    to the next pass, while the scripts refuse another record's worker session by session."""
    prefix = io.core.prefix
    bound = bound_record(io)
    if bound is None:
        try:
            bound = bind(io, record)
        except StoreError as exc:
            log.warning("write-behind could not bind prefix %r yet: %s", prefix, exc)
    if bound in (None, record):
        return None
    log.error("write-behind stopped: prefix %r is bound to record %s, not %s", prefix, bound, record)
    return BackingMismatch(f"prefix {prefix!r}", bound, name)


def pending(
    io: SyncTransport, groups: Iterable[int] | None = None, limit: int = 1_000_000
) -> dict[SessionId, float]:
    """The sessions listed as dirty in ``groups`` of slots (all by default), with when each became
    dirty (Unix seconds); at most about ``limit``."""
    chosen = range(SLOT_GROUPS) if groups is None else groups
    names = dirty_keys(io.core.prefix, io.cluster)
    if io.cluster:  # one index per slot: each node is asked about its own slots
        slots = [s for g in chosen for s in range(g * GROUP_SLOTS, (g + 1) * GROUP_SLOTS)]
        asked = {node: [names[s] for s in owned] for node, owned in io.nodes(slots).items()}
    else:
        asked = {None: [names[g] for g in chosen]}
    found: dict[SessionId, float] = {}
    for node, indexes in asked.items():
        listed_here: list[tuple[SessionId, float]] = io.run_on(
            dirty_sessions(io.core, indexes, limit - len(found), io.cluster), node
        )
        found.update(listed_here)
        if len(found) >= limit:
            break
    return found


def lag(io: SyncTransport) -> Lag:
    """How far behind the backing record is, right now (all slot groups)."""
    found = pending(io)
    if not found:
        return Lag(0, 0, 0.0)
    counts = fields(io, found, "seq", "synced_seq")
    messages = sum(int(seq or 0) - int(synced or 0) for seq, synced in counts.values())
    return Lag(len(found), messages, max(0.0, time.time() - min(found.values())))


def adopt_legacy(io: SyncTransport) -> int:
    """Move what the per-slot dirty indexes of an earlier version list into the grouped ones (one
    server only; once, when a worker starts: it needs a SCAN). Returns how many it moved."""
    if io.cluster:
        return 0
    moved, cursor, prefix = 0, 0, io.core.prefix
    while True:
        scan = ("SCAN", cursor, "MATCH", legacy_dirty_pattern(prefix), "COUNT", 1000)
        cursor, keys = io.run(Command("sync", None, (), scan, scan_page))
        for raw in keys:
            key = raw.decode() if isinstance(raw, bytes) else raw
            entries = io.run(Command("sync", None, (key,), ("ZRANGE", key, 0, -1, "WITHSCORES"), list))
            if entries and isinstance(entries[0], list | tuple):  # paired by the client or not
                entries = [x for entry in entries for x in entry]
            for member, score in zip(entries[::2], entries[1::2], strict=True):
                sid = uuid.UUID(member.decode())
                target = dirty_key(prefix, sid, False)
                io.run(Command("sync", sid, (target,), ("ZADD", target, "NX", score, member), int))
                io.run(Command("sync", sid, (key,), ("ZREM", key, member), int))
                moved += 1
        if cursor == 0:
            return moved


def fields(io: SyncTransport, sids: Iterable[SessionId], *names: str) -> dict[SessionId, list[Any]]:
    """``HMGET`` of the sessions' meta hashes in one pipeline (a node's share each, on a cluster);
    if the pipeline fails, one call per session on the general path, with the store's retries (a
    connection reset must not fail a flush at once, as a plain ``StoreError``)."""
    order = list(sids)
    try:
        with io.client.pipeline(transaction=False) as pipe:
            for sid in order:
                pipe.hmget(session_keys(io.core.prefix, sid).meta, list(names))
            replies = pipe.execute()
    except (redis.exceptions.RedisError, redis.exceptions.RedisClusterException, OSError):
        replies = [io.run(_hmget(io, sid, names)) for sid in order]
    return dict(zip(order, replies, strict=True))


def _hmget(io: SyncTransport, sid: SessionId, names: tuple[str, ...]) -> Command[list[Any]]:
    meta = session_keys(io.core.prefix, sid).meta
    return Command("sync", sid, (meta,), ("HMGET", meta, *names), list)


def exists(io: SyncTransport, sid: SessionId) -> bool:
    meta = session_keys(io.core.prefix, sid).meta
    return io.run(Command("sync", sid, (meta,), ("EXISTS", meta), bool))


def listed(io: SyncTransport, sid: SessionId) -> bool:
    """Whether the session is listed in its dirty index."""
    key = dirty_key(io.core.prefix, sid, io.cluster)
    return io.run(Command("sync", sid, (key,), ("ZSCORE", key, str(sid)), bool))


def _text(reply: Any) -> str | None:
    return reply.decode() if isinstance(reply, bytes) else reply
