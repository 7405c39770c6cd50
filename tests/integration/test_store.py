"""Every public method of the store, on fakeredis and a real server, sync and async."""

from __future__ import annotations

import time
import uuid
from datetime import UTC, datetime

import pytest
import redis

from redis_sessions import (
    AgentMessage,
    ConflictError,
    Image,
    Session,
    SessionExists,
    SessionNotFound,
    SessionStore,
    Text,
    Thinking,
    ToolUse,
)
from redis_sessions.keys import session_keys
from tests.conftest import MakeStore, Store
from tests.support import Backend, expect_no_change, ids, messages_of

# -- the seed's save-then-load --------------------------------------------------------------------


def test_save_then_load(store: Store) -> None:
    sid = store.create("claude-test", 8, "be kind", metadata={"user": "ana"})
    conversation = [
        AgentMessage.system("rules"),
        AgentMessage.user("what is 2+2?"),
        AgentMessage.assistant([Thinking("easy"), Text("4"), ToolUse("t1", "calc", {"expr": "2+2"})]),
        AgentMessage.tool_result("t1", [Text("4"), Image("image/png", b"\x89PNG\r\n")]),
    ]
    assert store.extend(sid, conversation[:2]) == 2
    assert store.append(sid, conversation[2]) == 3
    assert store.append(sid, conversation[3]) == 4

    session = store.load(sid)
    assert isinstance(session, Session)
    assert session.id == sid
    assert (session.model, session.max_turns, session.system_message) == ("claude-test", 8, "be kind")
    assert session.metadata == {"user": "ana"}
    assert session.messages == conversation
    assert session.seq == 4
    assert store.messages(sid) == conversation


# -- create ---------------------------------------------------------------------------------------


def test_create_defaults(store: Store) -> None:
    sid = store.create()
    assert isinstance(sid, uuid.UUID)
    session = store.load(sid)
    assert session is not None
    assert (session.model, session.max_turns, session.system_message) == ("", 0, None)
    assert (session.messages, session.metadata, session.seq) == ([], {}, 0)
    assert store.exists(sid)


def test_create_returns_fresh_ids(store: Store) -> None:
    assert len({store.create() for _ in range(20)}) == 20


def test_create_with_config_and_unicode(store: Store) -> None:
    metadata = {"ключ": "значение", "emoji": "🙂", "empty": "", "a:b": "c"}
    sid = store.create("mödel", 3, "sÿstem\nline two", metadata=metadata)
    session = store.load(sid)
    assert session is not None
    assert (session.model, session.max_turns, session.system_message) == ("mödel", 3, "sÿstem\nline two")
    assert session.metadata == metadata


@pytest.mark.parametrize("system_message", [None, ""])
def test_system_message_none_differs_from_empty(store: Store, system_message: str | None) -> None:
    session = store.load(store.create(system_message=system_message))
    assert session is not None
    assert session.system_message == system_message


def test_create_with_given_id(store: Store) -> None:
    wanted = uuid.uuid4()
    assert store.create(session_id=wanted) == wanted
    as_text = uuid.uuid4()
    assert store.create(session_id=str(as_text)) == as_text
    upper = uuid.uuid4()
    assert store.create(session_id=str(upper).upper()) == upper
    assert store.exists(str(upper))
    assert store.exists(upper)


def test_create_refuses_a_taken_id(store: Store, backend: Backend) -> None:
    sid = store.create("first", metadata={"k": "v"})
    store.append(sid, AgentMessage.user("keep me"))
    unchanged = expect_no_change(backend)
    with pytest.raises(SessionExists) as info:
        store.create("second", session_id=sid)
    assert info.value.session_id == sid
    assert str(sid) in str(info.value)
    unchanged()


def test_create_starts_clean_over_leftovers(store: Store, backend: Backend) -> None:
    # A messages list whose meta hash is gone (say, the meta expired first) is not a session.
    sid = uuid.uuid4()
    keys = session_keys(backend.prefix, sid)
    backend.raw.rpush(keys.messages, b"stale")
    backend.raw.zadd(keys.ids, {"old-id": 1})
    store.create(session_id=sid)
    assert store.messages(sid) == []
    assert store.append(sid, AgentMessage.user("x", id="old-id")) == 1


