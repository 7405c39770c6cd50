"""Sans-IO calls for streamed partial replies (``store.stream``) and the partial watch.

A reply streams into a Redis Stream under the session's hash tag (``keys.reply_keys``): one entry
per delta ``{m: message id, i: index, x: text}``, and one that closes the reply, ``{m, f: seq,
n: deltas}`` when ``finish`` stored the final message (in the same script as the message:
``append.lua``) or ``{m, a: reason, s: seq}`` when it was aborted. The replies hash keeps each
reply's state. ``Follower`` turns what a partial watcher reads (messages and entries, read in one
step) into events in one order, each with an ``event_id`` to resume right after it.

Bounds and times (the README's *Streamed replies* documents them):

- a reply holds at most ``MAX_DELTAS`` deltas and ``MAX_REPLY_BYTES`` bytes of text (per stream);
- the stream and the replies hash expire ``FINISHED_GRACE`` after a finish (when no other reply
  of the session is open), and ``KEEP`` after an abort or the last write to an open reply;
- a reader gives an open reply up (an ``Aborted`` with reason ``"producer lost"``) once its fenced
  producer's lease is no longer live, or, unfenced, once it wrote nothing for ``IDLE``.
"""

from __future__ import annotations

from collections import deque
from typing import Any, Final, NamedTuple, TypeAlias

from ._calls import Script
from ._core import StoreCore
from ._live import Appended
from ._protocol import Status
from ._write import fence_arg
from .errors import InvalidArgument, InvalidArgumentType
from .keys import live_keys, reply_keys, script_keys, session_keys, tokens_key
from .models import AgentMessage, SessionId

__all__ = [
    "FINISHED_GRACE",
    "IDLE",
    "KEEP",
    "MAX_DELTAS",
    "MAX_REPLY_BYTES",
    "Aborted",
    "Delta",
    "Event",
    "Follower",
    "LiveBatch",
    "abort",
    "check_options",
    "finish",
    "parse_event_id",
    "read_live",
    "reap",
    "write",
]

MAX_DELTAS: Final = 100_000
"""Deltas one streamed reply may hold (a long reply of ~4 characters a token is ~25,000)."""
MAX_REPLY_BYTES: Final = 4 * 1024 * 1024
"""Bytes of text (UTF-8) one streamed reply may hold: 4 MiB, half of ``max_message_bytes``."""
FINISHED_GRACE: Final = 60.0
"""Seconds a finished reply's deltas stay for late watchers (the message itself stays for good)."""
KEEP: Final = 3600.0
"""Seconds an aborted reply's deltas stay (also: an open reply's, after its last write)."""
IDLE: Final = 30.0
"""Seconds without a write after which a reader gives an unfenced reply up as dead."""
STOPPED: Final = "producer lost"
"""The ``reason`` of an ``Aborted`` that a reader wrote for a producer that died."""

_ENTRIES: Final = 1000  # stream entries a partial watcher reads at once
_START: Final = "0-0"


class Delta(NamedTuple):
    """The ``index``-th piece (from 0) of the streamed reply whose final message will have id
    ``message_id``."""

    message_id: str
    index: int  # type: ignore[assignment]  # a field, as the issue names it (shadows tuple.index)
    text: str
    event_id: str


class Aborted(NamedTuple):
    """The streamed reply ``message_id`` ended without a final message (its deltas stay)."""

    message_id: str
    reason: str
    event_id: str


Event: TypeAlias = Appended | Delta | Aborted
"""What a partial watch yields."""


class LiveBatch(NamedTuple):
    """What a partial watcher read in one step: the session's messages after its seq, and the
    stream's entries from its cursor on, with the states of the replies."""

    epoch: bytes
    seq: int
    appended: list[Appended]
    entries: list[tuple[str, dict[bytes, bytes]]]
    replies: dict[bytes, bytes]


