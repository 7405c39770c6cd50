"""Failover under load, on real servers: a Redis Cluster (3 primaries, 3 replicas) and Sentinel.

Writer processes append round robin to sessions spread over every primary while the test promotes
a replica with ``CLUSTER FAILOVER``, then SIGKILLs a primary (its replica takes over; the killed
node is restarted and rejoins as a replica), or kills the Sentinel-managed primary. Afterwards the
audit in ``failover.py`` checks what was stored against what every writer was told:

- always: no message stored twice, each writer's messages in its own order, and three independent
  readers see the same list for every session;
- with ``wait_replicas=1``: no acknowledged message lost.
Without WAIT, asynchronous replication may lose the last acknowledged writes of a killed primary;
the test measures and prints how many (``pytest -s`` shows the figures), it does not assume.
"""

from __future__ import annotations

import multiprocessing
import subprocess
import time
from collections.abc import Callable, Iterator

import pytest
import redis.cluster

from tests.integration.failover import Audit, Target, WriterReport, audit, failover_writer
from tests.servers import RedisClusterServers, RedisSentinelServers, require_redis_binaries
from tests.support import unique_prefix

pytestmark = [pytest.mark.real, pytest.mark.slow, pytest.mark.timeout(240)]

WRITERS = 4
SESSIONS = 12
STEP = 150  # acknowledged appends to wait for between faults


@pytest.fixture
def cluster() -> Iterator[RedisClusterServers]:
    require_redis_binaries()
    with RedisClusterServers(node_timeout_ms=1000) as servers:
        yield servers


@pytest.fixture
def sentinel() -> Iterator[RedisSentinelServers]:
    require_redis_binaries()
    with RedisSentinelServers() as servers:
        yield servers


Progress = Callable[[int], None]


def under_load(
    target: Target, wait_replicas: int, faults: Callable[[Progress], None], writers: int = WRITERS
) -> tuple[Audit, list[WriterReport]]:
    """Run the writers, call ``faults(progress)`` while they write, stop them, and audit."""
    prefix = unique_prefix()
    with target.store(prefix) as store:
        sids = [store.create() for _ in range(SESSIONS)]
    ctx = multiprocessing.get_context("spawn")
    stop, results = ctx.Event(), ctx.Queue()
    acknowledged = ctx.Value("i", 0)
    processes = [
        ctx.Process(
            target=failover_writer,
            args=(target, prefix, sids, w, wait_replicas, stop, acknowledged, results),
            daemon=True,
        )
        for w in range(writers)
    ]
    for process in processes:
        process.start()

    def progress(count: int) -> None:
        """Return once the writers have had ``count`` more appends acknowledged (deadline 60 s)."""
        goal = acknowledged.value + count
        deadline = time.monotonic() + 60
        while acknowledged.value < goal:
            assert all(p.is_alive() for p in processes), "a writer process died"
            assert time.monotonic() < deadline, f"writers stalled at {acknowledged.value} of {goal}"
            stop.wait(0.01)  # poll the shared counter

    try:
        progress(STEP)
        faults(progress)
        progress(STEP)
    finally:
        stop.set()
        reports: list[WriterReport] = [results.get(timeout=60) for _ in processes]
        for process in processes:
            process.join(timeout=30)
    errors = [r.error for r in reports if r.error]
    assert not errors, errors[0]
    return audit(target, prefix, sids, reports), reports


def assert_consistent(result: Audit) -> None:
    assert result.duplicates == 0, result.line()
    assert not result.disagreements, result.line()
    assert not result.out_of_order, result.line()
    assert result.stored >= result.acknowledged - len(result.lost), result.line()


