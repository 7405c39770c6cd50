"""What only a cluster can show: sessions spread over the primaries, a session stays in one slot,
and the WAIT knob counts real replicas. (The whole public API also runs on the cluster backend.)"""

from __future__ import annotations

import asyncio
import uuid

import pytest
import redis
import redis.asyncio.cluster
import redis.cluster
from redis.crc import key_slot

from redis_sessions import AgentMessage, AsyncSessionStore, NotReplicated, SessionStore
from redis_sessions.keys import live_keys, session_keys
from tests.conftest import MakeStore
from tests.support import Backend, ids, messages_of

CLUSTER = [pytest.param("cluster", marks=[pytest.mark.real, pytest.mark.cluster])]
REAL_AND_CLUSTER = [
    pytest.param("real", marks=pytest.mark.real),
    pytest.param("cluster", marks=[pytest.mark.real, pytest.mark.cluster]),
]


def reply_count(reply: object) -> int:
    """The subscriber count in a PUBSUB SHARDNUMSUB reply, flat ``[ch, n]`` or parsed ``[(ch, n)]``."""
    flat = [x for pair in reply for x in (pair if isinstance(pair, tuple) else (pair,))]  # type: ignore[attr-defined]
    return int(flat[1])


def session_key_names(prefix: str, sid: uuid.UUID) -> list[str]:
    return [*session_keys(prefix, sid), *live_keys(prefix, sid)]


@pytest.mark.parametrize("backend", CLUSTER, indirect=True)
def test_sessions_spread_over_every_primary_and_each_stays_in_one_slot(
    make_store: MakeStore, backend: Backend
) -> None:
    store = make_store()
    raw: redis.cluster.RedisCluster = backend.raw
    sids = [store.create() for _ in range(30)]
    for sid in sids:
        store.extend(sid, messages_of(3))
        store.lease(sid, "owner", ttl=30).acquire()  # the lease hash exists too

    owners = {}
    for sid in sids:
        names = session_key_names(backend.prefix, sid)
        assert len({key_slot(name.encode()) for name in names}) == 1, f"{sid}: keys in several slots"
        node = raw.get_node_from_key(names[0])
        owners[sid] = node.name
        # Ask the owning node itself, bypassing the cluster client's routing: the data is there.
        direct = redis.Redis(host=node.host, port=node.port)
        try:
            assert direct.exists(*session_keys(backend.prefix, sid), live_keys(backend.prefix, sid)[0]) == 4
            assert direct.llen(session_keys(backend.prefix, sid).messages) == 3
        finally:
            direct.close()

    primaries = {node.name for node in raw.get_primaries()}
    assert set(owners.values()) == primaries, "30 sessions should land on all three primaries"
    assert set(store.list()) == set(sids), "list() must scan every primary"


@pytest.mark.parametrize("backend", CLUSTER, indirect=True)
def test_wait_for_a_replica_on_a_cluster(make_store: MakeStore) -> None:
    store = make_store(wait_replicas=1, wait_timeout=2.0)
    sid = store.create()
    assert store.append(sid, AgentMessage.user("kept", id="a")) == 1
    assert store.extend(sid, messages_of(3)) == 4
    assert ids(store.messages(sid)) == ["a", *ids(messages_of(3))]


@pytest.mark.parametrize("backend", REAL_AND_CLUSTER, indirect=True)
def test_too_few_replicas_is_a_typed_error_and_the_write_stands(
    make_store: MakeStore, backend: Backend
) -> None:
    # The standalone server has no replica and each cluster primary has one: ask for one more.
    wanting = 2 if backend.cluster else 1
    store = make_store(wait_replicas=wanting, wait_timeout=0.05)
    plain = make_store()
    sid = plain.create()
    message = AgentMessage.user("written, not confirmed", id="m")
    with pytest.raises(NotReplicated) as info:
        store.append(sid, message)
    assert info.value.session_id == sid
    assert str(sid) in str(info.value)
    assert info.value.required == wanting
    assert info.value.acknowledged == wanting - 1
    assert ids(plain.messages(sid)) == ["m"], "the write is not undone"
    with pytest.raises(NotReplicated):  # sending it again waits again, and stores nothing twice
        store.append(sid, message)
    assert ids(plain.messages(sid)) == ["m"]
    assert plain.load(sid).seq == 1  # type: ignore[union-attr]


def test_wait_replicas_is_checked() -> None:
    client = redis.Redis()
    try:
        with pytest.raises(ValueError, match="wait_replicas"):
            SessionStore(client, wait_replicas=-1)
        with pytest.raises(ValueError, match="wait_replicas"):
            AsyncSessionStore(redis.asyncio.Redis(), wait_replicas="1")  # type: ignore[arg-type]
    finally:
        client.close()


@pytest.mark.parametrize("backend", CLUSTER, indirect=True)
def test_watch_is_notified_across_the_cluster(backend: Backend) -> None:
    async def scenario() -> list[str]:
        async with (
            AsyncSessionStore.from_cluster(backend.url or "", prefix=backend.prefix) as watcher,
            AsyncSessionStore.from_cluster(backend.url or "", prefix=backend.prefix) as writer,
        ):
            sid = await writer.create()
            seen: list[str] = []
            subscribed = asyncio.Event()

            async def watch() -> None:
                async for item in watcher.watch(sid, timeout=10, poll_interval=30):
                    seen.append(item.message.id)
                    if len(seen) == 3:
                        return

            task = asyncio.create_task(watch())
            # poll_interval=30: only a sharded notification can deliver these within the test's time.
            deadline = asyncio.get_running_loop().time() + 10
            channel = live_keys(backend.prefix, sid)[1]
            client = writer.client
            assert isinstance(client, redis.asyncio.cluster.RedisCluster)
            node = client.get_node_from_key(channel)
            assert node is not None
            # Asked of the shard's node directly: redis-py 8.2's cluster client misparses this reply.
            shard = redis.Redis(host=node.host, port=int(node.port))
            while not subscribed.is_set() and asyncio.get_running_loop().time() < deadline:
                reply = shard.execute_command("PUBSUB", "SHARDNUMSUB", channel)  # type: ignore[no-untyped-call]
                if reply_count(reply) > 0:
                    subscribed.set()
                else:
                    await asyncio.sleep(0.01)
            shard.close()
            assert subscribed.is_set(), "the watcher never subscribed on the session's shard"
            for message in messages_of(3):
                await writer.append(sid, message)
            await asyncio.wait_for(task, 10)
            return seen

    assert asyncio.run(scenario()) == ids(messages_of(3))
