"""``PostgresAdapter``: sessions in PostgreSQL through psycopg 3 and its connection pool.

An optional extra: ``pip install 'redis-sessions[postgres]'`` (``psycopg[binary]``, ``psycopg-pool``).
psycopg is imported when an adapter is made, so the rest of the package works without it.

The tables, in their own schema (``redis_sessions`` by default), created if absent::

    sessions  id text PRIMARY KEY           the session id, canonical UUID text
              schema_version integer        copies of the header's fields, for queries only
              seq bigint
              updated_at timestamptz
              header text                   the SessionState JSON without "messages" (what is read)
    messages  session_id text               -> sessions.id, ON DELETE CASCADE
              position bigint               0, 1, 2... the session's order; PRIMARY KEY (session_id, position)
              message_id bytea              UNIQUE (session_id, message_id): appends are idempotent
              body text                     the AgentMessage JSON, byte for byte as encoded
              tokens bigint                 its token count, as the writing store counted it (NULL:
                                            none; added to tables made before it, on start)
    record    id text                       this record's identity (one row, made with the tables)

JSON is kept as ``text``, not ``jsonb``: ``jsonb`` reorders keys and refuses ``\\u0000``, which a
message may hold; ``body::jsonb`` still queries it. ``message_id`` is the id's UTF-8 bytes because
PostgreSQL text cannot hold NUL, which a message id may contain (the readable id is in ``body``).

Writers of one session serialise on its ``sessions`` row (``SELECT ... FOR UPDATE``), so concurrent
appends from many processes keep every message once, in one order. Tables are created under a
transaction-scoped advisory lock: several processes starting at once do not race on the DDL.
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import Iterator, Sequence
from types import TracebackType
from typing import TYPE_CHECKING, Any, Final, Self

from ..errors import InvalidArgument
from ..keys import session_id as check_id
from ..models import AgentMessage, SessionId, SessionState
from ._delivery import Delivered, Delivery, new_record_id
from ._pg_deliver import deliver, utc
from ._pg_sql import STATEMENTS
from ._rows import (
    Header,
    appending,
    decode_header,
    decode_stored,
    driver_errors,
    encode_header,
    header_after_append,
    refuse_newer,
    snapshot,
    stored_id,
)

if TYPE_CHECKING:
    import psycopg
    import psycopg.sql
    import psycopg_pool

__all__ = ["PostgresAdapter"]

_PAGE: Final = 1000  # ids per query of list_sessions
_IDENTIFIER: Final = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,62}\Z")


def _driver() -> tuple[Any, Any]:
    """psycopg and psycopg_pool, or an ``ImportError`` that says which extra to install."""
    try:
        import psycopg
        import psycopg.sql
        import psycopg_pool
    except ImportError as exc:
        raise ImportError(
            "PostgresAdapter needs psycopg 3 and psycopg-pool: pip install 'redis-sessions[postgres]'"
        ) from exc
    return psycopg, psycopg_pool


class PostgresAdapter:
    """A ``PersistenceAdapter`` on PostgreSQL; thread-safe (a pool of ``min_size..max_size`` connections).

    ``dsn`` is a libpq connection string or URL. ``schema`` holds the two tables: tables named
    ``sessions`` and ``messages`` would likely clash in ``public``. ``timeout`` bounds the wait for a
    pooled connection (and for the first one, at construction) in seconds.
    """

    def __init__(
        self,
        dsn: str,
        *,
        schema: str = "redis_sessions",
        min_size: int = 1,
        max_size: int = 10,
        timeout: float = 30.0,
    ) -> None:
        driver, pools = _driver()
        if not isinstance(schema, str) or not _IDENTIFIER.match(schema):
            raise InvalidArgument(
                f"schema must be 1-63 characters of [A-Za-z0-9_], not a digit first: {schema!r}"
            )
        self.schema = schema
        self._errors: tuple[type[BaseException], ...] = (driver.Error,)
        name = driver.sql.Identifier(schema)
        self._sql: dict[str, psycopg.sql.Composed] = {
            key: driver.sql.SQL(text).format(s=name) for key, text in STATEMENTS.items()
        }
        self._pool: psycopg_pool.ConnectionPool[Any] = pools.ConnectionPool(
            dsn, min_size=min_size, max_size=max_size, timeout=timeout, open=False, name=f"rs-{schema}"
        )
        try:
            with driver_errors("PostgreSQL connect", None, self._errors):
                self._pool.open(wait=True, timeout=timeout)
                self._create_tables()
        except BaseException:
            self._pool.close()
            raise

    def __repr__(self) -> str:
        return f"PostgresAdapter(schema={self.schema!r})"

    def _create_tables(self) -> None:
        with self._pool.connection() as connection:
            found = connection.execute(
                "SELECT count(*) FROM pg_catalog.pg_tables"
                " WHERE schemaname = %s AND tablename IN ('sessions', 'messages', 'record')",
                (self.schema,),
            ).fetchone()
            missing = connection.execute(self._sql["missing_columns"], (self.schema,)).fetchone()
            # No DDL once they exist as this version makes them: no CREATE privilege needed. Tables
            # an older version made get the columns added since (ALTER: the tables' owner, once).
            if found is None or found[0] != 3 or (missing is not None and missing[0]):
                lock = f"redis_sessions.ddl:{self.schema}"
                connection.execute("SELECT pg_advisory_xact_lock(hashtext(%s))", (lock,))
                connection.execute(self._sql["ddl"])
                connection.execute(self._sql["add_columns"])
                connection.execute(self._sql["new_record"], (new_record_id(),))
            row = connection.execute(self._sql["record_id"]).fetchone()
            assert row is not None, "the record table has its row (made with the tables)"
            self.record_id: str = row[0]

    @contextlib.contextmanager
    def _transaction(self, operation: str, sid: SessionId | None) -> Iterator[psycopg.Connection[Any]]:
        """A pooled connection in a transaction: committed on exit, rolled back on an exception."""
        with driver_errors(f"PostgreSQL {operation}", sid, self._errors), self._pool.connection() as conn:
            yield conn

    def _put(self, connection: psycopg.Connection[Any], statement: str, key: str, header: Header) -> None:
        values = (key, header.schema_version, header.seq, utc(header.updated_at), header.json.decode())
        connection.execute(self._sql[statement], values)

    def _insert(
        self,
        connection: psycopg.Connection[Any],
        key: str,
        first: int,
        rows: list[tuple[str, bytes]],
        counts: list[int | None] | None = None,
    ) -> int:
        if not rows:
            return 0
        params = {
            "sid": key,
            "first": first,
            "ids": [message_id.encode() for message_id, _ in rows],
            "bodies": [body.decode() for _, body in rows],
            "tokens": counts if counts is not None else [None] * len(rows),
        }
        return connection.execute(self._sql["insert"], params).rowcount

    def save_session(self, session_id: SessionId | str, state: SessionState) -> None:
        """Store ``state`` as the whole session, replacing what was stored under its id."""
        self._save(check_id(session_id), state, None)

    def replace_session(self, session_id: SessionId | str, state: SessionState, *, expected_seq: int) -> bool:
        """``save_session`` if the record holds the session at ``expected_seq`` (0: none), checked
        under the row lock the write takes; ``False``, nothing written, otherwise."""
        return self._save(check_id(session_id), state, expected_seq)

    def _save(self, sid: SessionId, state: SessionState, expected_seq: int | None) -> bool:
        key = str(sid)
        header, rows, counts = snapshot(sid, state)
        with self._transaction("save_session", sid) as connection:
            row = connection.execute(self._sql["lock_header"], (key,)).fetchone()
            refuse_newer(sid, None if row is None else row[0].encode())
            if expected_seq is not None and (0 if row is None else int(row[1])) != expected_seq:
                return False
            self._put(connection, "upsert", key, header)
            connection.execute(self._sql["delete_messages"], (key,))
            self._insert(connection, key, 0, rows, counts)
        return True

    def load_session(self, session_id: SessionId | str) -> SessionState | None:
        """The stored session, or ``None``; one statement, so header and messages are one snapshot."""
        sid = check_id(session_id)
        with self._transaction("load_session", sid) as connection:
            row = connection.execute(self._sql["load"], (str(sid),)).fetchone()
        if row is None:
            return None
        return decode_stored(sid, row[0].encode(), [body.encode() for body in row[1]], row[2])

    def list_sessions(self) -> Iterator[SessionId]:
        """Every stored session id in id order, a page per query (no transaction held between pages)."""
        after = ""
        where = f"PostgreSQL table {self.schema}.sessions"
        while True:
            with self._transaction("list_sessions", None) as connection:
                page = [raw for (raw,) in connection.execute(self._sql["page"], (after, _PAGE))]
            for raw in page:
                yield stored_id(raw, where)
            if len(page) < _PAGE:
                return
            after = page[-1]

    def delete_session(self, session_id: SessionId | str) -> bool:
        """Delete the session and its messages; ``True`` if it was stored."""
        sid = check_id(session_id)
        with self._transaction("delete_session", sid) as connection:
            connection.execute(self._sql["delete_messages"], (str(sid),))
            deleted = connection.execute(self._sql["delete_session"], (str(sid),)).rowcount
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
        with self._transaction("append_messages", sid) as connection:
            row = connection.execute(self._sql["lock_header"], (key,)).fetchone()
            if row is None:  # create it; a concurrent creator wins and we lock its row instead
                self._put(connection, "create", key, encode_header(sid, SessionState()))
                row = connection.execute(self._sql["lock_header"], (key,)).fetchone()
                assert row is not None
            stored = decode_header(sid, row[0].encode())
            position = connection.execute(self._sql["next_position"], (key,)).fetchone()
            count = 0 if position is None else int(position[0])
            added = self._insert(connection, key, count, rows)
            header = encode_header(sid, header_after_append(stored, count, state, added))
            self._put(connection, "upsert", key, header)
        return added

    def deliver(self, deliveries: Sequence[Delivery]) -> dict[SessionId, Delivered]:
        """Store write-behind batches of many sessions in one transaction, a few statements
        whatever its size (``_pg_deliver``); see ``PersistenceAdapter.deliver``."""
        if not deliveries:
            return {}
        where = f"PostgreSQL schema {self.schema!r}"
        with self._transaction("deliver", None) as connection:
            return deliver(connection, self._sql, where, self.record_id, deliveries)

    def seqs(self, session_ids: Sequence[SessionId]) -> dict[SessionId, int]:
        """The seq the record holds of each session (0 for one it does not hold)."""
        held = dict.fromkeys(session_ids, 0)
        with self._transaction("seqs", None) as connection:
            for key, seq in connection.execute(self._sql["seqs"], ([str(sid) for sid in session_ids],)):
                held[check_id(key)] = int(seq)
        return held

    def close(self) -> None:
        """Close the pool and its connections; the adapter cannot be used afterwards."""
        self._pool.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()
