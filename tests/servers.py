"""Real Redis Cluster and Sentinel deployments on loopback, for tests of failover and topology changes.

``RedisClusterServers`` starts six ``redis-server`` processes (three primaries, three replicas) and
joins them with ``redis-cli --cluster create``; ``RedisSentinelServers`` starts a primary, its
replica and three sentinels (``redis-server <conf> --sentinel``). Both are context managers that own
every process they start and a private temporary directory (node configs, sentinel configs, logs),
and remove all of it on exit, also after a failed start. Nothing here mocks Redis: the point is to
see what real failovers do to a client, which no fake can show.

Everything binds 127.0.0.1 on ports the kernel says are free, so several runs can share a machine
with a developer's own Redis on 6379, which these classes never connect to. Readiness is always
polled against the servers with a deadline, never slept for. ``docker-compose.yml``'s ``cluster``
and ``sentinel`` profiles start the same deployments on fixed ports for manual experiments.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any, Self

import pytest
import redis
import redis.exceptions

from redis_sessions.embedded import RedisServer, _ping, free_port

__all__ = [
    "CLUSTER_SLOTS",
    "HOST",
    "RedisClusterServers",
    "RedisSentinelServers",
    "in_ci",
    "require_redis_binaries",
]

HOST = "127.0.0.1"
CLUSTER_SLOTS = 16384
BUS_PORT_OFFSET = 10000  # Redis Cluster's default: the bus listens on port + 10000
_POLL = 0.05  # seconds between readiness checks
_PORT_ATTEMPTS = 5  # tries to find a port pair that is still free when redis-server binds it
_LOG_LINES = 20
_BAD_NODE_FLAGS = frozenset({"fail", "fail?", "handshake", "noaddr"})
# A master starts a diskless full sync only after this delay (default 5 s, to wait for more
# replicas); 0 makes a fresh replica's link come up in milliseconds.
_FAST_SYNC = ("--repl-diskless-sync-delay", "0")


def in_ci() -> bool:
    """True under ``CI=true`` (as ``tests.conftest.in_ci``), where missing binaries must fail, not skip."""
    return os.environ.get("CI", "").strip().lower() in {"true", "1", "yes"}


def require_redis_binaries() -> None:
    """Skip the calling test when ``redis-server`` or ``redis-cli`` is missing; fail instead under CI.

    The same convention as ``tests.conftest.redis_url``: a developer without Redis installed can run
    the rest of the suite, but CI must not pass by skipping the real-server tests.
    """
    missing = [name for name in ("redis-server", "redis-cli") if shutil.which(name) is None]
    if not missing:
        return
    reason = f"{' and '.join(missing)} not on PATH (apt-get install redis-server)"
    if in_ci():
        pytest.fail(f"CI=true: {reason}", pytrace=False)
    pytest.skip(reason)


def _execute(port: int, *args: str | int, timeout: float = 1.0) -> Any:
    """Send one command to ``127.0.0.1:port`` on a fresh connection and return the raw reply.

    A bare RESP2 ``Connection`` skips redis-py's response callbacks and its default protocol (RESP3
    from redis-py 8), so ``CLUSTER NODES``, ``ROLE``, ``INFO`` and ``SENTINEL …`` come back as the
    server's RESP2 replies, whichever redis-py version parses what. A fresh connection per call means
    a killed or restarted node never leaves a stale one behind.
    """
    options: dict[str, Any] = {"socket_timeout": timeout, "socket_connect_timeout": timeout}
    connection = redis.Connection(host=HOST, port=port, protocol=2, decode_responses=True, **options)  # type: ignore[no-untyped-call, unused-ignore]
    try:
        connection.send_command(*args)  # type: ignore[no-untyped-call, unused-ignore]
        return connection.read_response()
    finally:
        connection.disconnect()  # type: ignore[no-untyped-call, unused-ignore]


def _info_fields(text: str) -> dict[str, str]:
    """``key:value`` lines of an ``INFO`` or ``CLUSTER INFO`` reply, as strings."""
    fields: dict[str, str] = {}
    for line in text.splitlines():
        key, sep, value = line.partition(":")
        if sep and not key.startswith("#"):
            fields[key.strip()] = value.strip()
    return fields


def _pairs(flat: Sequence[Any]) -> dict[str, Any]:
    """A RESP2 ``[key, value, key, value, …]`` list (``SENTINEL REPLICAS`` entries, …) as a dict."""
    return {str(flat[i]): flat[i + 1] for i in range(0, len(flat) - 1, 2)}


def _bindable(port: int) -> bool:
    """Whether a listener could bind ``127.0.0.1:port`` now (with SO_REUSEADDR, as redis-server does)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((HOST, port))
        except OSError:
            return False
        return True


