"""A ``Delivery`` carries each message as the record keeps it (its id and JSON body), checked once
where the batch is made: the worker's rows are the bytes the adapters made before, a message built
in Python is checked as an append checks it, and what the record cannot keep is refused."""

from __future__ import annotations

import uuid

import msgspec
import pytest

from redis_sessions import AgentMessage, CorruptSession, InvalidMessage, RecordMismatch, SessionState
from redis_sessions.codec import CODECS
from redis_sessions.persistence import _rows, delivery
from redis_sessions.persistence._delivery import decoded_delivery, plan
from tests.unit.test_models import full_state

SID = uuid.UUID("3b2f1c4d-5e6f-4a7b-8c9d-0e1f2a3b4c5d")


@pytest.mark.parametrize("codec", sorted(CODECS))
def test_the_workers_rows_are_the_bodies_the_adapters_made_before(codec: str) -> None:
    given = [
        *full_state().messages,
        msgspec.structs.replace(AgentMessage.user("x", id="m9"), extra={"k": [1, None]}),
    ]
    stored = [CODECS[codec].encode(message) for message in given]  # as Redis holds them
    decoded = CODECS[codec].decode(SID, stored)  # as the worker reads them
    rows = decoded_delivery(SID, 4, decoded, SessionState()).rows
    assert rows == _rows.unique_messages(SID, given), "the record holds the same bytes as before"
    assert rows == delivery(SID, 4, given, SessionState()).rows


def test_a_message_built_in_python_is_checked_before_anything_is_stored() -> None:
    bad = AgentMessage(role="user", content=[123], id="m1")  # type: ignore[arg-type, list-item]
    with pytest.raises(InvalidMessage) as refused:
        delivery(SID, 1, [AgentMessage.user("fine", id="m0"), bad], SessionState())
    assert str(SID) in str(refused.value)
    assert "'m1'" in str(refused.value)


def test_a_stored_message_the_record_cannot_keep_is_refused_naming_it() -> None:
    odd = msgspec.structs.replace(AgentMessage.user("x", id="m5"), extra={"k": msgspec.msgpack.Ext(1, b"?")})
    with pytest.raises(CorruptSession) as refused:
        decoded_delivery(SID, 5, [odd], SessionState())
    assert str(SID) in str(refused.value)
    assert "'m5' (seq 5)" in str(refused.value)
    with pytest.raises(CorruptSession, match="seq 2 has an empty id"):
        decoded_delivery(SID, 2, [AgentMessage.user("x", id="")], SessionState())


def test_the_header_of_a_delivery_has_no_messages_and_a_repeated_id_is_a_mismatch() -> None:
    made = delivery(SID, 1, [AgentMessage.user("a", id="m1"), AgentMessage.user("b", id="m1")], full_state())
    assert made.state.messages == []
    assert made.state.model == full_state().model
    with pytest.raises(RecordMismatch, match="repeats a message id"):
        plan(made, 0, set())
