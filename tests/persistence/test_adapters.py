"""The adapter contract, on every adapter (SQLite, directory, PostgreSQL) and both fronts (sync, async)."""

from __future__ import annotations

import asyncio
import json
import uuid
from datetime import UTC, datetime

import msgspec
import pytest

from redis_sessions import (
    AgentMessage,
    Image,
    InvalidMessage,
    InvalidSessionId,
    SchemaVersionError,
    Session,
    SessionState,
    Text,
    Thinking,
    ToolResult,
    ToolUse,
)
from redis_sessions.persistence import (
    AsyncPersistenceAdapter,
    PersistenceAdapter,
    _threaded,
    postgres,
    sqlite,
)
from tests.persistence.conftest import Place
from tests.persistence.raw import Raw
from tests.unit.test_models import full_state


def user(message_id: str) -> AgentMessage:
    return AgentMessage.user(f"text of {message_id}", id=message_id)


def ids(adapter: PersistenceAdapter, sid: uuid.UUID) -> list[str]:
    state = adapter.load_session(sid)
    assert state is not None
    return [m.id for m in state.messages]


def test_adapters_satisfy_their_protocol(place: Place) -> None:
    with place.sync() as adapter:
        assert isinstance(adapter, PersistenceAdapter)
        assert not isinstance(adapter, AsyncPersistenceAdapter)
    made = place.async_()
    try:
        assert isinstance(made, AsyncPersistenceAdapter)
        assert not isinstance(made, PersistenceAdapter)
    finally:
        asyncio.run(made.aclose())


def test_full_state_round_trips(adapter: PersistenceAdapter) -> None:
    state = full_state()
    kinds: set[type] = {type(block) for message in state.messages for block in message.content}
    kinds |= {
        type(b) for m in state.messages for r in m.content if isinstance(r, ToolResult) for b in r.content
    }
    assert kinds >= {Text, Image, ToolUse, ToolResult, Thinking}, "every block type is exercised"
    sid = uuid.uuid4()
    adapter.save_session(sid, state)
    assert adapter.load_session(sid) == state
    assert adapter.load_session(str(sid)) == state, "the canonical string form names the same session"


def test_minimal_state_round_trips_with_its_nones(adapter: PersistenceAdapter) -> None:
    sid = uuid.uuid4()
    adapter.save_session(sid, SessionState())
    loaded = adapter.load_session(sid)
    assert loaded == SessionState()
    assert loaded is not None
    assert (loaded.seq, loaded.created_at, loaded.system_message) == (None, None, None)


def test_missing_session_loads_as_none(adapter: PersistenceAdapter) -> None:
    assert adapter.load_session(uuid.uuid4()) is None


def test_save_replaces_the_whole_session(adapter: PersistenceAdapter) -> None:
    sid = uuid.uuid4()
    adapter.save_session(sid, full_state())
    second = SessionState(model="other", messages=[user("only")], seq=1)
    adapter.save_session(sid, second)
    assert adapter.load_session(sid) == second


def test_save_keeps_the_first_of_repeated_message_ids(adapter: PersistenceAdapter) -> None:
    sid = uuid.uuid4()
    first_a = AgentMessage.user("first", id="a")
    adapter.save_session(sid, SessionState(messages=[first_a, user("b"), AgentMessage.user("again", id="a")]))
    loaded = adapter.load_session(sid)
    assert loaded is not None
    assert loaded.messages == [first_a, user("b")]


def test_stored_form_is_the_seed_json_document(adapter: PersistenceAdapter, raw: Raw) -> None:
    # Read back without the adapter, by the standard library's json, as another program would.
    sid = uuid.uuid4()
    adapter.save_session(sid, full_state())
    document = json.loads(raw.document(str(sid)))
    assert document["schema_version"] == 1
    assert document["model"] == "claude-test"
    assert document["max_turns"] == 12
    assert document["system_message"] == "You are terse."
    assert document["metadata"] == {"user": "ana", "tenant": "äcme", "empty": ""}
    assert document["seq"] == 7
    assert document["messages"][1] == {
        "role": "user",
        "content": [{"type": "text", "text": "hi"}],
        "id": "m1",
    }
    # The relational records keep each message's token count in a column of its row, not in JSON.
    counted = None if raw.splits_messages else full_state().message_tokens
    expected = msgspec.structs.replace(full_state(), message_tokens=counted)
    assert msgspec.json.decode(raw.document(str(sid)), type=SessionState) == expected


def test_message_ids_may_hold_any_text(adapter: PersistenceAdapter) -> None:
    # PostgreSQL text cannot hold NUL: its adapter keys messages by the id's bytes.
    odd = ["a\x00b", "ä", "'; DROP TABLE messages; --", "x" * 300]
    sid = uuid.uuid4()
    assert adapter.append_messages(sid, [user(i) for i in odd]) == 4
    assert adapter.append_messages(sid, [user(i) for i in odd]) == 0
    assert ids(adapter, sid) == odd