def test_timestamps_are_aware_and_move_forward(store: Store) -> None:
    before = datetime.now(UTC)
    sid = store.create()
    created = store.load(sid)
    assert created is not None
    assert created.created_at is not None
    assert created.updated_at is not None
    assert created.created_at.tzinfo is not None
    assert created.updated_at == created.created_at
    # Loose bounds: Redis's clock and ours may differ a little, not by hours.
    assert abs((created.created_at - before).total_seconds()) < 3600
    store.append(sid, AgentMessage.user("x"))
    appended = store.load(sid)
    assert appended is not None
    assert appended.updated_at is not None
    assert appended.created_at == created.created_at
    assert appended.updated_at >= created.updated_at


def test_updated_at_is_seconds_then_six_digit_microseconds(store: Store, backend: Backend) -> None:
    """An append writes updated_at as TIME's seconds and its microseconds zero-padded to six digits
    (push_messages builds it by concatenation, not string.format: the same string, cheaper). The
    padding shows in the first 100 ms of a second: appends 50 ms apart until one lands there."""
    sid = store.create()
    meta = session_keys(backend.prefix, sid).meta
    for i in range(100):
        store.append(sid, AgentMessage.user(f"m{i}"))
        stamp = backend.raw.hget(meta, "updated_at").decode()
        assert len(stamp) == 16, stamp
        assert stamp.isdigit(), stamp
        if int(stamp[-6:]) < 100_000:
            break
        time.sleep(0.05)
    else:
        pytest.fail("no append landed in the first 100 ms of a second")
    loaded = store.load(sid)
    assert loaded is not None
    assert loaded.updated_at is not None
    assert round(loaded.updated_at.timestamp() * 1_000_000) == int(stamp)


# -- append / extend: seq -------------------------------------------------------------------------


def test_seq_starts_at_one_and_counts_every_message(store: Store) -> None:
    sid = store.create()
    assert store.append(sid, AgentMessage.user("a")) == 1
    assert store.append(sid, AgentMessage.user("b")) == 2
    assert store.extend(sid, messages_of(5)) == 7
    assert store.extend(sid, []) == 7
    session = store.load(sid)
    assert session is not None
    assert session.seq == 7
    assert len(store.messages(sid)) == 7


def test_extend_on_a_fresh_session_and_order(store: Store) -> None:
    sid = store.create()
    batch = messages_of(30)
    assert store.extend(sid, batch) == 30
    assert store.messages(sid) == batch


def test_extend_accepts_any_iterable(store: Store) -> None:
    sid = store.create()
    batch = messages_of(4)
    assert store.extend(sid, (m for m in batch)) == 4
    assert store.extend(sid, tuple(messages_of(2, "t"))) == 6
    assert ids(store.messages(sid)) == [*ids(batch), "t-0000", "t-0001"]


def test_large_batch_is_stored_whole(store: Store) -> None:
    # Bigger than the script's push chunk, so several RPUSHes make up one atomic call.
    sid = store.create()
    batch = messages_of(1234)
    assert store.extend(sid, batch) == 1234
    assert ids(store.messages(sid)) == ids(batch)
    assert store.append(sid, batch[700]) == 701, "ids of every chunk are remembered"


def test_writes_to_a_missing_session_fail_and_create_nothing(store: Store, backend: Backend) -> None:
    sid = uuid.uuid4()
    with pytest.raises(SessionNotFound) as info:
        store.append(sid, AgentMessage.user("x"))
    assert info.value.session_id == sid
    assert str(info.value) == f"session `{sid}` not found"
    with pytest.raises(SessionNotFound):
        store.extend(sid, messages_of(3))
    with pytest.raises(SessionNotFound):
        store.extend(sid, [])
    with pytest.raises(SessionNotFound):
        store.set_metadata(sid, {"k": "v"})
    with pytest.raises(SessionNotFound):
        store.messages(sid)
    assert backend.stored_keys() == set()


# -- idempotency ----------------------------------------------------------------------------------


def test_same_message_twice_is_stored_once(store: Store) -> None:
    sid = store.create()
    first, other = AgentMessage.user("hello"), AgentMessage.user("other")
    assert store.append(sid, first) == 1
    assert store.append(sid, other) == 2
    assert store.append(sid, first) == 1, "the original seq, not a new one"
    assert store.extend(sid, [first]) == 1
    assert store.messages(sid) == [first, other]
    session = store.load(sid)
    assert session is not None
    assert session.seq == 2


def test_idempotency_is_by_id_not_by_content(store: Store) -> None:
    sid = store.create()
    assert store.append(sid, AgentMessage.user("same text", id="a")) == 1
    assert store.append(sid, AgentMessage.user("same text", id="b")) == 2
    assert store.append(sid, AgentMessage.user("changed text", id="a")) == 1
    assert [m.text for m in store.messages(sid)] == ["same text", "same text"]


