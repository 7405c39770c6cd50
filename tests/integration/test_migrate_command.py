"""``redis-sessions migrate``: every stored session, in Redis and in the backing store, brought to
the active schema version in place; run again, it finds nothing left to do. Version 2 is the one
``test_migrations`` makes inside ``migrations.using``."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest
from click.testing import CliRunner

from redis_sessions import AgentMessage, SchemaVersionError, SessionState, SessionStore
from redis_sessions.cli import main
from redis_sessions.keys import session_keys
from redis_sessions.migrate import upgrade_redis
from redis_sessions.migrations import Schema, using
from redis_sessions.persistence import SQLiteAdapter
from tests.integration.test_migrations import V2, old_session
from tests.support import Backend, messages_of

pytestmark = pytest.mark.parametrize(
    "backend",
    [
        pytest.param("real", marks=pytest.mark.real),
        pytest.param("cluster", marks=[pytest.mark.real, pytest.mark.cluster]),
    ],
    indirect=True,
)


def test_migrate_upgrades_both_tiers_and_is_resumable(backend: Backend, tmp_path: Path) -> None:
    assert backend.url is not None
    opener = SessionStore.from_cluster if backend.cluster else SessionStore.from_url
    database = tmp_path / "record.db"
    with opener(backend.url, prefix=backend.prefix) as store, SQLiteAdapter(database) as adapter:
        in_redis = [old_session(store) for _ in range(5)]
        in_record = [f"{i:08x}-0000-4000-8000-000000000000" for i in range(3)]
        for sid in in_record:
            adapter.save_session(sid, SessionState(metadata={"user": "ada"}, messages=messages_of(2)))
    command = [
        "--url",
        backend.url,
        "--prefix",
        backend.prefix,
        *(["--cluster"] if backend.cluster else []),
        "migrate",
        "--backing",
        f"sqlite://{database}",
    ]

    with using(V2):
        first = CliRunner().invoke(main, command)
        assert first.exit_code == 0, first.output
        assert "Redis: 5 sessions, 5 upgraded, 0 failed" in first.output
        assert "backing store: 3 sessions, 3 upgraded, 0 failed" in first.output
        again = CliRunner().invoke(main, command)  # resumable: what is done is not done again
        assert again.exit_code == 0, again.output
        assert "Redis: 5 sessions, 0 upgraded" in again.output
        assert "backing store: 3 sessions, 0 upgraded" in again.output

    for sid in in_redis:
        assert backend.raw.hget(session_keys(backend.prefix, sid).meta, "schema_version") == b"2"
    # Stored as version 2 now: readable by a version 2 that has no upgrade steps at all.
    with using(Schema(2, {})), SQLiteAdapter(database) as adapter:
        for sid in in_record:
            state = adapter.load_session(sid)
            assert state is not None
            assert state.metadata == {"owner": "ada"}
            assert [m.text for m in state.messages] == ["[v1] m 0", "[v1] m 1"]


def test_a_newer_version_is_reported_and_left_alone(backend: Backend, tmp_path: Path) -> None:
    assert backend.url is not None
    opener = SessionStore.from_cluster if backend.cluster else SessionStore.from_url
    three = Schema(3, {1: V2.upgrades[1], 2: V2.upgrades[1]})
    with using(three), opener(backend.url, prefix=backend.prefix) as store:  # using first: the store takes it
        newer = old_session(store)
    command = ["--url", backend.url, "--prefix", backend.prefix, *(["--cluster"] if backend.cluster else [])]
    command.append("migrate")
    with using(V2):
        result = CliRunner().invoke(main, command)
    assert result.exit_code == 1
    assert "1 failed" in result.output
    assert str(newer) in result.output
    assert backend.raw.hget(session_keys(backend.prefix, newer).meta, "schema_version") == b"3"


def test_appends_during_a_migration_are_not_lost(backend: Backend) -> None:
    # Version 1 keeps appending while version 2 migrates: what version 1 was told it stored is
    # there afterwards (its appends are refused, not lost, once a session is upgraded).
    assert backend.url is not None
    opener = SessionStore.from_cluster if backend.cluster else SessionStore.from_url
    stop, acknowledged = threading.Event(), []
    with opener(backend.url, prefix=backend.prefix) as old:
        sids = [old_session(old) for _ in range(5)]

        def keep_appending() -> None:
            i = 0
            while not stop.is_set():
                sid = sids[i % len(sids)]
                message = AgentMessage.user(f"during {i}", id=f"during-{i}")
                try:
                    old.append(sid, message)
                    acknowledged.append((sid, message.id))
                except SchemaVersionError:
                    pass  # upgraded already: version 1 may not write to it
                i += 1

        writer = threading.Thread(target=keep_appending)
        writer.start()
        try:
            with using(V2), opener(backend.url, prefix=backend.prefix, cache_messages=0) as new:
                deadline = time.monotonic() + 30
                while (result := upgrade_redis(new)).failed or result.upgraded:
                    assert time.monotonic() < deadline, result
                stored = {sid: {m.id for m in new.messages(sid)} for sid in sids}
        finally:
            stop.set()
            writer.join(timeout=30)
    assert acknowledged, "the writer should have appended during the migration"
    missing = [(sid, mid) for sid, mid in acknowledged if mid not in stored[sid]]
    assert not missing, missing[:5]
