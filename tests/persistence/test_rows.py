"""The adapters' shared, I/O-free part: version check first, the header, the splice, the append rule."""

from __future__ import annotations

import sqlite3
import uuid

import msgspec
import pytest

from redis_sessions import (
    CorruptSession,
    InvalidSessionId,
    PersistenceError,
    SchemaVersionError,
    SessionState,
    StoreError,
)
from redis_sessions.persistence import _rows
from tests.unit.test_models import full_state

SID = uuid.UUID("3b2f1c4d-5e6f-4a7b-8c9d-0e1f2a3b4c5d")


def test_the_header_is_the_state_without_its_messages() -> None:
    header = _rows.encode_header(SID, full_state())
    fields = msgspec.json.decode(header.json)
    rows = {"messages", "message_tokens"}  # the message rows' (their body and count columns)
    assert set(fields) == set(SessionState.__struct_fields__) - rows, "a new field is stored too"
    assert next(iter(fields)) == "schema_version"
    headed = msgspec.structs.replace(full_state(), messages=[], message_tokens=None)
    assert _rows.decode_header(SID, header.json) == headed
    assert (header.schema_version, header.seq, header.updated_at) == (1, 7, full_state().updated_at)


@pytest.mark.parametrize("state", [SessionState(), full_state()], ids=["empty", "full"])
def test_the_header_is_the_bytes_of_the_state_as_a_dict_less_its_rows(state: SessionState) -> None:
    """The header row is encoded from the state's fields directly; the bytes are what encoding
    the state made into a dict, less the rows' two keys, gave (what records already hold)."""
    fields = msgspec.to_builtins(msgspec.structs.replace(state, messages=[], message_tokens=None))
    del fields["messages"], fields["message_tokens"]
    assert _rows.encode_header(SID, state).json == msgspec.json.encode(fields)


def test_the_spliced_document_is_the_state() -> None:
    header, rows, counts = _rows.snapshot(SID, full_state())
    spliced = _rows.document(header.json, [body for _, body in rows], counts)
    assert msgspec.json.decode(spliced, type=SessionState) == full_state()
    assert _rows.document(_rows.encode_header(SID, SessionState()).json, []).endswith(b',"messages":[]}')


def test_a_stored_version_is_checked_before_anything_else() -> None:
    with pytest.raises(SchemaVersionError):
        _rows.decode_document(SID, b'{"messages": 5, "schema_version": 3}')
    with pytest.raises(CorruptSession, match="no schema_version"):
        _rows.decode_document(SID, b'{"messages": []}')


def test_the_first_bad_message_of_a_document_is_named() -> None:
    good = msgspec.json.encode(full_state().messages[0])
    document = b'{"schema_version":1,"messages":[%s,%s,{"role":1}]}' % (good, good)
    with pytest.raises(CorruptSession) as info:
        _rows.decode_document(SID, document)
    assert info.value.position == 2


@pytest.mark.parametrize(
    ("stored_seq", "count", "given", "added", "expected"),
    [
        (10, 5, None, 2, 12),  # no state: each new message counts
        (10, 5, 4, 2, 10),  # an older state never lowers it
        (10, 5, 15, 2, 15),  # a newer one raises it
        (None, 5, None, 2, 7),  # a header without seq counts its stored messages
        (None, 0, None, 0, 0),
    ],
)
def test_the_seq_after_an_append(
    stored_seq: int | None, count: int, given: int | None, added: int, expected: int
) -> None:
    stored = SessionState(model="stored", seq=stored_seq)
    state = None if given is None else SessionState(model="given", seq=given)
    after = _rows.header_after_append(stored, count, state, added)
    assert after.seq == expected
    assert after.model == ("stored" if state is None else "given")
    assert after.messages == []


def test_a_state_with_a_seq_of_none_counts_like_no_state() -> None:
    after = _rows.header_after_append(SessionState(seq=3), 3, SessionState(model="x"), 2)
    assert (after.seq, after.model) == (5, "x")


def test_refuse_newer_only_refuses_a_newer_version() -> None:
    _rows.refuse_newer(SID, None)
    _rows.refuse_newer(SID, b"{not json")
    _rows.refuse_newer(SID, b'{"schema_version": 1}')
    _rows.refuse_newer(SID, b'{"schema_version": 0}')
    with pytest.raises(SchemaVersionError, match="version 2"):
        _rows.refuse_newer(SID, b'{"schema_version": 2}')


def test_stored_ids_must_be_canonical() -> None:
    assert _rows.stored_id(str(SID), "here") == SID
    assert _rows.stored_id(str(SID).encode(), "here") == SID
    for bad in [str(SID).upper(), SID.hex, "x", 5]:
        with pytest.raises(PersistenceError, match="here holds") as info:
            _rows.stored_id(bad, "here")
        assert not isinstance(info.value, InvalidSessionId)


def test_driver_errors_wraps_only_the_drivers_errors() -> None:
    with (
        pytest.raises(StoreError, match="op for session") as info,
        _rows.driver_errors("op", SID, (sqlite3.Error,)),
    ):
        raise sqlite3.OperationalError("database is locked")
    assert isinstance(info.value.__cause__, sqlite3.OperationalError)
    with pytest.raises(CorruptSession), _rows.driver_errors("op", SID, (sqlite3.Error,)):
        raise CorruptSession(SID, "ours pass through")
