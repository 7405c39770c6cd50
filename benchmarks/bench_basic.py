"""Append and read throughput of redis-sessions against raw redis-py, measured in one run.

Reads are measured cold (a store without the history cache, like a fresh process) and warm (the
same store re-reading an unchanged history it holds: one round trip that proves the cache current).

    .venv/bin/python benchmarks/bench_basic.py [--rounds 5] [--ops 5000] [--json out.json]

With ``REDIS_URL`` set it uses that server under a unique key prefix and deletes only its own keys;
otherwise it starts a throw-away ``redis-server`` (nothing on disk). Method (issue 5's, so this
script can grow into that suite): the same deterministic message mix for every system; each round
runs every case for every system back to back (the order of systems alternates between rounds, so
neither side always runs second); figures are medians over rounds, and a ratio is taken within each
round and then the median of those ratios is reported.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import gc
import json
import os
import platform
import random
import statistics
import subprocess
import sys
import time
import uuid
from collections.abc import Awaitable, Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from importlib import metadata
from typing import Any
from urllib.parse import urlsplit

import msgspec
import redis
import redis.asyncio

import redis_sessions
from redis_sessions import AgentMessage, AsyncSessionStore, SessionStore, ToolUse
from redis_sessions.embedded import RedisServer

RAW, RS = "raw redis-py", "redis-sessions"
RS_COLD, RS_WARM = "redis-sessions cold", "redis-sessions warm"
RAW_ASYNC, RS_ASYNC = "raw redis.asyncio", "redis-sessions async"
SEED = 20240601
TEXT_BYTES, TOOL_INPUT_BYTES, TOOL_EVERY = 200, 500, 5
WORDS = ("the", "agent", "reads", "a", "file", "then", "calls", "tool", "and", "writes", "answer", "back")

# -- the workload ---------------------------------------------------------------------------------


def _text(rng: random.Random, size: int) -> str:
    out: list[str] = []
    n = 0
    while n < size:
        word = rng.choice(WORDS)
        out.append(word)
        n += len(word) + 1
    return " ".join(out)[:size]


def make_messages(seed: int, n: int) -> list[AgentMessage]:
    """``n`` messages: ≈200-byte texts (user/assistant), every 5th an assistant tool call with a
    ≈500-byte JSON input. Deterministic for a seed, ids included (and distinct across seeds)."""
    rng = random.Random(seed)
    out: list[AgentMessage] = []
    for i in range(n):
        mid = f"{rng.getrandbits(128):032x}"
        if i % TOOL_EVERY == TOOL_EVERY - 1:
            options: dict[str, str] = {}
            tool_input = {"path": f"/src/module_{i}.py", "query": _text(rng, 60), "options": options}
            while len(json.dumps(tool_input)) < TOOL_INPUT_BYTES:
                options[f"opt_{len(options)}"] = _text(rng, 40)
            call = ToolUse(id=f"toolu_{rng.getrandbits(64):016x}", name="read_file", input=tool_input)
            out.append(AgentMessage.assistant([call], id=mid))
        else:
            make = AgentMessage.user if i % 2 == 0 else AgentMessage.assistant
            out.append(make(_text(rng, TEXT_BYTES), id=mid))
    return out


def as_json(messages: Sequence[AgentMessage]) -> list[bytes]:
    """What the raw baseline stores: the same messages as JSON, encoded before any timing."""
    return [msgspec.json.encode(m) for m in messages]


# -- measuring ------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Sample:
    """One system running one case for one round."""

    ops: int
    ops_per_s: float
    p50_us: float
    p99_us: float
    cpu_us_per_op: float


def _sample(latencies_ns: list[int], wall_ns: int, cpu_ns: int) -> Sample:
    lat = sorted(latencies_ns)
    n = len(lat)
    return Sample(
        ops=n,
        ops_per_s=n / (wall_ns / 1e9),
        p50_us=lat[n // 2] / 1e3,
        p99_us=lat[min(n - 1, round(0.99 * (n - 1)))] / 1e3,
        cpu_us_per_op=cpu_ns / n / 1e3,
    )


@contextmanager
def _quiet_heap() -> Iterator[None]:
    """Keep the collector on (the ops' own garbage still triggers it, as in a real process) but
    out of the harness's fixtures: thousands of pre-built messages would otherwise turn every
    full collection into a multi-millisecond pause that lands on whichever op triggers it."""
    gc.collect()
    gc.freeze()
    try:
        yield
    finally:
        gc.unfreeze()


def time_sync(n: int, op: Callable[[int], object]) -> Sample:
    """Run ``op(0) .. op(n-1)`` back to back; wall, per-op latency and this process's CPU time."""
    lat = [0] * n
    clock = time.perf_counter_ns
    with _quiet_heap():
        cpu0, t0 = time.process_time_ns(), clock()
        for i in range(n):
            start = clock()
            op(i)
            lat[i] = clock() - start
        wall, cpu = clock() - t0, time.process_time_ns() - cpu0
    return _sample(lat, wall, cpu)


async def time_async(n: int, op: Callable[[int], Awaitable[object]]) -> Sample:
    """``time_sync`` for coroutines: each op awaited before the next starts."""
    lat = [0] * n
    clock = time.perf_counter_ns
    with _quiet_heap():
        cpu0, t0 = time.process_time_ns(), clock()
        for i in range(n):
            start = clock()
            await op(i)
            lat[i] = clock() - start
        wall, cpu = clock() - t0, time.process_time_ns() - cpu0
    return _sample(lat, wall, cpu)


Runner = Callable[[int, int], Sample]
"""``runner(r, n)``: one system runs ``n`` ops of one case in round ``r`` (``r < 0``: warm-up);
any setup happens outside the timed loop."""


@dataclass
class Case:
    op: str
    n: int
    baseline: str
    systems: dict[str, Runner]
    samples: dict[str, list[Sample]] = field(default_factory=dict)


# -- the systems ----------------------------------------------------------------------------------


class Bench:
    """The clients, keys and cases of one run; ``cleanup`` deletes every key it wrote."""

    def __init__(self, url: str, ops: int, codec: str) -> None:
        self.ops = ops
        self.prefix = f"rsbench-{uuid.uuid4().hex[:8]}"
        self.loop = asyncio.Runner()
        # Same connection options for both sides: only the library's own work differs.
        self.raw = redis.Redis.from_url(url)
        self.store = SessionStore(redis.Redis.from_url(url), prefix=self.prefix, codec=codec)
        # Cache off: every read is what a fresh process's first read does.
        cold = redis.Redis.from_url(url)
        self.cold = SessionStore(cold, prefix=self.prefix, codec=codec, cache_messages=0)
        self.araw = redis.asyncio.Redis.from_url(url)
        self.astore = AsyncSessionStore(redis.asyncio.Redis.from_url(url), prefix=self.prefix, codec=codec)
        self.raw_keys: list[str] = []
        self.sids: list[uuid.UUID] = []
        self._messages: dict[int, tuple[list[AgentMessage], list[bytes]]] = {}

    def messages(self, r: int, n: int) -> tuple[list[AgentMessage], list[bytes]]:
        """Round ``r``'s fresh messages (and their JSON), built before any timing; only the
        current round's are kept."""
        if r not in self._messages:
            msgs = make_messages(SEED + 1000 + r, self.ops)
            self._messages = {r: (msgs, as_json(msgs))}
        msgs, payloads = self._messages[r]
        return msgs[:n], payloads[:n]

    def raw_key(self, name: str) -> str:
        key = f"{self.prefix}:raw:{name}"
        self.raw_keys.append(key)
        return key

    def new_session(self) -> uuid.UUID:
        sid = self.store.create(model="bench")
        self.sids.append(sid)
        return sid

    # sequential append

    def raw_append(self, r: int, n: int) -> Sample:
        _, payloads = self.messages(r, n)
        key, rpush = self.raw_key(f"append:{r}"), self.raw.rpush
        sample = time_sync(len(payloads), lambda i: rpush(key, payloads[i]))
        assert self.raw.llen(key) == len(payloads)
        self.raw.delete(key)
        return sample

    def rs_append(self, r: int, n: int) -> Sample:
        msgs, _ = self.messages(r, n)
        sid, append = self.new_session(), self.store.append
        sample = time_sync(len(msgs), lambda i: append(sid, msgs[i]))
        assert append(sid, msgs[-1]) == len(msgs), "every append must have been stored"
        self.store.delete(sid)
        return sample

    def araw_append(self, r: int, n: int) -> Sample:
        _, payloads = self.messages(r, n)
        key, rpush = self.raw_key(f"aappend:{r}"), self.araw.rpush
        sample = self.loop.run(time_async(len(payloads), lambda i: rpush(key, payloads[i])))
        assert self.raw.llen(key) == len(payloads)
        self.raw.delete(key)
        return sample

    def ars_append(self, r: int, n: int) -> Sample:
        msgs, _ = self.messages(r, n)
        sid, append = self.new_session(), self.astore.append
        sample = self.loop.run(time_async(len(msgs), lambda i: append(sid, msgs[i])))
        assert self.store.append(sid, msgs[-1]) == len(msgs), "every append must have been stored"
        self.store.delete(sid)
        return sample

    # reads of a stored history (the same keys every round: reads change nothing)

    def read_case(self, size: int, n: int) -> Case:
        """Raw ``LRANGE`` + ``json.loads``; the store cold (no history cache, as a fresh process
        reads) and warm (re-reading an unchanged history it has cached: one round trip that
        proves the cache current)."""
        msgs = make_messages(SEED, size)
        key = self.raw_key(f"read:{size}")
        self.raw.delete(key)
        self.raw.rpush(key, *as_json(msgs))
        sid = self.new_session()
        self.store.extend(sid, msgs)
        assert self.store.messages(sid) == msgs, "the store must give back what it was given"
        assert self.cold.messages(sid) == msgs
        lrange, loads, cold, warm = self.raw.lrange, json.loads, self.cold.messages, self.store.messages

        def raw_read(i: int) -> list[Any]:
            return [loads(item) for item in lrange(key, 0, -1)]

        def cold_read(i: int) -> list[AgentMessage]:
            return cold(sid)

        def warm_read(i: int) -> list[AgentMessage]:
            return warm(sid)

        def runner(read: Callable[[int], object]) -> Runner:
            return lambda r, n: time_sync(n, read)

        systems = {RAW: runner(raw_read), RS_COLD: runner(cold_read), RS_WARM: runner(warm_read)}
        return Case(f"read {size:,}", n, RAW, systems)

    def cases(self) -> list[Case]:
        ops = self.ops
        return [
            Case("append", ops, RAW, {RAW: self.raw_append, RS: self.rs_append}),
            Case("append async", ops, RAW_ASYNC, {RAW_ASYNC: self.araw_append, RS_ASYNC: self.ars_append}),
            self.read_case(100, max(10, ops // 4)),
            self.read_case(1000, max(10, ops // 10)),
        ]

    def cleanup(self) -> None:
        """Delete this run's keys: the ones it named, then anything left under its unique prefix."""
        for sid in self.sids:
            self.store.delete(sid)
        if self.raw_keys:
            self.raw.delete(*self.raw_keys)
        leftovers = list(self.raw.scan_iter(match=f"{self.prefix}:*", count=1000))
        if leftovers:
            self.raw.delete(*leftovers)
        self.loop.run(self.araw.aclose())
        self.loop.run(self.astore.client.aclose())
        self.loop.close()
        self.raw.close()
        self.store.client.close()
        self.cold.client.close()


# -- running and reporting ------------------------------------------------------------------------


def run(bench: Bench, rounds: int) -> list[Case]:
    cases = bench.cases()
    for case in cases:  # warm-up, not recorded: connections, script load (EVALSHA), caches
        for runner in case.systems.values():
            runner(-1, max(10, case.n // 10))
    for r in range(rounds):
        for case in cases:
            names = list(case.systems)
            for name in names if r % 2 == 0 else reversed(names):
                case.samples.setdefault(name, []).append(case.systems[name](r, case.n))
        print(f"  round {r + 1}/{rounds} done", file=sys.stderr)
    return cases


def summarize(case: Case) -> list[dict[str, Any]]:
    base = case.samples[case.baseline]
    rows = []
    for name, samples in case.samples.items():
        ratios = [s.ops_per_s / b.ops_per_s for s, b in zip(samples, base, strict=True)]
        rows.append(
            {
                "op": case.op,
                "system": name,
                "ops": samples[0].ops,
                **{k: statistics.median(getattr(s, k) for s in samples) for k in _METRICS},
                "ratio_vs_raw": statistics.median(ratios),
                "ratios": ratios,
                "rounds": [asdict(s) for s in samples],
            }
        )
    return rows


_METRICS = ("ops_per_s", "p50_us", "p99_us", "cpu_us_per_op")


def machine(client: redis.Redis, source: str) -> dict[str, Any]:
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
        "hiredis": _version("hiredis"),
        "msgspec": msgspec.__version__,
        "redis_sessions": _version("redis-sessions"),
        "redis_sessions_commit": _commit(),
    }


def message_sizes(codec: str) -> dict[str, float]:
    """Encoded sizes of the message mix: JSON by kind, and as redis-sessions stores it."""
    msgs = make_messages(SEED, 1000)
    tool = [len(msgspec.json.encode(m)) for m in msgs if isinstance(m.content[0], ToolUse)]
    text = [len(msgspec.json.encode(m)) for m in msgs if not isinstance(m.content[0], ToolUse)]
    encode = msgspec.msgpack.encode if codec == "msgpack" else msgspec.json.encode
    return {
        "text_json_bytes": statistics.mean(text),
        "tool_json_bytes": statistics.mean(tool),
        "json_bytes": statistics.mean(text + tool),
        "stored_bytes": statistics.mean(len(encode(m)) for m in msgs),
    }


def _commit() -> str:
    """The git commit the imported redis_sessions comes from, ``-dirty`` if its files differ."""
    where = os.path.dirname(redis_sessions.__file__)
    try:
        git = ["git", "-C", where]
        head = subprocess.run([*git, "rev-parse", "--short", "HEAD"], capture_output=True, check=True)
        dirty = subprocess.run([*git, "status", "--porcelain", "."], capture_output=True, check=True)
    except (OSError, subprocess.CalledProcessError):
        return "-"
    return head.stdout.decode().strip() + ("-dirty" if dirty.stdout.strip() else "")


def _version(dist: str) -> str:
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return "-"


def table(rows: list[dict[str, Any]]) -> str:
    head = f"{'op':<13} {'system':<21} {'ops/s':>9} {'p50 µs':>8} {'p99 µs':>8} {'CPU µs/op':>10} "
    head += f"{'vs raw':>7}"
    lines = [head, "-" * len(head)]
    for r in rows:
        lines.append(
            f"{r['op']:<13} {r['system']:<21} {r['ops_per_s']:>9,.0f} {r['p50_us']:>8.0f} "
            f"{r['p99_us']:>8.0f} {r['cpu_us_per_op']:>10.0f} {r['ratio_vs_raw']:>6.2f}x"
        )
    return "\n".join(lines)


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


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--rounds", type=int, default=5, help="interleaved rounds (default 5)")
    ops_help = "appends per system per round (default 5000); reads: ops/4 of 100 msgs, ops/10 of 1,000"
    parser.add_argument("--ops", type=int, default=5000, help=ops_help)
    codecs = ("msgpack", "json")
    parser.add_argument("--codec", choices=codecs, default="msgpack", help="redis-sessions' codec")
    pins = ("none", "same", "split")
    parser.add_argument("--pin", choices=pins, default="none", help="CPU placement (own server only)")
    parser.add_argument("--json", metavar="PATH", help="also write the results as JSON")
    args = parser.parse_args(argv)
    if args.rounds < 1 or args.ops < 10:
        parser.error("need --rounds >= 1 and --ops >= 10")
    if args.pin != "none" and os.environ.get("REDIS_URL"):
        parser.error("--pin places the benchmark's own server: unset REDIS_URL")
    if args.pin == "split" and (os.cpu_count() or 1) < 2:
        parser.error("--pin split needs two CPUs")

    with server(args.pin) as (url, source):
        bench = Bench(url, args.ops, args.codec)
        try:
            info = machine(bench.raw, source)
            sizes = message_sizes(args.codec)
            print(f"running {args.rounds} rounds, {args.ops} appends each ...", file=sys.stderr)
            t0 = time.monotonic()
            cases = run(bench, args.rounds)
            elapsed = time.monotonic() - t0
        finally:
            bench.cleanup()

    rows = [row for case in cases for row in summarize(case)]
    print(
        f"\nredis-sessions vs raw redis-py — {info['date']}, {info['nproc']} CPU ({info['cpu']}), "
        f"load {info['loadavg'][0]:.2f}\nPython {info['python']}, redis-server {info['redis_server']} "
        f"[{info['server']}], redis-py {info['redis_py']} (hiredis {info['hiredis']}), "
        f"msgspec {info['msgspec']}, redis-sessions {info['redis_sessions']} "
        f"@ {info['redis_sessions_commit']} (codec {args.codec})\n"
        f"messages, as JSON: text {sizes['text_json_bytes']:.0f} B, tool call "
        f"{sizes['tool_json_bytes']:.0f} B, mean {sizes['json_bytes']:.0f} B "
        f"({args.codec} in redis-sessions: mean {sizes['stored_bytes']:.0f} B)\n"
        f"medians of {args.rounds} interleaved rounds (system order alternating); "
        f"vs raw = median of per-round ops/s ratios ({elapsed:.0f} s)\n"
    )
    print(table(rows))
    if args.json:
        out = {"machine": info, "config": vars(args) | {"seed": SEED, **sizes}, "results": rows}
        with open(args.json, "w") as f:
            json.dump(out, f, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