def write(
    core: StoreCore,
    sid: SessionId,
    message_id: str,
    fence: int | None,
    first: int,
    texts: list[str],
    limits: tuple[int, int, int],
) -> Script[int]:
    """Store ``texts`` as deltas ``first, first + 1, ...``; the count stored after them.
    ``limits``: max deltas, max bytes, idle ms."""
    meta = session_keys(core.prefix, sid).meta
    stream, replies, channel = reply_keys(core.prefix, sid)
    keys = (meta, stream, replies, live_keys(core.prefix, sid)[0], channel)
    max_deltas, max_bytes, idle_ms = limits
    keep = round(KEEP * 1000)
    fenced = fence_arg(sid, fence)
    args = (core.version, message_id, fenced, first, max_deltas, max_bytes, keep, idle_ms, *texts)

    def parse(reply: list[Any]) -> int:
        if reply[0] != Status.OK:
            core.check(sid, reply, token=fence, message_id=message_id)
        return int(reply[1])

    return Script("stream", sid, "stream_write", keys, args, parse)


def finish(core: StoreCore, sid: SessionId, message: AgentMessage, fence: int | None) -> Script[int]:
    """Store the reply's final ``message`` and close the reply, in one step; the message's seq."""
    prefix = core.prefix
    keys = (
        *script_keys(prefix, sid, core.cluster),
        *reply_keys(prefix, sid),
        tokens_key(prefix, sid),
        *core.ledger(sid),
    )
    grace = round(FINISHED_GRACE * 1000)
    data, count = core.encode(sid, message), core.tokens(sid, message)
    args = (core.version, core.codec.name, "", fence_arg(sid, fence), grace, count, message.id, data)

    def parse(reply: list[Any]) -> int:
        if reply[0] != Status.OK:
            core.check(sid, reply, token=fence, message_id=message.id)
        return int(reply[1])

    return Script("stream", sid, "append", keys, args, parse)


def abort(core: StoreCore, sid: SessionId, message_id: str, reason: str) -> Script[int]:
    """Close the open reply ``message_id`` as aborted (``""``: every open reply whose producer is
    gone); how many were closed."""
    stream, replies, channel = reply_keys(core.prefix, sid)
    keys = (session_keys(core.prefix, sid).meta, stream, replies, live_keys(core.prefix, sid)[0], channel)
    args = (message_id, reason, round(KEEP * 1000))
    return Script("stream", sid, "stream_abort", keys, args, lambda reply: int(reply[1]))


def reap(core: StoreCore, sid: SessionId) -> Script[int]:
    """Abort every open reply of the session whose producer is gone (``STOPPED``)."""
    return abort(core, sid, "", STOPPED)


def read_live(
    core: StoreCore, sid: SessionId, after: int, cursor: str, limit: int = 1000
) -> Script[LiveBatch | None]:
    """Messages after seq ``after`` and stream entries after ``cursor``, in one step; ``None`` when
    the session is gone."""
    stream, replies, _ = reply_keys(core.prefix, sid)
    keys = (*session_keys(core.prefix, sid)[:2], stream, replies)
    args = (core.version, after, limit, _next(cursor), _ENTRIES)

    def parse(reply: list[Any]) -> LiveBatch | None:
        if reply[0] == Status.NOT_FOUND:
            return None
        core.check(sid, reply, after=after)
        _, codec, epoch, seq, items, first, entries, fields = reply
        messages = core.codec_named(sid, codec).decode(sid, items, first)
        appended = [Appended(after + 1 + i, m) for i, m in enumerate(messages)]
        stream_entries = [(_text(eid), _fields(raw)) for eid, raw in entries]
        return LiveBatch(epoch, int(seq), appended, stream_entries, _fields(fields))

    return Script("watch", sid, "read_after", keys, args, parse)


def check_options(
    sid: SessionId, flush_interval: float, flush_deltas: int, limits: tuple[int, int, float]
) -> None:
    """``InvalidArgument`` for options a stream cannot use (before anything is sent)."""
    if not isinstance(flush_interval, int | float) or flush_interval < 0:
        raise InvalidArgument("flush_interval must be seconds >= 0", sid)
    if type(flush_deltas) is not int or flush_deltas < 1:
        raise InvalidArgument("flush_deltas must be an int >= 1", sid)
    max_deltas, max_bytes, idle = limits
    if type(max_deltas) is not int or not 0 < max_deltas <= MAX_DELTAS:
        raise InvalidArgument(f"max_deltas must be an int in 1..{MAX_DELTAS}", sid)
    if type(max_bytes) is not int or not 0 < max_bytes <= MAX_REPLY_BYTES:
        raise InvalidArgument(f"max_bytes must be an int in 1..{MAX_REPLY_BYTES}", sid)
    if not isinstance(idle, int | float) or idle <= 0:
        raise InvalidArgument("idle must be seconds > 0", sid)


