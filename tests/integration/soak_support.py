"""What the soaks share (``test_soak.py``, ``test_soak_tiered.py``): the fault injector, the audit of
what every writer was told against the final lists, and the figures' formatting.

The faults ``Injector`` knows: ``CLIENT KILL TYPE normal`` and ``TYPE pubsub``, ``SCRIPT FLUSH``,
``CLIENT PAUSE``, SIGKILL of the server and a restart on the same port and directory (the AOF
replays), and lost replies at a ``LossyProxy``; a soak may add its own.
"""

from __future__ import annotations

import contextlib
import os
import random
import signal
import threading
import time
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import redis
import redis.exceptions

from redis_sessions.embedded import RedisServer
from tests.integration.faults import LossyProxy
from tests.integration.soak_workers import Fingerprints, message_id, parse_id

FAULT_GAP = (0.15, 1.2)  # seconds between two faults, uniformly drawn
PAUSE_MS = (50, 1500)  # CLIENT PAUSE: some shorter than the socket timeout, some longer
DOWN = (0.0, 0.8)  # seconds the SIGKILLed server stays down before it restarts
AOF = ("--appendonly", "yes", "--appendfsync", "always", "--auto-aof-rewrite-min-size", "4mb")
"""Every acknowledged write is in the AOF before the reply; rewrites from 4 MB on, so some SIGKILLs
land during or after a rewrite (the base and incremental files of Redis 7's multi-part AOF)."""


@dataclass
class Injector:
    """Fires a random fault of ``faults`` (kind -> weight) every ``FAULT_GAP`` seconds until ``stop``
    is set, on its own thread; ``custom`` adds kinds to the ones it knows (kind
    -> a function of the injector's random generator that fires it)."""

    rng: random.Random
    server: RedisServer
    proxy: LossyProxy | None
    faults: Mapping[str, int]
    custom: Mapping[str, Callable[[random.Random], None]] = field(default_factory=dict)
    stop: threading.Event = field(default_factory=threading.Event)
    fired: Counter[str] = field(default_factory=Counter)
    refused: Counter[str] = field(default_factory=Counter)  # faults Redis refused (e.g. still loading)
    killed_connections: int = 0
    downtime: float = 0.0
    error: BaseException | None = None

    def run(self) -> None:
        kinds, weights = list(self.faults), list(self.faults.values())
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
        if kind in self.custom:
            self.custom[kind](self.rng)
        elif kind == "restart":
            self.restart()
        elif kind == "lose-replies":
            assert self.proxy is not None, "lose-replies needs the proxy"
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


def total(reports: list[dict[str, Any]], name: str) -> Counter[str]:
    total: Counter[str] = Counter()
    for report in reports:
        total.update(report[name])
    return total


def line(counts: Counter[str]) -> str:
    return ", ".join(f"{kind} {n}" for kind, n in sorted(counts.items())) or "none"
