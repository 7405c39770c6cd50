"""Processes of the tiered soak (``test_soak_tiered.py``), importable by 'spawn' children: no test code.

- ``tiered_writer``: a soak writer (``soak_workers.Worker``) on a tiered store, sync or async, backed
  by the shared SQLite record, whose own write-behind thread delivers meanwhile; now and then it
  calls ``flush()`` and then checks the record holds every write acknowledged to it.
- ``delivery_worker``: a ``SyncWorker(...).bind()`` loop in a process of its own, which the test
  SIGKILLs at random moments and starts again. It says through ``phase`` (shared memory, no lock:
  a killed process must not leave one held) where it is: ``DELIVERING`` inside the record's
  transaction, ``COMMITTED`` after it and before the mark in Redis, ``IDLE`` between passes.
- ``stray_opener``: opens tiered stores on *another* record, over and over; each must be refused
  (``BackingMismatch``), or, opened while Redis could not be asked, its worker must stop at its
  first pass having delivered nothing.
- ``stray_worker``: a ``SyncWorker`` of another record that never calls ``bind()`` (as a process of
  an older version would) and delivers every dirty session throughout: it must deliver nothing.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
import traceback
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from redis_sessions import AsyncSessionStore, BackingMismatch, SessionError, SessionId, SessionStore
from redis_sessions.persistence import Delivered, Delivery, SQLiteAdapter
from redis_sessions.writebehind import SyncWorker
from tests.integration.soak_workers import CountingPolicy, Plan, Worker
from tests.support import AsyncAdapter

IDLE, DELIVERING, COMMITTED = 0, 1, 2
PHASES = {IDLE: "idle", DELIVERING: "delivering", COMMITTED: "committed, not marked"}
PASS_INTERVAL = 0.02  # seconds between two passes of a worker process (the tiered stores use 0.1)
FLUSH_TIMEOUT = 5.0  # a writer's flush under faults may time out; that is not an anomaly
STRAY_STOPS_WITHIN = 20.0  # a stray store opened while Redis was down finds the binding by then
OPEN_GAP = 0.1  # seconds between two tries of the stray opener

TIERED_OPERATIONS = {"append": 36, "extend": 14, "messages": 14, "range": 10, "load": 10, "flush": 1}


@dataclass(frozen=True)
class TieredPlan(Plan):
    """A soak writer's plan, and the record its tiered store is backed by."""

    record: str = ""
    ttl: float = 3600.0  # a clean session has a TTL, so the test's eviction may take it
    log: str = ""  # where this process's log goes (the library's warnings: gaps, failed passes)


def log_to(path: str) -> None:
    """Send this process's log records (warnings and up) to ``path``, for the test to count."""
    logging.basicConfig(filename=path, level=logging.WARNING, format="%(process)d %(name)s %(message)s")


class TieredWriter(Worker):
    operations = TIERED_OPERATIONS

    def __init__(
        self, plan: TieredPlan, store: Any, flush: Callable[[float], None], backing: SQLiteAdapter
    ) -> None:
        super().__init__(plan, store)
        self.flush, self.backing = flush, backing
        self.flushed = 0  # flushes that returned, each followed by a check of the record

    def do_flush(self, session: int) -> None:
        """``flush()``, then the record must hold every write acknowledged to this writer before it."""
        acked = list(self.acked)
        self.calls["flush"] += 1
        try:
            self.flush(FLUSH_TIMEOUT)
            held = self.backing.seqs(list(self.plan.sessions))
        except TimeoutError:
            self.raised["flush: TimeoutError"] += 1
            return
        except Exception as exc:
            self.failed("flush", exc)
            return
        self.flushed += 1
        for n, sid in enumerate(self.plan.sessions):
            if held[sid] < acked[n]:
                self.anomaly(
                    f"flush returned, the record holds session {n} up to {held[sid]}, not {acked[n]}"
                )

    def report(self, error: str | None) -> dict[str, Any]:
        return {**super().report(error), "flushed": self.flushed}


def tiered_writer(plan: TieredPlan, barrier: Any) -> None:
    """Open a tiered store on the record, wait for every writer and the test, run until the
    deadline, write the report (with what this store's write-behind thread delivered)."""
    log_to(plan.log)
    worker: TieredWriter | None = None
    error: str | None = None
    runner = asyncio.Runner() if plan.front == "async" else None
    options: dict[str, Any] = {
        "prefix": plan.prefix,
        "ttl": plan.ttl,
        "retry": CountingPolicy(attempts=4, initial=0.05, max_wait=0.4),
        "socket_timeout": plan.socket_timeout,
        "socket_connect_timeout": plan.socket_timeout,
    }
    backing = SQLiteAdapter(plan.record)
    store: Any = None
    thread: SyncWorker | None = None
    flush: Callable[[float | None], None]
    try:
        if runner is None:
            sync = SessionStore.from_url(plan.url, backing=backing, **options)
            store, flush, thread = sync, sync.flush, sync._worker
        else:
            inner = AsyncSessionStore.from_url(plan.url, backing=backing, **options)
            store, thread = AsyncAdapter(inner, runner), inner._worker
            flush = _async_flush(store, inner)
        worker = TieredWriter(plan, store, flush, backing)
        barrier.wait(timeout=120)
        worker.deadline = time.monotonic() + plan.seconds
        worker.run()
    except BaseException:
        barrier.abort()
        error = traceback.format_exc()
    finally:
        try:
            if store is not None:
                store.close()
            if runner is not None:
                runner.close()
            backing.close()
        except Exception:
            error = error or traceback.format_exc()
        if worker is not None:
            report = {**worker.report(error), "delivered": 0 if thread is None else thread.delivered}
        else:
            report = {"writer": plan.writer, "error": error}
        Path(plan.out).write_text(json.dumps(report))


