"""Issues 7 and 18's figures: appends with and without a backing store, sync lag, the fleet.

    .venv/bin/python benchmarks/bench_durability.py                  # about 15 minutes on 2 cores
    .venv/bin/python benchmarks/bench_durability.py --quick          # smoke run, about a minute
    .venv/bin/python benchmarks/bench_durability.py --json durability.json --postgres postgresql://...
    .venv/bin/python benchmarks/bench_durability.py --skip-appends --profile /tmp/wb --sessions 100,1000
    .venv/bin/python benchmarks/bench_durability.py --skip-appends --skip-lag --fleet 0 \
        --fleet-sessions 0 --scan-keys 1,1000000 --cluster                 # part 3 only
    git worktree add /tmp/old <commit> && .venv/bin/python benchmarks/bench_durability.py \
        --skip-appends --skip-lag --fleet-sessions 0 --before /tmp/old    # part 4, before/after

Always a private redis-server (free loopback port, no persistence) and SQLite files in a temporary
directory; ``--postgres DSN`` adds PostgreSQL (tables in a throw-away schema, and for
``redis-sessions sync``, which cannot name a schema, throw-away databases; all dropped afterwards).

1. **Append throughput.** One process appends the suite's messages one by one to a new session,
   through a plain store (``SessionStore.from_url(url)``) and a tiered one
   (``from_url(url, backing=SQLiteAdapter(path))``, its write-behind thread running in this process
   and delivering while the loop runs), and the same through ``AsyncSessionStore``. Also: a durable
   session appended to by a store that has a backing store but no worker in this process (what an
   application pays when ``redis-sessions sync`` runs elsewhere). Interleaved rounds, order rotated,
   medians; *vs plain* is the per-round ops/s ratio, then its median. After each loop, ``flush()``
   is timed and the backing store must hold all ``n`` messages.
2. **Sync lag under load.** ``--writers`` processes append as fast as they can for ``--seconds`` to
   ``--sessions`` durable sessions through plain stores (a session is durable because a store with a
   backing store created it), while one worker delivers: the tiered store's thread in this process
   (``thread``), ``redis-sessions sync`` as a subprocess (``cli``), or with ``--profile`` the same
   passes as the thread's under cProfile (``profiled``). Every 0.25 s (every sessions/10,000 s when
   there are more) this process samples ``SyncWorker.lag()`` and the sum of the sessions' ``seq``
   and ``synced_seq`` (what was appended, what the backing store holds); the *delivery lag* is the
   time shift between those two curves. When the writers stop, the catch-up is timed: ``flush()``
   (``thread``) or the worker(s) draining the backlog, then ``flush()``. At the end every
   session's stored messages are compared with what the writers were acknowledged: count,
   duplicates, each writer's order.
3. **An idle worker's pass against the keyspace** (``--scan-keys``, off by default):
   ``pending()`` and ``sync_once()`` with nothing pending, as Redis holds more keys (``DEBUG
   POPULATE``, its own redis-server; ``--cluster``: also the tests' 3+3 cluster); the SCAN calls
   the servers saw (none: the dirty indexes have known names).
4. **Fleet flush** (``--fleet``, 5,000 sessions): one process appends one message to each of
   ``--fleet`` durable sessions through a tiered store on SQLite whose worker runs throughout, then
   ``flush()``; flush time against the writing time. Each round is a fresh process
   (``--fleet-child``), so ``--before PATH`` runs the same with an older checkout of the library
   in the same rounds (interleaved).
5. **Sustained fleet** (``--fleet-sessions``, 10,000): ``--fleet-writers`` (2) processes append
   to every session in turn for ``--fleet-seconds`` (60): plain sessions first (the plain append
   rate of this run), then durable ones on SQLite and on PostgreSQL, a ``redis-sessions sync``
   process delivering. Part 2's figures, plus delivered/s against the plain rate and the backlog
   of the load's second quarter against its last (bounded or growing).
6. **Worker processes** (``--scale-workers 1,2,3``): part 5's load for ``--scale-seconds`` (20)
   with 1, 2 and 3 ``redis-sessions sync`` processes on SQLite (and on PostgreSQL with
   ``--postgres``), sharing the slot groups before the writers start; interleaved rounds
   (``--scale-rounds``, 3), medians.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import cProfile
import io
import json
import multiprocessing as mp
import os
import pstats
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import asdict, dataclass
from multiprocessing.connection import wait
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import msgspec
import redis
from _harness import Case, Runner, Sample, machine, quiet_heap, run, sample, summarize, version
from _workload import SEED, make_messages, message_sizes

import redis_sessions
from redis_sessions import AgentMessage, AsyncSessionStore, SessionStore
from redis_sessions.embedded import RedisServer
from redis_sessions.keys import session_keys
from redis_sessions.persistence import PersistenceAdapter, PostgresAdapter, SQLiteAdapter
from redis_sessions.writebehind import SyncWorker

PLAIN, TIERED, DURABLE = "plain", "tiered", "durable, no worker here"
A_PLAIN, A_TIERED = "async plain", "async tiered"
SAMPLE_EVERY = 0.25  # seconds between lag samples
TEMPLATES = 1000  # distinct message bodies a writer cycles through (each append gets a new id)


@dataclass(frozen=True)
class Config:
    rounds: int
    ops: int
    writers: int
    seconds: float
    sessions: tuple[int, ...]
    workers: tuple[str, ...]
    synchronous: str
    postgres: str | None
    profile: str | None
    scan_keys: tuple[int, ...]
    cluster: bool = False
    fleet: int = 0  # part 4: sessions (0: skipped)
    before: str | None = None  # part 4: an older checkout of the library, run the same way
    fleet_sessions: int = 0  # parts 5 and 6: sessions (0: both skipped)
    fleet_writers: int = 2
    fleet_seconds: float = 60.0
    scale_workers: tuple[int, ...] = (1, 2, 3)
    scale_seconds: float = 20.0
    scale_rounds: int = 1


# -- backing stores -----------------------------------------------------------------------------


class Backings:
    """Makes the adapters of the run: SQLite files in one temporary directory; PostgreSQL tables in
    one throw-away schema (dropped by ``close``). ``url`` gives what ``redis-sessions sync`` takes."""

    def __init__(self, cfg: Config) -> None:
        self.cfg = cfg
        self.tmp = tempfile.TemporaryDirectory(prefix="rs-durability-")
        self.schema = f"rsbench_{uuid.uuid4().hex[:8]}"
        self.adapters: list[PersistenceAdapter] = []
        self.databases: list[str] = []  # PostgreSQL databases made for worker processes

    @property
    def kinds(self) -> list[str]:
        return ["SQLite"] + (["PostgreSQL"] if self.cfg.postgres else [])

    def make(self, kind: str, name: str) -> PersistenceAdapter:
        adapter: PersistenceAdapter
        if kind == "SQLite":
            adapter = SQLiteAdapter(self.path(name), synchronous=self.cfg.synchronous)  # type: ignore[arg-type]
        else:
            assert self.cfg.postgres is not None
            adapter = PostgresAdapter(self.cfg.postgres, schema=self.schema)
        self.adapters.append(adapter)
        return adapter

    def path(self, name: str) -> Path:
        return Path(self.tmp.name) / f"{name}.db"

    def url(self, kind: str, name: str) -> str:
        """What ``redis-sessions sync --backing`` takes: it cannot name a schema, so for PostgreSQL
        a throw-away database of its own (``process_adapter`` opens the same)."""
        if kind != "SQLite":
            return self._database(name)
        return f"sqlite://{self.path(name)}"

    def process_adapter(self, kind: str, name: str) -> PersistenceAdapter:
        """The adapter of what ``url`` names (PostgreSQL: the default schema of its own database)."""
        if kind == "SQLite":
            return self.make(kind, name)
        adapter = PostgresAdapter(self._database(name))
        self.adapters.append(adapter)
        return adapter

    def _database(self, name: str) -> str:
        import psycopg
        import psycopg.sql

        assert self.cfg.postgres is not None
        db = f"{self.schema}_{name.replace('-', '_')}".lower()[:60]
        if db not in self.databases:
            with psycopg.connect(self.cfg.postgres, autocommit=True) as conn:
                conn.execute(psycopg.sql.SQL("CREATE DATABASE {}").format(psycopg.sql.Identifier(db)))
            self.databases.append(db)
        return urlunsplit(urlsplit(self.cfg.postgres)._replace(path=f"/{db}"))

    def close(self) -> None:
        for adapter in self.adapters:
            with contextlib.suppress(Exception):
                adapter.close()
        if self.cfg.postgres:
            import psycopg.sql

            with psycopg.connect(self.cfg.postgres, autocommit=True) as conn:
                conn.execute(
                    psycopg.sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(
                        psycopg.sql.Identifier(self.schema)
                    )
                )
                for db in self.databases:
                    conn.execute(
                        psycopg.sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(
                            psycopg.sql.Identifier(db)
                        )
                    )
        self.tmp.cleanup()


# -- 1. append throughput -------------------------------------------------------------------------


def timed(n: int, op: Callable[[int], object]) -> tuple[Sample, float]:
    """``_harness.time_sync``, plus the CPU time of this thread alone (µs/op): the process's CPU
    time also counts the write-behind thread, which runs beside the loop in a tiered store."""
    lat, clock = [0] * n, time.perf_counter_ns
    with quiet_heap():
        tcpu0, cpu0, t0 = time.thread_time_ns(), time.process_time_ns(), clock()
        for i in range(n):
            start = clock()
            op(i)
            lat[i] = clock() - start
        wall, cpu, tcpu = clock() - t0, time.process_time_ns() - cpu0, time.thread_time_ns() - tcpu0
    return sample(lat, wall, cpu), tcpu / n / 1e3


async def timed_async(n: int, op: Callable[[int], Awaitable[object]]) -> tuple[Sample, float]:
    lat, clock = [0] * n, time.perf_counter_ns
    with quiet_heap():
        tcpu0, cpu0, t0 = time.thread_time_ns(), time.process_time_ns(), clock()
        for i in range(n):
            start = clock()
            await op(i)
            lat[i] = clock() - start
        wall, cpu, tcpu = clock() - t0, time.process_time_ns() - cpu0, time.thread_time_ns() - tcpu0
    return sample(lat, wall, cpu), tcpu / n / 1e3


class AppendBench:
    """The stores of part 1, each under its own prefix (a worker delivers only its own prefix)."""

    def __init__(self, url: str, prefix: str, cfg: Config, backings: Backings) -> None:
        self.cfg, self.loop = cfg, asyncio.Runner()
        self.msgs = make_messages(SEED + 1, cfg.ops)
        self.stores: dict[str, Any] = {}
        self.adapters: dict[str, PersistenceAdapter] = {}
        self.flushers: dict[str, Callable[[], None]] = {}
        self.case = Case("append", "appends", cfg.ops, {}, {})
        self._add(PLAIN, SessionStore.from_url(url, prefix=f"{prefix}-p"), None)
        for kind in backings.kinds:
            suffix = "" if kind == "SQLite" else f" ({kind})"
            adapter = backings.make(kind, "append-tiered")
            store = SessionStore.from_url(url, prefix=f"{prefix}-t{kind[0]}", backing=adapter)
            self._add(TIERED + suffix, store, adapter, store.flush)
        # A store with a backing store but no worker (the constructor starts none; from_url does):
        # appends mark the session dirty; a worker made here delivers it after the timed loop.
        adapter = backings.make("SQLite", "append-durable")
        store = SessionStore(redis.Redis.from_url(url), prefix=f"{prefix}-d", backing=adapter)
        self._add(DURABLE, store, adapter, SyncWorker(store, adapter).flush)
        self._add(A_PLAIN, AsyncSessionStore.from_url(url, prefix=f"{prefix}-ap"), None)
        adapter = backings.make("SQLite", "append-async")
        astore = AsyncSessionStore.from_url(url, prefix=f"{prefix}-at", backing=adapter)
        self._add(A_TIERED, astore, adapter, lambda: self.loop.run(astore.flush()))
        self.case.baselines = {
            name: (A_PLAIN if name.startswith("async") else PLAIN) if name not in (PLAIN, A_PLAIN) else None
            for name in self.case.systems
        }

    def _add(
        self,
        name: str,
        store: Any,
        adapter: PersistenceAdapter | None,
        flush: Callable[[], None] | None = None,
    ) -> None:
        self.stores[name] = store
        if adapter is not None:
            self.adapters[name] = adapter
        if flush is not None:
            self.flushers[name] = flush
        self.case.systems[name] = self._runner(name)

    def _runner(self, name: str) -> Runner:
        store, msgs, is_async = self.stores[name], self.msgs, name.startswith("async")

        def go(r: int, n: int) -> Sample:
            if is_async:
                sid = self.loop.run(store.create(model="bench"))
                s, thread_cpu = self.loop.run(timed_async(n, lambda i: store.append(sid, msgs[i])))
                seq = self.loop.run(store.append(sid, msgs[n - 1]))  # a replay: returns its seq
            else:
                sid = store.create(model="bench")
                s, thread_cpu = timed(n, lambda i: store.append(sid, msgs[i]))
                seq = store.append(sid, msgs[n - 1])
            check: dict[str, Any] = {"thread_cpu_us_per_op": thread_cpu, "seq": seq, "expected": n}
            if name in self.flushers:
                t0 = time.perf_counter()
                self.flushers[name]()
                check["flush_ms"] = (time.perf_counter() - t0) * 1e3
                stored = self.adapters[name].load_session(sid)
                check["stored"] = -1 if stored is None else len(stored.messages)
                check["ok"] = seq == n and check["stored"] == n
            else:
                check["ok"] = seq == n
            if is_async:
                self.loop.run(store.delete(sid))
            else:
                store.delete(sid)  # both tiers
            if r >= 0:
                self.case.checks.setdefault(name, []).append(check)
            return s

        return go

    def close(self) -> None:
        for store in self.stores.values():
            if isinstance(store, AsyncSessionStore):
                self.loop.run(store.aclose())
            else:
                store.close()
        self.loop.close()


def append_rows(case: Case) -> list[dict[str, Any]]:
    rows = summarize(case)
    for row in rows:
        checks = row["checks"]
        row["vs_plain"], row["vs_plain_rounds"] = row.pop("ratio_vs_raw"), row.pop("ratios")
        row["thread_cpu_us_per_op"] = statistics.median(c["thread_cpu_us_per_op"] for c in checks)
        flushes = [c["flush_ms"] for c in checks if "flush_ms" in c]
        row["flush_ms"] = statistics.median(flushes) if flushes else None
        row["all_stored"] = all(c["ok"] for c in checks)
        for key in ("ratio_vs_ref", "ratios_vs_ref"):
            row.pop(key)
    return rows


# -- 2. sync lag under load -----------------------------------------------------------------------


def _writer_main(
    url: str, prefix: str, sids: list[str], w: int, seconds: float, barrier: Any, conn: Any
) -> None:
    """One writer: append to every session in turn, as fast as it can, for ``seconds``."""
    if hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, range(os.cpu_count() or 1))
    templates = make_messages(SEED + 7 + w, TEMPLATES)
    replace = msgspec.structs.replace
    acked = [0] * len(sids)
    lat: list[int] = []
    clock, n, i = time.perf_counter_ns, len(sids), 0
    with SessionStore.from_url(url, prefix=prefix) as store:
        store.exists(sids[0])  # connect before the start line
        barrier.wait(60)
        cpu0, t0 = time.process_time_ns(), clock()
        deadline = t0 + int(seconds * 1e9)
        while True:
            k = (i + w) % n
            message: AgentMessage = replace(templates[i % TEMPLATES], id=f"w{w}-{i:07d}")
            start = clock()
            store.append(sids[k], message)
            end = clock()
            lat.append(end - start)
            acked[k] += 1
            i += 1
            if end >= deadline:
                break
        cpu = time.process_time_ns() - cpu0
    conn.send({"start": t0, "end": end, "cpu": cpu, "acked": acked, "lat": lat})


class ProfiledWorker:
    """What a tiered store's thread does (``SyncWorker.sync_once`` every 0.1 s), under cProfile,
    with each pass's duration, sessions visited and messages delivered recorded."""

    def __init__(self, store: SessionStore, adapter: PersistenceAdapter, interval: float = 0.1) -> None:
        self.worker, self.interval = SyncWorker(store, adapter), interval
        self.profile = cProfile.Profile()
        self.passes: list[tuple[float, int, int]] = []
        self.stop_event = threading.Event()
        self.thread = threading.Thread(target=self._loop, name="profiled-sync", daemon=True)
        self.thread.start()

    def _loop(self) -> None:
        self.profile.enable()  # profiles this thread only
        try:
            while not self.stop_event.wait(self.interval):
                before, t0 = self.worker.delivered, time.perf_counter()
                visited = self.worker.sync_once()
                self.passes.append((time.perf_counter() - t0, visited, self.worker.delivered - before))
        finally:
            self.profile.disable()

    def stop(self) -> None:
        self.stop_event.set()
        self.thread.join()


