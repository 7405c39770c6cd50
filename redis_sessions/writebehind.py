"""Write-behind: deliver every acknowledged write of a durable session to its one backing record.

The append script lists a durable session in its *dirty index* in the same atomic step as the
write, so what is pending lives in Redis, not in the process that appended: any worker, in any
process, later delivers it, even when the appender died. A pass finds the dirty sessions of the
worker's slot groups without scanning the keyspace (``_dirty``) and delivers them in rounds
(``_rounds``): what the record lacks of a batch of them read in one round trip (``sync_read``),
stored in one transaction of the record (``PersistenceAdapter.deliver``) while the next batch is
read, and how far each got recorded in one more round trip (``sync_mark``); a session leaves its
index, and gets its TTL back, only once nothing newer was written.

**Workers share the load.** The 16384 slots are leased in 64 groups: every live worker (a tiered
store's thread, ``redis-sessions sync`` processes on any host) holds a fair share for a few seconds
at a time, renewed each pass, so two workers do not deliver the same sessions at once and a dead
worker's groups pass on within a lease. The leases only spread the work; correctness never rests on
them (delivery is idempotent and the record refuses gaps). ``flush()`` delivers whatever it waits
for, whoever holds the lease.

**One record per prefix.** The bookkeeping in Redis (each session's ``synced_seq``, the dirty index)
describes one record, so a prefix is bound to one (``<prefix>:record`` holds its ``record_id``) and
each durable session carries the id of the record it is synced to. A worker of another record is
refused when it starts (``BackingMismatch``) and, should it run anyway, by every read and mark of
the scripts: it can neither advance ``synced_seq`` nor mark a session clean. The record, in turn,
never stores a batch that would leave a gap: it says what it holds and the worker delivers from
there. ``redis-sessions rebind`` moves a prefix to another record on purpose.

A tiered store (``from_url(..., backing=adapter)``) runs one worker in a daemon thread; the
``redis-sessions sync`` command runs one on its own. Both use this class.
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING

from . import _dirty as dirty
from ._dirty import Lag
from ._rounds import Rounds
from ._sync_calls import sync_lease
from ._sync_io import SyncTransport
from .errors import BackingMismatch, RecordMismatch, SessionError
from .keys import SLOT_GROUPS
from .models import SessionId

if TYPE_CHECKING:
    from .persistence import PersistenceAdapter
    from .store import SessionStore

__all__ = ["Lag", "SyncWorker"]

log = logging.getLogger(__name__)


class SyncWorker:
    """Delivers pending writes of durable sessions from ``store``'s Redis to ``backing``.

    ``batch``: messages read per session per round; ``sessions``: sessions per script call and
    ``per_transaction`` per transaction of the record; ``lease``: seconds a worker holds its share
    of the slot groups (renewed every pass); ``backlog`` (sessions): above it, each pass logs a
    warning and calls ``on_backlog(sessions)`` (a metric hook), instead of falling behind silently.
    """

    def __init__(
        self,
        store: SessionStore,
        backing: PersistenceAdapter,
        *,
        batch: int = 500,
        sessions: int = 200,
        per_transaction: int = 1000,
        lease: float = 5.0,
        backlog: int | None = 10_000,
        on_backlog: Callable[[int], None] | None = None,
    ) -> None:
        self.io = SyncTransport(store)
        self.store, self.backing = store, backing
        self.record = backing.record_id
        sizes = {"batch": batch, "sessions": sessions, "per_transaction": per_transaction}
        self.rounds = Rounds(self.io, backing, self._name(), **sizes)
        self.token = uuid.uuid4().hex
        self.lease_ms = int(lease * 1000)
        self.groups: list[int] = list(range(SLOT_GROUPS))  # held after the first lease: a share
        self.backlog_limit, self.on_backlog = backlog, on_backlog
        self.backlog = 0  # sessions pending in this worker's slot groups at its last pass
        self.oldest: float | None = None  # when the oldest of them became dirty (Unix s; None: none)
        self.unbound: BackingMismatch | None = None  # set once the prefix is bound elsewhere
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    # -- the binding ---------------------------------------------------------------------------

    def bind(self) -> SyncWorker:
        """Bind the prefix to this worker's record, or find it bound to it already;
        ``BackingMismatch`` (nothing changed) if it is bound to another."""
        if not self._check_binding():
            raise self.unbound  # type: ignore[misc]
        return self

    def _check_binding(self) -> bool:
        """Bind the prefix if nothing is bound yet; whether it is bound to this record (every pass
        asks again: ``rebind`` may have moved it, and a worker of the old record must stop)."""
        if self.unbound is None:
            self.unbound = dirty.check_binding(self.io, self.record, self._name())
        return self.unbound is None

    def _name(self) -> str:
        return f"{self.record} ({self.backing!r})"

    # -- finding the work ----------------------------------------------------------------------

    def pending(self, groups: Iterable[int] | None = None, limit: int = 1_000_000) -> dict[SessionId, float]:
        """The sessions listed as dirty (in ``groups`` of slots; all by default), with when each
        became dirty (Unix seconds): no SCAN of the keyspace (see ``_dirty.pending``)."""
        return dirty.pending(self.io, groups, limit)

    def lease(self) -> list[int]:
        """Renew this worker's share of the slot groups (taking free ones): several workers (threads
        of tiered stores, ``redis-sessions sync`` processes on several hosts) split the slots, and a
        dead worker's groups pass on once its lease runs out."""
        self.groups = self.io.run(sync_lease(self.io.core, self.token, self.lease_ms))
        return self.groups

    # -- delivering ----------------------------------------------------------------------------

    def deliver(self, sids: Iterable[SessionId], rounds: int = 100) -> dict[SessionId, int]:
        """Deliver what the record lacks of these sessions, as far as each went when its visit
        began (a busy session is not chased: the next pass takes the rest): reads in one round trip
        per ``sessions`` (per slot on a cluster, pipelined), one record transaction per
        ``per_transaction`` sessions (the next ones read meanwhile), marks in one more round trip.
        Returns the seq the record holds of each (0 for a session that is gone); one that cannot
        be delivered (another record's, a record that disagrees) is left dirty, logged, and kept in
        ``failures``."""
        return self.rounds.deliver(sids, rounds)

    @property
    def delivered(self) -> int:
        """Messages handed to the backing store by this worker."""
        return self.rounds.delivered

    @property
    def failures(self) -> dict[SessionId, SessionError]:
        """Sessions this worker cannot deliver, and why."""
        return self.rounds.failures

    def sync_session(self, sid: SessionId, rounds: int = 100) -> int:
        """Deliver what the record lacks of one session; the seq the record now holds (0: gone)."""
        return self.deliver([sid], rounds).get(sid, 0)

    def sync_once(self) -> int:
        """One pass over the dirty sessions of this worker's slot groups; how many it visited."""
        if not self._check_binding():
            return 0
        pending = self.pending(self.lease())
        self.backlog = len(pending)
        self.oldest = min(pending.values(), default=None)
        if self.backlog_limit is not None and self.backlog > self.backlog_limit:
            log.warning(
                "write-behind backlog: %d sessions pending (bound %d)", self.backlog, self.backlog_limit
            )
            if self.on_backlog is not None:
                self.on_backlog(self.backlog)
        self.deliver(pending)
        return len(pending)

    def lag(self) -> Lag:
        """How far behind the backing store is, right now (all slot groups)."""
        return dirty.lag(self.io)

    def flush(self, timeout: float | None = None) -> None:
        """Return once every write acknowledged before this call (by any process) is in the backing
        record, delivering it here if no other worker does (whatever the leases say), and the
        record confirms it holds it; ``TimeoutError`` after ``timeout`` s; the session's error
        (``RecordMismatch``, ``BackingMismatch``...) for one that cannot be delivered."""
        deadline = None if timeout is None else time.monotonic() + timeout
        if not self._check_binding():
            raise self.unbound  # type: ignore[misc]
        targets = {sid: int(seq or 0) for sid, (seq,) in dirty.fields(self.io, self.pending(), "seq").items()}
        waited = dict(targets)
        while targets:
            reached = self.deliver(list(targets))
            for sid in list(targets):
                if sid in self.failures:
                    raise self.failures[sid]
                got = reached.get(sid, 0)
                if got >= targets[sid] or (got == 0 and not dirty.listed(self.io, sid)):
                    del targets[sid]
            if targets and deadline is not None and time.monotonic() > deadline:
                raise TimeoutError(f"flush: {len(targets)} session(s) not yet in the backing store")
        self._confirm(waited)

    def _confirm(self, waited: dict[SessionId, int]) -> None:
        """Check the record itself, not only Redis's cursor: it holds every session waited for up
        to the seq waited for (a session deleted meanwhile is not checked)."""
        held = self.backing.seqs(list(waited))
        for sid, seq in waited.items():
            if held.get(sid, 0) < seq and dirty.exists(self.io, sid):
                raise RecordMismatch(sid, f"flush waited for seq {seq}, the record holds {held.get(sid, 0)}")

    # -- in the background -------------------------------------------------------------------

    def start(self, interval: float = 0.1) -> SyncWorker:
        """Run passes every ``interval`` seconds in a daemon thread until ``stop()``."""
        if self._thread is None:
            self._stop.clear()
            self._thread = threading.Thread(
                target=self._loop, args=(interval,), name="redis-sessions-sync", daemon=True
            )
            self._thread.start()
        return self

    def stop(self, timeout: float | None = 10.0) -> None:
        """End the background thread after its current pass, and hand its slot groups back."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None
            try:
                self.io.run(sync_lease(self.io.core, self.token, self.lease_ms, release=True))
            except SessionError as exc:  # they pass on anyway once the lease runs out
                log.warning("write-behind could not hand its slot groups back: %s", exc)

    def _loop(self, interval: float) -> None:
        """Passes every ``interval`` seconds while there is work; an idle worker waits twice as
        long after each empty pass, up to 1 s (an idle pass is cheap, but not free on a cluster)."""
        wait = interval
        while not self._stop.wait(wait):
            try:
                found = self.sync_once()
            except (SessionError, OSError) as exc:  # the next pass tries again; nothing is lost
                log.warning("write-behind pass failed: %s", exc)
                found = 0
            wait = interval if found else min(max(interval, 1.0), wait * 2)

    @classmethod
    def open(cls, store: SessionStore, backing: PersistenceAdapter) -> SyncWorker:
        """A worker over ``store``, a synchronous store (and connection pool) of its own, which it
        closes, bound to the prefix: what a tiered store runs in its thread (the store opens it, so
        this module never imports the store). ``BackingMismatch`` if the prefix is bound to
        another record (when Redis cannot be asked now, the first pass binds it, and stops on a
        mismatch)."""
        worker = cls(store, backing)
        try:
            worker.bind()
            dirty.adopt_legacy(worker.io)
        except BackingMismatch:
            store.close()
            raise
        except SessionError as exc:  # Redis unreachable or refusing: the passes bind later
            log.warning("write-behind could not bind the prefix yet: %s", exc)
        return worker

    def close(self) -> None:
        """Stop the thread, and close the store if ``open`` made it."""
        self.stop()
        self.io.close()
