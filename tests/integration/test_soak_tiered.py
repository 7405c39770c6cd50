"""The tiered soak (issue #13): the soak's writers on tiered stores backed by one SQLite record, while
write-behind workers are SIGKILLed mid-delivery and stores of another record try to deliver.

On a private ``redis-server`` (``appendonly yes``, ``appendfsync always``), for ``SHORT_SECONDS``:

- ``WRITERS`` processes with a tiered store each (``from_url(..., backing=SQLiteAdapter(record))``;
  sync and async fronts, ``PROXIED`` of them through the proxy that loses replies) run a seeded mix
  of appends, batch appends, reads and, now and then, ``flush()`` on ``SESSIONS`` durable sessions;
  each store's own write-behind thread delivers meanwhile. A write that raised is resent with the
  same ids; after a flush returns, the record must hold every write acknowledged to that writer.
- ``DELIVERY_WORKERS`` processes run ``SyncWorker(...).bind()`` passes and ``COMMANDS`` run
  ``redis-sessions sync --backing sqlite:///...``; a killer thread SIGKILLs one at random every
  ``KILL_GAP`` seconds (a worker process when it is inside the record's transaction or between its
  commit and its mark in Redis, as it says through shared memory) and starts it again.
- A stray opener opens tiered stores (sync and async) on *another* SQLite file over and over: each
  must get ``BackingMismatch`` (or, opened while Redis could not be asked, stop at its worker's
  first pass); a stray worker of the other file that never calls ``bind()`` (a process of an older
  version) delivers every dirty session throughout and must deliver nothing.
- Faults, one every ``FAULT_GAP`` s: ``CLIENT KILL``, ``SCRIPT FLUSH``, ``CLIENT PAUSE``, SIGKILL of
  the server and a restart (the AOF replays), lost replies at the proxy, and *eviction*: clean
  sessions' keys deleted together, as ``volatile-lru`` may (a dirty session carries no TTL and is
  never taken); the next call reads the session back through the record.

Then: a final ``flush()``, and the audit compares the record with Redis: for every session the same
message ids in the same order and the same seq, ``synced_seq == seq``, nothing left dirty; every
acknowledged message stored once at the seq its call returned, each writer's order kept, every read
a slice of the final list (``soak_support.audit``); the other file holds nothing; and every
session, evicted after the flush, reads back whole through a tiered store. Figures with ``pytest -s``.

The long form: ``SOAK_SECONDS=600 .venv/bin/pytest -m soak -s tests/integration/test_soak_tiered.py``;
``SOAK_SEED`` replays a seed's faults, kills and operations (timing still varies).
"""

from __future__ import annotations

import json
import multiprocessing
import os
import random
import re
import subprocess
import sys
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from redis_sessions import SessionStore
from redis_sessions.embedded import RedisServer
from redis_sessions.persistence import SQLiteAdapter
from tests.integration.durable_support import require_redis_server
from tests.integration.faults import LossyProxy
from tests.integration.soak_support import AOF, Injector, audit, line, total
from tests.integration.soak_tiered_support import (
    Evictor,
    Killer,
    Slot,
    compare,
    kind_of,
    other_holds,
    read_back,
)
from tests.integration.soak_tiered_workers import (
    TieredPlan,
    delivery_worker,
    stray_opener,
    stray_worker,
    tiered_writer,
)
from tests.support import unique_prefix

WRITERS = 6  # even: sync front, odd: async
PROXIED = (0, 1)  # writers through the proxy that loses replies (and so do their worker threads)
SESSIONS = 48
DELIVERY_WORKERS = 2
COMMANDS = 1  # `redis-sessions sync` processes
SHORT_SECONDS = 20.0
LONG_SECONDS = float(os.environ.get("SOAK_SECONDS") or 0)
OPS_PER_SECOND = 400
GRACE = 20.0
SOCKET_TIMEOUT = 1.0
TTL = 3600.0  # clean sessions carry it: what makes them evictable
FINAL_FLUSH = 120.0
FAULTS = {  # kind -> weight; the first faults go through every kind once, shuffled
    "client-kill": 3,
    "script-flush": 2,
    "client-pause": 2,
    "restart": 2,
    "lose-replies": 2,
    "evict": 4,
}


