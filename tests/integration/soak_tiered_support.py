"""The tiered soak's own machinery (``test_soak_tiered.py``), in the test process: the eviction fault,
the killer of write-behind processes, and the comparison of the record with Redis at the end."""

from __future__ import annotations

import contextlib
import os
import random
import signal
import sqlite3
import subprocess
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import redis

from redis_sessions import SessionNotFound, SessionStore
from redis_sessions.keys import dirty_key, dirty_keys, record_key, session_keys
from redis_sessions.persistence import SQLiteAdapter
from tests.integration.soak_tiered_workers import COMMITTED, DELIVERING, PHASES

KILL_GAP = (0.2, 1.0)  # seconds between two kills of a worker process or command
PHASE_WAIT = 2.0  # the killer waits this long at most for its victim to reach the phase it aims at
EVICT_AT_ONCE = (1, 8)  # sessions an eviction fault takes at most (clean ones only)
EVICT = """
-- KEYS = a session's meta hash, messages list, ids zset: deleted together when none is without a
-- TTL (a clean durable session), as volatile-lru may evict it; a dirty one has no TTL: kept
for i = 1, #KEYS do
  if redis.call('PTTL', KEYS[i]) == -1 then
    return 0
  end
end
return redis.call('DEL', unpack(KEYS))
"""


@dataclass
class Evictor:
    """The ``evict`` fault: up to ``EVICT_AT_ONCE`` random sessions, the clean ones evicted."""

    url: str
    prefix: str
    sessions: tuple[uuid.UUID, ...]
    evicted: int = 0
    kept: int = 0  # dirty (or already gone): not evictable

    def __call__(self, rng: random.Random) -> None:
        chosen = rng.sample(self.sessions, rng.randint(*EVICT_AT_ONCE))
        with redis.Redis.from_url(self.url, socket_timeout=2, socket_connect_timeout=2) as admin:
            for sid in chosen:
                if admin.eval(EVICT, 3, *session_keys(self.prefix, sid)):
                    self.evicted += 1
                else:
                    self.kept += 1


@dataclass
class Slot:
    """A delivery worker process or a `sync` command, started again after each kill. A worker's
    ``phase``, ``delivered`` and ``stop`` are shared memory without a lock (a SIGKILLed process
    must not leave a lock held), kept from one process of the slot to the next."""

    start: Callable[[Slot], Any]
    phase: Any = None  # None for a command: it has no phase to watch
    delivered: Any = None
    stop: Any = None
    process: Any = None
    started: int = 0
    log: Path | None = None  # a command's output (this process's)

    def launch(self) -> None:
        self.process = self.start(self)
        self.started += 1

    def alive(self) -> bool:
        if isinstance(self.process, subprocess.Popen):
            return self.process.poll() is None
        return bool(self.process.is_alive())

    def pid(self) -> int:
        return int(self.process.pid)

    def refused_to_start(self) -> bool:
        """A command started while Redis was down says so and exits (as it should: it cannot bind);
        the killer starts it again. Any other exit of its own is an anomaly."""
        text = "" if self.log is None else self.log.read_text("utf-8", "replace")
        return "Error: cannot reach Redis" in text and "delivered" not in text

    def reap(self) -> int | None:
        """Wait for the killed process; its exit code."""
        if isinstance(self.process, subprocess.Popen):
            return self.process.wait(10)
        self.process.join(10)
        return self.process.exitcode  # type: ignore[no-any-return]


@dataclass
class Killer:
    """SIGKILLs a random slot's process every ``KILL_GAP`` s and starts it again, until ``stop``."""

    rng: random.Random
    slots: list[Slot]
    stop: threading.Event = field(default_factory=threading.Event)
    kills: Counter[str] = field(default_factory=Counter)  # by what the victim was doing
    died: list[str] = field(default_factory=list)  # slots found dead before their kill
    refused_to_start: int = 0  # commands started while Redis was down (they exit, are started again)
    error: BaseException | None = None

    def run(self) -> None:
        try:
            while not self.stop.wait(self.rng.uniform(*KILL_GAP)):
                slot = self.rng.choice(self.slots)
                if not slot.alive():
                    self.exited(slot)
                else:
                    self.kills[self.kill(slot)] += 1
                slot.launch()
        except BaseException as exc:
            self.error = exc

    def exited(self, slot: Slot) -> None:
        code = slot.reap()
        if slot.refused_to_start():
            self.refused_to_start += 1
        else:
            self.died.append(f"{kind_of(slot)} exited with {code} on its own")

    def kill(self, slot: Slot) -> str:
        if slot.phase is None:  # a command: killed at a random moment
            os.kill(slot.pid(), signal.SIGKILL)
            slot.reap()
            return "sync command"
        aim = self.rng.choice((DELIVERING, DELIVERING, COMMITTED))
        deadline = time.monotonic() + PHASE_WAIT
        while slot.phase.value != aim and time.monotonic() < deadline and slot.alive():
            time.sleep(0.0002)  # waiting for the phase aimed at, with a deadline
        seen = slot.phase.value
        os.kill(slot.pid(), signal.SIGKILL)
        slot.reap()
        return f"worker {PHASES[seen]}"


