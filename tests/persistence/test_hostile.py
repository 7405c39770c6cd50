"""Hostile rows: what a person or another program left in the store gives our typed errors, never a crash.

Each case writes the row by hand (``raw``), then reads it through the adapter (sync and async).
"""

from __future__ import annotations

import uuid

import msgspec
import pytest

from redis_sessions import AgentMessage, CorruptSession, PersistenceError, SchemaVersionError, SessionState
from redis_sessions.persistence import PersistenceAdapter
from tests.persistence.raw import Raw

GOOD_HEADER = b'{"schema_version":1,"model":"m","max_turns":3,"system_message":null,"metadata":{}}'
GOOD_BODY = msgspec.json.encode(AgentMessage.user("hello", id="ok"))


def test_unknown_version_is_refused_naming_the_session(adapter: PersistenceAdapter, raw: Raw) -> None:
    sid = uuid.uuid4()
    raw.put(str(sid), GOOD_HEADER.replace(b'"schema_version":1', b'"schema_version":99'), [GOOD_BODY])
    with pytest.raises(SchemaVersionError) as info:
        adapter.load_session(sid)
    assert str(info.value) == f"unsupported session schema version 99 for `{sid}` (expected 1)"
    assert (info.value.session_id, info.value.found, info.value.expected) == (sid, 99, 1)


def test_version_is_checked_before_the_rest_is_decoded(adapter: PersistenceAdapter, raw: Raw) -> None:
    # A newer version may have changed any other field: it must be reported as a version, not as
    # a document of the wrong shape.
    sid = uuid.uuid4()
    raw.put(str(sid), b'{"schema_version":2,"model":{"name":"m"},"max_turns":"many","metadata":[]}')
    with pytest.raises(SchemaVersionError, match="version 2 for"):
        adapter.load_session(sid)


@pytest.mark.parametrize("version", [b'"1"', b"1.0", b"true", b"null", b"0"])
def test_a_version_that_is_not_our_int_is_refused(
    adapter: PersistenceAdapter, raw: Raw, version: bytes
) -> None:
    sid = uuid.uuid4()
    raw.put(str(sid), b'{"schema_version":' + version + b"}")
    with pytest.raises(SchemaVersionError, match=str(sid)):
        adapter.load_session(sid)


@pytest.mark.parametrize(
    ("header", "detail"),
    [
        (b"{not json", "not a JSON object"),
        (b"[1, 2, 3]", "not a JSON object"),
        (b'"a string"', "not a JSON object"),
        (b'{"model":"m"}', "no schema_version"),
        (b'{"schema_version":1,"model":42}', "model"),
        (b'{"schema_version":1,"metadata":{"k":1}}', "metadata"),
        (b'{"schema_version":1,"created_at":"yesterday"}', "created_at"),
    ],
    ids=["bad-json", "array", "string", "no-version", "model-int", "metadata-int", "bad-time"],
)
def test_a_bad_header_is_corrupt(adapter: PersistenceAdapter, raw: Raw, header: bytes, detail: str) -> None:
    sid = uuid.uuid4()
    raw.put(str(sid), header)
    with pytest.raises(CorruptSession) as info:
        adapter.load_session(sid)
    assert f"session `{sid}` is corrupt" in str(info.value)
    assert detail in str(info.value)
    assert info.value.session_id == sid
    assert info.value.position is None


@pytest.mark.parametrize(
    "body",
    [b'{"role":"user","content":"not a list","id":"x"}', b'{"role":"nobody","content":[],"id":"x"}', b"[]"],
    ids=["content-str", "unknown-role", "array"],
)
def test_a_message_of_the_wrong_shape_is_corrupt_at_its_position(
    adapter: PersistenceAdapter, raw: Raw, body: bytes
) -> None:
    sid = uuid.uuid4()
    raw.put(str(sid), GOOD_HEADER, [GOOD_BODY, GOOD_BODY.replace(b'"ok"', b'"ok2"'), body])
    with pytest.raises(CorruptSession) as info:
        adapter.load_session(sid)
    assert info.value.position == 2
    assert f"session `{sid}` is corrupt at position 2" in str(info.value)


