"""``replace_session``: a whole-session write that only lands if the record still holds the session
at the seq its writer read, checked with the write (SQLite, a directory, a real PostgreSQL); and
``migrate --rekey``'s record pass, which uses it, leaving a session that a delivery extended
between its read and its write as it is, reported, with nothing lost."""

from __future__ import annotations

import os
from typing import Any

from redis_sessions import AgentMessage, SessionState
from redis_sessions.codec import CODECS
from redis_sessions.encryption import Encryption
from redis_sessions.migrate import rekey_backing
from redis_sessions.persistence import PersistenceAdapter
from tests.persistence.conftest import Place
from tests.support import ids

KEYS = Encryption({"k1": os.urandom(32)}, current="k1")


def two(sid: str) -> SessionState:
    return SessionState(messages=[AgentMessage.user("one", id="1"), AgentMessage.user("two", id="2")], seq=2)


def test_replace_lands_at_the_seq_read_and_nowhere_else(place: Place) -> None:
    adapter = place.sync()
    try:
        sid = "9a5e1b0c-3f0e-4d57-8a6b-0c1d2e3f4a5b"
        assert adapter.replace_session(sid, two(sid), expected_seq=0)  # holds none: 0 is the seq read
        assert not adapter.replace_session(sid, SessionState(seq=0), expected_seq=0), "it holds seq 2 now"
        assert ids(adapter.load_session(sid).messages) == ["1", "2"]  # type: ignore[union-attr]
        adapter.append_messages(sid, [AgentMessage.user("three", id="3")])  # a delivery lands
        stale = SessionState(messages=[AgentMessage.assistant("rewritten", id="1")], seq=1)
        assert not adapter.replace_session(sid, stale, expected_seq=2)
        assert ids(adapter.load_session(sid).messages) == ["1", "2", "3"]  # type: ignore[union-attr]
        assert adapter.replace_session(sid, stale, expected_seq=3)
        assert ids(adapter.load_session(sid).messages) == ["1"]  # type: ignore[union-attr]
    finally:
        adapter.close()


class DeliveredMeanwhile:
    """An adapter where a write-behind delivery lands once, at the worst moment: after the rekey
    checked the seq it read (``seqs``, as the record pass did before) or just before its write."""

    def __init__(self, inner: PersistenceAdapter) -> None:
        self.inner, self.landed = inner, False

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    def deliver_once(self, session_id: str) -> None:
        if not self.landed:
            self.landed = True
            self.inner.append_messages(session_id, [AgentMessage.user("delivered meanwhile", id="late")])

    def seqs(self, session_ids: list[Any]) -> dict[Any, int]:
        held = self.inner.seqs(session_ids)
        self.deliver_once(str(session_ids[0]))
        return held

    def replace_session(self, session_id: str, state: SessionState, *, expected_seq: int) -> bool:
        self.deliver_once(session_id)
        return self.inner.replace_session(session_id, state, expected_seq=expected_seq)


def test_rekey_leaves_a_session_extended_meanwhile_and_loses_nothing(place: Place) -> None:
    adapter = place.sync()
    try:
        sid = "0b7c1e2d-4f5a-4b6c-8d7e-9f0a1b2c3d4e"
        adapter.save_session(sid, two(sid))  # plain messages: the rekey would seal both
        result = rekey_backing(DeliveredMeanwhile(adapter), KEYS, CODECS["msgpack"])  # type: ignore[arg-type]
        assert (result.seen, result.upgraded) == (1, 0)
        assert [reason for _, reason in result.failed] == ["write-behind extended it meanwhile: run again"]
        kept = adapter.load_session(sid)
        assert kept is not None
        assert ids(kept.messages) == ["1", "2", "late"], "the delivered message is still there"
        assert [m.text for m in kept.messages] == ["one", "two", "delivered meanwhile"], "left as it was"
        again = rekey_backing(adapter, KEYS, CODECS["msgpack"])  # the next run, with nothing moving
        assert (again.upgraded, again.failed) == (1, [])
        assert ids(adapter.load_session(sid).messages) == ["1", "2", "late"]  # type: ignore[union-attr]
    finally:
        adapter.close()
