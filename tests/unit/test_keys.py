"""The key space: hash-tagged keys, id validation, prefix validation, SCAN key parsing."""

from __future__ import annotations

import fnmatch
import uuid

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from redis.crc import key_slot

from redis_sessions import InvalidSessionId, PersistenceError
from redis_sessions.keys import (
    check_prefix,
    dirty_key,
    dirty_keys,
    legacy_dirty_pattern,
    listed_keys,
    live_keys,
    meta_key_pattern,
    parse_meta_key,
    parse_meta_keys,
    reply_keys,
    script_keys,
    session_id,
    session_keys,
    tokens_key,
    tombstone_key,
    tools_key,
)

SID = uuid.UUID("0b7c6a52-7f3e-4d2a-9c1b-5e8f00a1b2c3")

BAD_IDS = [
    "*",
    "a}b",
    "{",
    "\n",
    "",
    " ",
    "x" * 10000,
    123,
    None,
    1.5,
    b"bytes",
    str(SID).encode(),
    f"{{{SID}}}",
    f"{SID}\n",
    f" {SID}",
    f"{SID}*",
    SID.hex,  # 32 hex digits without dashes: not the canonical form
    f"urn:uuid:{SID}",
    ["x"],
    object(),
]


def test_keys_are_hash_tagged_by_session_id() -> None:
    keys = session_keys("rs", SID)
    assert keys.meta == f"rs:{{{SID}}}:meta"
    assert keys.messages == f"rs:{{{SID}}}:messages"
    assert keys.ids == f"rs:{{{SID}}}:ids"
    assert tuple(keys) == (keys.meta, keys.messages, keys.ids)


@given(st.uuids(), st.sampled_from(["rs", "app:sessions", "a", "x-y_z.9", "p" * 64]))
@settings(deadline=None)  # the first example builds the table of slot tags (~50 ms, more on a busy CPU)
def test_all_keys_of_a_session_map_to_one_cluster_slot(sid: uuid.UUID, prefix: str) -> None:
    every = (
        *script_keys(prefix, sid, True),
        tombstone_key(prefix, sid),
        *reply_keys(prefix, sid),
        tools_key(prefix, sid),
    )
    slots = {key_slot(key.encode()) for key in every}
    assert slots == {key_slot(str(sid).encode())}
    assert script_keys(prefix, sid, True) == (
        *session_keys(prefix, sid),
        *live_keys(prefix, sid),
        dirty_key(prefix, sid, True),
    )


