"""One SQLite file shared by threads and processes: connections, WAL, transactions, identity.

WAL mode lets readers run beside the writer, ``busy_timeout`` makes a writer wait for the lock
instead of failing, and each thread gets its own connection (a fresh one in a forked child, and once
the file at the path was replaced: an open connection would go on writing into the replaced file,
which nobody reads again). Every write is one ``BEGIN IMMEDIATE`` transaction, which takes the write
lock before it reads: a transaction that read first and then asked for the lock could fail with
"database is locked" whatever the timeout, when another writer committed in between.

The file's record identity is the row of its ``record`` table, made with its tables; it is the one
of the file first opened, and a write-behind delivery checks it is still the file's
(``check_identity``): a file replaced by another record is refused, not written to.
"""

from __future__ import annotations

import contextlib
import os
import random
import sqlite3
import threading
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Literal

from ..errors import BackingMismatch, InvalidOperation
from ..models import SessionId
from ._delivery import new_record_id
from ._rows import driver_errors

__all__ = ["SQLiteFile"]


class SQLiteFile:
    """Connections to the SQLite file at ``path`` whose tables ``schema`` creates (``;``-separated
    statements; ``:record`` is a fresh record id for the ``record`` table's one row); ``columns``
    (table, column, declaration) are added to a file whose tables were made without them."""

    def __init__(
        self,
        path: Path,
        schema: str,
        *,
        timeout: float,
        synchronous: Literal["FULL", "NORMAL"],
        columns: Sequence[tuple[str, str, str]] = (),
    ) -> None:
        self.path, self.schema, self.timeout, self.synchronous = path, schema, timeout, synchronous
        self.columns = columns
        self._local = threading.local()
        self._lock = threading.Lock()
        self._connections: list[sqlite3.Connection] = []
        self._closed = False
        self._tables_ready = -1  # the inode of the file whose tables exist
        self.record_id = ""
        self.connection()  # create the file and tables now, so a bad path fails here

    def connection(self) -> sqlite3.Connection:
        """This thread's connection (see the module's docstring for when it is a new one)."""
        if self._closed:
            raise InvalidOperation(f"SQLite file {str(self.path)!r} is closed")
        local = self._local
        if getattr(local, "pid", None) == os.getpid():
            if local.inode == _inode(self.path):
                connection: sqlite3.Connection = local.connection
                return connection
            with self._lock:
                self._connections.remove(local.connection)
            local.connection.close()
            local.pid = None
        with driver_errors("SQLite open", None, (sqlite3.Error,)):
            connection = sqlite3.connect(
                self.path, timeout=self.timeout, isolation_level=None, check_same_thread=False
            )
            try:
                inode = _inode(self.path)
                self._enable_wal(connection)
                connection.execute(f"PRAGMA synchronous = {self.synchronous}")
                connection.execute("PRAGMA foreign_keys = ON")
                with self._lock:
                    if self._tables_ready != inode:
                        connection.execute("BEGIN IMMEDIATE")
                        for statement in self.schema.split(";"):
                            connection.execute(statement, {"record": new_record_id()})
                        self._add_columns(connection)
                        connection.execute("COMMIT")
                        self._tables_ready = inode
                    if not self.record_id:  # the identity is the one of the file first opened
                        (self.record_id,) = connection.execute("SELECT id FROM record").fetchone()
                    self._connections.append(connection)
            except BaseException:
                connection.close()
                raise
        local.connection, local.pid, local.inode = connection, os.getpid(), inode
        return connection

    def _add_columns(self, connection: sqlite3.Connection) -> None:
        """The record's layout upgrade, in the transaction that makes the tables: each column of
        ``columns`` a table lacks (a file made by an older version) is added, NULL in old rows.
        Older versions keep working on the file: they name their columns, and leave it NULL."""
        for table, column, declaration in self.columns:
            have = {row[1] for row in connection.execute(f"PRAGMA table_info({table})")}
            if column not in have:
                connection.execute(f"ALTER TABLE {table} ADD COLUMN {column} {declaration}")

    def check_identity(self, connection: sqlite3.Connection) -> None:
        """Refuse to write behind into a file that is not the record first opened here."""
        row = connection.execute("SELECT id FROM record").fetchone()
        if row is None or row[0] != self.record_id:
            found = "no record" if row is None else row[0]
            raise BackingMismatch(f"SQLite file {str(self.path)!r}", found, self.record_id)

    def _enable_wal(self, connection: sqlite3.Connection) -> None:
        """Switch the file to WAL mode (once per file: the mode is stored in it).

        The switch needs the file to itself, and SQLite reports "database is locked" at once,
        without waiting for ``busy_timeout``, when another process has it open at that moment (as
        when several processes create the file together): retry with backoff until ``timeout``.
        """
        deadline = time.monotonic() + self.timeout
        delay = 0.001
        while True:
            try:
                (mode,) = connection.execute("PRAGMA journal_mode = WAL").fetchone()
                break
            except sqlite3.OperationalError as exc:
                if "locked" not in str(exc) or time.monotonic() + delay > deadline:
                    raise
            time.sleep(delay * random.uniform(0.5, 1.5))
            delay = min(delay * 2, 0.1)
        if str(mode).lower() != "wal":
            raise sqlite3.OperationalError(
                f"journal_mode is {mode!r}, not 'wal': WAL needs a local file system"
            )

    @contextlib.contextmanager
    def transaction(
        self, operation: str, sid: SessionId | None, *, write: bool
    ) -> Iterator[sqlite3.Connection]:
        """One transaction: ``BEGIN IMMEDIATE`` for writes (the lock first), a snapshot for reads."""
        with driver_errors(f"SQLite {operation}", sid, (sqlite3.Error,)):
            connection = self.connection()
            connection.execute("BEGIN IMMEDIATE" if write else "BEGIN")
            try:
                yield connection
            except BaseException:
                if connection.in_transaction:
                    connection.execute("ROLLBACK")
                raise
            connection.execute("COMMIT")

    def close(self) -> None:
        """Close every thread's connection; the file cannot be used afterwards."""
        with self._lock:
            self._closed = True
            connections, self._connections = self._connections, []
        for connection in connections:
            connection.close()


def _inode(path: Path) -> int:
    try:
        return os.stat(path).st_ino
    except FileNotFoundError:
        return -1
