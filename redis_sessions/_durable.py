"""Sans-IO calls that bring a whole session into Redis: a restore, and a schema upgrade's read.

``restore`` puts a stored ``SessionState`` back into Redis in one script, so a restore (or a
read-through after a miss) is one atomic step: two processes that do it at once cannot both write
or interleave, and the session continues from its stored seq, so ``expected_seq`` and watchers keep
working across the trip. ``raw_session`` and ``upgraded`` read a session of an older schema and
bring it to this one (``migrations``). The write-behind worker's calls are in ``_sync_calls``.
"""

from __future__ import annotations

import uuid
from typing import Any, NamedTuple

import msgspec

from ._calls import Call, Script, Transaction
from ._core import StoreCore
from ._times import stored_micros
from .errors import CorruptSession, SchemaVersionError
from .keys import dirty_key, live_keys, session_keys, tokens_key
from .models import SessionId, SessionState

__all__ = ["RawSession", "raw_session", "restore", "upgraded"]


def restore(
    core: StoreCore,
    sid: SessionId,
    state: SessionState,
    replace: bool | str,
    *,
    upgrading: RawSession | None = None,
    fresh: bool = False,
) -> Script[None]:
    """Write ``state`` as session ``sid``; ``SessionExists`` if one is live, unless ``replace``.

    ``fresh``: the state does not come from the backing store (an import), so a durable store
    writes all of it behind. ``upgrading`` (the session as read before its schema upgrade) makes
    it a compare-and-set: ``ConflictError`` if the session changed since, and it keeps its epoch,
    its place in the dirty index and its write-behind bookkeeping."""
    if state.schema_version != core.schema.current:
        raise SchemaVersionError(sid, state.schema_version, core.schema.current)
    fields: list[Any] = [
        *core.header(sid, state.model, state.max_turns, state.system_message, state.metadata)
    ]
    limit = core.max_session_bytes if state.max_session_bytes is None else state.max_session_bytes
    if limit:  # the session's own byte limit, as it keeps max_messages (append.lua reads it)
        fields += ["max_bytes", limit]
    payloads: list[str | bytes] = []
    counts: list[str] = []  # kept as appends keep them (tokens.py)
    seen: set[str] = set()
    # The counts the record kept (made when each message was appended); only the messages
    # without one are counted here, by this store's counter.
    kept = state.message_tokens
    if kept is None or len(kept) != len(state.messages):
        kept = [None] * len(state.messages)
    for message, count in zip(state.messages, kept, strict=True):
        if message.id not in seen:  # a repeated id keeps its first position, as appends do
            seen.add(message.id)
            payloads += (message.id, core.encode(sid, message))
            fine = type(count) is int and count >= 0
            counts.append(str(count if fine else core.tokens(sid, message)))
    seq = max(state.seq or 0, len(seen))
    if state.summary is not None and state.summary_seq:  # the tokens after it: its messages' counts
        after = sum(int(n) for n in counts[max(0, len(counts) - (seq - state.summary_seq)) :])
        base = sum(int(n) for n in counts) - after
        summary_tokens = state.summary_tokens
        if type(summary_tokens) is not int or summary_tokens < 0:
            summary_tokens = core.tokens(sid, state.summary)
        fields += ["summary", core.encode(sid, state.summary), "summary_id", state.summary.id]
        fields += ["summary_seq", state.summary_seq, "summary_tokens", summary_tokens]
        fields += ["summary_base", base]
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
        stored_micros(state.created_at),
        stored_micros(state.updated_at),
        len(fields) // 2,
        ",".join(counts),
        *fields,
        *payloads,
    )
    keys = (
        *session_keys(core.prefix, sid),
        live_keys(core.prefix, sid)[1],
        dirty_key(core.prefix, sid, core.cluster),
        tokens_key(core.prefix, sid),
        *core.ledger(sid),
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
