"""Sync append with the lean line's held connection against the pool's get/release per call (issue 15).

    .venv/bin/python benchmarks/bench_held.py                 # 7 interleaved rounds x 2000 appends
    .venv/bin/python benchmarks/bench_held.py --rounds 3 --ops 500

A ``SessionStore`` built by ``from_url`` owns its client and holds one connection for its lean line
(``_aio_lean``); with ``max_connections`` below 8 it holds none and takes a pool connection per call,
all else equal: the pair shows what holding saves. Also measured, each round, order rotated: raw
redis-py ``r.rpush`` of the same bytes (the baseline of every ratio) and a store on a client the
caller passed in (never held: what ``suite.py`` measures). Reported: medians over rounds of µs per
append (wall), client CPU µs per append, and the ratio to raw ``rpush`` taken within each round.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import uuid
from collections.abc import Callable, Sequence
from typing import Any

import redis
from _harness import Sample, server, time_sync
from _workload import SEED, make_messages

from redis_sessions import SessionStore


def systems(url: str, prefix: str, n: int) -> tuple[dict[str, Callable[[int], object]], list[Any]]:
    """The appending op of each system (op ``i`` appends the ``i``-th of ``n`` messages, each id
    new), and what to close afterwards."""
    raw = redis.Redis.from_url(url)
    held = SessionStore.from_url(url, prefix=prefix)
    pooled = SessionStore.from_url(url, prefix=prefix, max_connections=7)  # < 8: holds none
    given = SessionStore(redis.Redis.from_url(url), prefix=prefix)
    assert held.transport.lean._holding is not None
    assert pooled.transport.lean._holding is None
    sid = held.create()
    payloads = [held.transport.core.encode(sid, m) for m in make_messages(SEED, 50)]
    key = f"{prefix}:raw"
    ops: dict[str, Callable[[int], object]] = {"raw r.rpush": lambda i: raw.rpush(key, payloads[i % 50])}
    for k, (name, store) in enumerate(
        {"from_url, held": held, "from_url, pooled": pooled, "caller's client": given}.items()
    ):
        msgs = make_messages(SEED + k, n, id_prefix=f"s{k}-")
        sid = store.create()
        ops[name] = lambda i, store=store, sid=sid, msgs=msgs: store.append(sid, msgs[i])
    return ops, [raw, held, pooled, given]


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--ops", type=int, default=2000)
    args = parser.parse_args(argv)
    with server("none") as (url, source):
        warm = 50
        ops, closing = systems(url, f"rsbench-{uuid.uuid4().hex[:8]}", warm + args.rounds * args.ops)
        names = list(ops)
        for op in ops.values():  # warm: scripts loaded, connections made
            for i in range(warm):
                op(i)
        results: dict[str, list[Sample]] = {name: [] for name in names}
        for rnd in range(args.rounds):
            first = warm + rnd * args.ops
            for name in names[rnd % len(names) :] + names[: rnd % len(names)]:
                op = ops[name]
                results[name].append(time_sync(args.ops, lambda i, op=op, first=first: op(first + i)))
        for thing in closing:
            thing.close()
    print(f"server: {source}; {args.rounds} rounds x {args.ops} appends; medians over rounds\n")
    print("| system | µs/append (wall) | client CPU µs/append | x raw `rpush` (within rounds) |")
    print("| --- | ---: | ---: | ---: |")
    raw = results[names[0]]
    for name in names:
        wall = statistics.median(1e6 / s.ops_per_s for s in results[name])
        cpu = statistics.median(s.cpu_us_per_op for s in results[name])
        ratio = statistics.median(s.ops_per_s / r.ops_per_s for s, r in zip(results[name], raw, strict=True))
        print(f"| {name} | {wall:.1f} | {cpu:.1f} | {ratio:.2f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
