"""``sync`` and ``migrate``'s argument checks and ``sync --once`` (``migrate`` itself is covered by
tests/integration/test_migrate_command.py). The global ``--cluster`` is accepted by both."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pytest
import redis
from click.testing import CliRunner

from redis_sessions import AgentMessage, SessionStore
from redis_sessions.cli import main
from redis_sessions.embedded import RedisServer
from redis_sessions.persistence import SQLiteAdapter
from tests.integration.durable_support import require_redis_server, wait_until
from tests.support import unique_prefix


@pytest.mark.real
def test_sync_once_delivers_pending_writes(redis_url: str, tmp_path: Path) -> None:
    prefix, database = unique_prefix(), tmp_path / "record.db"
    client = redis.Redis.from_url(redis_url)
    # The constructor starts no write-behind worker: the writes wait for `sync`.
    with SQLiteAdapter(database) as adapter, SessionStore(client, prefix=prefix, backing=adapter) as store:
        sid = store.create("m")
        store.extend(sid, [AgentMessage.user("one"), AgentMessage.assistant("two")])
        command = [
            "--url",
            redis_url,
            "--prefix",
            prefix,
            "sync",
            "--once",
            "--backing",
            f"sqlite://{database}",
        ]
        result = CliRunner().invoke(main, command)
        assert result.exit_code == 0, result.output
        assert "lag now 0 session(s), 0 message(s)" in result.output
        state = adapter.load_session(sid)
        assert state is not None
        assert [m.text for m in state.messages] == ["one", "two"]
        store.delete(sid)
    client.close()


@pytest.mark.parametrize("command", [["sync", "--backing", "sqlite:///x.db"], ["migrate"]])
def test_sync_and_migrate_need_a_url(command: list[str]) -> None:
    result = CliRunner().invoke(main, command, env={"REDIS_URL": ""})
    assert result.exit_code == 1
    assert "needs --url (or REDIS_URL)" in result.output


@pytest.mark.parametrize("command", [["sync", "--once"], ["migrate"]])
def test_a_bad_backing_url_is_one_line(command: list[str]) -> None:
    args = ["--url", "redis://127.0.0.1:1/0", *command, "--backing", "nosuch://where"]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 1
    assert len(result.output.splitlines()) == 1
    assert result.output.startswith("Error: ")


def test_the_global_cluster_flag_reaches_sync(closed_url: str) -> None:
    result = CliRunner().invoke(
        main, ["--url", closed_url, "--cluster", "sync", "--once", "--backing", "sqlite:///:memory:"]
    )
    assert result.exit_code == 1
    assert "Traceback" not in result.output
    assert len(result.output.splitlines()) == 1


@pytest.mark.real
def test_sync_with_another_record_is_one_line_and_rebind_moves_the_prefix(
    redis_url: str, tmp_path: Path
) -> None:
    prefix, old, new = unique_prefix(), tmp_path / "old.db", tmp_path / "new.db"
    client = redis.Redis.from_url(redis_url)
    base = ["--url", redis_url, "--prefix", prefix]
    with SQLiteAdapter(old) as adapter, SessionStore(client, prefix=prefix, backing=adapter) as store:
        sid = store.create("m")
        store.extend(sid, [AgentMessage.user("one"), AgentMessage.assistant("two")])
        assert (
            CliRunner().invoke(main, [*base, "sync", "--once", "--backing", f"sqlite://{old}"]).exit_code == 0
        )
        store.append(sid, AgentMessage.user("three"))  # pending for the old record

        refused = CliRunner().invoke(main, [*base, "sync", "--once", "--backing", f"sqlite://{new}"])
        assert refused.exit_code == 1
        assert len(refused.output.splitlines()) == 1
        assert "is bound to backing record" in refused.output

        moved = CliRunner().invoke(
            main, [*base, "rebind", "--from", f"sqlite://{old}", "--to", f"sqlite://{new}"]
        )
        assert moved.exit_code == 0, moved.output
        assert "1 session(s) copied, 1 rebound in Redis" in moved.output
        synced = CliRunner().invoke(main, [*base, "sync", "--once", "--backing", f"sqlite://{new}"])
        assert synced.exit_code == 0, synced.output
        with SQLiteAdapter(new) as target:
            state = target.load_session(sid)
        assert state is not None
        assert [m.text for m in state.messages] == ["one", "two", "three"]
        store.delete(sid)
    client.close()


@pytest.mark.real
@pytest.mark.slow
def test_sync_keeps_running_through_a_redis_restart(tmp_path: Path) -> None:
    """The worker thread of ``sync`` waits an outage out (each pass tries again); its lag line
    used to end the command at the first report during the outage ("Error: cannot reach Redis"),
    leaving the record behind until someone started it again (found by the tiered soak)."""
    require_redis_server()
    prefix, database, out = unique_prefix(), tmp_path / "record.db", tmp_path / "sync.log"
    aof = ["--appendonly", "yes", "--appendfsync", "always"]
    server = RedisServer(directory=tmp_path, extra_args=aof).start()
    try:
        with SQLiteAdapter(database) as adapter:
            with SessionStore.from_url(server.url, prefix=prefix, backing=adapter) as store:
                sid = store.create("m")
                store.append(sid, AgentMessage.user("before", id="before"))
                store.flush(timeout=30)  # binds the prefix, so the command starts at once
            command = [sys.executable, "-m", "redis_sessions", "--url", server.url, "--prefix", prefix]
            command += ["sync", "--backing", f"sqlite://{database}", "--report", "0.1"]
            with out.open("wb") as log:
                sync = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT)
            try:
                wait_until(lambda: b"lag" in out.read_bytes(), "the first lag line", timeout=30)
                server.stop()
                time.sleep(1.0)  # the outage: several lag lines fall in it
                server.start()  # same port and directory: the AOF replays
                assert sync.poll() is None, out.read_text()
                with SessionStore.from_url(server.url, prefix=prefix) as plain:
                    plain.append(sid, AgentMessage.user("after", id="after"))

                def delivered() -> bool:
                    state = adapter.load_session(sid)
                    return state is not None and [m.id for m in state.messages] == ["before", "after"]

                wait_until(delivered, "the command to deliver after the restart", timeout=30)
            finally:
                sync.terminate()
                code = sync.wait(30)
            assert code == 0, out.read_text()
    finally:
        server.stop()
