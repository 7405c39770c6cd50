"""The validated local history cache: agents re-read the same conversation every turn.

A store keeps the histories it read, bounded by a total number of messages (least recently used
sessions go first). A cached read is still one round trip: ``read_since.lua`` confirms the session's
epoch and counters and returns only the messages this process has not seen, or the whole list when
the cache cannot be extended (another incarnation of the id, a gap). So a cached read is never stale:
a write from any process, a trim or a delete is seen on the very next read.
"""

from __future__ import annotations

import threading
import uuid
from collections import OrderedDict
from typing import NamedTuple

from .models import AgentMessage

__all__ = ["CachedHistory", "HistoryCache"]


class CachedHistory(NamedTuple):
    """What the list held at ``seq``: ``messages`` are seqs ``seq - len(messages) + 1 .. seq``.

    ``epoch`` is the session's incarnation (``b""`` for a session written without one, which the
    read script then never extends: it always answers with the whole list).
    """

    epoch: bytes
    seq: int
    messages: tuple[AgentMessage, ...]

    @property
    def first_seq(self) -> int:
        return self.seq - len(self.messages) + 1

    def extended(
        self, epoch: bytes, seq: int, length: int, first: int, fresh: list[AgentMessage]
    ) -> CachedHistory | None:
        """The history after a read that returned list items ``first..`` (``fresh``).

        ``first == 0`` means the read returned the whole list. Otherwise the list's first ``first``
        items must be the newest cached ones; ``None`` when they are not (the cache is out of step).
        """
        if first == 0:
            return CachedHistory(epoch, seq, tuple(fresh))
        drop = (seq - length + 1) - self.first_seq  # trimmed from the head since we cached
        kept = self.messages[drop:] if drop >= 0 else ()
        if len(kept) != first:
            return None
        return CachedHistory(epoch, seq, kept + tuple(fresh))


class HistoryCache:
    """Session histories by id, at most ``max_messages`` messages in all (LRU by session)."""

    def __init__(self, max_messages: int) -> None:
        self.max_messages = max_messages
        self._entries: OrderedDict[uuid.UUID, CachedHistory] = OrderedDict()
        self._size = 0
        self._lock = threading.Lock()  # a sync store may be shared by threads

    def get(self, sid: uuid.UUID) -> CachedHistory | None:
        with self._lock:
            entry = self._entries.get(sid)
            if entry is not None:
                self._entries.move_to_end(sid)
            return entry

    def put(self, sid: uuid.UUID, entry: CachedHistory) -> None:
        if len(entry.messages) > self.max_messages:
            self.discard(sid)
            return
        with self._lock:
            old = self._entries.pop(sid, None)
            self._size += len(entry.messages) - (len(old.messages) if old else 0)
            self._entries[sid] = entry
            while self._size > self.max_messages:
                _, evicted = self._entries.popitem(last=False)
                self._size -= len(evicted.messages)

    def discard(self, sid: uuid.UUID) -> None:
        with self._lock:
            old = self._entries.pop(sid, None)
            if old is not None:
                self._size -= len(old.messages)

    @property
    def size(self) -> int:
        """Messages held now, over all sessions (no __len__: an empty cache must stay truthy)."""
        return self._size
