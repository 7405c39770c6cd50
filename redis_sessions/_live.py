"""Sans-IO calls for the live side of a conversation: watching for appends, and turn leases.

Watchers subscribe to the session's events channel, which the append script publishes to, but the
list stays the source of truth: a watcher reads "everything after the seq I saw last", so a missed
notification or a reconnect costs latency, never a message. Leases hand out fencing tokens from a
counter in the meta hash; the append script refuses a token that is not the live lease's.
"""

from __future__ import annotations

import uuid
from typing import Any, Final, NamedTuple

from ._calls import Command, Script
from ._core import StoreCore
from ._protocol import Status
from .errors import InvalidArgumentType
from .keys import live_keys, session_id, session_keys
from .models import AgentMessage

__all__ = ["PUBSUB_PROBE", "Appended", "Batch", "lease", "read_after"]

PUBSUB_PROBE: Final = Command[int]("watch", None, (), ("EVAL", "return redis.REDIS_VERSION_NUM or 0", 0), int)
"""Asks what the scripts ask: sharded pub/sub (SPUBLISH) on Redis >= 7.0, else classic PUBLISH."""

SHARDED_FROM: Final = 0x070000


class _SeqMessage(NamedTuple):
    seq: int
    message: AgentMessage


class Appended(_SeqMessage):
    """A message as a watcher sees it: with its sequence number, to resume from after a restart.

    A pair, so ``for seq, message in store.watch(...)`` unpacks it. In a partial watch
    (``watch(..., partial=True)``) it also has ``event_id``, to resume right after it, and, when it
    is the final message of a streamed reply, ``deltas``: it completes that reply's deltas
    ``0 .. deltas - 1`` (``message.id`` is their ``message_id``). Elsewhere both are ``None``.
    """

    event_id: str | None = None
    deltas: int | None = None


class Batch(NamedTuple):
    """What a catch-up read found: the session's incarnation, its seq, and the new messages."""

    epoch: bytes
    seq: int
    appended: list[Appended]


def read_after(core: StoreCore, sid: object, after: int, limit: int = 1000) -> Script[Batch | None]:
    """Up to ``limit`` messages with seq > ``after``; ``None`` when the session is gone."""
    sid = session_id(sid)
    if type(after) is not int or after < 0:
        raise InvalidArgumentType("after_seq must be an int >= 0", sid)

    def parse(reply: list[Any]) -> Batch | None:
        if reply[0] == Status.NOT_FOUND:
            return None
        core.check(sid, reply, after=after)
        _, codec, epoch, seq, items, first = reply
        messages = core.codec_named(sid, codec).decode(sid, items, first)
        return Batch(epoch, int(seq), [Appended(after + 1 + i, m) for i, m in enumerate(messages)])

    keys = session_keys(core.prefix, sid)[:2]
    return Script("watch", sid, "read_after", keys, (core.version, after, limit), parse)


def lease(
    core: StoreCore, sid: uuid.UUID, action: str, owner: str, token: int | None, ttl_ms: int
) -> Script[int]:
    """Acquire (a new token), renew or release the session's turn lease; returns the token."""
    keys = (session_keys(core.prefix, sid).meta, live_keys(core.prefix, sid)[0])
    args = (core.version, action, owner, "" if token is None else token, ttl_ms)

    def parse(reply: list[Any]) -> int:
        core.check(sid, reply, token=token)
        return int(reply[1])

    return Script("lease", sid, "lease", keys, args, parse)
