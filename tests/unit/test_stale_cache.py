"""A history cache out of step with Redis is not corruption: the entry is dropped and the read runs
again uncached, inside the store, so the caller gets the history, not an error."""

from __future__ import annotations

import uuid

import fakeredis
import pytest

from redis_sessions import AgentMessage, CorruptSession, SessionStore
from redis_sessions._core import StoreCore
from redis_sessions._read import StaleCache, messages
from redis_sessions.cache import CachedHistory, HistoryCache

SID = uuid.UUID("0b1c2d3e-4f5a-4b6c-8d7e-9f0a1b2c3d4e")


def history(n: int) -> tuple[AgentMessage, ...]:
    return tuple(AgentMessage.user(str(i), id=str(i)) for i in range(1, n + 1))


def test_an_out_of_step_reply_drops_the_entry_and_says_stale() -> None:
    core = StoreCore(prefix="rs", ttl=None, max_messages=None, codec="msgpack", max_message_bytes=1 << 20)
    cache = HistoryCache(100)
    cache.put(SID, CachedHistory(b"e", 3, history(3)))
    call = messages(core, SID, 0, None, cache)
    assert call.script == "read_since"
    # Redis answers "items from list position 2" where the cache can only line up at position 3.
    reply = [0, b"msgpack", b"e", 5, 5, 2, [core.codec.encode(m) for m in history(5)[2:]]]
    with pytest.raises(StaleCache) as info:
        call.parse(reply)
    assert isinstance(info.value, CorruptSession)  # what the reads' recovery already catches
    assert cache.get(SID) is None


def test_the_store_reads_again_uncached_instead_of_raising(monkeypatch: pytest.MonkeyPatch) -> None:
    store = SessionStore(fakeredis.FakeRedis())
    sid = store.create()
    store.extend(sid, history(3))
    assert store.messages(sid) == list(history(3))  # cached now
    store.append(sid, AgentMessage.user("4", id="4"))
    stale = {"left": 1}
    real = CachedHistory.extended

    def once_out_of_step(self: CachedHistory, *args: object) -> CachedHistory | None:
        if stale["left"]:
            stale["left"] -= 1
            return None
        return real(self, *args)  # type: ignore[arg-type]

    monkeypatch.setattr(CachedHistory, "extended", once_out_of_step)
    assert store.messages(sid) == [*history(3), AgentMessage.user("4", id="4")]
    assert stale["left"] == 0
    store.append(sid, AgentMessage.user("5", id="5"))
    stale["left"] = 1
    loaded = store.load(sid)
    assert loaded is not None
    assert [m.id for m in loaded.messages] == ["1", "2", "3", "4", "5"]
