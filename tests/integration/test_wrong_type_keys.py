"""Keys of a session holding the wrong Redis type, beyond test_stored_data.py's strings: the turn
lease, and the list and ids index holding other collection types. Every call that touches such a
key gives ``CorruptSession`` naming the session, and the squatting key is left as it was."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from redis_sessions import AgentMessage, CorruptSession
from redis_sessions.keys import live_keys, session_keys, tokens_key
from tests.conftest import Store
from tests.support import Backend, messages_of


def test_a_lease_key_holding_a_string(store: Store, backend: Backend) -> None:
    sid = store.create()
    store.append(sid, AgentMessage.user("first", id="first"))
    lease = live_keys(backend.prefix, sid)[0]
    backend.raw.set(lease, b"squatter")
    with pytest.raises(CorruptSession) as info:
        store.lease(sid, "worker-1", 5).acquire()
    assert info.value.session_id == sid
    assert str(sid) in str(info.value)
    assert backend.raw.get(lease) == b"squatter", "not overwritten"
    # Calls that do not touch the lease are unaffected.
    assert store.append(sid, AgentMessage.user("second", id="second")) == 2


def _squat(kind: str) -> Callable[[Any, str], object]:
    def squat(raw: Any, key: str) -> object:
        raw.delete(key)
        if kind == "hash":
            return raw.hset(key, "squatter", "1")
        if kind == "set":
            return raw.sadd(key, "squatter")
        return raw.rpush(key, "squatter")

    return squat


@pytest.mark.parametrize("kind", ["hash", "set"])
def test_a_messages_key_holding_another_collection(store: Store, backend: Backend, kind: str) -> None:
    sid = store.create()
    store.extend(sid, messages_of(2))
    key = session_keys(backend.prefix, sid).messages
    _squat(kind)(backend.raw, key)
    before = backend.raw.dump(key)
    calls: dict[str, Callable[[], object]] = {
        "append": lambda: store.append(sid, AgentMessage.user("x")),
        "messages": lambda: store.messages(sid),
        "range": lambda: store.messages(sid, 0, 1),
        "load": lambda: store.load(sid),
        "next_message": lambda: store.next_message(sid, 0, timeout=0.01),
    }
    for name, call in calls.items():
        with pytest.raises(CorruptSession) as info:
            call()
        assert info.value.session_id == sid, name
    assert backend.raw.dump(key) == before, "not overwritten"


@pytest.mark.parametrize("kind", ["list", "hash"])
def test_an_ids_key_holding_another_collection(store: Store, backend: Backend, kind: str) -> None:
    sid = store.create()
    store.extend(sid, messages_of(2))
    key = session_keys(backend.prefix, sid).ids
    _squat(kind)(backend.raw, key)
    before = backend.raw.dump(key)
    with pytest.raises(CorruptSession) as info:
        store.append(sid, AgentMessage.user("x"))
    assert info.value.session_id == sid
    with pytest.raises(CorruptSession):
        store.extend(sid, messages_of(2, tag="n"))
    assert backend.raw.dump(key) == before, "not overwritten"
    assert len(store.messages(sid)) == 2, "reads do not need the ids index"


def test_a_tokens_key_holding_another_type_refuses_the_append_whole(store: Store, backend: Backend) -> None:
    sid = store.create()
    store.extend(sid, messages_of(2))
    key = tokens_key(backend.prefix, sid)
    _squat("hash")(backend.raw, key)
    before = {k: backend.raw.dump(k) for k in (*session_keys(backend.prefix, sid)[1:], key)}
    for call in (
        lambda: store.append(sid, AgentMessage.user("x")),
        lambda: store.extend(sid, messages_of(3, tag="n")),
        lambda: store.context(sid, 100),
    ):
        with pytest.raises(CorruptSession) as info:
            call()
        assert info.value.session_id == sid
    assert {k: backend.raw.dump(k) for k in before} == before, "nothing stored, nothing overwritten"
    assert store.load(sid).seq == 2  # type: ignore[union-attr]
