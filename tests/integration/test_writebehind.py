"""Write-behind across processes: appenders in their own processes, the sync worker as the real
``redis-sessions sync`` command, SIGKILLed and restarted while they write. After ``flush()`` the
backing store holds exactly what Redis holds: every message, once, in Redis's order."""

from __future__ import annotations

import multiprocessing
import signal
import subprocess
import sys
import time
import uuid

import pytest

from redis_sessions import SessionStore
from redis_sessions.persistence import SQLiteAdapter
from redis_sessions.writebehind import SyncWorker
from tests.integration.workers import append_worker
from tests.support import Backend, ids

pytestmark = pytest.mark.parametrize("backend", [pytest.param("real", marks=pytest.mark.real)], indirect=True)

WRITERS, EACH = 4, 1000


def start_sync(backend: Backend, database: SQLiteAdapter) -> subprocess.Popen[bytes]:
    command = [sys.executable, "-m", "redis_sessions", "--url", backend.url or "", "--prefix", backend.prefix]
    command += ["sync", "--backing", f"sqlite://{database.path}", "--interval", "0.01", "--report", "0.2"]
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    assert process.stderr is not None
    first = process.stderr.readline()  # its first lag line: it is up, its SIGTERM handler too
    assert first.startswith(b"delivered"), first
    return process


def stop(process: subprocess.Popen[bytes], sig: int) -> int:
    process.send_signal(sig)
    code = process.wait(timeout=30)
    assert process.stderr is not None
    process.stderr.close()
    return code


def delivered(database: SQLiteAdapter, sid: uuid.UUID) -> int:
    state = database.load_session(sid)
    return 0 if state is None else len(state.messages)


def wait_for(predicate: object, what: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():  # type: ignore[operator]
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.01)  # polling a database another process writes


def test_appenders_and_a_killed_sync_worker(backend: Backend, database: SQLiteAdapter) -> None:
    assert backend.url is not None
    with SessionStore.from_url(backend.url, prefix=backend.prefix, backing=database) as store:
        store._worker.stop()  # type: ignore[union-attr]  # only the command delivers in this test
        sid = store.create("m")
        ctx = multiprocessing.get_context("spawn")
        barrier, results = ctx.Barrier(WRITERS + 1), ctx.Queue()
        writers = [
            ctx.Process(
                target=append_worker,
                args=(backend.url, backend.prefix, sid, w, EACH, barrier, results),
                daemon=True,
            )
            for w in range(WRITERS)
        ]
        for writer in writers:
            writer.start()
        worker = start_sync(backend, database)
        at_kill: list[int] = []  # messages in the backing store when the worker was killed
        try:
            barrier.wait(timeout=60)  # the writers start appending now
            for _ in range(2):  # kill the worker as soon as it delivered more, twice, and restart it
                seen = delivered(database, sid)
                wait_for(
                    lambda seen=seen: delivered(database, sid) > seen or seen == WRITERS * EACH,
                    "the sync worker to deliver",
                )
                stop(worker, signal.SIGKILL)
                at_kill.append(delivered(database, sid))
                worker = start_sync(backend, database)
            barrier.wait(timeout=120)  # every writer has finished appending
            reports = [results.get(timeout=60) for _ in writers]
        finally:
            assert stop(worker, signal.SIGTERM) == 0, "SIGTERM ends the command cleanly"
            for writer in writers:
                writer.join(timeout=30)
        errors = [error for _, error, _, _ in reports if error]
        assert not errors, errors[0]

        SyncWorker(store, database).flush(timeout=60)
        in_redis = ids(store.messages(sid))
        stored = database.load_session(sid)
        assert stored is not None
        assert 0 < at_kill[0] < WRITERS * EACH, f"the first kill should land mid-delivery: {at_kill}"
        assert len(in_redis) == WRITERS * EACH
        assert ids(stored.messages) == in_redis, "the record holds Redis's list: same messages, same order"
        assert len(set(ids(stored.messages))) == WRITERS * EACH, "no duplicate"
        assert stored.seq == WRITERS * EACH
