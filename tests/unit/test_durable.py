"""The restore call, without Redis: what it refuses before anything is sent, and what it sends."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

import pytest

from redis_sessions import AgentMessage, SchemaVersionError, SessionState
from redis_sessions._core import StoreCore
from redis_sessions._durable import restore

SID = uuid.UUID("a1b2c3d4-e5f6-4a7b-8c9d-0e1f2a3b4c5d")
CORE = StoreCore(prefix="rs", ttl=None, max_messages=None, codec="msgpack", max_message_bytes=1 << 20)


def test_a_newer_schema_is_refused_before_anything_is_sent() -> None:
    with pytest.raises(SchemaVersionError) as info:
        restore(CORE, SID, SessionState(schema_version=2), replace=False)
    assert str(SID) in str(info.value)


def test_a_repeated_message_id_keeps_its_first_position_and_seq_covers_the_messages() -> None:
    a, b = AgentMessage.user("a", id="a"), AgentMessage.user("b", id="b")
    call = restore(
        CORE, SID, SessionState(messages=[a, b, AgentMessage.user("again", id="a")]), replace=False
    )
    args = call.args
    assert args[6] == 2  # seq: two distinct messages, none stored before them
    assert [x for x in args[-4:] if isinstance(x, str)] == ["a", "b"]


def test_timestamps_travel_as_microseconds() -> None:
    moment = datetime(2026, 11, 25, 12, 0, 0, 123456, tzinfo=UTC)
    call = restore(CORE, SID, SessionState(created_at=moment, updated_at=None), replace=True)
    assert call.args[7] == str(int(moment.timestamp()) * 1_000_000 + 123456)
    assert call.args[8] == ""  # unknown: Redis fills in its own time
    assert call.args[5] == "1"
