"""Sans-IO calls for keeping a conversation inside a model's window: the budgeted read (``context``,
``context.lua``), stored summaries with compare-and-set (``summarize``, ``summarize.lua``) and the
two steps of compaction around the caller's summarizer (``compact_begin``, ``compact.lua``; the
summary it stores releases the compaction lock; ``compact_release`` when the summarizer failed).

Token counts are stored per message by the appending scripts (``tokens.py`` says how they are
counted); these calls only read and sum them, server-side.
"""

from __future__ import annotations

import inspect
import uuid
from typing import Any, Final, NamedTuple

from ._calls import Script
from ._core import StoreCore
from ._protocol import Status
from .cache import CachedHistory, HistoryCache
from .errors import InvalidArgument, InvalidArgumentType, SessionNotFound
from .keys import compact_key, dirty_key, session_id, session_keys, tokens_key
from .models import AgentMessage, SessionId
from .tokens import Context, keep_newest

__all__ = [
    "Compaction",
    "compact_begin",
    "compact_release",
    "context",
    "settled",
    "summarize",
    "summary_message",
]

COMPACT_LOCK_MS: Final = 60_000
"""How long a compaction lock lives unless the summary releases it: a worker that dies mid-summary
holds up compaction this long, at most (a summary stored late is refused by compare-and-set)."""


def _count(sid: SessionId, name: str, value: object, least: int = 0) -> int:
    if type(value) is not int or value < least:
        raise InvalidArgumentType(f"{name} must be an int >= {least}, got {value!r}", sid)
    return value


def summary_message(sid: SessionId, summary: AgentMessage | str) -> AgentMessage:
    """The summary as stored: a text one becomes a system message."""
    if isinstance(summary, str):
        return AgentMessage.system(summary)
    if type(summary) is not AgentMessage:
        raise InvalidArgumentType("a summary must be an AgentMessage or a str", sid)
    return summary


def settled(sid: SessionId, result: object) -> AgentMessage | str:
    """A summarizer's result, which must be a summary by now (a sync store cannot await one)."""
    if inspect.iscoroutine(result):
        result.close()
        raise InvalidArgumentType("the summarizer returned a coroutine: a sync store needs a sync one", sid)
    if not isinstance(result, AgentMessage | str):
        raise InvalidArgumentType(f"a summarizer must return an AgentMessage or a str, not {result!r}", sid)
    return result


def context(
    core: StoreCore, sid: object, max_tokens: int, reserve: int, cache: HistoryCache | None = None
) -> Script[Context]:
    """The summary and the newest messages after it that fit ``max_tokens - reserve``; the messages
    the history cache holds already are not sent again."""
    sid = session_id(sid)
    budget = _count(sid, "max_tokens", max_tokens) - _count(sid, "reserve", reserve)
    if budget < 0:
        raise InvalidArgument(f"reserve ({reserve}) is more than max_tokens ({max_tokens})", sid)
    cached = cache.get(sid) if cache is not None else None
    hint = ("", "", "") if cached is None else (cached.epoch, cached.seq, cached.first_seq)

    def parse(reply: list[Any]) -> Context:
        if reply[0] == Status.NOT_FOUND:
            raise SessionNotFound(sid)
        core.check(sid, reply, op="context")
        _, codec_name, epoch, seq, start, counts, raw_summary, _, summary_tokens, first, items = reply
        codec = core.codec_named(sid, codec_name)
        base = seq - first - len(items)  # the seq before the list's head
        fresh = codec.decode(sid, items, first)
        window = fresh
        if cached is not None and cached.epoch == epoch and cached.seq == base + first <= seq:
            window = [*cached.messages[base + start + 1 - cached.first_seq :], *fresh]
            history = CachedHistory(epoch, seq, cached.messages + tuple(fresh))
        else:
            history = CachedHistory(epoch, seq, tuple(fresh))
        if cache is not None and (cached is None or len(history.messages) >= len(cached.messages)):
            cache.put(sid, history)
        keep = keep_newest(window, counts, sum(counts))
        summary = codec.decode(sid, [raw_summary])[0] if raw_summary else None
        return Context(
            summary=summary,
            messages=window[keep:],
            counts=list(counts[keep:]),
            tokens=int(summary_tokens) + sum(counts[keep:]),
            first_seq=base + start + keep + 1,
            seq=seq,
        )

    keys = (*session_keys(core.prefix, sid)[:2], tokens_key(core.prefix, sid))
    return Script("context", sid, "context", keys, (core.version, budget, *hint), parse)


