"""Write-behind into a record, with no I/O: what a delivered batch adds, and when it is refused.

The worker hands an adapter ``Delivery`` batches: messages with the seqs Redis gave them
(``first_seq``, ``first_seq + 1``...), each already in the form the record keeps it (its id and its
JSON body, ``Row``). The record keeps, per session, the seq of the last message it holds (its
header's ``seq``). A batch is taken only where it continues what the record holds:

- it starts at most one past the record's seq (an overlap is a redelivery: the messages the record
  already holds must be the same ids, and are skipped);
- a batch that starts *above* it would leave a hole, so it is not stored: the adapter reports the
  seq it holds and the worker delivers again from there. Before this rule a record missing seqs
  101-103 took seq 104 at its next position, closing the hole silently and for good.

Whatever a record holds that Redis does not agree with (another message at a seq, a message of the
batch stored at another seq) is a ``RecordMismatch``: refused, never merged.

**Where a message is checked.** Once, where the batch is made, never in the adapters: every adapter
stores a ``Row``'s body as it is. ``delivery`` (messages built in Python, which msgspec does not
check on construction) encodes each and decodes the lot back, as ``append_messages`` does.
``decoded_delivery`` serves the worker, whose messages come out of msgspec's typed decode of what
Redis holds: that decode is the check (a stored message of another shape, or a session of another
schema version, never gets this far: ``CorruptSession``, ``SchemaVersionError``), and encoding a
message that decoded can only fail on a value JSON has no form for, which it reports
(``CorruptSession``, naming the message); decoding the JSON back, as the adapters did before
each row, proved nothing more. The body is the same bytes either way (``_rows.message_body``):
the record holds what it held.
"""

from __future__ import annotations

import functools
import operator
import uuid
from collections.abc import Collection, Sequence
from typing import Final, NamedTuple

import msgspec

from ..errors import CorruptSession, RecordMismatch
from ..models import AgentMessage, SessionId, SessionState
from ._rows import checked_rows

__all__ = [
    "NOTHING",
    "Delivered",
    "Delivery",
    "Row",
    "decoded_delivery",
    "decoded_rows",
    "delivery",
    "header_state",
    "ids_of",
    "in_key_order",
    "last_seq",
    "new_record_id",
    "plan",
]

_ENCODER: Final = msgspec.json.Encoder()

NOTHING: Final[frozenset[str]] = frozenset()
"""No message ids: what a record holds of a batch it has none of (``plan``'s ``stored``)."""

Row = tuple[str, bytes]
"""One message as a record keeps it: its id and its JSON body (the ``AgentMessage`` JSON)."""


class Delivery(NamedTuple):
    """Messages of one session with seqs ``first_seq``.. and the header to store with them.

    Make one with ``delivery`` (or, for messages msgspec just decoded, ``decoded_delivery``): the
    adapters store the rows' bodies as they are (see the module docstring)."""

    session_id: SessionId
    first_seq: int
    rows: Sequence[Row]  # (message id, JSON body) of each message, in seq order
    state: SessionState  # header fields (no messages); its seq is the seq of the last message;
    # message_tokens: one token count per row (None where it has none), or None


Delivered = int | RecordMismatch
"""Per session: the seq the record holds after the delivery (below the batch's last seq when the
batch would have left a gap, so was not stored), or why it was refused."""


def delivery(
    session_id: SessionId, first_seq: int, messages: Sequence[AgentMessage], state: SessionState
) -> Delivery:
    """A ``Delivery`` of ``messages`` with seqs ``first_seq``..., each checked as an append checks
    it (``InvalidMessage`` before anything is stored); ``state`` gives the header's fields (its
    messages are left out)."""
    rows = checked_rows(session_id, messages, unique=False)
    return Delivery(session_id, first_seq, rows, msgspec.structs.replace(state, messages=[]))


