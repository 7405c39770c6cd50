"""An oversize or malformed message is refused before anything is sent to Redis.

The store is pointed at a port where nothing listens, with no retry: had any command been sent, the
caller would get ``StoreUnavailable``; getting the validation error instead shows the check ran
first (test_validation.py shows that nothing is stored when Redis is there).
"""

from __future__ import annotations

import uuid

import pytest

from redis_sessions import AgentMessage, InvalidMessage, MessageTooLarge, Role, Text
from tests.conftest import MakeStore
from tests.support import messages_of

SID = uuid.UUID("0f4b2d8e-6a1c-4e3b-9d7f-5c2a1b0e9d8c")


def test_an_oversize_message_is_refused_before_any_redis_call(make_unreachable: MakeStore) -> None:
    store = make_unreachable(retry=None, max_message_bytes=100)
    big = AgentMessage.user("x" * 500, id="big")
    with pytest.raises(MessageTooLarge) as info:
        store.append(SID, big)
    assert (info.value.session_id, info.value.message_id, info.value.limit) == (SID, "big", 100)
    with pytest.raises(MessageTooLarge):
        store.extend(SID, [*messages_of(2), big])  # all or nothing: the batch is not sent either


def test_the_default_limit_applies_before_sending(make_unreachable: MakeStore) -> None:
    store = make_unreachable(retry=None)
    with pytest.raises(MessageTooLarge) as info:
        store.append(SID, AgentMessage.user("x" * (8 * 1024 * 1024 + 1)))
    assert info.value.limit == 8 * 1024 * 1024


def test_a_malformed_message_is_refused_before_any_redis_call(make_unreachable: MakeStore) -> None:
    store = make_unreachable(retry=None)
    with pytest.raises(InvalidMessage):
        store.append(SID, AgentMessage(Role.USER, [Text(42)]))  # type: ignore[arg-type]
    with pytest.raises(InvalidMessage):
        store.extend(SID, [*messages_of(2), "not a message"])  # type: ignore[list-item]
