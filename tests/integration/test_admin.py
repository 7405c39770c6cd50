"""``info``/``infos``, ``pop`` and ``import_state`` (redis_sessions/_admin.py), on every backend and
both fronts; the durable cases on a real server with a SQLite record."""

from __future__ import annotations

import threading
import time
import uuid
from collections import Counter
from pathlib import Path

import pytest
import redis

from redis_sessions import (
    AgentMessage,
    InvalidMessage,
    SchemaVersionError,
    SessionNotFound,
    SessionState,
    SessionStore,
    StoreError,
)
from redis_sessions._admin import pop
from redis_sessions.keys import dirty_key, session_keys, tokens_key
from redis_sessions.persistence import SQLiteAdapter
from tests.conftest import MakeStore, Store
from tests.support import AsyncAdapter, Backend, expect_no_change, messages_of

# -- info / infos -----------------------------------------------------------------------------------


def test_info_counts_times_and_ttl(make_store: MakeStore, backend: Backend) -> None:
    store = make_store(max_messages=3)
    sid = store.create("m-1", 4, "sys")
    store.extend(sid, messages_of(5))
    session = store.load(sid)
    assert session is not None
    info = store.info(sid)
    assert info is not None
    assert (info.id, info.model, info.messages, info.seq, info.schema_version) == (sid, "m-1", 3, 5, 1)
    assert (info.created_at, info.updated_at) == (session.created_at, session.updated_at)
    assert info.ttl is None
    assert info.bytes is None

    expiring = make_store(ttl=300).create()
    info = store.info(expiring)
    assert info is not None
    assert info.ttl is not None
    assert 290 < info.ttl <= 300


def test_info_of_no_session_is_none(store: Store) -> None:
    assert store.info(uuid.uuid4()) is None


@pytest.mark.parametrize(
    "backend",
    [
        pytest.param("real", marks=pytest.mark.real),
        pytest.param("cluster", marks=[pytest.mark.real, pytest.mark.cluster]),
    ],
    indirect=True,
)
def test_info_memory_is_what_redis_reports(store: Store, raw: redis.Redis, backend: Backend) -> None:
    sid = store.create()
    store.extend(sid, messages_of(20))
    info = store.info(sid, memory=True)
    assert info is not None
    keys = (*session_keys(backend.prefix, sid), tokens_key(backend.prefix, sid))  # the counts too
    usage = sum(raw.memory_usage(key) or 0 for key in keys)
    assert info.bytes == usage > 0
    # A listing reads the same in one script a session (info.lua): the same bytes.
    (listed,) = [i for i in store.infos(memory=True) if i.id == sid]
    assert listed == info


def test_a_listing_without_memory_usage_gives_no_bytes(store: Store, backend: Backend) -> None:
    # fakeredis has no MEMORY command, as some managed servers: the counts come, the bytes do not.
    sid = store.create("m")
    store.extend(sid, messages_of(2))
    (listed,) = [i for i in store.infos(memory=True) if i.id == sid]
    assert listed.messages == 2
    if backend.name == "fakeredis":
        assert listed.bytes is None
    else:
        assert listed.bytes is not None
        assert listed.bytes > 0


def test_infos_pages_through_every_session(store: Store) -> None:
    made = {store.create(f"model-{n % 3}") for n in range(23)}
    for n, sid in enumerate(sorted(made)[:5]):
        store.extend(sid, messages_of(n + 1))
    infos = list(store.infos(count=4))  # six pages
    assert sorted(i.id for i in infos) == sorted(made)  # each once
    by_id = {i.id: i for i in infos}
    assert [by_id[sid].messages for sid in sorted(made)[:5]] == [1, 2, 3, 4, 5]
    assert list(store.infos(count=1000)) != []
    with pytest.raises(ValueError, match="count"):
        list(store.infos(count=0))


def test_a_listing_shows_what_info_shows(store: Store) -> None:
    # infos() reads each session with its own one-command script (info.lua), info() with a
    # transaction: the two must agree field by field, tokens and fork point included.
    source = store.create("m")
    store.extend(source, messages_of(4))
    fork = store.fork(source, at_seq=2)
    listed = {i.id: i for i in store.infos()}
    for sid in (source, fork):
        alone = store.info(sid)
        assert alone is not None
        assert listed[sid] == alone
    assert listed[fork].parent == source
    assert listed[fork].fork_seq == 2
    assert listed[source].tokens > 0


# -- pop --------------------------------------------------------------------------------------------


def test_pop_takes_the_last_message_and_seq_goes_back(store: Store) -> None:
    sid = store.create()
    first, second, third = messages_of(3)
    store.extend(sid, [first, second, third])
    assert store.load(sid) is not None  # fills the history cache: the pop must invalidate it
    assert store.pop(sid) == third
    session = store.load(sid)
    assert session is not None
    assert (session.messages, session.seq) == ([first, second], 2)
    # The popped id is free again, and the next append takes the popped seq.
    replacement = AgentMessage.user("instead", id="replacement")
    assert store.append(sid, replacement) == 3
    assert store.messages(sid) == [first, second, replacement]
    assert store.append(sid, third) == 4  # not a replay: third was popped
    assert store.messages(sid, -1) == [third]