def decoded_delivery(
    session_id: SessionId, first_seq: int, messages: Sequence[AgentMessage], state: SessionState
) -> Delivery:
    """``delivery`` for messages this library's typed decoder just made from stored bytes (the
    worker's): each is encoded once, not decoded back (the module docstring says why); ``state``
    must have no messages of its own. ``CorruptSession`` names a message the record cannot keep."""
    rows: list[Row] = []
    for seq, message in enumerate(messages, first_seq):
        if not message.id:
            raise CorruptSession(session_id, f"the message of seq {seq} has an empty id")
        try:
            rows.append((message.id, _ENCODER.encode(message)))
        except (msgspec.EncodeError, TypeError, OverflowError) as exc:
            detail = f"message {message.id!r} (seq {seq}) has no JSON form for the record: {exc}"
            raise CorruptSession(session_id, detail) from exc
    return Delivery(session_id, first_seq, rows, state)


def decoded_rows(messages: Sequence[AgentMessage]) -> list[Row] | None:
    """The rows of many messages (of many sessions) that msgspec's typed decoder just made,
    encoded without a Python call a message (``map`` of the encoder); ``None`` when one has no
    id or no JSON form: ``decoded_delivery``, a session at a time, then names it."""
    try:
        bodies = list(map(_ENCODER.encode, messages))
    except (msgspec.EncodeError, TypeError, OverflowError):
        return None
    ids = list(map(_ID, messages))
    return None if not all(ids) else list(zip(ids, bodies, strict=True))


_ID: Final = operator.attrgetter("id")


def new_record_id() -> str:
    """A record's identity: made once, when the record's schema is created, and kept with it."""
    return uuid.uuid4().hex


def plan(delivery: Delivery, held: int, stored: Collection[str]) -> Sequence[Row] | None:
    """The ``(id, body)`` rows to add after the ``held`` seqs the record has; ``None`` for a gap.

    ``stored`` holds which of the batch's ids the record has already (for this session).
    ``RecordMismatch`` when the record's messages do not agree with the batch."""
    sid, first = delivery.session_id, delivery.first_seq
    if held < first - 1:
        return None
    rows = delivery.rows
    if len(rows) > 1 and len({message_id for message_id, _ in rows}) != len(rows):
        raise RecordMismatch(sid, f"a batch from seq {first} repeats a message id")
    if held < first and not stored:  # the usual: none of it held, none of its ids stored
        return rows
    skip = min(held - first + 1, len(rows))
    for offset, (message_id, _) in enumerate(rows[:skip]):
        if message_id not in stored:
            raise RecordMismatch(
                sid, f"it holds seq {held}, but not message {message_id!r} (seq {first + offset})"
            )
    fresh = rows[skip:]
    for offset, (message_id, _) in enumerate(fresh):
        if message_id in stored:
            raise RecordMismatch(
                sid, f"message {message_id!r} (seq {first + skip + offset}) is stored at another seq"
            )
    return fresh


def last_seq(delivery: Delivery) -> int:
    """The seq of the batch's last message (``first_seq - 1`` for an empty batch)."""
    return delivery.first_seq + len(delivery.rows) - 1


def header_state(delivery: Delivery, held: int) -> SessionState:
    """The header to store after the delivery: the batch's fields, the seq never going back."""
    state = delivery.state
    seq = max(held, delivery.first_seq + len(delivery.rows) - 1, state.seq or 0)
    if seq == state.seq and not state.messages:  # the usual (the worker's): no copy to make
        return state
    return msgspec.structs.replace(state, messages=[], seq=seq)


def ids_of(deliveries: Sequence[Delivery]) -> dict[SessionId, list[str]]:
    """The message ids of each session's batch, to ask the record which it holds already."""
    return {d.session_id: [message_id for message_id, _ in d.rows] for d in deliveries}


def in_key_order(deliveries: Sequence[Delivery]) -> tuple[list[Delivery], list[str]]:
    """The batches in order of their session ids' text (a record's keys), and those keys: a
    record writes them in its B-trees' order, not at random (SQLite, PostgreSQL)."""
    keyed = sorted([(_key_of(d.session_id), d) for d in deliveries], key=_FIRST)
    return [d for _, d in keyed], [key for key, _ in keyed]


_FIRST: Final = operator.itemgetter(0)  # a sort key in C, not a Python call per batch
# A session id's text, memoised as the worker's keys are (``keys``): ``uuid.UUID.__str__``
# formats it in Python, several times the cost of the lookup, for the same sessions every pass.
_key_of: Final = functools.lru_cache(maxsize=65536)(str)