def test_a_message_that_is_not_json_is_corrupt(adapter: PersistenceAdapter, raw: Raw) -> None:
    sid = uuid.uuid4()
    raw.put(str(sid), GOOD_HEADER, [GOOD_BODY, b'{"role": "user", "cont'])
    with pytest.raises(CorruptSession, match=f"session `{sid}` is corrupt") as info:
        adapter.load_session(sid)
    # Stored apart, the bad body is found; in one file, the whole file is what does not parse.
    assert info.value.position == (1 if raw.splits_messages else None)


@pytest.mark.parametrize(
    "stored", ["not-a-uuid", "3B2F1C4D-5E6F-4A7B-8C9D-0E1F2A3B4C5D", "{3b2f1c4d-5e6f-4a7b-8c9d-0e1f2a3b4c5d}"]
)
def test_a_stored_id_that_is_not_a_canonical_uuid_stops_the_listing(
    adapter: PersistenceAdapter, raw: Raw, stored: str
) -> None:
    # Upper case is a UUID, but never what a lookup asks for: it could be listed and not loaded.
    raw.put(stored, GOOD_HEADER)
    with pytest.raises(PersistenceError, match="not a canonical UUID") as info:
        list(adapter.list_sessions())
    assert repr(stored) in str(info.value)


def test_ids_listed_before_a_bad_one_still_arrive(adapter: PersistenceAdapter, raw: Raw) -> None:
    good = [uuid.uuid4() for _ in range(3)]
    for sid in good:
        raw.put(str(sid), GOOD_HEADER)
    raw.put("zzz-not-a-uuid", GOOD_HEADER)  # sorts (and is likely created) last
    listed: list[uuid.UUID] = []
    ids = adapter.list_sessions()
    with pytest.raises(PersistenceError, match="zzz-not-a-uuid"):
        listed.extend(ids)
    if raw.splits_messages:  # listed in id (PostgreSQL) or insertion (SQLite) order: the bad one last
        assert sorted(listed) == sorted(good)
    else:  # directory order is the file system's
        assert set(listed) <= set(good)


def test_append_to_a_session_of_another_version_changes_nothing(
    adapter: PersistenceAdapter, raw: Raw
) -> None:
    sid = uuid.uuid4()
    raw.put(str(sid), GOOD_HEADER.replace(b'"schema_version":1', b'"schema_version":99'), [GOOD_BODY])
    with pytest.raises(SchemaVersionError, match=str(sid)):
        adapter.append_messages(sid, [AgentMessage.user("new", id="new")])
    assert raw.count(str(sid)) == 1
    with pytest.raises(SchemaVersionError):
        adapter.load_session(sid)


def test_append_to_a_corrupt_session_changes_nothing(adapter: PersistenceAdapter, raw: Raw) -> None:
    sid = uuid.uuid4()
    raw.put(str(sid), b'{"schema_version":1,"model":42}', [GOOD_BODY])
    with pytest.raises(CorruptSession, match=str(sid)):
        adapter.append_messages(sid, [AgentMessage.user("new", id="new")])
    assert raw.count(str(sid)) == 1


def test_save_never_downgrades_a_newer_session(adapter: PersistenceAdapter, raw: Raw) -> None:
    sid = uuid.uuid4()
    raw.put(str(sid), b'{"schema_version":2,"model":"from the future"}')
    with pytest.raises(SchemaVersionError, match=str(sid)):
        adapter.save_session(sid, SessionState())
    assert b"from the future" in raw.document(str(sid))


def test_save_repairs_a_corrupt_session(adapter: PersistenceAdapter, raw: Raw) -> None:
    # A snapshot (say, from Redis) may replace what no longer decodes: that is how it is repaired.
    sid = uuid.uuid4()
    raw.put(str(sid), b"{not json", [b"garbage"])
    state = SessionState(model="fixed", messages=[AgentMessage.user("hi", id="a")])
    adapter.save_session(sid, state)
    assert adapter.load_session(sid) == state