def soak_tiered(tmp_path: Path, seconds: float, processes: list[Any]) -> None:
    require_redis_server()
    seed = int(os.environ.get("SOAK_SEED") or random.SystemRandom().randrange(2**32))
    print(f"\ntiered soak: seed {seed} (SOAK_SEED={seed} replays it), {seconds:g} s of load")
    began = time.monotonic()
    directory, logs = tmp_path / "redis", tmp_path / "logs"
    directory.mkdir()
    logs.mkdir()
    record, other = tmp_path / "record.db", tmp_path / "other.db"
    server = RedisServer(directory=directory, extra_args=[*AOF, "--logfile", str(directory / "redis.log")])
    server.start()
    proxy = LossyProxy(server.host, server.port).start()
    prefix = unique_prefix()
    rng = random.Random(seed)
    context = multiprocessing.get_context("spawn")
    commands: list[subprocess.Popen[bytes]] = []
    injector: Injector | None = None
    killer: Killer | None = None
    threads: list[threading.Thread] = []
    slots: list[Slot] = []
    stray_stop = context.Event()
    try:
        with (
            SQLiteAdapter(record) as rec,
            SessionStore.from_url(server.url, prefix=prefix, ttl=TTL, backing=rec) as store,
        ):  # binds the prefix to the record; the sessions are durable, bound to it
            sessions = tuple(store.create(model="soak") for _ in range(SESSIONS))
            store.flush(timeout=30)
        SQLiteAdapter(other).close()  # the other record exists from the start

        strays = {
            "opener": (stray_opener, tmp_path / "stray-opener.json"),
            "worker": (stray_worker, tmp_path / "stray-worker.json"),
        }
        for name, (target, out) in strays.items():
            args = (server.url, prefix, str(other), stray_stop, str(out), str(logs / f"stray-{name}.log"))
            process = context.Process(target=target, args=args, daemon=True)
            processes.append(process)
            process.start()

        def start_worker(slot: Slot) -> Any:
            log = str(logs / f"delivery-{slots.index(slot)}.log")
            args = (server.url, prefix, str(record), slot.phase, slot.delivered, slot.stop, log)
            process = context.Process(target=delivery_worker, args=args, daemon=True)
            process.start()
            processes.append(process)
            return process

        def start_command(slot: Slot) -> Any:
            slot.log = logs / f"command-{slots.index(slot)}-{slot.started}.log"
            out = slot.log.open("wb")
            command = [
                *(sys.executable, "-m", "redis_sessions", "--url", server.url, "--prefix", prefix),
                *("sync", "--backing", f"sqlite://{record}", "--interval", "0.02", "--report", "0.5"),
            ]
            with out:
                popen = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT)
            commands.append(popen)
            return popen

        for _ in range(DELIVERY_WORKERS):
            slot = Slot(
                start_worker, context.RawValue("i", 0), context.RawValue("q", 0), context.RawValue("b", 0)
            )
            slots.append(slot)
        slots += [Slot(start_command) for _ in range(COMMANDS)]
        for slot in slots:
            slot.launch()

        barrier = context.Barrier(WRITERS + 1)
        plans = [
            TieredPlan(
                writer=w,
                front="sync" if w % 2 == 0 else "async",
                url=proxy.url if w in PROXIED else server.url,
                proxied=w in PROXIED,
                prefix=prefix,
                sessions=sessions,
                seed=seed,
                seconds=seconds,
                grace=GRACE,
                max_ops=int(OPS_PER_SECOND * seconds),
                socket_timeout=SOCKET_TIMEOUT,
                out=str(tmp_path / f"writer-{w}.json"),
                record=str(record),
                ttl=TTL,
                log=str(logs / f"writer-{w}.log"),
            )
            for w in range(WRITERS)
        ]
        writers = []
        for plan in plans:
            process = context.Process(target=tiered_writer, args=(plan, barrier), daemon=True)
            processes.append(process)
            writers.append(process)
            process.start()
        try:
            barrier.wait(timeout=120)
        except threading.BrokenBarrierError:
            for process in writers:
                process.join(10)
            raise AssertionError(f"a writer did not start: {_start_errors(plans)}") from None

        loaded = time.monotonic()
        evictor = Evictor(server.url, prefix, sessions)
        injector = Injector(random.Random(rng.random()), server, proxy, FAULTS, {"evict": evictor})
        killer = Killer(random.Random(rng.random()), slots)
        threads = [
            threading.Thread(target=injector.run, name="soak-faults", daemon=True),
            threading.Thread(target=killer.run, name="soak-kills", daemon=True),
        ]
        for thread in threads:
            thread.start()
        end = loaded + seconds
        while time.monotonic() < end and all(p.is_alive() for p in writers):
            writers[0].join(min(1.0, max(0.0, end - time.monotonic())))
        injector.stop.set()
        killer.stop.set()
        for thread in threads:
            thread.join(30)
            assert not thread.is_alive(), f"{thread.name} did not stop"
        for failed in (injector.error, killer.error):
            if failed is not None:
                raise AssertionError(f"the soak's own thread failed: {failed!r}") from failed
        for process in writers:
            process.join(max(0.0, loaded + seconds + GRACE + 30 - time.monotonic()))
        hung = [plan.writer for plan, p in zip(plans, writers, strict=True) if p.is_alive()]
        assert not hung, f"writers {hung} did not finish by the deadline and the grace period"
        load_seconds = time.monotonic() - loaded

        stray_stop.set()
        stopping = []
        for slot in slots:
            if not slot.alive():
                killer.exited(slot)
                continue
            if slot.stop is not None:
                slot.stop.value = 1
            else:
                slot.process.terminate()  # SIGTERM: the command stops its worker and exits
            stopping.append(slot)
        for slot in stopping:
            code = slot.reap()
            if code != 0 and not slot.refused_to_start():
                killer.died.append(f"{kind_of(slot)} exited with {code} when asked to stop")
        died = list(killer.died)
        reports = [json.loads(Path(plan.out).read_text()) for plan in plans]
        errors = [f"writer {r['writer']}:\n{r['error']}" for r in reports if r["error"]]
        assert not errors, "\n".join(errors)
        for process in processes:
            process.join(30)
        stray = {name: json.loads(out.read_text()) for name, (_, out) in strays.items()}
        stop_seconds = time.monotonic() - loaded - load_seconds

        flush_began = time.monotonic()
        with (
            SQLiteAdapter(record) as rec,
            SessionStore.from_url(server.url, prefix=prefix, ttl=TTL, backing=rec) as store,
        ):
            store.flush(timeout=FINAL_FLUSH)
            assert store._worker is not None
            final_delivered = store._worker.delivered
        flush_seconds = time.monotonic() - flush_began
        checked = compare(server.url, prefix, record, sessions)
        read_back(server.url, prefix, record, sessions, checked, TTL)
        audit_seconds = time.monotonic() - flush_began
    finally:
        stray_stop.set()
        for slot in slots:
            if slot.stop is not None:
                slot.stop.value = 1
        for part in (injector, killer):
            if part is not None:
                part.stop.set()
        for thread in threads:
            thread.join(30)
        for command in commands:
            if command.poll() is None:
                command.kill()
            command.wait(10)
        for process in processes:
            process.join(1)
        proxy.close()
        server.stop()

    result = audit(reports, checked.finals, checked.meta)
    anomalies = checked.anomalies + result.anomalies
    other_sessions, other_messages = other_holds(other)
    if other_sessions or other_messages:
        anomalies.append(f"the other record holds {other_sessions} sessions, {other_messages} messages")
    opener, worker = stray["opener"], stray["worker"]
    for name, report in stray.items():
        if report["error"]:
            anomalies.append(f"stray {name} failed:\n{report['error']}")
    anomalies += [f"stray opener: {text}" for text in opener["anomalies"]]
    if opener["refused"] + opener["late"] != opener["tries"] or not opener["refused"]:
        anomalies.append(f"stray opener: {opener}")
    if worker["delivered"]:
        anomalies.append(f"the stray worker delivered {worker['delivered']} messages to the other record")
    if set(worker["failures"]) - {"BackingMismatch"}:
        anomalies.append(
            f"the stray worker was refused otherwise than by BackingMismatch: {worker['failures']}"
        )
    anomalies += [f"{text} (not killed)" for text in died]
    log_lines = Counter[str]()
    for path in logs.glob("*.log"):
        text = path.read_text("utf-8", "replace")
        log_lines["gaps refused"] += len(re.findall(r"holds session .* up to seq \d+ only", text))
        log_lines["passes failed"] += text.count("write-behind pass failed")
        log_lines["tracebacks"] += text.count("Traceback") if path.name.startswith("command") else 0

    ops, calls, raised = total(reports, "ops"), total(reports, "calls"), total(reports, "raised")
    fronts = Counter(r["front"] for r in reports)
    kills = sum(killer.kills.values())
    by_threads = sum(r["delivered"] for r in reports)
    by_workers = sum(slot.delivered.value for slot in slots if slot.delivered is not None)
    print(
        f"tiered soak: {WRITERS} writers ({fronts['sync']} sync, {fronts['async']} async; {len(PROXIED)}"
        f" through the lossy proxy) x {SESSIONS} sessions, {DELIVERY_WORKERS} delivery worker processes,"
        f" {COMMANDS} sync command(s), a stray opener and a stray worker on another record;"
        f" started in {loaded - began:.1f} s, {load_seconds:.1f} s of load, stopped in {stop_seconds:.1f} s,"
        f" flushed and audited in {audit_seconds:.1f} s; {time.monotonic() - began:.1f} s in all"
    )
    print(f"operations: {line(ops)}; {sum(ops.values())} in all ({sum(ops.values()) / load_seconds:.0f}/s)")
    print(f"calls (resends included): {line(calls)}; raised: {line(raised)}")
    print(
        f"faults: {line(injector.fired)}; {sum(injector.fired.values())} in all"
        f" ({injector.killed_connections} connections killed, {injector.downtime:.2f} s down,"
        f" {proxy.lost} replies lost, {evictor.evicted} sessions evicted, {evictor.kept} found dirty);"
        f" refused: {line(injector.refused)}"
    )
    print(
        f"worker kills: {kills} ({line(killer.kills)}); processes started:"
        f" {sum(slot.started for slot in slots)}; commands refused to start while Redis was down:"
        f" {killer.refused_to_start}; exited otherwise on their own: {len(died)}"
    )
    print(
        f"deliveries (messages taken by the record): {by_threads} by the writers' threads, {by_workers} by"
        f" the worker processes, {final_delivered} by the final flush ({flush_seconds:.1f} s);"
        f" {sum(r['flushed'] for r in reports)} writers' flushes checked; log: {line(log_lines)}"
    )
    print(
        f"stray: opener refused {opener['refused']} of {opener['tries']} opens ({opener['late']} opened"
        f" while Redis was down, then stopped); worker {worker['passes']} passes, refused"
        f" {worker['refused_sessions']} sessions ({line(Counter(worker['failures']))}), delivered"
        f" {worker['delivered']}; other record: {other_sessions} sessions, {other_messages} messages"
    )
    print(
        f"audit: {sum(map(len, checked.finals))} messages in the record = Redis; {result.acknowledged}"
        f" acknowledged, {result.lost} lost; {result.given_up} given up ({result.given_up_present} present);"
        f" {result.observations} reads checked; {checked.evicted_at_end} sessions evicted at the end,"
        f" {checked.read_back} read back through the record"
    )
    print(f"anomalies: {len(anomalies)}")
    for text in anomalies[:40]:
        print(f"  {text}")
    for what, trace in result.tracebacks.items():
        print(f"unexpected error: {what}\n{trace}")
    assert not anomalies, f"{len(anomalies)} anomalies (seed {seed}): {anomalies[:5]}"
    assert result.acknowledged > 0
    assert set(injector.fired) == set(FAULTS), "every kind of fault fired at least once"
    assert kills > 0, "a worker was killed"


def _start_errors(plans: list[TieredPlan]) -> str:
    errors = []
    for plan in plans:
        path = Path(plan.out)
        if path.exists() and (error := json.loads(path.read_text())["error"]):
            errors.append(f"writer {plan.writer}:\n{error}")
    return "\n".join(errors) or "(no writer reported an error)"


@pytest.mark.real
@pytest.mark.slow
@pytest.mark.timeout(SHORT_SECONDS + GRACE + 140)
def test_tiered_soak_short(tmp_path: Path, stopped_at_exit: list[Any]) -> None:
    soak_tiered(tmp_path, SHORT_SECONDS, stopped_at_exit)


@pytest.mark.real
@pytest.mark.slow
@pytest.mark.soak
@pytest.mark.timeout(LONG_SECONDS + GRACE + 300)
@pytest.mark.skipif(not LONG_SECONDS, reason="the long soak runs with SOAK_SECONDS=<seconds>")
def test_tiered_soak_long(tmp_path: Path, stopped_at_exit: list[Any]) -> None:
    soak_tiered(tmp_path, LONG_SECONDS, stopped_at_exit)
