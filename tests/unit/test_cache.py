"""The history cache's bookkeeping: extending a cached history, and the LRU bound."""

from __future__ import annotations

import uuid

from hypothesis import given, settings
from hypothesis import strategies as st

from redis_sessions import AgentMessage
from redis_sessions.cache import CachedHistory, HistoryCache


def msgs(seqs: range) -> tuple[AgentMessage, ...]:
    return tuple(AgentMessage.user(str(s), id=f"m{s}") for s in seqs)


@settings(max_examples=300, deadline=None)
@given(
    cached_upto=st.integers(0, 30),
    appended=st.integers(0, 30),
    limit=st.one_of(st.none(), st.integers(1, 40)),
)
def test_extending_matches_a_fresh_read(cached_upto: int, appended: int, limit: int | None) -> None:
    # The list as Redis holds it after ``seq`` appends with an optional trim to ``limit``.
    def window(seq: int) -> range:
        return range(max(1, seq - limit + 1) if limit else 1, seq + 1)

    cached = CachedHistory(b"e", cached_upto, msgs(window(cached_upto)))
    seq = cached_upto + appended
    now = window(seq)
    length, fresh = len(now), seq - cached_upto
    # What read_since.lua answers: only the new tail when the cache reaches the list's head.
    first = max(0, length - fresh) if cached.first_seq <= seq - length + 1 else 0
    tail = list(msgs(now))[first:]
    result = cached.extended(b"e", seq, length, first, tail)
    assert result is not None
    assert [m.id for m in result.messages] == [f"m{s}" for s in now]
    assert (result.seq, result.first_seq) == (seq, now.start)


def test_an_out_of_step_answer_is_refused_not_merged() -> None:
    cached = CachedHistory(b"e", 5, msgs(range(1, 6)))
    # The list holds seqs 2..7: the cache supplies 2..5 (four items), but the answer claims that
    # three come before the new ones: the two disagree, so nothing is merged.
    assert cached.extended(b"e", 7, 6, 3, list(msgs(range(5, 8)))) is None
    merged = cached.extended(b"e", 7, 6, 4, list(msgs(range(6, 8))))
    assert merged is not None
    assert [m.id for m in merged.messages] == [f"m{s}" for s in range(2, 8)]


def test_lru_bound_by_messages() -> None:
    cache = HistoryCache(max_messages=10)
    a, b, c = uuid.uuid4(), uuid.uuid4(), uuid.uuid4()
    cache.put(a, CachedHistory(b"", 4, msgs(range(1, 5))))
    cache.put(b, CachedHistory(b"", 4, msgs(range(1, 5))))
    assert cache.get(a) is not None  # a is now the most recently used
    cache.put(c, CachedHistory(b"", 4, msgs(range(1, 5))))
    assert cache.get(b) is None, "least recently used goes first"
    assert cache.get(a) is not None
    assert cache.get(c) is not None
    assert cache.size == 8
    cache.put(a, CachedHistory(b"", 11, msgs(range(1, 12))))
    assert cache.get(a) is None, "a history over the bound is not kept (and its old entry is dropped)"
    assert cache.size == 4
    cache.discard(c)
    assert cache.size == 0
    assert cache.get(c) is None
    assert bool(cache), "an empty cache is still a cache"
