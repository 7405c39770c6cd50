"""Concurrent asyncio appends on one store against raw redis.asyncio and two floors (issue 15).

    .venv/bin/python benchmarks/bench_concurrent.py --pin same            # 7 rounds, both cases
    .venv/bin/python benchmarks/bench_concurrent.py --rounds 5 --case 50 --profile /tmp/cc.prof
    valgrind --tool=callgrind --instr-atstart=no --callgrind-out-file=/tmp/cg.out \
        .venv/bin/python benchmarks/bench_concurrent.py --case 50 --rounds 1 --callgrind store
    grep ^totals /tmp/cg.out                  # the store's timed appends' instructions, / 10,000 each

The suite's two concurrent cases, alone: (a) 50 tasks on 50 sessions, each appending ``--per``
messages one by one; (b) 1,000 sessions, each appending 10. Each round runs, order rotated:

``raw``        raw ``redis.asyncio`` ``RPUSH`` of the same bytes (the baseline of every ratio)
``store``      ``AsyncSessionStore.append`` (auto-pipelined: ``_aio_pipelining``)
``floor``      no library: each call encodes its message with the store's codec (validated) and
               counts its tokens as the store does, packs ``append.lua``'s EVALSHA with the store's
               keys and arguments (``hiredis.pack_command``), and queues it; once per loop iteration
               the queue goes out as one write on one connection (an ``asyncio.Protocol``), and a
               hiredis reader hands each reply to its future in order. What any Python client can
               do with this script.
``floor noop`` the same with a script that returns at once: the floor's own client cost.

Reported: medians over rounds of appends/s and client CPU µs per append, and the ratio to ``raw``
taken within each round. ``--pin same`` puts this process and its own server on CPU 0.
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import os
import statistics
import subprocess
import sys
import time
import uuid
from collections.abc import Awaitable, Callable, Sequence

import redis
import redis.asyncio
from _floor import open_floor
from _harness import Sample, server, time_concurrent
from _workload import SEED, make_messages
from redis.asyncio import BlockingConnectionPool

from redis_sessions import AsyncSessionStore

POOL = 50


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--per", type=int, default=200, help="appends per task, 50-task case")
    parser.add_argument("--case", choices=("50", "1000", "both"), default="both")
    parser.add_argument("--pin", choices=("none", "same", "split"), default="none")
    parser.add_argument("--only", help="comma-separated systems to run (default all)")
    parser.add_argument("--profile", metavar="PATH", help="cProfile the store's runs into PATH")
    parser.add_argument(
        "--callgrind", metavar="SYSTEM", help="under valgrind: count SYSTEM's timed runs only (not warm-up)"
    )
    args = parser.parse_args(argv)
    cases = {"50": [(50, args.per)], "1000": [(1000, 10)], "both": [(50, args.per), (1000, 10)]}
    with server(args.pin) as (url, source):
        print(source, file=sys.stderr)
        runner = asyncio.Runner()
        try:
            for sessions, per in cases[args.case]:
                report(sessions, per, runner.run(rounds(url, sessions, per, args)))
        finally:
            runner.close()
    return 0


async def rounds(url: str, sessions: int, per: int, args: argparse.Namespace) -> dict[str, list[Sample]]:
    prefix = f"rsbench-{uuid.uuid4().hex[:8]}"
    raw = redis.asyncio.Redis(connection_pool=BlockingConnectionPool.from_url(url, max_connections=POOL))
    store = AsyncSessionStore.from_url(url, prefix=prefix)
    msgs = make_messages(SEED, per, id_prefix="m")
    probe = uuid.uuid4()
    payloads = [store.transport.core.encode(probe, m) for m in msgs]
    scripts = (("floor", "append"), ("floor noop", "noop"))
    floors = {name: await open_floor(url, store, script) for name, script in scripts}
    profile = cProfile.Profile() if args.profile else None
    only = set(args.only.split(",")) if args.only else None

    async def timed(name: str, r: int, op: Callable[[int, int], Awaitable[object]]) -> Sample:
        """``time_concurrent`` of ``op``; under ``--callgrind name``, its recorded rounds counted."""
        counted = args.callgrind == name and r >= 0
        if counted:
            counting(True)
        try:
            return await time_concurrent(sessions, per, op)
        finally:
            if counted:
                counting(False)

    async def run_raw(r: int) -> Sample:
        keys = [f"{prefix}:raw:{r}:{t}" for t in range(sessions)]
        s = await timed("raw", r, lambda t, j: raw.rpush(keys[t], payloads[j]))
        await raw.delete(*keys)
        return s

    async def run_store(r: int) -> Sample:
        sids = [await store.create(model="bench") for _ in range(sessions)]
        if profile is not None and r >= 0:
            profile.enable()
        s = await timed("store", r, lambda t, j: store.append(sids[t], msgs[j]))
        if profile is not None:
            profile.disable()
        assert all([await store.append(sid, msgs[-1]) == per for sid in sids])
        for sid in sids:
            await store.delete(sid)
        return s

    def run_floor(name: str) -> Callable[[int], Awaitable[Sample]]:
        op_for, _ = floors[name]

        async def go(r: int) -> Sample:
            sids = [await store.create(model="bench") for _ in range(sessions)]
            s = await timed(name, r, lambda t, j: op_for(sids[t], msgs[j]))
            for sid in sids:
                await store.delete(sid)
            return s

        return go

    systems: dict[str, Callable[[int], Awaitable[Sample]]] = {
        "raw": run_raw,
        "store": run_store,
        "floor": run_floor("floor"),
        "floor noop": run_floor("floor noop"),
    }
    if only:
        systems = {k: v for k, v in systems.items() if k in only or k == "raw"}
    names = list(systems)
    out: dict[str, list[Sample]] = {n: [] for n in names}
    for n in names:  # warm-up
        await systems[n](-1)
    for r in range(args.rounds):
        order = names[r % len(names) :] + names[: r % len(names)]
        for n in order:
            out[n].append(await systems[n](r))
    for _, close in floors.values():
        close()
    await raw.aclose()
    await store.client.aclose()
    if profile is not None:
        profile.dump_stats(args.profile)
    return out


def counting(on: bool) -> None:
    """Switch callgrind's counting in this process (``--callgrind``): instructions, which the machine's
    load does not move as it moves time (it polls for the command: hence the pause)."""
    pid = str(os.getpid())
    subprocess.run(["callgrind_control", "-i", "on" if on else "off", pid], check=True, capture_output=True)
    time.sleep(0.5)


def report(sessions: int, per: int, out: dict[str, list[Sample]]) -> None:
    rounds = len(out["raw"])
    print(f"\n{sessions} tasks x {per} appends, {rounds} rounds (medians; ratio to raw within rounds)")
    print(f"{'system':<12} {'appends/s':>10} {'x raw':>6} {'(min-max)':>12} {'cpu us/op':>10}")
    for name, samples in out.items():
        ratios = [s.ops_per_s / b.ops_per_s for s, b in zip(samples, out["raw"], strict=True)]
        print(
            f"{name:<12} {statistics.median(s.ops_per_s for s in samples):>10,.0f}"
            f" {statistics.median(ratios):>6.2f} {f'{min(ratios):.2f}-{max(ratios):.2f}':>12}"
            f" {statistics.median(s.cpu_us_per_op for s in samples):>10.1f}"
        )


if __name__ == "__main__":
    sys.exit(main())
