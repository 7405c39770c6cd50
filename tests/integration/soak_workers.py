"""Worker processes of the soak test (importable by 'spawn' children: no test code here).

Each worker runs a seeded random mix of appends, batch appends, reads and watches on many sessions
until its deadline, and writes down everything it was told: which messages were acknowledged (and at
which seq), which it gave up on, what every read and watch saw, what raised. The test compares that
record with what Redis holds at the end. A write that raised is sent again with the same message
ids until it is acknowledged (or the grace period after the deadline runs out): the store promises
that such a resend never stores a message twice.

What a read saw is sent back as a fingerprint, not as a list: ``(start, count, digest)``, where
``digest`` is a polynomial hash of the message ids. ``Fingerprints`` of the final list answer "is
this the slice ``[start:start + count]``?" in constant time, however long the soak ran.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import random
import time
import traceback
import uuid
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from itertools import count
from pathlib import Path
from typing import Any, TypeVar

import tenacity

from redis_sessions import (
    AgentMessage,
    Appended,
    AsyncSessionStore,
    RetryPolicy,
    SessionStore,
    StoreUnavailable,
)
from tests.support import AsyncAdapter

T = TypeVar("T")

MOD = (1 << 61) - 1  # a Mersenne prime: the digests' modulus
BASE = 1_000_003
HOT = 8  # sessions 0..7 are hot: they get HOT_SHARE of all operations, so watchers see live appends
HOT_SHARE = 0.5
WATCH_IDLE = 0.1  # a watch ends after this long without a new message...
WATCH_ITEMS = 25  # ...or after this many messages
RANGE_SPAN = 40  # messages(start, stop) asks for at most this many
DETAILS = 20  # anomalies described in full; the rest are only counted

OPERATIONS = {  # kind -> weight
    "append": 34,
    "extend": 14,
    "messages": 14,
    "range": 10,
    "load": 10,
    "watch": 8,
    "next_message": 4,
}
WRITES = ("append", "extend")

_retries = count()  # the store's own retries in this process (see CountingPolicy)


def message_id(writer: int, index: int) -> str:
    """Unique over the whole soak; ``parse_id`` inverts it."""
    return f"w{writer:02d}-{index:07d}"


def parse_id(message: str) -> tuple[int, int]:
    writer, index = message[1:].split("-")
    return int(writer), int(index)


def id_value(message: str) -> int:
    return int.from_bytes(hashlib.blake2b(message.encode(), digest_size=8).digest(), "big") % MOD


def digest(ids: Sequence[str]) -> int:
    """The polynomial hash of ``ids`` (in order), as ``Fingerprints.slice`` computes it."""
    value = 0
    for message in ids:
        value = (value * BASE + id_value(message)) % MOD
    return value


class Fingerprints:
    """Prefix hashes of one list of message ids: the digest of any slice in O(1)."""

    def __init__(self, ids: Sequence[str]) -> None:
        self.prefix = [0]
        self.power = [1]
        for message in ids:
            self.prefix.append((self.prefix[-1] * BASE + id_value(message)) % MOD)
            self.power.append(self.power[-1] * BASE % MOD)

    def __len__(self) -> int:
        return len(self.prefix) - 1

    def slice(self, start: int, stop: int) -> int:
        return (self.prefix[stop] - self.prefix[start] * self.power[stop - start]) % MOD


class CountingPolicy(RetryPolicy):
    """The store's retry policy, counting each retry it makes (tenacity calls ``before_sleep`` once
    before every new attempt), so the soak can report the store's retries, not just the worker's."""

    __slots__ = ()

    def retrying(self) -> tenacity.Retrying:
        return super().retrying().copy(before_sleep=_count_retry)

    def async_retrying(self) -> tenacity.AsyncRetrying:
        return super().async_retrying().copy(before_sleep=_count_retry)


def _count_retry(state: tenacity.RetryCallState) -> None:
    next(_retries)


@dataclass(frozen=True)
class Plan:
    """What one worker does: its writer number, front, URL (the proxy's for some), seed, deadline."""

    writer: int
    front: str  # "sync" or "async"
    url: str
    proxied: bool
    prefix: str
    sessions: tuple[uuid.UUID, ...]
    seed: int
    seconds: float  # how long to start new operations, from when every worker is ready
    grace: float  # after the deadline, a write still unacknowledged is resent this much longer
    max_ops: int
    socket_timeout: float
    out: str  # where the record goes (JSON)


class Worker:
    operations: dict[str, int] = OPERATIONS  # kind -> weight: a subclass may run another mix

    def __init__(self, plan: Plan, store: Any) -> None:
        self.plan, self.store = plan, store
        self.deadline = time.monotonic() + plan.seconds  # set again when every worker is ready
        self.rng = random.Random(f"{plan.seed}-{plan.writer}")
        self.next_index = 0
        self.known = [0] * len(plan.sessions)  # the highest seq seen per session (acks, reads)
        self.acked = [0] * len(plan.sessions)  # the highest seq acknowledged to this writer
        self.ops: Counter[str] = Counter()
        self.calls: Counter[str] = Counter()
        self.raised: Counter[str] = Counter()
        self.resends = 0
        self.writes: list[tuple[str, int, int, int, int]] = []  # kind, session, first index, n, seq
        self.observed: list[tuple[str, int, int, int, int]] = []  # kind, session, start, n, digest
        self.anomalies: list[str] = []
        self.anomaly_count = 0
        self.unexpected: Counter[str] = Counter()  # errors other than StoreUnavailable, by kind
        self.tracebacks: dict[str, str] = {}  # the first traceback of each

    def run(self) -> None:
        kinds, weights = list(self.operations), list(self.operations.values())
        while time.monotonic() < self.deadline and sum(self.ops.values()) < self.plan.max_ops:
            kind = self.rng.choices(kinds, weights)[0]
            hot = self.rng.random() < HOT_SHARE
            session = self.rng.randrange(HOT if hot else len(self.plan.sessions))
            self.ops[kind] += 1
            getattr(self, f"do_{kind}")(session)

    # -- writes: resent with the same ids until acknowledged ------------------------------------

    def do_append(self, session: int) -> None:
        self.write("append", session, 1)

    def do_extend(self, session: int) -> None:
        self.write("extend", session, self.rng.randint(2, 6))

    def write(self, kind: str, session: int, n: int) -> None:
        first = self.next_index
        self.next_index += n
        batch = [
            AgentMessage.user(f"writer {self.plan.writer} message {i}", id=message_id(self.plan.writer, i))
            for i in range(first, first + n)
        ]
        sid = self.plan.sessions[session]
        if kind == "append":
            seq = self.deliver(kind, lambda: self.store.append(sid, batch[0]))
        else:
            seq = self.deliver(kind, lambda: self.store.extend(sid, batch))
        self.writes.append((kind, session, first, n, -1 if seq is None else seq))
        if seq is not None:
            self.acked[session] = max(self.acked[session], seq)
            self.known[session] = max(self.known[session], seq)

    def deliver(self, kind: str, send: Callable[[], int]) -> int | None:
        """``send()`` until it returns; ``None`` if it still raised when the grace period ran out."""
        while True:
            self.calls[kind] += 1
            try:
                return send()
            except Exception as exc:
                self.failed(kind, exc)
            if time.monotonic() > self.deadline + self.plan.grace:
                return None
            self.resends += 1  # the store backed off already: resend at once

    # -- reads and watches: what they saw must be a slice of the final list ----------------------

    def do_messages(self, session: int) -> None:
        seen = self.read("messages", lambda sid: [m.id for m in self.store.messages(sid)], session)
        if seen is not None:
            self.saw("messages", session, 0, seen)

    def do_load(self, session: int) -> None:
        def load(sid: uuid.UUID) -> list[str]:
            loaded = self.store.load(sid)
            if loaded is None:
                self.anomaly(f"load: session {session} not found")
                return []
            if loaded.seq != len(loaded.messages):
                self.anomaly(f"load: session {session} at seq {loaded.seq} with {len(loaded.messages)}")
            return [m.id for m in loaded.messages]

        seen = self.read("load", load, session)
        if seen is not None:
            self.saw("load", session, 0, seen)

    def do_range(self, session: int) -> None:
        start = self.rng.randint(0, self.known[session])
        stop = start + self.rng.randint(1, RANGE_SPAN)
        seen = self.read("range", lambda sid: [m.id for m in self.store.messages(sid, start, stop)], session)
        if seen is None:
            return
        if len(seen) > stop - start:
            self.anomaly(f"range: messages({start}, {stop}) of session {session} gave {len(seen)}")
        self.saw("range", session, start, seen, fresh=False)

    def do_watch(self, session: int) -> None:
        after = self.rng.randint(max(0, self.known[session] - 5), self.known[session])
        sid = self.plan.sessions[session]
        seen: list[str] = []
        self.calls["watch"] += 1
        watching = self.store.watch(sid, after, timeout=WATCH_IDLE)
        try:
            for item in watching:
                self.follows(session, after, seen, item)
                if len(seen) >= WATCH_ITEMS:
                    break
        except Exception as exc:
            self.failed("watch", exc)  # what it saw before the fault still counts
        finally:
            _close(watching)
        if seen:
            self.saw("watch", session, after, seen, fresh=False)

    def do_next_message(self, session: int) -> None:
        after = self.known[session]
        found = self.read(
            "next_message", lambda sid: self.store.next_message(sid, after, timeout=WATCH_IDLE), session
        )
        if found is not None:
            seen: list[str] = []
            self.follows(session, after, seen, found)
            self.saw("next_message", session, after, seen, fresh=False)

    def read(self, kind: str, call: Callable[[uuid.UUID], T], session: int) -> T | None:
        self.calls[kind] += 1
        try:
            return call(self.plan.sessions[session])
        except Exception as exc:
            self.failed(kind, exc)
            return None

    def follows(self, session: int, after: int, seen: list[str], item: Appended) -> None:
        """A watcher's next item must carry the next seq: nothing skipped, nothing twice."""
        if item.seq != after + len(seen) + 1:
            self.anomaly(f"watch of session {session} after {after}: item {len(seen)} has seq {item.seq}")
        seen.append(item.message.id)

    def saw(self, kind: str, session: int, start: int, seen: list[str], *, fresh: bool = True) -> None:
        """Record an observation; a whole read (``fresh``) must also hold every acknowledged write of
        this writer (read your writes: it began after they were acknowledged)."""
        if fresh and len(seen) < self.acked[session]:
            self.anomaly(f"{kind}: session {session} shows {len(seen)}, seq {self.acked[session]} was acked")
        if len(set(seen)) != len(seen):
            self.anomaly(f"{kind}: session {session} shows a message twice")
        self.known[session] = max(self.known[session], start + len(seen))
        self.observed.append((kind, session, start, len(seen), digest(seen)))

    # -- bookkeeping ------------------------------------------------------------------------

    def failed(self, kind: str, exc: Exception) -> None:
        name = type(exc).__name__
        self.raised[f"{kind}: {name}"] += 1
        if isinstance(exc, StoreUnavailable):
            return
        what = f"{kind}: {type(exc).__module__}.{name}"
        self.unexpected[what] += 1
        if what not in self.tracebacks:
            self.tracebacks[what] = "".join(traceback.format_exception(exc))

    def anomaly(self, text: str) -> None:
        self.anomaly_count += 1
        if len(self.anomalies) < DETAILS:
            self.anomalies.append(text)

    def report(self, error: str | None) -> dict[str, Any]:
        return {
            "writer": self.plan.writer,
            "front": self.plan.front,
            "proxied": self.plan.proxied,
            "error": error,
            "ops": dict(self.ops),
            "calls": dict(self.calls),
            "raised": dict(self.raised),
            "resends": self.resends,
            "store_retries": next(_retries),  # count() hands out 0, 1, 2...: the next is the total
            "next_index": self.next_index,
            "writes": self.writes,
            "observed": self.observed,
            "anomalies": self.anomalies,
            "anomaly_count": self.anomaly_count,
            "unexpected": self.unexpected,
            "tracebacks": self.tracebacks,
        }


def _close(iterator: Iterator[Any]) -> None:
    close = getattr(iterator, "close", None)
    if close is not None:
        close()


def soak_worker(plan: Plan, barrier: Any) -> None:
    """Open a store, wait for every worker and the test, run until the deadline, write the record."""
    worker: Worker | None = None
    error: str | None = None
    runner = asyncio.Runner() if plan.front == "async" else None
    policy = CountingPolicy(attempts=4, initial=0.05, max_wait=0.4)
    options: dict[str, Any] = {
        "prefix": plan.prefix,
        "retry": policy,
        "socket_timeout": plan.socket_timeout,
        "socket_connect_timeout": plan.socket_timeout,
    }
    store: Any = None
    try:
        if runner is None:
            store = SessionStore.from_url(plan.url, **options)
        else:
            store = AsyncAdapter(AsyncSessionStore.from_url(plan.url, **options), runner)
        worker = Worker(plan, store)
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
        except Exception:
            error = error or traceback.format_exc()
        report = worker.report(error) if worker is not None else {"writer": plan.writer, "error": error}
        Path(plan.out).write_text(json.dumps(report))
