"""Context that fits the window (issue 20): token counts kept with each append, ``context()`` read
to a budget, summaries with compare-and-set, ``compact()`` under its own lock, and ``fork()``.

On the backend table (fakeredis, a real server, a real cluster; sync and async). The counter here is
one token per character of text (plus 10 for a message without text), so every figure is known.
"""

from __future__ import annotations

import multiprocessing
import uuid
from typing import Any

import pytest

from redis_sessions import AgentMessage, ConflictError, SessionExists, SessionNotFound, SessionStore, ToolUse
from redis_sessions import _fork as forking
from redis_sessions.embedded import RedisServer
from redis_sessions.errors import InvalidArgument
from redis_sessions.keys import compact_key, session_keys, slot, staged_keys, tokens_key
from tests.conftest import MakeStore, Store
from tests.integration.context_workers import append_and_compact, ten
from tests.support import AsyncAdapter, Backend, run_processes


def chars(message: AgentMessage) -> int:
    return len(message.text) or 10


def never_summarize(messages: list[AgentMessage]) -> str:
    """A summarizer for a compaction that must not summarize: fails the test if called."""
    pytest.fail(f"summarized {len(messages)} messages")


def words(store: Store, sid: Any, *texts: str) -> None:
    store.extend(sid, [AgentMessage.user(text) for text in texts])


@pytest.fixture
def counted(make_store: MakeStore) -> Store:
    return make_store(token_counter=chars)


def test_append_keeps_each_count_and_the_total(counted: Store, raw: Any, backend: Backend) -> None:
    sid = counted.create()
    words(counted, sid, "a" * 10, "b" * 20)
    counted.append(sid, AgentMessage.user("c" * 5))
    counted.append(sid, AgentMessage.user("c" * 5, id="x"))
    counted.append(sid, AgentMessage.user("c" * 5, id="x"))  # a retry: counted once
    assert raw.lrange(tokens_key(backend.prefix, sid), 0, -1) == [b"10", b"20", b"5", b"5"]
    info = counted.info(sid)
    assert info is not None
    assert info.tokens == 40


def test_context_is_the_newest_messages_that_fit(counted: Store) -> None:
    sid = counted.create()
    words(counted, sid, *(str(i) * 10 for i in range(10)))
    window = counted.context(sid, 35)
    assert [m.text for m in window.messages] == ["7" * 10, "8" * 10, "9" * 10]
    assert (window.tokens, window.first_seq, window.seq, window.summary) == (30, 8, 10, None)
    assert [m.text[0] for m in counted.context(sid, 35, reserve=10).messages] == ["8", "9"]
    assert counted.context(sid, 9).messages == []
    assert counted.context(sid, 9).first_seq == 11
    assert len(counted.context(sid, 10_000).messages) == 10


def test_context_never_starts_with_a_tool_result_cut_from_its_tool_use(counted: Store) -> None:
    sid = counted.create()
    uses = AgentMessage.assistant([ToolUse("t1", "f", {}), ToolUse("t2", "g", {})])
    counted.extend(
        sid,
        [
            AgentMessage.user("u" * 10),
            uses,
            AgentMessage.tool_result("t1", ""),
            AgentMessage.tool_result("t2", ""),
            AgentMessage.user("v" * 10),
        ],
    )
    window = counted.context(sid, 30)  # fits both results, not their tool use
    assert [m.text for m in window.messages] == ["v" * 10]
    assert (window.tokens, window.first_seq) == (10, 5)
    window = counted.context(sid, 40)
    assert window.messages[0] == uses
    assert window.tokens == 40


def test_a_cached_context_equals_an_uncached_one(make_store: MakeStore) -> None:
    cached, plain = make_store(token_counter=chars), make_store(token_counter=chars, cache_messages=0)
    sid = cached.create()
    for round_ in range(4):
        words(plain, sid, *(f"{round_}{i}" * 4 for i in range(5)))  # another writer appends
        for budget in (0, 25, 100, 10_000):
            assert cached.context(sid, budget) == plain.context(sid, budget), (round_, budget)
    cached.pop(sid)  # history rewritten: the cache must not serve the popped message
    assert cached.context(sid, 10_000) == plain.context(sid, 10_000)


def test_context_of_a_missing_session(counted: Store) -> None:
    with pytest.raises(SessionNotFound):
        counted.context(uuid.uuid4(), 100)


def test_a_summary_stands_for_the_messages_it_covers(counted: Store) -> None:
    sid = counted.create()
    words(counted, sid, *(str(i) * 10 for i in range(10)))
    assert counted.summarize(sid, "s" * 7, through_seq=6, expected=0) == 6
    window = counted.context(sid, 10_000)
    assert window.summary is not None
    assert (window.summary.role, window.summary.text) == ("system", "s" * 7)
    assert [m.text[0] for m in window.messages] == ["6", "7", "8", "9"]
    assert (window.tokens, window.first_seq) == (47, 7)
    assert len(counted.messages(sid)) == 10, "covered messages stay readable"
    assert [m.text[0] for m in counted.context(sid, 30).messages] == ["8", "9"]  # 7 go to the summary
    info = counted.info(sid)
    assert info is not None
    assert info.summary_seq == 6


