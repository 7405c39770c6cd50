"""``messages(start, stop)`` follows Python's slice rules exactly, on every backend and front."""

from __future__ import annotations

import uuid

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from redis_sessions import SessionNotFound
from tests.conftest import Store
from tests.support import ids, messages_of

LENGTHS = [0, 1, 2, 5, 13]
bounds = st.integers(-16, 16)


@pytest.fixture
def sessions(store: Store) -> dict[int, uuid.UUID]:
    """One session per length, filled with messages m-0000, m-0001, ..."""
    made = {}
    for length in LENGTHS:
        sid = store.create()
        if length:
            store.extend(sid, messages_of(length))
        made[length] = sid
    return made


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(length=st.sampled_from(LENGTHS), start=bounds, stop=st.one_of(st.none(), bounds))
def test_messages_equals_python_slicing(
    store: Store, sessions: dict[int, uuid.UUID], length: int, start: int, stop: int | None
) -> None:
    expected = ids(messages_of(length))[start:stop]
    assert ids(store.messages(sessions[length], start, stop)) == expected


@pytest.mark.parametrize(
    ("start", "stop"),
    [(0, None), (0, 0), (0, 1), (-1, None), (0, -1), (-5, -3), (3, 2), (4, 100), (-100, 2), (100, None)],
)
def test_messages_edges(store: Store, sessions: dict[int, uuid.UUID], start: int, stop: int | None) -> None:
    sid = sessions[5]
    assert ids(store.messages(sid, start, stop)) == ids(messages_of(5))[start:stop]
    assert ids(store.messages(sid, start=start, stop=stop)) == ids(messages_of(5))[start:stop]


def test_defaults_read_everything(store: Store, sessions: dict[int, uuid.UUID]) -> None:
    assert store.messages(sessions[13]) == messages_of(13)
    assert store.messages(sessions[0]) == []


@pytest.mark.parametrize(("start", "stop"), [(0, None), (0, 0), (-3, None)])
def test_missing_session_is_not_found_for_any_range(store: Store, start: int, stop: int | None) -> None:
    sid = uuid.uuid4()
    with pytest.raises(SessionNotFound) as info:
        store.messages(sid, start, stop)
    assert info.value.session_id == sid
