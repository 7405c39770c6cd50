"""``PostgresAdapter.deliver``: write-behind batches of many sessions in one transaction.

A batch of a thousand sessions is a handful of statements whatever its size: each column of the
batch is one array parameter (``unnest``), so the round trips do not grow with the sessions, and
the parameters go in PostgreSQL's binary format (``%b`` placeholders). In text format psycopg
escapes every element of every array with a regular expression, which was half of the worker's
time on PostgreSQL (3.0 of 7.0 s for 10,000 sessions); binary sends each body's bytes as they
are. Rows are locked in id order, so two deliverers never deadlock.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from ..errors import BackingMismatch, RecordMismatch
from ..models import SessionId, SessionState
from ._counts import delivered_counts
from ._delivery import NOTHING, Delivered, Delivery, header_state, in_key_order, last_seq, plan
from ._rows import encode_header

if TYPE_CHECKING:
    import psycopg
    import psycopg.sql

__all__ = ["deliver", "utc"]


def utc(moment: datetime | None) -> datetime | None:
    """``updated_at`` for the timestamptz column; a naive time is taken as UTC."""
    return moment if moment is None or moment.tzinfo else moment.replace(tzinfo=UTC)


def deliver(
    connection: psycopg.Connection[Any],
    sql: dict[str, psycopg.sql.Composed],
    where: str,
    record_id: str,
    deliveries: Sequence[Delivery],
) -> dict[SessionId, Delivered]:
    """Store ``deliveries`` in the open transaction of ``connection`` (the record of ``where``,
    whose id must be ``record_id``); see ``PersistenceAdapter.deliver``."""
    if not deliveries:
        return {}
    row = connection.execute(sql["record_id"]).fetchone()
    if row is None or row[0] != record_id:
        raise BackingMismatch(where, "no record" if row is None else row[0], record_id)
    deliveries, keys = in_key_order(deliveries)  # rows inserted in their indexes' order
    new = [key for d, key in zip(deliveries, keys, strict=True) if d.first_seq <= 1]
    if new:
        empty = encode_header(deliveries[0].session_id, SessionState())
        params = (empty.schema_version, empty.json.decode(), new)
        connection.execute(sql["create_many"], params)
    held = {key: int(seq) for key, seq in _rows(connection, sql["lock_held"], [keys])}
    counts = {key: int(count) for key, count in _rows(connection, sql["counts"], [keys])}
    # (session, message id) pairs: one lookup each in the UNIQUE (session_id, message_id) index;
    # asking for any of the ids in any of the sessions compared every stored row of the batch's
    # sessions with every id of the batch (quadratic: 10 s a batch at 1000 sessions).
    pairs = [(key, mid.encode()) for d, key in zip(deliveries, keys, strict=True) for mid, _ in d.rows]
    stored: dict[str, set[str]] = {}
    asked = [[key for key, _ in pairs], [mid for _, mid in pairs]]
    for key, mid in _rows(connection, sql["stored_ids"], asked):
        stored.setdefault(key, set()).add(bytes(mid).decode())
    messages: tuple[list[str], list[int], list[bytes], list[str], list[int | None]] = ([], [], [], [], [])
    headers: list[list[Any]] = [[], [], [], [], []]  # id, schema_version, seq, updated_at, header
    results: dict[SessionId, Delivered] = {}
    for delivery, key in zip(deliveries, keys, strict=True):
        sid = delivery.session_id
        have, count = held.get(key, 0), counts.get(key, 0)
        # a bad state raises here: the transaction (create_many included) is rolled back
        header = encode_header(sid, header_state(delivery, have))
        try:
            fresh = plan(delivery, have, stored.get(key, NOTHING))
        except RecordMismatch as exc:
            results[sid] = exc
            continue
        if fresh is None:  # a gap: not stored; the worker delivers again from ``have``
            results[sid] = have
            continue
        for i, (mid, body) in enumerate(fresh):
            messages[0].append(key)
            messages[1].append(count + i)
            messages[2].append(mid.encode())
            messages[3].append(body.decode())
        counted = delivery.state.message_tokens
        messages[4].extend(delivered_counts(counted, len(delivery.rows), len(fresh)))
        values = (key, header.schema_version, header.seq, utc(header.updated_at), header.json.decode())
        for column, value in zip(headers, values, strict=True):
            column.append(value)
        results[sid] = max(have, last_seq(delivery))
    if messages[0]:
        connection.execute(sql["insert_many"], messages)
    if headers[0]:
        connection.execute(sql["upsert_many"], headers)
    return results


def _rows(
    connection: psycopg.Connection[Any], statement: psycopg.sql.Composed, params: list[Any]
) -> list[Any]:
    return connection.execute(statement, params).fetchall()