def _poll_until(
    check: Callable[[], str | None], timeout: float, what: str, report: Callable[[str], str]
) -> float:
    """Call ``check`` until it returns ``None`` (ready) and return the seconds that took.

    ``check`` returns a sentence saying what is not ready yet; on timeout that last sentence and
    ``report``'s log tails go into the ``TimeoutError``, so a failure says why, not just "timed out".
    """
    began = time.monotonic()
    deadline = began + timeout
    while True:
        try:
            problem = check()
        except (redis.exceptions.RedisError, OSError) as exc:
            problem = f"{type(exc).__name__}: {exc}"
        if problem is None:
            return time.monotonic() - began
        if time.monotonic() > deadline:
            raise TimeoutError(report(f"{what}: not ready after {timeout:g} s: {problem}"))
        time.sleep(_POLL)


class _SentinelProcess(RedisServer):
    """``redis-server <config> --sentinel``: ``RedisServer``'s lifecycle, started from a config file.

    Sentinel mode refuses to start without a config file on disk (it rewrites it with the replicas
    and sentinels it discovers), and the file must be the first argument, which ``RedisServer.start``
    does not allow for; only ``start`` differs.
    """

    def __init__(self, config: Path, *, port: int, startup_timeout: float) -> None:
        super().__init__(port=port, directory=config.parent, startup_timeout=startup_timeout)
        self.config = config

    def start(self) -> _SentinelProcess:
        """Start the sentinel and wait until it answers PING (``RuntimeError`` if it does not)."""
        args = [self.binary, str(self.config), "--sentinel"]
        self.process = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + self.startup_timeout
        while not _ping(self.host, self.port):
            if self.process.poll() is not None or time.monotonic() > deadline:
                output = self._stop_process()
                raise RuntimeError(f"redis-server --sentinel on port {self.port} did not start:\n{output}")
            time.sleep(0.01)
        return self


