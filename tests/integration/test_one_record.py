"""One backing record per prefix (issue 13): a store, worker or file of another record can never make
the record lose a message. Each scenario ends with the record equal to Redis (same ids, same order)
or with a typed error and nothing changed.

What used to happen: a second store on the same prefix with another SQLite file delivered batches
into its own file and advanced the shared ``synced_seq``; the first file's next batch started above
the hole, ``MAX(position) + 1`` closed it, and after a TTL the damaged record was read back as the
session.
"""

from __future__ import annotations

import multiprocessing
import shutil
import sqlite3
import subprocess
import sys
import uuid
from contextlib import ExitStack
from pathlib import Path

import pytest
import redis

from redis_sessions import AgentMessage, BackingMismatch, SessionStore
from redis_sessions.embedded import RedisServer
from redis_sessions.keys import record_key, session_keys
from redis_sessions.persistence import SQLiteAdapter
from redis_sessions.writebehind import SyncWorker
from tests.integration import durable_workers
from tests.support import ids, messages_of, unique_prefix

pytestmark = pytest.mark.real

WRITERS, EACH = 3, 100


def redis_ids(client: redis.Redis, prefix: str, sid: uuid.UUID) -> list[str]:
    """The message ids Redis holds, in order, read without a store (no read-through)."""
    store = SessionStore(client, prefix=prefix)
    return ids(store.messages(sid))


def record_ids(path: Path, sid: uuid.UUID) -> list[str]:
    with SQLiteAdapter(path) as record:
        state = record.load_session(sid)
    return [] if state is None else ids(state.messages)


@pytest.mark.parametrize("first", ["a", "b"])
def test_a_store_on_another_record_is_refused_when_it_opens(
    plain_redis: RedisServer, tmp_path: Path, stack: ExitStack, first: str
) -> None:
    prefix = unique_prefix()
    paths = {"a": tmp_path / "a.db", "b": tmp_path / "b.db"}
    second = "b" if first == "a" else "a"
    records = {name: stack.enter_context(SQLiteAdapter(path)) for name, path in paths.items()}
    store = stack.enter_context(SessionStore.from_url(plain_redis.url, prefix=prefix, backing=records[first]))
    sid = store.create()
    store.extend(sid, messages_of(5))
    store.flush(timeout=30)
    client = stack.enter_context(redis.Redis.from_url(plain_redis.url))
    before = client.hgetall(session_keys(prefix, sid).meta)

    with pytest.raises(BackingMismatch) as refused:
        SessionStore.from_url(plain_redis.url, prefix=prefix, backing=records[second])
    assert records[first].record_id in str(refused.value), "names the record the prefix is bound to"
    assert records[second].record_id in str(refused.value), "and the one it was opened with"
    assert client.get(record_key(prefix)).decode() == records[first].record_id
    assert client.hgetall(session_keys(prefix, sid).meta) == before, "nothing changed"
    store.append(sid, AgentMessage.user("after", id="after"))
    store.flush(timeout=30)
    assert record_ids(paths[first], sid) == [*ids(messages_of(5)), "after"]
    assert record_ids(paths[second], sid) == []


@pytest.mark.parametrize("stray_in", ["this process", "another process"])
def test_a_stray_worker_of_another_record_takes_nothing_from_the_record(
    plain_redis: RedisServer, tmp_path: Path, stack: ExitStack, stray_in: str
) -> None:
    """The issue's scenario: 3 writer processes x 100 appends to one durable session, and a worker
    of another SQLite file delivering throughout; it is refused session by session."""
    prefix, url = unique_prefix(), plain_redis.url
    record, other = tmp_path / "record.db", tmp_path / "other.db"
    owner = stack.enter_context(SessionStore.from_url(url, prefix=prefix, backing=SQLiteAdapter(record)))
    sid = owner.create()
    spawn = multiprocessing.get_context("spawn")
    barrier, results, stop = spawn.Barrier(WRITERS), spawn.Queue(), spawn.Event()
    stray_thread = None
    if stray_in == "another process":
        stray = spawn.Process(
            target=durable_workers.stray_worker, args=(url, prefix, str(other), stop, results)
        )
        stray.start()
    else:
        import threading

        stray_thread = threading.Thread(
            target=durable_workers.stray_worker, args=(url, prefix, str(other), stop, results)
        )
        stray_thread.start()
    writers = [
        spawn.Process(
            target=durable_workers.sqlite_appender,
            args=(url, prefix, str(record), sid, n, EACH, barrier, results),
        )
        for n in range(WRITERS)
    ]
    for process in writers:
        process.start()
    outcomes = [results.get(timeout=120) for _ in writers]
    stop.set()
    stray_outcome = results.get(timeout=60)
    for process in writers:
        process.join(timeout=30)
    if stray_thread is not None:
        stray_thread.join(timeout=30)
    assert [error for _, error in outcomes] == [None] * WRITERS, outcomes
    assert stray_outcome[0] == "stray", stray_outcome
    assert isinstance(stray_outcome[1], int), stray_outcome
    assert stray_outcome[2] == 0, "the stray worker delivered nothing"

    owner.flush(timeout=60)
    in_redis = redis_ids(stack.enter_context(redis.Redis.from_url(url)), prefix, sid)
    assert len(in_redis) == WRITERS * EACH
    assert record_ids(record, sid) == in_redis, "the record holds every message, in Redis's order"
    assert record_ids(other, sid) == []


