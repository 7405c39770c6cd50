"""``encryption=``: every stored message AES-256-GCM sealed, in Redis and in the backing record.

Round trips through every read (cold, cached, ranges, load, pop, watch, tool calls), no plaintext
in Redis, keys that rotate without rewriting history, messages written before encryption still
reading, a typed error naming session, position, message and key ids for a missing key, a wrong key
or a body moved to another session, metadata readable without keys, per-tenant keys from a
callable, and the durable record holding ciphertext through write-behind, read-through and ``save``.
Real server (both fronts); the tiered tests on the real server.
"""

from __future__ import annotations

import asyncio
import os
import sqlite3
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from redis_sessions import AgentMessage, AsyncSessionStore, SessionStore, ToolResult
from redis_sessions.encryption import Encryption
from redis_sessions.errors import DecryptionError
from redis_sessions.keys import session_keys
from redis_sessions.persistence import AsyncSQLiteAdapter, SQLiteAdapter
from tests.conftest import MakeStore
from tests.integration.durable_support import flush
from tests.support import AsyncAdapter, Backend, ids

REAL = [pytest.param("real", marks=pytest.mark.real)]
REAL_AND_CLUSTER = [*REAL, pytest.param("cluster", marks=[pytest.mark.real, pytest.mark.cluster])]

K1, K2 = os.urandom(32), os.urandom(32)
SECRET = "the patient's diagnosis"


def keyring(*ids_: str, current: str) -> Encryption:
    keys = {"k1": K1, "k2": K2}
    return Encryption({key_id: keys[key_id] for key_id in ids_}, current=current)


def stored(backend: Backend, sid: uuid.UUID) -> list[bytes]:
    return list(backend.raw.lrange(session_keys(backend.prefix, sid).messages, 0, -1))


@pytest.mark.parametrize("backend", REAL_AND_CLUSTER, indirect=True)
def test_messages_are_sealed_in_redis_and_read_back_by_every_read(
    make_store: MakeStore, backend: Backend
) -> None:
    store = make_store(encryption=keyring("k1", current="k1"))
    sid = store.create("m", metadata={"team": "a"})
    sent = [AgentMessage.user(f"{SECRET} {i}") for i in range(3)]
    store.extend(sid, sent[:2])
    store.append(sid, sent[2])
    items = stored(backend, sid)
    assert all(item.startswith(b"\xc1\x01\x02k1") for item in items)
    assert not any(SECRET.encode() in item for item in items)
    assert store.messages(sid) == sent  # cold (the first full read fills the cache)
    assert store.messages(sid) == sent  # warm
    assert store.messages(sid, 1, 2) == sent[1:2]
    loaded = store.load(sid)
    assert loaded is not None
    assert loaded.messages == sent
    cold = make_store(encryption=keyring("k1", current="k1"), cache_messages=0)
    assert cold.messages(sid, -2) == sent[1:]
    assert cold.pop(sid) == sent[2]
    # Metadata, configuration and seq stay readable without any key: ls, info, stats work.
    plain = make_store()
    info = plain.info(sid)
    assert info is not None
    assert (info.model, info.messages, info.seq) == ("m", 2, 2)
    assert plain.exists(sid)
    assert list(plain.list()) == [sid]


@pytest.mark.parametrize("backend", REAL_AND_CLUSTER, indirect=True)
def test_a_tool_result_and_a_watched_message_are_sealed_too(make_store: MakeStore, backend: Backend) -> None:
    store = make_store(encryption=keyring("k1", current="k1"))
    sid = store.create()
    with store.tool_call(sid, "call_1") as call:
        call.complete(SECRET)
    assert not any(SECRET.encode() in item for item in stored(backend, sid))
    with make_store(encryption=keyring("k1", current="k1")).tool_call(sid, "call_1") as again:
        assert again.done
        assert again.result == ToolResult("call_1", SECRET)
    store.append(sid, AgentMessage.user(SECRET, id="w"))
    seen = store.next_message(sid, 1, timeout=5)
    assert seen is not None
    assert seen.message == AgentMessage.user(SECRET, id="w")