class _Deployment:
    """What both deployments share: the temporary directory, the processes by port, kill and teardown.

    Every process works in its own ``<dir>/node-<port>/`` and logs to ``redis.log`` there rather
    than to a pipe: a pipe nobody reads fills up and blocks a chatty server, and a file can be
    tailed into error messages at any time.
    """

    def __init__(self, *, startup_timeout: float, prefix: str) -> None:
        self.startup_timeout = startup_timeout
        self.startup_seconds: float | None = None  # how long the last start() took
        self._prefix = prefix
        self._tmp: tempfile.TemporaryDirectory[str] | None = None
        self._servers: dict[int, RedisServer] = {}
        self._roles: dict[int, str] = {}  # port -> "cluster node", "primary", "sentinel", … for messages
        self._taken: set[int] = set()  # ports handed out by this deployment (and bus ports)

    @property
    def directory(self) -> Path:
        """The private temporary directory with configs and logs (only while started)."""
        if self._tmp is None:
            raise RuntimeError(f"{type(self).__name__} is not started")
        return Path(self._tmp.name)

    def node_directory(self, port: int) -> Path:
        """The working directory of the process on ``port`` (created on first use).

        One per process: with ``--appendonly yes`` or ``--save`` each node writes its AOF or RDB
        files under fixed names in its directory, which nodes sharing one would overwrite.
        """
        path = self.directory / f"node-{port}"
        path.mkdir(exist_ok=True)
        return path

    def log_path(self, port: int) -> Path:
        """The log file of the process on ``port``."""
        return self.node_directory(port) / "redis.log"

    def log_tail(self, port: int, lines: int = _LOG_LINES) -> str:
        """The last ``lines`` lines of the log of the process on ``port`` ("" if it has none yet)."""
        try:
            text = self.log_path(port).read_text("utf-8", "replace")
        except (OSError, RuntimeError):
            return ""
        return "\n".join(text.splitlines()[-lines:])

    def is_alive(self, port: int) -> bool:
        """Whether this deployment's process on ``port`` is running (not killed, not exited)."""
        server = self._servers.get(port)
        return server is not None and server.process is not None and server.process.poll() is None

    def kill(self, port: int) -> None:
        """SIGKILL the process on ``port`` and reap it: a crash, with no chance to save or hand over."""
        server = self._server(port)
        if server.process is not None and server.process.poll() is None:
            server.process.kill()
            server.process.wait()

    def restart(self, port: int) -> None:
        """Start the killed process on ``port`` again, same port, same config file, same directory.

        It only waits for PING; a cluster node or sentinel then rejoins on its own (wait for that with
        the deployment's own ``wait_…`` method). Without persistence a restarted data node is empty.
        """
        server = self._server(port)
        if self.is_alive(port):
            raise RuntimeError(f"{self._roles[port]} on port {port} is running; kill() it first")
        server.stop()  # reaps the old process and closes its pipe; the directory is ours, it stays
        try:
            server.start()
        except RuntimeError as exc:
            message = f"restarting {self._roles[port]} on port {port} failed: {exc}"
            raise RuntimeError(self._report(message)) from None

    def stop(self) -> None:
        """SIGKILL every process this deployment started (running or not) and remove the directory.

        Safe to call twice and after a start that failed halfway. SIGKILL, not SIGTERM: nothing is
        worth saving, and a Redis 7 primary's graceful shutdown may wait for lagging replicas.
        """
        servers, self._servers = list(self._servers.values()), {}
        for server in servers:
            if server.process is not None and server.process.poll() is None:
                server.process.kill()
        for server in servers:
            server.stop()
        self._roles.clear()
        self._taken.clear()
        if self._tmp is not None:
            self._tmp.cleanup()
            self._tmp = None

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    def start(self) -> Self:
        """Start every process and wait until the deployment is ready; on any failure stop() and raise."""
        if self._tmp is not None:
            raise RuntimeError(f"{type(self).__name__} is already started")
        began = time.monotonic()
        self._tmp = tempfile.TemporaryDirectory(prefix=self._prefix)
        try:
            self._start()
        except BaseException:
            self.stop()
            raise
        self.startup_seconds = time.monotonic() - began
        return self

    def _start(self) -> None:
        raise NotImplementedError

    def _server(self, port: int) -> RedisServer:
        try:
            return self._servers[port]
        except KeyError:
            raise KeyError(f"no process of this {type(self).__name__} on port {port}") from None

    def _pick_port(self, *, with_bus: bool) -> int:
        """A free port not yet used here; with ``with_bus``, one whose cluster bus port is free too."""
        while True:
            port = free_port(HOST)
            if port in self._taken:
                continue
            if not with_bus:
                return port
            bus = port + BUS_PORT_OFFSET
            if bus <= 65535 and bus not in self._taken and _bindable(bus):
                return port

    def _launch(self, role: str, make: Callable[[int], RedisServer], *, with_bus: bool = False) -> int:
        """Start ``make(port)`` on a free port and register it as ``role``; return the port.

        Between the free-port check and redis-server's bind another process may take the port; the
        log then says "Address already in use" and another port is tried.
        """
        for attempt in range(_PORT_ATTEMPTS):
            chosen = self._pick_port(with_bus=with_bus)
            self._taken.update({chosen, chosen + BUS_PORT_OFFSET} if with_bus else {chosen})
            server = make(chosen)
            try:
                server.start()
            except RuntimeError as exc:
                detail = f"{exc}\n{self.log_tail(chosen)}"
                if "Address already in use" in detail and attempt + 1 < _PORT_ATTEMPTS:
                    continue
                raise RuntimeError(f"{role} on port {chosen} did not start: {detail}") from None
            self._servers[chosen] = server
            self._roles[chosen] = role
            return chosen
        raise AssertionError("unreachable")

    def _report(self, message: str) -> str:
        """``message`` followed by the log tail of every process, for errors worth debugging."""
        parts = [message]
        for port in sorted(self._servers):
            state = "running" if self.is_alive(port) else "not running"
            tail = self.log_tail(port) or "(empty log)"
            parts.append(f"--- {self._roles[port]} 127.0.0.1:{port} ({state}), log tail ---\n{tail}")
        return "\n".join(parts)


