"""The soak (issue #4): many processes, many sessions, every kind of call, faults at random moments.

16 worker processes (half on ``SessionStore``, half on ``AsyncSessionStore``; four of them through
a TCP proxy that loses replies) x 64 sessions run a seeded mix of ``append``, ``extend``,
``messages()`` (whole and ranges), ``load``, ``watch`` and ``next_message`` against a private
``redis-server`` with ``appendonly yes`` and ``appendfsync always``, while a fault injector thread
fires at random intervals: ``CLIENT KILL TYPE normal`` and ``TYPE pubsub``, ``SCRIPT FLUSH``,
``CLIENT PAUSE``, SIGKILL of the server and a restart on the same port and directory (the AOF
replays), and lost replies at the proxy. A writer resends a call that raised with the same message
ids until it is acknowledged.

The audit then compares every worker's record with what Redis holds: no acknowledged message lost,
none stored twice, each at the seq its call returned, every batch contiguous, each writer's order
kept, nothing stored that nobody sent, and everything any read or watch saw a slice of the final
list in the same order. It prints the figures (``pytest -s``): operations, faults by kind, retries,
anomalies.

The short form (``slow``, ``real``) loads for ``SHORT_SECONDS``; ``SOAK_SECONDS=600`` enables the
long form (marker ``soak``): ``SOAK_SECONDS=600 .venv/bin/pytest -m soak -s tests/integration/test_soak.py``.
``SOAK_SEED`` replays a seed: the same faults and operations in the same order (timing still varies).
The tiered (durable) mode has a soak of its own: ``test_soak_tiered.py``.
"""

from __future__ import annotations

import json
import multiprocessing
import os
import random
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
import redis

from redis_sessions import SessionStore
from redis_sessions.embedded import RedisServer
from redis_sessions.keys import session_keys
from tests.integration.durable_support import require_redis_server
from tests.integration.faults import LossyProxy
from tests.integration.soak_support import AOF, Injector, audit, line, total
from tests.integration.soak_workers import Plan, soak_worker
from tests.support import unique_prefix

PROCESSES = 16
SESSIONS = 64
PROXIED = 4  # writers 0..3 go through the proxy that loses replies
SHORT_SECONDS = 25.0
LONG_SECONDS = float(os.environ.get("SOAK_SECONDS") or 0)
OPS_PER_SECOND = 400  # the count bound: no worker makes more than this many calls per second of soak
GRACE = 20.0  # after the deadline, a write not yet acknowledged is resent this much longer
SOCKET_TIMEOUT = 1.0
FAULTS = {  # kind -> weight; the first faults of a soak go through every kind once, shuffled
    "client-kill": 3,
    "client-kill-pubsub": 1,
    "script-flush": 2,
    "client-pause": 2,
    "restart": 2,
    "lose-replies": 3,
}


def _start_errors(plans: list[Plan]) -> str:
    """What the workers that wrote a record before the start said went wrong."""
    errors = []
    for plan in plans:
        path = Path(plan.out)
        if path.exists() and (error := json.loads(path.read_text())["error"]):
            errors.append(f"writer {plan.writer}:\n{error}")
    return "\n".join(errors) or "(no worker reported an error)"