@pytest.mark.parametrize("backend", REAL_AND_CLUSTER, indirect=True)
def test_keys_rotate_without_rewriting_history(make_store: MakeStore, backend: Backend) -> None:
    old = make_store(encryption=keyring("k1", current="k1"))
    sid = old.create()
    old.append(sid, AgentMessage.user("under k1", id="a"))
    new = make_store(encryption=keyring("k1", "k2", current="k2"))
    new.append(sid, AgentMessage.user("under k2", id="b"))
    assert [item[3:5] for item in stored(backend, sid)] == [b"k1", b"k2"]
    assert ids(new.messages(sid)) == ["a", "b"]
    with pytest.raises(DecryptionError) as missing:
        make_store(encryption=keyring("k1", current="k1"), cache_messages=0).messages(sid)
    error = missing.value
    assert (error.session_id, error.position, error.message_id, error.key_id) == (sid, 1, "b", "k2")
    assert str(sid) in str(error)
    assert "'k2'" in str(error)
    assert "no such key" in str(error)


@pytest.mark.parametrize("backend", REAL_AND_CLUSTER, indirect=True)
def test_messages_from_before_encryption_still_read(make_store: MakeStore) -> None:
    plain = make_store()
    sid = plain.create()
    plain.append(sid, AgentMessage.user("plain", id="p"))
    sealed = make_store(encryption=keyring("k1", current="k1"))
    sealed.append(sid, AgentMessage.user("sealed", id="s"))
    assert ids(sealed.messages(sid)) == ["p", "s"]
    with pytest.raises(DecryptionError, match="no encryption= keyring") as refused:
        make_store(cache_messages=0).messages(sid)
    assert (refused.value.position, refused.value.key_id) == (1, "k1")
    assert ids(make_store(cache_messages=0).messages(sid, 0, 1)) == ["p"]  # a range avoiding it reads


@pytest.mark.parametrize("backend", REAL_AND_CLUSTER, indirect=True)
def test_a_wrong_key_or_a_moved_body_never_reads_as_garbage(make_store: MakeStore, backend: Backend) -> None:
    store = make_store(encryption=keyring("k1", current="k1"))
    sid, other = store.create(), store.create()
    store.append(sid, AgentMessage.user(SECRET, id="x"))
    (item,) = stored(backend, sid)
    impostor = make_store(encryption=Encryption({"k1": K2}, current="k1"), cache_messages=0)
    with pytest.raises(DecryptionError, match="wrong key, or altered bytes"):
        impostor.messages(sid)
    backend.raw.rpush(session_keys(backend.prefix, other).messages, item)  # into another session
    with pytest.raises(DecryptionError) as moved:
        make_store(encryption=keyring("k1", current="k1"), cache_messages=0).messages(other)
    assert (moved.value.session_id, moved.value.position, moved.value.message_id) == (other, 0, "x")
    relabelled = item.replace(b"\x00\x01x", b"\x00\x01y", 1)  # under another message's id
    backend.raw.lset(session_keys(backend.prefix, sid).messages, 0, relabelled)
    with pytest.raises(DecryptionError, match="'y'"):
        make_store(encryption=keyring("k1", current="k1"), cache_messages=0).messages(sid)


@pytest.mark.parametrize("backend", REAL_AND_CLUSTER, indirect=True)
def test_per_tenant_keys_from_a_callable(make_store: MakeStore) -> None:
    tenants: dict[uuid.UUID, str] = {}
    kms = {"acme-1": K1, "globex-1": K2}
    asked: list[tuple[uuid.UUID, str | None]] = []

    def per_tenant(sid: uuid.UUID, key_id: str | None) -> tuple[str, bytes]:
        asked.append((sid, key_id))
        key_id = key_id or f"{tenants[sid]}-1"
        return key_id, kms[key_id]

    store = make_store(encryption=Encryption(keyring=per_tenant))
    acme, globex = store.create(), store.create()
    tenants.update({acme: "acme", globex: "globex"})
    store.append(acme, AgentMessage.user("a", id="a"))
    store.append(globex, AgentMessage.user("g", id="g"))
    reader = make_store(encryption=Encryption(keyring=per_tenant), cache_messages=0)
    assert ids(reader.messages(acme)) == ["a"]
    assert ids(reader.messages(globex)) == ["g"]
    assert (acme, "acme-1") in asked
    assert (globex, "globex-1") in asked