@pytest.mark.parametrize("killed", ["before its commit", "after its commit, before its mark"])
def test_a_worker_killed_mid_delivery_leaves_nothing_for_the_next_to_get_wrong(
    plain_redis: RedisServer, tmp_path: Path, stack: ExitStack, killed: str
) -> None:
    prefix, url, path = unique_prefix(), plain_redis.url, tmp_path / "record.db"
    database = stack.enter_context(SQLiteAdapter(path))
    store = stack.enter_context(SessionStore.from_url(url, prefix=prefix, backing=database))
    store._worker.stop()  # type: ignore[union-attr]  # this test decides who delivers, and when
    sid = store.create()
    store.extend(sid, messages_of(40))
    code = (
        "import os, signal, sys\n"
        "from redis_sessions import SessionStore\n"
        "from redis_sessions.persistence import SQLiteAdapter\n"
        "from redis_sessions.writebehind import SyncWorker\n"
        "record = SQLiteAdapter(sys.argv[3])\n"
        "deliver = record.deliver\n"
        "def dying(batches):\n"
        "    if sys.argv[4] == 'after':\n"
        "        deliver(batches)\n"
        "    else:\n"
        "        record._transaction('deliver', None, write=True).__enter__()\n"
        "    os.kill(os.getpid(), signal.SIGKILL)\n"
        "record.deliver = dying\n"
        "SyncWorker(SessionStore.from_url(sys.argv[1], prefix=sys.argv[2]), record).bind().flush()\n"
    )
    when = "after" if killed.startswith("after") else "before"
    died = subprocess.run([sys.executable, "-c", code, url, prefix, str(path), when], timeout=60, check=False)
    assert died.returncode == -9
    assert record_ids(path, sid) == (ids(messages_of(40)) if when == "after" else [])
    store.extend(sid, messages_of(10, "later"))
    store.flush(timeout=30)
    assert record_ids(path, sid) == ids(messages_of(40)) + ids(messages_of(10, "later"))


def test_a_record_restored_from_an_older_backup_underneath_is_filled_again_from_redis(
    plain_redis: RedisServer, tmp_path: Path, stack: ExitStack
) -> None:
    prefix, path = unique_prefix(), tmp_path / "record.db"
    database = stack.enter_context(SQLiteAdapter(path))
    store = stack.enter_context(SessionStore.from_url(plain_redis.url, prefix=prefix, backing=database))
    sid = store.create()
    store.extend(sid, messages_of(10))
    store.flush(timeout=30)
    backup = tmp_path / "backup.db"
    source, copy = sqlite3.connect(path), sqlite3.connect(backup)
    with source, copy:
        source.backup(copy)  # SQLite's online backup, as an operator's nightly job takes one
    source.close()
    copy.close()
    store.extend(sid, messages_of(10, "after-backup"))
    store.flush(timeout=30)
    shutil.copy(backup, tmp_path / "restoring.db")
    for journal in ("-wal", "-shm"):  # the old file's journal does not belong to the backup
        path.with_name(path.name + journal).unlink(missing_ok=True)
    (tmp_path / "restoring.db").replace(path)  # the file is swapped while the store runs
    assert record_ids(path, sid) == ids(messages_of(10)), "the backup lacks the last 10"

    store.append(sid, AgentMessage.user("one more", id="one-more"))
    store.flush(timeout=30)
    expected = ids(messages_of(10)) + ids(messages_of(10, "after-backup")) + ["one-more"]
    assert record_ids(path, sid) == expected, "the gap was filled from Redis, in order, not skipped"


def test_a_record_replaced_by_another_record_underneath_is_refused(
    plain_redis: RedisServer, tmp_path: Path, stack: ExitStack
) -> None:
    prefix, path = unique_prefix(), tmp_path / "record.db"
    database = stack.enter_context(SQLiteAdapter(path))
    store = stack.enter_context(SessionStore.from_url(plain_redis.url, prefix=prefix, backing=database))
    store._worker.stop()  # type: ignore[union-attr]
    sid = store.create()
    store.extend(sid, messages_of(10))
    SQLiteAdapter(tmp_path / "stranger.db").close()
    for journal in ("-wal", "-shm"):
        path.with_name(path.name + journal).unlink(missing_ok=True)
    (tmp_path / "stranger.db").replace(path)
    client = stack.enter_context(redis.Redis.from_url(plain_redis.url))
    before = client.hgetall(session_keys(prefix, sid).meta)
    with pytest.raises(BackingMismatch):
        store.flush(timeout=30)
    assert record_ids(path, sid) == [], "nothing written into the other record"
    assert client.hgetall(session_keys(prefix, sid).meta) == before, "synced_seq not advanced"