def summarize(
    core: StoreCore,
    sid: object,
    summary: AgentMessage | str,
    through_seq: int,
    expected: int | None,
    lock_token: str = "",
    trim: bool = False,
) -> Script[int]:
    """Store ``summary`` for messages 1..``through_seq`` unless the stored one is not ``expected``
    (``ConflictError``), or covers more; releases the compaction lock ``lock_token`` if held;
    ``trim``: drop the covered messages from Redis (see summarize.lua)."""
    sid = session_id(sid)
    through = _count(sid, "through_seq", through_seq)
    want = "" if expected is None else str(_count(sid, "expected", expected))
    message = summary_message(sid, summary)
    data = core.encode(sid, message)
    tokens = core.count_tokens(message)
    keys = (
        *session_keys(core.prefix, sid)[:2],
        tokens_key(core.prefix, sid),
        compact_key(core.prefix, sid),
        session_keys(core.prefix, sid).ids,
        dirty_key(core.prefix, sid, core.cluster),
        *core.ledger(sid),
    )
    args = (
        core.version,
        core.codec.name,
        through,
        want,
        message.id,
        data,
        tokens,
        lock_token,
        "1" if trim else "",
    )

    def parse(reply: list[Any]) -> int:
        core.check(sid, reply, -1 if expected is None else expected, op="summarize", after=through)
        return int(reply[1])

    return Script("summarize", sid, "summarize", keys, args, parse)


class Compaction(NamedTuple):
    """What ``compact.lua`` handed a worker that took the lock: the summary it builds on (and its
    seq), and every message after it with their counts."""

    token: str
    summary: AgentMessage | None
    summary_seq: int
    summary_tokens: int
    first_seq: int
    messages: list[AgentMessage]
    counts: list[int]


def compact_begin(core: StoreCore, sid: object, over_tokens: int) -> Script[Compaction | None]:
    """Take the compaction lock if the session is over ``over_tokens``; ``None`` when it is not, or
    when another worker holds the lock (it is compacting)."""
    sid = session_id(sid)
    over = _count(sid, "over_tokens", over_tokens)
    token = uuid.uuid4().hex

    def parse(reply: list[Any]) -> Compaction | None:
        if reply[0] == Status.LEASE_HELD or (len(reply) == 1 and reply[0] == Status.OK):
            return None
        core.check(sid, reply, op="compact")
        _, codec_name, summary_seq, raw_summary, summary_tokens, first_seq, counts, items = reply
        codec = core.codec_named(sid, codec_name)
        summary = codec.decode(sid, [raw_summary])[0] if raw_summary else None
        messages = codec.decode(sid, items)
        return Compaction(token, summary, summary_seq, summary_tokens, first_seq, messages, list(counts))

    keys = (*session_keys(core.prefix, sid)[:2], tokens_key(core.prefix, sid), compact_key(core.prefix, sid))
    return Script("compact", sid, "compact", keys, (core.version, over, token, COMPACT_LOCK_MS), parse)


def compact_release(core: StoreCore, sid: SessionId, token: str) -> Script[None]:
    """Drop the compaction lock ``token`` after the summarizer failed (if it is still ours)."""
    keys = (*session_keys(core.prefix, sid)[:2], tokens_key(core.prefix, sid), compact_key(core.prefix, sid))
    return Script("compact", sid, "compact", keys, (core.version, "", token, 0), lambda _: None)