def parse_event_id(sid: SessionId, event_id: object) -> tuple[int, str]:
    """The position an ``event_id`` stands for: (seq, stream entry); ``InvalidArgument`` if it is
    not one this library made."""
    if not isinstance(event_id, str):
        raise InvalidArgumentType("resume must be an event_id (a str)", sid)
    seq, _, entry = event_id.partition(".")
    ms, _, n = entry.partition("-")
    if not (seq.isdigit() and ms.isdigit() and n.isdigit()) or len(event_id) > 64:
        raise InvalidArgument(f"resume {event_id!r} is not an event_id of a partial watch", sid)
    return int(seq), entry


class Follower:
    """Where a partial watcher is (the seq of the last message and the stream entry it saw), and
    the merge of what it reads into events: a streamed reply's deltas, then its final message
    (where the entry that closed it stands), other messages in seq order."""

    def __init__(self, after_seq: int, resume: tuple[int, str] | None) -> None:
        self.seq, self.cursor = (after_seq, _START) if resume is None else resume
        self.fresh = resume is None  # a new watcher skips replies closed before its seq
        self.skip: set[str] = set()
        self.open = False  # a reply was open at the last read: readers may have to reap it

    def absorb(self, batch: LiveBatch) -> tuple[list[Event], bool]:
        """The events in ``batch``, and whether to read again at once (there is more)."""
        states = batch.replies
        if self.fresh:
            self.fresh = False
            self.skip = {mid for mid in _ids(states) if self._closed_before(states, mid)}
        self.open = any(states.get(mid.encode() + b":st") == b"o" for mid in _ids(states))
        events: list[Event] = []
        pending = deque(batch.appended)
        for eid, fields in batch.entries:
            mid = fields.get(b"m", b"").decode("utf-8", "backslashreplace")
            closing = fields.get(b"f")
            if closing is not None and int(closing) > self.seq:
                last = int(closing)
                while pending and pending[0].seq < last:
                    events.append(self._appended(pending.popleft(), None))
                if not pending:
                    return events, True  # the final message is beyond this read: read on
                self.cursor = eid
                events.append(self._appended(pending.popleft(), int(fields.get(b"n", b"0"))))
                continue
            if mid in self.skip or closing is not None:
                self.cursor = eid
                continue
            opened = int(states.get(mid.encode() + b":o", b"0"))
            while pending and pending[0].seq <= opened:  # messages stored before the reply began
                events.append(self._appended(pending.popleft(), None))
            if opened > self.seq:
                return events, True  # those messages are beyond this read: read on
            self.cursor = eid
            event_id = f"{self.seq}.{eid}"
            if b"x" in fields:
                events.append(Delta(mid, int(fields[b"i"]), fields[b"x"].decode(), event_id))
            elif b"a" in fields:
                events.append(Aborted(mid, fields[b"a"].decode("utf-8", "backslashreplace"), event_id))
        if len(batch.entries) >= _ENTRIES:
            return events, True  # more entries: the messages left may come after them
        events.extend(self._appended(item, None) for item in pending)
        return events, bool(batch.appended) and self.seq < batch.seq

    def _appended(self, item: Appended, deltas: int | None) -> Appended:
        self.seq = item.seq
        event = Appended(item.seq, item.message)
        event.event_id = f"{item.seq}.{self.cursor}"
        event.deltas = deltas
        return event

    def _closed_before(self, states: dict[bytes, bytes], mid: str) -> bool:
        state = states.get(mid.encode() + b":st")
        at = int(states.get(mid.encode() + b":s", b"0"))
        return (state == b"f" and at <= self.seq) or (state == b"a" and at < self.seq)


def _ids(states: dict[bytes, bytes]) -> list[str]:
    return [f[:-3].decode("utf-8", "backslashreplace") for f in states if f.endswith(b":st")]


def _fields(raw: Any) -> dict[bytes, bytes]:
    if isinstance(raw, dict):
        return raw
    items = list(raw or ())
    return dict(zip(items[::2], items[1::2], strict=True))


def _next(entry: str) -> str:
    ms, _, n = entry.partition("-")
    return f"{ms}-{int(n or 0) + 1}"


def _text(raw: Any) -> str:
    return raw.decode() if isinstance(raw, bytes) else str(raw)
