"""The async adapters: each call of a synchronous adapter runs in a worker thread.

One wrapper serves all three back ends, so there is one implementation of each to test and keep
right, not a hand-written async twin of every SQL path. The cost is a thread hop per call, small
beside a database round trip or an fsync; PostgreSQL's pool bounds the connections either way.
A native ``psycopg_pool.AsyncConnectionPool`` would pay off only with hundreds of calls in flight at
once, which a write-behind of batched appends does not make.
"""

from __future__ import annotations

import asyncio
import itertools
import os
from collections.abc import AsyncIterator, Iterator, Sequence
from types import TracebackType
from typing import TYPE_CHECKING, Final, Generic, Literal, Self, TypeVar

from ..models import AgentMessage, SessionId, SessionState
from ._delivery import Delivered, Delivery
from .directory import DirectoryAdapter
from .postgres import PostgresAdapter
from .sqlite import SQLiteAdapter

if TYPE_CHECKING:
    from . import PersistenceAdapter

__all__ = ["AsyncDirectoryAdapter", "AsyncPostgresAdapter", "AsyncSQLiteAdapter", "ThreadedAdapter"]

_CHUNK: Final = 500  # ids fetched per thread hop by list_sessions

A = TypeVar("A", bound="PersistenceAdapter")


def _take(ids: Iterator[SessionId], n: int) -> tuple[list[SessionId], BaseException | None]:
    """Up to ``n`` ids, and the error that stopped the iterator early (so the ids before it count)."""
    chunk: list[SessionId] = []
    try:
        chunk.extend(itertools.islice(ids, n))
    except Exception as exc:
        return chunk, exc
    return chunk, None


class ThreadedAdapter(Generic[A]):
    """An ``AsyncPersistenceAdapter`` running the calls of the synchronous adapter ``sync`` in threads.

    Safe because every synchronous adapter here is thread-safe. Wrap your own adapter the same way.
    """

    def __init__(self, adapter: A) -> None:
        self.sync = adapter

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.sync!r})"

    async def save_session(self, session_id: SessionId | str, state: SessionState) -> None:
        """See ``PersistenceAdapter.save_session``."""
        await asyncio.to_thread(self.sync.save_session, session_id, state)

    async def load_session(self, session_id: SessionId | str) -> SessionState | None:
        """See ``PersistenceAdapter.load_session``."""
        return await asyncio.to_thread(self.sync.load_session, session_id)

    async def list_sessions(self) -> AsyncIterator[SessionId]:
        """See ``PersistenceAdapter.list_sessions``; ids come a chunk per thread hop."""
        ids = iter(self.sync.list_sessions())
        while True:
            chunk, error = await asyncio.to_thread(_take, ids, _CHUNK)
            for sid in chunk:
                yield sid
            if error is not None:
                raise error
            if len(chunk) < _CHUNK:
                return

    async def delete_session(self, session_id: SessionId | str) -> bool:
        """See ``PersistenceAdapter.delete_session``."""
        return await asyncio.to_thread(self.sync.delete_session, session_id)

    async def append_messages(
        self,
        session_id: SessionId | str,
        messages: Sequence[AgentMessage],
        *,
        state: SessionState | None = None,
    ) -> int:
        """See ``PersistenceAdapter.append_messages`` (the messages are copied before the hop)."""
        batch = list(messages)
        return await asyncio.to_thread(self.sync.append_messages, session_id, batch, state=state)

    @property
    def record_id(self) -> str:
        """The synchronous adapter's record identity."""
        return self.sync.record_id

    async def deliver(self, deliveries: Sequence[Delivery]) -> dict[SessionId, Delivered]:
        """See ``PersistenceAdapter.deliver``."""
        return await asyncio.to_thread(self.sync.deliver, list(deliveries))

    async def seqs(self, session_ids: Sequence[SessionId]) -> dict[SessionId, int]:
        """See ``PersistenceAdapter.seqs``."""
        return await asyncio.to_thread(self.sync.seqs, list(session_ids))

    async def aclose(self) -> None:
        """Close the synchronous adapter."""
        await asyncio.to_thread(self.sync.close)

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.aclose()


class AsyncSQLiteAdapter(ThreadedAdapter[SQLiteAdapter]):
    """``SQLiteAdapter`` for asyncio (opening the file happens here, synchronously)."""

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        timeout: float = 30.0,
        synchronous: Literal["FULL", "NORMAL"] = "FULL",
    ) -> None:
        super().__init__(SQLiteAdapter(path, timeout=timeout, synchronous=synchronous))


class AsyncDirectoryAdapter(ThreadedAdapter[DirectoryAdapter]):
    """``DirectoryAdapter`` for asyncio."""

    def __init__(self, path: str | os.PathLike[str], *, fsync: bool = True) -> None:
        super().__init__(DirectoryAdapter(path, fsync=fsync))


class AsyncPostgresAdapter(ThreadedAdapter[PostgresAdapter]):
    """``PostgresAdapter`` for asyncio.

    The constructor connects and blocks until the pool has its first connection; in a running
    event loop, make it with ``await asyncio.to_thread(AsyncPostgresAdapter, dsn)``.
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
        adapter = PostgresAdapter(dsn, schema=schema, min_size=min_size, max_size=max_size, timeout=timeout)
        super().__init__(adapter)
