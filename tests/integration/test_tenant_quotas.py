"""``tenant_quota``: limits on the sessions and bytes of a whole prefix (its tenant), counted in a
ledger per cluster slot (one on a single server) by the scripts that change a session's bytes or
existence. Refusals store nothing; expired sessions stop counting; ``tenant_usage`` sums the ledgers.
Every test runs on the backend table (fakeredis, real, cluster) x fronts."""

from __future__ import annotations

import os
import threading
import time
from typing import Any

import pytest

from redis_sessions import AgentMessage, SessionStore, TenantQuota, TenantQuotaExceeded
from redis_sessions.encryption import Encryption
from redis_sessions.keys import session_keys, tenant_keys
from redis_sessions.migrate import rekey_redis
from tests.conftest import MakeStore, Store
from tests.support import Backend


def session_dump(backend: Backend) -> dict[bytes, bytes | None]:
    """Every key of the prefix but the ledgers' (whose allowance a refusal may move: bookkeeping)."""
    return {k: v for k, v in backend.dump().items() if b":tenant" not in k}


def held(backend: Backend, store: Store) -> tuple[int, int]:
    """The sessions of the prefix and the bytes of their stored bodies, counted from Redis itself."""
    sids = list(store.list())
    total = sum(
        len(b) for sid in sids for b in backend.raw.lrange(session_keys(backend.prefix, sid).messages, 0, -1)
    )
    return len(sids), total


def counted(store: Store) -> tuple[int, int]:
    usage = store.tenant_usage()
    return usage.sessions, usage.bytes


def test_a_create_past_max_sessions_is_refused_and_stores_nothing(
    make_store: MakeStore, backend: Backend
) -> None:
    store = make_store(tenant_quota=TenantQuota(max_sessions=3))
    sids = [store.create() for _ in range(3)]
    before = session_dump(backend)
    with pytest.raises(TenantQuotaExceeded) as caught:
        store.create()
    error = caught.value
    assert (error.tenant, error.limit, error.quota, error.usage, error.size) == (
        backend.prefix,
        "max_sessions",
        3,
        3,
        4,
    )
    assert backend.prefix in str(error)
    assert str(error.session_id) in str(error)
    assert session_dump(backend) == before, "nothing of the refused create is stored"
    assert counted(store) == (3, 0)
    store.delete(sids[0])  # room again (on a cluster, taken back from the deleted session's slot)
    store.create()
    assert counted(store) == held(backend, store) == (3, 0)
    usage = store.tenant_usage()
    assert (usage.max_sessions, usage.max_bytes) == (3, None)
    if backend.cluster:
        assert usage.granted_sessions is not None
        assert usage.sessions <= usage.granted_sessions <= 3


def test_an_append_past_max_bytes_is_refused_and_a_replay_is_still_answered(
    make_store: MakeStore, backend: Backend
) -> None:
    store = make_store(tenant_quota=TenantQuota(max_bytes=600))
    first, second = store.create(), store.create()
    store.append(first, AgentMessage.user("a" * 200, id="a"))
    store.append(second, AgentMessage.user("b" * 200, id="b"))
    before = session_dump(backend)
    with pytest.raises(TenantQuotaExceeded) as caught:
        store.extend(first, [AgentMessage.user("c", id="c"), AgentMessage.user("d" * 300, id="d")])
    error = caught.value
    assert (error.session_id, error.limit, error.quota) == (first, "max_bytes", 600)
    assert error.size > 600 >= error.usage
    assert session_dump(backend) == before, "nothing of the refused append is stored"
    assert store.append(first, AgentMessage.user("a" * 200, id="a")) == 1, "a replay at the limit is answered"
    assert store.append(first, AgentMessage.user("c", id="c")) == 2, "the refused ids were not taken"
    assert counted(store) == held(backend, store)


