"""Delivery rounds: how the write-behind worker moves a batch of dirty sessions into the record.

A round reads what the record lacks of many sessions (``sync_read``: one script call per
``sessions``, or per slot on a cluster, pipelined), stores them in one transaction of the record
per ``per_transaction`` sessions (``PersistenceAdapter.deliver``), and only then records how far
each got (``sync_mark``), so a session leaves its dirty index, and gets its TTL back, only once the
record holds it and nothing newer was written.

**Reading overlaps the record.** The sessions go in slices of ``per_transaction``; while the record
stores one slice, a reader thread reads the next from Redis. The record's statements, its commit and
its fsync run outside the GIL (as does Redis, in its own process), so the two halves overlap on a
pass over many sessions: the pass takes about the longer of them, not their sum. Nothing else
changes: the record work and every mark stay in the calling thread, one slice after another, and
a slice is marked only after its transaction committed; a session is in one slice of a round, so
its batches stay in seq order.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import TYPE_CHECKING

from ._sync_calls import Read, Unsynced, sync_mark, sync_read
from ._sync_io import SyncTransport
from .errors import BackingMismatch, RecordMismatch, SessionError
from .models import SessionId
from .persistence import Delivered

if TYPE_CHECKING:
    from .persistence import PersistenceAdapter

__all__ = ["Rounds"]

log = logging.getLogger("redis_sessions.writebehind")  # the worker's own log


class Rounds:
    """Delivers sessions from ``io``'s Redis into ``backing`` for the worker of ``record``
    (``name`` describes that record in errors); see the module docstring for the sizes."""

    def __init__(
        self,
        io: SyncTransport,
        backing: PersistenceAdapter,
        name: str,
        *,
        batch: int,
        sessions: int,
        per_transaction: int,
    ) -> None:
        self.io, self.backing, self.name = io, backing, name
        self.record = backing.record_id
        self.batch, self.sessions, self.per_transaction = batch, sessions, per_transaction
        self.delivered = 0  # messages handed to the backing store
        self.failures: dict[SessionId, SessionError] = {}  # sessions it cannot deliver, and why

    def deliver(self, sids: Iterable[SessionId], rounds: int = 100) -> dict[SessionId, int]:
        """Deliver what the record lacks of these sessions, as far as each went when its visit
        began; the seq the record holds of each (0 for one that is gone). See
        ``SyncWorker.deliver``."""
        reached: dict[SessionId, int] = {}
        todo, after = list(sids), dict[SessionId, int]()
        step = max(1, self.per_transaction)
        with ThreadPoolExecutor(1, thread_name_prefix="redis-sessions-read") as reader:
            for _ in range(rounds):
                if not todo:
                    break
                slices = [todo[i : i + step] for i in range(0, len(todo), step)]
                todo, gaps = [], dict[SessionId, int]()
                upcoming = self._read_ahead(reader, slices[0], after, len(slices) > 1)
                for k in range(len(slices)):
                    reads = upcoming.result()
                    if k + 1 < len(slices):  # read the next slice while the record stores this one
                        upcoming = reader.submit(self.read, slices[k + 1], after)
                    todo += self._store(reads, reached, gaps)
                after = gaps
        return reached

    def _read_ahead(
        self, reader: ThreadPoolExecutor, sids: list[SessionId], after: dict[SessionId, int], ahead: bool
    ) -> Future[list[tuple[SessionId, Read]]]:
        """The first slice: in the reader thread only when more slices follow."""
        if ahead:
            return reader.submit(self.read, sids, after)
        done: Future[list[tuple[SessionId, Read]]] = Future()
        done.set_result(self.read(sids, after))
        return done

    def read(self, sids: list[SessionId], after: dict[SessionId, int]) -> list[tuple[SessionId, Read]]:
        """What the record lacks of ``sids``, in one round trip (``sync_read`` per ``sessions``)."""
        chunks = self.io.chunks(self.sessions, sids)
        calls = [sync_read(self.io.core, self.record, chunk, self.batch, after) for chunk in chunks]
        replies = self.io.run_all(calls)
        return list(zip([s for c in chunks for s in c], [r for rs in replies for r in rs], strict=True))

    def _store(
        self, reads: list[tuple[SessionId, Read]], reached: dict[SessionId, int], gaps: dict[SessionId, int]
    ) -> list[SessionId]:
        """Store one slice in the record, then mark it in Redis; the sessions to read again (a
        gap the record reported, another incarnation, more than one batch)."""
        ready: dict[SessionId, Unsynced] = {}
        for sid, read in reads:
            if read is None:  # deleted (its delete removes the record's copy) or evicted clean:
                reached[sid] = 0  # sync_read took it off its dirty index in the same step
            elif isinstance(read, SessionError):
                self.failed(sid, read)
            else:
                ready[sid] = read
        deliveries = [read.delivery for read in ready.values()]
        results: dict[SessionId, Delivered] = self.backing.deliver(deliveries) if deliveries else {}
        again: list[SessionId] = []
        marks: dict[SessionId, tuple[SessionId, Unsynced, int]] = {}
        for sid, read in ready.items():
            held, last = results[sid], read.synced + len(read.delivery.rows)
            if isinstance(held, RecordMismatch):
                self.failed(sid, held)
            elif held < last:  # a gap: the record holds less than Redis thought; from there
                log.warning(
                    "record %s holds session %s up to seq %d only: again from there", self.record, sid, held
                )
                gaps[sid] = held
                again.append(sid)
            else:
                self.delivered += len(read.delivery.rows)
                if self.failures:  # mostly empty: spare hashing the id (in Python) for nothing
                    self.failures.pop(sid, None)
                reached[sid] = last
                marks[sid] = (sid, read, last)
        again += self.mark(marks, ready, reached)
        return again

    def mark(
        self,
        marks: dict[SessionId, tuple[SessionId, Unsynced, int]],
        ready: dict[SessionId, Unsynced],
        reached: dict[SessionId, int],
    ) -> list[SessionId]:
        """Record in Redis how far each session got, in one round trip; the ones to read again."""
        chunks = self.io.chunks(self.sessions, list(marks))
        calls = [sync_mark(self.io.core, self.record, [marks[s] for s in c]) for c in chunks]
        outcomes = self.io.run_all(calls)
        again: list[SessionId] = []
        for sid, mark in zip([s for c in chunks for s in c], [m for ms in outcomes for m in ms], strict=True):
            if mark == "deleted":  # deleted while we copied it: do not leave a copy behind
                self.backing.delete_session(sid)
                reached[sid] = 0
            elif mark == "gone":  # evicted or expired once clean: the record is the session
                reached[sid] = 0
            elif mark == "other-record":
                prefix = f"prefix {self.io.core.prefix!r}"
                self.failed(sid, BackingMismatch(prefix, "another record", self.name, sid))
            elif mark == "recreated" or (mark == "dirty" and len(ready[sid].delivery.rows) >= self.batch):
                again.append(sid)  # another incarnation, or more than one batch: read again
        return again

    def failed(self, sid: SessionId, error: SessionError) -> None:
        """Keep why ``sid`` cannot be delivered (logged once per kind of error)."""
        if type(self.failures.get(sid)) is not type(error):
            log.error("write-behind cannot deliver session %s: %s", sid, error)
        self.failures[sid] = error