@pytest.mark.parametrize("wait_replicas", [0, 1], ids=["no-wait", "wait-1"])
def test_cluster_failover_and_a_killed_primary_under_load(
    cluster: RedisClusterServers, wait_replicas: int
) -> None:
    primaries = cluster.primaries()
    entry = primaries[0]  # the node clients bootstrap from: never killed here
    target = Target("cluster", url=f"redis://127.0.0.1:{entry}")
    events: list[str] = []

    def faults(progress: Progress) -> None:
        # 1. A graceful promotion: the replica catches up, then takes over.
        promoted = cluster.replica_of(primaries[1])
        cluster.failover(promoted)
        events.append(f"CLUSTER FAILOVER: {promoted} replaced {primaries[1]}")
        progress(STEP)
        # 2. A crash: SIGKILL a primary; its replica is elected after the node timeout.
        victim = primaries[2]
        started = time.monotonic()
        cluster.kill(victim)
        cluster.wait_healthy(timeout=60)  # the running nodes agree, every slot has a live primary
        events.append(f"SIGKILL {victim}: replica promoted in {time.monotonic() - started:.1f} s")
        if not wait_replicas:  # with WAIT, the promoted primary has no replica to confirm writes
            progress(STEP)
        # 3. The killed node comes back, as a replica of its successor (WAIT needs one again).
        cluster.restart(victim)
        cluster.wait_healthy(timeout=60)
        events.append(f"restarted {victim}, cluster healthy again")

    result, _ = under_load(target, wait_replicas, faults)
    print(f"\ncluster, wait_replicas={wait_replicas}: {result.line()}; " + "; ".join(events))
    assert_consistent(result)
    if wait_replicas:
        assert not result.lost, f"acknowledged after WAIT, then lost: {result.lost[:10]}"


def test_cluster_resharding_under_load(cluster: RedisClusterServers) -> None:
    # Every slot of one primary moves, keys and all, to another while the writers append: the
    # scripts meet ASK redirections and TRYAGAIN (a session's keys half migrated) on the way.
    entry, source, destination = cluster.primaries()
    target = Target("cluster", url=f"redis://127.0.0.1:{entry}")
    moved: list[str] = []

    def node_id(port: int) -> str:
        out = subprocess.run(
            ["redis-cli", "-p", str(port), "CLUSTER", "MYID"], capture_output=True, text=True, check=True
        )
        return out.stdout.strip()

    def faults(progress: Progress) -> None:
        started = time.monotonic()
        command = [
            *("redis-cli", "--cluster", "reshard", f"127.0.0.1:{entry}"),
            *("--cluster-from", node_id(source), "--cluster-to", node_id(destination)),
            *("--cluster-slots", "16384", "--cluster-yes"),
        ]
        subprocess.run(command, capture_output=True, check=True, timeout=180)
        moved.append(f"all slots of {source} moved to {destination} in {time.monotonic() - started:.1f} s")

    result, reports = under_load(target, 0, faults, writers=3)
    print(f"\ncluster resharding: {result.line()}; {moved[0]}")
    assert_consistent(result)
    assert not result.lost, "resharding must not lose anything"
    sids = {sid for report in reports for sid, _ in report.acknowledged.values()}
    client = redis.cluster.RedisCluster.from_url(target.url)
    try:
        owners = {client.get_node_from_key(f"{{{sid}}}").port for sid in sids}
    finally:
        client.close()
    assert source not in owners, "the sessions on the source primary should have moved"


def test_sentinel_failover_under_load(sentinel: RedisSentinelServers) -> None:
    target = Target("sentinel", sentinels=tuple(sentinel.sentinels), service=sentinel.service_name)
    before = sentinel.primary()
    after: list[tuple[str, int]] = []

    def faults(progress: Progress) -> None:
        killed = sentinel.kill_primary()
        after.append(sentinel.wait_failover(killed, timeout=60))
        progress(STEP)  # the store follows the new primary: appends are acknowledged again

    result, _ = under_load(target, 0, faults, writers=3)
    print(f"\nsentinel: primary {before} -> {after[0]}: {result.line()}")
    assert after[0] != before
    assert_consistent(result)
    # The readers of the audit went through the sentinels too: they read the new primary.
    assert result.stored > 0