def _percentiles(values: Sequence[float]) -> dict[str, float]:
    if not values:
        return {"p50": 0.0, "p99": 0.0, "max": 0.0}
    v = sorted(values)
    return {"p50": v[len(v) // 2], "p99": v[min(len(v) - 1, round(0.99 * (len(v) - 1)))], "max": v[-1]}


def _wait_for_shares(raw: redis.Redis, prefix: str, workers: int, timeout: float = 30.0) -> None:
    """Until ``workers`` workers hold the 64 slot groups between them (each its share): a worker
    leases at its first pass and hands groups back at its next once others have come."""
    from redis_sessions.keys import sync_keys  # not at the top: part 4 runs this file on older code

    workers_key, *groups = sync_keys(prefix)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        owners = {o for o in raw.mget(groups) if o is not None}
        if raw.zcard(workers_key) >= workers and len(owners) >= workers:
            return
        time.sleep(0.05)
    raise TimeoutError(f"{workers} sync workers did not share the slot groups within {timeout:.0f} s")


def _delivery_lag(samples: Sequence[dict[str, float]]) -> list[float]:
    """How long ago the messages being delivered were appended, at each sample: the time shift
    between the curves of messages appended and messages delivered (``t - A⁻¹(D(t))``, A and D
    interpolated between samples; messages in the order they were appended, which is how the
    writers go round the sessions). Unlike ``SyncWorker.lag().seconds`` it does not depend on
    when a session last left its dirty index."""
    out, j = [], 0
    points = [(s["t"], s["appended"]) for s in samples]
    for s in samples:
        target = s["delivered"]
        while j < len(points) and points[j][1] < target:
            j += 1
        if j == 0 or j == len(points):
            out.append(0.0 if j == 0 else s["t"] - points[-1][0])
            continue
        (t0, a0), (t1, a1) = points[j - 1], points[j]
        at = t0 + (t1 - t0) * (target - a0) / max(1, a1 - a0)
        out.append(max(0.0, s["t"] - at))
    return out


def _trend(samples: Sequence[dict[str, float]]) -> dict[str, float]:
    """Whether the backlog stays bounded: the median lag (messages, seconds) of the load's second
    quarter against its last quarter (a backlog that grows without bound grows between them)."""
    q = len(samples) // 4
    if q == 0:
        return {"q2_messages": 0.0, "q4_messages": 0.0, "q2_seconds": 0.0, "q4_seconds": 0.0}
    q2, q4 = samples[q : 2 * q], samples[-q:]
    return {
        f"{name}_{key}": statistics.median(s[f"lag_{key}"] for s in part)
        for name, part in (("q2", q2), ("q4", q4))
        for key in ("messages", "seconds")
    }


def lag_run(
    url: str,
    prefix: str,
    cfg: Config,
    backings: Backings,
    kind: str,
    mode: str,
    sessions: int,
    *,
    writers: int | None = None,
    seconds: float | None = None,
    workers: int = 1,
) -> dict[str, Any]:
    """One load run: ``writers`` (``cfg.writers``) for ``seconds`` (``cfg.seconds``) on ``sessions``
    sessions, delivered by one worker of ``mode`` (``workers`` processes for ``cli``)."""
    writers = writers or cfg.writers
    seconds = seconds or cfg.seconds
    # SyncWorker.lag() reads every dirty session: at 10,000 of them, sample less often
    every = max(SAMPLE_EVERY, sessions / 10_000)
    name = f"lag-{mode}{workers if mode == 'cli' else ''}-{kind}-{sessions}-{uuid.uuid4().hex[:4]}"
    adapter = backings.process_adapter(kind, name) if mode == "cli" else backings.make(kind, name)
    raw = redis.Redis.from_url(url)
    thread_worker: SessionStore | None = None
    clis: list[subprocess.Popen[bytes]] = []
    profiled: ProfiledWorker | None = None
    # The sessions are made durable by a store with a backing store and no worker of its own.
    creator = SessionStore(redis.Redis.from_url(url), prefix=prefix, backing=adapter)
    sids = [str(creator.create(model="bench")) for _ in range(sessions)]
    SyncWorker(creator, adapter).flush()  # every header stored: the run starts with nothing pending
    sampler = SyncWorker(SessionStore.from_url(url, prefix=prefix), adapter)  # only .lag() is called
    metas = [session_keys(prefix, uuid.UUID(s)).meta for s in sids]

    def totals() -> tuple[int, int]:
        pipe = raw.pipeline(transaction=False)
        for meta in metas:
            pipe.hmget(meta, "seq", "synced_seq")
        replies = pipe.execute()
        return sum(int(s or 0) for s, _ in replies), sum(int(d or 0) for _, d in replies)

    if mode == "thread":
        thread_worker = SessionStore.from_url(url, prefix=prefix, backing=adapter)  # starts its worker
        worker_desc = "the tiered store's write-behind thread, in the sampling process"
    elif mode == "cli":
        cmd = [sys.executable, "-m", "redis_sessions", "--url", url, "--prefix", prefix, "sync"]
        cmd += ["--backing", backings.url(kind, name), "--report", "3600"]
        clis = [subprocess.Popen(cmd) for _ in range(workers)]
        _wait_for_shares(raw, prefix, workers)
        worker_desc = f"{workers} x `redis-sessions sync` (default --interval 0.1), processes of their own"
    else:
        profiled = ProfiledWorker(SessionStore.from_url(url, prefix=prefix), adapter)
        worker_desc = "SyncWorker.sync_once every 0.1 s under cProfile, a thread in the sampling process"

    ctx = mp.get_context("spawn")
    barrier = ctx.Barrier(writers + 1)
    pipes, procs = [], []
    for w in range(writers):
        parent, child = ctx.Pipe(duplex=False)
        proc = ctx.Process(
            target=_writer_main, args=(url, prefix, sids, w, seconds, barrier, child), daemon=True
        )
        proc.start()
        pipes.append(parent)
        procs.append(proc)

    samples: list[dict[str, float]] = []
    appended0, delivered0 = totals()  # before the start line: the writers start at once
    barrier.wait(60)
    t0 = time.perf_counter()
    results: dict[int, dict[str, Any]] = {}
    next_at = t0
    while True:  # sample every ``every`` s (at once when a sample ran late) until all writers report
        next_at = max(next_at + every, time.perf_counter())
        while len(results) < writers:
            timeout = next_at - time.perf_counter()
            for ready in wait([p for w, p in enumerate(pipes) if w not in results], max(0.0, timeout)):
                w = next(w for w, p in enumerate(pipes) if p is ready)
                results[w] = pipes[w].recv()
            if timeout <= 0:
                break
        if len(results) == writers:
            break
        c0 = time.perf_counter()
        lag = sampler.lag()
        c1 = time.perf_counter()
        appended, delivered = totals()
        samples.append(
            {
                "t": c0 - t0,
                "lag_sessions": lag.sessions,
                "lag_messages": lag.messages,
                "lag_seconds": lag.seconds,
                "lag_call_ms": (c1 - c0) * 1e3,
                "appended": appended - appended0,
                "delivered": delivered - delivered0,
            }
        )
    t_stop = time.perf_counter()
    for proc in procs:
        proc.join(30)
    appended, delivered = totals()
    t_totals = time.perf_counter()  # the backlog left: appended - delivered, from here
    at_stop = sampler.lag()

    # Catch-up: what flush() takes once the writers have stopped.
    c0 = time.perf_counter()
    drained = drain_rate = None
    if thread_worker is not None:
        thread_worker.flush()
    else:
        deadline = c0 + 600
        while totals()[1] < appended and time.perf_counter() < deadline:  # the lone worker drains ...
            time.sleep(0.01)
        drained = time.perf_counter() - c0
        drain_rate = (appended - delivered) / max(1e-3, time.perf_counter() - t_totals)
        SyncWorker(creator, adapter).flush()  # ... then flush() confirms it
    catch_up = time.perf_counter() - c0
    _, delivered_end = totals()

    profile_text = passes = breakdown = None
    if profiled is not None:
        profiled.stop()
        passes = profiled.passes
        profile_text = _profile_text(profiled.profile, cfg.profile, name)
        breakdown = _breakdown(profiled.profile)
    if thread_worker is not None:
        thread_worker.close()
    for cli in clis:
        cli.terminate()
    for cli in clis:
        cli.wait(30)

    # Verify: the backing store holds every acknowledged message, once, each writer's in order.
    acked = [sum(r["acked"][k] for r in results.values()) for k in range(sessions)]
    stored = duplicates = 0
    in_order, short = True, 0
    for k, sid in enumerate(sids):
        state = adapter.load_session(sid)
        ids = [] if state is None else [m.id for m in state.messages]
        stored += len(ids)
        duplicates += len(ids) - len(set(ids))
        short += max(0, acked[k] - len(ids))
        per_writer: dict[str, list[int]] = {}
        for mid in ids:
            head, _, index = mid.partition("-")
            per_writer.setdefault(head, []).append(int(index))
        in_order &= all(seq == sorted(seq) for seq in per_writer.values())
    expected = sum(acked)
    redis_total = appended - appended0

    load_start, load_end = (
        f(r[k] for r in results.values()) / 1e9 for f, k in ((min, "start"), (max, "end"))
    )
    load = load_end - load_start
    during = [s for s in samples if s["t"] <= load_end - t0]
    lat = [x for r in results.values() for x in r["lat"]]
    writer_sample = sample(lat, int(load * 1e9), sum(r["cpu"] for r in results.values()))
    creator.close()
    sampler.close()
    raw.close()
    return {
        "worker": mode,
        "worker_desc": worker_desc,
        "worker_processes": workers if mode == "cli" else 1,
        "backing": kind,
        "writers": writers,
        "sessions": sessions,
        "seconds": load,
        "acked": expected,
        "append_rate": expected / load,
        "writer_p50_us": writer_sample.p50_us,
        "writer_p99_us": writer_sample.p99_us,
        "writer_cpu_us_per_op": writer_sample.cpu_us_per_op,
        "lag_messages": _percentiles([s["lag_messages"] for s in during]),
        "lag_seconds": _percentiles([s["lag_seconds"] for s in during]),
        "delivery_lag": _percentiles(_delivery_lag(during)),
        "sample_every": every,
        "lag_sessions": _percentiles([s["lag_sessions"] for s in during]),
        "lag_call_ms": _percentiles([s["lag_call_ms"] for s in during]),
        "delivery_rate": (delivered - delivered0) / (t_stop - t0),
        "lag_at_stop": {
            "sessions": at_stop.sessions,
            "messages": at_stop.messages,
            "seconds": at_stop.seconds,
        },
        "catch_up_s": catch_up,
        "drain_s": drained,
        "drain_rate": drain_rate,
        "backlog_at_stop": appended - delivered,
        "overall_rate": (delivered_end - delivered0) / (t_stop - t0 + catch_up),
        "stored": stored,
        "redis_seq_total": redis_total,
        "missing": short,
        "duplicates": duplicates,
        "in_order": in_order,
        "ok": stored == expected == redis_total and short == 0 and duplicates == 0 and in_order,
        "backlog_trend": _trend(during),
        "samples": samples,
        "passes": passes,
        "breakdown": breakdown,
        "profile": profile_text,
    }


def _breakdown(profile: cProfile.Profile) -> dict[str, float]:
    """Seconds of the worker thread by part: whole passes, session visits, the backing store's
    ``append_messages``, Redis round trips made by the visits, ``pending()`` (the dirty-index scan)."""
    stats: dict[tuple[str, int, str], Any] = pstats.Stats(profile).stats  # type: ignore[attr-defined]

    def find(file: str, func: str) -> list[Any]:
        return [v for k, v in stats.items() if k[0].endswith(file) and k[2] == func]

    def cum(file: str, func: str) -> float:
        return float(sum(v[3] for v in find(file, func)))

    def calls(file: str, func: str) -> int:
        return sum(v[1] for v in find(file, func))

    redis_visit = sum(
        ct
        for v in find("store.py", "_run")
        for caller, (_, _, _, ct) in v[4].items()
        if caller[2] == "sync_session"
    )
    visits = calls("writebehind.py", "sync_session")
    backing = cum("sqlite.py", "append_messages") + cum("postgres.py", "append_messages")
    return {
        "passes": calls("writebehind.py", "sync_once"),
        "pass_s": cum("writebehind.py", "sync_once"),
        "visits": visits,
        "visit_ms": cum("writebehind.py", "sync_session") / max(1, visits) * 1e3,
        "backing_s": backing,
        "redis_visit_s": redis_visit,
        "pending_s": cum("writebehind.py", "pending"),
    }


def _profile_text(profile: cProfile.Profile, path: str | None, name: str) -> str:
    if path:
        profile.dump_stats(f"{path}.{name}.pstats" if not path.endswith(".pstats") else path)
    out = io.StringIO()
    stats = pstats.Stats(profile, stream=out)
    stats.sort_stats("tottime").print_stats(15)
    stats.sort_stats("cumulative").print_stats(25)
    return out.getvalue()


# -- 3. an idle worker's pass against the size of the keyspace ----------------------------------


def scan_cost(cfg: Config, backings: Backings, sizes: Sequence[int]) -> list[dict[str, Any]]:
    """What one pass of a worker with nothing to deliver costs as Redis holds more keys (of any
    kind): its own redis-server (and with ``--cluster`` the tests' 3+3 cluster), keys made by
    ``DEBUG POPULATE``, ten clean durable sessions, no load. ``pending()`` asks the dirty indexes
    by name, so it should not grow with the keyspace, and no SCAN should reach the server."""
    out = []
    with RedisServer(extra_args=["--enable-debug-command", "local"]) as srv:
        client = redis.Redis.from_url(srv.url)
        out += _idle_passes("one server", [redis.Redis.from_url(srv.url)], client, backings, sizes)
    if cfg.cluster:
        sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
        from tests.servers import RedisClusterServers  # the tests' own cluster: real processes

        with RedisClusterServers(node_args=["--enable-debug-command", "local"]) as cluster:
            nodes = [redis.Redis(host=h, port=p) for h, p in cluster.startup_nodes]
            client = redis.RedisCluster.from_url(cluster.url)
            out += _idle_passes("cluster 3+3", nodes, client, backings, sizes)
    return out


def _idle_passes(
    where: str,
    nodes: list[redis.Redis],
    client: redis.Redis | redis.RedisCluster,
    backings: Backings,
    sizes: Sequence[int],
) -> list[dict[str, Any]]:
    adapter = backings.make("SQLite", f"scan-{uuid.uuid4().hex[:6]}")
    store = SessionStore(client, prefix="rsscan", backing=adapter)
    worker = SyncWorker(store, adapter)
    sids = [store.create(model="bench") for _ in range(10)]
    worker.flush()
    primaries = [n for n in nodes if n.info("replication")["role"] == "master"]

    def scans() -> tuple[int, int]:
        stats = [n.info("commandstats").get("cmdstat_scan", {"calls": 0, "usec": 0}) for n in primaries]
        return sum(x["calls"] for x in stats), sum(x["usec"] for x in stats)

    def dbsize() -> int:
        return sum(n.dbsize() for n in primaries)

    out = []
    for size in sorted(sizes):
        have = dbsize()
        if size > have:
            share = -(-(size - have) // len(primaries))
            for i, node in enumerate(primaries):
                node.execute_command("DEBUG", "POPULATE", share, f"filler{size}-{i}")  # type: ignore[no-untyped-call]
        calls0, usec0 = scans()
        pending, idle = [], []
        for _ in range(7):
            t0 = time.perf_counter()
            worker.pending()
            t1 = time.perf_counter()
            worker.sync_once()
            t2 = time.perf_counter()
            pending.append(t1 - t0)
            idle.append(t2 - t1)
        calls1, usec1 = scans()
        msg = make_messages(SEED + 3, 1)[0]
        store.append(sids[0], msgspec.structs.replace(msg, id=f"scan-{size}"))
        t0 = time.perf_counter()
        worker.sync_once()
        one = time.perf_counter() - t0
        t0 = time.perf_counter()
        worker.lag()
        lag_s = time.perf_counter() - t0
        out.append(
            {
                "where": where,
                "keys": dbsize(),
                "pending_ms": statistics.median(pending) * 1e3,
                "sync_once_idle_ms": statistics.median(idle) * 1e3,
                "scan_calls_per_pass": (calls1 - calls0) / 7,
                "server_scan_ms_per_pass": (usec1 - usec0) / 7 / 1e3,
                "sync_once_one_dirty_ms": one * 1e3,
                "lag_call_ms": lag_s * 1e3,
            }
        )
    client.close()
    for node in nodes:
        node.close()
    return out


# -- 4. the fleet flush: one message to each of many sessions, then flush() -----------------------


def fleet_child(url: str, prefix: str, path: str, n: int) -> dict[str, Any]:
    """In a process of its own (``--fleet-child``, so an older checkout of the library can run it
    too): a tiered store on SQLite (its worker thread running throughout) creates ``n`` sessions and
    flushes them (untimed: every header in the record), then appends one message to each, timed,
    then ``flush()``, timed. Every session must then hold its message in the record."""
    msg = make_messages(SEED + 11, 1)[0]
    replace = msgspec.structs.replace
    adapter = SQLiteAdapter(Path(path))
    with SessionStore.from_url(url, prefix=prefix, backing=adapter) as store:
        sids = [store.create(model="bench") for _ in range(n)]
        store.flush()
        t0 = time.perf_counter()
        for i, sid in enumerate(sids):
            store.append(sid, replace(msg, id=f"fleet-{i:06d}"))
        t1 = time.perf_counter()
        store.flush()
        t2 = time.perf_counter()
        stored = 0
        for sid in sids:
            state = adapter.load_session(sid)
            stored += 0 if state is None else len(state.messages)
    adapter.close()
    return {
        "write_s": t1 - t0,
        "flush_s": t2 - t1,
        "stored": stored,
        "n": n,
        "library": str(Path(redis_sessions.__file__).resolve().parent.parent),
    }


def fleet_flush(url: str, cfg: Config, backings: Backings) -> dict[str, Any]:
    """Part 4: ``fleet_child`` in a subprocess per round, for this checkout and (``--before``) an
    older one, interleaved with the order rotated; medians of the times and of flush/write."""
    libs = {"this checkout": None} | ({f"before ({cfg.before})": cfg.before} if cfg.before else {})
    runs: dict[str, list[dict[str, Any]]] = {label: [] for label in libs}
    labels = list(libs)
    bench_dir = str(Path(__file__).resolve().parent)
    for r in range(cfg.rounds):
        for label in labels[r % len(labels) :] + labels[: r % len(labels)]:
            env = dict(os.environ)
            lib = libs[label]
            env["PYTHONPATH"] = os.pathsep.join([lib, bench_dir] if lib else [bench_dir])
            prefix, path = f"fleet-{uuid.uuid4().hex[:8]}", backings.path(f"fleet-{uuid.uuid4().hex[:8]}")
            cmd = [sys.executable, __file__, "--fleet-child", url, prefix, str(path), str(cfg.fleet)]
            out = subprocess.run(cmd, env=env, capture_output=True, text=True, check=False)
            if out.returncode != 0:
                raise RuntimeError(f"fleet child ({label}) failed:\n{out.stderr}")
            got = json.loads(out.stdout.strip().splitlines()[-1])
            got["ratio"] = got["flush_s"] / got["write_s"]
            runs[label].append(got)
            print(f"   {label}: write {got['write_s']:.2f} s, flush {got['flush_s']:.2f} s", file=sys.stderr)
    rows = []
    for label, got in runs.items():
        rows.append(
            {
                "library": label,
                "path": got[0]["library"],
                "sessions": cfg.fleet,
                "write_s": statistics.median(g["write_s"] for g in got),
                "flush_s": statistics.median(g["flush_s"] for g in got),
                "ratio": statistics.median(g["ratio"] for g in got),
                "ratios": [g["ratio"] for g in got],
                "all_stored": all(g["stored"] == g["n"] for g in got),
            }
        )
    return {"rounds": cfg.rounds, "rows": rows}


# -- 5. a sustained fleet: many sessions, each appended to once per round ---------------------------


def plain_run(url: str, prefix: str, sessions: int, writers: int, seconds: float) -> dict[str, Any]:
    """The same writers on the same number of sessions, made by a plain store (not durable)."""
    with SessionStore.from_url(url, prefix=prefix) as store:
        sids = [str(store.create(model="bench")) for _ in range(sessions)]
    results = _run_writers(url, prefix, sids, writers, seconds)
    acked = sum(sum(r["acked"]) for r in results)
    load = (max(r["end"] for r in results) - min(r["start"] for r in results)) / 1e9
    with SessionStore.from_url(url, prefix=prefix) as store:
        for sid in sids:
            store.delete(sid)
    return {"acked": acked, "seconds": load, "append_rate": acked / load}


def _run_writers(url: str, prefix: str, sids: list[str], writers: int, seconds: float) -> list[Any]:
    ctx = mp.get_context("spawn")
    barrier = ctx.Barrier(writers + 1)
    pipes, procs = [], []
    for w in range(writers):
        parent, child = ctx.Pipe(duplex=False)
        proc = ctx.Process(target=_writer_main, args=(url, prefix, sids, w, seconds, barrier, child))
        proc.daemon = True
        proc.start()
        pipes.append(parent)
        procs.append(proc)
    barrier.wait(60)
    results = [p.recv() for p in pipes]
    for proc in procs:
        proc.join(30)
    return results


def sustained(url: str, prefix: str, cfg: Config, backings: Backings) -> list[dict[str, Any]]:
    """Part 5: ``--fleet-writers`` processes append to ``--fleet-sessions`` sessions in turn (each
    once per round) for ``--fleet-seconds``: plain first, then durable on each backing store, a
    ``redis-sessions sync`` process delivering (a thread in this process would share its GIL with
    the sampling, which reads every session); the delivery rate against the plain rate of this run."""
    n, writers, seconds = cfg.fleet_sessions, cfg.fleet_writers, cfg.fleet_seconds
    print(f"5. sustained fleet: plain, {writers} writers x {seconds:g} s, {n} sessions ...", file=sys.stderr)
    plain = plain_run(url, f"{prefix}-sp", n, writers, seconds)
    out = []
    for kind in backings.kinds:
        print(
            f"5. sustained fleet: {kind}, {writers} writers x {seconds:g} s, {n} sessions ...",
            file=sys.stderr,
        )
        r = lag_run(
            url, f"{prefix}-s{kind[0]}", cfg, backings, kind, "cli", n, writers=writers, seconds=seconds
        )
        r["plain_rate"] = plain["append_rate"]
        r["plain"] = plain
        out.append(r)
    return out


# -- 6. 1, 2 and 3 worker processes under the same load -----------------------------------------------


def worker_scaling(url: str, prefix: str, cfg: Config, backings: Backings) -> list[dict[str, Any]]:
    """Part 6: the load of part 5 (for ``--scale-seconds``) with 1, 2 and 3 ``redis-sessions sync``
    processes, on each record of the run (SQLite; PostgreSQL with ``--postgres``), started and
    sharing the slot groups before the writers start; then the backlog left when the writers stop
    is drained by the same workers. Interleaved rounds, the order of worker counts rotated."""
    counts = list(cfg.scale_workers)
    rows = []
    for kind in backings.kinds:
        runs: dict[int, list[dict[str, Any]]] = {k: [] for k in counts}
        for r in range(cfg.scale_rounds):
            for k in counts[r % len(counts) :] + counts[: r % len(counts)]:
                what = (
                    f"{k} worker process(es) on {kind}, {cfg.fleet_writers} writers x {cfg.scale_seconds:g} s"
                )
                print(f"6. workers: round {r + 1}, {what} ...", file=sys.stderr)
                got = lag_run(
                    url,
                    f"{prefix}-w{kind[0]}{k}-{r}",
                    cfg,
                    backings,
                    kind,
                    "cli",
                    cfg.fleet_sessions,
                    writers=cfg.fleet_writers,
                    seconds=cfg.scale_seconds,
                    workers=k,
                )
                got.pop("samples")
                runs[k].append(got)
        for k, got in runs.items():

            def med(f: Callable[[dict[str, Any]], float], got: list[dict[str, Any]] = got) -> float:
                return statistics.median(f(g) for g in got)

            rows.append(
                {
                    "record": kind,
                    "workers": k,
                    "rounds": len(got),
                    "append_rate": med(lambda g: g["append_rate"]),
                    "delivery_rate": med(lambda g: g["delivery_rate"]),
                    "lag_p50_s": med(lambda g: g["delivery_lag"]["p50"]),
                    "lag_p99_s": med(lambda g: g["delivery_lag"]["p99"]),
                    "backlog_at_stop": med(lambda g: g["backlog_at_stop"]),
                    "drain_s": med(lambda g: g["drain_s"] or 0.0),
                    "drain_rate": med(lambda g: g["drain_rate"] or 0.0),
                    "overall_rate": med(lambda g: g["overall_rate"]),
                    "ok": all(g["ok"] for g in got),
                }
            )
    return rows


# -- report -----------------------------------------------------------------------------------------


def _table(title: str, head: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    try:
        from rich.console import Console
        from rich.table import Table
    except ImportError:
        widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(head)]
        lines = [title, "  ".join(h.rjust(w) for h, w in zip(head, widths, strict=True))]
        lines += ["  ".join(c.rjust(w) for c, w in zip(r, widths, strict=True)) for r in rows]
        return "\n".join(lines)
    table = Table(title=title, title_justify="left")
    for i, h in enumerate(head):
        table.add_column(h, justify="left" if i == 0 else "right")
    for r in rows:
        table.add_row(*r)
    console = Console(width=200, record=True, file=io.StringIO())
    console.print(table)
    return console.export_text().rstrip()


def report(results: dict[str, Any]) -> str:
    m, cfg = results["machine"], results["config"]
    out = [
        "",
        f"redis-sessions @ {m['commit']} (library {m['library_commit']}) — {m['date']}",
        f"{m['nproc']} CPU ({m['cpu']}), load {m['loadavg'][0]:.2f}; Python {m['python']}, redis-server "
        f"{m['redis_server']} [{m['server']}], redis-py {m['redis_py']} (hiredis {m['hiredis']}); "
        f"SQLite {m['sqlite']} synchronous={cfg['synchronous']} on {m['tmp_fs']}",
        "",
    ]
    if results["append"]:
        rows = []
        for r in results["append"]:
            ratio = "" if r["system"] == r["baseline"] else f"{r['vs_plain']:.2f}x"
            spread = (
                ""
                if r["system"] == r["baseline"]
                else (f"{min(r['vs_plain_rounds']):.2f}-{max(r['vs_plain_rounds']):.2f}")
            )
            flush = "" if r["flush_ms"] is None else f"{r['flush_ms']:,.0f}"
            rows.append(
                [
                    r["system"],
                    f"{r['ops_per_s']:,.0f}",
                    f"{r['p50_us']:,.0f}",
                    f"{r['p99_us']:,.0f}",
                    f"{r['cpu_us_per_op']:,.0f}",
                    f"{r['thread_cpu_us_per_op']:,.0f}",
                    ratio,
                    spread,
                    flush,
                    "yes" if r["all_stored"] else "NO",
                ]
            )
        head = ["system", "ops/s", "p50 µs", "p99 µs", "CPU µs/op", "loop CPU", "vs plain", "(rounds)"]
        head += ["flush ms", "all stored"]
        title = (
            f"1. Sequential appends, {cfg['ops']:,} per system per round; medians of {cfg['rounds']} "
            f"interleaved rounds ({results['append_seconds']:.0f} s)"
        )
        out += [_table(title, head, rows)]
        out += [
            "   CPU µs/op: the whole process (a tiered store's write-behind thread included); loop CPU: "
            "the appending thread alone.",
            "   flush ms: flush() right after the loop (what the worker had not delivered yet); then the "
            "backing store must hold all n messages.",
            "",
        ]
    if results["lag"]:
        out += [
            _table(
                _lag_title(results["lag"]),
                ["", *(_lag_head(r) for r in results["lag"])],
                _lag_rows(results["lag"]),
            )
        ]
        out += [
            "   worker: thread = the tiered store's write-behind thread (from_url(url, backing=...)) in the",
            "   process that samples; cli = `redis-sessions sync`, a process of its own; profiled = what the",
            "   thread does (sync_once every 0.1 s) under cProfile. lag: SyncWorker.lag() every 0.25 s.",
            "   catch-up: thread: flush() once the writers stop; cli: the lone worker drains the backlog,",
            "   then flush() (which confirms it).",
            "",
        ]
    if results["scan"]:
        rows = [
            [
                x["where"],
                f"{x['keys']:,}",
                f"{x['pending_ms']:,.2f}",
                f"{x['sync_once_idle_ms']:,.2f}",
                f"{x['scan_calls_per_pass']:,.0f}",
                f"{x['server_scan_ms_per_pass']:,.2f}",
                f"{x['sync_once_one_dirty_ms']:,.1f}",
                f"{x['lag_call_ms']:,.2f}",
            ]
            for x in results["scan"]
        ]
        head = ["", "keys in Redis", "pending() ms", "sync_once ms, idle", "SCAN calls", "server SCAN ms"]
        head += ["sync_once, 1 dirty", "lag() ms"]
        title = "3. One pass of an idle worker (nothing or one session pending) against the keyspace's size"
        out += [_table(title, head, rows)]
        out += [
            "   per pass, medians of 7; SCAN calls and server SCAN ms from INFO commandstats (primaries).",
            "",
        ]
    out += _report_fleet(results)
    for r in results["lag"]:
        if r["profile"]:
            out += [f"cProfile of the worker thread ({_lag_head(r)}):", r["profile"]]
    return "\n".join(out)


def _report_fleet(results: dict[str, Any]) -> list[str]:
    out: list[str] = []
    if results["fleet"]:
        f = results["fleet"]
        rows = [
            [
                r["library"],
                f"{r['write_s']:.2f}",
                f"{r['flush_s']:.2f}",
                f"{r['ratio']:.2f}x",
                " ".join(f"{x:.2f}" for x in r["ratios"]),
                "yes" if r["all_stored"] else "NO",
            ]
            for r in f["rows"]
        ]
        n = f["rows"][0]["sessions"]
        title = (
            f"4. Fleet flush: one message appended to each of {n:,} durable sessions by one process "
            f"(tiered store on SQLite, its worker running), then flush(); medians of {f['rounds']} "
            "interleaved rounds"
        )
        head = ["library", "writing s", "flush() s", "flush / writing", "(rounds)", "all stored"]
        out += [_table(title, head, rows)]
        out += [
            "   each round a fresh process, prefix and SQLite file; the sessions are created and flushed",
            "",
        ]
    if results["sustained"]:
        runs = results["sustained"]
        r0 = runs[0]
        title = (
            f"5. Sustained fleet: {r0['writers']} writer processes append to {r0['sessions']:,} sessions "
            f"in turn for {r0['seconds']:.0f} s; plain append rate {r0['plain_rate']:,.0f}/s "
            f"({r0['plain']['acked']:,} appends, same run)"
        )
        rows = _lag_rows(runs)
        rows.insert(
            2, ["vs plain append rate", *(f"{r['append_rate'] / r['plain_rate']:.2f}x" for r in runs)]
        )
        rows.insert(
            5,
            [
                "delivered vs plain append rate",
                *(f"{r['delivery_rate'] / r['plain_rate']:.2f}x" for r in runs),
            ],
        )
        rows.insert(
            9,
            [
                "lag, 2nd quarter -> last quarter (msgs; s)",
                *(
                    f"{t['q2_messages']:,.0f} -> {t['q4_messages']:,.0f}; "
                    f"{t['q2_seconds']:.2f} -> {t['q4_seconds']:.2f}"
                    for t in (r["backlog_trend"] for r in runs)
                ),
            ],
        )
        out += [_table(title, ["", *(f"{r['backing']}, redis-sessions sync" for r in runs)], rows)]
        out += [
            "   lag, seconds: SyncWorker.lag(), the age of the oldest dirty-index entry; delivery lag: the",
            "   time shift between the appended and delivered curves (how old what is being delivered is).",
            "",
        ]
    if results["workers"]:
        rows = [
            [
                r["record"],
                str(r["workers"]),
                f"{r['append_rate']:,.0f}",
                f"{r['delivery_rate']:,.0f}",
                f"{r['lag_p50_s']:.2f} / {r['lag_p99_s']:.2f}",
                f"{r['backlog_at_stop']:,.0f}",
                f"{r['drain_s']:.2f}",
                f"{r['drain_rate']:,.0f}",
                f"{r['overall_rate']:,.0f}",
                "yes" if r["ok"] else "NO",
            ]
            for r in results["workers"]
        ]
        r0 = results["workers"][0]
        title = (
            f"6. redis-sessions sync processes under the load of part 5 for "
            f"{results['config']['scale_seconds']:g} s; medians of {r0['rounds']} interleaved rounds"
        )
        head = [
            "record",
            "workers",
            "appends/s",
            "delivered/s",
            "delivery lag p50 / p99 s",
            "backlog at stop",
        ]
        head += ["drain s"]
        head += ["drain msgs/s", "load + drain msgs/s", "all stored"]
        out += [_table(title, head, rows)]
        out += [
            "   the workers share the 64 slot groups before the writers start; drain: the backlog left",
            "",
        ]
    return out


def _lag_title(runs: Sequence[dict[str, Any]]) -> str:
    r = runs[0]
    return (
        f"2. Sync lag: {r['writers']} writer processes append for {r['seconds']:.0f} s; one worker delivers"
    )


def _lag_head(r: dict[str, Any]) -> str:
    return f"{r['worker']}, {r['backing']}, {r['sessions']:,} sessions"


def _lag_rows(runs: list[dict[str, Any]]) -> list[list[str]]:
    def row(label: str, cell: Callable[[dict[str, Any]], str]) -> list[str]:
        return [label, *(cell(r) for r in runs)]

    def pct(key: str, fmt: str) -> Callable[[dict[str, Any]], str]:
        return lambda r: " / ".join(format(r[key][q], fmt) for q in ("p50", "p99", "max"))

    def catch_up(r: dict[str, Any]) -> str:
        if r["drain_s"] is None:
            return f"flush() {r['catch_up_s']:.2f} s"
        return f"drain {r['drain_s']:.2f} s + flush() {r['catch_up_s'] - r['drain_s']:.2f} s"

    def stop(r: dict[str, Any]) -> str:
        at = r["lag_at_stop"]
        return f"{at['messages']:,} msgs, {at['sessions']} sessions, {at['seconds']:.2f} s"

    def check(r: dict[str, Any]) -> str:
        order = "in order" if r["in_order"] else "ORDER BROKEN"
        verdict = "ok" if r["ok"] else "WRONG"
        return f"{r['stored']:,}/{r['acked']:,}, {r['duplicates']} dup, {order}: {verdict}"

    rows = [
        row("appends acknowledged", lambda r: f"{r['acked']:,}"),
        row("append rate, all writers (/s)", lambda r: f"{r['append_rate']:,.0f}"),
        row("append p50 / p99 µs", lambda r: f"{r['writer_p50_us']:,.0f} / {r['writer_p99_us']:,.0f}"),
        row("delivery rate during load (msgs/s)", lambda r: f"{r['delivery_rate']:,.0f}"),
        row("lag, messages: p50 / p99 / max", pct("lag_messages", ",.0f")),
        row("lag, seconds: p50 / p99 / max", pct("lag_seconds", ".2f")),
        row("delivery lag, seconds: p50 / p99 / max", pct("delivery_lag", ".2f")),
        row(
            "lag, sessions: p50 / max",
            lambda r: f"{r['lag_sessions']['p50']:,.0f} / {r['lag_sessions']['max']:,.0f}",
        ),
        row("lag when the writers stopped", stop),
        row("catch-up after the writers stop", catch_up),
        row("delivery rate, load + catch-up", lambda r: f"{r['overall_rate']:,.0f}"),
        row("lag() call ms: p50 / p99 / max", pct("lag_call_ms", ".0f")),
        row("backing store holds (acknowledged)", check),
    ]
    if any(r["passes"] for r in runs):
        rows.append(row("worker passes with work", lambda r: _passes(r["passes"])))
        rows.append(row("  where the pass time went", lambda r: _where(r.get("breakdown"))))
    return rows


def _passes(passes: list[tuple[float, int, int]] | None) -> str:
    busy = [p for p in passes or [] if p[1]]
    if not busy:
        return ""
    seconds = statistics.median(p[0] for p in busy)
    visited = statistics.median(p[1] for p in busy)
    per = sum(p[2] for p in busy) / sum(p[1] for p in busy)
    return f"{len(busy)}: {seconds:.2f} s, {visited:.0f} sessions, {per:.0f} msgs/session (p50, mean)"


def _where(b: dict[str, float] | None) -> str:
    if not b:
        return ""
    visits = b["visits"] or 1
    return (
        f"per session visit {b['visit_ms']:.1f} ms: backing store {b['backing_s'] / visits * 1e3:.1f} ms, "
        f"Redis {b['redis_visit_s'] / visits * 1e3:.1f} ms; "
        f"pending() {b['pending_s'] / b['passes'] * 1e3:.0f} ms/pass"
    )


# -- command line ---------------------------------------------------------------------------------


def parse_args(argv: Sequence[str] | None) -> tuple[argparse.Namespace, Config]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--quick", action="store_true", help="smoke run: 3 rounds of 300, 4 s of load")
    parser.add_argument("--rounds", type=int, help="interleaved rounds of part 1 (default 5; --quick 3)")
    parser.add_argument("--ops", type=int, help="appends per system per round (default 5000; --quick 300)")
    parser.add_argument("--writers", type=int, default=4, help="writer processes of part 2 (default 4)")
    parser.add_argument("--seconds", type=float, help="seconds of load in part 2 (default 10; --quick 4)")
    parser.add_argument(
        "--sessions", default="100", help="durable sessions of part 2; a comma list runs each (default 100)"
    )
    parser.add_argument(
        "--worker",
        choices=("thread", "cli", "both"),
        default="both",
        help="who delivers in part 2: the tiered store's thread, `redis-sessions sync`, or a run of each",
    )
    parser.add_argument(
        "--synchronous", choices=("FULL", "NORMAL"), default="FULL", help="SQLiteAdapter's synchronous"
    )
    parser.add_argument("--postgres", metavar="DSN", help="also PostgreSQL (a throw-away schema)")
    parser.add_argument("--skip-appends", action="store_true", help="part 2 only")
    parser.add_argument("--skip-lag", action="store_true", help="part 1 only")
    parser.add_argument(
        "--profile",
        metavar="PATH",
        help="part 2 with the worker under cProfile (a thread doing what the tiered store's does); "
        "prints the top functions and writes PATH.<run>.pstats",
    )
    parser.add_argument(
        "--scan-keys",
        default="",
        metavar="N,N",
        help="part 3: an idle worker's pass with this many keys in Redis (e.g. 0,100000,1000000)",
    )
    parser.add_argument(
        "--cluster", action="store_true", help="part 3 on the tests' 3+3 cluster too (tests/servers.py)"
    )
    parser.add_argument(
        "--fleet", type=int, help="part 4: sessions of the fleet flush (default 5000; --quick 1000; 0 skips)"
    )
    parser.add_argument(
        "--before",
        metavar="PATH",
        help="part 4: also run it with the library of this checkout (e.g. a worktree of an older commit)",
    )
    parser.add_argument(
        "--fleet-sessions",
        type=int,
        help="parts 5 and 6: sessions each appended to once per round (default 10000; --quick 2000; 0 skips)",
    )
    parser.add_argument("--fleet-writers", type=int, default=2, help="parts 5 and 6: writer processes (2)")
    parser.add_argument(
        "--fleet-seconds", type=float, help="part 5: seconds of sustained load (default 60; --quick 8)"
    )
    parser.add_argument(
        "--scale-workers", default="1,2,3", help="part 6: counts of `redis-sessions sync` processes"
    )
    parser.add_argument("--scale-seconds", type=float, help="part 6: seconds of load (default 20; --quick 5)")
    parser.add_argument("--scale-rounds", type=int, help="part 6: interleaved rounds (default 3; --quick 1)")
    parser.add_argument("--json", metavar="PATH", help="also write the figures as JSON")
    args = parser.parse_args(argv)
    rounds = args.rounds or (3 if args.quick else 5)
    ops = args.ops or (300 if args.quick else 5000)
    seconds = args.seconds or (4.0 if args.quick else 10.0)
    try:
        sessions = tuple(int(x) for x in args.sessions.split(","))
        scan_keys = tuple(int(x) for x in args.scan_keys.split(",") if x)
        scale_workers = tuple(int(x) for x in args.scale_workers.split(",") if x)
    except ValueError:
        parser.error("--sessions, --scan-keys and --scale-workers take a number or a comma list of numbers")
    if rounds < 1 or ops < 10 or args.writers < 1 or min(sessions) < 1 or seconds <= 0:
        parser.error("need --rounds >= 1, --ops >= 10, --writers >= 1, --sessions >= 1, --seconds > 0")
    workers = ("thread", "cli") if args.worker == "both" else (args.worker,)
    if args.profile:
        workers = ("profiled",)
    cfg = Config(
        rounds,
        ops,
        args.writers,
        seconds,
        sessions,
        workers,
        args.synchronous,
        args.postgres,
        args.profile,
        scan_keys,
        cluster=args.cluster,
        fleet=args.fleet if args.fleet is not None else (1000 if args.quick else 5000),
        before=str(Path(args.before).resolve()) if args.before else None,
        fleet_sessions=args.fleet_sessions
        if args.fleet_sessions is not None
        else (2000 if args.quick else 10000),
        fleet_writers=args.fleet_writers,
        fleet_seconds=args.fleet_seconds or (8.0 if args.quick else 60.0),
        scale_workers=scale_workers,
        scale_seconds=args.scale_seconds or (5.0 if args.quick else 20.0),
        scale_rounds=args.scale_rounds or (1 if args.quick else 3),
    )
    return args, cfg


def _filesystem(path: str) -> str:
    try:
        out = subprocess.run(["df", "-T", path], capture_output=True, text=True, check=True).stdout
        return out.splitlines()[1].split()[1]
    except (OSError, subprocess.CalledProcessError, IndexError):
        return "-"


def main(argv: Sequence[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    if argv[:1] == ["--fleet-child"]:  # part 4's process: URL PREFIX PATH N
        url, prefix, path, n = argv[1:5]
        print(json.dumps(fleet_child(url, prefix, path, int(n))))
        return 0
    args, cfg = parse_args(argv)
    import sqlite3

    backings = Backings(cfg)
    prefix = f"rsdur-{uuid.uuid4().hex[:8]}"
    results: dict[str, Any] = {"append": [], "lag": [], "scan": [], "append_seconds": 0.0}
    results |= {"fleet": None, "sustained": [], "workers": []}
    t_start = time.monotonic()
    try:
        with RedisServer() as srv:
            raw = redis.Redis.from_url(srv.url)
            source = f"own redis-server on {srv.host}:{srv.port}, no persistence"
            info = machine(raw, source, "redis-sessions", redis_sessions.__file__)
            info |= {"msgspec": version("msgspec"), "sqlite": sqlite3.sqlite_version}
            info["tmp_fs"] = f"{_filesystem(backings.tmp.name)} ({backings.tmp.name})"
            raw.close()
            if not args.skip_appends:
                print(f"1. appends: {cfg.rounds} rounds of {cfg.ops} ...", file=sys.stderr)
                bench = AppendBench(srv.url, prefix, cfg, backings)
                try:
                    t0 = time.monotonic()
                    run([bench.case], cfg.rounds)
                    results["append_seconds"] = time.monotonic() - t0
                finally:
                    bench.close()
                results["append"] = append_rows(bench.case)
            if not args.skip_lag:
                # `redis-sessions sync --backing postgresql://...` writes to the default schema, not
                # this run's throw-away one: the cli worker runs against SQLite only.
                runs = [
                    (k, n, m)
                    for k in backings.kinds
                    for n in cfg.sessions
                    for m in cfg.workers
                    if not (m == "cli" and k == "PostgreSQL")
                ]
                for kind, sessions, mode in runs:
                    what = f"{cfg.writers} writers x {cfg.seconds:g} s, {sessions} sessions, {mode}, {kind}"
                    print(f"2. lag: {what} ...", file=sys.stderr)
                    lag_prefix = f"{prefix}-lag-{mode}-{kind[0]}{sessions}"
                    results["lag"].append(lag_run(srv.url, lag_prefix, cfg, backings, kind, mode, sessions))
            if cfg.fleet:
                print(f"4. fleet flush: {cfg.fleet} sessions, {cfg.rounds} rounds ...", file=sys.stderr)
                results["fleet"] = fleet_flush(srv.url, cfg, backings)
            if cfg.fleet_sessions:
                results["sustained"] = sustained(srv.url, prefix, cfg, backings)
                if cfg.scale_workers:
                    results["workers"] = worker_scaling(srv.url, prefix, cfg, backings)
        if cfg.scan_keys:
            print(f"3. idle pass against keyspace sizes {cfg.scan_keys} ...", file=sys.stderr)
            results["scan"] = scan_cost(cfg, backings, cfg.scan_keys)
    finally:
        backings.close()
    results |= {
        "machine": info,
        "config": asdict(cfg)
        | {"seed": SEED, "elapsed_s": round(time.monotonic() - t_start)}
        | message_sizes("msgpack"),
    }
    print(report(results))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=1)
            f.write("\n")
    ok = all(r["all_stored"] for r in results["append"]) and all(r["ok"] for r in results["lag"])
    ok &= all(r["ok"] for r in results["sustained"]) and all(r["ok"] for r in results["workers"])
    ok &= results["fleet"] is None or all(r["all_stored"] for r in results["fleet"]["rows"])
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
