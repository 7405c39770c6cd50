"""Streamed replies (issue 19): deltas/s from one producer, and fan-out to watchers in other processes.

1. Throughput: one producer (sync, then async) writes ``--deltas`` deltas of 4 bytes into one reply
   with the default coalescing (64 deltas or 2 ms) and finishes it; deltas/s counts the finish.
   Also with ``flush_deltas=1`` (a round trip per delta) for comparison.
2. Fan-out and latency: ``--watchers`` processes follow the session with ``watch(partial=True)``;
   one producer writes ``--paced`` deltas ``--interval`` s apart, each carrying the time it was
   written; every watcher records ``now - written`` for each delta (p50/p99/max over all watchers)
   and must see every delta once, in order, then the final message. Then the same flat out
   (``--deltas`` deltas, no pause): deltas delivered per second summed over the watchers.

``REDIS_URL`` or a throw-away redis-server (loopback, no persistence)::

    .venv/bin/python benchmarks/bench_stream.py [--deltas 50000] [--watchers 10] [--paced 3000]
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing as mp
import os
import time
import uuid
from contextlib import ExitStack
from typing import Any

from redis_sessions import Appended, AsyncSessionStore, Delta, SessionStore
from redis_sessions.embedded import RedisServer


def watcher(url: str, prefix: str, sid: str, ready: Any, out: Any) -> None:
    with SessionStore.from_url(url, prefix=prefix) as store:
        delays, indexes, started = [], [], 0.0
        ready.set()
        for event in store.watch(sid, partial=True, timeout=60):
            if isinstance(event, Delta):
                started = started or time.perf_counter()
                delays.append(time.time_ns() - int(event.text))
                indexes.append(event.index)
            elif isinstance(event, Appended) and event.deltas is not None:
                break
        out.put((delays, indexes, time.perf_counter() - started))


def produce(store: SessionStore, sid: str, count: int, interval: float, flush_interval: float) -> float:
    started = time.perf_counter()
    with store.stream(sid, flush_interval=flush_interval) as reply:
        for _ in range(count):
            reply.write(str(time.time_ns()))
            if interval:
                time.sleep(interval)
    return time.perf_counter() - started


async def produce_async(url: str, prefix: str, count: int, **options: Any) -> float:
    async with AsyncSessionStore.from_url(url, prefix=prefix) as store:
        sid = await store.create()
        started = time.perf_counter()
        async with store.stream(sid, **options) as reply:
            for _ in range(count):
                await reply.write("tok ")
        return time.perf_counter() - started


def fan_out(url: str, prefix: str, store: SessionStore, args: Any, count: int, interval: float) -> None:
    sid = str(store.create())
    ctx = mp.get_context("spawn")
    out = ctx.Queue()
    readies = [ctx.Event() for _ in range(args.watchers)]
    procs = [ctx.Process(target=watcher, args=(url, prefix, sid, r, out)) for r in readies]
    for proc in procs:
        proc.start()
    for ready in readies:
        ready.wait(60)
    time.sleep(1.0)  # let the watchers subscribe (deltas sent earlier are caught up anyway)
    took = produce(store, sid, count, interval, args.flush_interval)
    results = [out.get(timeout=120) for _ in procs]
    for proc in procs:
        proc.join(30)
    delays = sorted(d / 1e3 for got, _, _ in results for d in got)
    ok = all(indexes == list(range(count)) for _, indexes, _ in results)

    def pct(p: float) -> float:
        return delays[min(len(delays) - 1, int(p * len(delays)))]

    pace = f"paced {interval} s apart" if interval else "flat out"
    pace += f", flush_interval {args.flush_interval} s"
    print(
        f"  {args.watchers} watchers, {count} deltas {pace}:"
        f" producer {count / took:,.0f} deltas/s; latency write->watcher p50 {pct(0.5):,.0f} µs,"
        f" p99 {pct(0.99):,.0f} µs, max {delays[-1]:,.0f} µs;"
        f" delivered {sum(len(g) for g, _, _ in results) / max(t for _, _, t in results):,.0f} deltas/s"
        f" in all; every delta once, in order: {ok}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--deltas", type=int, default=50_000)
    parser.add_argument("--watchers", type=int, default=10)
    parser.add_argument("--paced", type=int, default=3000)
    parser.add_argument("--interval", type=float, default=0.001)
    parser.add_argument("--flush-interval", type=float, default=0.002, help="the stream's flush_interval")
    args = parser.parse_args()
    with ExitStack() as stack:
        url = os.environ.get("REDIS_URL") or stack.enter_context(RedisServer()).url
        prefix = f"rsbench-{uuid.uuid4().hex[:8]}"
        store = stack.enter_context(SessionStore.from_url(url, prefix=prefix))
        print("throughput, one producer, one reply:")
        for label, options in (("default coalescing", {}), ("flush_deltas=1", {"flush_deltas": 1})):
            n = args.deltas if options == {} else args.deltas // 10
            sid = str(store.create())
            started = time.perf_counter()
            with store.stream(sid, **options) as reply:
                for _ in range(n):
                    reply.write("tok ")
            sync = n / (time.perf_counter() - started)
            asynchronous = n / asyncio.run(produce_async(url, prefix, n, **options))
            print(f"  {label}: sync {sync:,.0f} deltas/s, async {asynchronous:,.0f} deltas/s ({n} deltas)")
        print("fan-out to watcher processes:")
        fan_out(url, prefix, store, args, args.paced, args.interval)
        fan_out(url, prefix, store, args, args.deltas, 0.0)


if __name__ == "__main__":
    main()
