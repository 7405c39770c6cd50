"""Write-behind for a fleet (issue 18): many sessions delivered per round trip and per transaction,
dirty sessions found without SCAN, slot groups shared between workers, and a visible backlog."""

from __future__ import annotations

import logging
import uuid
from contextlib import ExitStack
from pathlib import Path

import pytest
import redis

from redis_sessions import AgentMessage, SessionStore
from redis_sessions._scripts import SCRIPTS
from redis_sessions.keys import SLOT_GROUPS, dirty_key, legacy_dirty_pattern, session_keys, slot, tokens_key
from redis_sessions.models import SCHEMA_VERSION
from redis_sessions.persistence import SQLiteAdapter
from redis_sessions.writebehind import SyncWorker
from tests.integration.durable_support import wait_until
from tests.support import ids, unique_prefix

pytestmark = pytest.mark.real

FLEET = 300


@pytest.fixture(params=["real", "cluster"])
def url(request: pytest.FixtureRequest) -> str:
    return str(request.getfixturevalue("redis_url" if request.param == "real" else "cluster_url"))


def opened(stack: ExitStack, url: str, prefix: str) -> SessionStore:
    """A plain store (no backing, so no worker of its own) on the server or cluster at ``url``."""
    if _is_cluster(url):
        return stack.enter_context(SessionStore.from_cluster(url, prefix=prefix))
    return stack.enter_context(SessionStore.from_url(url, prefix=prefix))


def _is_cluster(url: str) -> bool:
    with redis.Redis.from_url(url) as client:
        return bool(client.info("cluster").get("cluster_enabled"))


def calls(url: str, *commands: str) -> int:
    """How many times the server(s) ran these commands so far (INFO commandstats)."""
    nodes = [url]
    if _is_cluster(url):
        with redis.RedisCluster.from_url(url) as cluster:
            nodes = [f"redis://{n.host}:{n.port}" for n in cluster.get_primaries()]
    total = 0
    for node in nodes:
        with redis.Redis.from_url(node) as client:
            stats = client.info("commandstats")
            total += sum(int(stats.get(f"cmdstat_{c}", {}).get("calls", 0)) for c in commands)
    return total


def fleet(store: SessionStore, count: int) -> list[uuid.UUID]:
    """``count`` durable sessions with one message each (the store must have a backing store)."""
    sids = []
    for n in range(count):
        sid = store.create("m")
        store.append(sid, AgentMessage.user(f"hello {n}", id=f"m{n}"))
        sids.append(sid)
    return sids


def test_one_pass_delivers_a_fleet_in_a_few_round_trips_and_one_transaction_each(
    url: str, tmp_path: Path, stack: ExitStack
) -> None:
    prefix = unique_prefix()
    record = stack.enter_context(SQLiteAdapter(tmp_path / "record.db"))
    plain = opened(stack, url, prefix)
    writer = SessionStore(plain.client, prefix=prefix, backing=record)  # no worker of its own
    worker = SyncWorker(opened(stack, url, prefix), record)
    fleet(writer, 30)  # in every node's slots, most likely (a miss only costs a few calls more)
    worker.sync_once()  # the scripts are in the servers' caches now (a first call of each is EVAL)
    sids = fleet(writer, FLEET)
    scripts, scans = calls(url, "evalsha", "eval"), calls(url, "scan")
    assert worker.sync_once() == FLEET
    used = calls(url, "evalsha", "eval") - scripts
    # One server: a lease, a look at the indexes, then reads and marks for 200 sessions a call.
    # A cluster: reads and marks per slot (pipelined), so about two per session plus the looks.
    bound = 6 if not _is_cluster(url) else 2 * FLEET + 4
    assert used <= bound, f"{used} script calls for {FLEET} sessions"
    assert calls(url, "scan") == scans, "no SCAN"
    with SQLiteAdapter(tmp_path / "record.db") as check:
        held = check.seqs(sids)
    assert held == dict.fromkeys(sids, 1), "every session of the fleet is in the record"
    assert worker.lag() == (0, 0, 0.0)


def test_an_idle_pass_never_scans_the_keyspace(url: str, tmp_path: Path, stack: ExitStack) -> None:
    prefix = unique_prefix()
    record = stack.enter_context(SQLiteAdapter(tmp_path / "record.db"))
    worker = SyncWorker(opened(stack, url, prefix), record)
    worker.sync_once()  # binds and leases
    before = calls(url, "scan")
    for _ in range(5):
        assert worker.sync_once() == 0
    worker.lag()
    assert calls(url, "scan") == before, "pending() asks the known dirty indexes, it never SCANs"