def _async_flush(store: AsyncAdapter, inner: AsyncSessionStore) -> Callable[[float | None], None]:
    def flush(timeout: float | None) -> None:
        store._run(inner.flush(timeout))

    return flush


def delivery_worker(
    url: str, prefix: str, record: str, phase: Any, delivered: Any, stop: Any, log: str
) -> None:
    """Bind a worker of ``record`` and run passes until ``stop.value`` (shared memory, like
    ``phase``; ``delivered`` counts the messages the record took from this slot's processes)."""
    log_to(log)
    with (
        SQLiteAdapter(record) as backing,
        SessionStore.from_url(url, prefix=prefix, socket_timeout=1, socket_connect_timeout=1) as store,
    ):
        deliver = backing.deliver

        def tracked(deliveries: Sequence[Delivery]) -> dict[Any, Delivered]:
            phase.value = DELIVERING
            held = deliver(deliveries)
            phase.value = COMMITTED
            delivered.value += sum(len(d.rows) for d in deliveries if _took(held[d.session_id], d))
            return held

        backing.deliver = tracked  # type: ignore[method-assign]
        worker = SyncWorker(store, backing)
        bound = False
        while not stop.value:
            try:
                if not bound:
                    worker.bind()  # Redis may be down (restarting): the next pass binds
                    bound = True
                worker.sync_once()
            except (SessionError, OSError):
                pass  # a fault: the next pass tries again, nothing is lost
            finally:
                phase.value = IDLE
            time.sleep(PASS_INTERVAL)  # pacing between passes, as SyncWorker.start(interval) does


def _took(held: Delivered, delivery: Delivery) -> bool:
    """Whether the record took the batch: it holds its last seq now (not after a gap, a mismatch)."""
    return isinstance(held, int) and held >= delivery.first_seq + len(delivery.rows) - 1


def stray_opener(url: str, prefix: str, other: str, stop: Any, out: str, log: str) -> None:
    """Open tiered stores (sync and async, in turn) on the record at ``other`` until ``stop``."""
    log_to(log)
    refused, late, anomalies, tries = 0, 0, [], 0
    error = None
    try:
        with SQLiteAdapter(other) as backing:
            while not stop.is_set():
                tries += 1
                front = "async" if tries % 2 else "sync"
                try:
                    opened = _open_stray(front, url, prefix, backing)
                except BackingMismatch:
                    refused += 1
                else:
                    late += 1  # Redis could not be asked at open: its worker must stop at its first pass
                    anomalies += _stopped(opened, front)
                stop.wait(OPEN_GAP)
    except BaseException:
        error = traceback.format_exc()
    report = {"tries": tries, "refused": refused, "late": late, "anomalies": anomalies, "error": error}
    Path(out).write_text(json.dumps(report))


def _open_stray(front: str, url: str, prefix: str, backing: SQLiteAdapter) -> Any:
    options: dict[str, Any] = {"prefix": prefix, "backing": backing, "socket_timeout": 1}
    if front == "sync":
        return SessionStore.from_url(url, **options)
    return AsyncSessionStore.from_url(url, **options)


def _stopped(store: Any, front: str) -> list[str]:
    worker: SyncWorker = store._worker
    try:
        deadline = time.monotonic() + STRAY_STOPS_WITHIN
        while worker.unbound is None and time.monotonic() < deadline:
            time.sleep(0.01)  # waiting for its worker thread's next pass, with a deadline
        found = []
        if worker.unbound is None:
            found.append(f"a {front} store on another record ran {STRAY_STOPS_WITHIN} s unrefused")
        if worker.delivered:
            found.append(f"a {front} store on another record delivered {worker.delivered} messages")
        return found
    finally:
        if front == "sync":
            store.close()
        else:
            asyncio.run(store.aclose())


def stray_worker(url: str, prefix: str, other: str, stop: Any, out: str, log: str) -> None:
    """Deliver every dirty session to the record at ``other`` without ``bind()``, until ``stop``."""
    log_to(log)
    passes, delivered, refused, errors = 0, 0, set[SessionId](), Counter[str]()
    failures: Counter[str] = Counter()
    error = None
    try:
        with (
            SQLiteAdapter(other) as backing,
            SessionStore.from_url(url, prefix=prefix, socket_timeout=1, socket_connect_timeout=1) as store,
        ):
            worker = SyncWorker(store, backing)  # no bind(): straight to the sessions
            while not stop.is_set():
                passes += 1
                try:
                    worker.deliver(worker.pending())
                except (SessionError, OSError) as exc:
                    errors[type(exc).__name__] += 1
                refused.update(worker.failures)
                stop.wait(PASS_INTERVAL)
            failures.update(type(e).__name__ for e in worker.failures.values())
            delivered = worker.delivered
    except BaseException:
        error = traceback.format_exc()
    report = {
        "passes": passes,
        "delivered": delivered,
        "refused_sessions": len(refused),
        "failures": dict(failures),
        "errors": dict(errors),
        "error": error,
    }
    Path(out).write_text(json.dumps(report))