def test_after_a_ttl_read_through_brings_back_every_message(
    plain_redis: RedisServer, tmp_path: Path, stack: ExitStack
) -> None:
    """The consequence the issue feared: a stray worker ran, the session was marked clean, its TTL
    ran out (here: the keys deleted as expiry would), and read-through restored it from the record."""
    prefix, url = unique_prefix(), plain_redis.url
    record, other = tmp_path / "record.db", tmp_path / "other.db"
    store = stack.enter_context(
        SessionStore.from_url(url, prefix=prefix, ttl=600, backing=SQLiteAdapter(record))
    )
    stray_store = stack.enter_context(SessionStore.from_url(url, prefix=prefix))
    stray = SyncWorker(stray_store, stack.enter_context(SQLiteAdapter(other)))
    sid = store.create()
    for n in range(5):
        store.extend(sid, messages_of(20, f"turn{n}"))
        stray.deliver(stray.pending())  # refused each time: another record's session
        assert sid in stray.failures
    store.flush(timeout=30)
    client = stack.enter_context(redis.Redis.from_url(url))
    assert client.pttl(session_keys(prefix, sid).meta) > 0, "clean, so it may expire"
    client.delete(*session_keys(prefix, sid))
    expected = [i for n in range(5) for i in ids(messages_of(20, f"turn{n}"))]
    assert ids(store.messages(sid)) == expected


def test_rebind_moves_every_session_to_the_new_record_while_the_old_store_writes(
    plain_redis: RedisServer, tmp_path: Path, stack: ExitStack
) -> None:
    import threading

    from redis_sessions import rebind

    prefix, url = unique_prefix(), plain_redis.url
    old_path, new_path = tmp_path / "old.db", tmp_path / "new.db"
    old_store = stack.enter_context(
        SessionStore.from_url(url, prefix=prefix, ttl=600, backing=SQLiteAdapter(old_path))
    )
    client = stack.enter_context(redis.Redis.from_url(url))
    evicted, flushed, pending = old_store.create(), old_store.create(), old_store.create()
    for sid in (evicted, flushed, pending):
        old_store.extend(sid, messages_of(30, str(sid)[:8]))
    old_store.flush(timeout=30)
    client.delete(*session_keys(prefix, evicted))  # only the old record has it now
    old_store._worker.stop()  # type: ignore[union-attr]  # so 'pending' stays undelivered
    old_store.extend(pending, messages_of(5, "undelivered"))
    live = old_store.create()
    stop, written = threading.Event(), []

    def writer() -> None:  # an old worker process keeps serving its users during the move
        n = 0
        while not stop.is_set() and n < 2000:
            message = AgentMessage.user(f"live {n}", id=f"live-{n:04d}")
            old_store.append(live, message)
            written.append(message.id)
            n += 1

    thread = threading.Thread(target=writer)
    thread.start()
    try:
        with SQLiteAdapter(old_path) as old, SQLiteAdapter(new_path) as new:
            plain = stack.enter_context(SessionStore.from_url(url, prefix=prefix))
            done = rebind.rebind(plain, old, new)
            assert done.copied >= 2, done
            assert done.moved >= 3, done
            again = rebind.rebind(plain, old, new)
            assert (again.copied, again.moved) == (0, 0), "a rerun finds nothing left to do"
    finally:
        stop.set()
        thread.join(timeout=60)

    with pytest.raises(BackingMismatch):
        SessionStore.from_url(url, prefix=prefix, backing=SQLiteAdapter(old_path))
    new_store = stack.enter_context(
        SessionStore.from_url(url, prefix=prefix, ttl=600, backing=SQLiteAdapter(new_path))
    )
    new_store.append(live, AgentMessage.user("after the move", id="after"))
    new_store.flush(timeout=60)
    with SQLiteAdapter(new_path) as new:
        for sid in (flushed, pending, live):
            assert ids(new.load_session(sid).messages) == redis_ids(client, prefix, sid)  # type: ignore[union-attr]
        assert ids(new.load_session(evicted).messages) == ids(messages_of(30, str(evicted)[:8]))  # type: ignore[union-attr]
    assert redis_ids(client, prefix, live) == [*written, "after"]
    assert ids(new_store.messages(evicted)) == ids(messages_of(30, str(evicted)[:8])), (
        "read through the new record"
    )
    assert old_store._worker is not None
    assert old_store._worker._check_binding() is False
    client.delete(*session_keys(prefix, flushed))
    with pytest.raises(BackingMismatch):
        old_store.messages(flushed)  # the old store no longer reads through its stale record
