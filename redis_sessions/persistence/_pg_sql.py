"""The SQL of ``PostgresAdapter``, by name; ``{s}`` is the adapter's schema (an ``Identifier``).

The tables are described in ``postgres``'s docstring. The write-behind statements (``create_many``
to ``seqs``) serve ``deliver`` (``_pg_deliver``): many sessions per transaction, each looked up by
its own key, every column of the batch one array parameter, sent in binary (``%b``).
"""

from __future__ import annotations

from typing import Final

__all__ = ["STATEMENTS"]

STATEMENTS: Final = {
    "ddl": """
        CREATE SCHEMA IF NOT EXISTS {s};
        CREATE TABLE IF NOT EXISTS {s}.sessions (
            id text PRIMARY KEY,
            schema_version integer NOT NULL,
            seq bigint NOT NULL,
            updated_at timestamptz,
            header text NOT NULL
        );
        CREATE TABLE IF NOT EXISTS {s}.messages (
            session_id text NOT NULL REFERENCES {s}.sessions (id) ON DELETE CASCADE,
            position bigint NOT NULL,
            message_id bytea NOT NULL,
            body text NOT NULL,
            tokens bigint,
            PRIMARY KEY (session_id, position),
            UNIQUE (session_id, message_id)
        );
        CREATE TABLE IF NOT EXISTS {s}.record (id text NOT NULL)""",
    # The record's layout upgrade: columns added after the tables were first made (NULL in older
    # rows), looked for at every start and added, once, by the first adapter that finds one missing.
    "missing_columns": """
        SELECT count(*) FROM (VALUES ('messages', 'tokens')) AS c (table_name, column_name)
        WHERE NOT EXISTS (SELECT 1 FROM information_schema.columns AS i WHERE i.table_schema = %s
                          AND i.table_name = c.table_name AND i.column_name = c.column_name)""",
    "add_columns": "ALTER TABLE {s}.messages ADD COLUMN IF NOT EXISTS tokens bigint",
    "record_id": "SELECT id FROM {s}.record LIMIT 1",
    "new_record": "INSERT INTO {s}.record (id) SELECT %s WHERE NOT EXISTS (SELECT 1 FROM {s}.record)",
    "create_many": """
        INSERT INTO {s}.sessions (id, schema_version, seq, updated_at, header)
        SELECT t.id, %b, 0, NULL, %b FROM unnest(%b::text[]) AS t (id) ON CONFLICT (id) DO NOTHING""",
    "lock_held": "SELECT id, seq FROM {s}.sessions WHERE id = ANY(%b::text[]) ORDER BY id FOR UPDATE",
    # A statement of its own, after the lock: in a statement that waited for the lock, a subquery
    # would still see the positions as they were before the other writer committed.
    "counts": """
        SELECT session_id, MAX(position) + 1 FROM {s}.messages WHERE session_id = ANY(%b::text[])
        GROUP BY session_id""",
    "stored_ids": """
        SELECT m.session_id, m.message_id
        FROM unnest(%b::text[], %b::bytea[]) AS t (session_id, message_id)
        JOIN {s}.messages AS m ON m.session_id = t.session_id AND m.message_id = t.message_id""",
    "insert_many": """
        INSERT INTO {s}.messages (session_id, position, message_id, body, tokens)
        SELECT * FROM unnest(%b::text[], %b::bigint[], %b::bytea[], %b::text[], %b::bigint[])""",
    "upsert_many": """
        INSERT INTO {s}.sessions (id, schema_version, seq, updated_at, header)
        SELECT * FROM unnest(%b::text[], %b::integer[], %b::bigint[], %b::timestamptz[], %b::text[])
        ON CONFLICT (id) DO UPDATE SET schema_version = EXCLUDED.schema_version, seq = EXCLUDED.seq,
            updated_at = EXCLUDED.updated_at, header = EXCLUDED.header""",
    "seqs": "SELECT id, seq FROM {s}.sessions WHERE id = ANY(%s)",
    "lock_header": "SELECT header, seq FROM {s}.sessions WHERE id = %s FOR UPDATE",
    "load": """
        SELECT s.header, ARRAY(SELECT m.body FROM {s}.messages AS m WHERE m.session_id = s.id
                               ORDER BY m.position),
               ARRAY(SELECT m.tokens FROM {s}.messages AS m WHERE m.session_id = s.id
                     ORDER BY m.position)
        FROM {s}.sessions AS s WHERE s.id = %s""",
    "page": "SELECT id FROM {s}.sessions WHERE id > %s ORDER BY id LIMIT %s",
    "next_position": "SELECT COALESCE(MAX(position) + 1, 0) FROM {s}.messages WHERE session_id = %s",
    "create": """
        INSERT INTO {s}.sessions (id, schema_version, seq, updated_at, header) VALUES (%s, %s, %s, %s, %s)
        ON CONFLICT (id) DO NOTHING""",
    "upsert": """
        INSERT INTO {s}.sessions (id, schema_version, seq, updated_at, header) VALUES (%s, %s, %s, %s, %s)
        ON CONFLICT (id) DO UPDATE SET schema_version = EXCLUDED.schema_version, seq = EXCLUDED.seq,
            updated_at = EXCLUDED.updated_at, header = EXCLUDED.header""",
    # One round trip for a batch; ids already stored are skipped and positions stay contiguous
    # (the caller holds the session row's lock, so no other writer inserts meanwhile).
    "insert": """
        INSERT INTO {s}.messages (session_id, position, message_id, body, tokens)
        SELECT %(sid)s, %(first)s + row_number() OVER (ORDER BY t.ord) - 1, t.mid, t.body, t.tokens
        FROM unnest(%(ids)s::bytea[], %(bodies)s::text[], %(tokens)s::bigint[])
            WITH ORDINALITY AS t (mid, body, tokens, ord)
        WHERE NOT EXISTS (
            SELECT 1 FROM {s}.messages AS m WHERE m.session_id = %(sid)s AND m.message_id = t.mid)
        ON CONFLICT (session_id, message_id) DO NOTHING""",
    "delete_messages": "DELETE FROM {s}.messages WHERE session_id = %s",
    "delete_session": "DELETE FROM {s}.sessions WHERE id = %s",
}
