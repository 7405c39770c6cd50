"""The measuring harness of the benchmarks: it knows nothing about redis-sessions.

A ``Case`` is one operation; each of its systems is a ``Runner`` that does ``n`` ops and returns a
``Sample``. ``run`` interleaves: every round runs every case for every system back to back, with the
order of systems rotated each round, so a noisy moment on the machine lands on all of them and no
system always runs first. ``summarize`` takes medians over rounds and ratios *within* each round
(then their median): a system against its baseline (raw redis-py, sync or async) and against a
reference system.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import gc
import os
import platform
import statistics
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from importlib import metadata
from typing import Any
from urllib.parse import urlsplit

import redis

from redis_sessions.embedded import RedisServer

METRICS = ("ops_per_s", "p50_us", "p99_us", "cpu_us_per_op")


@dataclass(frozen=True, slots=True)
class Sample:
    """One system running one case for one round."""

    ops: int
    ops_per_s: float
    p50_us: float
    p99_us: float
    cpu_us_per_op: float


def sample(latencies_ns: Sequence[int], wall_ns: int, cpu_ns: int, ops: int | None = None) -> Sample:
    """A ``Sample`` from per-op latencies, the wall time of all ops and the client CPU time spent."""
    lat = sorted(latencies_ns)
    n = len(lat) if ops is None else ops
    return Sample(
        ops=n,
        ops_per_s=n / (wall_ns / 1e9),
        p50_us=lat[len(lat) // 2] / 1e3,
        p99_us=lat[min(len(lat) - 1, round(0.99 * (len(lat) - 1)))] / 1e3,
        cpu_us_per_op=cpu_ns / n / 1e3,
    )


@contextmanager
def quiet_heap() -> Iterator[None]:
    """Keep the collector on (the ops' own garbage still triggers it, as in a real process) but
    out of the harness's fixtures: thousands of pre-built messages would otherwise turn every
    full collection into a multi-millisecond pause that lands on whichever op triggers it.

    Only the young generations are collected first: a full collection of a heap holding the Agents
    SDK takes ~0.1 s, and ``run`` does one before the rounds; garbage frozen here is freed later."""
    gc.collect(1)
    gc.freeze()
    try:
        yield
    finally:
        gc.unfreeze()


def time_sync(n: int, op: Callable[[int], object]) -> Sample:
    """Run ``op(0) .. op(n-1)`` back to back; wall, per-op latency and this process's CPU time."""
    lat = [0] * n
    clock = time.perf_counter_ns
    with quiet_heap():
        cpu0, t0 = time.process_time_ns(), clock()
        for i in range(n):
            start = clock()
            op(i)
            lat[i] = clock() - start
        wall, cpu = clock() - t0, time.process_time_ns() - cpu0
    return sample(lat, wall, cpu)


async def time_async(n: int, op: Callable[[int], Awaitable[object]]) -> Sample:
    """``time_sync`` for coroutines: each op awaited before the next starts."""
    lat = [0] * n
    clock = time.perf_counter_ns
    with quiet_heap():
        cpu0, t0 = time.process_time_ns(), clock()
        for i in range(n):
            start = clock()
            await op(i)
            lat[i] = clock() - start
        wall, cpu = clock() - t0, time.process_time_ns() - cpu0
    return sample(lat, wall, cpu)


async def time_concurrent(tasks: int, per_task: int, op: Callable[[int, int], Awaitable[object]]) -> Sample:
    """``tasks`` coroutines at once on this loop, each awaiting ``op(task, j)`` for j < ``per_task``
    in turn; throughput over all ops, latency of each op (queueing for a connection included)."""
    lat: list[int] = []
    clock = time.perf_counter_ns

    async def worker(t: int) -> None:
        for j in range(per_task):
            start = clock()
            await op(t, j)
            lat.append(clock() - start)

    with quiet_heap():
        cpu0, t0 = time.process_time_ns(), clock()
        await asyncio.gather(*(worker(t) for t in range(tasks)))
        wall, cpu = clock() - t0, time.process_time_ns() - cpu0
    return sample(lat, wall, cpu)


Runner = Callable[[int, int], Sample]
"""``runner(r, n)``: one system runs ``n`` ops of one case in round ``r`` (``r < 0``: warm-up);
any setup happens outside the timed part."""


@dataclass
class Case:
    """One operation, its systems, and each system's baseline (``None``: it is a baseline)."""

    op: str
    unit: str
    n: int
    systems: dict[str, Runner]
    baselines: dict[str, str | None]
    reference: str | None = None
    warmup: bool = True
    seconds: float = 0.0  # spent in the recorded rounds
    samples: dict[str, list[Sample]] = field(default_factory=dict)
    checks: dict[str, list[dict[str, Any]]] = field(default_factory=dict)


def run(cases: Sequence[Case], rounds: int, warmup: bool = True) -> None:
    """Interleaved rounds: every case, every system, system order rotated each round."""
    if warmup:  # not recorded: connections, script load (EVALSHA), caches, lazy imports
        t0 = time.monotonic()
        for case in (c for c in cases if c.warmup):
            for runner in case.systems.values():
                runner(-1, max(1, case.n // 10))
        print(f"  warm-up done ({time.monotonic() - t0:.0f} s)", file=sys.stderr)
    gc.collect()
    for r in range(rounds):
        t0 = time.monotonic()
        for case in cases:
            names = list(case.systems)
            k = r % len(names)
            start = time.monotonic()
            for name in names[k:] + names[:k]:
                case.samples.setdefault(name, []).append(case.systems[name](r, case.n))
            case.seconds += time.monotonic() - start
        print(f"  round {r + 1}/{rounds} done ({time.monotonic() - t0:.0f} s)", file=sys.stderr)


def _ratios(samples: list[Sample], base: list[Sample]) -> list[float]:
    return [s.ops_per_s / b.ops_per_s for s, b in zip(samples, base, strict=True)]


def summarize(case: Case) -> list[dict[str, Any]]:
    """One row per system: medians over rounds, and per-round ratios with their median."""
    rows = []
    for name, samples in case.samples.items():
        base = case.baselines[name]
        ratios = _ratios(samples, case.samples[base]) if base else [1.0] * len(samples)
        ref = case.reference
        vs_ref = _ratios(samples, case.samples[ref]) if ref in case.samples and name != ref else None
        rows.append(
            {
                "op": case.op,
                "unit": case.unit,
                "system": name,
                "baseline": base or name,
                "ops": samples[0].ops,
                **{k: statistics.median(getattr(s, k) for s in samples) for k in METRICS},
                "ratio_vs_raw": statistics.median(ratios),
                "ratios": ratios,
                "ratio_vs_ref": statistics.median(vs_ref) if vs_ref else None,
                "ratios_vs_ref": vs_ref,
                "rounds": [asdict(s) for s in samples],
                "checks": case.checks.get(name, []),
                "case_seconds": round(case.seconds, 1),
            }
        )
    return rows


def machine(client: redis.Redis, source: str, package: str, module_file: str) -> dict[str, Any]:
    """Date, machine, versions and the git commit ``module_file``'s package was imported from."""
    info = client.info("server")
    model = ""
    try:
        with open("/proc/cpuinfo") as f:
            model = next((ln.split(":", 1)[1].strip() for ln in f if ln.startswith("model name")), "")
    except OSError:
        pass
    return {
        "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "nproc": os.cpu_count(),
        "cpu": model,
        "loadavg": os.getloadavg(),
        "python": platform.python_version(),
        "redis_server": info.get("redis_version"),
        "server": source,
        "redis_py": redis.__version__,
        "hiredis": version("hiredis"),
        package: version(package),
        "commit": commit(os.path.dirname(module_file)),
        "library_commit": commit(os.path.dirname(module_file), last_change=True),
    }


def commit(where: str, last_change: bool = False) -> str:
    """The git commit of the checkout holding ``where`` (with ``last_change``: the last commit that
    changed files under ``where``), ``-dirty`` if files there differ from it."""
    try:
        git = ["git", "-C", where]
        ask = ["log", "-1", "--format=%h", "--", "."] if last_change else ["rev-parse", "--short", "HEAD"]
        head = subprocess.run([*git, *ask], capture_output=True, check=True)
        dirty = subprocess.run([*git, "status", "--porcelain", "."], capture_output=True, check=True)
    except (OSError, subprocess.CalledProcessError):
        return "-"
    return head.stdout.decode().strip() + ("-dirty" if dirty.stdout.strip() else "")


def version(dist: str) -> str:
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return "-"


def command_stats(client: redis.Redis) -> dict[str, tuple[int, float]]:
    """``INFO commandstats`` as command -> (calls, usec): read-only, nothing is reset."""
    stats = client.info("commandstats")
    return {k.removeprefix("cmdstat_"): (int(v["calls"]), float(v["usec"])) for k, v in stats.items()}


def server_us_per_call(
    before: dict[str, tuple[int, float]], after: dict[str, tuple[int, float]]
) -> dict[str, dict[str, float]]:
    """Server time per call of each command between two ``command_stats`` snapshots."""
    out = {}
    for name, (calls, usec) in after.items():
        calls0, usec0 = before.get(name, (0, 0.0))
        if calls > calls0:
            out[name] = {"calls": calls - calls0, "us_per_call": (usec - usec0) / (calls - calls0)}
    return out


@contextmanager
def server(pin: str) -> Iterator[tuple[str, str]]:
    """``(url, description)``: ``REDIS_URL`` if set, else a throw-away redis-server on loopback.

    ``pin`` places this process and its own server: ``same`` (both on CPU 0: no cross-CPU wake-ups,
    the steadiest figures, client and server time add up) or ``split`` (CPU 0 and CPU 1)."""
    url = os.environ.get("REDIS_URL")
    if url:
        parts = urlsplit(url)  # describe it without any password it may carry
        yield url, f"REDIS_URL {parts.scheme}://{parts.hostname}:{parts.port or 6379}{parts.path}"
        return
    with RedisServer() as srv:
        where = ""
        if pin != "none":
            assert srv.process is not None
            os.sched_setaffinity(0, {0})
            os.sched_setaffinity(srv.process.pid, {0 if pin == "same" else 1})
            where = ", client+server pinned to CPU 0" if pin == "same" else ", client CPU 0, server CPU 1"
        yield srv.url, f"own redis-server on {srv.host}:{srv.port}, no persistence{where}"