@dataclass(frozen=True)
class _NodeView:
    """One line of ``CLUSTER NODES``: how one node sees another (or itself)."""

    node_id: str
    port: int
    flags: frozenset[str]
    master_id: str  # "-" for a primary
    link: str  # "connected" or "disconnected"
    slots: tuple[tuple[int, int], ...]

    @property
    def is_primary(self) -> bool:
        return "master" in self.flags

    @property
    def slot_count(self) -> int:
        return sum(last - first + 1 for first, last in self.slots)


def _parse_cluster_nodes(text: str) -> dict[int, _NodeView]:
    """``CLUSTER NODES`` as views keyed by port (slots being migrated, ``[…]``, are left out)."""
    views: dict[int, _NodeView] = {}
    for line in text.splitlines():
        if not line.strip():
            continue
        node_id, address, flags, master_id, _sent, _received, _epoch, link, *slots = line.split()
        port = int(address.split("@", 1)[0].rsplit(":", 1)[1] or 0)
        ranges: list[tuple[int, int]] = []
        for item in slots:
            if item.startswith("["):
                continue
            first, _, last = item.partition("-")
            ranges.append((int(first), int(last or first)))
        views[port] = _NodeView(node_id, port, frozenset(flags.split(",")), master_id, link, tuple(ranges))
    return views


def _shard_health(shards: Sequence[Any]) -> dict[int, str]:
    """Port -> ``health`` (online, loading, failed) of every node in a RESP2 ``CLUSTER SHARDS`` reply."""
    health: dict[int, str] = {}
    for shard in shards:
        for node in _pairs(shard).get("nodes", []):
            fields = _pairs(node)
            health[int(fields["port"])] = str(fields["health"])
    return health