def test_append_is_idempotent_by_message_id(adapter: PersistenceAdapter) -> None:
    sid = uuid.uuid4()
    assert adapter.append_messages(sid, [user("m1"), user("m2"), user("m3")]) == 3
    assert adapter.append_messages(sid, [user("m1"), user("m2"), user("m3")]) == 0, "same batch twice"
    assert ids(adapter, sid) == ["m1", "m2", "m3"]
    # An overlapping batch: known ids keep their first position, new ones go after, in batch order.
    assert adapter.append_messages(sid, [user("m2"), user("m4"), user("m1"), user("m5")]) == 2
    assert ids(adapter, sid) == ["m1", "m2", "m3", "m4", "m5"]
    assert adapter.append_messages(sid, [user("m6"), user("m6")]) == 1, "repeated within one batch"
    assert ids(adapter, sid) == ["m1", "m2", "m3", "m4", "m5", "m6"]


def test_append_keeps_the_first_content_of_an_id(adapter: PersistenceAdapter) -> None:
    sid = uuid.uuid4()
    adapter.append_messages(sid, [AgentMessage.user("original", id="m")])
    assert adapter.append_messages(sid, [AgentMessage.user("changed", id="m")]) == 0
    loaded = adapter.load_session(sid)
    assert loaded is not None
    assert loaded.messages == [AgentMessage.user("original", id="m")]


def test_append_after_a_snapshot_continues_it(adapter: PersistenceAdapter) -> None:
    sid = uuid.uuid4()
    adapter.save_session(sid, full_state())
    assert adapter.append_messages(sid, [user("m4"), user("m5")]) == 1
    assert ids(adapter, sid) == ["m0", "m1", "m2", "m3", "m4", "m5"]


def test_append_creates_a_missing_session_from_the_state(adapter: PersistenceAdapter) -> None:
    sid = uuid.uuid4()
    when = datetime(2025, 1, 2, 3, 4, 5, tzinfo=UTC)
    state = SessionState(
        model="m",
        max_turns=3,
        system_message="s",
        metadata={"k": "v"},
        created_at=when,
        updated_at=when,
        seq=2,
    )
    state.messages = [user("not-stored")]  # the state's messages are not what append stores
    assert adapter.append_messages(sid, [user("a"), user("b")], state=state) == 2
    loaded = adapter.load_session(sid)
    assert loaded is not None
    expected = msgspec.structs.replace(state, messages=[user("a"), user("b")])
    assert loaded == expected


def test_append_creates_a_missing_session_from_defaults(adapter: PersistenceAdapter) -> None:
    sid = uuid.uuid4()
    assert adapter.append_messages(sid, [user("a"), user("b")]) == 2
    assert adapter.load_session(sid) == SessionState(messages=[user("a"), user("b")], seq=2)


def test_append_with_a_state_updates_the_header_but_not_the_messages(adapter: PersistenceAdapter) -> None:
    sid = uuid.uuid4()
    adapter.save_session(sid, full_state())
    later = datetime(2026, 1, 1, tzinfo=UTC)
    header = SessionState(model="new", max_turns=1, metadata={"a": "b"}, updated_at=later, seq=8)
    assert adapter.append_messages(sid, [user("m5")], state=header) == 1
    loaded = adapter.load_session(sid)
    assert loaded is not None
    assert (loaded.model, loaded.max_turns, loaded.metadata, loaded.updated_at) == (
        "new",
        1,
        {"a": "b"},
        later,
    )
    assert (loaded.system_message, loaded.created_at) == (None, None), "every scalar field is the state's"
    assert [m.id for m in loaded.messages] == ["m0", "m1", "m2", "m3", "m4", "m5"]


def test_seq_never_goes_backwards(adapter: PersistenceAdapter) -> None:
    sid = uuid.uuid4()

    def seq() -> int | None:
        loaded = adapter.load_session(sid)
        assert loaded is not None
        return loaded.seq

    adapter.save_session(sid, SessionState(messages=[user("a")], seq=10))
    adapter.append_messages(sid, [user("b")], state=SessionState(seq=4))
    assert seq() == 10, "an older state does not lower it"
    adapter.append_messages(sid, [], state=SessionState(seq=12))
    assert seq() == 12
    adapter.append_messages(sid, [user("c")])
    assert seq() == 13, "without a state each new message counts one"
    adapter.append_messages(sid, [user("c"), user("b")])
    assert seq() == 13, "a re-delivered batch counts nothing"
    adapter.append_messages(sid, [user("d")], state=SessionState(seq=None))
    assert seq() == 14


