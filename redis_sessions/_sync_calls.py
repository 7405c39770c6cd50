"""Sans-IO calls of the write-behind worker: what the record lacks, how far it got, the leases.

The append script lists a durable session in its slot's dirty index; the sync worker finds the
listed sessions (``dirty_sessions``: known index names, no SCAN), reads what the backing store
lacks (``sync_read``), stores it idempotently, and records how far it got (``sync_mark``), which
takes the session off the index once nothing newer was written. ``sync_lease`` shares the slot
groups between workers; ``rebind`` moves a session's bookkeeping to another record.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping, Sequence
from typing import Any, Literal, NamedTuple

from ._calls import Call, Script
from ._core import StoreCore
from ._protocol import Status
from .errors import BackingMismatch, InvalidSessionId, MessagesTrimmed, SessionError
from .keys import dirty_key, session_id, session_keys, sync_keys, tokens_key, tombstone_key
from .models import SessionId, SessionState
from .persistence import Delivery
from .persistence._delivery import Row, decoded_delivery, decoded_rows

__all__ = [
    "Mark",
    "Read",
    "Rebound",
    "Unsynced",
    "dirty_sessions",
    "rebind",
    "sync_lease",
    "sync_mark",
    "sync_read",
]

Mark = Literal["clean", "dirty", "gone", "deleted", "recreated", "other-record"]
_MARKS: dict[int, Mark] = {
    Status.NOT_FOUND: "gone",
    Status.DELETED: "deleted",
    Status.CONFLICT: "recreated",
    Status.OTHER_RECORD: "other-record",
}


class Unsynced(NamedTuple):
    """What the backing record lacks of one session: its header and the messages after ``synced``."""

    delivery: Delivery  # for the record: the messages from seq synced + 1, the header's fields
    synced: int  # the seq the record holds already (what the messages follow)
    epoch: bytes  # which incarnation of the id was read
    token: bytes  # updated_at when read: a later write (even metadata only) keeps it dirty


Read = Unsynced | SessionError | None
"""One session's share of a ``sync_read``: what to deliver, why it cannot be (the error it would
raise), or ``None`` when it is gone (deleted, evicted) and so has nothing to deliver."""


def sync_read(
    core: StoreCore,
    record: str,
    sids: Sequence[SessionId],
    limit: int = 500,
    after: Mapping[SessionId, int] | None = None,
) -> Call[list[Read]]:
    """Up to ``limit`` messages the record lacks of each session, with its header, in one script
    call for the worker of ``record`` (a session bound to another is refused: ``BackingMismatch``);
    on a cluster the sessions must share a slot. A session found gone leaves its dirty index in the
    same step. ``after`` reads a session from that seq instead of its ``synced_seq`` (the record
    reported a gap)."""
    after = after or {}

    def one(sid: SessionId, reply: list[Any], batch: _Batch | None) -> Read:
        try:
            if reply[0] == Status.NOT_FOUND:
                return None
            if reply[0] == Status.TRIMMED:
                raise MessagesTrimmed(sid, -1, int(reply[1]))
            if reply[0] == Status.OTHER_RECORD:
                raise BackingMismatch(f"prefix {core.prefix!r}", reply[1].decode(), record, sid)
            core.check(sid, reply)
            _, flat, synced, items, counted = reply
            meta = dict(zip(flat[::2], flat[1::2], strict=True))
            after = int(synced)
            if batch is not None:  # decoded and encoded with the whole reply's (see _Batch)
                start, batch.at = batch.at, batch.at + len(items)
                rows = batch.rows[start : batch.at]
                state = _state(core, sid, meta, after + len(rows))
                state.message_tokens = _counts(len(rows), counted)
                delivery = Delivery(sid, after + 1, rows, state)
            else:
                # Sealed messages go to the record sealed, as stand-ins (_envelope): no key needed.
                messages = core.codec_named(sid, meta.get(b"codec")).keeping_sealed(sid, items, after)
                state = _state(core, sid, meta, after + len(messages))
                state.message_tokens = _counts(len(messages), counted)
                # In the record's form at once, checked by the decode above (see decoded_delivery)
                delivery = decoded_delivery(sid, after + 1, messages, state)
            return Unsynced(delivery, after, meta.get(b"epoch", b""), meta.get(b"updated_at", b""))
        except SessionError as exc:
            return exc

    def parse(replies: list[Any]) -> list[Read]:
        batch = _batch(core, sids, replies)
        return [one(sid, reply, batch) for sid, reply in zip(sids, replies, strict=True)]

    prefix, cluster = core.prefix, core.cluster
    keys = tuple(key for sid in sids for key in _worker_keys(prefix, sid, cluster)[0])
    froms = [str(after[sid]) if sid in after else "" for sid in sids] if after else [""] * len(sids)
    args = (core.version, limit, record, *froms)
    return Script("sync", sids[0] if len(sids) == 1 else None, "sync_read", keys, args, parse)


@functools.lru_cache(maxsize=65536)
def _worker_keys(prefix: str, sid: SessionId, cluster: bool) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """The keys of ``sid`` that ``sync_read`` and ``sync_mark`` take, in their order: one memoised
    lookup a session and call, where building them took four (each hashing the id, in Python)."""
    meta, messages, ids = session_keys(prefix, sid)
    dirty, tokens = dirty_key(prefix, sid, cluster), tokens_key(prefix, sid)
    return (meta, messages, dirty, tokens), (meta, messages, ids, tombstone_key(prefix, sid), dirty, tokens)


class _Batch:
    """The rows of every message of a ``sync_read`` reply, in reply order, and how many the
    sessions parsed so far took."""

    __slots__ = ("at", "rows")

    def __init__(self, rows: list[Row]) -> None:
        self.rows, self.at = rows, 0


def _batch(core: StoreCore, sids: Sequence[SessionId], replies: list[Any]) -> _Batch | None:
    """Every message of the sessions found (status OK) decoded in one typed decode and encoded
    for the record in one more (``decoded_rows``), not two calls a session: when their meta hashes
    name one codec and all of it decodes and encodes. Otherwise ``None``: each session on its own,
    which says which one is at fault, as before. The decode checks each message as the one of a
    session did (a sealed item becomes its stand-in there too)."""
    found = [reply for reply in replies if reply[0] == Status.OK]
    if not found:
        return None
    names = {_codec_field(reply[1]) for reply in found}
    if len(names) != 1:
        return None
    items = [item for reply in found for item in reply[3]]
    try:
        codec = core.codec_named(sids[0], names.pop())
        rows = decoded_rows(codec.keeping_sealed(sids[0], items))
    except SessionError:  # one is corrupt: the sessions one by one say which
        return None
    return None if rows is None else _Batch(rows)


def _codec_field(flat: list[bytes]) -> bytes | None:
    """The ``codec`` field of a meta hash sent as a flat field/value list."""
    try:
        at = flat.index(b"codec")
    except ValueError:
        return None
    if at % 2 == 0:  # a field, not a value that happens to read "codec"
        return flat[at + 1]
    for i in range(0, len(flat), 2):
        if flat[i] == b"codec":
            return flat[i + 1]
    return None


def _state(core: StoreCore, sid: SessionId, meta: dict[bytes, bytes], seq: int) -> SessionState:
    """The header of a session at ``seq`` from its meta hash (``core.session_state``), with its
    summary's token count: built at once, not through a ``Session`` and its ``to_state`` copy (a
    third of the Python the worker ran parsing a reply)."""
    state = core.session_state(sid, meta, seq)
    state.summary_tokens = _count(meta.get(b"summary_tokens"))
    return state


def _counts(n: int, counted: list[bytes]) -> list[int | None] | None:
    """The token counts of ``n`` messages when the last ``len(counted)`` of them have one (the
    older ones were stored before counting began); ``None`` when none has. What is not a count
    (a tokens list written over by hand) is none: that message is counted again on a restore."""
    if not counted:
        return None
    return [None] * (n - len(counted)) + [int(c) if c.isdigit() else None for c in counted]


def _count(raw: bytes | None) -> int | None:
    return int(raw) if raw is not None and raw.isdigit() else None


def sync_mark(
    core: StoreCore, record: str, marks: Sequence[tuple[SessionId, Unsynced, int]]
) -> Call[list[Mark]]:
    """Record, for each ``(sid, read, held)``, that the record holds the session up to ``held``;
    what each session is now (``clean`` ones left their dirty index). One script call: on a
    cluster the sessions must share a slot."""

    def one(reply: list[Any]) -> Mark:
        return (
            _MARKS.get(int(reply[0]), "dirty")
            if reply[0] != Status.OK
            else ("clean" if reply[1] else "dirty")
        )

    def parse(replies: list[Any]) -> list[Mark]:
        return [one(reply) for reply in replies]

    keys: list[str] = []
    args: list[Any] = [record]
    prefix, cluster = core.prefix, core.cluster
    for sid, read, held in marks:
        keys += _worker_keys(prefix, sid, cluster)[1]
        args += [read.epoch, held, read.token]
    only = marks[0][0] if len(marks) == 1 else None
    return Script("sync", only, "sync_mark", tuple(keys), tuple(args), parse)


def dirty_sessions(
    core: StoreCore, indexes: Sequence[str], limit: int, cluster: bool
) -> Call[list[tuple[SessionId, float]]]:
    """Up to ``limit`` sessions listed in the dirty ``indexes`` (known names: no SCAN), with when
    each became dirty (Unix seconds). On a cluster, send it to the node that owns their slots."""

    def parse(flat: list[Any]) -> list[tuple[SessionId, float]]:
        found = []
        for i in range(0, len(flat), 3):
            try:  # parsed once per id (memoised): the same sessions come back pass after pass
                sid = session_id(flat[i + 1].decode())
            except (InvalidSessionId, ValueError):
                continue  # not a session id: nothing this library wrote
            found.append((sid, float(flat[i + 2]) / 1000))
        return found

    return Script("sync", None, "dirty", (), (limit, 1 if cluster else 256, *indexes), parse)


def sync_lease(core: StoreCore, token: str, ttl_ms: int, release: bool = False) -> Call[list[int]]:
    """Renew this worker's share of the slot groups (and take free ones); the groups it holds."""
    keys = sync_keys(core.prefix)
    return Script("sync", None, "sync_lease", keys, (token, ttl_ms, "1" if release else ""), _ints)


def _ints(reply: list[Any]) -> list[int]:
    return [int(x) for x in reply]


Rebound = Literal["rebound", "gone", "retry"]


def rebind(core: StoreCore, sid: SessionId, old: str, new: str, copied: int) -> Call[Rebound]:
    """Move session ``sid``'s bookkeeping from record ``old`` to ``new``, whose copy holds it up to
    seq ``copied``; ``retry`` when the old record took more meanwhile (copy again first)."""

    def parse(reply: list[Any]) -> Rebound:
        if reply[0] == Status.NOT_FOUND:
            return "gone"
        if reply[0] == Status.CONFLICT:
            return "retry"
        if reply[0] == Status.OTHER_RECORD:
            raise BackingMismatch(f"prefix {core.prefix!r}", reply[1].decode(), old, sid)
        return "rebound"

    keys = (session_keys(core.prefix, sid).meta, dirty_key(core.prefix, sid, core.cluster))
    return Script("rebind", sid, "rebind", keys, (old, new, copied), parse)