def test_summaries_are_compare_and_set(counted: Store) -> None:
    sid = counted.create()
    words(counted, sid, *("x" * 10 for _ in range(10)))
    summary = AgentMessage.system("first")
    counted.summarize(sid, summary, through_seq=4, expected=0)
    assert counted.summarize(sid, summary, through_seq=4, expected=0) == 4, "a retry is harmless"
    with pytest.raises(ConflictError) as stale:
        counted.summarize(sid, "second", through_seq=8, expected=0)
    assert (stale.value.expected, stale.value.actual) == (0, 4)
    with pytest.raises(ConflictError):
        counted.summarize(sid, "covers less", through_seq=3)
    with pytest.raises(InvalidArgument, match="past the session"):
        counted.summarize(sid, "ahead", through_seq=11)
    counted.summarize(sid, "second", through_seq=8, expected=4)
    assert counted.context(sid, 10_000).first_seq == 9


def test_a_summary_may_trim_what_it_covers(counted: Store) -> None:
    sid = counted.create()
    words(counted, sid, *(str(i) * 10 for i in range(10)))
    before = counted.context(sid, 25)
    counted.summarize(sid, "s", through_seq=7, trim=True)
    assert [m.text[0] for m in counted.messages(sid)] == ["7", "8", "9"]
    assert counted.context(sid, 25).messages == before.messages
    assert counted.context(sid, 25).counts == [10, 10]
    counted.append(sid, AgentMessage.user("x" * 10))
    assert counted.info(sid).seq == 11  # type: ignore[union-attr]


def test_a_message_appended_after_the_summary_is_never_hidden(counted: Store) -> None:
    sid = counted.create()
    words(counted, sid, "a" * 10, "b" * 10)
    read = counted.context(sid, 10_000)
    words(counted, sid, "c" * 10)  # appended while the summary was being written
    counted.summarize(sid, "ab", through_seq=read.seq, expected=0)
    assert [m.text for m in counted.context(sid, 10_000).messages] == ["c" * 10]


def test_compact_folds_all_but_the_newest(counted: Store) -> None:
    sid = counted.create()
    words(counted, sid, *(str(i) * 10 for i in range(10)))
    folded: list[list[AgentMessage]] = []

    def summarizer(messages: list[AgentMessage]) -> str:
        folded.append(messages)
        return "sum" + "".join(m.text[0] for m in messages)

    assert counted.compact(sid, summarizer, over_tokens=200, keep_tokens=20) is None  # under it
    assert counted.compact(sid, summarizer, over_tokens=50, keep_tokens=20) == 8
    window = counted.context(sid, 10_000)
    assert window.summary is not None
    assert window.summary.text == "sum01234567"
    assert [m.text[0] for m in window.messages] == ["8", "9"]
    assert counted.compact(sid, summarizer, over_tokens=50, keep_tokens=20) is None  # 31 now
    words(counted, sid, *("z" * 10 for _ in range(3)))
    assert counted.compact(sid, summarizer, over_tokens=50, keep_tokens=20) == 11
    assert folded[1][0].text == "sum01234567", "the previous summary comes first"
    assert len(counted.messages(sid)) == 13


def test_compact_skips_while_another_worker_holds_the_lock(
    counted: Store, raw: Any, backend: Backend
) -> None:
    sid = counted.create()
    words(counted, sid, *("x" * 10 for _ in range(10)))
    raw.set(compact_key(backend.prefix, sid), "other", px=60_000)
    assert counted.compact(sid, never_summarize, over_tokens=50, keep_tokens=20) is None
    raw.delete(compact_key(backend.prefix, sid))

    def fails(messages: list[AgentMessage]) -> str:
        raise RuntimeError("model down")

    with pytest.raises(RuntimeError):
        counted.compact(sid, fails, over_tokens=50, keep_tokens=20)
    assert raw.exists(compact_key(backend.prefix, sid)) == 0, "a failed summarizer frees the lock"
    with pytest.raises(InvalidArgument):
        counted.compact(sid, fails, over_tokens=50, keep_tokens=50)


def test_a_fork_holds_the_messages_up_to_its_point(counted: Store, backend: Backend) -> None:
    sid = counted.create("m", 3, "be brief", metadata={"user": "ann"})
    words(counted, sid, *(str(i) * 10 for i in range(10)))
    counted.summarize(sid, "early", through_seq=3)
    new = counted.fork(sid, at_seq=5)
    if backend.name == "cluster":  # most pairs of ids are in different slots: make sure of it
        while slot(new) == slot(sid):
            new = counted.fork(sid, at_seq=5)
    assert counted.messages(new) == counted.messages(sid)[:5]
    session = counted.load(new)
    assert session is not None
    assert (session.model, session.max_turns, session.system_message, session.metadata, session.seq) == (
        "m",
        3,
        "be brief",
        {"user": "ann"},
        5,
    )
    info = counted.info(new)
    assert info is not None
    assert (info.parent, info.fork_seq, info.tokens, info.summary_seq) == (sid, 5, 50, 3)
    assert counted.context(new, 10_000).first_seq == 4
    counted.append(new, AgentMessage.user("only in the fork"))
    assert counted.load(sid).seq == 10  # type: ignore[union-attr]
    assert counted.info(new).tokens == 66  # type: ignore[union-attr]
    assert counted.fork(sid, at_seq=2).hex != new.hex
    assert counted.info(counted.fork(sid, at_seq=2)).summary_seq == 0  # type: ignore[union-attr]