def soak(tmp_path: Path, seconds: float, processes: list[Any]) -> None:
    require_redis_server()
    seed = int(os.environ.get("SOAK_SEED") or random.SystemRandom().randrange(2**32))
    print(f"\nsoak: seed {seed} (SOAK_SEED={seed} replays it), {seconds:g} s of load")
    began = time.monotonic()
    directory = tmp_path / "redis"
    directory.mkdir()
    logfile = ("--logfile", str(directory / "redis.log"))  # not a pipe nobody reads
    server = RedisServer(directory=directory, extra_args=[*AOF, *logfile]).start()
    proxy = LossyProxy(server.host, server.port).start()
    injector = Injector(random.Random(seed), server, proxy, FAULTS)
    fault_thread = threading.Thread(target=injector.run, name="soak-faults", daemon=True)
    prefix = unique_prefix()
    try:
        with SessionStore.from_url(server.url, prefix=prefix) as store:
            sessions = tuple(store.create(model="soak") for _ in range(SESSIONS))
        context = multiprocessing.get_context("spawn")
        barrier = context.Barrier(PROCESSES + 1)
        plans = [
            Plan(
                writer=w,
                front="sync" if w % 2 == 0 else "async",
                url=proxy.url if w < PROXIED else server.url,
                proxied=w < PROXIED,
                prefix=prefix,
                sessions=sessions,
                seed=seed,
                seconds=seconds,
                grace=GRACE,
                max_ops=int(OPS_PER_SECOND * seconds),
                socket_timeout=SOCKET_TIMEOUT,
                out=str(tmp_path / f"worker-{w}.json"),
            )
            for w in range(PROCESSES)
        ]
        for plan in plans:
            process = context.Process(target=soak_worker, args=(plan, barrier), daemon=True)
            processes.append(process)
            process.start()
        try:
            barrier.wait(timeout=120)  # every worker connected: the load and the faults start together
        except threading.BrokenBarrierError:
            for process in processes:
                process.join(10)
            raise AssertionError(f"a worker did not start: {_start_errors(plans)}") from None
        loaded = time.monotonic()
        fault_thread.start()
        end = loaded + seconds
        while time.monotonic() < end and all(p.is_alive() for p in processes):
            processes[0].join(min(1.0, max(0.0, end - time.monotonic())))  # a crash ends this early
        injector.stop.set()
        fault_thread.join(30)
        assert not fault_thread.is_alive(), "the fault injector stopped"
        if injector.error is not None:
            raise AssertionError(f"the fault injector failed: {injector.error!r}") from injector.error
        for process in processes:
            process.join(max(0.0, loaded + seconds + GRACE + 30 - time.monotonic()))
        hung = [plan.writer for plan, p in zip(plans, processes, strict=True) if p.is_alive()]
        assert not hung, f"workers {hung} did not finish by the deadline and the grace period"
        load_seconds = time.monotonic() - loaded
        reports = [json.loads(Path(plan.out).read_text()) for plan in plans]
        errors = [f"writer {r['writer']}:\n{r['error']}" for r in reports if r["error"]]
        assert not errors, "\n".join(errors)
        with SessionStore.from_url(server.url, prefix=prefix, cache_messages=0) as store:
            finals = [[m.id for m in store.messages(sid)] for sid in sessions]
        with redis.Redis.from_url(server.url) as raw:
            meta = [
                (int(raw.hget(keys.meta, "seq") or 0), int(raw.zcard(keys.ids)))
                for keys in (session_keys(prefix, sid) for sid in sessions)
            ]
    finally:
        injector.stop.set()
        if fault_thread.is_alive():
            fault_thread.join(30)
        for process in processes:
            process.join(1)
        proxy.close()
        server.stop()

    log = (directory / "redis.log").read_text("utf-8", "replace")
    rewrites = log.count("Background append only file rewriting started")
    rewritten = log.count("Background AOF rewrite finished successfully")
    result = audit(reports, finals, meta)
    ops, calls, raised = total(reports, "ops"), total(reports, "calls"), total(reports, "raised")
    stored = sum(map(len, finals))
    fronts = Counter(r["front"] for r in reports)
    print(
        f"soak: {PROCESSES} processes ({fronts['sync']} sync, {fronts['async']} async;"
        f" {PROXIED} through the lossy proxy) x {SESSIONS} sessions;"
        f" {load_seconds:.1f} s of load, {time.monotonic() - began:.1f} s in all"
    )
    print(f"operations: {line(ops)}; {sum(ops.values())} in all ({sum(ops.values()) / load_seconds:.0f}/s)")
    print(f"calls (resends included): {line(calls)}")
    print(
        f"faults: {line(injector.fired)}; {sum(injector.fired.values())} in all"
        f" ({injector.killed_connections} connections killed, {injector.downtime:.2f} s down,"
        f" {proxy.lost} replies lost by the proxy); refused: {line(injector.refused)};"
        f" AOF rewrites started {rewrites}, finished {rewritten}"
    )
    print(
        f"retries: {sum(r['store_retries'] for r in reports)} by the stores,"
        f" {sum(r['resends'] for r in reports)} resends by the workers; raised: {line(raised)}"
    )
    print(
        f"audit: {stored} messages stored; {result.acknowledged} acknowledged, {result.lost} lost;"
        f" {result.given_up} given up ({result.given_up_present} present);"
        f" {result.observations} reads and watches checked"
    )
    print(f"anomalies: {len(result.anomalies)}")
    for text in result.anomalies[:40]:
        print(f"  {text}")
    for what, trace in result.tracebacks.items():
        print(f"unexpected error: {what}\n{trace}")
    assert not result.anomalies, f"{len(result.anomalies)} anomalies (seed {seed}): {result.anomalies[:5]}"
    assert result.acknowledged > 0
    assert set(injector.fired) == set(FAULTS), "every kind of fault fired at least once"


@pytest.mark.real
@pytest.mark.slow
def test_soak_short(tmp_path: Path, stopped_at_exit: list[Any]) -> None:
    soak(tmp_path, SHORT_SECONDS, stopped_at_exit)


@pytest.mark.real
@pytest.mark.slow
@pytest.mark.soak
@pytest.mark.timeout(LONG_SECONDS + GRACE + 240)
@pytest.mark.skipif(not LONG_SECONDS, reason="the long soak runs with SOAK_SECONDS=<seconds>")
def test_soak_long(tmp_path: Path, stopped_at_exit: list[Any]) -> None:
    soak(tmp_path, LONG_SECONDS, stopped_at_exit)