def test_extend_with_a_partly_stored_batch_stores_only_the_new(store: Store) -> None:
    sid = store.create()
    batch = messages_of(6)
    assert store.extend(sid, batch[:3]) == 3
    assert store.extend(sid, batch) == 6
    assert store.extend(sid, batch) == 6, "a retried batch changes nothing"
    assert ids(store.messages(sid)) == ids(batch)


def test_a_batch_around_a_stored_message_numbers_the_new_ones_in_order(store: Store) -> None:
    # append.lua indexes a batch's ids with one ZADD NX at provisional seqs; when some were stored
    # already it takes those back and numbers only the new ones, consecutively.
    sid = store.create()
    batch = messages_of(5)
    assert store.append(sid, batch[2]) == 1
    assert store.extend(sid, batch) == 5
    assert ids(store.messages(sid)) == ids([batch[2], batch[0], batch[1], batch[3], batch[4]])
    assert [store.append(sid, m) for m in batch] == [2, 3, 1, 4, 5], "each id keeps its own seq"


def test_all_stored_batch_returns_the_highest_stored_seq(store: Store) -> None:
    sid = store.create()
    batch = messages_of(5)
    store.extend(sid, batch)
    store.append(sid, AgentMessage.user("later"))
    assert store.extend(sid, [batch[3], batch[1]]) == 4


def test_duplicate_ids_inside_one_batch(store: Store) -> None:
    sid = store.create()
    a, b = AgentMessage.user("a", id="a"), AgentMessage.user("b", id="b")
    assert store.extend(sid, [a, b, a, a, b]) == 2
    assert ids(store.messages(sid)) == ["a", "b"]


def test_message_ids_are_per_session(store: Store) -> None:
    one, two = store.create(), store.create()
    message = AgentMessage.user("shared")
    assert store.append(one, message) == 1
    assert store.append(two, AgentMessage.user("first")) == 1
    assert store.append(two, message) == 2
    assert store.messages(one) == [message]


# -- expected_seq ---------------------------------------------------------------------------------


def test_expected_seq_conflict(store: Store, backend: Backend) -> None:
    sid = store.create()
    store.extend(sid, messages_of(2))
    unchanged = expect_no_change(backend)
    for stale in (0, 1, 3, 100):
        with pytest.raises(ConflictError) as info:
            store.append(sid, AgentMessage.user("late"), expected_seq=stale)
        assert (info.value.expected, info.value.actual, info.value.session_id) == (stale, 2, sid)
        assert str(sid) in str(info.value)
    with pytest.raises(ConflictError):
        store.extend(sid, messages_of(3, "x"), expected_seq=1)
    unchanged()


def test_expected_seq_that_matches_succeeds(store: Store) -> None:
    sid = store.create()
    assert store.append(sid, AgentMessage.user("a"), expected_seq=0) == 1
    assert store.extend(sid, messages_of(3), expected_seq=1) == 4
    assert store.append(sid, AgentMessage.user("b"), expected_seq=4) == 5


def test_idempotent_retry_with_a_stale_expected_seq_returns_the_stored_seq(store: Store) -> None:
    sid = store.create()
    mine = AgentMessage.user("mine")
    assert store.append(sid, mine, expected_seq=0) == 1
    store.append(sid, AgentMessage.user("someone else"))
    # The reply to the first call was lost; the retry carries the same (now stale) expectation.
    assert store.append(sid, mine, expected_seq=0) == 1
    assert len(store.messages(sid)) == 2


def test_partly_stored_batch_with_a_stale_expected_seq_conflicts(store: Store) -> None:
    sid = store.create()
    batch = messages_of(3)
    store.extend(sid, batch[:2])
    with pytest.raises(ConflictError):
        store.extend(sid, batch, expected_seq=0)
    assert store.extend(sid, batch, expected_seq=2) == 3


# -- load / exists / delete -----------------------------------------------------------------------


def test_load_missing_is_none(store: Store) -> None:
    assert store.load(uuid.uuid4()) is None
    assert store.load(str(uuid.uuid4())) is None


def test_exists(store: Store) -> None:
    sid = store.create()
    assert store.exists(sid) is True
    assert store.exists(str(sid)) is True
    assert store.exists(uuid.uuid4()) is False


