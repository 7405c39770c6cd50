"""Write-behind: deliver every acknowledged write of a durable session to the backing store.

The append script lists a durable session in its slot's *dirty index* in the same atomic step as
the write, so what is pending lives in Redis, not in the process that appended: any worker, in any
process, later delivers it, even when the appender died. A worker scans the dirty indexes (on every
primary of a cluster), reads what the backing store lacks of each session, stores it with
``append_messages`` (idempotent by message id, so delivering twice is harmless and order is kept),
and records how far it got; a session leaves the index, and gets its TTL back, only once nothing
newer was written. Several workers may run at once; they only repeat each other's work.

A tiered store (``from_url(..., backing=adapter)``) runs one worker in a daemon thread; the
``redis-sessions sync`` command runs one on its own. Both use this class.
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from collections.abc import Iterable, Iterator
from typing import TYPE_CHECKING, Any, NamedTuple

from ._calls import Command
from ._core import scan_page
from ._durable import sync_mark, sync_read
from .errors import SessionError
from .keys import dirty_key, dirty_key_pattern, session_keys
from .models import SessionId

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
    """Delivers pending writes of durable sessions from ``store``'s Redis to ``backing``."""

    def __init__(self, store: SessionStore, backing: PersistenceAdapter, *, batch: int = 500) -> None:
        self.store, self.backing, self.batch = store, backing, batch
        self.delivered = 0  # messages handed to the backing store by this worker
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    # -- one pass ----------------------------------------------------------------------------

    def pending(self) -> dict[SessionId, float]:
        """Every session listed as dirty, with when it became dirty (Unix seconds)."""
        store, prefix = self.store, self.store._core.prefix
        found: dict[SessionId, float] = {}
        for node in store.transport.scan_nodes():
            cursor = 0
            while True:
                scan = ("SCAN", cursor, "MATCH", dirty_key_pattern(prefix), "COUNT", 1000)
                cursor, keys = store._run(Command("sync", None, (), scan, scan_page), node)
                for raw in keys:
                    key = raw.decode() if isinstance(raw, bytes) else raw
                    zrange = ("ZRANGE", key, 0, -1, "WITHSCORES")
                    entries = store._run(Command("sync", None, (key,), zrange, list))
                    for member, score in _pairs(entries):
                        sid = _session_id(member)
                        if sid is not None:
                            found[sid] = min(found.get(sid, float("inf")), float(score) / 1000)
                if cursor == 0:
                    break
        return found

    def sync_session(self, sid: SessionId, rounds: int = 100) -> int:
        """Deliver what ``backing`` lacks of one session, as far as it went when the visit began
        (a busy session is not chased: the next pass takes the rest, so other sessions get their
        turn and each backing-store write carries a full batch); returns the seq the backing store
        now holds, or 0 if the session is gone."""
        core, reached = self.store._core, 0
        for _ in range(rounds):
            read = self.store._run(sync_read(core, sid, self.batch))
            if read is None:  # deleted (its delete removes the backing copy) or never durable
                self._forget(sid)
                return 0
            self.backing.append_messages(sid, read.state.messages, state=read.state)
            self.delivered += len(read.state.messages)
            reached = read.state.seq or 0
            mark = self.store._run(sync_mark(core, sid, read))
            if mark == "clean":
                return reached
            if mark == "deleted":  # deleted while we copied it: do not leave a copy behind
                self.backing.delete_session(sid)
                return 0
            if mark == "gone":  # evicted or expired once clean: the backing copy is the session now
                return 0
            if mark == "recreated":
                continue  # another incarnation (restored from the record, or created again): read it
            if len(read.state.messages) < self.batch:
                return reached  # all there was when read; newer writes wait for the next pass
        return reached

    def sync_once(self) -> int:
        """One pass over every dirty session; returns how many it visited."""
        pending = self.pending()
        for sid in pending:
            self.sync_session(sid)
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
                Command("sync", sid, (meta,), ("HMGET", meta, "seq", "synced_seq"), list)
            )
            messages += int(seq or 0) - int(synced or 0)
        return Lag(len(pending), messages, max(0.0, time.time() - min(pending.values())))

    def flush(self, timeout: float | None = None) -> None:
        """Return once every write acknowledged before this call (by any process) is in the backing
        store, delivering it here if no other worker does; ``TimeoutError`` after ``timeout`` s."""
        deadline = None if timeout is None else time.monotonic() + timeout
        targets = self._seqs(self.pending())
        while targets:
            for sid in list(targets):
                reached = self.sync_session(sid)
                if reached >= targets[sid] or (reached == 0 and not self._listed(sid)):
                    del targets[sid]
            if targets and deadline is not None and time.monotonic() > deadline:
                raise TimeoutError(f"flush: {len(targets)} session(s) not yet in the backing store")

    # -- in the background -------------------------------------------------------------------

    def start(self, interval: float = 0.1) -> SyncWorker:
        """Run passes every ``interval`` seconds in a daemon thread until ``stop()``."""
        if self._thread is None:
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
        ``SessionStore.<opener>(*args, **options)``: what a tiered store runs in its thread."""
        from .store import SessionStore

        return cls(getattr(SessionStore, opener)(*args, **options), backing)

    def close(self) -> None:
        """Stop the thread, and close the store if ``open`` made it."""
        self.stop()
        self.store.close()

    # -- helpers ------------------------------------------------------------------------------

    def _seqs(self, sids: Iterable[SessionId]) -> dict[SessionId, int]:
        seqs = {}
        for sid in sids:
            meta = session_keys(self.store._core.prefix, sid).meta
            seq = self.store._run(Command("sync", sid, (meta,), ("HGET", meta, "seq"), _int))
            seqs[sid] = seq
        return seqs

    def _listed(self, sid: SessionId) -> bool:
        key = dirty_key(self.store._core.prefix, sid)
        return self.store._run(Command("sync", sid, (key,), ("ZSCORE", key, str(sid)), bool))

    def _forget(self, sid: SessionId) -> None:
        key = dirty_key(self.store._core.prefix, sid)
        self.store._run(Command("sync", sid, (key,), ("ZREM", key, str(sid)), int))


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
