"""Sans-IO calls that move sessions between Redis and a backing store.

``restore`` puts a stored ``SessionState`` back into Redis in one script, so a restore (or a
read-through after a miss) is one atomic step: two processes that do it at once cannot both write
or interleave, and the session continues from its stored seq, so ``expected_seq`` and watchers keep
working across the trip.

Write-behind: the append script lists a durable session in its slot's dirty index; the sync worker
reads what the backing store lacks (``sync_read``), stores it idempotently, and records how far it
got (``sync_mark``), which takes the session off the index once nothing newer was written.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any, Literal, NamedTuple

import msgspec

from ._calls import Call, Script, Transaction
from ._core import StoreCore
from ._protocol import Status
from .errors import BackingMismatch, CorruptSession, MessagesTrimmed, SchemaVersionError, SessionError
from .keys import dirty_key, live_keys, session_keys, sync_keys, tombstone_key
from .models import SessionId, SessionState

__all__ = [
    "Mark",
    "RawSession",
    "Read",
    "Rebound",
    "Unsynced",
    "dirty_sessions",
    "raw_session",
    "rebind",
    "restore",
    "sync_lease",
    "sync_mark",
    "sync_read",
    "upgraded",
]

Mark = Literal["clean", "dirty", "gone", "deleted", "recreated", "other-record"]
_MARKS: dict[int, Mark] = {
    Status.NOT_FOUND: "gone",
    Status.DELETED: "deleted",
    Status.CONFLICT: "recreated",
    Status.OTHER_RECORD: "other-record",
}

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MICROSECOND = timedelta(microseconds=1)


def _micros(moment: datetime | None) -> str:
    """A timestamp as the meta hash keeps it (microseconds since the epoch); '' lets Redis say now."""
    if moment is None:
        return ""
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return str((moment - _EPOCH) // _MICROSECOND)


def restore(
    core: StoreCore,
    sid: SessionId,
    state: SessionState,
    replace: bool | str,
    *,
    upgrading: RawSession | None = None,
    fresh: bool = False,
) -> Call[None]:
    """Write ``state`` as session ``sid``; ``SessionExists`` if one is live, unless ``replace``.

    ``fresh``: the state does not come from the backing store (an import), so a durable store
    writes all of it behind. ``upgrading`` (the session as read before its schema upgrade) makes
    it a compare-and-set: ``ConflictError`` if the session changed since, and it keeps its epoch,
    its place in the dirty index and its write-behind bookkeeping."""
    if state.schema_version != core.schema.current:
        raise SchemaVersionError(sid, state.schema_version, core.schema.current)
    fields = core.header(sid, state.model, state.max_turns, state.system_message, state.metadata)
    payloads: list[str | bytes] = []
    seen: set[str] = set()
    for message in state.messages:  # a repeated id keeps its first position, as appends do
        if message.id not in seen:
            seen.add(message.id)
            payloads += (message.id, core.encode(sid, message))
    seq = max(state.seq or 0, len(seen))
    mode = replace if isinstance(replace, str) else ("1" if replace else "")  # see restore.lua
    token = uuid.uuid4().hex
    if upgrading is not None:
        mode, token = f"={upgrading.epoch.decode()}:{upgrading.seq}", upgrading.epoch.decode()
        fields += [x for pair in upgrading.bookkeeping.items() for x in pair]
    elif core.durable:  # from the backing store: clean up to its last message; fresh: none of it
        fields += ["durable", 1, "synced_seq", 0 if fresh else seq, "record", core.record]
    args: tuple[Any, ...] = (
        core.version,
        core.codec.name,
        token,
        core.ttl_ms if state.ttl_ms is None else state.ttl_ms,  # the session's own, when it says
        core.max_messages if state.max_messages is None else state.max_messages,
        mode,
        seq,
        _micros(state.created_at),
        _micros(state.updated_at),
        len(fields) // 2,
        *fields,
        *payloads,
    )
    keys = (
        *session_keys(core.prefix, sid),
        live_keys(core.prefix, sid)[1],
        dirty_key(core.prefix, sid, core.cluster),
    )

    def parse(reply: list[Any]) -> None:
        core.check(sid, reply)

    return Script("restore", sid, "restore", keys, args, parse)


class RawSession(NamedTuple):
    """A session as stored, in plain data, for a schema upgrade (``migrations``)."""

    version: int
    data: dict[str, Any]  # SessionState's fields, messages as dicts
    epoch: bytes
    seq: int
    bookkeeping: dict[str, str]  # write-behind fields to keep (durable, synced_seq)


def raw_session(core: StoreCore, sid: SessionId) -> Call[RawSession | None]:
    """The whole session without the typed decode (it may be of an older schema version)."""

    def parse(replies: list[Any]) -> RawSession | None:
        meta, items = replies
        if not meta:
            return None
        try:
            version = int(meta[b"schema_version"])
            codec = core.codec_named(sid, meta.get(b"codec"))
            messages = [codec.raw(codec.opened(sid, item, i)) for i, item in enumerate(items)]
            session = core.session(sid, meta, [])
        except (KeyError, ValueError, msgspec.DecodeError) as exc:
            raise CorruptSession(sid, f"unreadable for a schema upgrade: {exc!r}") from exc
        data = msgspec.structs.asdict(session.to_state())
        data["messages"] = messages
        keep = {
            k.decode(): v.decode() for k, v in meta.items() if k in (b"durable", b"synced_seq", b"record")
        }
        return RawSession(version, data, meta.get(b"epoch", b""), session.seq, keep)

    keys = session_keys(core.prefix, sid)
    multi = (("HGETALL", keys.meta), ("LRANGE", keys.messages, 0, -1))
    return Transaction("upgrade", sid, keys[:2], multi, parse)


def upgraded(core: StoreCore, sid: SessionId, raw: RawSession) -> SessionState:
    """``raw`` brought to the current schema by the registered steps, as a typed state."""
    data = core.schema.upgrade(sid, raw.version, raw.data)
    try:
        return msgspec.convert(data, SessionState)
    except msgspec.ValidationError as exc:
        raise CorruptSession(sid, f"the upgraded session does not fit the schema: {exc}") from exc


class Unsynced(NamedTuple):
    """What the backing record lacks of one session: its header and the messages after ``synced``."""

    state: SessionState  # header fields, the new messages, and seq = the last of them
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

    def one(sid: SessionId, reply: list[Any]) -> Read:
        try:
            if reply[0] == Status.NOT_FOUND:
                return None
            if reply[0] == Status.TRIMMED:
                raise MessagesTrimmed(sid, -1, int(reply[1]))
            if reply[0] == Status.OTHER_RECORD:
                raise BackingMismatch(f"prefix {core.prefix!r}", reply[1].decode(), record, sid)
            core.check(sid, reply)
            _, flat, synced, items = reply
            meta = dict(zip(flat[::2], flat[1::2], strict=True))
            # Sealed messages go to the record sealed, as stand-ins (_envelope): no key needed here.
            messages = core.codec_named(sid, meta.get(b"codec")).keeping_sealed(sid, items, int(synced))
            upto = int(synced) + len(messages)
            state = msgspec.structs.replace(core.session(sid, meta, messages).to_state(), seq=upto)
            return Unsynced(state, int(synced), meta.get(b"epoch", b""), meta.get(b"updated_at", b""))
        except SessionError as exc:
            return exc

    def parse(replies: list[Any]) -> list[Read]:
        return [one(sid, reply) for sid, reply in zip(sids, replies, strict=True)]

    keys = tuple(
        key
        for sid in sids
        for key in (*session_keys(core.prefix, sid)[:2], dirty_key(core.prefix, sid, core.cluster))
    )
    args = (core.version, limit, record, *(str(after[sid]) if sid in after else "" for sid in sids))
    return Script("sync", sids[0] if len(sids) == 1 else None, "sync_read", keys, args, parse)


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
    for sid, read, held in marks:
        keys += [
            *session_keys(core.prefix, sid),
            tombstone_key(core.prefix, sid),
            dirty_key(core.prefix, sid, core.cluster),
        ]
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
            try:
                sid = uuid.UUID(flat[i + 1].decode())
            except ValueError:
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