def test_a_restored_session_continues_from_its_last_seq(adapter: PersistenceAdapter) -> None:
    # Redis trimmed this session to its last 2 messages at seq 40; the backing store got them all.
    sid = uuid.uuid4()
    adapter.append_messages(sid, [user(f"m{i}") for i in range(39)], state=SessionState(seq=39))
    adapter.append_messages(sid, [user("m39")], state=SessionState(seq=40))
    loaded = adapter.load_session(sid)
    assert loaded is not None
    session = Session.from_state(sid, loaded)
    assert session.seq == 40
    assert len(session.messages) == 40


def test_delete(adapter: PersistenceAdapter) -> None:
    sid, other = uuid.uuid4(), uuid.uuid4()
    adapter.save_session(sid, full_state())
    adapter.save_session(other, full_state())
    assert adapter.delete_session(sid) is True
    assert adapter.delete_session(sid) is False
    assert adapter.load_session(sid) is None
    assert list(adapter.list_sessions()) == [other]
    # A deleted session's ids are forgotten: appending one again stores it, from position 0.
    assert adapter.append_messages(sid, [user("m1")]) == 1
    assert ids(adapter, sid) == ["m1"]


def test_list(adapter: PersistenceAdapter) -> None:
    assert list(adapter.list_sessions()) == []
    made = {uuid.uuid4() for _ in range(5)}
    for sid in made:
        adapter.append_messages(sid, [user("x")])
    listed = list(adapter.list_sessions())
    assert sorted(listed) == sorted(made)
    assert all(type(sid) is uuid.UUID for sid in listed)


def test_list_pages_through_everything(adapter: PersistenceAdapter, monkeypatch: pytest.MonkeyPatch) -> None:
    for module in (sqlite, postgres, _threaded):
        monkeypatch.setattr(module, "_PAGE" if module is not _threaded else "_CHUNK", 2)
    made = [uuid.uuid4() for _ in range(7)]
    for sid in made:
        adapter.save_session(sid, SessionState())
    listed = list(adapter.list_sessions())
    assert sorted(listed) == sorted(made)
    assert len(listed) == 7


@pytest.mark.parametrize("bad", ["nope", "{abc}", "*", 42, None, uuid.uuid4().hex])
def test_every_method_refuses_an_invalid_id(adapter: PersistenceAdapter, bad: object) -> None:
    with pytest.raises(InvalidSessionId):
        adapter.save_session(bad, SessionState())  # type: ignore[arg-type]
    with pytest.raises(InvalidSessionId):
        adapter.load_session(bad)  # type: ignore[arg-type]
    with pytest.raises(InvalidSessionId):
        adapter.delete_session(bad)  # type: ignore[arg-type]
    with pytest.raises(InvalidSessionId):
        adapter.append_messages(bad, [user("a")])  # type: ignore[arg-type]
    assert list(adapter.list_sessions()) == []


def test_invalid_messages_are_refused_before_anything_is_written(adapter: PersistenceAdapter) -> None:
    sid = uuid.uuid4()
    with pytest.raises(InvalidMessage, match=str(sid)):
        adapter.append_messages(sid, [user("ok"), "not a message"])  # type: ignore[list-item]
    with pytest.raises(InvalidMessage, match="non-empty"):
        adapter.append_messages(sid, [AgentMessage.user("no id", id="")])
    with pytest.raises(InvalidMessage, match="schema"):
        adapter.save_session(sid, SessionState(messages=[AgentMessage("bogus", [])]))  # type: ignore[arg-type]
    assert adapter.load_session(sid) is None
    assert list(adapter.list_sessions()) == []


def test_a_state_of_another_version_is_not_written(adapter: PersistenceAdapter) -> None:
    sid = uuid.uuid4()
    with pytest.raises(SchemaVersionError, match=str(sid)):
        adapter.save_session(sid, SessionState(schema_version=2))
    with pytest.raises(SchemaVersionError, match=str(sid)):
        adapter.append_messages(sid, [user("a")], state=SessionState(schema_version=2))
    assert adapter.load_session(sid) is None


def test_context_manager_returns_the_adapter(place: Place) -> None:
    with place.sync() as adapter:
        sid = uuid.uuid4()
        adapter.save_session(sid, SessionState())
    with place.sync() as again:
        assert list(again.list_sessions()) == [sid], "what one adapter wrote, the next one reads"


def test_a_state_that_is_not_a_valid_session_state_is_refused(adapter: PersistenceAdapter) -> None:
    sid = uuid.uuid4()
    with pytest.raises(TypeError, match="expected a SessionState"):
        adapter.save_session(sid, {"model": "m"})  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="does not match the schema"):
        adapter.save_session(sid, SessionState(metadata={"k": 1}))  # type: ignore[dict-item]
    with pytest.raises(TypeError, match="does not match the schema"):
        adapter.append_messages(sid, [user("a")], state=SessionState(max_turns="many"))  # type: ignore[arg-type]
    assert adapter.load_session(sid) is None
