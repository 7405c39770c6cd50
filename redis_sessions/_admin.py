"""Sans-IO calls for looking after sessions rather than conversing in them: what a session holds
(``info``, a page of them for listings), taking back the last message (``pop``), and putting a
whole exported session in (``put``).

They share ``StoreCore``'s keys, codecs and error mapping; the stores only send them.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from typing import Any, Final

import msgspec

from ._calls import Call, Command, Pipeline, Script, Transaction
from ._core import StoreCore, scan_page, stored_time
from ._durable import restore
from ._scripts import SHAS
from .errors import CorruptSession, InvalidArgumentType, InvalidMessage
from .keys import meta_key_pattern, parse_meta_key, script_keys, session_id, session_keys, tokens_key
from .models import SCHEMA_VERSION, AgentMessage, SessionId, SessionInfo, SessionState

__all__ = ["info", "info_page", "pop", "put", "scan"]

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
_SCAN_COUNT: Final = 1000


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


def _info(sid: SessionId, replies: Sequence[Any], memory: bool, listing: bool = False) -> SessionInfo | None:
    """A session's info from the replies to ``_reads`` (or ``info.lua``'s reply in that shape);
    a corrupt meta hash raises ``CorruptSession``, or in a ``listing`` is an info naming the
    ``problem`` (so one bad session does not hide the others)."""
    (model, seq, version, created, updated, tokens, summary_seq, parent, fork_seq), length, pttl, *usage = (
        replies
    )
    if version is None:
        return None  # gone (deleted or expired since it was listed)
    messages, ttl = int(length), pttl / 1000 if pttl >= 0 else None
    size = sum(int(n or 0) for n in usage) if memory else None
    try:
        newer = int(version) > SCHEMA_VERSION
        return SessionInfo(
            id=sid,
            model=(model or b"").decode(),
            seq=int(seq or 0),
            schema_version=int(version),
            created_at=stored_time(created),
            updated_at=stored_time(updated),
            messages=messages,
            ttl=ttl,
            bytes=size,
            tokens=int(tokens or 0),
            summary_seq=int(summary_seq or 0),
            parent=None if parent is None else uuid.UUID(parent.decode()),
            fork_seq=None if fork_seq is None else int(fork_seq),
            problem=f"schema version {int(version)}, newer than this library's {SCHEMA_VERSION}"
            if newer
            else None,
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
    return Transaction("info", sid, keys, _reads(core, sid, memory), lambda r: _info(sid, r, memory))


def info_page(core: StoreCore, sids: Sequence[SessionId], memory: bool) -> Pipeline[list[SessionInfo]]:
    """The ``SessionInfo`` of each of ``sids`` (those still there), in one pipelined round trip:
    one ``info.lua`` a session (``memory``: with the MEMORY USAGE of each of its keys summed;
    ``bytes`` is ``None`` where the server has no MEMORY command).

    Not a transaction: the sessions live in many cluster slots, and a listing need not be one
    snapshot; each session's own reads are still consistent enough for a listing."""
    sha, prefix = SHAS["info"], core.prefix
    reads: tuple[tuple[Any, ...], ...]
    if memory:  # the bytes too: MEMORY USAGE of every key of the session, in the same script
        reads = tuple(
            ("EVALSHA", sha, 4, *session_keys(prefix, sid), tokens_key(prefix, sid), "1") for sid in sids
        )
    else:
        reads = tuple(("EVALSHA", sha, 2, *session_keys(prefix, sid)[:2]) for sid in sids)

    def one(sid: SessionId, reply: list[Any]) -> SessionInfo | None:
        # info.lua: {0, _FIELDS' values, length, pttl[, bytes (-1: no MEMORY command)]}
        if not memory:
            return _info(sid, reply[1:], False, True)
        counted = reply[4] >= 0
        return _info(sid, [*reply[1:4], *([reply[4]] if counted else [])], counted, True)

    def parse(replies: list[Any]) -> list[SessionInfo]:
        found = (one(sid, r) for sid, r in zip(sids, replies, strict=True))
        return [item for item in found if item is not None]

    return Pipeline("info", None, reads, parse)


def scan(core: StoreCore, cursor: int) -> Command[tuple[int, list[SessionId]]]:
    """One SCAN page of this prefix's session ids (on the node the transport is given)."""
    pattern = meta_key_pattern(core.prefix)

    def parse(reply: list[Any]) -> tuple[int, list[SessionId]]:
        cursor, keys = scan_page(reply)
        return cursor, [parse_meta_key(core.prefix, key) for key in keys]

    return Command("list", None, (), ("SCAN", cursor, "MATCH", pattern, "COUNT", _SCAN_COUNT), parse)


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
        (*script_keys(core.prefix, sid, core.cluster), tokens_key(core.prefix, sid)),
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