class RedisClusterServers(_Deployment):
    """A Redis Cluster of three primaries and three replicas on loopback, real processes.

    Each node runs with ``--cluster-enabled yes``, its own ``nodes.conf`` in its private
    directory, ``--cluster-node-timeout node_timeout_ms`` (1000 by default, so a killed primary's
    replica takes over within a few seconds instead of the 15 s default), no RDB and no AOF unless
    ``node_args`` says otherwise (``["--appendonly", "yes"]``), and ``--repl-diskless-sync-delay 0``
    so replicas sync at once. ``start()`` (or ``with``) returns when every node agrees on a healthy
    cluster: state ok, all 16384 slots served, each primary with one replica whose link is up.

    Roles move on failover, so ``primaries()``, ``replicas()`` and ``replica_of()`` ask the servers
    every time rather than remembering who was started as what.
    """

    PRIMARIES = 3
    REPLICAS_PER_PRIMARY = 1

    def __init__(
        self,
        *,
        node_timeout_ms: int = 1000,
        node_args: Sequence[str] = (),
        startup_timeout: float = 30.0,
    ) -> None:
        super().__init__(startup_timeout=startup_timeout, prefix="redis-sessions-cluster-")
        self.node_timeout_ms = node_timeout_ms
        self.node_args = list(node_args)
        self._ports: list[int] = []

    @property
    def ports(self) -> list[int]:
        """Every node's port, in start order (killed nodes included)."""
        return list(self._ports)

    @property
    def startup_nodes(self) -> list[tuple[str, int]]:
        """``(host, port)`` of every node, for ``RedisCluster(startup_nodes=[ClusterNode(h, p), …])``."""
        return [(HOST, port) for port in self._ports]

    @property
    def url(self) -> str:
        """``redis://127.0.0.1:<port>`` of a running node, for ``RedisCluster.from_url``."""
        alive = [port for port in self._ports if self.is_alive(port)]
        if not alive:
            raise RuntimeError("no cluster node is running")
        return f"redis://{HOST}:{alive[0]}"

    def node_args_for(self, port: int) -> list[str]:
        """The options ``redis-server`` gets for the node on ``port`` (besides RedisServer's own)."""
        config = self.node_directory(port) / "nodes.conf"
        return [
            *("--cluster-enabled", "yes"),
            *("--cluster-config-file", str(config)),
            *("--cluster-node-timeout", str(self.node_timeout_ms)),
            *_FAST_SYNC,
            # A replica whose replication offset (gossiped to the other nodes) is still 0 counts as
            # "loading": left out of CLUSTER SLOTS and ``health: loading`` in CLUSTER SHARDS, so a
            # client reading from replicas cannot use it. Without writes the offset first moves
            # with the primary's replication PING, every 10 s by default; 1 s makes it ready soon.
            *("--repl-ping-replica-period", "1"),
            *("--logfile", str(self.log_path(port))),
            *self.node_args,
        ]

    def _start(self) -> None:
        for _ in range(self.PRIMARIES * (1 + self.REPLICAS_PER_PRIMARY)):
            port = self._launch("cluster node", self._make_node, with_bus=True)
            self._ports.append(port)
        self._create()
        self.wait_healthy(self.startup_timeout)

    def _make_node(self, port: int) -> RedisServer:
        return RedisServer(
            port=port,
            extra_args=self.node_args_for(port),
            directory=self.node_directory(port),
            startup_timeout=self.startup_timeout,
        )

    def _create(self) -> None:
        """``redis-cli --cluster create``: assign the slots, meet, and pair replicas with primaries."""
        cli = shutil.which("redis-cli")
        if cli is None:
            raise FileNotFoundError("redis-cli is not on PATH (apt-get install redis-tools)")
        command = [cli, "--cluster", "create", *(f"{HOST}:{port}" for port in self._ports)]
        command += ["--cluster-replicas", str(self.REPLICAS_PER_PRIMARY), "--cluster-yes"]
        try:
            done = subprocess.run(
                command,
                stdin=subprocess.DEVNULL,
                capture_output=True,
                text=True,
                timeout=self.startup_timeout,
                check=False,
            )
        except subprocess.TimeoutExpired as exc:
            raise TimeoutError(self._report(f"{' '.join(command)} took over {exc.timeout:g} s")) from None
        if done.returncode != 0:
            raise RuntimeError(
                self._report(f"{' '.join(command)} exited {done.returncode}:\n{done.stdout}\n{done.stderr}")
            )

    def stop(self) -> None:
        """Kill every node and remove the directory (see ``_Deployment.stop``)."""
        super().stop()
        self._ports = []

    def role(self, port: int) -> tuple[str, int | None]:
        """``("master", None)`` or ``("slave", primary_port)``: what the node on ``port`` says (ROLE)."""
        reply = _execute(port, "ROLE")
        if reply[0] == "slave":
            return "slave", int(reply[2])
        return str(reply[0]), None

    def primaries(self) -> list[int]:
        """Ports of the running nodes that say they are primaries, sorted."""
        return sorted(port for port in self._running() if self.role(port)[0] == "master")

    def replicas(self) -> list[int]:
        """Ports of the running nodes that say they are replicas, sorted."""
        return sorted(port for port in self._running() if self.role(port)[0] == "slave")

    def replica_of(self, primary_port: int) -> int:
        """The port of the one running replica of ``primary_port`` (``LookupError`` if not exactly one)."""
        found = [port for port in self.replicas() if self.role(port)[1] == primary_port]
        if len(found) != 1:
            raise LookupError(f"primary {primary_port} has {len(found)} running replicas: {found}")
        return found[0]

    def failover(self, replica_port: int, *, force: bool = False, timeout: float = 30.0) -> int:
        """Promote the replica on ``replica_port`` with ``CLUSTER FAILOVER [FORCE]``; return the old primary.

        Without ``force`` the primary must be up: it stops writes until the replica has caught up,
        so no acknowledged write is lost, and becomes a replica of the promoted node. ``FORCE`` skips
        that handshake (for a primary that is down or unreachable) but still needs a majority of
        primaries to vote. Returns when the node is a primary and the cluster is healthy again.
        """
        role, old_primary = self.role(replica_port)
        if role != "slave" or old_primary is None:
            raise ValueError(f"node {replica_port} is a {role}, not a replica")
        _execute(replica_port, "CLUSTER", "FAILOVER", *(["FORCE"] if force else []))

        def promoted() -> str | None:
            if self.role(replica_port)[0] != "master":
                return f"node {replica_port} is not a primary yet"
            return self._cluster_problem()

        _poll_until(promoted, timeout, f"CLUSTER FAILOVER on {replica_port}", self._report)
        return old_primary

    def wait_healthy(self, timeout: float = 30.0) -> float:
        """Wait until the running nodes form a healthy cluster; return the seconds waited.

        Healthy means, on every running node: ``cluster_state:ok``; the same view of the running
        nodes' roles, primaries and slots, none flagged as failing; all 16384 slots owned by running
        primaries; every running replica's link to a running primary up. With all six nodes running
        it also means three primaries with one replica each. After ``kill()`` of a primary this is
        the wait for its replica's promotion; after ``restart()``, the wait for the node to rejoin.
        """
        return _poll_until(self._cluster_problem, timeout, "cluster health", self._report)

    def _running(self) -> list[int]:
        return [port for port in self._ports if self.is_alive(port)]

    def _cluster_problem(self) -> str | None:
        """What keeps the running nodes from being a healthy cluster right now, or None."""
        running = self._running()
        if not running:
            return "no node is running"
        everyone = len(running) == len(self._ports)
        summaries: dict[int, dict[int, tuple[str, bool, str, tuple[tuple[int, int], ...]]]] = {}
        views: dict[int, _NodeView] = {}
        for port in running:
            info = _info_fields(_execute(port, "CLUSTER", "INFO"))
            if info.get("cluster_state") != "ok":
                return f"node {port}: cluster_state:{info.get('cluster_state')}"
            views = _parse_cluster_nodes(_execute(port, "CLUSTER", "NODES"))
            summary = {}
            for other in running:
                view = views.get(other)
                if view is None:
                    return f"node {port} does not know node {other}"
                if view.flags & _BAD_NODE_FLAGS or ("myself" not in view.flags and view.link != "connected"):
                    return f"node {port} sees node {other} as {','.join(sorted(view.flags))} {view.link}"
                summary[other] = (view.node_id, view.is_primary, view.master_id, view.slots)
            summaries[port] = summary
            health = _shard_health(_execute(port, "CLUSTER", "SHARDS"))
            for other in running:
                if health.get(other) != "online":
                    return f"node {port}'s CLUSTER SHARDS says node {other} is {health.get(other)}"
        first = summaries[running[0]]
        for port, summary in summaries.items():
            if summary != first:
                return f"nodes {running[0]} and {port} disagree about the topology"
        # All views agree; ``views`` is the last node's, complete for the running nodes.
        by_id = {view.node_id: view.port for view in views.values()}
        primaries = [views[port] for port in running if views[port].is_primary]
        served = sum(view.slot_count for view in primaries)
        if served != CLUSTER_SLOTS:
            return f"running primaries serve {served} of {CLUSTER_SLOTS} slots"
        replicas = [views[port] for port in running if not views[port].is_primary]
        for replica in replicas:
            primary_port = by_id.get(replica.master_id)
            if primary_port not in running:
                return f"replica {replica.port}'s primary {replica.master_id[:8]} is not running"
            replication = _info_fields(_execute(replica.port, "INFO", "replication"))
            following, link = replication.get("master_port"), replication.get("master_link_status")
            if following != str(primary_port):
                return f"replica {replica.port} replicates {following}, not {primary_port}"
            if link != "up":
                return f"replica {replica.port}'s link to {primary_port} is {link}"
        if everyone:
            if len(primaries) != self.PRIMARIES:
                return f"{len(primaries)} primaries, not {self.PRIMARIES}"
            for primary in primaries:
                count = sum(1 for replica in replicas if replica.master_id == primary.node_id)
                if count != self.REPLICAS_PER_PRIMARY:
                    return f"primary {primary.port} has {count} replicas"
        return None