def test_dirty_indexes_are_per_slot_on_a_cluster_and_per_slot_group_on_one_server() -> None:
    # Two sessions in one slot share a dirty index; the index never matches the meta-key pattern.
    by_slot: dict[int, set[str]] = {}
    by_group: dict[int, set[str]] = {}
    for _ in range(3000):
        sid = uuid.uuid4()
        by_slot.setdefault(key_slot(str(sid).encode()), set()).add(dirty_key("rs", sid, True))
        by_group.setdefault(key_slot(str(sid).encode()) // 256, set()).add(dirty_key("rs", sid, False))
    assert all(len(keys) == 1 for keys in by_slot.values())
    assert all(len(keys) == 1 for keys in by_group.values())
    assert len({k for keys in by_group.values() for k in keys}) == 64
    names = dirty_keys("rs", True)
    assert len(names) == 16384
    assert all(key_slot(name.encode()) == n for n, name in enumerate(names)), "known names, by slot"
    assert set(dirty_keys("rs", False)) == {k for keys in by_group.values() for k in keys}
    some = next(iter(next(iter(by_slot.values()))))
    assert fnmatch.fnmatchcase(some, legacy_dirty_pattern("rs")), "what an upgraded worker adopts"
    assert not fnmatch.fnmatchcase(dirty_key("rs", uuid.uuid4(), False), legacy_dirty_pattern("rs"))
    assert not fnmatch.fnmatchcase(some, meta_key_pattern("rs"))


def test_different_sessions_usually_land_in_different_slots() -> None:
    # The tag is the id, not the prefix: sessions spread over the cluster.
    slots = {key_slot(session_keys("rs", uuid.uuid4()).meta.encode()) for _ in range(200)}
    assert len(slots) > 100


def test_session_id_accepts_uuid_and_canonical_strings() -> None:
    assert session_id(SID) is SID
    assert session_id(str(SID)) == SID
    assert session_id(str(SID).upper()) == SID
    assert str(session_id(str(SID).upper())) == str(SID), "keys are built from the lowercase form"


@given(st.uuids())
def test_session_id_round_trips_any_uuid(sid: uuid.UUID) -> None:
    assert session_id(str(sid)) == sid


@pytest.mark.parametrize("value", BAD_IDS, ids=lambda v: repr(v)[:30])
def test_session_id_rejects_everything_else(value: object) -> None:
    with pytest.raises(InvalidSessionId) as info:
        session_id(value)
    assert isinstance(info.value, ValueError)
    assert info.value.value is value
    assert len(str(info.value)) < 130, "a huge id is shortened in the message"


def test_uuid_subclass_is_rejected() -> None:
    # Only real UUIDs (or their canonical text) are trusted to format safely into a key.
    class Sneaky(uuid.UUID):
        def __str__(self) -> str:
            return "*"

    with pytest.raises(InvalidSessionId):
        session_id(Sneaky(str(SID)))


@pytest.mark.parametrize("prefix", ["rs", "a", "app:sessions", "a.b-c_d:9", "p" * 64])
def test_check_prefix_accepts(prefix: str) -> None:
    assert check_prefix(prefix) == prefix


@pytest.mark.parametrize(
    "prefix", ["", "p" * 65, "rs*", "a?b", "a[b]", "a{b", "a}b", "a b", "a\nb", "é", None, 1, b"rs"]
)
def test_check_prefix_rejects_glob_tag_and_odd_characters(prefix: object) -> None:
    with pytest.raises(ValueError, match="key prefix"):
        check_prefix(prefix)  # type: ignore[arg-type]


def test_meta_key_pattern() -> None:
    assert meta_key_pattern("rs") == "rs:{*}:meta"


@given(st.uuids())
def test_parse_meta_key_inverts_session_keys(sid: uuid.UUID) -> None:
    key = session_keys("app:x", sid).meta
    assert parse_meta_key("app:x", key) == sid
    assert parse_meta_key("app:x", key.encode()) == sid


@pytest.mark.parametrize(
    "key",
    [
        "rs:{not-a-uuid}:meta",
        b"rs:{not-a-uuid}:meta",
        f"rs:{{{SID}}}:messages",
        f"other:{{{SID}}}:meta",
        f"rs:{SID}:meta",
        f"rs:{{{SID}}}}}:meta",
        f"rs:{{{SID}x}}:meta",
        b"rs:{\xff\xfe}:meta",
        "rs:{}:meta",
    ],
    ids=repr,
)
def test_parse_meta_key_names_a_bad_key(key: str | bytes) -> None:
    with pytest.raises(PersistenceError) as info:
        parse_meta_key("rs", key)
    shown = key.decode("utf-8", "backslashreplace") if isinstance(key, bytes) else key
    assert repr(shown) in str(info.value)


@given(st.lists(st.uuids(), max_size=20))
def test_parse_meta_keys_is_parse_meta_key_of_each(sids: list[uuid.UUID]) -> None:
    keys = [session_keys("app:x", sid).meta.encode() for sid in sids]
    assert parse_meta_keys("app:x", keys) == sids
    assert listed_keys(keys, False) == [k.encode() for sid in sids for k in session_keys("app:x", sid)[:2]]
    counted = [k.encode() for sid in sids for k in (*session_keys("app:x", sid), tokens_key("app:x", sid))]
    assert listed_keys(keys, True) == counted


@pytest.mark.parametrize(
    "key",
    [
        b"rs:{not-a-uuid-but-just-as-long-as-one}:meta",  # 36 characters: past the length check
        b'rs:{0b7c0000-0000-4000-8000-00000000000"}:meta',  # a quote would end the batch's JSON string
        f"rs:{{{SID}}}:messages".encode(),
        f"rs:{{{SID.hex}}}:meta".encode(),  # msgspec would take 32 hex digits: never canonical
    ],
    ids=repr,
)
def test_parse_meta_keys_names_a_bad_key_among_good_ones(key: bytes) -> None:
    good = session_keys("rs", SID).meta.encode()
    with pytest.raises(PersistenceError) as info:
        parse_meta_keys("rs", [good, key, good])
    assert repr(key.decode()) in str(info.value)