def kind_of(slot: Slot) -> str:
    return "sync command" if slot.phase is None else "delivery worker"


@dataclass
class Checked:
    """What the audit of the record against Redis found."""

    anomalies: list[str] = field(default_factory=list)
    finals: list[list[str]] = field(default_factory=list)
    meta: list[tuple[int, int]] = field(default_factory=list)
    evicted_at_end: int = 0  # sessions the soak's evictions left out of Redis at the end
    read_back: int = 0

    def anomaly(self, text: str) -> None:
        self.anomalies.append(text)


def compare(url: str, prefix: str, record: Path, sessions: tuple[uuid.UUID, ...]) -> Checked:
    """Every session: the record equals Redis (ids, order, seq), synced, not dirty."""
    checked = Checked()
    with (
        SQLiteAdapter(record) as rec,
        SessionStore.from_url(url, prefix=prefix, cache_messages=0) as plain,  # no read-through
        redis.Redis.from_url(url) as raw,
    ):
        bound = raw.get(record_key(prefix))
        if bound is None or bound.decode() != rec.record_id:
            checked.anomaly(f"the prefix is bound to {bound!r}, not the record {rec.record_id}")
        for n, sid in enumerate(sessions):
            state = rec.load_session(sid)
            stored = None if state is None else [m.id for m in state.messages]
            try:
                in_redis: list[str] | None = [m.id for m in plain.messages(sid)]
            except SessionNotFound:
                in_redis = None
            if stored is None:
                checked.anomaly(f"session {n}: not in the record")
            if in_redis is None:  # evicted by the soak and not read back since: the record is all
                checked.evicted_at_end += 1
                checked.finals.append(stored or [])
                checked.meta.append((0, 0) if state is None else (state.seq or 0, len(stored or [])))
                continue
            keys = session_keys(prefix, sid)
            seq, synced, bound_to = (
                x.decode() if x else x for x in raw.hmget(keys.meta, "seq", "synced_seq", "record")
            )
            checked.finals.append(in_redis)
            checked.meta.append((int(seq or 0), int(raw.zcard(keys.ids))))
            if stored is not None and stored != in_redis:
                checked.anomaly(
                    f"session {n}: the record differs from Redis: {_difference(stored, in_redis)}"
                )
            if state is not None and (state.seq or 0) != int(seq or 0):
                checked.anomaly(f"session {n}: the record is at seq {state.seq}, Redis at {seq}")
            if synced != seq:
                checked.anomaly(f"session {n}: synced_seq {synced} after the flush, seq {seq}")
            if raw.zscore(dirty_key(prefix, sid, False), str(sid)) is not None:
                checked.anomaly(f"session {n}: still dirty after the flush")
            if bound_to != rec.record_id:
                checked.anomaly(f"session {n}: bound to record {bound_to}, not {rec.record_id}")
        left = sum(raw.zcard(key) for key in dirty_keys(prefix, False))
        if left:
            checked.anomaly(f"{left} entries left in the dirty indexes after the flush")
    return checked


def read_back(
    url: str, prefix: str, record: Path, sessions: tuple[uuid.UUID, ...], checked: Checked, ttl: float
) -> None:
    """Evict every session (as ``volatile-lru`` would: it is clean, so it has a TTL) and read it back
    through a tiered store: whole, in order."""
    with redis.Redis.from_url(url) as raw:
        for n, sid in enumerate(sessions):
            keys = session_keys(prefix, sid)
            if raw.exists(keys.meta) and not raw.eval(EVICT, 3, *keys):
                checked.anomaly(f"session {n}: not evictable after the flush (a key without TTL)")
                raw.delete(*keys)
    with (
        SQLiteAdapter(record) as rec,
        SessionStore.from_url(url, prefix=prefix, ttl=ttl, backing=rec) as tiered,
    ):
        for n, sid in enumerate(sessions):
            got = [m.id for m in tiered.messages(sid)]
            checked.read_back += 1
            if got != checked.finals[n]:
                checked.anomaly(
                    f"session {n} read back through the record: {_difference(got, checked.finals[n])}"
                )


def _difference(got: list[str], want: list[str]) -> str:
    first = next(
        (i for i, (a, b) in enumerate(zip(got, want, strict=False)) if a != b), min(len(got), len(want))
    )
    near = f"{got[first : first + 3]} / {want[first : first + 3]}"
    return f"{len(got)} ids against {len(want)}, first difference at {first}: {near}"


def other_holds(path: Path) -> tuple[int, int]:
    """Sessions and messages the other record holds (it must hold none)."""
    with contextlib.closing(sqlite3.connect(path)) as db:
        sessions = db.execute("SELECT COUNT(*) FROM sessions").fetchone()[0]
        messages = db.execute("SELECT COUNT(*) FROM messages").fetchone()[0]
    return int(sessions), int(messages)