class RedisSentinelServers(_Deployment):
    """A primary, one replica and three sentinels on loopback, real processes.

    The replica is started with ``--replicaof`` the primary; the sentinels from config files in the
    private directory with ``sentinel monitor <service_name> 127.0.0.1 <primary port> 2``,
    ``down-after-milliseconds`` 1000, ``failover-timeout`` 5000 and ``parallel-syncs`` 1 by default,
    so a killed primary is replaced in seconds. ``start()`` returns when the replica's link is up and
    each sentinel knows the primary, the replica and the other two sentinels.

    Sentinels are started after the replica has connected: a sentinel learns replicas from the
    primary's ``INFO``, asked at once on connecting and then only every 10 s.
    """

    SENTINELS = 3

    def __init__(
        self,
        *,
        service_name: str = "rs-primary",
        quorum: int = 2,
        down_after_ms: int = 1000,
        failover_timeout_ms: int = 5000,
        server_args: Sequence[str] = (),
        startup_timeout: float = 30.0,
    ) -> None:
        super().__init__(startup_timeout=startup_timeout, prefix="redis-sessions-sentinel-")
        self.service_name = service_name
        self.quorum = quorum
        self.down_after_ms = down_after_ms
        self.failover_timeout_ms = failover_timeout_ms
        self.server_args = list(server_args)
        self._data_ports: list[int] = []
        self._sentinel_ports: list[int] = []

    @property
    def sentinels(self) -> list[tuple[str, int]]:
        """``(host, port)`` of every sentinel, for ``redis.sentinel.Sentinel(...)``."""
        return [(HOST, port) for port in self._sentinel_ports]

    @property
    def data_ports(self) -> list[int]:
        """Ports of the two data nodes, the one started as primary first."""
        return list(self._data_ports)

    def sentinel_config(self, port: int, primary_port: int) -> str:
        """The config file a sentinel on ``port`` starts from (it rewrites it as it learns)."""
        name = self.service_name
        return "\n".join(
            [
                f"port {port}",
                f"bind {HOST}",
                f"dir {self.node_directory(port)}",
                f"logfile {self.log_path(port)}",
                f"sentinel monitor {name} {HOST} {primary_port} {self.quorum}",
                f"sentinel down-after-milliseconds {name} {self.down_after_ms}",
                f"sentinel failover-timeout {name} {self.failover_timeout_ms}",
                f"sentinel parallel-syncs {name} 1",
                "",
            ]
        )

    def _start(self) -> None:
        primary = self._launch("primary", lambda port: self._make_data_node(port, []))
        self._data_ports.append(primary)
        follow = ["--replicaof", HOST, str(primary)]
        replica = self._launch("replica", lambda port: self._make_data_node(port, follow))
        self._data_ports.append(replica)
        _poll_until(lambda: self._link_problem(replica), self.startup_timeout, "replica", self._report)
        for _ in range(self.SENTINELS):
            sentinel = self._launch("sentinel", lambda port: self._make_sentinel(port, primary))
            self._sentinel_ports.append(sentinel)
        _poll_until(
            lambda: self._sentinels_problem(primary, replica), self.startup_timeout, "sentinels", self._report
        )

    def _make_data_node(self, port: int, args: list[str]) -> RedisServer:
        extra = [*_FAST_SYNC, "--logfile", str(self.log_path(port)), *args, *self.server_args]
        return RedisServer(
            port=port,
            extra_args=extra,
            directory=self.node_directory(port),
            startup_timeout=self.startup_timeout,
        )

    def _make_sentinel(self, port: int, primary: int) -> RedisServer:
        config = self.node_directory(port) / "sentinel.conf"
        config.write_text(self.sentinel_config(port, primary), "utf-8")
        return _SentinelProcess(config, port=port, startup_timeout=self.startup_timeout)

    def stop(self) -> None:
        """Kill every process and remove the directory (see ``_Deployment.stop``)."""
        super().stop()
        self._data_ports, self._sentinel_ports = [], []

    def primary(self) -> tuple[str, int]:
        """The ``(host, port)`` a majority of running sentinels name (``GET-MASTER-ADDR-BY-NAME``).

        ``RuntimeError`` when no address has a majority (a failover being announced, say).
        """
        answers = self._named_primaries()
        for address in set(answers.values()):
            if address is not None and list(answers.values()).count(address) * 2 > self.SENTINELS:
                return address
        raise RuntimeError(self._report(f"the sentinels name no primary by majority: {answers}"))

    def replicas(self) -> list[tuple[str, int]]:
        """The replicas the first running sentinel knows and does not consider down."""
        sentinel = next(port for port in self._sentinel_ports if self.is_alive(port))
        found = []
        for entry in _execute(sentinel, "SENTINEL", "REPLICAS", self.service_name):
            fields = _pairs(entry)
            if "s_down" not in fields["flags"] and "disconnected" not in fields["flags"]:
                found.append((str(fields["ip"]), int(fields["port"])))
        return sorted(found)

    def kill_primary(self) -> int:
        """SIGKILL the process of the primary the sentinels name now; return its port."""
        _, port = self.primary()
        if port not in self._servers:
            raise RuntimeError(f"the sentinels name port {port}, which this deployment did not start")
        self.kill(port)
        return port

    def wait_failover(self, old_port: int, timeout: float = 30.0) -> tuple[str, int]:
        """Wait until every running sentinel names one primary other than ``old_port``, which answers
        ``ROLE`` as a master; return its ``(host, port)``.
        """
        found: list[tuple[str, int]] = []

        def switched() -> str | None:
            answers = self._named_primaries()
            named = set(answers.values())
            if len(named) != 1:
                return f"the sentinels disagree: {answers}"
            address = named.pop()
            if address is None or address[1] == old_port:
                return f"the sentinels still name {address}"
            role = _execute(address[1], "ROLE")[0]
            if role != "master":
                return f"{address} answers ROLE {role}"
            found[:] = [address]
            return None

        _poll_until(switched, timeout, f"failover away from {old_port}", self._report)
        return found[0]

    def _named_primaries(self) -> dict[int, tuple[str, int] | None]:
        """Sentinel port -> the address it names for the service (None if it cannot be asked)."""
        answers: dict[int, tuple[str, int] | None] = {}
        for port in self._sentinel_ports:
            if not self.is_alive(port):
                continue
            try:
                reply = _execute(port, "SENTINEL", "GET-MASTER-ADDR-BY-NAME", self.service_name)
            except (redis.exceptions.RedisError, OSError):
                reply = None
            answers[port] = (str(reply[0]), int(reply[1])) if reply else None
        return answers

    def _link_problem(self, replica: int) -> str | None:
        replication = _info_fields(_execute(replica, "INFO", "replication"))
        if replication.get("master_link_status") != "up":
            return f"replica {replica}'s link is {replication.get('master_link_status')}"
        return None

    def _sentinels_problem(self, primary: int, replica: int) -> str | None:
        """What a sentinel does not know yet (the primary, the replica, its peers), or None."""
        for port in self._sentinel_ports:
            reply = _execute(port, "SENTINEL", "GET-MASTER-ADDR-BY-NAME", self.service_name)
            if not reply or int(reply[1]) != primary:
                return f"sentinel {port} names {reply} as primary"
            replicas = [_pairs(entry) for entry in _execute(port, "SENTINEL", "REPLICAS", self.service_name)]
            if not any(
                int(fields["port"]) == replica
                and fields["flags"] == "slave"
                and fields.get("master-link-status") == "ok"
                for fields in replicas
            ):
                return f"sentinel {port} does not see replica {replica} up: {replicas}"
            peers = [_pairs(entry) for entry in _execute(port, "SENTINEL", "SENTINELS", self.service_name)]
            healthy = [fields for fields in peers if fields["flags"] == "sentinel"]
            if len(healthy) != self.SENTINELS - 1:
                return f"sentinel {port} knows {len(healthy)} healthy peers: {peers}"
        return None
