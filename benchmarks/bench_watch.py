"""Watch latency across processes: from a writer's append returning to a watcher yielding it.

One writer process appends ``--messages`` messages (paced, ``--interval`` s apart) carrying the
time it sent them; one watcher process per ``--watchers`` follows the session with ``watch`` and
records, for each message, ``now - sent``. Prints p50/p90/p99/max in µs and checks every watcher saw
every message once, in order. ``REDIS_URL`` or a throw-away redis-server.

    .venv/bin/python benchmarks/bench_watch.py [--messages 2000] [--watchers 2] [--interval 0.0005]
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import os
import statistics
import time
import uuid
from contextlib import ExitStack
from typing import Any

from redis_sessions import AgentMessage, SessionStore
from redis_sessions.embedded import RedisServer


def watcher(url: str, prefix: str, sid: str, count: int, ready: Any, out: Any) -> None:
    store = SessionStore.from_url(url, prefix=prefix)
    delays, seqs = [], []
    ready.set()
    for item in store.watch(sid, after_seq=0, timeout=30):
        delays.append(time.time() - float(item.message.text))
        seqs.append(item.seq)
        if len(seqs) == count:
            break
    out.put((delays, seqs))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=2000)
    parser.add_argument("--watchers", type=int, default=2)
    parser.add_argument("--interval", type=float, default=0.0005)
    args = parser.parse_args()
    with ExitStack() as stack:
        url = os.environ.get("REDIS_URL") or stack.enter_context(RedisServer()).url
        prefix = f"rsbench-{uuid.uuid4().hex[:8]}"
        store = stack.enter_context(SessionStore.from_url(url, prefix=prefix))
        sid = str(store.create())
        ctx = mp.get_context("spawn")
        out = ctx.Queue()
        procs, readies = [], []
        for _ in range(args.watchers):
            ready = ctx.Event()
            proc = ctx.Process(target=watcher, args=(url, prefix, sid, args.messages, ready, out))
            proc.start()
            procs.append(proc)
            readies.append(ready)
        for ready in readies:
            ready.wait(30)
        time.sleep(0.5)  # let the watchers subscribe; messages sent earlier are caught up anyway
        for _ in range(args.messages):
            store.append(sid, AgentMessage.user(repr(time.time())))
            time.sleep(args.interval)
        results = [out.get(timeout=60) for _ in procs]
        for proc in procs:
            proc.join(10)
        store.delete(sid)
    delays = sorted(d for ds, _ in results for d in ds)
    ok = all(seqs == list(range(1, args.messages + 1)) for _, seqs in results)

    def pct(p: float) -> float:
        return delays[min(len(delays) - 1, int(p * len(delays)))] * 1e6

    print(f"watch latency, {args.watchers} watcher processes x {args.messages} messages (µs)")
    print(f"p50 {pct(0.5):.0f}  p90 {pct(0.9):.0f}  p99 {pct(0.99):.0f}  max {delays[-1] * 1e6:.0f}")
    print(f"mean {statistics.fmean(delays) * 1e6:.0f}; every watcher saw every message once, in order: {ok}")
    raise SystemExit(0 if ok else 1)


if __name__ == "__main__":
    main()