def test_pop_of_an_empty_or_missing_session(store: Store) -> None:
    sid = store.create()
    assert store.pop(sid) is None
    missing = uuid.uuid4()
    with pytest.raises(SessionNotFound, match=str(missing)):
        store.pop(missing)


def test_a_retried_pop_does_not_pop_twice(store: Store) -> None:
    """The same call sent twice (a reply lost, then the retry): one message leaves, and both
    answers are that message."""
    sid = store.create()
    store.extend(sid, messages_of(3))
    if isinstance(store, AsyncAdapter):
        call = pop(store.store._core, sid)
        once, again = (store._run(store.store._run(call)) for _ in range(2))
    else:
        call = pop(store._core, sid)
        once, again = (store._run(call) for _ in range(2))
    assert once == again == messages_of(3)[2]
    assert store.messages(sid) == messages_of(3)[:2]


@pytest.mark.parametrize("front", ["sync"], indirect=True)  # threads; one event loop cannot race itself
def test_concurrent_pops_never_return_the_same_message(store: Store) -> None:
    sid = store.create()
    stored = messages_of(200)
    store.extend(sid, stored)
    popped: list[AgentMessage] = []
    lock, start = threading.Lock(), threading.Barrier(8)

    def popper() -> None:
        start.wait(timeout=30)
        while (message := store.pop(sid)) is not None:
            with lock:
                popped.append(message)

    threads = [threading.Thread(target=popper) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert not any(t.is_alive() for t in threads)
    assert Counter(m.id for m in popped) == Counter(m.id for m in stored)
    assert store.messages(sid) == []


def test_a_watcher_ends_when_history_is_rewritten(store: Store) -> None:
    sid = store.create()
    store.extend(sid, messages_of(2))
    watching = store.watch(sid, 0, timeout=10, poll_interval=0.05)
    assert [a.seq for a in (next(watching), next(watching))] == [1, 2]
    store.pop(sid)
    began = time.monotonic()
    assert list(watching) == []  # ended (a new epoch), not timed out
    assert time.monotonic() - began < 5


# -- import_state -----------------------------------------------------------------------------------


def test_import_keeps_everything_and_twice_changes_nothing(store: Store, backend: Backend) -> None:
    source = store.create("m", 3, "sys", metadata={"k": "v"})
    store.extend(source, messages_of(4))
    original = store.load(source)
    assert original is not None
    target = uuid.uuid4()
    assert store.import_state(target, original.to_state()) is True
    copy = store.load(target)
    assert copy is not None
    assert (copy.model, copy.max_turns, copy.system_message, copy.metadata) == ("m", 3, "sys", {"k": "v"})
    assert (copy.messages, copy.seq, copy.created_at) == (original.messages, 4, original.created_at)
    assert store.append(target, messages_of(4)[0]) == 1  # the idempotency index came along

    unchanged = expect_no_change(backend)
    assert store.import_state(target, SessionState(model="other")) is False
    unchanged()
    assert store.import_state(target, SessionState(model="other"), replace=True) is True
    replaced = store.load(target)
    assert replaced is not None
    assert (replaced.model, replaced.messages) == ("other", [])


def test_import_refuses_a_newer_schema_and_bad_input(store: Store, backend: Backend) -> None:
    sid = uuid.uuid4()
    unchanged = expect_no_change(backend)
    with pytest.raises(SchemaVersionError, match=str(sid)):
        store.import_state(sid, SessionState(schema_version=99))
    with pytest.raises(TypeError, match="SessionState"):
        store.import_state(sid, {"model": "x"})  # type: ignore[arg-type]
    with pytest.raises(InvalidMessage, match=str(sid)):
        store.import_state(sid, SessionState(messages=["not a message"]))  # type: ignore[list-item]
    unchanged()


# -- durable sessions (a backing store) -------------------------------------------------------------


@pytest.mark.real
def test_durable_sessions_cannot_pop_and_imports_are_written_behind(redis_url: str, tmp_path: Path) -> None:
    prefix = f"admin-{uuid.uuid4().hex[:8]}"
    with SessionStore.from_url(
        redis_url, prefix=prefix, backing=SQLiteAdapter(tmp_path / "record.db")
    ) as store:
        sid = store.create()
        store.extend(sid, messages_of(2))
        with pytest.raises(StoreError, match=f"(?s){sid}.*durable"):
            store.pop(sid)
        assert store.messages(sid) == messages_of(2)

        imported = uuid.uuid4()
        assert store.import_state(imported, SessionState(model="x", messages=messages_of(3)))
        assert store.client.zscore(dirty_key(prefix, imported, False), str(imported)) is not None
        store.flush(timeout=30)
        record = SQLiteAdapter(tmp_path / "record.db")
        with record:
            state = record.load_session(imported)
        assert state is not None
        assert (state.model, state.messages) == ("x", messages_of(3))
        store.delete(sid)
        store.delete(imported)
