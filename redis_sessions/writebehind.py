"""Write-behind: deliver every acknowledged write of a durable session to its one backing record.

The append script lists a durable session in its slot's *dirty index* in the same atomic step as
the write, so what is pending lives in Redis, not in the process that appended: any worker, in any
process, later delivers it, even when the appender died. A worker finds the dirty sessions, reads
what the record lacks of a whole batch of them in one script call per dirty index (``sync_read``),
stores them in one transaction of the record (``PersistenceAdapter.deliver``), and records how far
each got in one more script call (``sync_mark``); a session leaves the index, and gets its TTL back,
only once nothing newer was written.

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
from collections import defaultdict
from collections.abc import Iterable, Iterator, Sequence
from typing import TYPE_CHECKING, Any, NamedTuple

from ._core import Call, scan_page
from ._durable import Unsynced, sync_mark, sync_read
from .errors import BackingMismatch, RecordMismatch, SessionError, StoreError
from .keys import dirty_key, dirty_key_pattern, record_key, session_keys
from .models import SessionId
from .persistence import Delivery

if TYPE_CHECKING:
    from .persistence import PersistenceAdapter
    from .store import SessionStore

__all__ = ["Lag", "SyncWorker"]

log = logging.getLogger(__name__)


class Lag(NamedTuple):
    """How far the backing store is behind Redis: sessions and messages not yet delivered, and the
    age in seconds of the oldest pending write (0 when nothing is pending)."""

    sessions: int
    messages: int
    seconds: float


class SyncWorker:
    """Delivers pending writes of durable sessions from ``store``'s Redis to ``backing``.

    ``batch``: messages read per session per round; ``sessions``: sessions per script call and
    per transaction of the record."""

    def __init__(
        self, store: SessionStore, backing: PersistenceAdapter, *, batch: int = 500, sessions: int = 200
    ) -> None:
        self.store, self.backing, self.batch, self.sessions = store, backing, batch, sessions
        self.record = backing.record_id
        self.delivered = 0  # messages handed to the backing store by this worker
        self.failures: dict[SessionId, SessionError] = {}  # sessions it cannot deliver, and why
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
        prefix = self.store._core.prefix
        key = record_key(prefix)
        bound = self.store._run(Call("bind", None, None, (key,), ("GET", key), _text))
        if bound is None:  # nothing bound yet: bind it (redis-py's SET callback gives a bool, so
            # no SET NX GET); a Redis refusing writes (out of memory) leaves it to the next pass,
            # while the scripts still refuse another record's worker session by session
            try:
                self.store._run(Call("bind", None, None, (key,), ("SET", key, self.record, "NX"), bool))
                bound = self.store._run(Call("bind", None, None, (key,), ("GET", key), _text))
            except StoreError as exc:
                log.warning("write-behind could not bind prefix %r yet: %s", prefix, exc)
        if bound not in (None, self.record):
            if self.unbound is None:
                log.error(
                    "write-behind stopped: prefix %r is bound to record %s, not %s",
                    prefix,
                    bound,
                    self.record,
                )
            self.unbound = BackingMismatch(f"prefix {prefix!r}", bound, self._name())
        return self.unbound is None

    def _name(self) -> str:
        return f"{self.record} ({self.backing!r})"

    # -- one pass ----------------------------------------------------------------------------

    def pending(self) -> dict[SessionId, float]:
        """Every session listed as dirty, with when it became dirty (Unix seconds)."""
        store, prefix = self.store, self.store._core.prefix
        found: dict[SessionId, float] = {}
        for node in store._scan_nodes():
            cursor = 0
            while True:
                scan = ("SCAN", cursor, "MATCH", dirty_key_pattern(prefix), "COUNT", 1000)
                cursor, keys = store._run(Call("sync", None, None, (), scan, scan_page), node)
                for raw in keys:
                    key = raw.decode() if isinstance(raw, bytes) else raw
                    zrange = ("ZRANGE", key, 0, -1, "WITHSCORES")
                    entries = store._run(Call("sync", None, None, (key,), zrange, list))
                    for member, score in _pairs(entries):
                        sid = _session_id(member)
                        if sid is not None:
                            found[sid] = min(found.get(sid, float("inf")), float(score) / 1000)
                if cursor == 0:
                    break
        return found

    def deliver(self, sids: Iterable[SessionId], rounds: int = 100) -> dict[SessionId, int]:
        """Deliver what the record lacks of these sessions, as far as each went when its visit
        began (a busy session is not chased: the next pass takes the rest); returns the seq the
        record holds of each (0 for a session that is gone). A session that cannot be delivered
        (another record's, a record that disagrees) is left dirty, logged, and kept in
        ``failures``."""
        reached: dict[SessionId, int] = {}
        groups: dict[str, list[SessionId]] = defaultdict(list)
        for sid in sids:
            groups[dirty_key(self.store._core.prefix, sid)].append(sid)
        for index, members in groups.items():
            for start in range(0, len(members), self.sessions):
                reached.update(self._deliver_group(index, members[start : start + self.sessions], rounds))
        return reached

    def _deliver_group(self, index: str, sids: Sequence[SessionId], rounds: int) -> dict[SessionId, int]:
        core, reached = self.store._core, {}
        after: dict[SessionId, int] = {}
        todo = list(sids)
        for _ in range(rounds):
            if not todo:
                break
            reads = self.store._run(sync_read(core, self.record, todo, self.batch, after))
            ready: dict[SessionId, Unsynced] = {}
            for sid, read in zip(todo, reads, strict=True):
                if read is None:  # deleted (its delete removes the record's copy) or never durable
                    self._forget(sid)
                    reached[sid] = 0
                elif isinstance(read, SessionError):
                    self._failed(sid, read)
                else:
                    ready[sid] = read
            deliveries = [Delivery(sid, r.synced + 1, r.state.messages, r.state) for sid, r in ready.items()]
            results = self.backing.deliver(deliveries) if deliveries else {}
            marks, todo, after = [], [], {}
            for sid, read in ready.items():
                held = results[sid]
                last = read.synced + len(read.state.messages)
                if isinstance(held, RecordMismatch):
                    self._failed(sid, held)
                elif held < last:  # a gap: the record holds less than Redis thought; from there
                    log.warning(
                        "record %s holds session %s up to seq %d only: delivering from there",
                        self.record,
                        sid,
                        held,
                    )
                    after[sid] = held
                    todo.append(sid)
                else:
                    self.delivered += len(read.state.messages)
                    self.failures.pop(sid, None)
                    reached[sid] = last
                    marks.append((sid, read, last))
            if marks:
                outcome = self.store._run(sync_mark(core, self.record, index, marks))
                for (sid, read, _), mark in zip(marks, outcome, strict=True):
                    if mark == "deleted":  # deleted while we copied it: do not leave a copy behind
                        self.backing.delete_session(sid)
                        reached[sid] = 0
                    elif mark == "gone":  # evicted or expired once clean: the record is the session
                        reached[sid] = 0
                    elif mark == "other-record":
                        self._failed(
                            sid,
                            BackingMismatch(f"prefix {core.prefix!r}", "another record", self._name(), sid),
                        )
                    elif mark == "recreated" or (mark == "dirty" and len(read.state.messages) >= self.batch):
                        todo.append(sid)  # another incarnation, or more than one batch: read again
        return reached

    def sync_session(self, sid: SessionId, rounds: int = 100) -> int:
        """Deliver what the record lacks of one session; the seq the record now holds (0: gone)."""
        return self.deliver([sid], rounds).get(sid, 0)

    def sync_once(self) -> int:
        """One pass over every dirty session; returns how many it visited."""
        if not self._check_binding():
            return 0
        pending = self.pending()
        self.deliver(pending)
        return len(pending)

    def lag(self) -> Lag:
        """How far behind the backing store is, right now."""
        pending = self.pending()
        if not pending:
            return Lag(0, 0, 0.0)
        messages = 0
        for sid in pending:
            meta = session_keys(self.store._core.prefix, sid).meta
            seq, synced = self.store._run(
                Call("sync", sid, None, (meta,), ("HMGET", meta, "seq", "synced_seq"), list)
            )
            messages += int(seq or 0) - int(synced or 0)
        return Lag(len(pending), messages, max(0.0, time.time() - min(pending.values())))

    def flush(self, timeout: float | None = None) -> None:
        """Return once every write acknowledged before this call (by any process) is in the backing
        record, delivering it here if no other worker does, and the record confirms it holds it;
        ``TimeoutError`` after ``timeout`` s; the session's error (``RecordMismatch``,
        ``BackingMismatch``...) for one that cannot be delivered."""
        deadline = None if timeout is None else time.monotonic() + timeout
        if not self._check_binding():
            raise self.unbound  # type: ignore[misc]
        targets = self._seqs(self.pending())
        waited = dict(targets)
        while targets:
            reached = self.deliver(list(targets))
            for sid in list(targets):
                if sid in self.failures:
                    raise self.failures[sid]
                got = reached.get(sid, 0)
                if got >= targets[sid] or (got == 0 and not self._listed(sid)):
                    del targets[sid]
            if targets and deadline is not None and time.monotonic() > deadline:
                raise TimeoutError(f"flush: {len(targets)} session(s) not yet in the backing store")
        self._confirm(waited)

    def _confirm(self, waited: dict[SessionId, int]) -> None:
        """Check the record itself, not only Redis's cursor: it holds every session waited for up
        to the seq waited for (a session deleted meanwhile is not checked)."""
        held = self.backing.seqs(list(waited))
        for sid, seq in waited.items():
            if held.get(sid, 0) < seq and self._exists(sid):
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
        """End the background thread after its current pass."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None

    def _loop(self, interval: float) -> None:
        while not self._stop.wait(interval):
            try:
                self.sync_once()
            except (SessionError, OSError) as exc:  # the next pass tries again; nothing is lost
                log.warning("write-behind pass failed: %s", exc)

    @classmethod
    def open(
        cls, opener: str, args: tuple[Any, ...], options: dict[str, Any], backing: PersistenceAdapter
    ) -> SyncWorker:
        """A worker with a synchronous store (and connection pool) of its own, made by
        ``SessionStore.<opener>(*args, **options)`` and bound to the prefix: what a tiered store
        runs in its thread. ``BackingMismatch`` if the prefix is bound to another record (when
        Redis cannot be asked now, the first pass binds it, and stops on a mismatch)."""
        from .store import SessionStore

        store = getattr(SessionStore, opener)(*args, **options)
        worker = cls(store, backing)
        try:
            worker.bind()
        except BackingMismatch:
            store.close()
            raise
        except SessionError as exc:  # Redis unreachable or refusing: the passes bind later
            log.warning("write-behind could not bind the prefix yet: %s", exc)
        return worker

    def close(self) -> None:
        """Stop the thread, and close the store if ``open`` made it."""
        self.stop()
        self.store.close()

    # -- helpers ------------------------------------------------------------------------------

    def _failed(self, sid: SessionId, error: SessionError) -> None:
        if type(self.failures.get(sid)) is not type(error):
            log.error("write-behind cannot deliver session %s: %s", sid, error)
        self.failures[sid] = error

    def _seqs(self, sids: Iterable[SessionId]) -> dict[SessionId, int]:
        seqs = {}
        for sid in sids:
            meta = session_keys(self.store._core.prefix, sid).meta
            seq = self.store._run(Call("sync", sid, None, (meta,), ("HGET", meta, "seq"), _int))
            seqs[sid] = seq
        return seqs

    def _exists(self, sid: SessionId) -> bool:
        meta = session_keys(self.store._core.prefix, sid).meta
        return self.store._run(Call("sync", sid, None, (meta,), ("EXISTS", meta), bool))

    def _listed(self, sid: SessionId) -> bool:
        key = dirty_key(self.store._core.prefix, sid)
        return self.store._run(Call("sync", sid, None, (key,), ("ZSCORE", key, str(sid)), bool))

    def _forget(self, sid: SessionId) -> None:
        key = dirty_key(self.store._core.prefix, sid)
        self.store._run(Call("sync", sid, None, (key,), ("ZREM", key, str(sid)), int))


def _pairs(entries: Any) -> Iterator[tuple[Any, Any]]:
    """ZRANGE WITHSCORES as (member, score), whether the client paired them up or not."""
    if entries and isinstance(entries[0], list | tuple):
        yield from ((m, s) for m, s in entries)
    else:
        yield from zip(entries[::2], entries[1::2], strict=True)


def _session_id(member: bytes | str) -> SessionId | None:
    try:
        return uuid.UUID(member.decode() if isinstance(member, bytes) else member)
    except ValueError:
        log.warning("dirty index holds %r, not a session id; ignored", member)
        return None


def _int(reply: Any) -> int:
    return int(reply or 0)


def _text(reply: Any) -> str | None:
    return reply.decode() if isinstance(reply, bytes) else reply