def test_expired_sessions_stop_counting(make_store: MakeStore, backend: Backend) -> None:
    quota = TenantQuota(max_sessions=1, max_bytes=10_000)
    store = make_store(tenant_quota=quota, ttl=0.3)
    sid = store.create()
    store.append(sid, AgentMessage.user("short-lived"))
    ledger, live = tenant_keys(backend.prefix, sid, backend.cluster)
    assert backend.raw.zscore(live, str(sid)) is not None, "counted while it lives"
    meta = session_keys(backend.prefix, sid).meta
    deadline = time.monotonic() + 10
    while backend.raw.exists(meta):  # the real condition: Redis expired the session
        assert time.monotonic() < deadline, "the session did not expire"
        time.sleep(0.05)
    assert backend.raw.zscore(live, str(sid)) is not None, "still in the ledger: nothing swept yet"
    lasting = make_store(tenant_quota=quota)  # no ttl
    lasting.create()  # the ledger is full: the create's ask for room sweeps the expired session out
    assert backend.raw.zscore(live, str(sid)) is None
    assert backend.raw.hget(ledger, str(sid)) is None
    assert counted(store) == held(backend, store) == (1, 0)


def test_a_session_alive_past_its_recorded_deadline_still_counts(
    make_store: MakeStore, backend: Backend
) -> None:
    # Appends push a TTL back without moving the ledger's deadline (a lower bound): a session kept
    # alive passes it. Its deadline is set in the past here rather than waited for.
    store = make_store(tenant_quota=TenantQuota(max_sessions=1), ttl=60)
    sid = store.create()
    store.append(sid, AgentMessage.user("still here"))
    live = tenant_keys(backend.prefix, sid, backend.cluster)[1]
    backend.raw.zadd(live, {str(sid): 1})  # 1 ms after the epoch: long past
    with pytest.raises(TenantQuotaExceeded):  # the sweep finds it alive: it keeps counting
        store.create()
    assert counted(store)[0] == 1
    assert backend.raw.zscore(live, str(sid)) > time.time() * 1000, (
        "the sweep moved its deadline to its TTL's end"
    )


def test_every_change_of_bytes_or_existence_keeps_the_ledgers_right(
    make_store: MakeStore, backend: Backend
) -> None:
    store = make_store(tenant_quota=TenantQuota(max_sessions=50, max_bytes=1_000_000), max_messages=4)

    def check() -> None:  # each session's own record in its slot's ledger (cheap on a cluster too)
        for sid in store.list():
            ledger, live = tenant_keys(backend.prefix, sid, backend.cluster)
            stored = sum(
                len(b) for b in backend.raw.lrange(session_keys(backend.prefix, sid).messages, 0, -1)
            )
            assert int(backend.raw.hget(ledger, str(sid))) == stored
            assert backend.raw.zscore(live, str(sid)) is not None

    sid = store.create()
    check()
    for i in range(6):  # the last two trim the oldest
        store.append(sid, AgentMessage.user("m" * (10 * i), id=f"m{i}"))
        check()
    store.extend(sid, [AgentMessage.user("x", id="x1"), AgentMessage.user("y" * 30, id="x2")])
    check()
    with store.tool_call(sid, "toolu_1") as call:
        call.complete("result " * 5)
    check()
    reply = store.stream(sid, message_id="r1")
    reply.write("draft")
    reply.finish(AgentMessage.assistant("final answer"))
    check()
    store.pop(sid)
    check()
    fork = store.fork(sid)
    check()
    session = store.load(sid)
    assert session is not None
    store.import_state(sid, session.to_state(), replace=True)
    check()
    other = store.create()
    store.import_state(other, session.to_state(), replace=True)
    check()
    store.summarize(fork, "a summary", through_seq=store.load(fork).seq, trim=True)  # type: ignore[union-attr]
    check()
    assert counted(store) == held(backend, store)
    store.delete(fork)
    store.delete(sid)
    assert counted(store) == held(backend, store)
    assert counted(store)[0] == 1


def test_sessions_made_before_the_limits_are_counted_from_their_list(
    make_store: MakeStore, backend: Backend
) -> None:
    plain = make_store()
    old = plain.create()
    plain.append(old, AgentMessage.user("o" * 120))
    store = make_store(tenant_quota=TenantQuota(max_bytes=100_000))
    store.append(old, AgentMessage.user("new"))
    assert counted(store) == held(backend, store) == (1, held(backend, store)[1])


