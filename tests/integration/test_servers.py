"""The real-server deployments of ``tests/servers.py`` do what the failover tests will rely on.

A Redis Cluster of three primaries with one replica each, serving every slot, that a
``RedisCluster`` client can use and whose roles move on ``CLUSTER FAILOVER`` and on a killed
primary; and a Sentinel deployment whose sentinels name the primary and, after it is killed, the
promoted replica, which a ``Sentinel.master_for`` client can write to. Real processes throughout;
one cluster is shared by the module, and each test leaves it healthy with all six nodes running.
"""

from __future__ import annotations

import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any, cast

import pytest
import redis
import redis.cluster
import redis.sentinel

from tests.servers import (
    CLUSTER_SLOTS,
    HOST,
    RedisClusterServers,
    RedisSentinelServers,
    require_redis_binaries,
)

pytestmark = pytest.mark.real


@pytest.fixture(scope="module")
def cluster_servers() -> Iterator[RedisClusterServers]:
    require_redis_binaries()
    with RedisClusterServers() as servers:
        yield servers


@pytest.fixture
def cluster(cluster_servers: RedisClusterServers) -> RedisClusterServers:
    """The module's cluster, with any node a failed test left killed restarted, and healthy."""
    for port in cluster_servers.ports:
        if not cluster_servers.is_alive(port):
            cluster_servers.restart(port)
    cluster_servers.wait_healthy()
    return cluster_servers


@pytest.fixture
def cluster_client(cluster: RedisClusterServers) -> Iterator[redis.cluster.RedisCluster]:
    client = redis.cluster.RedisCluster.from_url(cluster.url, decode_responses=True)
    yield client
    client.close()


def keys_on_each_primary(client: redis.cluster.RedisCluster) -> dict[int, str]:
    """Primary port -> a fresh key whose slot that primary serves (per the client's slot map)."""
    primaries = {node.port for node in client.get_primaries()}
    found: dict[int, str] = {}
    while len(found) < len(primaries):
        key = f"rs-t-{uuid.uuid4().hex[:12]}"
        found.setdefault(client.get_node_from_key(key).port, key)
    return found


def test_cluster_has_three_primaries_with_one_replica_each_and_all_slots_covered(
    cluster: RedisClusterServers, cluster_client: redis.cluster.RedisCluster
) -> None:
    primaries, replicas = cluster.primaries(), cluster.replicas()
    assert len(primaries) == 3
    assert len(replicas) == 3
    assert sorted(primaries + replicas) == sorted(cluster.ports)
    assert sorted(cluster.replica_of(port) for port in primaries) == replicas
    # RedisCluster parses CLUSTER SLOTS into a dict keyed by (first, last); redis-py types it as a list.
    slots: dict[tuple[int, int], dict[str, Any]] = cast(Any, cluster_client.cluster_slots())
    assert sum(last - first + 1 for first, last in slots) == CLUSTER_SLOTS
    assert sorted(entry["primary"][1] for entry in slots.values()) == primaries
    # Replicas are listed too (a replica whose offset is still 0 would be left out as "loading").
    assert sorted(entry["replicas"][0][1] for entry in slots.values()) == replicas
    for port in cluster.ports:
        with redis.Redis(HOST, port, decode_responses=True) as node:
            info = node.cluster("INFO")
        assert info["cluster_state"] == "ok"
        assert info["cluster_slots_ok"] == str(CLUSTER_SLOTS)


def test_cluster_client_writes_and_reads_a_key_on_every_primary(
    cluster: RedisClusterServers, cluster_client: redis.cluster.RedisCluster
) -> None:
    keys = keys_on_each_primary(cluster_client)
    assert sorted(keys) == cluster.primaries()
    for port, key in keys.items():
        assert cluster_client.set(key, f"on {port}", ex=60)
        assert cluster_client.get(key) == f"on {port}"
        with redis.Redis(HOST, port, decode_responses=True) as primary:
            assert primary.get(key) == f"on {port}"  # stored on that very primary


def test_cluster_failover_swaps_the_roles_of_a_primary_and_its_replica(
    cluster: RedisClusterServers, cluster_client: redis.cluster.RedisCluster
) -> None:
    primary = cluster.primaries()[0]
    replica = cluster.replica_of(primary)
    key = keys_on_each_primary(cluster_client)[primary]
    cluster_client.set(key, "before", ex=60)
    assert cluster.failover(replica) == primary
    assert replica in cluster.primaries()
    assert primary in cluster.replicas()
    assert cluster.replica_of(replica) == primary
    # The client's slot map is stale now; it follows the MOVED reply to the new primary.
    assert cluster_client.get(key) == "before"
    assert cluster_client.set(key, "after", ex=60)
    with redis.Redis(HOST, replica, decode_responses=True) as promoted:
        assert promoted.get(key) == "after"


def test_cluster_promotes_the_replica_of_a_killed_primary_and_the_restarted_node_rejoins(
    cluster: RedisClusterServers,
) -> None:
    primary = cluster.primaries()[-1]
    replica = cluster.replica_of(primary)
    cluster.kill(primary)
    assert not cluster.is_alive(primary)
    cluster.wait_healthy(timeout=20)
    assert replica in cluster.primaries()
    cluster.restart(primary)
    cluster.wait_healthy(timeout=20)
    assert cluster.role(primary) == ("slave", replica)
    assert len(cluster.primaries()) == 3


def test_a_failed_start_stops_every_process_it_started_and_removes_its_directory() -> None:
    require_redis_binaries()
    seen: list[tuple[Path, subprocess.Popen[bytes] | None]] = []

    class BrokenCreate(RedisClusterServers):
        def _create(self) -> None:  # all six nodes are running; joining them "fails"
            seen.extend((self.directory, server.process) for server in self._servers.values())
            raise RuntimeError("redis-cli --cluster create failed (simulated)")

    with pytest.raises(RuntimeError, match="simulated"), BrokenCreate():
        pass
    assert len(seen) == 6
    for directory, process in seen:
        assert process is not None
        assert process.poll() is not None  # killed and reaped
        assert not directory.exists()


def test_sentinels_name_the_primary_and_after_it_is_killed_the_promoted_replica() -> None:
    require_redis_binaries()
    with RedisSentinelServers() as servers:
        first, second = servers.data_ports
        assert servers.primary() == (HOST, first)
        assert servers.replicas() == [(HOST, second)]
        sentinel = redis.sentinel.Sentinel(servers.sentinels, socket_timeout=1.0)
        assert sentinel.discover_master(servers.service_name) == (HOST, first)
        client = sentinel.master_for(servers.service_name, socket_timeout=1.0, decode_responses=True)
        try:
            client.set("rs-t-before", "kept", ex=60)
            assert client.execute_command("WAIT", 1, 2000) == 1  # on the replica before the crash
            assert servers.kill_primary() == first
            assert servers.wait_failover(first, timeout=20) == (HOST, second)
            assert servers.primary() == (HOST, second)
            # The same client: its connection to the dead primary fails, it asks the sentinels again.
            assert client.get("rs-t-before") == "kept"
            assert client.set("rs-t-after", "written", ex=60)
            with redis.Redis(HOST, second, decode_responses=True) as promoted:
                assert promoted.get("rs-t-after") == "written"
        finally:
            client.close()
            for sentinel_client in sentinel.sentinels:
                sentinel_client.close()
