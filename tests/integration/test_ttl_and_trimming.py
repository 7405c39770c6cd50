"""Expiry (refreshed on every key of a session by each write) and trimming to ``max_messages``.

TTLs are checked with PTTL right after a write, never by waiting for anything to expire.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import timedelta
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from redis_sessions import AgentMessage
from redis_sessions.keys import session_keys, tokens_key
from tests.conftest import MakeStore, Store
from tests.support import Backend, ids, messages_of

HOUR_MS = 3_600_000


def slack(ttl_ms: int) -> int:
    """How much later than ``ttl`` after its last write a session may expire: an append sets every
    key's TTL with 1 % to spare (at most a second), so the appends of a burst set it once."""
    return min(ttl_ms // 100, 1000)


HOUR_UP = HOUR_MS + slack(HOUR_MS)


def pttls(backend: Backend, keys: Sequence[str]) -> list[int]:
    return [backend.raw.pttl(key) for key in keys]


def test_ttl_covers_every_key_after_an_append(make_store: MakeStore, backend: Backend) -> None:
    store = make_store(ttl=3600)
    sid = store.create()
    keys = session_keys(backend.prefix, sid)
    meta_ttl, messages_ttl, ids_ttl = pttls(backend, keys)
    assert 0 < meta_ttl <= HOUR_MS
    assert (messages_ttl, ids_ttl) == (-2, -2), "no list or ids yet"
    store.append(sid, AgentMessage.user("x"))
    assert all(0 < ttl <= HOUR_UP for ttl in pttls(backend, keys))


@pytest.mark.parametrize(
    "write",
    [
        lambda store, sid: store.append(sid, AgentMessage.user("more")),
        lambda store, sid: store.extend(sid, messages_of(3, "more")),
        lambda store, sid: store.set_metadata(sid, {"k": "v"}),
    ],
    ids=["append", "extend", "set_metadata"],
)
def test_each_write_refreshes_the_ttl_of_every_key(
    make_store: MakeStore, backend: Backend, write: Callable[[Store, Any], object]
) -> None:
    store = make_store(ttl=timedelta(hours=1))
    sid = store.create()
    store.append(sid, AgentMessage.user("first"))
    keys = (*session_keys(backend.prefix, sid), tokens_key(backend.prefix, sid))  # the counts too
    age_keys(backend, keys)
    write(store, sid)
    assert all(HOUR_MS - 60_000 < ttl <= HOUR_UP for ttl in pttls(backend, keys)), pttls(backend, keys)


def age_keys(backend: Backend, keys: Sequence[str], left_ms: int = 10_000) -> None:
    """As if most of the TTL had passed: every key, and the deadline the meta records for them
    (expiry_ms, which lets the appends of a burst skip setting it again), ``left_ms`` from now."""
    seconds, micros = backend.raw.time()
    backend.raw.hset(keys[0], "expiry_ms", seconds * 1000 + micros // 1000 + left_ms)
    for key in keys:
        backend.raw.pexpire(key, left_ms)


def test_a_burst_of_appends_keeps_every_key_alive_at_least_the_ttl(
    make_store: MakeStore, backend: Backend
) -> None:
    # The first append sets every key's TTL with slack; those right after it find them living long
    # enough and set nothing (unless the slack ran out meanwhile): each key lives >= ttl after each.
    store = make_store(ttl=timedelta(hours=1))
    sid = store.create()
    keys = (*session_keys(backend.prefix, sid), tokens_key(backend.prefix, sid))
    deadlines = []
    for i in range(5):
        store.append(sid, AgentMessage.user(f"m{i}"))
        deadlines.append(int(backend.raw.hget(keys[0], "expiry_ms")))
        assert all(HOUR_MS - 1_000 < ttl <= HOUR_UP for ttl in pttls(backend, keys)), pttls(backend, keys)
    assert len(set(deadlines)) < len(deadlines), "a burst sets the TTL once (or twice, at a slack's end)"


@pytest.mark.parametrize("made", [0, 1, 2, 3], ids=["meta", "messages", "ids", "tokens"])
def test_a_key_made_anew_in_a_burst_gets_the_ttl(make_store: MakeStore, backend: Backend, made: int) -> None:
    # A key gone mid-burst (evicted, say) is made again by the next append, without a TTL: that
    # append sees it (an empty list or counts, ids holding only its own) and sets every key's.
    store = make_store(ttl=timedelta(hours=1))
    sid = store.create()
    keys = (*session_keys(backend.prefix, sid), tokens_key(backend.prefix, sid))
    store.extend(sid, messages_of(3))
    if made == 0:  # the meta hash: the session is gone, a new one is made
        backend.raw.delete(*keys)
        sid = store.create(session_id=sid)
    else:
        backend.raw.delete(keys[made])
    store.append(sid, AgentMessage.user("after"))
    assert all(0 < ttl <= HOUR_UP for ttl in pttls(backend, keys)), pttls(backend, keys)


def test_a_pop_refreshes_the_ttl_of_every_key_left(make_store: MakeStore, backend: Backend) -> None:
    store = make_store(ttl=timedelta(hours=1))
    sid = store.create()
    store.extend(sid, messages_of(3))
    keys = (*session_keys(backend.prefix, sid), tokens_key(backend.prefix, sid))
    age_keys(backend, keys)
    store.pop(sid)
    assert all(HOUR_MS - 60_000 < ttl <= HOUR_UP for ttl in pttls(backend, keys)), pttls(backend, keys)
    assert [m.id for m in store.context(sid, 10**6).messages] == ids(messages_of(3))[:2]


@pytest.mark.parametrize("write", ["set_metadata", "pop", "fork"])
def test_a_write_that_sets_the_ttl_its_own_way_leaves_no_deadline_behind(
    make_store: MakeStore, backend: Backend, write: str
) -> None:
    # Those writes set a plain TTL (or copy keys under it); a deadline left in expiry_ms would let
    # the next append skip setting every key's although they may expire before it says.
    store = make_store(ttl=timedelta(hours=1))
    sid = store.create()
    store.extend(sid, messages_of(3))
    assert backend.raw.hget(session_keys(backend.prefix, sid).meta, "expiry_ms") is not None
    if write == "set_metadata":
        store.set_metadata(sid, {"k": "v"})
    elif write == "pop":
        store.pop(sid)
    else:
        sid = store.fork(sid)
    assert backend.raw.hget(session_keys(backend.prefix, sid).meta, "expiry_ms") in (None, b"0")
    store.append(sid, AgentMessage.user("after"))
    keys = (*session_keys(backend.prefix, sid), tokens_key(backend.prefix, sid))
    assert all(HOUR_MS - 1_000 < ttl <= HOUR_UP for ttl in pttls(backend, keys)), pttls(backend, keys)


def test_reads_do_not_refresh_the_ttl(make_store: MakeStore, backend: Backend) -> None:
    store = make_store(ttl=3600)
    sid = store.create()
    store.append(sid, AgentMessage.user("x"))
    keys = session_keys(backend.prefix, sid)
    for key in keys:
        backend.raw.pexpire(key, 10_000)
    store.load(sid)
    store.messages(sid)
    store.exists(sid)
    assert all(0 < ttl <= 10_000 for ttl in pttls(backend, keys))


def test_no_ttl_means_never_expire(make_store: MakeStore, backend: Backend) -> None:
    store = make_store(ttl=None)
    sid = store.create(metadata={"a": "b"})
    store.extend(sid, messages_of(3))
    store.set_metadata(sid, {"c": "d"})
    assert pttls(backend, session_keys(backend.prefix, sid)) == [-1, -1, -1]


@pytest.mark.parametrize(("ttl", "ms"), [(timedelta(minutes=5), 300_000), (90, 90_000), (2.5, 2_500)])
def test_ttl_units(make_store: MakeStore, backend: Backend, ttl: float | timedelta, ms: int) -> None:
    store = make_store(ttl=ttl)
    sid = store.create()
    store.append(sid, AgentMessage.user("x"))
    assert all(0 < t <= ms + slack(ms) for t in pttls(backend, session_keys(backend.prefix, sid)))


def test_an_expired_session_is_gone(make_store: MakeStore, backend: Backend) -> None:
    # Expire the keys by hand (PEXPIRE 1 would need waiting; DEL is what expiry amounts to).
    store = make_store(ttl=3600)
    sid = store.create()
    store.append(sid, AgentMessage.user("x"))
    backend.raw.delete(*session_keys(backend.prefix, sid))
    assert store.load(sid) is None
    assert not store.exists(sid)


# -- trimming -------------------------------------------------------------------------------------


def test_trimming_keeps_the_newest_and_seq_keeps_counting(make_store: MakeStore) -> None:
    store = make_store(max_messages=3)
    sid = store.create()
    batch = messages_of(5)
    assert store.extend(sid, batch[:2]) == 2
    assert store.extend(sid, batch[2:]) == 5
    assert ids(store.messages(sid)) == ids(batch[2:])
    assert store.append(sid, AgentMessage.user("six", id="six")) == 6
    assert ids(store.messages(sid)) == ["m-0003", "m-0004", "six"]
    session = store.load(sid)
    assert session is not None
    assert session.seq == 6
    assert ids(session.messages) == ["m-0003", "m-0004", "six"]
    assert ids(store.messages(sid, -1)) == ["six"]


def test_one_batch_larger_than_the_limit(make_store: MakeStore) -> None:
    store = make_store(max_messages=4)
    sid = store.create()
    batch = messages_of(10)
    assert store.extend(sid, batch) == 10
    assert ids(store.messages(sid)) == ids(batch[-4:])


def test_retained_messages_stay_idempotent_after_trimming(make_store: MakeStore, backend: Backend) -> None:
    store = make_store(max_messages=3)
    sid = store.create()
    batch = messages_of(6)
    store.extend(sid, batch)
    for seq, message in enumerate(batch[3:], start=4):
        assert store.append(sid, message) == seq
    assert ids(store.messages(sid)) == ids(batch[3:])
    assert backend.raw.zcard(session_keys(backend.prefix, sid).ids) == 3, "the ids index is trimmed too"


def test_trimming_with_ttl(make_store: MakeStore, backend: Backend) -> None:
    store = make_store(max_messages=2, ttl=3600)
    sid = store.create()
    store.extend(sid, messages_of(5))
    assert backend.raw.llen(session_keys(backend.prefix, sid).messages) == 2
    assert all(0 < t <= HOUR_UP for t in pttls(backend, session_keys(backend.prefix, sid)))


@pytest.mark.parametrize("backend", ["fakeredis"], indirect=True)
@pytest.mark.parametrize("front", ["sync"], indirect=True)
@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    limit=st.integers(1, 6),
    batches=st.lists(st.lists(st.integers(0, 15), max_size=5), max_size=8),
)
def test_trimming_matches_a_model(make_store: MakeStore, limit: int, batches: list[list[int]]) -> None:
    store = make_store(max_messages=limit)
    sid = store.create()
    kept: list[str] = []
    seq = 0
    for batch in batches:
        messages = [AgentMessage.user(str(n), id=f"id-{n}") for n in batch]
        for message in messages:
            if message.id not in kept:
                kept.append(message.id)
                seq += 1
        kept = kept[-limit:]
        store.extend(sid, messages)
        assert ids(store.messages(sid)) == kept
    assert store.load(sid).seq == seq  # type: ignore[union-attr]


def test_the_session_keeps_its_own_ttl_and_limit_whatever_store_writes(
    make_store: MakeStore, backend: Backend
) -> None:
    # A store with other defaults (here: none) writing to a session must not leave keys that
    # outlive the meta hash, nor keep more messages than the session's limit.
    creator, other = make_store(ttl=3600, max_messages=3), make_store()
    sid = creator.create()
    other.extend(sid, messages_of(5, "m"))
    assert all(0 < ttl <= HOUR_UP for ttl in pttls(backend, session_keys(backend.prefix, sid)))
    assert [m.text for m in other.messages(sid)] == ["m 2", "m 3", "m 4"]
    other.set_metadata(sid, {"k": "v"})
    assert all(0 < ttl <= HOUR_UP for ttl in pttls(backend, session_keys(backend.prefix, sid)))
    # ...and a session created without a TTL is not given one by a store that has a default.
    plain = other.create()
    creator.append(plain, AgentMessage.user("x"))
    assert pttls(backend, session_keys(backend.prefix, plain)) == [-1, -1, -1]
