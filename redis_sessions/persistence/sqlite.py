"""``SQLiteAdapter``: sessions in one SQLite file, the embedded default (standard library only).

The tables, created on first use::

    sessions  id TEXT PRIMARY KEY         the session id, canonical UUID text
              schema_version INTEGER      copies of the header's fields, for queries only
              seq INTEGER
              updated_at TEXT             ISO 8601
              header TEXT                 the SessionState JSON without "messages" (what is read)
    messages  session_id TEXT             -> sessions.id, ON DELETE CASCADE
              position INTEGER            0, 1, 2... the session's order; PRIMARY KEY (session_id, position)
              message_id TEXT             UNIQUE (session_id, message_id): appends are idempotent
              body TEXT                   the AgentMessage JSON
              tokens INTEGER              its token count, as the writing store counted it (NULL:
                                          none; a file made before the column gets it on open)
    record    id TEXT                     this record's identity (one row, made with the tables)

Any SQLite reader gets the seed's document back with
``json_set(header, '$.messages', json_group_array(json(body)))`` over the rows in ``position`` order.

Several processes and threads may share the file (``_sqlite_file``: WAL, a connection per thread,
``BEGIN IMMEDIATE`` for writes, reopening a file replaced underneath). WAL needs a local file
system (not NFS).
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
from collections.abc import Iterator, Sequence
from pathlib import Path
from types import TracebackType
from typing import Final, Literal, Self

from ..errors import InvalidArgument, RecordMismatch
from ..keys import session_id as check_id
from ..models import AgentMessage, SessionId, SessionState
from ._counts import delivered_counts
from ._delivery import NOTHING, Delivered, Delivery, header_state, in_key_order, last_seq, plan
from ._rows import (
    Header,
    appending,
    decode_header,
    decode_stored,
    encode_header,
    header_after_append,
    refuse_newer,
    snapshot,
    stored_id,
)
from ._sqlite_file import SQLiteFile
from ._sqlite_sql import (
    APPEND,
    BODIES,
    CHUNK,
    COLUMNS,
    HEADER,
    HEADER_SEQ,
    INSERT,
    NEXT_POSITION,
    SCHEMA,
    UPSERT,
    iso,
    stored_pairs,
)
from ._sqlite_sql import held as held_query

__all__ = ["SQLiteAdapter"]

_PAGE: Final = 1000  # ids per query of list_sessions


class SQLiteAdapter:
    """A ``PersistenceAdapter`` on an SQLite file (created with its tables if absent).

    ``timeout`` is how long a write waits for another connection's lock (seconds);
    ``synchronous="FULL"`` (the default) makes each commit survive a power cut, ``"NORMAL"`` only a
    crash of the process, for fewer fsyncs.
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        timeout: float = 30.0,
        synchronous: Literal["FULL", "NORMAL"] = "FULL",
    ) -> None:
        if str(path) in {"", ":memory:"}:
            raise InvalidArgument("SQLiteAdapter needs a file: each thread opens its own connection to it")
        if synchronous not in {"FULL", "NORMAL"}:
            raise InvalidArgument(f"synchronous must be 'FULL' or 'NORMAL', got {synchronous!r}")
        self.path = Path(path)
        self.timeout = timeout
        self.synchronous = synchronous
        self._file = SQLiteFile(self.path, SCHEMA, timeout=timeout, synchronous=synchronous, columns=COLUMNS)

    def __repr__(self) -> str:
        return f"SQLiteAdapter({str(self.path)!r})"

    @property
    def record_id(self) -> str:
        """This file's identity, made with its tables: a copy of the file keeps it, a new file
        (even at the same path) has another."""
        return self._file.record_id

    def _connection(self) -> sqlite3.Connection:
        """This thread's connection to the file."""
        return self._file.connection()

    @contextlib.contextmanager
    def _transaction(
        self, operation: str, sid: SessionId | None, *, write: bool
    ) -> Iterator[sqlite3.Connection]:
        """One transaction on this thread's connection (see ``SQLiteFile.transaction``)."""
        with self._file.transaction(operation, sid, write=write) as connection:
            yield connection

    @staticmethod
    def _put_header(connection: sqlite3.Connection, key: str, header: Header) -> None:
        values = (key, header.schema_version, header.seq, iso(header.updated_at), header.json.decode())
        connection.execute(UPSERT, values)

    def save_session(self, session_id: SessionId | str, state: SessionState) -> None:
        """Store ``state`` as the whole session, replacing what was stored under its id."""
        self._save(check_id(session_id), state, None)

    def replace_session(self, session_id: SessionId | str, state: SessionState, *, expected_seq: int) -> bool:
        """``save_session`` if the file holds the session at ``expected_seq`` (0: none), checked
        in the write's own transaction; ``False``, nothing written, otherwise."""
        return self._save(check_id(session_id), state, expected_seq)

    def _save(self, sid: SessionId, state: SessionState, expected_seq: int | None) -> bool:
        key = str(sid)
        header, rows, counts = snapshot(sid, state)
        with self._transaction("save_session", sid, write=True) as connection:
            row = connection.execute(HEADER_SEQ, (key,)).fetchone()
            refuse_newer(sid, None if row is None else row[0])
            if expected_seq is not None and (0 if row is None else int(row[1])) != expected_seq:
                return False
            self._put_header(connection, key, header)
            connection.execute("DELETE FROM messages WHERE session_id = ?", (key,))
            connection.executemany(
                INSERT,
                [
                    (key, i, mid, body.decode(), n)
                    for i, ((mid, body), n) in enumerate(zip(rows, counts, strict=True))
                ],
            )
        return True

    def load_session(self, session_id: SessionId | str) -> SessionState | None:
        """The stored session, or ``None``; header and messages are read from one snapshot."""
        sid = check_id(session_id)
        key = str(sid)
        with self._transaction("load_session", sid, write=False) as connection:
            row = connection.execute(HEADER, (key,)).fetchone()
            if row is None:
                return None
            stored = connection.execute(BODIES, (key,)).fetchall()
        return decode_stored(sid, row[0], [body for body, _ in stored], [n for _, n in stored])

    def list_sessions(self) -> Iterator[SessionId]:
        """Every stored session id, a page per short read (no transaction is held between pages)."""
        after = 0
        where = f"SQLite {str(self.path)!r} table sessions"
        while True:
            with self._transaction("list_sessions", None, write=False) as connection:
                page = connection.execute(
                    "SELECT rowid, id FROM sessions WHERE rowid > ? ORDER BY rowid LIMIT ?", (after, _PAGE)
                ).fetchall()
            for _, raw in page:
                yield stored_id(raw, where)
            if len(page) < _PAGE:
                return
            after = page[-1][0]

    def delete_session(self, session_id: SessionId | str) -> bool:
        """Delete the session and its messages; ``True`` if it was stored."""
        sid = check_id(session_id)
        with self._transaction("delete_session", sid, write=True) as connection:
            connection.execute("DELETE FROM messages WHERE session_id = ?", (str(sid),))
            deleted = connection.execute("DELETE FROM sessions WHERE id = ?", (str(sid),)).rowcount
        return deleted > 0

    def append_messages(
        self,
        session_id: SessionId | str,
        messages: Sequence[AgentMessage],
        *,
        state: SessionState | None = None,
    ) -> int:
        """Store the messages not stored yet after the stored ones; see ``PersistenceAdapter``."""
        sid, rows = appending(session_id, messages, state)  # a bad argument writes nothing
        key = str(sid)
        with self._transaction("append_messages", sid, write=True) as connection:
            row = connection.execute(HEADER, (key,)).fetchone()
            stored = SessionState() if row is None else decode_header(sid, row[0])
            (count,) = connection.execute(NEXT_POSITION, (key,)).fetchone()
            added = 0
            for message_id, body in rows:
                values = (key, count + added, message_id, body.decode(), None)
                added += connection.execute(APPEND, values).rowcount
            header = encode_header(sid, header_after_append(stored, count, state, added))
            self._put_header(connection, key, header)
        return added

    def deliver(self, deliveries: Sequence[Delivery]) -> dict[SessionId, Delivered]:
        """Store write-behind batches of many sessions in one transaction (one fsync), a statement
        per ``CHUNK`` sessions to look up what the record holds; see
        ``PersistenceAdapter.deliver``.

        The batches go in session id order: both tables' B-trees are keyed by the session id first,
        so the rows are written page after page instead of at random all over the file (with
        10,000 sessions the message inserts took a quarter of the time, the commit about half)."""
        deliveries, keys = in_key_order(deliveries)
        results: dict[SessionId, Delivered] = {}
        with self._transaction("deliver", None, write=True) as connection:
            self._file.check_identity(connection)
            held, stored = self._holds(connection, keys, deliveries)
            rows: list[tuple[str, int, str, str, int | None]] = []
            headers: list[tuple[str, int, int, str | None, str]] = []
            for delivery, key in zip(deliveries, keys, strict=True):
                sid = delivery.session_id
                have, count = held.get(key, (0, 0))
                # a bad state raises here, before any write: the transaction stores nothing
                h = encode_header(sid, header_state(delivery, have))
                try:
                    fresh = plan(delivery, have, stored.get(key, NOTHING))
                except RecordMismatch as exc:
                    results[sid] = exc
                    continue
                if fresh is None:  # a gap: not stored; the worker delivers again from ``have``
                    results[sid] = have
                    continue
                counts = delivered_counts(delivery.state.message_tokens, len(delivery.rows), len(fresh))
                rows += [
                    (key, count + i, mid, body.decode(), n)
                    for i, ((mid, body), n) in enumerate(zip(fresh, counts, strict=True))
                ]
                headers.append((key, h.schema_version, h.seq, iso(h.updated_at), h.json.decode()))
                results[sid] = max(have, last_seq(delivery))
            connection.executemany(INSERT, rows)
            connection.executemany(UPSERT, headers)
        return results

    @staticmethod
    def _holds(
        connection: sqlite3.Connection, keys: list[str], deliveries: Sequence[Delivery]
    ) -> tuple[dict[str, tuple[int, int]], dict[str, set[str]]]:
        """What the record holds of these sessions: (seq, next position) of each stored one, and
        which of the batches' message ids it has; a statement per ``CHUNK`` of each."""
        held: dict[str, tuple[int, int]] = {}
        for start in range(0, len(keys), CHUNK):
            chunk = keys[start : start + CHUNK]
            for key, seq, count in connection.execute(held_query(len(chunk)), chunk):
                held[key] = (int(seq), int(count))
        pairs = [x for d, key in zip(deliveries, keys, strict=True) for mid, _ in d.rows for x in (key, mid)]
        stored: dict[str, set[str]] = {}
        for start in range(0, len(pairs), 2 * CHUNK):
            chunk = pairs[start : start + 2 * CHUNK]
            for key, mid in connection.execute(stored_pairs(len(chunk) // 2), chunk):
                stored.setdefault(key, set()).add(mid)
        return held, stored

    def seqs(self, session_ids: Sequence[SessionId]) -> dict[SessionId, int]:
        """The seq the record holds of each session (0 for one it does not hold)."""
        held = dict.fromkeys(session_ids, 0)
        keys = [str(sid) for sid in session_ids]
        with self._transaction("seqs", None, write=False) as connection:
            for start in range(0, len(keys), _PAGE):
                chunk = keys[start : start + _PAGE]
                query = f"SELECT id, seq FROM sessions WHERE id IN ({','.join('?' * len(chunk))})"
                for key, seq in connection.execute(query, chunk):
                    held[check_id(key)] = int(seq)
        return held

    def close(self) -> None:
        """Close every thread's connection; the adapter cannot be used afterwards."""
        self._file.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()
