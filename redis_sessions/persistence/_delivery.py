"""Write-behind into a record, with no I/O: what a delivered batch adds, and when it is refused.

The worker hands an adapter ``Delivery`` batches: messages with the seqs Redis gave them
(``first_seq``, ``first_seq + 1``...). The record keeps, per session, the seq of the last message it
holds (its header's ``seq``). A batch is taken only where it continues what the record holds:

- it starts at most one past the record's seq (an overlap is a redelivery: the messages the record
  already holds must be the same ids, and are skipped);
- a batch that starts *above* it would leave a hole, so it is not stored: the adapter reports the
  seq it holds and the worker delivers again from there. Before this rule a record missing seqs
  101-103 took seq 104 at its next position, closing the hole silently and for good.

Whatever a record holds that Redis does not agree with (another message at a seq, a message of the
batch stored at another seq) is a ``RecordMismatch``: refused, never merged.
"""

from __future__ import annotations

import uuid
from collections.abc import Collection, Sequence
from typing import NamedTuple

import msgspec

from ..errors import RecordMismatch
from ..models import AgentMessage, SessionId, SessionState
from ._rows import unique_messages

__all__ = ["Delivered", "Delivery", "header_state", "ids_of", "last_seq", "new_record_id", "plan"]


class Delivery(NamedTuple):
    """Messages of one session with seqs ``first_seq``.. and the header to store with them."""

    session_id: SessionId
    first_seq: int
    messages: Sequence[AgentMessage]
    state: SessionState  # header fields; its seq is the seq of the last message


Delivered = int | RecordMismatch
"""Per session: the seq the record holds after the delivery (below the batch's last seq when the
batch would have left a gap, so was not stored), or why it was refused."""


def new_record_id() -> str:
    """A record's identity: made once, when the record's schema is created, and kept with it."""
    return uuid.uuid4().hex


def plan(delivery: Delivery, held: int, stored: Collection[str]) -> list[tuple[str, bytes]] | None:
    """The ``(id, body)`` rows to add after the ``held`` seqs the record has; ``None`` for a gap.

    ``stored`` holds which of the batch's ids the record has already (for this session).
    ``RecordMismatch`` when the record's messages do not agree with the batch."""
    sid, first = delivery.session_id, delivery.first_seq
    if held < first - 1:
        return None
    rows = unique_messages(sid, delivery.messages)
    if len(rows) != len(delivery.messages):
        raise RecordMismatch(sid, f"a batch from seq {first} repeats a message id")
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
    return delivery.first_seq + len(delivery.messages) - 1


def header_state(delivery: Delivery, held: int) -> SessionState:
    """The header to store after the delivery: the batch's fields, the seq never going back."""
    seq = max(held, last_seq(delivery), delivery.state.seq or 0)
    return msgspec.structs.replace(delivery.state, messages=[], seq=seq)


def ids_of(deliveries: Sequence[Delivery]) -> dict[SessionId, list[str]]:
    """The message ids of each session's batch, to ask the record which it holds already."""
    return {d.session_id: [m.id for m in d.messages] for d in deliveries}
