"""What ``encryption=`` costs: append, a cold read and a warm (cached) read, with against without.

Two synchronous stores on one Redis, the same but for ``encryption=Encryption({"k": key},
current="k")``. Each round runs every case for both stores back to back (the order alternating
round by round, so a noisy moment lands on both); a case's figure is the median latency of its ops in
that round, and the ratio is taken within each round, then its median over rounds. Messages are
``--size`` bytes of text; a read reads a whole session of ``--history`` messages: cold with no
history cache (every message fetched and opened), warm from the cache (one round trip, nothing new
to open). ``REDIS_URL`` or a throw-away redis-server.

    .venv/bin/python benchmarks/bench_encryption.py [--rounds 7] [--ops 400] [--history 100] [--size 1000]
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
import uuid
from collections.abc import Callable
from contextlib import ExitStack
from typing import Any

from redis_sessions import AgentMessage, SessionStore
from redis_sessions.embedded import RedisServer
from redis_sessions.encryption import Encryption


def median_us(n: int, op: Callable[[int], object]) -> float:
    """The median latency of ``n`` calls of ``op(i)``, in microseconds."""
    times = []
    for i in range(n):
        start = time.perf_counter_ns()
        op(i)
        times.append(time.perf_counter_ns() - start)
    return statistics.median(times) / 1000


def cases(store: SessionStore, cold: SessionStore, args: Any) -> dict[str, Callable[[], float]]:
    text = "x" * args.size
    history = store.create()
    store.extend(history, [AgentMessage.user(text) for _ in range(args.history)])
    store.messages(history)  # the warm reader's cache holds it
    target = store.create()
    return {
        "append": lambda: median_us(args.ops, lambda _: store.append(target, AgentMessage.user(text))),
        "cold read": lambda: median_us(args.ops // 4, lambda _: cold.messages(history)),
        "warm read": lambda: median_us(args.ops, lambda _: store.messages(history)),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--ops", type=int, default=400)
    parser.add_argument("--history", type=int, default=100)
    parser.add_argument("--size", type=int, default=1000)
    args = parser.parse_args()
    encryption = Encryption({"k": os.urandom(32)}, current="k")
    with ExitStack() as stack:
        url = os.environ.get("REDIS_URL") or stack.enter_context(RedisServer()).url
        prefix = f"rsbench-{uuid.uuid4().hex[:8]}"
        systems = {}
        for name, options in {"plain": {}, "encrypted": {"encryption": encryption}}.items():
            store = stack.enter_context(SessionStore.from_url(url, prefix=prefix, **options))
            cold = stack.enter_context(SessionStore.from_url(url, prefix=prefix, cache_messages=0, **options))
            systems[name] = cases(store, cold, args)
        figures: dict[tuple[str, str], list[float]] = {}
        for name in systems:  # a warm-up round, not counted
            for run in systems[name].values():
                run()
        for round_ in range(args.rounds):
            order = list(systems) if round_ % 2 == 0 else list(reversed(systems))
            for case in systems["plain"]:
                for name in order:
                    figures.setdefault((case, name), []).append(systems[name][case]())
        print(f"{args.rounds} rounds, {args.ops} ops, {args.size} B messages, reads of {args.history}")
        print(f"{'case':<10} {'plain p50 µs':>13} {'encrypted p50 µs':>17} {'ratio':>7}")
        for case in systems["plain"]:
            plain, sealed = figures[(case, "plain")], figures[(case, "encrypted")]
            ratio = statistics.median(s / p for s, p in zip(sealed, plain, strict=True))
            medians = f"{statistics.median(plain):>13.1f} {statistics.median(sealed):>17.1f}"
            print(f"{case:<10} {medians} {ratio:>7.2f}")


if __name__ == "__main__":
    main()