def test_workers_split_the_slot_groups_and_a_dead_workers_groups_pass_on(
    redis_url: str, tmp_path: Path, stack: ExitStack
) -> None:
    prefix = unique_prefix()
    record = stack.enter_context(SQLiteAdapter(tmp_path / "record.db"))
    first = SyncWorker(opened(stack, redis_url, prefix), record, lease=0.5)
    second = SyncWorker(opened(stack, redis_url, prefix), record, lease=60)
    assert len(first.lease()) == SLOT_GROUPS, "alone, a worker takes every group"
    second.lease()
    first.lease()  # two live workers now: the first hands back what is over its share
    second.lease()
    assert sorted(first.groups + second.groups) == list(range(SLOT_GROUPS)), "no group twice, none lost"
    assert len(first.groups) == len(second.groups) == SLOT_GROUPS // 2
    taken = set(first.groups)
    # The first worker dies (stops renewing); once its lease runs out the second takes its groups.
    wait_until(lambda: len(second.lease()) == SLOT_GROUPS, "the dead worker's groups passed on", 10)
    assert set(second.groups) >= taken


def test_a_worker_delivers_only_its_groups_but_flush_delivers_everything(
    redis_url: str, tmp_path: Path, stack: ExitStack
) -> None:
    prefix = unique_prefix()
    record = stack.enter_context(SQLiteAdapter(tmp_path / "record.db"))
    client = stack.enter_context(redis.Redis.from_url(redis_url))
    writer = SessionStore(client, prefix=prefix, backing=record)
    sids = fleet(writer, 200)
    one = SyncWorker(opened(stack, redis_url, prefix), record, lease=60)
    other = SyncWorker(opened(stack, redis_url, prefix), record, lease=60)
    one.lease(), other.lease(), one.lease()
    one.deliver(one.pending(one.groups))
    held = record.seqs(sids)
    mine = {sid for sid in sids if slot(sid) // 256 in one.groups}
    assert {sid for sid, seq in held.items() if seq} == mine
    other.flush(timeout=30)  # whatever the leases say
    assert record.seqs(sids) == dict.fromkeys(sids, 1)


def test_a_backlog_over_its_bound_is_reported(
    redis_url: str, tmp_path: Path, stack: ExitStack, caplog: pytest.LogCaptureFixture
) -> None:
    prefix = unique_prefix()
    record = stack.enter_context(SQLiteAdapter(tmp_path / "record.db"))
    client = stack.enter_context(redis.Redis.from_url(redis_url))
    fleet(SessionStore(client, prefix=prefix, backing=record), 30)
    seen: list[int] = []
    worker = SyncWorker(opened(stack, redis_url, prefix), record, backlog=10, on_backlog=seen.append)
    with caplog.at_level(logging.WARNING, logger="redis_sessions.writebehind"):
        worker.sync_once()
    assert seen == [30]
    assert "backlog: 30 sessions pending (bound 10)" in caplog.text
    worker.sync_once()
    assert seen == [30], "delivered: nothing pending, nothing reported"


def test_a_worker_adopts_the_per_slot_indexes_of_an_earlier_version(
    redis_url: str, tmp_path: Path, stack: ExitStack
) -> None:
    prefix = unique_prefix()
    database = tmp_path / "record.db"
    record = stack.enter_context(SQLiteAdapter(database))
    client = stack.enter_context(redis.Redis.from_url(redis_url))
    writer = SessionStore(client, prefix=prefix, backing=record)
    sids = fleet(writer, 20)
    for sid in sids:  # as an earlier version listed them: one index per slot, on one server too
        score = client.zscore(dirty_key(prefix, sid, False), str(sid))
        client.zrem(dirty_key(prefix, sid, False), str(sid))
        client.zadd(dirty_key(prefix, sid, True), {str(sid): score})
    assert SyncWorker(writer, record).lag().sessions == 0, "the grouped indexes list none of them"
    with SessionStore.from_url(redis_url, prefix=prefix, backing=SQLiteAdapter(database)) as tiered:
        tiered.flush(timeout=30)
    assert record.seqs(sids) == dict.fromkeys(sids, 1)
    assert list(client.scan_iter(legacy_dirty_pattern(prefix))) == [], "nothing left in them"
    assert ids(writer.messages(sids[0])) == ["m0"]
    assert client.exists(session_keys(prefix, sids[0]).meta)


def test_sync_read_sends_no_meta_field_the_worker_does_not_read(redis_url: str, tmp_path: Path) -> None:
    """A pass reads every dirty session's meta hash: its bookkeeping fields (the append's
    idempotency token, the token and record bookkeeping) are left in Redis, not sent to be parsed
    for nothing, while everything the record's header is made of still arrives."""
    prefix = unique_prefix()
    with (
        SQLiteAdapter(tmp_path / "r.db") as record,
        SessionStore.from_url(redis_url, prefix=prefix, backing=record) as store,
        redis.Redis.from_url(redis_url) as client,
    ):
        (sid,) = fleet(store, 1)
        store.set_metadata(sid, {"team": "a"})
        keys = [*session_keys(prefix, sid)[:2], dirty_key(prefix, sid, False), tokens_key(prefix, sid)]
        args = [SCHEMA_VERSION, 10, record.record_id, ""]
        (reply,) = client.eval(SCRIPTS["sync_read"], len(keys), *keys, *args)
        fields = set(reply[1][::2])
        assert not fields & {
            b"schema_version",
            b"create_token",
            b"tokens_seq",
            b"tokens",
            b"durable",
            b"record",
        }
        assert {b"model", b"seq", b"created_at", b"updated_at", b"codec", b"epoch", b"m:team"} <= fields
