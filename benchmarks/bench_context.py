"""Context that fits the window (issue 20): budgeted reads, token counting on append, forks.

1. ``context(sid, 8000)`` of a 10,000-message session (the suite's message mix, counted with the
   default estimate), cold (``cache_messages=0``) and warm (the default store, re-reading a session
   it holds, after one more append), against reading it all and trimming in the client as a LangChain
   user would: ``RedisChatMessageHistory(...).messages`` (this package's history, over the same
   store, cold and warm) then ``trim_messages(max_tokens=8000, strategy="last", start_on="human",
   token_counter=count_tokens_approximately)``; and ``messages(sid)`` alone (the read without the
   conversion to LangChain messages and the trimming), cold and warm.
2. ``append`` of one message, counted (this branch) against the code at ``--baseline`` (a checkout
   without counting, run in a child process on the same server): client time per append, and the
   server's ``usec_per_call`` of ``EVALSHA`` from ``INFO commandstats``.
3. ``fork`` of a 1,000- and a 10,000-message session.

Every figure is the median over ``--rounds`` rounds; ratios are taken within a round, then the median.
``REDIS_URL`` or a throw-away redis-server (loopback, no persistence)::

    .venv/bin/python benchmarks/bench_context.py [--rounds 7] [--baseline /path/to/checkout]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import redis

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _workload import SEED, make_messages


def timed(call: Any, repeat: int) -> float:
    """Median seconds of ``call()`` over ``repeat`` calls."""
    times = []
    for _ in range(repeat):
        started = time.perf_counter()
        call()
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def append_cost(url: str, prefix: str, count: int) -> dict[str, Any]:
    """Client µs per append and the server's µs per EVALSHA, for ``count`` appends."""
    from redis_sessions import SessionStore

    raw = redis.Redis.from_url(url)
    messages = make_messages(SEED + 7, count)
    with SessionStore.from_url(url, prefix=prefix) as store:
        sid = store.create()
        store.append(sid, messages[0])
        raw.config_resetstat()
        started = time.perf_counter()
        for message in messages[1:]:
            store.append(sid, message)
        took = time.perf_counter() - started
        stats = raw.info("commandstats").get("cmdstat_evalsha", {})
        store.delete(sid)
    return {
        "client_us": took / (count - 1) * 1e6,
        "server_us": float(stats.get("usec_per_call", 0)),
        "package": str(Path(sys.modules["redis_sessions"].__file__ or "").parent),
    }


def bench_context(url: str, prefix: str, rounds: int) -> dict[str, Any]:
    from langchain_core.messages import trim_messages
    from langchain_core.messages.utils import count_tokens_approximately

    from redis_sessions import SessionStore
    from redis_sessions.integrations.langchain import RedisChatMessageHistory

    messages = make_messages(SEED, 10_000)
    with ExitStack() as stack:
        cold = stack.enter_context(SessionStore.from_url(url, prefix=prefix, cache_messages=0))
        warm = stack.enter_context(SessionStore.from_url(url, prefix=prefix))
        history = RedisChatMessageHistory("bench-context", cold)
        cold.delete(history.uuid)
        cold.create(session_id=history.uuid)
        for i in range(0, len(messages), 1000):
            cold.extend(history.uuid, messages[i : i + 1000])
        sid = history.uuid
        warm_history = RedisChatMessageHistory("bench-context", warm)

        def trimmed(source: RedisChatMessageHistory) -> int:
            kept = trim_messages(
                source.messages,
                max_tokens=8000,
                strategy="last",
                start_on="human",
                token_counter=count_tokens_approximately,
            )
            return len(kept)

        keys = ("cold", "warm", "lc_cold", "lc_warm", "read_cold", "read_warm")
        figures: dict[str, list[float]] = {k: [] for k in keys}
        extra = make_messages(SEED + 1, rounds * 2)
        warm.context(sid, 8000)
        trimmed(warm_history)
        for r in range(rounds):
            figures["cold"].append(timed(lambda: cold.context(sid, 8000), 5))
            figures["lc_cold"].append(timed(lambda: trimmed(history), 1))
            warm.append(sid, extra[r])  # the warm reads fetch what is new only
            figures["warm"].append(timed(lambda: warm.context(sid, 8000), 5))
            figures["lc_warm"].append(timed(lambda: trimmed(warm_history), 1))
            figures["read_cold"].append(timed(lambda: cold.messages(sid), 1))  # the read alone
            figures["read_warm"].append(timed(lambda: warm.messages(sid), 1))
        window = cold.context(sid, 8000)
        kept = trimmed(history)
        cold.delete(sid)
    out: dict[str, Any] = {k: statistics.median(v) * 1e3 for k, v in figures.items()}
    out["ratio_cold"] = statistics.median(
        lc / ours for lc, ours in zip(figures["lc_cold"], figures["cold"], strict=True)
    )
    out["ratio_warm"] = statistics.median(
        lc / ours for lc, ours in zip(figures["lc_warm"], figures["warm"], strict=True)
    )
    out["messages_kept"], out["lc_messages_kept"], out["tokens"] = len(window.messages), kept, window.tokens
    return out


