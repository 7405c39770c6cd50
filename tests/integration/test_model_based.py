"""Random sequences of operations keep the store equal to a simple in-memory model.

The model is a dict: session id -> (message ids in order, seq, id -> seq of the retained messages).
Rules run the public sync API; every rule checks its result against the model, and the
invariant checks the whole store after every step. Many examples on fakeredis, a few on a real server.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import dataclass, field

import pytest
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    Bundle,
    RuleBasedStateMachine,
    initialize,
    invariant,
    rule,
    run_state_machine_as_test,
)

from redis_sessions import AgentMessage, ConflictError, SessionExists, SessionNotFound, SessionStore
from tests.support import Backend, ids

# A small pool of message ids, so duplicates (within a session and within a batch) are frequent.
POOL = [AgentMessage.user(f"text {n}", id=f"id-{n}") for n in range(12)]
messages = st.sampled_from(POOL)
bounds = st.one_of(st.none(), st.integers(-8, 8))


Factory = Callable[[], tuple[SessionStore, Callable[[], None]]]


@dataclass
class Model:
    order: list[str] = field(default_factory=list)
    seq: int = 0
    seqs: dict[str, int] = field(default_factory=dict)

    def extend(self, batch: list[AgentMessage], limit: int | None) -> int:
        """What the store does, written the plain way; returns the seq the store should return."""
        new = [m for i, m in enumerate(batch) if m.id not in self.seqs and m.id not in ids(batch[:i])]
        if not new:
            return max((self.seqs[m.id] for m in batch), default=self.seq)
        for message in new:
            self.seq += 1
            self.order.append(message.id)
            self.seqs[message.id] = self.seq
        if limit is not None and len(self.order) > limit:
            for gone in self.order[:-limit]:
                del self.seqs[gone]
            self.order = self.order[-limit:]
        return self.seq


def machine(make_store: Factory, limit: int | None) -> type:
    class StoreMachine(RuleBasedStateMachine):
        sessions = Bundle("sessions")

        def __init__(self) -> None:
            super().__init__()
            self.store, self.cleanup = make_store()
            self.model: dict[uuid.UUID, Model] = {}

        def teardown(self) -> None:
            self.cleanup()

        @initialize(target=sessions)
        def first_session(self) -> uuid.UUID:
            return self.new_session()

        @rule(target=sessions)
        def create(self) -> uuid.UUID:
            return self.new_session()

        def new_session(self) -> uuid.UUID:
            sid = self.store.create()
            assert sid not in self.model
            self.model[sid] = Model()
            return sid

        @rule(sid=sessions)
        def create_again(self, sid: uuid.UUID) -> None:
            if sid in self.model:
                with pytest.raises(SessionExists):
                    self.store.create(session_id=sid)
                return
            assert self.store.create(session_id=sid) == sid
            self.model[sid] = Model()

        @rule(sid=sessions, message=messages)
        def append(self, sid: uuid.UUID, message: AgentMessage) -> None:
            if sid not in self.model:
                with pytest.raises(SessionNotFound):
                    self.store.append(sid, message)
                return
            expected = self.model[sid].extend([message], limit)
            assert self.store.append(sid, message) == expected

        @rule(sid=sessions, batch=st.lists(messages, max_size=6))
        def extend(self, sid: uuid.UUID, batch: list[AgentMessage]) -> None:
            if sid not in self.model:
                with pytest.raises(SessionNotFound):
                    self.store.extend(sid, batch)
                return
            expected = self.model[sid].extend(batch, limit)
            assert self.store.extend(sid, batch) == expected

        @rule(sid=sessions, data=st.data())
        def append_duplicate(self, sid: uuid.UUID, data: st.DataObject) -> None:
            model = self.model.get(sid)
            if model is None or not model.order:
                return
            stored = data.draw(st.sampled_from(model.order))
            message = next(m for m in POOL if m.id == stored)
            assert self.store.append(sid, message) == model.seqs[stored]
            assert model.extend([message], limit) == model.seqs[stored]

        @rule(sid=sessions, message=messages, off_by=st.sampled_from([0, -1, 1]))
        def append_expecting(self, sid: uuid.UUID, message: AgentMessage, off_by: int) -> None:
            if sid not in self.model:
                return
            model = self.model[sid]
            expected_seq = max(0, model.seq + off_by)
            stale = expected_seq != model.seq and message.id not in model.seqs
            if stale:
                with pytest.raises(ConflictError) as info:
                    self.store.append(sid, message, expected_seq=expected_seq)
                assert info.value.actual == model.seq
                return
            assert self.store.append(sid, message, expected_seq=expected_seq) == model.extend(
                [message], limit
            )

        @rule(sid=sessions)
        def delete(self, sid: uuid.UUID) -> None:
            assert self.store.delete(sid) == (sid in self.model)
            self.model.pop(sid, None)

        @rule(sid=sessions)
        def load(self, sid: uuid.UUID) -> None:
            session = self.store.load(sid)
            if sid not in self.model:
                assert session is None
                return
            assert session is not None
            assert ids(session.messages) == self.model[sid].order
            assert session.seq == self.model[sid].seq

        @rule(sid=sessions, start=bounds, stop=bounds)
        def read_range(self, sid: uuid.UUID, start: int | None, stop: int | None) -> None:
            if sid not in self.model:
                with pytest.raises(SessionNotFound):
                    self.store.messages(sid, start or 0, stop)
                return
            got = self.store.messages(sid, start or 0, stop)
            assert ids(got) == self.model[sid].order[start:stop]

        @rule(sid=sessions)
        def exists(self, sid: uuid.UUID) -> None:
            assert self.store.exists(sid) == (sid in self.model)

        @invariant()
        def listed_sessions_are_the_model(self) -> None:
            assert set(self.store.list()) == set(self.model)

    return StoreMachine


def stores(url: str | None, limit: int | None) -> Factory:
    """A factory of fresh stores (own prefix; own FakeServer on fakeredis) and their cleanups."""

    def make() -> tuple[SessionStore, Callable[[], None]]:
        backend = Backend("real" if url else "fakeredis", url)
        client = backend.sync_client()

        def cleanup() -> None:
            client.close()
            backend.close()

        return SessionStore(client, prefix=backend.prefix, max_messages=limit), cleanup

    return make


@pytest.mark.parametrize("limit", [None, 3])
def test_store_matches_model_on_fakeredis(limit: int | None) -> None:
    run_state_machine_as_test(
        machine(stores(None, limit), limit),
        settings=settings(max_examples=60, stateful_step_count=25, deadline=None),
    )


@pytest.mark.real
@pytest.mark.parametrize("limit", [None, 3])
def test_store_matches_model_on_a_real_server(redis_url: str, limit: int | None) -> None:
    run_state_machine_as_test(
        machine(stores(redis_url, limit), limit),
        settings=settings(max_examples=15, stateful_step_count=25, deadline=None),
    )
