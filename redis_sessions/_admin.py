"""Sans-IO calls for looking after sessions rather than conversing in them: what a session holds
(``info``, a page of them for listings), taking back the last message (``pop``), and putting a
whole exported session in (``put``).

They share ``StoreCore``'s keys, codecs and error mapping; the stores only send them.
"""

from __future__ import annotations

import itertools
import uuid
from collections.abc import Sequence
from typing import Any, Final

import msgspec

from ._calls import Call, Command, Pipeline, Script, Transaction
from ._core import StoreCore, scan_page
from ._durable import restore
from ._scripts import SHAS
from ._times import stored_time
from .errors import CorruptSession, InvalidArgumentType, InvalidMessage
from .keys import (
    listed_keys,
    meta_key_pattern,
    parse_meta_keys,
    script_keys,
    session_id,
    session_keys,
    tokens_key,
)
from .models import SCHEMA_VERSION, AgentMessage, SessionId, SessionInfo, SessionState

__all__ = ["SCAN_COUNT", "info", "info_page", "pop", "put", "scan"]

_FIELDS: Final = (
    "model",
    "seq",
    "schema_version",
    "created_at",
    "updated_at",
    "tokens",
    "summary_seq",
    "parent",
    "fork_seq",
)
SCAN_COUNT = 5000
"""Keys a SCAN page looks at (~5 ms of Redis): fewer, larger exchanges, for a busy machine where
each wake-up of the client or the server waits for a core (the listing's relay and its general way
alike)."""
_PER_CALL: Final = 100
"""Sessions an ``info.lua`` call reads: ~1 ms of the server's time (~3 ms with their memory)."""


def _reads(core: StoreCore, sid: SessionId, memory: bool) -> tuple[tuple[Any, ...], ...]:
    """What ``info`` reads of a session: its listing fields, list length and TTL as one snapshot."""
    keys = session_keys(core.prefix, sid)
    reads: tuple[tuple[Any, ...], ...] = (
        ("HMGET", keys.meta, *_FIELDS),
        ("LLEN", keys.messages),
        ("PTTL", keys.meta),
    )
    if memory:
        reads += tuple(("MEMORY", "USAGE", key) for key in (*keys, tokens_key(core.prefix, sid)))
    return reads


def _info(sid: SessionId, row: Sequence[Any], size: int | None, listing: bool = False) -> SessionInfo | None:
    """A session's info from its listing fields, list length and PTTL (``_reads``' first replies,
    or a session's row of ``info.lua``'s reply) and its ``size`` in bytes (``None``: not counted);
    a corrupt meta hash raises ``CorruptSession``, or in a ``listing`` is an info naming the
    ``problem`` (so one bad session does not hide the others)."""
    model, seq, version, created, updated, tokens, summary_seq, parent, fork_seq, length, pttl = row[:11]
    if version is None:
        return None  # gone (deleted or expired since it was listed)
    messages, ttl = int(length), pttl / 1000 if pttl >= 0 else None
    try:
        schema = int(version)
        return SessionInfo(
            id=sid,
            model=model.decode() if model else "",
            seq=int(seq) if seq else 0,
            schema_version=schema,
            created_at=stored_time(created),
            updated_at=stored_time(updated),
            messages=messages,
            ttl=ttl,
            bytes=size,
            tokens=int(tokens) if tokens else 0,
            summary_seq=int(summary_seq) if summary_seq else 0,
            parent=None if parent is None else uuid.UUID(parent.decode()),
            fork_seq=None if fork_seq is None else int(fork_seq),
            problem=None
            if schema <= SCHEMA_VERSION
            else f"schema version {schema}, newer than this library's {SCHEMA_VERSION}",
        )
    except (ValueError, UnicodeDecodeError, OverflowError) as exc:
        if not listing:
            raise CorruptSession(sid, f"unreadable meta hash: {exc!r}") from exc
        return SessionInfo(
            id=sid,
            model="",
            messages=messages,
            seq=0,
            schema_version=0,
            ttl=ttl,
            bytes=size,
            problem=f"corrupt meta hash: {exc}",
        )


