"""Raw access to what an adapter stored, beside the adapter: to write hostile rows and read the JSON.

``put`` writes a header and message bodies exactly as given (bad JSON, a wrong shape, version 99, an
id that is not a UUID), the way a person or another program could; ``document`` reads a session back
as the seed's whole JSON document, the way another language would, without the adapter.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Protocol

import psycopg
from psycopg import sql


class Raw(Protocol):
    splits_messages: bool
    """Whether messages are stored apart (so one bad body is reported by its position)."""

    def put(self, sid: str, header: bytes, bodies: Sequence[bytes] = ()) -> None: ...

    def document(self, sid: str) -> bytes: ...

    def count(self, sid: str) -> int: ...

    def close(self) -> None: ...


def splice(header: bytes, bodies: Sequence[bytes]) -> bytes:
    """The whole document: ``messages`` added to the header object, or the header as it is."""
    if not header.rstrip().endswith(b"}") or header.strip() == b"{}":
        return header
    return header.rstrip()[:-1] + b',"messages":[' + b",".join(bodies) + b"]}"


class RawSQLite:
    splits_messages = True

    def __init__(self, path: Path) -> None:
        self.connection = sqlite3.connect(path, isolation_level=None)

    def put(self, sid: str, header: bytes, bodies: Sequence[bytes] = ()) -> None:
        c = self.connection
        c.execute("BEGIN IMMEDIATE")
        c.execute("DELETE FROM messages WHERE session_id = ?", (sid,))
        c.execute("DELETE FROM sessions WHERE id = ?", (sid,))
        c.execute("INSERT INTO sessions VALUES (?, 1, 0, NULL, ?)", (sid, header.decode()))
        rows = [(sid, i, f"raw-{i}", body.decode()) for i, body in enumerate(bodies)]
        c.executemany(
            "INSERT INTO messages (session_id, position, message_id, body) VALUES (?, ?, ?, ?)", rows
        )
        c.execute("COMMIT")

    def document(self, sid: str) -> bytes:
        (header,) = self.connection.execute("SELECT header FROM sessions WHERE id = ?", (sid,)).fetchone()
        query = "SELECT body FROM messages WHERE session_id = ? ORDER BY position"
        bodies = [body.encode() for (body,) in self.connection.execute(query, (sid,))]
        return splice(header.encode(), bodies)

    def count(self, sid: str) -> int:
        query = "SELECT count(*) FROM messages WHERE session_id = ?"
        return int(self.connection.execute(query, (sid,)).fetchone()[0])

    def close(self) -> None:
        self.connection.close()


class RawPostgres:
    splits_messages = True

    def __init__(self, dsn: str, schema: str) -> None:
        self.connection = psycopg.connect(dsn, autocommit=True)
        self.schema = sql.Identifier(schema)

    def _q(self, text: str) -> sql.Composed:
        return sql.SQL(text).format(s=self.schema)

    def put(self, sid: str, header: bytes, bodies: Sequence[bytes] = ()) -> None:
        with self.connection.transaction():
            self.connection.execute(self._q("DELETE FROM {s}.sessions WHERE id = %s"), (sid,))
            self.connection.execute(
                self._q("INSERT INTO {s}.sessions VALUES (%s, 1, 0, NULL, %s)"), (sid, header.decode())
            )
            for i, body in enumerate(bodies):
                self.connection.execute(
                    self._q(
                        "INSERT INTO {s}.messages (session_id, position, message_id, body)"
                        " VALUES (%s, %s, %s, %s)"
                    ),
                    (sid, i, f"raw-{i}".encode(), body.decode()),
                )

    def document(self, sid: str) -> bytes:
        row: Any = self.connection.execute(
            self._q("SELECT header FROM {s}.sessions WHERE id = %s"), (sid,)
        ).fetchone()
        query = self._q("SELECT body FROM {s}.messages WHERE session_id = %s ORDER BY position")
        bodies = [body.encode() for (body,) in self.connection.execute(query, (sid,))]
        return splice(row[0].encode(), bodies)

    def count(self, sid: str) -> int:
        query = self._q("SELECT count(*) FROM {s}.messages WHERE session_id = %s")
        row: Any = self.connection.execute(query, (sid,)).fetchone()
        return int(row[0])

    def close(self) -> None:
        self.connection.close()


class RawDirectory:
    splits_messages = False

    def __init__(self, path: Path) -> None:
        self.path = path

    def put(self, sid: str, header: bytes, bodies: Sequence[bytes] = ()) -> None:
        (self.path / f"{sid}.json").write_bytes(splice(header, bodies))

    def document(self, sid: str) -> bytes:
        return (self.path / f"{sid}.json").read_bytes()

    def count(self, sid: str) -> int:
        return len(json.loads(self.document(sid)).get("messages", []))

    def close(self) -> None:
        pass