def test_a_fork_is_idempotent_by_its_new_id(counted: Store) -> None:
    sid = counted.create()
    words(counted, sid, "a", "b", "c")
    new = uuid.uuid4()
    assert counted.fork(sid, at_seq=2, new_id=new) == new
    counted.append(new, AgentMessage.user("d"))
    assert counted.fork(sid, at_seq=2, new_id=str(new)) == new, "a retry makes no second copy"
    assert [m.text for m in counted.messages(new)] == ["a", "b", "d"]
    with pytest.raises(SessionExists):
        counted.fork(sid, at_seq=1, new_id=new)
    with pytest.raises(SessionExists):
        counted.fork(sid, new_id=counted.create())
    with pytest.raises(InvalidArgument, match="past the session"):
        counted.fork(sid, at_seq=4)
    with pytest.raises(SessionNotFound):
        counted.fork(uuid.uuid4())


def send(store: Store, call: Any) -> Any:
    """Send one sans-IO call through the store's transport (either front)."""
    if isinstance(store, AsyncAdapter):
        return store._run(store.store.transport.run(call))
    return store.transport.run(call)


def test_a_fork_cut_short_leaves_no_session(store: Store, raw: Any, backend: Backend) -> None:
    sid = store.create()
    words(store, sid, "a", "b", "c")
    new = uuid.uuid4()
    core = store.store.transport.core if isinstance(store, AsyncAdapter) else store.transport.core
    snapshot = send(store, forking.read(core, sid, None))
    send(store, forking.stage(core, new, snapshot, "crash"))  # and then the process dies
    assert not store.exists(new)
    assert new not in set(store.list())
    assert raw.lrange(staged_keys(backend.prefix, new, "crash")[0], 0, -1) == [*snapshot.items]
    assert 0 < raw.pttl(staged_keys(backend.prefix, new, "crash")[0]) <= 3_600_000, "it expires"
    assert raw.exists(session_keys(backend.prefix, new).messages) == 0
    assert store.fork(sid, new_id=new) == new  # the retry publishes its own copy
    assert [m.text for m in store.messages(new)] == ["a", "b", "c"]


WORKERS, EACH = 4, 60


@pytest.mark.real
def test_four_processes_appending_and_compacting_make_one_summary_per_crossing(
    plain_redis: RedisServer,
) -> None:
    prefix = f"t{uuid.uuid4().hex[:12]}"
    with SessionStore.from_url(plain_redis.url, prefix=prefix, token_counter=ten) as store:
        sid = store.create()
        context = multiprocessing.get_context("spawn")
        barrier, results = context.Barrier(WORKERS), context.Queue()
        processes = [
            context.Process(
                target=append_and_compact,
                args=(plain_redis.url, prefix, sid, n, EACH, barrier, results),
                daemon=True,
            )
            for n in range(WORKERS)
        ]
        outcomes = run_processes(processes, results, timeout=120)
        errors = [error for _, error, _, _ in outcomes if error]
        assert not errors, "\n".join(errors)
        stored = sorted(through for _, _, _, mine in outcomes for through in mine)
        assert sum(calls for _, _, calls, _ in outcomes) == len(stored), "a summary was made twice"
        assert len(stored) == len(set(stored)) >= 5
        # Every message is stored, and the last summary plus the messages after it are every
        # message exactly once, in order: summaries chained on each other and lost nothing.
        every = [m.id for m in store.messages(sid)]
        assert sorted(every) == sorted(f"w{w}-{n}" for w in range(WORKERS) for n in range(EACH))
        window = store.context(sid, 10**9)
        assert window.summary is not None
        assert window.summary.text.split(",") + [m.id for m in window.messages] == every
        assert window.first_seq == stored[-1] + 1
        assert store.compact(sid, never_summarize, over_tokens=200, keep_tokens=100) is None
        assert window.tokens <= 200, "no crossing was left unsummarised"


def test_an_imported_session_is_counted_and_a_pop_takes_its_count(counted: Store) -> None:
    sid = counted.create()
    words(counted, sid, "a" * 10, "b" * 20, "c" * 30)
    session = counted.load(sid)
    assert session is not None
    copy = uuid.uuid4()
    assert counted.import_state(copy, session.to_state())
    assert counted.info(copy).tokens == 60  # type: ignore[union-attr]
    assert counted.context(copy, 50).counts == [20, 30]
    counted.pop(copy)  # its count goes with it
    window = counted.context(copy, 10_000)
    assert [m.text for m in window.messages] == ["a" * 10, "b" * 20]
    assert (window.counts, counted.info(copy).tokens) == ([10, 20], 30)  # type: ignore[union-attr]
    counted.append(copy, AgentMessage.user("d" * 7))
    assert counted.context(copy, 10_000).counts[-1] == 7
