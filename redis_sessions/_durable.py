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
from datetime import UTC, datetime, timedelta
from typing import Any, Literal, NamedTuple

import msgspec

from ._core import _NOT_FOUND, _TRIMMED, _VERSION, Call, StoreCore
from .errors import MessagesTrimmed, SchemaVersionError
from .keys import dirty_key, live_keys, session_keys
from .models import SCHEMA_VERSION, SessionId, SessionState

__all__ = ["Mark", "Unsynced", "restore", "sync_mark", "sync_read"]

Mark = Literal["clean", "dirty", "gone", "recreated"]
_MARKS: dict[int, Mark] = {1: "clean", 0: "dirty"}

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MICROSECOND = timedelta(microseconds=1)


def _micros(moment: datetime | None) -> str:
    """A timestamp as the meta hash keeps it (microseconds since the epoch); '' lets Redis say now."""
    if moment is None:
        return ""
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return str((moment - _EPOCH) // _MICROSECOND)


def restore(core: StoreCore, sid: SessionId, state: SessionState, replace: bool) -> Call[None]:
    """Write ``state`` as session ``sid``; ``SessionExists`` if one is live, unless ``replace``."""
    if state.schema_version != SCHEMA_VERSION:
        raise SchemaVersionError(sid, state.schema_version, SCHEMA_VERSION)
    fields = core.header(sid, state.model, state.max_turns, state.system_message, state.metadata)
    payloads: list[str | bytes] = []
    seen: set[str] = set()
    for message in state.messages:  # a repeated id keeps its first position, as appends do
        if message.id not in seen:
            seen.add(message.id)
            payloads += (message.id, core.encode(sid, message))
    seq = max(state.seq or 0, len(seen))
    if core.durable:  # it comes from the backing store: clean, up to its last message
        fields += ["durable", 1, "synced_seq", seq]
    args: tuple[Any, ...] = (
        _VERSION,
        core.codec.name,
        uuid.uuid4().hex,
        core.ttl_ms,
        core.max_messages,
        "1" if replace else "",
        seq,
        _micros(state.created_at),
        _micros(state.updated_at),
        len(fields) // 2,
        *fields,
        *payloads,
    )
    keys = (*session_keys(core.prefix, sid), live_keys(core.prefix, sid)[1], dirty_key(core.prefix, sid))

    def parse(reply: list[Any]) -> None:
        core.check(sid, reply)

    return Call("restore", sid, "restore", keys, args, parse)


class Unsynced(NamedTuple):
    """What the backing store lacks of one session: its header and the messages after ``synced``."""

    state: SessionState  # header fields, the new messages, and seq = the last of them
    synced: int  # the seq the backing store held already
    epoch: bytes  # which incarnation of the id was read
    token: bytes  # updated_at when read: a later write (even metadata only) keeps it dirty


def sync_read(core: StoreCore, sid: SessionId, limit: int = 500) -> Call[Unsynced | None]:
    """Up to ``limit`` messages the backing store lacks, with the header; ``None`` if gone."""

    def parse(reply: list[Any]) -> Unsynced | None:
        if reply[0] == _NOT_FOUND:
            return None
        if reply[0] == _TRIMMED:
            raise MessagesTrimmed(sid, -1, int(reply[1]))
        core.check(sid, reply)
        _, flat, synced, items = reply
        meta = dict(zip(flat[::2], flat[1::2], strict=True))
        messages = core.codec_named(sid, meta.get(b"codec")).decode(sid, items, int(synced))
        upto = int(synced) + len(messages)
        state = msgspec.structs.replace(core.session(sid, meta, messages).to_state(), seq=upto)
        return Unsynced(state, int(synced), meta.get(b"epoch", b""), meta.get(b"updated_at", b""))

    keys = session_keys(core.prefix, sid)[:2]
    return Call("sync", sid, "sync_read", keys, (_VERSION, limit), parse)


def sync_mark(core: StoreCore, sid: SessionId, read: Unsynced) -> Call[Mark]:
    """Record that the backing store holds ``read``; whether the session is now clean."""

    def parse(reply: list[Any]) -> Mark:
        if reply[0] == _NOT_FOUND:
            return "gone"
        if reply[0] == 3:
            return "recreated"
        return _MARKS[int(reply[1])]

    keys = (*session_keys(core.prefix, sid), dirty_key(core.prefix, sid))
    args = (read.epoch, read.state.seq, read.token)
    return Call("sync", sid, "sync_mark", keys, args, parse)
