"""The token counts a record keeps beside its messages, with no I/O.

A store counts each message's tokens once, when it is appended (``token_counter=``), and Redis keeps
the counts beside the messages; write-behind carries them to the record (a ``Delivery``'s
``state.message_tokens``, one per message: ``None`` for a message stored before counting began),
which keeps each in its message's row (a nullable column: rows written before the record had it
have none). A read-through restores the stored counts, so what ``context()`` budgets does not
change with the counter of the store that reads; only messages without a count are counted by it.
"""

from __future__ import annotations

from collections.abc import Sequence

from ..models import SessionState

__all__ = ["delivered_counts", "kept_counts", "unique_counts"]

_LIMIT = 2**63  # what an INTEGER / bigint column holds


def _count(value: object) -> int | None:
    return value if type(value) is int and 0 <= value < _LIMIT else None


def unique_counts(state: SessionState) -> list[int | None]:
    """The token count of each message ``unique_messages`` keeps of ``state`` (the first of each
    id), from ``state.message_tokens``; ``None`` where it has none, or is not a count."""
    given = state.message_tokens
    if given is None or len(given) != len(state.messages):
        given = [None] * len(state.messages)
    seen: set[str] = set()
    out: list[int | None] = []
    for message, count in zip(state.messages, given, strict=True):
        if message.id not in seen:
            seen.add(message.id)
            out.append(_count(count))
    return out


def kept_counts(counts: Sequence[int | None], n: int) -> list[int | None] | None:
    """``message_tokens`` of ``n`` stored messages from their rows' counts: ``None`` when no row
    has one (written before the record kept counts, or never counted)."""
    if len(counts) != n or all(c is None for c in counts):
        return None
    return list(counts)


def delivered_counts(counts: Sequence[int | None] | None, n: int, fresh: int) -> list[int | None]:
    """The counts of the last ``fresh`` of a batch's ``n`` messages (the ones a record stores;
    the others it held already); ``None`` each when the batch carries none."""
    if counts is None or len(counts) != n:
        return [None] * fresh
    return [c if type(c) is int and 0 <= c < _LIMIT else None for c in counts[n - fresh :]]