def test_a_fork_past_max_sessions_is_refused(make_store: MakeStore, backend: Backend) -> None:
    store = make_store(tenant_quota=TenantQuota(max_sessions=1))
    sid = store.create()
    store.append(sid, AgentMessage.user("hi"))
    with pytest.raises(TenantQuotaExceeded):
        store.fork(sid)
    assert counted(store) == held(backend, store) == (1, held(backend, store)[1])


def test_a_store_without_limits_keeps_no_ledger(make_store: MakeStore, backend: Backend) -> None:
    store = make_store()
    store.append(store.create(), AgentMessage.user("hi"))
    assert not [k for k in backend.stored_keys() if b":tenant" in k]


def test_tool_results_and_reply_finishes_are_refused_past_max_bytes(
    make_store: MakeStore, backend: Backend
) -> None:
    store = make_store(tenant_quota=TenantQuota(max_bytes=300))
    sid = store.create()
    with pytest.raises(TenantQuotaExceeded), store.tool_call(sid, "toolu_1") as call:
        call.complete("r" * 400)
    reply = store.stream(sid, message_id="r1")
    with pytest.raises(TenantQuotaExceeded):
        reply.finish(AgentMessage.assistant("f" * 400))
    assert backend.raw.llen(session_keys(backend.prefix, sid).messages) == 0
    assert reply.finish(AgentMessage.assistant("short")) == 1
    assert counted(store) == held(backend, store)


def test_migrate_rekey_moves_the_ledger_with_the_bodies(backend: Backend) -> None:
    quota = TenantQuota(max_bytes=1_000_000)
    k1, k2 = os.urandom(32), os.urandom(32)
    old = Encryption({"k1": k1}, current="k1")
    new = Encryption({"k1": k1, "a-much-longer-key-id": k2}, current="a-much-longer-key-id")  # longer bodies
    with SessionStore(
        backend.sync_client(), prefix=backend.prefix, tenant_quota=quota, encryption=old
    ) as store:
        sid = store.create()
        store.extend(sid, [AgentMessage.user(f"secret {i}") for i in range(3)])
        before = store.tenant_usage().bytes
    with SessionStore(
        backend.sync_client(), prefix=backend.prefix, tenant_quota=quota, encryption=new
    ) as store:
        assert rekey_redis(store).upgraded == 1
        usage = store.tenant_usage()
        assert usage.bytes > before
        assert (usage.sessions, usage.bytes) == held(backend, store)


def test_concurrent_creators_never_pass_the_limit(backend: Backend) -> None:
    quota = TenantQuota(max_sessions=6, max_bytes=1_500)
    made: list[Any] = []
    refused: list[TenantQuotaExceeded] = []
    lock = threading.Lock()

    def worker() -> None:
        with SessionStore(backend.sync_client(), prefix=backend.prefix, tenant_quota=quota) as store:
            for _ in range(4):
                try:
                    sid = store.create()
                    store.append(sid, AgentMessage.user("w" * 300))  # ~330 bytes: the fifth passes max_bytes
                except TenantQuotaExceeded as exc:
                    with lock:
                        refused.append(exc)
                else:
                    with lock:
                        made.append(sid)

    threads = [threading.Thread(target=worker) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    with SessionStore(backend.sync_client(), prefix=backend.prefix, tenant_quota=quota) as store:
        usage = store.tenant_usage()
        sessions, stored = held(backend, store)
    body = len(backend.raw.lindex(session_keys(backend.prefix, made[0]).messages, 0))
    assert len(refused) >= 10, "16 creates against a limit of 6"
    assert (usage.sessions, usage.bytes) == (sessions, stored)
    assert sessions <= 6, "never past max_sessions"
    assert stored <= 1_500, "never past max_bytes"
    if not backend.cluster:  # one ledger, an exact check: the limits are reached, not just respected
        assert sessions == 6
        assert stored > 1_500 - body
    else:  # what the slots were granted bounds the usage, and never passes the limits either
        assert usage.granted_sessions is not None
        assert usage.granted_bytes is not None
        assert sessions <= usage.granted_sessions <= 6
        assert stored <= usage.granted_bytes <= 1_500
