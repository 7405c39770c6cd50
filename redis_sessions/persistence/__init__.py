"""The durable tier: where sessions are kept for good, behind Redis (the cache).

A ``PersistenceAdapter`` stores ``SessionState`` documents under session ids, in the seed's JSON
form so that people and other languages can read them. Three come with the package:

- ``SQLiteAdapter(path)``: one SQLite file, standard library only; the embedded default.
- ``PostgresAdapter(dsn)``: PostgreSQL through psycopg 3 and its pool (the ``postgres`` extra).
- ``DirectoryAdapter(path)``: one ``<uuid>.json`` file per session.

Each has an asyncio twin (``AsyncSQLiteAdapter``...), which runs it in worker threads
(``ThreadedAdapter`` wraps any adapter the same way). Errors are the package's own: a document of
an unknown ``schema_version`` raises ``SchemaVersionError``; one that does not decode raises
``CorruptSession`` naming the session (and the message's position when one message is at fault);
a stored id that is not a UUID makes ``list_sessions`` raise ``PersistenceError`` naming it; a
database or file-system failure raises ``StoreError`` with the driver's error as its cause.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator, Sequence
from types import TracebackType
from typing import Protocol, Self, runtime_checkable

from ..errors import InvalidArgument
from ..models import AgentMessage, SessionId, SessionState
from ._delivery import Delivered, Delivery, Row, delivery
from ._threaded import AsyncDirectoryAdapter, AsyncPostgresAdapter, AsyncSQLiteAdapter, ThreadedAdapter
from .directory import DirectoryAdapter
from .postgres import PostgresAdapter
from .sqlite import SQLiteAdapter

__all__ = [
    "AsyncDirectoryAdapter",
    "AsyncPersistenceAdapter",
    "AsyncPostgresAdapter",
    "AsyncSQLiteAdapter",
    "Delivered",
    "Delivery",
    "DirectoryAdapter",
    "PersistenceAdapter",
    "PostgresAdapter",
    "Row",
    "SQLiteAdapter",
    "ThreadedAdapter",
    "adapter_from_url",
    "delivery",
]


@runtime_checkable
class PersistenceAdapter(Protocol):
    """Durable storage of sessions, keyed by session id (a ``uuid.UUID`` or its canonical string).

    Every method is safe to call from several threads, and several processes may share one store.
    """

    def save_session(self, session_id: SessionId | str, state: SessionState) -> None:
        """Store ``state`` as the whole session: it replaces what was stored under the id.

        A message id that appears twice is stored once, at its first place. A state whose
        ``schema_version`` is not this library's, or a session stored by a newer version, is
        refused (``SchemaVersionError``): stored data is never downgraded.
        """
        ...

    def replace_session(self, session_id: SessionId | str, state: SessionState, *, expected_seq: int) -> bool:
        """``save_session``, only if the record holds the session at ``expected_seq`` (0: holds
        none), checked in the same transaction (or under the same lock) as the write: ``False``,
        and nothing written, when a write-behind delivery or another writer moved it meanwhile.
        What rewrites a session it read (``migrate --rekey``) uses it, so it never drops what was
        delivered between its read and its write.
        """
        ...

    def load_session(self, session_id: SessionId | str) -> SessionState | None:
        """The stored session, or ``None`` if there is none.

        The version is checked before the rest is decoded: ``SchemaVersionError`` for one this
        code does not know, ``CorruptSession`` for what does not decode.
        """
        ...

    def list_sessions(self) -> Iterator[SessionId]:
        """The id of every stored session, in no promised order.

        Lazy and paged: sessions saved or deleted meanwhile may or may not be listed.
        """
        ...

    def delete_session(self, session_id: SessionId | str) -> bool:
        """Delete the session; ``True`` if one was stored."""
        ...

    def append_messages(
        self,
        session_id: SessionId | str,
        messages: Sequence[AgentMessage],
        *,
        state: SessionState | None = None,
    ) -> int:
        """Store ``messages`` after those already stored, in order, and return how many were new.

        Idempotent by message id, so a retried or overlapping batch (write-behind delivers at least
        once) stores nothing twice: an id already stored for the session is skipped and keeps its
        first position. With ``state``, its fields other than ``messages`` replace the stored ones,
        except ``seq``, which never goes backwards (the larger of the two is kept); without a
        ``seq`` to go by, each new message counts one. A session not stored yet is created (from
        ``state``, or empty). All of it is one atomic write.
        """
        ...

    @property
    def record_id(self) -> str:
        """This record's identity: made once with its schema (a row of its own table, a file of
        the directory) and kept with it. Write-behind binds a prefix, and each durable session, to
        one record id, so a worker of another record can never advance their bookkeeping."""
        ...

    def deliver(self, deliveries: Sequence[Delivery]) -> dict[SessionId, Delivered]:
        """Store write-behind batches (of many sessions, in one transaction where the store has
        them), each message at the seq Redis gave it; returns, per session, the seq the record
        holds afterwards. Each message's body is stored as the batch carries it: it was checked
        when the batch was made (``delivery``).

        A batch that would leave a gap (it starts above the record's seq + 1) is not stored: the
        seq the record holds is returned and the worker delivers from there. An overlap is a
        redelivery: what the record holds already must be the same messages, and is skipped.
        A session whose record disagrees with the batch gets a ``RecordMismatch`` as its result
        (the others are still stored).
        """
        ...

    def seqs(self, session_ids: Sequence[SessionId]) -> dict[SessionId, int]:
        """The seq the record holds of each session (0 for one it does not hold)."""
        ...

    def close(self) -> None:
        """Release connections; the adapter cannot be used afterwards."""
        ...

    def __enter__(self) -> Self: ...

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None: ...


@runtime_checkable
class AsyncPersistenceAdapter(Protocol):
    """``PersistenceAdapter`` for asyncio: the same methods as coroutines, ``aclose`` for ``close``."""

    async def save_session(self, session_id: SessionId | str, state: SessionState) -> None:
        """See ``PersistenceAdapter.save_session``."""
        ...

    async def load_session(self, session_id: SessionId | str) -> SessionState | None:
        """See ``PersistenceAdapter.load_session``."""
        ...

    def list_sessions(self) -> AsyncIterator[SessionId]:
        """See ``PersistenceAdapter.list_sessions`` (an async iterator: ``async for``)."""
        ...

    async def delete_session(self, session_id: SessionId | str) -> bool:
        """See ``PersistenceAdapter.delete_session``."""
        ...

    async def append_messages(
        self,
        session_id: SessionId | str,
        messages: Sequence[AgentMessage],
        *,
        state: SessionState | None = None,
    ) -> int:
        """See ``PersistenceAdapter.append_messages``."""
        ...

    @property
    def record_id(self) -> str:
        """See ``PersistenceAdapter.record_id``."""
        ...

    async def deliver(self, deliveries: Sequence[Delivery]) -> dict[SessionId, Delivered]:
        """See ``PersistenceAdapter.deliver``."""
        ...

    async def seqs(self, session_ids: Sequence[SessionId]) -> dict[SessionId, int]:
        """See ``PersistenceAdapter.seqs``."""
        ...

    async def aclose(self) -> None:
        """See ``PersistenceAdapter.close``."""
        ...

    async def __aenter__(self) -> Self: ...

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None: ...


def adapter_from_url(url: str) -> PersistenceAdapter:
    """An adapter named by a URL, as the command line takes it: ``sqlite:///path/to.db`` (or a
    path ending in ``.db``/``.sqlite``), ``postgresql://user@host/db``, or ``dir:///path``."""
    if url.startswith(("postgresql://", "postgres://")):
        return PostgresAdapter(url)
    if url.startswith("sqlite://"):
        return SQLiteAdapter(url.removeprefix("sqlite://"))
    if url.startswith("dir://"):
        return DirectoryAdapter(url.removeprefix("dir://"))
    if url.endswith((".db", ".sqlite", ".sqlite3")):
        return SQLiteAdapter(url)
    raise InvalidArgument(f"not a backing store URL (sqlite:///..., postgresql://..., dir:///...): {url!r}")


def _conforms(
    sqlite: SQLiteAdapter,
    postgres: PostgresAdapter,
    directory: DirectoryAdapter,
    threaded: ThreadedAdapter[SQLiteAdapter],
) -> tuple[PersistenceAdapter, PersistenceAdapter, PersistenceAdapter, AsyncPersistenceAdapter]:
    """Never called: mypy checks here that each class satisfies its protocol."""
    return sqlite, postgres, directory, threaded