def bench_fork(url: str, prefix: str, rounds: int) -> dict[str, float]:
    from redis_sessions import SessionStore

    out = {}
    with SessionStore.from_url(url, prefix=prefix) as store:
        for size in (1_000, 10_000):
            sid = store.create()
            messages = make_messages(SEED + size, size)
            for i in range(0, size, 1000):
                store.extend(sid, messages[i : i + 1000])
            made = []

            def fork(made: list[Any] = made, sid: Any = sid) -> None:
                made.append(store.fork(sid))

            out[f"fork_{size}_ms"] = statistics.median(timed(fork, 1) for _ in range(rounds)) * 1e3
            for new in [*made, sid]:
                store.delete(new)
    return out


def append_child(url: str, package: str, appends: int) -> dict[str, Any]:
    """``append_cost`` in a new process importing redis_sessions from ``package`` (a checkout)."""
    env = {**os.environ, "BENCH_APPEND_ONLY": "1", "REDIS_URL": url, "PYTHONPATH": package}
    child = [sys.executable, __file__, "--appends", str(appends)]
    result: dict[str, Any] = json.loads(
        subprocess.run(child, env=env, check=True, capture_output=True).stdout
    )
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--appends", type=int, default=5000)
    parser.add_argument("--baseline", help="a checkout of redis-sessions without token counting")
    parser.add_argument("--json", help="write the figures here")
    args = parser.parse_args()
    if os.environ.get("BENCH_APPEND_ONLY"):
        print(json.dumps(append_cost(os.environ["REDIS_URL"], "bench-base", args.appends)))
        return
    with ExitStack() as stack:
        url = os.environ.get("REDIS_URL")
        if not url:
            from redis_sessions.embedded import RedisServer

            url = stack.enter_context(RedisServer()).url
        results: dict[str, Any] = {"context": bench_context(url, "bench-ctx", args.rounds)}
        results["fork"] = bench_fork(url, "bench-fork", args.rounds)
        counted, base = [], []
        for _ in range(args.rounds if args.baseline else 1):  # both in fresh child processes, in turn
            counted.append(append_child(url, str(Path(__file__).resolve().parent.parent), args.appends))
            if args.baseline:
                base.append(append_child(url, args.baseline, args.appends))
        results["append"] = {
            "counted_package": counted[0]["package"],
            "counted_client_us": statistics.median(c["client_us"] for c in counted),
            "counted_server_us": statistics.median(c["server_us"] for c in counted),
        }
        if base:
            results["append"] |= {
                "base_client_us": statistics.median(b["client_us"] for b in base),
                "base_server_us": statistics.median(b["server_us"] for b in base),
                "base_package": base[0]["package"],
                "client_ratio": statistics.median(
                    c["client_us"] / b["client_us"] for c, b in zip(counted, base, strict=True)
                ),
                "server_ratio": statistics.median(
                    c["server_us"] / b["server_us"] for c, b in zip(counted, base, strict=True)
                ),
            }
    print(json.dumps(results, indent=2))
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
