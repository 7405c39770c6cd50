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
The tiered (durable) mode is not soaked here; its faults have their own tests (test_durability*.py).
"""

from __future__ import annotations

import contextlib
import json
import multiprocessing
import os
import random
import signal
import threading
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import redis
import redis.exceptions

from redis_sessions import SessionStore
from redis_sessions.embedded import RedisServer
from redis_sessions.keys import session_keys
from tests.integration.durable_support import require_redis_server
from tests.integration.faults import LossyProxy
from tests.integration.soak_workers import Fingerprints, Plan, message_id, parse_id, soak_worker
from tests.support import unique_prefix

PROCESSES = 16
SESSIONS = 64
PROXIED = 4  # writers 0..3 go through the proxy that loses replies
SHORT_SECONDS = 25.0
LONG_SECONDS = float(os.environ.get("SOAK_SECONDS") or 0)
OPS_PER_SECOND = 400  # the count bound: no worker makes more than this many calls per second of soak
GRACE = 20.0  # after the deadline, a write not yet acknowledged is resent this much longer
SOCKET_TIMEOUT = 1.0
FAULT_GAP = (0.15, 1.2)  # seconds between two faults, uniformly drawn
PAUSE_MS = (50, 1500)  # CLIENT PAUSE: some shorter than the socket timeout, some longer
DOWN = (0.0, 0.8)  # seconds the SIGKILLed server stays down before it restarts
FAULTS = {  # kind -> weight; the first faults of a soak go through every kind once, shuffled
    "client-kill": 3,
    "client-kill-pubsub": 1,
    "script-flush": 2,
    "client-pause": 2,
    "restart": 2,
    "lose-replies": 3,
}
AOF = ("--appendonly", "yes", "--appendfsync", "always", "--auto-aof-rewrite-min-size", "4mb")
"""Every acknowledged write is in the AOF before the reply; rewrites from 4 MB on, so some SIGKILLs
land during or after a rewrite (the base and incremental files of Redis 7's multi-part AOF)."""


@dataclass
class Injector:
    """Fires a random fault every ``FAULT_GAP`` seconds until ``stop`` is set, on its own thread."""

    rng: random.Random
    server: RedisServer
    proxy: LossyProxy
    stop: threading.Event = field(default_factory=threading.Event)
    fired: Counter[str] = field(default_factory=Counter)
    refused: Counter[str] = field(default_factory=Counter)  # faults Redis refused (e.g. still loading)
    killed_connections: int = 0
    downtime: float = 0.0
    error: BaseException | None = None

    def run(self) -> None:
        kinds, weights = list(FAULTS), list(FAULTS.values())
        schedule = self.rng.sample(kinds, len(kinds))
        try:
            while not self.stop.wait(self.rng.uniform(*FAULT_GAP)):
                kind = schedule.pop() if schedule else self.rng.choices(kinds, weights)[0]
                try:
                    self.fire(kind)
                except (redis.exceptions.RedisError, OSError):
                    self.refused[kind] += 1
                else:
                    self.fired[kind] += 1
        except BaseException as exc:  # a restart that failed: the test reports it
            self.error = exc

    def fire(self, kind: str) -> None:
        if kind == "restart":
            self.restart()
        elif kind == "lose-replies":
            self.proxy.lose_replies(self.rng.randint(1, 3))
        else:
            with redis.Redis.from_url(self.server.url, socket_timeout=2, socket_connect_timeout=2) as admin:
                if kind == "client-kill":
                    self.killed_connections += admin.client_kill_filter(_type="normal", skipme=True)
                elif kind == "client-kill-pubsub":
                    self.killed_connections += admin.client_kill_filter(_type="pubsub", skipme=True)
                elif kind == "script-flush":
                    admin.script_flush()
                else:
                    admin.client_pause(self.rng.randint(*PAUSE_MS), all=True)

    def restart(self) -> None:
        """SIGKILL (no shutdown: only what the AOF holds survives), down a while, start again."""
        process = self.server.process
        assert process is not None
        forks = _children(process.pid)  # an AOF rewrite under way dies with it, as in a crash
        killed = time.monotonic()
        process.kill()
        for pid in forks:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        process.wait(10)
        self.server.stop()  # reaps it; the directory is the test's, so the AOF stays
        time.sleep(self.rng.uniform(*DOWN))  # the fault's duration: Redis is down
        self.server.start()  # same port, same directory: replays the AOF, no scripts cached
        self.downtime += time.monotonic() - killed


def _children(pid: int) -> list[int]:
    """The processes ``pid`` forked that are still running (Linux's /proc)."""
    found: list[int] = []
    for task in Path(f"/proc/{pid}/task").glob("*"):
        with contextlib.suppress(OSError):
            found += [int(child) for child in (task / "children").read_text().split()]
    return found


@dataclass
class Audit:
    anomalies: list[str] = field(default_factory=list)
    acknowledged: int = 0
    lost: int = 0
    given_up: int = 0
    given_up_present: int = 0
    observations: int = 0
    unexpected: Counter[str] = field(default_factory=Counter)  # errors but StoreUnavailable, by kind
    tracebacks: dict[str, str] = field(default_factory=dict)  # the first of each kind

    def anomaly(self, text: str) -> None:
        self.anomalies.append(text)


def audit(reports: list[dict[str, Any]], finals: list[list[str]], meta: list[tuple[int, int]]) -> Audit:
    """What every worker was told and saw, against what Redis holds (``finals``: each session's
    message ids in order; ``meta``: each session's stored seq and the size of its ids index)."""
    result = Audit()
    where: dict[str, tuple[int, int]] = {}  # message id -> (session, position)
    for session, stored in enumerate(finals):
        seq, indexed = meta[session]
        if not seq == indexed == len(stored):
            result.anomaly(f"session {session}: seq {seq}, {indexed} ids indexed, {len(stored)} stored")
        for position, message in enumerate(stored):
            if message in where:
                result.anomaly(f"{message} stored twice: {where[message]} and {(session, position)}")
            where[message] = (session, position)
    sent = {report["writer"]: report["next_index"] for report in reports}
    for message in where:
        writer, index = parse_id(message)
        if index >= sent.get(writer, 0):
            result.anomaly(f"{message} is stored but writer {writer} never sent it")
    for report in reports:
        writer = report["writer"]
        last: dict[int, int] = {}  # session -> position of this writer's last acknowledged message
        for kind, session, first, count, seq in report["writes"]:
            batch = [message_id(writer, i) for i in range(first, first + count)]
            found = [where.get(message) for message in batch]
            if any(spot is not None and spot[0] != session for spot in found):
                result.anomaly(f"{kind} {batch[0]}..: stored in another session than sent to")
            if seq < 0:  # given up: may be absent or present, never twice (checked above)
                result.given_up += count
                result.given_up_present += sum(spot is not None for spot in found)
                continue
            result.acknowledged += count
            missing = [message for message, spot in zip(batch, found, strict=True) if spot is None]
            if missing:
                result.lost += len(missing)
                result.anomaly(f"{kind} acknowledged at seq {seq} but lost: {missing}")
                continue
            positions = [spot[1] for spot in found if spot is not None]
            if positions != list(range(positions[0], positions[0] + count)):
                result.anomaly(f"{kind} {batch[0]}..: not contiguous, at {positions}")
            if positions[-1] + 1 != seq:
                result.anomaly(
                    f"{kind} {batch[-1]}: the call returned seq {seq}, stored at {positions[-1] + 1}"
                )
            if positions[0] <= last.get(session, -1):
                result.anomaly(f"writer {writer}: {batch[0]} stored before its earlier messages in {session}")
            last[session] = positions[-1]
    prints = [Fingerprints(stored) for stored in finals]
    for report in reports:
        for kind, session, start, count, seen in report["observed"]:
            result.observations += 1
            final = prints[session]
            if start + count > len(final) or final.slice(start, start + count) != seen:
                result.anomaly(
                    f"writer {report['writer']}'s {kind} of session {session} saw {count} messages from"
                    f" {start} that are not the stored ones there"
                )
    for report in reports:
        result.anomalies += [f"writer {report['writer']}: {text}" for text in report["anomalies"]]
        result.anomalies += [f"(+{report['anomaly_count'] - len(report['anomalies'])} more)"] * (
            report["anomaly_count"] > len(report["anomalies"])
        )
        result.unexpected.update(report["unexpected"])
        for what, trace in report["tracebacks"].items():
            result.tracebacks.setdefault(what, trace)
    for what, n in result.unexpected.items():
        result.anomaly(f"{n} calls raised another error than StoreUnavailable: {what}")
    return result


def _start_errors(plans: list[Plan]) -> str:
    """What the workers that wrote a record before the start said went wrong."""
    errors = []
    for plan in plans:
        path = Path(plan.out)
        if path.exists() and (error := json.loads(path.read_text())["error"]):
            errors.append(f"writer {plan.writer}:\n{error}")
    return "\n".join(errors) or "(no worker reported an error)"


def _sum(reports: list[dict[str, Any]], name: str) -> Counter[str]:
    total: Counter[str] = Counter()
    for report in reports:
        total.update(report[name])
    return total


def _line(counts: Counter[str]) -> str:
    return ", ".join(f"{kind} {n}" for kind, n in sorted(counts.items())) or "none"


@pytest.fixture
def stopped_at_exit() -> Iterator[list[Any]]:
    """Processes the test starts: terminated (then killed) when it ends, whatever happened."""
    processes: list[Any] = []
    yield processes
    for process in processes:
        if process.is_alive():
            process.terminate()
            process.join(5)
        if process.is_alive():
            process.kill()
            process.join(5)


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
    injector = Injector(random.Random(seed), server, proxy)
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
    ops, calls, raised = _sum(reports, "ops"), _sum(reports, "calls"), _sum(reports, "raised")
    stored = sum(map(len, finals))
    fronts = Counter(r["front"] for r in reports)
    print(
        f"soak: {PROCESSES} processes ({fronts['sync']} sync, {fronts['async']} async;"
        f" {PROXIED} through the lossy proxy) x {SESSIONS} sessions;"
        f" {load_seconds:.1f} s of load, {time.monotonic() - began:.1f} s in all"
    )
    print(f"operations: {_line(ops)}; {sum(ops.values())} in all ({sum(ops.values()) / load_seconds:.0f}/s)")
    print(f"calls (resends included): {_line(calls)}")
    print(
        f"faults: {_line(injector.fired)}; {sum(injector.fired.values())} in all"
        f" ({injector.killed_connections} connections killed, {injector.downtime:.2f} s down,"
        f" {proxy.lost} replies lost by the proxy); refused: {_line(injector.refused)};"
        f" AOF rewrites started {rewrites}, finished {rewritten}"
    )
    print(
        f"retries: {sum(r['store_retries'] for r in reports)} by the stores,"
        f" {sum(r['resends'] for r in reports)} resends by the workers; raised: {_line(raised)}"
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
