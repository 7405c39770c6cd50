"""Schema evolution: a session stored by version 1 is read, and written to, by a version 2 that
registers the upgrade step; a version newer than the code is refused, never guessed; without a
step, an older version is refused too. Version 2 exists only inside ``migrations.using`` here:
it renames the metadata key ``user`` to ``owner`` and marks every text block ``[v1]``."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from redis_sessions import AgentMessage, SchemaVersionError, SessionState
from redis_sessions.keys import session_keys
from redis_sessions.migrations import Schema, Upgrade, using
from redis_sessions.persistence import DirectoryAdapter, SQLiteAdapter
from tests.conftest import MakeStore
from tests.support import Backend, expect_no_change, ids, messages_of


def rename_owner(session: dict[str, Any]) -> dict[str, Any]:
    metadata = dict(session.get("metadata", {}))
    if "user" in metadata:
        metadata["owner"] = metadata.pop("user")
    return {**session, "metadata": metadata}


def mark_text(message: dict[str, Any]) -> dict[str, Any]:
    blocks = [
        {**block, "text": f"[v1] {block['text']}"} if block.get("type") == "text" else block
        for block in message["content"]
    ]
    return {**message, "content": blocks}


V2 = Schema(2, {1: Upgrade(session=rename_owner, message=mark_text)})
V2_WITHOUT_A_STEP = Schema(2, {})


def old_session(store: Any) -> Any:
    sid = store.create("gpt-x", metadata={"user": "ada", "topic": "t"})
    store.extend(sid, messages_of(3))
    return sid


def test_a_version_1_session_in_redis_is_upgraded_on_first_touch(
    make_store: MakeStore, backend: Backend
) -> None:
    old = make_store()
    sid = old_session(old)
    with using(V2):
        new = make_store()
    # Read by version 2: upgraded in place, once, and then simply read.
    assert [m.text for m in new.messages(sid)] == [f"[v1] {m.text}" for m in messages_of(3)]
    assert backend.raw.hget(session_keys(backend.prefix, sid).meta, "schema_version") == b"2"
    session = new.load(sid)
    assert session is not None
    assert session.metadata == {"owner": "ada", "topic": "t"}
    assert session.seq == 3
    assert ids(session.messages) == ids(messages_of(3))
    # Written to by version 2, with the ids' idempotency intact ...
    assert new.append(sid, messages_of(3)[0]) == 1
    assert new.append(sid, AgentMessage.user("new", id="new"), expected_seq=3) == 4
    # ... and refused to version 1, which does not know version 2: nothing changes.
    unchanged = expect_no_change(backend)
    with pytest.raises(SchemaVersionError) as info:
        old.append(sid, AgentMessage.user("from the past"))
    assert (info.value.found, info.value.expected) == (2, 1)
    assert str(sid) in str(info.value)
    unchanged()


@pytest.mark.parametrize("operation", ["append", "load", "messages", "exists"])
def test_each_operation_upgrades(make_store: MakeStore, operation: str) -> None:
    sid = old_session(make_store())
    with using(V2):
        new = make_store()
    if operation == "append":
        assert new.append(sid, AgentMessage.user("x", id="x")) == 4
    elif operation == "load":
        assert new.load(sid).metadata["owner"] == "ada"  # type: ignore[union-attr]
    elif operation == "messages":
        assert new.messages(sid, -1)[0].text == "[v1] m 2"
    else:
        assert new.exists(sid)  # EXISTS does not look at versions: nothing to upgrade yet
    assert new.messages(sid)[0].text == "[v1] m 0"


def test_without_a_step_an_older_version_is_refused_and_left_alone(
    make_store: MakeStore, backend: Backend
) -> None:
    sid = old_session(make_store())
    with using(V2_WITHOUT_A_STEP):
        new = make_store()
    unchanged = expect_no_change(backend)
    for call in (
        lambda: new.messages(sid),
        lambda: new.load(sid),
        lambda: new.append(sid, AgentMessage.user("x")),
    ):
        with pytest.raises(SchemaVersionError) as info:
            call()
        assert (info.value.found, info.value.expected) == (1, 2)
    unchanged()


def test_a_newer_version_is_refused_not_guessed(make_store: MakeStore, backend: Backend) -> None:
    with using(Schema(3, {1: Upgrade(), 2: Upgrade()})):
        sid = old_session(make_store())
    with using(V2):
        v2 = make_store()
    unchanged = expect_no_change(backend)
    with pytest.raises(SchemaVersionError) as info:
        v2.messages(sid)
    assert (info.value.found, info.value.expected) == (3, 2)
    unchanged()


@pytest.mark.parametrize("kind", ["sqlite", "directory"])
def test_the_backing_store_is_upgraded_when_read(tmp_path: Path, kind: str) -> None:
    adapter = SQLiteAdapter(tmp_path / "db.sqlite") if kind == "sqlite" else DirectoryAdapter(tmp_path / "d")
    with adapter:
        state = SessionState(model="m", metadata={"user": "ada"}, messages=messages_of(2), seq=2)
        adapter.save_session("a1b2c3d4-e5f6-4a7b-8c9d-0e1f2a3b4c5d", state)
        with using(V2):
            loaded = adapter.load_session("a1b2c3d4-e5f6-4a7b-8c9d-0e1f2a3b4c5d")
        assert loaded is not None
        assert loaded.schema_version == 2
        assert loaded.metadata == {"owner": "ada"}
        assert [m.text for m in loaded.messages] == ["[v1] m 0", "[v1] m 1"]
        with using(V2_WITHOUT_A_STEP), pytest.raises(SchemaVersionError):
            adapter.load_session("a1b2c3d4-e5f6-4a7b-8c9d-0e1f2a3b4c5d")
        # Version 1 again: what is stored was not rewritten by the read.
        again = adapter.load_session("a1b2c3d4-e5f6-4a7b-8c9d-0e1f2a3b4c5d")
        assert again is not None
        assert again.metadata == {"user": "ada"}
