"""Properties, on every adapter: any state round-trips; any run of overlapping batches stores each id once.

The message strategy is the model tests' (``tests/unit/test_models.py``); examples are few on the
adapters that write to disk or a server, to keep the run short.
"""

from __future__ import annotations

import uuid
from datetime import UTC

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from redis_sessions import AgentMessage, SessionState
from tests.persistence.conftest import Place
from tests.unit.test_models import messages, texts

EXAMPLES = {"sqlite": 100, "directory": 60, "postgres": 60}
SETTINGS = settings(deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])

times = st.none() | st.datetimes(timezones=st.just(UTC))
states = st.builds(
    SessionState,
    model=texts,
    max_turns=st.integers(0, 10_000),
    system_message=st.none() | texts,
    messages=st.lists(messages, max_size=6, unique_by=lambda m: m.id),
    metadata=st.dictionaries(texts, texts, max_size=3),
    created_at=times,
    updated_at=times,
    seq=st.none() | st.integers(0, 2**62),
)
# Batches drawn from a small pool of ids, so they overlap and repeat.
pool_ids = st.sampled_from([f"m{i}" for i in range(8)])
batches = st.lists(st.lists(pool_ids, max_size=5), min_size=1, max_size=5)


def test_any_state_round_trips(place: Place) -> None:
    with place.sync() as adapter:

        @settings(SETTINGS, max_examples=EXAMPLES[place.kind])
        @given(state=states)
        def round_trip(state: SessionState) -> None:
            sid = uuid.uuid4()
            adapter.save_session(sid, state)
            assert adapter.load_session(sid) == state

        round_trip()


def test_overlapping_batches_store_each_id_once_in_first_seen_order(place: Place) -> None:
    with place.sync() as adapter:

        @settings(SETTINGS, max_examples=EXAMPLES[place.kind])
        @given(batches=batches)
        def appends(batches: list[list[str]]) -> None:
            sid = uuid.uuid4()
            expected: list[str] = []
            for batch in batches:
                new = [i for i in dict.fromkeys(batch) if i not in expected]
                stored = adapter.append_messages(sid, [AgentMessage.user(i, id=i) for i in batch])
                assert stored == len(new)
                expected += new
            state = adapter.load_session(sid)
            assert state is not None
            assert [m.id for m in state.messages] == expected
            assert state.seq == len(expected)

        appends()


def test_the_strategy_makes_states_with_messages() -> None:
    # Guards the properties above against a strategy that only ever makes empty states.
    found = []

    @settings(max_examples=50, deadline=None)
    @given(states)
    def collect(state: SessionState) -> None:
        found.append(len(state.messages))

    collect()
    assert max(found) >= 2