def test_delete(store: Store, backend: Backend) -> None:
    keep, doomed = store.create(), store.create()
    for sid in (keep, doomed):
        store.extend(sid, messages_of(3))
    assert store.delete(doomed) is True
    assert store.exists(doomed) is False
    assert store.load(doomed) is None
    assert store.delete(doomed) is False
    assert store.delete(uuid.uuid4()) is False
    assert not any(str(doomed).encode() in key for key in backend.stored_keys()), "no key of it is left"
    assert len(store.messages(keep)) == 3


def test_deleted_id_can_be_created_again_empty(store: Store) -> None:
    sid = store.create("old")
    store.extend(sid, messages_of(3))
    store.delete(sid)
    assert store.create("new", session_id=sid) == sid
    session = store.load(sid)
    assert session is not None
    assert (session.model, session.messages, session.seq) == ("new", [], 0)
    assert store.append(sid, messages_of(1)[0]) == 1, "old ids are forgotten"


# -- set_metadata ---------------------------------------------------------------------------------


def test_set_metadata_merges_and_none_removes(store: Store) -> None:
    sid = store.create(metadata={"keep": "1", "change": "2", "drop": "3"})
    store.set_metadata(sid, {"change": "two", "drop": None, "new": "4", "never-there": None})
    session = store.load(sid)
    assert session is not None
    assert session.metadata == {"keep": "1", "change": "two", "new": "4"}
    store.set_metadata(sid, {})
    assert store.load(sid).metadata == session.metadata  # type: ignore[union-attr]


def test_set_metadata_does_not_touch_messages_or_config(store: Store) -> None:
    sid = store.create("m", 5, "sys")
    store.extend(sid, messages_of(2))
    store.set_metadata(sid, {"model": "hijack", "seq": "99", "schema_version": "7"})
    session = store.load(sid)
    assert session is not None
    assert (session.model, session.max_turns, session.system_message, session.seq) == ("m", 5, "sys", 2)
    assert session.metadata == {"model": "hijack", "seq": "99", "schema_version": "7"}
    assert store.append(sid, AgentMessage.user("still v1")) == 3


def test_set_metadata_updates_updated_at(store: Store) -> None:
    sid = store.create()
    before = store.load(sid)
    store.set_metadata(sid, {"k": "v"})
    after = store.load(sid)
    assert before is not None
    assert after is not None
    assert after.updated_at is not None
    assert before.updated_at is not None
    assert after.updated_at >= before.updated_at
    assert after.created_at == before.created_at


def test_failing_set_metadata_changes_nothing(store: Store, backend: Backend) -> None:
    sid = store.create(metadata={"a": "1"})
    unchanged = expect_no_change(backend)
    with pytest.raises(TypeError):
        store.set_metadata(sid, {"b": "2", "c": 3})  # type: ignore[dict-item]
    with pytest.raises(TypeError):
        store.set_metadata(sid, {"b": "2", "": None})
    unchanged()


def test_large_metadata(store: Store) -> None:
    # Metadata is a user's dict: a few thousand entries must not hit the Lua stack limit.
    big = {f"key-{i}": f"value-{i}" for i in range(5000)}
    sid = store.create(metadata=big)
    assert store.load(sid).metadata == big  # type: ignore[union-attr]
    more = {f"more-{i}": "x" for i in range(5000)}
    store.set_metadata(sid, more)
    store.set_metadata(sid, dict.fromkeys(big))
    assert store.load(sid).metadata == more  # type: ignore[union-attr]


def test_set_metadata_is_all_or_nothing_even_when_large(store: Store, backend: Backend) -> None:
    sid = store.create(metadata={"keep": "1"})
    updates: dict[str, str | None] = {f"set-{i}": "v" for i in range(10)}
    updates.update(dict.fromkeys((f"gone-{i}" for i in range(9000)), None))
    meta = session_keys(backend.prefix, sid).meta
    before = backend.raw.hgetall(meta)
    try:
        store.set_metadata(sid, updates)
    except Exception:
        assert backend.raw.hgetall(meta) == before, "a failing call must change nothing"
        raise
    assert store.load(sid).metadata == {"keep": "1", **{f"set-{i}": "v" for i in range(10)}}  # type: ignore[union-attr]


# -- list -----------------------------------------------------------------------------------------


def test_list_finds_every_session(store: Store) -> None:
    assert list(store.list()) == []
    made = {store.create() for _ in range(25)}
    store.delete(next(iter(made)))
    listed = list(store.list())
    assert len(listed) == len(set(listed)), "no id twice"
    assert set(listed) == made - {next(iter(made))}
    assert all(isinstance(sid, uuid.UUID) for sid in listed)


