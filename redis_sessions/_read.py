"""The sans-IO reads of a conversation: a slice of its history (``messages``) and the whole session
(``load``), served from the history cache when it holds the session (one round trip for what is
new, ``read_since.lua``), else read as one MULTI/EXEC snapshot.

They share ``StoreCore``'s keys, codecs, version check and error mapping; the stores only send them.
The cache is the store's (``cache``, passed in): the core keeps no state. An uncached read is not
sent through the cache's script on purpose: a script's ``LRANGE`` reply is copied into a Lua table and
back, which makes a read of 1,000 messages 4.4 times slower (``benchmarks/bench_read_paths.py``).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Final, TypeVar

from ._calls import Command, Script, Transaction
from ._core import Messages, StoreCore
from ._protocol import Status
from .cache import CachedHistory, HistoryCache
from .errors import CorruptSession, InvalidArgumentType, SessionNotFound
from .keys import session_id, session_keys
from .models import AgentMessage, Session, SessionId

__all__ = ["StaleCache", "exists", "load", "messages"]

T = TypeVar("T")
_NOTHING_CACHED: Final = CachedHistory(b"", 0, ())  # read_since.lua answers it with the whole list


class StaleCache(CorruptSession):
    """The cached history no longer lines up with what Redis returned (nothing is corrupt). Its
    entry is dropped already; the store's recovery reads again, uncached, once, so this never
    reaches a caller. (A ``CorruptSession`` so that the recovery the reads already have sees it.)"""

    def __init__(self, sid: SessionId) -> None:
        super().__init__(sid, "the cached history is out of step with Redis")


def messages(
    core: StoreCore, sid: object, start: int, stop: int | None, cache: HistoryCache | None = None
) -> Script[Messages] | Transaction[Messages]:
    """A slice of the history (Python slice semantics): from the cache after one round trip when
    the session is cached, else one MULTI/EXEC snapshot of the meta hash and the range."""
    sid = session_id(sid)
    if not isinstance(start, int) or not (stop is None or isinstance(stop, int)):
        raise InvalidArgumentType("start and stop must be ints (stop may be None)", sid)

    def listed(history: tuple[AgentMessage, ...] | None, _: dict[bytes, bytes]) -> Messages:
        if history is None:
            raise SessionNotFound(sid)
        return list(history)

    span = slice(start, stop)
    cached = cache.get(sid) if cache is not None else None
    if cached is not None:
        return _read_since(core, sid, cached, False, listed, span, cache)
    # Python slice -> LRANGE (inclusive end); stop == 0 is always empty, and 1..0 is too.
    first, last = (1, 0) if stop == 0 else (start, -1 if stop is None else stop - 1)
    keys = session_keys(core.prefix, sid)

    def parse(replies: list[Any]) -> Messages:
        (version, codec, epoch, seq, durable), length, items = replies
        core.check_version(sid, version)
        if durable == b"1" and length == 0 and seq not in (None, b"0"):
            core.check(sid, [Status.EVICTED])
        offset = first if first >= 0 else max(0, length + first)
        messages = core.codec_named(sid, codec).decode(sid, items, offset)
        if cache is not None and first == 0 and last == -1:
            cache.put(sid, CachedHistory(epoch or b"", _seq(sid, seq), tuple(messages)))
        return messages

    multi = (
        ("HMGET", keys.meta, "schema_version", "codec", "epoch", "seq", "durable"),
        ("LLEN", keys.messages),
        ("LRANGE", keys.messages, first, last),
    )
    fallback = _read_since(core, sid, _NOTHING_CACHED, False, listed, span, cache)
    return Transaction("messages", sid, keys[:2], multi, parse, fallback)


def load(
    core: StoreCore, sid: object, cache: HistoryCache | None = None
) -> Script[Session | None] | Transaction[Session | None]:
    """The whole session, meta hash and history as one snapshot (``None`` if there is none)."""
    sid = session_id(sid)

    def session(history: tuple[AgentMessage, ...] | None, meta: dict[bytes, bytes]) -> Session | None:
        return None if history is None else core.session(sid, meta, list(history))

    cached = cache.get(sid) if cache is not None else None
    if cached is not None:
        return _read_since(core, sid, cached, True, session, None, cache)
    keys = session_keys(core.prefix, sid)

    def parse(replies: list[Any]) -> Session | None:
        meta, items = replies
        if not meta:
            return None
        core.check_version(sid, meta.get(b"schema_version"))
        if meta.get(b"durable") == b"1" and not items and meta.get(b"seq", b"0") != b"0":
            core.check(sid, [Status.EVICTED])
        session = core.session(sid, meta, core.codec_named(sid, meta.get(b"codec")).decode(sid, items))
        if cache is not None:
            cache.put(sid, CachedHistory(meta.get(b"epoch", b""), session.seq, tuple(session.messages)))
        return session

    multi = (("HGETALL", keys.meta), ("LRANGE", keys.messages, 0, -1))
    fallback = _read_since(core, sid, _NOTHING_CACHED, True, session, None, cache)
    return Transaction("load", sid, keys[:2], multi, parse, fallback)


def exists(core: StoreCore, sid: object) -> Command[bool]:
    """Whether the session exists (its meta hash does)."""
    sid = session_id(sid)
    meta = session_keys(core.prefix, sid).meta
    return Command("exists", sid, (meta,), ("EXISTS", meta), bool)


def _read_since(
    core: StoreCore,
    sid: SessionId,
    cached: CachedHistory,
    want_meta: bool,
    finish: Callable[[tuple[AgentMessage, ...] | None, dict[bytes, bytes]], T],
    span: slice | None = None,
    cache: HistoryCache | None = None,
) -> Script[T]:
    """A read served from the cache after one round trip fetched what it lacked.

    ``finish`` gets the history, or the ``span`` of it (``None`` when the session is gone), and
    the meta hash (only its codec unless ``want_meta``). A span that avoids a corrupt new item
    is still served, as an uncached read of that span would be.
    """
    args = (core.version, cached.epoch, cached.seq, cached.first_seq, int(want_meta))

    def parse(reply: list[Any]) -> T:
        if reply[0] == Status.NOT_FOUND:
            if cache is not None:
                cache.discard(sid)
            return finish(None, {})
        core.check(sid, reply)
        _, head, epoch, seq, length, first, items = reply
        meta = dict(zip(head[::2], head[1::2], strict=True)) if want_meta else {b"codec": head}
        codec = core.codec_named(sid, meta.get(b"codec"))
        try:
            fresh = codec.decode(sid, items, first)
        except CorruptSession:
            if cache is not None:
                cache.discard(sid)
            kept = cached.extended(epoch or b"", seq, length, first, [])
            if span is None or kept is None:  # the whole history is wanted, or the cache is stale
                raise
            lo, hi, _ = span.indices(length)  # decode only what the span covers
            part = codec.decode(sid, items[max(lo - first, 0) : max(hi - first, 0)], max(lo, first))
            return finish(kept.messages[lo : min(hi, first)] + tuple(part), meta)
        history = cached.extended(epoch or b"", seq, length, first, fresh)
        if history is None:
            if cache is not None:
                cache.discard(sid)
            raise StaleCache(sid)
        if cache is not None:
            cache.put(sid, history)
        return finish(history.messages if span is None else history.messages[span], meta)

    keys = session_keys(core.prefix, sid)[:2]
    return Script("read", sid, "read_since", keys, args, parse)


def _seq(sid: SessionId, raw: bytes | None) -> int:
    """The meta hash's seq, which the scripts keep a decimal integer."""
    if raw is None or not raw.isdigit():
        raise CorruptSession(sid, f"the meta hash holds no decimal integer seq: {raw!r}")
    return int(raw)
