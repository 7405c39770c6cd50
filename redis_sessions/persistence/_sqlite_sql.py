"""The SQL of ``SQLiteAdapter``: its tables (described in ``sqlite``'s docstring) and statements.

The write-behind statements (``held``, ``stored_pairs``) serve ``deliver``: many sessions per
statement, each looked up by its own key.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Final

import msgspec

__all__ = [
    "APPEND",
    "BODIES",
    "CHUNK",
    "COLUMNS",
    "HEADER",
    "HEADER_SEQ",
    "INSERT",
    "NEXT_POSITION",
    "SCHEMA",
    "UPSERT",
    "held",
    "iso",
    "stored_pairs",
]

_ENCODER: Final = msgspec.json.Encoder()

# Columns added after the tables were first made: a file made before gets them when it is opened
# (``SQLiteFile``), empty (NULL) in its older rows. (table, column, declaration)
COLUMNS: Final = (("messages", "tokens", "INTEGER"),)

SCHEMA: Final = """
CREATE TABLE IF NOT EXISTS sessions (
    id TEXT PRIMARY KEY NOT NULL,
    schema_version INTEGER NOT NULL,
    seq INTEGER NOT NULL,
    updated_at TEXT,
    header TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS messages (
    session_id TEXT NOT NULL REFERENCES sessions (id) ON DELETE CASCADE DEFERRABLE INITIALLY DEFERRED,
    position INTEGER NOT NULL,
    message_id TEXT NOT NULL,
    body TEXT NOT NULL,
    tokens INTEGER,
    PRIMARY KEY (session_id, position),
    UNIQUE (session_id, message_id)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS record (id TEXT NOT NULL);
INSERT INTO record (id) SELECT :record WHERE NOT EXISTS (SELECT 1 FROM record)
"""

HEADER: Final = "SELECT CAST(header AS BLOB) FROM sessions WHERE id = ?"
HEADER_SEQ: Final = "SELECT CAST(header AS BLOB), seq FROM sessions WHERE id = ?"
BODIES: Final = "SELECT CAST(body AS BLOB), tokens FROM messages WHERE session_id = ? ORDER BY position"
NEXT_POSITION: Final = "SELECT COALESCE(MAX(position) + 1, 0) FROM messages WHERE session_id = ?"
UPSERT: Final = """
INSERT INTO sessions (id, schema_version, seq, updated_at, header) VALUES (?, ?, ?, ?, ?)
ON CONFLICT (id) DO UPDATE SET schema_version = excluded.schema_version, seq = excluded.seq,
    updated_at = excluded.updated_at, header = excluded.header
"""
INSERT: Final = "INSERT INTO messages (session_id, position, message_id, body, tokens) VALUES (?, ?, ?, ?, ?)"
APPEND: Final = INSERT + " ON CONFLICT (session_id, message_id) DO NOTHING"

# Write-behind (``deliver``): a statement per chunk of sessions, not per session. SQLite (before
# 3.32) allows 999 parameters a statement: CHUNK sessions, or CHUNK (session, message id) pairs.
CHUNK: Final = 400


def held(n: int) -> str:
    """The seq and next position of ``n`` sessions (those stored)."""
    return f"""
SELECT id, seq, (SELECT COALESCE(MAX(position) + 1, 0) FROM messages WHERE session_id = sessions.id)
FROM sessions WHERE id IN ({",".join("?" * n)})"""


def stored_pairs(n: int) -> str:
    """Which of ``n`` (session id, message id) pairs are stored: a lookup each in the unique index
    (``CROSS JOIN`` keeps that order; ``(a, b) IN (VALUES ...)`` scanned the whole table)."""
    return f"""
WITH asked (session_id, message_id) AS (VALUES {",".join(["(?, ?)"] * n)})
SELECT m.session_id, m.message_id FROM asked CROSS JOIN messages AS m
WHERE m.session_id = asked.session_id AND m.message_id = asked.message_id"""


def iso(moment: datetime | None) -> str | None:
    """``updated_at`` as the TEXT column keeps it (``datetime.isoformat``). A UTC time (every
    write-behind header's) is msgspec's RFC 3339 text with ``+00:00`` for its ``Z``: the same
    text, made in half the time (``datetime.isoformat`` formats each field with a printf)."""
    if moment is None:
        return None
    if moment.tzinfo is UTC:
        return _ENCODER.encode(moment)[1:-2].decode() + "+00:00"
    return moment.isoformat()