@pytest.mark.parametrize("backend", REAL_AND_CLUSTER, indirect=True)
def test_an_import_under_another_id_is_sealed_for_it(make_store: MakeStore, backend: Backend) -> None:
    store = make_store(encryption=keyring("k1", current="k1"))
    sid = store.create("m")
    store.extend(sid, [AgentMessage.user(SECRET, id="a"), AgentMessage.assistant("ok", id="b")])
    loaded = store.load(sid)
    assert loaded is not None
    fork = uuid.uuid4()
    assert store.import_state(fork, loaded.to_state())
    assert not any(SECRET.encode() in item for item in stored(backend, fork))
    assert (
        make_store(encryption=keyring("k1", current="k1"), cache_messages=0).messages(fork) == loaded.messages
    )


@pytest.fixture
def database(tmp_path: Path) -> Iterator[SQLiteAdapter]:
    adapter = SQLiteAdapter(tmp_path / "record.sqlite3")
    yield adapter
    adapter.close()


@pytest.mark.parametrize("backend", REAL, indirect=True)
@pytest.mark.parametrize("front", ["sync", "async"])
def test_the_durable_record_holds_ciphertext_and_reads_through(
    backend: Backend, front: str, database: SQLiteAdapter, tmp_path: Path
) -> None:
    runner = asyncio.Runner()
    assert backend.url is not None
    options: dict[str, Any] = {"prefix": backend.prefix, "backing": database}
    sealing = keyring("k1", current="k1")
    made: list[Any] = []

    def open_store(**more: Any) -> Any:
        if front == "sync":
            store: Any = SessionStore.from_url(backend.url or "", **options, **more)
        else:
            store = AsyncAdapter(AsyncSessionStore.from_url(backend.url or "", **options, **more), runner)
        made.append(store)
        return store

    try:
        store = open_store(encryption=sealing)
        sid = store.create("m")
        sent = [AgentMessage.user(f"{SECRET} {i}") for i in range(3)]
        store.extend(sid, sent)
        store.summarize(sid, f"{SECRET}: summary", through_seq=1)
        flush(store)
        with sqlite3.connect(tmp_path / "record.sqlite3") as db:
            dumped = "\n".join(db.iterdump())
        assert SECRET not in dumped, "the record holds ciphertext only (the summary too)"
        backend.raw.delete(*session_keys(backend.prefix, sid))  # Redis lost it
        assert open_store(encryption=sealing).messages(sid) == sent  # read through, then opened
        assert open_store(encryption=sealing).context(sid, 1_000).summary.text == f"{SECRET}: summary"
        assert all(item.startswith(b"\xc1") for item in stored(backend, sid))
        with pytest.raises(DecryptionError):
            open_store(cache_messages=0).messages(sid)
        path = tmp_path / "saved.sqlite3"
        saved: Any = SQLiteAdapter(path) if front == "sync" else AsyncSQLiteAdapter(path)
        assert store.save(sid, saved)
        saved.close() if front == "sync" else runner.run(saved.aclose())
        with sqlite3.connect(path) as db:
            assert SECRET not in "\n".join(db.iterdump()), "save() writes ciphertext too"
    finally:
        for store in made:
            store.close()
        runner.close()


@pytest.mark.parametrize("backend", REAL_AND_CLUSTER, indirect=True)
def test_a_fork_and_a_summary_are_sealed_for_their_session(make_store: MakeStore, backend: Backend) -> None:
    store = make_store(encryption=keyring("k1", current="k1"))
    sid = store.create("m")
    store.extend(sid, [AgentMessage.user(SECRET, id="a"), AgentMessage.assistant("ok", id="b")])
    store.summarize(sid, SECRET + " (summary)", through_seq=1)
    assert SECRET.encode() not in backend.raw.hget(session_keys(backend.prefix, sid).meta, "summary")
    fork = store.fork(sid)
    assert not any(SECRET.encode() in item for item in stored(backend, fork))
    reader = make_store(encryption=keyring("k1", current="k1"), cache_messages=0)
    assert reader.messages(fork) == store.messages(sid)
    window = reader.context(fork, 1_000)
    assert window.summary is not None
    assert window.summary.text == SECRET + " (summary)"
