"""``redis-sessions migrate --rekey``: every message sealed under its session's current key, in Redis
and in the backing record; online (a message moved meanwhile is left, and reported, not undone) and
resumable (a second run changes nothing). Real server."""

from __future__ import annotations

import os
from pathlib import Path
from typing import cast

import pytest
import redis
from click.testing import CliRunner

from redis_sessions import AgentMessage, SessionStore
from redis_sessions import _rekey as rekey
from redis_sessions.cli import main
from redis_sessions.encryption import Encryption
from redis_sessions.keys import session_keys
from redis_sessions.migrate import rekey_backing, rekey_redis
from redis_sessions.persistence import SQLiteAdapter
from tests.integration.durable_support import flush
from tests.support import ids, unique_prefix

pytestmark = pytest.mark.real

K1, K2 = os.urandom(32), os.urandom(32)
OLD = Encryption({"k1": K1}, current="k1")
ROTATED = Encryption({"k1": K1, "k2": K2}, current="k2")  # what the CLI test names
ONLY_NEW = Encryption({"k2": K2}, current="k2")


def key_ids(client: redis.Redis, prefix: str, sid: object) -> list[bytes]:
    # A client without decode_responses: every item is bytes.
    items = cast(list[bytes], client.lrange(session_keys(prefix, sid).messages, 0, -1))
    return [item[3 : 3 + item[2]] if item[:1] == b"\xc1" else b"plain" for item in items]


def test_rekey_seals_plain_and_old_messages_under_the_current_key_and_a_rerun_is_a_no_op(
    redis_url: str,
) -> None:
    prefix, client = unique_prefix(), redis.Redis.from_url(redis_url)
    with (
        SessionStore(client, prefix=prefix) as plain,
        SessionStore(client, prefix=prefix, encryption=OLD) as old,
    ):
        sid = plain.create()
        plain.append(sid, AgentMessage.user("before encryption", id="p"))
        old.append(sid, AgentMessage.user("under k1", id="o"))
        with SessionStore(client, prefix=prefix, encryption=ROTATED) as store:
            store.append(sid, AgentMessage.user("under k2", id="n"))
            first = rekey_redis(store)
            assert (first.seen, first.upgraded, first.failed) == (1, 1, [])
            assert key_ids(client, prefix, sid) == [b"k2", b"k2", b"k2"]
            again = rekey_redis(store)
            assert (again.seen, again.upgraded, again.failed) == (1, 0, [])
        with SessionStore(client, prefix=prefix, encryption=ONLY_NEW, cache_messages=0) as reader:
            assert ids(reader.messages(sid)) == ["p", "o", "n"]
    client.close()


def test_a_message_moved_while_rekeying_is_left_as_it_is_and_reported(redis_url: str) -> None:
    prefix, client = unique_prefix(), redis.Redis.from_url(redis_url)
    with SessionStore(client, prefix=prefix, encryption=OLD) as old:
        sid = old.create()
        old.extend(sid, [AgentMessage.user("a", id="a"), AgentMessage.user("b", id="b")])
    with SessionStore(client, prefix=prefix, encryption=ROTATED, cache_messages=0) as store:
        core = store.transport.core
        found = store.transport.run(rekey.listed(core, sid))
        assert found is not None
        triples = rekey.resealed(core, sid, found[0] or b"", found[1])
        assert store.pop(sid) is not None  # "b" goes while the rekey holds its old bytes
        store.append(sid, AgentMessage.user("c", id="c"))  # and "c" takes its index
        assert store.transport.run(rekey.put(core, sid, triples)) == 1  # only "a" was still as read
        assert ids(store.messages(sid)) == ["a", "c"], "the pop and the append were not undone"
        assert key_ids(client, prefix, sid) == [b"k2", b"k2"]
    client.close()


def test_the_backing_record_is_rekeyed_and_still_reads_through(redis_url: str, tmp_path: Path) -> None:
    prefix, path = unique_prefix(), tmp_path / "record.sqlite3"
    database = SQLiteAdapter(path)
    with SessionStore.from_url(redis_url, prefix=prefix, backing=database, encryption=OLD) as store:
        sid = store.create()
        store.extend(sid, [AgentMessage.user("one", id="1"), AgentMessage.user("two", id="2")])
        flush(store)
        codec = store.transport.core.codec
    result = rekey_backing(database, ROTATED, codec)
    assert (result.seen, result.upgraded, result.failed) == (1, 1, [])
    assert rekey_backing(database, ROTATED, codec).upgraded == 0
    client = redis.Redis.from_url(redis_url)
    client.delete(*session_keys(prefix, sid))  # Redis lost it: read through the rekeyed record
    with SessionStore.from_url(redis_url, prefix=prefix, backing=database, encryption=ONLY_NEW) as reader:
        assert ids(reader.messages(sid)) == ["1", "2"]
    database.close()
    client.close()


def test_the_command_rekeys_both_tiers(redis_url: str, tmp_path: Path) -> None:
    prefix, path = unique_prefix(), tmp_path / "record.sqlite3"
    database = SQLiteAdapter(path)
    with SessionStore.from_url(redis_url, prefix=prefix, backing=database, encryption=OLD) as store:
        sid = store.create()
        store.append(sid, AgentMessage.user("one", id="1"))
        flush(store)
    database.close()
    base = ["--url", redis_url, "--prefix", prefix, "migrate", "--backing", f"sqlite://{path}"]
    refused = CliRunner().invoke(main, [*base, "--rekey"])
    assert refused.exit_code != 0
    assert "--encryption" in refused.output
    done = CliRunner().invoke(main, [*base, "--rekey", "--encryption", f"{__name__}:ROTATED"])
    assert done.exit_code == 0, done.output
    assert "Redis: 1 sessions, 1 rekeyed, 0 failed" in done.output
    assert "backing store: 1 sessions, 1 rekeyed, 0 failed" in done.output
    client = redis.Redis.from_url(redis_url)
    assert key_ids(client, prefix, sid) == [b"k2"]
    client.close()
