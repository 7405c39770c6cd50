"""``save`` and ``restore``: a session's round trip through the backing store (SQLite here).

A restored session continues from its stored seq, keeps its message ids' idempotency, and goes back
into Redis in one step; a live session is not overwritten unless asked.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from redis_sessions import AgentMessage, ConflictError, SessionExists, SessionState
from redis_sessions.persistence import AsyncSQLiteAdapter, SQLiteAdapter
from tests.conftest import MakeStore
from tests.support import Backend, expect_no_change, ids, messages_of


@pytest.fixture
def backing(front: str, tmp_path: Path) -> Iterator[tuple[Any, SQLiteAdapter]]:
    """The adapter the store under test takes (sync or asyncio), and a sync view of the same file."""
    path = tmp_path / "sessions.db"
    given: Any = SQLiteAdapter(path) if front == "sync" else AsyncSQLiteAdapter(path)
    view = SQLiteAdapter(path)
    yield given, view
    view.close()
    (given.sync if front == "async" else given).close()


def test_save_then_restore_after_redis_lost_it(
    make_store: MakeStore, backing: tuple[Any, SQLiteAdapter]
) -> None:
    given, view = backing
    store = make_store()
    sid = store.create("gpt-x", 7, "be brief", metadata={"user": "ada"})
    store.extend(sid, messages_of(5))
    assert store.save(sid, given) is True
    saved = view.load_session(sid)
    assert saved is not None
    assert ids(saved.messages) == ids(messages_of(5))
    assert (saved.model, saved.max_turns, saved.system_message, saved.metadata) == (
        "gpt-x",
        7,
        "be brief",
        {"user": "ada"},
    )
    assert saved.seq == 5

    before = store.load(sid)
    store.delete(sid)
    assert store.restore(sid, given) is True
    after = store.load(sid)
    assert after is not None
    assert before is not None
    assert after.messages == before.messages
    assert (after.model, after.max_turns, after.system_message, after.metadata, after.seq) == (
        before.model,
        before.max_turns,
        before.system_message,
        before.metadata,
        before.seq,
    )
    assert after.created_at == before.created_at


def test_a_restored_session_continues_from_its_seq(
    make_store: MakeStore, backing: tuple[Any, SQLiteAdapter]
) -> None:
    given, view = backing
    store = make_store()
    sid = uuid.uuid4()
    view.save_session(sid, SessionState(messages=messages_of(3), seq=40))  # 37 trimmed away earlier
    assert store.restore(sid, given) is True
    assert store.load(sid).seq == 40  # type: ignore[union-attr]
    with pytest.raises(ConflictError):
        store.append(sid, AgentMessage.user("late"), expected_seq=3)
    assert store.append(sid, AgentMessage.user("next", id="next"), expected_seq=40) == 41
    # The restored ids keep their seqs: re-sending one stores nothing and returns its seq.
    assert store.append(sid, messages_of(3)[1]) == 39
    assert ids(store.messages(sid)) == [*ids(messages_of(3)), "next"]


def test_restore_refuses_a_live_session_unless_asked(
    make_store: MakeStore, backend: Backend, backing: tuple[Any, SQLiteAdapter]
) -> None:
    given, view = backing
    store = make_store()
    sid = store.create()
    store.extend(sid, messages_of(2))
    view.save_session(sid, SessionState(model="old", messages=messages_of(4, "x")))
    unchanged = expect_no_change(backend)
    with pytest.raises(SessionExists):
        store.restore(sid, given)
    unchanged()
    assert store.restore(sid, given, replace=True) is True
    session = store.load(sid)
    assert session is not None
    assert (session.model, ids(session.messages), session.seq) == ("old", ids(messages_of(4, "x")), 4)


def test_nothing_to_restore_or_save(make_store: MakeStore, backing: tuple[Any, SQLiteAdapter]) -> None:
    given, view = backing
    store = make_store()
    missing = store.create()
    store.delete(missing)
    assert store.restore(missing, given) is False
    assert store.save(missing, given) is False
    assert view.load_session(missing) is None
    assert not store.exists(missing)