def info(core: StoreCore, session: object, memory: bool) -> Transaction[SessionInfo | None]:
    """One session's ``SessionInfo`` (``None`` if there is none), read in one transaction."""
    sid = session_id(session)
    keys = session_keys(core.prefix, sid)[:2]

    def parse(replies: list[Any]) -> SessionInfo | None:
        (fields, length, pttl, *usage) = replies
        return _info(sid, [*fields, length, pttl], sum(int(n or 0) for n in usage) if memory else None)

    return Transaction("info", sid, keys, _reads(core, sid, memory), parse)


def info_page(
    core: StoreCore, sids: Sequence[SessionId], metas: list[bytes], memory: bool
) -> Pipeline[list[SessionInfo]]:
    """The ``SessionInfo`` of each of ``sids`` (those still there; ``metas``: their meta keys as
    SCAN found them), in one pipelined round trip of ``info.lua`` calls, ``_PER_CALL`` sessions a
    call (one on a cluster, where a call's keys share a slot). ``memory``: with the MEMORY USAGE of
    each session's keys summed (``bytes`` is ``None`` where the server has no MEMORY command).

    Not a transaction: the sessions live in many cluster slots, and a listing need not be one
    snapshot; each session's own reads are still consistent enough for a listing."""
    sha, width = SHAS["info"], 4 if memory else 2
    keys, step = listed_keys(metas, memory), width * (1 if core.cluster else _PER_CALL)
    flag = "1" if memory else ""
    reads = tuple(
        ("EVALSHA", sha, len(chunk), *chunk, flag)
        for chunk in (keys[i : i + step] for i in range(0, len(keys), step))
    )

    def parse(replies: list[Any]) -> list[SessionInfo]:
        # info.lua: {0, then per session: _FIELDS' values, length, pttl[, bytes (-1: no MEMORY)]}
        values = itertools.chain.from_iterable(itertools.islice(reply, 1, None) for reply in replies)
        found = []
        for sid, row in zip(sids, zip(*[values] * (12 if memory else 11), strict=True), strict=True):
            size = row[11] if memory and row[11] >= 0 else None
            info = _info(sid, row, size, True)
            if info is not None:  # else gone (deleted or expired since it was listed)
                found.append(info)
        return found

    return Pipeline("info", None, reads, parse)


def scan(
    core: StoreCore, cursor: int, count: int | None = None
) -> Command[tuple[int, list[SessionId], list[bytes]]]:
    """One SCAN page of this prefix's sessions (on the node the transport is given; ``count``
    keys looked at, ``SCAN_COUNT`` unless given): the cursor, their ids and their meta keys."""
    pattern, prefix = meta_key_pattern(core.prefix), core.prefix

    def parse(reply: list[Any]) -> tuple[int, list[SessionId], list[bytes]]:
        cursor, keys = scan_page(reply)
        return cursor, parse_meta_keys(prefix, keys), keys

    return Command("list", None, (), ("SCAN", cursor, "MATCH", pattern, "COUNT", count or SCAN_COUNT), parse)


def pop(core: StoreCore, session: object) -> Script[AgentMessage | None]:
    """Remove and return the last message (see pop.lua); a retry returns the same message."""
    sid = session_id(session)
    token = uuid.uuid4().hex  # one per call: a retry of this call carries it, and is recognised

    def parse(reply: list[Any]) -> AgentMessage | None:
        core.check(sid, reply, op="pop")
        if len(reply) == 1:
            return None
        _, codec, position, payload = reply
        (message,) = core.codec_named(sid, codec).decode(sid, [payload], int(position))
        return message

    return Script(
        "pop",
        sid,
        "pop",
        (*script_keys(core.prefix, sid, core.cluster), tokens_key(core.prefix, sid), *core.ledger(sid)),
        (core.version, token),
        parse,
    )


def put(core: StoreCore, session: object, state: SessionState, replace: bool) -> Call[None]:
    """Write an exported session as ``session`` in one step (``SessionExists`` if it is live,
    unless ``replace``). Unlike a restore from the backing store it is new data: a durable store
    lists it for write-behind."""
    sid = session_id(session)
    if not isinstance(state, SessionState):
        raise InvalidArgumentType(f"expected a SessionState, got {type(state).__name__}", sid)
    try:  # a Struct built in Python is not validated: check every field's type once, here
        state = msgspec.msgpack.decode(msgspec.msgpack.encode(state), type=SessionState)
    except (msgspec.EncodeError, msgspec.ValidationError, TypeError) as exc:
        raise InvalidMessage(sid, f"not a valid session state: {exc}") from exc
    return restore(core, sid, state, replace, fresh=True)
