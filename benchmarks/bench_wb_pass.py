"""One write-behind worker's pass over many dirty sessions (issue 18): its time, its CPU, and its floors.

    .venv/bin/python benchmarks/bench_wb_pass.py                                   # SQLite, 10,000 x 3
    .venv/bin/python benchmarks/bench_wb_pass.py --postgres postgresql://...       # PostgreSQL too
    PYTHONPATH=/tmp/old .venv/bin/python benchmarks/bench_wb_pass.py               # another checkout
    valgrind --tool=callgrind --instr-atstart=no --callgrind-out-file=/tmp/cg.out \
        .venv/bin/python benchmarks/bench_wb_pass.py --sessions 1000 --rounds 1 --callgrind
    grep ^totals /tmp/cg.out                  # instructions of the timed pass, / --sessions a session
    (the same with --postgres DSN --postgres-only: PostgreSQL's pass alone)

Under a sustained load over many sessions, one worker's delivery lag is about the time its pass over
all of them takes, and on a busy machine that time is the CPU the pass needs divided by the share of
a core the worker gets. This measures the pass on its own: ``--sessions`` durable sessions (made by a
store with a backing store, then flushed) get ``--messages`` new messages each, then one
``SyncWorker`` passes until nothing is pending: the wall time and the worker process's CPU time
(``time.process_time``; Redis's and PostgreSQL's own processes are not in it), ``--rounds`` times.
Under callgrind, ``--callgrind`` counts instructions during the timed passes only (the machine's
load does not move that count; ``process_time`` moves by ±15 % on a shared machine).
Then the floors, each phase alone, in slices of 1,000 sessions as a pass takes them: Redis reads
(``sync_read``, parsed), the record (``adapter.deliver``), and marks (``sync_mark``). A pass can take no
less than the longest phase (the reads overlap the record since issue 18), nor than their sum on one
core. A private redis-server; SQLite in a temporary directory; PostgreSQL in a throw-away schema.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
import uuid
from typing import Any

import msgspec
import redis
from _workload import SEED, make_messages

import redis_sessions
from redis_sessions import SessionStore
from redis_sessions.embedded import RedisServer
from redis_sessions.persistence import Delivery, PersistenceAdapter, PostgresAdapter, SQLiteAdapter
from redis_sessions.writebehind import SyncWorker

SLICE = 1000  # sessions a pass stores per transaction (SyncWorker's per_transaction)


def dirty(creator: SessionStore, sids: list[Any], messages: int, start: int) -> int:
    """Append ``messages`` new messages to each session; the next message number."""
    templates = make_messages(SEED + 7, 1000)
    for _ in range(messages):
        for sid in sids:
            creator.append(sid, msgspec.structs.replace(templates[start % 1000], id=f"m{start}"))
            start += 1
    return start


def floors(worker: SyncWorker, adapter: PersistenceAdapter) -> tuple[float, float, float]:
    """Seconds of each phase alone over what is pending: Redis reads, the record, the marks."""
    rounds, pending = worker.rounds, list(worker.pending())
    t0 = time.perf_counter()
    reads = [r for i in range(0, len(pending), SLICE) for r in rounds.read(pending[i : i + SLICE], {})]
    t1 = time.perf_counter()
    ready = {sid: read for sid, read in reads if read is not None and not isinstance(read, Exception)}
    deliveries = [  # a checkout from before the rows carried the record's bytes: built as it built them
        r.delivery if hasattr(r, "delivery") else Delivery(sid, r.synced + 1, r.state.messages, r.state)
        for sid, r in ready.items()
    ]
    held: dict[Any, Any] = {}
    for i in range(0, len(deliveries), SLICE):
        held.update(adapter.deliver(deliveries[i : i + SLICE]))
    t2 = time.perf_counter()
    rounds.mark({sid: (sid, read, held[sid]) for sid, read in ready.items()}, ready, {})
    t3 = time.perf_counter()
    assert not worker.pending(), "the marks left sessions pending"
    return t1 - t0, t2 - t1, t3 - t2


def counting(on: bool) -> None:
    """Switch callgrind's counting in this process (``--callgrind``; it polls for the command)."""
    import subprocess

    subprocess.run(
        ["callgrind_control", "-i", "on" if on else "off", str(os.getpid())], check=True, capture_output=True
    )
    time.sleep(0.5)


def run(
    kind: str, dsn: str | None, sessions: int, messages: int, rounds: int, callgrind: bool = False
) -> None:
    with RedisServer() as srv, tempfile.TemporaryDirectory() as tmp:
        adapter: PersistenceAdapter
        if kind == "SQLite":
            adapter = SQLiteAdapter(os.path.join(tmp, "record.db"))
        else:
            assert dsn is not None
            adapter = PostgresAdapter(dsn, schema=f"rs_pass_{uuid.uuid4().hex[:8]}")
        creator = SessionStore(redis.Redis.from_url(srv.url), prefix="p", backing=adapter)
        worker = SyncWorker(SessionStore.from_url(srv.url, prefix="p"), adapter)
        try:
            sids = [creator.create(model="bench") for _ in range(sessions)]
            worker.flush()
            n, walls, cpus = 0, [], []
            for _ in range(rounds):
                n = dirty(creator, sids, messages, n)
                if callgrind:
                    counting(True)
                t0, c0 = time.perf_counter(), time.process_time()
                while worker.pending():
                    worker.sync_once()
                walls.append(time.perf_counter() - t0)
                cpus.append(time.process_time() - c0)
                if callgrind:
                    counting(False)
            line = (
                f"{kind}, {sessions:,} sessions x {messages} messages: pass {min(walls):.2f} s"
                f" (rounds {', '.join(f'{w:.2f}' for w in walls)}), worker CPU {min(cpus):.2f} s"
                f" = {1e6 * min(cpus) / sessions:.0f} us a session"
            )
            if hasattr(worker, "rounds"):  # a checkout from before issue 18's rounds has no floors here
                n = dirty(creator, sids, messages, n)
                read, record, mark = floors(worker, adapter)
                line += f"; floors: Redis reads {read:.2f} s, record {record:.2f} s, marks {mark:.2f} s"
            print(line, flush=True)
        finally:
            worker.io.close()
            creator.close()
            adapter.close()
            if isinstance(adapter, PostgresAdapter):
                import psycopg

                assert dsn is not None
                with psycopg.connect(dsn, autocommit=True) as connection:
                    connection.execute(
                        psycopg.sql.SQL("DROP SCHEMA {} CASCADE").format(
                            psycopg.sql.Identifier(adapter.schema)
                        )
                    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--sessions", type=int, default=10_000)
    parser.add_argument("--messages", type=int, default=3, help="new messages per session per pass")
    parser.add_argument("--rounds", type=int, default=3, help="passes timed (the best is reported)")
    parser.add_argument("--postgres", metavar="DSN", help="also PostgreSQL (a throw-away schema)")
    parser.add_argument("--postgres-only", action="store_true", help="with --postgres: skip SQLite")
    parser.add_argument(
        "--callgrind", action="store_true", help="under valgrind: count the timed passes only"
    )
    args = parser.parse_args()
    load = os.getloadavg()[0]
    print(f"redis-sessions at {redis_sessions.__file__}; load {load:.2f} (2 cores shared)", file=sys.stderr)
    kinds = ["SQLite", *(["PostgreSQL"] if args.postgres else [])]
    for kind in kinds[1:] if args.postgres_only else kinds:
        run(kind, args.postgres, args.sessions, args.messages, args.rounds, args.callgrind)
    return 0


if __name__ == "__main__":
    sys.exit(main())
