"""The meta hash's field order (issue 15): create.lua writes the fields every append reads first, in
the order append.lua asks for them, so a small (listpack) hash finds each after as few fields as can
be. Fields it writes that an older create left absent (tokens, max_bytes, expiry_ms) hold what their
absence means; durable and synced_seq keep their presence semantics. A session with the older
layout appends exactly as one with the new.
"""

from __future__ import annotations

from typing import Any

import pytest

from redis_sessions import AgentMessage, SessionStore
from redis_sessions.keys import session_keys, tokens_key
from redis_sessions.persistence import SQLiteAdapter
from tests.conftest import MakeStore
from tests.support import Backend

pytestmark = pytest.mark.real

HOT = [b"schema_version", b"codec", b"seq", b"ttl_ms", b"max_messages"]
OLD_ORDER = [  # what create.lua wrote before: no tokens, max_bytes or expiry_ms, the hot fields late
    b"schema_version",
    b"codec",
    b"create_token",
    b"epoch",
    b"seq",
    b"created_at",
    b"updated_at",
    b"ttl_ms",
    b"max_messages",
    b"tokens_seq",
]


@pytest.mark.parametrize("backend", [pytest.param("real", marks=pytest.mark.real)], indirect=True)
def test_create_writes_the_fields_an_append_reads_first(make_store: MakeStore, backend: Backend) -> None:
    store = make_store(ttl=60)
    sid = store.create(model="m", metadata={"k": "v"})
    meta = session_keys(backend.prefix, sid).meta
    assert backend.raw.object("encoding", meta) == b"listpack"  # a flat list: order is lookup cost
    fields = backend.raw.hkeys(meta)
    assert fields[:10] == [*HOT, b"tokens", b"tokens_seq", b"max_bytes", b"expiry_ms", b"updated_at"]
    assert backend.raw.hmget(meta, "tokens", "max_bytes", "expiry_ms") == [b"0", b"0", b"0"]
    assert b"durable" not in fields
    assert b"synced_seq" not in fields
    session = store.load(sid)  # max_bytes 0 reads as no byte limit, as its absence did
    assert session is not None
    assert (session.seq, session.max_session_bytes, session.ttl_ms) == (0, 0, 60_000)
    assert (session.model, session.metadata) == ("m", {"k": "v"})


def test_a_durable_session_gets_durable_early_and_no_byte_limit_or_deadline(
    plain_redis: Any, database: SQLiteAdapter
) -> None:
    with SessionStore.from_url(plain_redis.url, prefix="lay", ttl=60, backing=database) as store:
        sid = store.create(model="m")
        meta = session_keys("lay", sid).meta
        fields = store.client.hkeys(meta)
        assert fields[:8] == [*HOT, b"durable", b"tokens", b"tokens_seq"]
        assert not {b"max_bytes", b"expiry_ms", b"synced_seq"} & set(fields)
        store.append(sid, AgentMessage.user("hello"))
        assert store.client.hget(meta, "synced_seq") is None  # written by the sync worker only


def _old_layout(raw: Any, meta: str) -> None:
    """Rewrite ``meta`` as an older create.lua left it: its order, and no tokens, max_bytes (unless
    the session has a byte limit) or expiry_ms."""
    fields = raw.hgetall(meta)
    zeros = (b"tokens", b"max_bytes", b"expiry_ms")
    rest = {k: v for k, v in fields.items() if k not in OLD_ORDER and not (k in zeros and v == b"0")}
    pttl = raw.pttl(meta)
    raw.delete(meta)
    raw.hset(meta, mapping={**{k: fields[k] for k in OLD_ORDER}, **rest})
    if pttl > 0:
        raw.pexpire(meta, pttl)
    assert raw.hkeys(meta)[:3] == [b"schema_version", b"codec", b"create_token"]


@pytest.mark.parametrize("backend", [pytest.param("real", marks=pytest.mark.real)], indirect=True)
@pytest.mark.parametrize("options", [{}, {"ttl": 60, "max_messages": 3}, {"max_session_bytes": 10_000}])
def test_a_session_with_the_older_layout_appends_as_a_new_one(
    make_store: MakeStore, backend: Backend, options: dict[str, Any]
) -> None:
    store = make_store(**options)
    new, old = store.create(model="m"), store.create(model="m")
    _old_layout(backend.raw, session_keys(backend.prefix, old).meta)
    for n in range(5):
        for sid in (new, old):
            message = AgentMessage.user(f"message {n}", id=f"m{n}")
            assert store.append(sid, message) == n + 1
            assert store.append(sid, message) == n + 1  # a replay
    for sid in (new, old):  # a batch with one message stored already (m4): the general path
        batch = [AgentMessage.user("message 4", id="m4"), AgentMessage.user("a", id="a")]
        assert store.extend(sid, [*batch, AgentMessage.user("b", id="b")]) == 7
    compared = ("seq", "tokens", "tokens_seq", "bytes", "bytes_seq", "replays")
    metas = [backend.raw.hmget(session_keys(backend.prefix, sid).meta, *compared) for sid in (new, old)]
    assert metas[0] == metas[1]
    assert metas[0][0] == b"7"
    lists = [backend.raw.lrange(tokens_key(backend.prefix, sid), 0, -1) for sid in (new, old)]
    assert lists[0] == lists[1]
    assert len(lists[0]) == (3 if options.get("max_messages") else 7)
    loaded = [store.load(sid) for sid in (new, old)]
    assert loaded[0] is not None
    assert loaded[1] is not None
    assert [m.id for m in loaded[0].messages] == [m.id for m in loaded[1].messages]
    assert loaded[0].messages[-1].id == "b"
    if options.get("ttl"):
        for sid in (new, old):
            keys = (*session_keys(backend.prefix, sid), tokens_key(backend.prefix, sid))
            assert all(0 < backend.raw.pttl(key) <= 61_000 for key in keys)