def test_list_pages_through_many_keys(store: Store, backend: Backend) -> None:
    # More meta keys than one SCAN page asks for; written by hand for speed.
    made = {uuid.uuid4() for _ in range(2500)}
    with backend.raw.pipeline(transaction=False) as pipe:
        for sid in made:
            keys = session_keys(backend.prefix, sid)
            pipe.hset(keys.meta, mapping={"schema_version": "1", "codec": "msgpack", "seq": "0"})
            pipe.rpush(keys.messages, b"x")
        pipe.execute()
    assert set(store.list()) == made


def test_list_is_scoped_to_the_prefix(make_store: MakeStore, backend: Backend) -> None:
    mine, theirs = make_store(), make_store(prefix=f"{backend.prefix}-other")
    mine_ids = {mine.create() for _ in range(3)}
    theirs_ids = {theirs.create() for _ in range(3)}
    assert set(mine.list()) == mine_ids
    assert set(theirs.list()) == theirs_ids
    assert not theirs.exists(next(iter(mine_ids)))


@pytest.mark.parametrize("inner", ["not-a-uuid", "", "*", "0b7c6a52-7f3e-4d2a-9c1b-5e8f00a1b2cZ"])
def test_list_names_a_key_that_holds_no_valid_id(store: Store, backend: Backend, inner: str) -> None:
    from redis_sessions import PersistenceError

    store.create()
    bad = f"{backend.prefix}:{{{inner}}}:meta"
    backend.raw.hset(bad, "schema_version", "1")
    with pytest.raises(PersistenceError) as info:
        list(store.list())
    assert repr(bad) in str(info.value)


# -- the default prefix and the documented layout ---------------------------------------------------


@pytest.mark.parametrize("backend", ["fakeredis"], indirect=True)
def test_default_prefix_and_key_layout(make_store: MakeStore, backend: Backend) -> None:
    store = make_store(prefix="rs")
    sid = store.create()
    assert backend.stored_keys("rs") == {f"rs:{{{sid}}}:meta".encode()}
    store.append(sid, AgentMessage.user("x"))
    assert backend.stored_keys("rs") == {
        f"rs:{{{sid}}}:meta".encode(),
        f"rs:{{{sid}}}:messages".encode(),
        f"rs:{{{sid}}}:ids".encode(),
        f"rs:{{{sid}}}:tokens".encode(),
    }
    types = {key: backend.raw.type(key) for key in backend.stored_keys("rs")}
    assert sorted(types.values()) == [b"hash", b"list", b"list", b"zset"]
    meta = backend.raw.hgetall(f"rs:{{{sid}}}:meta")
    assert meta[b"schema_version"] == b"1"
    assert meta[b"codec"] == b"msgpack"
    assert meta[b"seq"] == b"1"


# -- from_url, and how list() reads ----------------------------------------------------------------


@pytest.mark.parametrize("backend", [pytest.param("real", marks=pytest.mark.real)], indirect=True)
def test_from_url_splits_store_and_client_options(backend: Backend, redis_url: str) -> None:
    options = {"prefix": backend.prefix, "ttl": 60, "max_messages": 2, "codec": "json"}
    with SessionStore.from_url(redis_url, socket_timeout=2.5, **options) as store:
        assert isinstance(store.client, redis.Redis)  # from_url: one server
        assert store.client.connection_pool.connection_kwargs["socket_timeout"] == 2.5
        sid = store.create()
        store.extend(sid, messages_of(3))
        keys = session_keys(backend.prefix, sid)
        assert backend.raw.hget(keys.meta, "codec") == b"json"
        assert backend.raw.llen(keys.messages) == 2
        assert 0 < backend.raw.pttl(keys.messages) <= 60_600  # an append's 1 % slack (push_messages)


@pytest.mark.parametrize("backend", [pytest.param("real", marks=pytest.mark.real)], indirect=True)
def test_list_uses_scan_never_keys(store: Store, backend: Backend, spawned_server: bool) -> None:
    if not spawned_server:
        pytest.skip("reads server-wide command statistics: only on the server the tests started")
    made = {store.create() for _ in range(3)}
    backend.raw.config_resetstat()
    assert set(store.list()) == made
    stats = backend.raw.info("commandstats")
    assert stats.get("cmdstat_scan", {}).get("calls", 0) >= 1
    assert "cmdstat_keys" not in stats
