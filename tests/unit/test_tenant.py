"""``TenantQuota`` and the ledger keys, before any I/O: bad limits are refused when the store is
made, and only a store with limits passes a ledger to its scripts (the others pay nothing)."""

from __future__ import annotations

import uuid
from typing import Any

import fakeredis
import pytest
from redis.crc import key_slot

from redis_sessions import AgentMessage, SessionStore, TenantQuota
from redis_sessions import _write as write
from redis_sessions.config import StoreConfig
from redis_sessions.errors import InvalidArgument
from redis_sessions.keys import slot, tenant_central, tenant_keys, tenant_ledgers

SID = uuid.UUID("0b7c0f6e-8f4f-4a8e-9d51-0d2b8f1b2c3d")


@pytest.mark.parametrize(
    "options",
    [
        {"max_sessions": -1},
        {"max_bytes": -5},
        {"max_sessions": 1.5},
        {"max_bytes": "10"},
        {"max_sessions": True},
    ],
    ids=repr,
)
def test_bad_limits_are_refused(options: dict[str, Any]) -> None:
    with pytest.raises(InvalidArgument, match=next(iter(options))):
        TenantQuota(**options)


def test_a_tenant_quota_must_be_a_tenant_quota() -> None:
    with pytest.raises(InvalidArgument, match="tenant_quota"):
        SessionStore(fakeredis.FakeRedis(), tenant_quota={"max_sessions": 3})  # type: ignore[arg-type]


def test_limits_as_the_scripts_take_them() -> None:
    assert TenantQuota(max_sessions=3).limits() == (3, -1)
    assert TenantQuota(max_bytes=0).limits() == (-1, 0)


def test_only_a_store_with_limits_passes_a_ledger() -> None:
    plain = StoreConfig().core(cluster=False)
    limited = StoreConfig(tenant_quota=TenantQuota(max_sessions=5)).core(cluster=False)
    message = AgentMessage.user("hi", id="a")
    assert len(write.extend(plain, SID, [message], None).keys) == 7
    keys = write.extend(limited, SID, [message], None).keys
    assert keys[7:] == tenant_keys("rs", SID, False) == ("rs:tenant", "rs:tenant:live")
    assert write.create(plain, "", 0, None, None, SID).keys[-1].endswith(":tokens")
    assert write.create(limited, "", 0, None, None, SID).keys[-2:] == tenant_keys("rs", SID, False)


def test_on_a_cluster_each_slot_has_its_ledger_in_that_slot() -> None:
    ledger, live = tenant_keys("rs", SID, True)
    assert live == ledger + ":live"
    assert key_slot(ledger.encode()) == key_slot(live.encode()) == slot(SID)
    assert len(tenant_ledgers("rs", True)) == 16384
    assert len(tenant_ledgers("rs", False)) == 1
    assert tenant_central("rs") == "rs:{rs:tenant}:granted"
