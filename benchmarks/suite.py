"""The issue-5 benchmark suite: redis-sessions against raw redis-py and the Agents SDK's RedisSession.

    .venv/bin/pip install -e '.[bench]' && .venv/bin/python benchmarks/suite.py \\
        --json benchmarks/results.json --chart benchmarks/results.png

One run, interleaved rounds (every case, every system, back to back; system order rotated each
round), medians over rounds; ratios are taken within each round, then their median. Sync systems
are compared with raw redis-py, async ones with raw redis.asyncio. ``REDIS_URL``: that server, under
a unique key prefix, deleting only this run's keys; otherwise a throw-away redis-server.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import time
import uuid
from collections.abc import Awaitable, Callable, Coroutine, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import redis
import redis.asyncio
from _before import Listing, archive, script_times
from _floor import open_floor
from _harness import (
    Case,
    Runner,
    Sample,
    command_stats,
    machine,
    run,
    server,
    server_us_per_call,
    summarize,
    time_async,
    time_concurrent,
    time_sync,
    version,
)
from _procs import (
    A_COLD,
    A_WARM,
    AG,
    AG_PREFIX,
    COLD,
    FLOOR_KEPT,
    FLOOR_MINIMAL,
    FLOOR_READ,
    FLOOR_SCRIPT,
    RAW,
    RAW_A,
    RS,
    RS_A,
    WARM,
    WriterPool,
    agents_session,
    check_writers,
    run_fresh_read,
)
from _report import chart, markdown, report, targets
from _workload import SEED, as_items, as_json, make_messages, message_sizes
from bench_append_script import MINIMAL, NOOP
from hiredis import pack_command
from redis.asyncio import BlockingConnectionPool

import redis_sessions
from redis_sessions import AsyncSessionStore, SessionStore
from redis_sessions._scripts import SHAS  # the floors send the store's own script
from redis_sessions.keys import append_keys

# Floors of the append (issue 15): no library at all, the script's EVALSHA packed by hiredis (the
# messages encoded by the store's codec) on one connection held for the whole loop.
# FLOOR_SCRIPT (from _procs) and two other scripts with the same keys and arguments: a no-op (the
# floor of any script) and the least an atomic append idempotent by message id can do (read seq, an
# id check and a push per message, write seq): no TTL, trim, watchers, record, leases or limits.
FLOOR_NOOP = "floor: no-op script, held conn"
# For the asyncio cases: append.lua and the no-op coalesced into one write per loop iteration on one
# connection (_floor.py).
AFLOOR_SCRIPT, AFLOOR_NOOP = "floor: append.lua, coalesced", "floor: no-op script, coalesced"
ASYNC_SYSTEMS = {RAW_A, RS_A, A_COLD, A_WARM, AG, AFLOOR_SCRIPT, AFLOOR_NOOP}
T = TypeVar("T")
BATCH = 10
POOL = 50  # connections for the 1,000-session asyncio case: from_url's BlockingConnectionPool default


@dataclass(frozen=True)
class Config:
    rounds: int
    ops: int  # appends per system per round; the other cases scale from it
    fresh: int  # sessions a fresh process reads, per system per round
    writer_ops: int  # appends per writer process per round (RedisSession: a quarter)
    sessions: int  # concurrent asyncio sessions, each appending BATCH messages
    codec: str
    pin: str
    listed: int  # sessions that ls and stats list (0: not measured)
    before: str  # the git revision the ls/stats and append.lua figures are compared with


def baselines(names: Sequence[str]) -> dict[str, str | None]:
    """Raw redis-py for sync systems, raw redis.asyncio for async ones when the case has it."""
    araw = RAW_A if RAW_A in names else RAW
    return {n: None if n in (RAW, RAW_A) else araw if n in ASYNC_SYSTEMS else RAW for n in names}


class Bench:
    """The clients, stored fixtures and cases of one run; ``cleanup`` deletes every key it wrote."""

    def __init__(self, url: str, cfg: Config) -> None:
        self.url, self.cfg = url, cfg
        self.prefix = f"rsbench-{uuid.uuid4().hex[:8]}"
        self.loop = asyncio.Runner()
        self.RedisSession = agents_session()
        # The same server for every system; the sync stores are built as users build them (from_url).
        self.raw, self.araw = redis.Redis.from_url(url), redis.asyncio.Redis.from_url(url)
        self.store, self.astore = self._store(SessionStore), self._store(AsyncSessionStore)
        self.cold, self.acold = self._store(SessionStore, 0), self._store(AsyncSessionStore, 0)
        self.warm, self.awarm = self._store(SessionStore), self._store(AsyncSessionStore)
        self.agclient = redis.asyncio.Redis.from_url(url)
        self.msgs = make_messages(SEED + 1, cfg.ops)
        self.payloads, self.items = as_json(self.msgs), as_items(self.msgs)
        self.writers = WriterPool(4)
        self.closing: list[Any] = []  # async clients of single cases, closed by cleanup
        self.closing_floors: list[Callable[[], None]] = []  # the asyncio floors' connections
        self.listing: Listing | None = None
        self.source: Any = None  # the --before revision's package, for the listing cases

    def _store(self, kind: Any, cache: int | None = None) -> Any:
        extra = {} if cache is None else {"cache_messages": cache}
        if kind is SessionStore:  # as users build it: it owns its client, so its lean line holds a connection
            return SessionStore.from_url(self.url, prefix=self.prefix, codec=self.cfg.codec, **extra)
        client = redis.asyncio.Redis.from_url(self.url)
        return kind(client, prefix=self.prefix, codec=self.cfg.codec, **extra)

    def arun(self, coro: Coroutine[Any, Any, T]) -> T:
        return self.loop.run(coro)

    def ag(self, sid: str, client: Any = None) -> Any:
        return self.RedisSession(sid, redis_client=client or self.agclient, key_prefix=self.ag_prefix)

    @property
    def ag_prefix(self) -> str:
        return f"{self.prefix}:{AG_PREFIX}"

    def ag_key(self, sid: str) -> str:
        return f"{self.ag_prefix}:{sid}:messages"

    # -- writes: one system per round gets a new key or session, deleted afterwards -------------

    def write_case(self, op: str, unit: str, n: int, size: int) -> Case:
        """Append ``size`` messages per op (``size > 1``: ``extend``; raw: one RPUSH of them all)."""

        def chunks(seq: Sequence[Any]) -> list[Any]:
            return list(seq[:n]) if size == 1 else [seq[i * size : (i + 1) * size] for i in range(n)]

        msgs, payloads = chunks(self.msgs), chunks(self.payloads)
        items = [self.items[i * size : (i + 1) * size] for i in range(n)]  # add_items takes a list
        last = self.msgs[n * size - 1]

        def raw(r: int, k: int) -> Sample:
            key, rpush = f"{self.prefix}:raw:{op}:{r}", self.raw.rpush
            if size == 1:
                s = time_sync(k, lambda i: rpush(key, payloads[i]))
            else:
                s = time_sync(k, lambda i: rpush(key, *payloads[i]))
            assert self.raw.llen(key) == k * size
            self.raw.delete(key)
            return s

        def araw(r: int, k: int) -> Sample:
            key, rpush = f"{self.prefix}:araw:{op}:{r}", self.araw.rpush
            if size == 1:
                s = self.arun(time_async(k, lambda i: rpush(key, payloads[i])))
            else:
                s = self.arun(time_async(k, lambda i: rpush(key, *payloads[i])))
            assert self.raw.llen(key) == k * size
            self.raw.delete(key)
            return s

        def rs(r: int, k: int) -> Sample:
            sid = self.store.create(model="bench")
            call = self.store.append if size == 1 else self.store.extend
            s = time_sync(k, lambda i: call(sid, msgs[i]))
            if k == n:
                assert self.store.append(sid, last) == n * size, "every message must be stored"
            self.store.delete(sid)
            return s

        def ars(r: int, k: int) -> Sample:
            sid = self.store.create(model="bench")
            call = self.astore.append if size == 1 else self.astore.extend
            s = self.arun(time_async(k, lambda i: call(sid, msgs[i])))
            if k == n:
                assert self.store.append(sid, last) == n * size, "every message must be stored"
            self.store.delete(sid)
            return s

        def ag(r: int, k: int) -> Sample:
            session = self.ag(str(uuid.uuid4()))
            s = self.arun(time_async(k, lambda i: session.add_items(items[i])))
            assert self.raw.llen(self.ag_key(session.session_id)) == k * size
            self.arun(session.clear_session())
            return s

        def floor(script: str) -> Runner:
            def go(r: int, k: int) -> Sample:
                sid = self.store.create(model="bench")
                core, batches = self.store.transport.core, [[m] for m in msgs] if size == 1 else msgs
                sha = SHAS["append"] if script == "append" else self.raw.script_load(script)
                keys = append_keys(self.prefix, sid, False)  # append.lua's layout (_write.extend)
                fixed = ("EVALSHA", sha, len(keys), *keys, core.version, core.codec.name, "", "")
                conn = self.raw.connection_pool.get_connection()
                try:

                    def op(i: int) -> object:
                        counts = ",".join(str(core.tokens(sid, m)) for m in batches[i])
                        pairs = [x for m in batches[i] for x in (m.id, core.encode(sid, m))]
                        conn.send_packed_command([pack_command((*fixed, counts, *pairs))])
                        return conn.read_response()

                    s = time_sync(k, op)
                finally:
                    self.raw.connection_pool.release(conn)
                self.store.delete(sid)
                return s

            return go

        systems: dict[str, Runner] = {RAW: raw, RS: rs, RAW_A: araw, RS_A: ars, AG: ag}
        systems |= {FLOOR_SCRIPT: floor("append"), FLOOR_MINIMAL: floor(MINIMAL)}
        systems |= {FLOOR_NOOP: floor(NOOP)}
        return Case(op, unit, n, systems, baselines(list(systems)), AG)

    # -- reads of stored histories (the same keys every round: reads change nothing) -----------

    def stored(self, size: int, copies: int = 1) -> tuple[list[str], list[str], list[str]]:
        """``copies`` histories of ``size`` messages in each system: raw keys, sids, RedisSession ids."""
        msgs = make_messages(SEED, size)
        payloads, items = as_json(msgs), as_items(msgs)
        keys, sids, ags = [], [], []
        for c in range(copies):
            key = f"{self.prefix}:raw:read:{size}:{c}"
            self.raw.delete(key)
            self.raw.rpush(key, *payloads)
            sid = self.store.create(model="bench")
            self.store.extend(sid, msgs)
            agid = str(uuid.uuid4())
            self.arun(self.ag(agid).add_items(items))
            keys.append(key)
            sids.append(str(sid))
            ags.append(agid)
        assert self.cold.messages(sids[0]) == msgs, "the store must give back what it was given"
        assert self.arun(self.ag(ags[0]).get_items()) == items
        return keys, sids, ags

    def read_case(self, op: str, n: int, size: int, start: int = 0) -> Case:
        """All of a ``size``-message history (``start=0``) or its last ``-start`` messages."""
        (key,), (sid,), (agid,) = self.stored(size)
        loads, lrange, alrange = json.loads, self.raw.lrange, self.araw.lrange
        limit = -start if start else None
        session = self.ag(agid)

        async def araw(i: int) -> list[Any]:
            return [loads(x) for x in await alrange(key, start, -1)]

        def sync(read: Callable[[int], object]) -> Runner:
            return lambda r, k: time_sync(k, read)

        def asyn(read: Callable[[int], Awaitable[object]]) -> Runner:
            return lambda r, k: self.arun(time_async(k, read))

        systems = {
            RAW: sync(lambda i: [loads(x) for x in lrange(key, start, -1)]),
            COLD: sync(lambda i: self.cold.messages(sid, start)),
            WARM: sync(lambda i: self.warm.messages(sid, start)),
            RAW_A: asyn(araw),
            A_COLD: asyn(lambda i: self.acold.messages(sid, start)),
            A_WARM: asyn(lambda i: self.awarm.messages(sid, start)),
            AG: asyn(lambda i: session.get_items(limit)),
        }
        if start:  # the warm stores hold the whole history already: that is what "warm" means
            self.warm.messages(sid)
            self.arun(self.awarm.messages(sid))
        return Case(op, "reads", n, systems, baselines(list(systems)), AG)

    def fresh_case(self) -> Case:
        """Each round, one new process per system reads ``fresh`` 1,000-message histories once."""
        keys, sids, ags = self.stored(1000, self.cfg.fresh)
        targets = {RAW: keys, RAW_A: keys, RS: sids, COLD: sids, RS_A: sids, AG: ags}
        targets |= {FLOOR_READ: sids, FLOOR_KEPT: sids}

        def runner(system: str) -> Runner:
            return lambda r, k: run_fresh_read(system, self.url, self.prefix, targets[system])

        systems = {name: runner(name) for name in targets}
        op, n = "read 1,000 fresh process", self.cfg.fresh
        return Case(op, "reads", n, systems, baselines(list(systems)), AG, warmup=False)

    # -- four processes, one session ------------------------------------------------------------

    def writers_case(self) -> Case:
        case = Case("4 processes, one session", "appends", self.cfg.writer_ops, {}, {}, AG)

        def runner(system: str) -> Runner:
            def go(r: int, n: int) -> Sample:
                n = max(1, n // 4) if system == AG else n
                tag = f"r{r}-"
                if system == RAW:
                    target = f"{self.prefix}:raw:writers:{r}"
                elif system in (RS, FLOOR_SCRIPT, FLOOR_MINIMAL):
                    target = str(self.store.create(model="bench"))
                else:
                    target = str(uuid.uuid4())
                s = self.writers.run(system, self.url, self.prefix, target, tag, n)
                if system in (RS, FLOOR_SCRIPT, FLOOR_MINIMAL):
                    ids = [m.id for m in self.cold.messages(target)]
                    self.store.delete(target)
                else:
                    key = target if system == RAW else self.ag_key(target)
                    ids = [json.loads(x)["id"] for x in self.raw.lrange(key, 0, -1)]
                    self.raw.delete(key, f"{self.ag_prefix}:{target}")
                if r >= 0:
                    case.checks.setdefault(system, []).append(check_writers(ids, tag, 4, n))
                return s

            return go

        case.systems = {name: runner(name) for name in (RAW, RS, AG, FLOOR_SCRIPT, FLOOR_MINIMAL)}
        case.baselines = baselines(list(case.systems))
        return case

    # -- asyncio: many sessions on one event loop -------------------------------------------------

    def concurrent_case(self, sessions: int, per: int, op: str) -> Case:
        """``sessions`` sessions at once on one loop, each appending ``per`` messages one by one."""
        msgs = self.msgs[:per]
        payloads, items = self.payloads[:per], [[x] for x in self.items[:per]]
        araw = redis.asyncio.Redis(
            connection_pool=BlockingConnectionPool.from_url(self.url, max_connections=POOL)
        )
        astore = AsyncSessionStore.from_url(self.url, prefix=self.prefix, codec=self.cfg.codec)
        agclient = redis.asyncio.Redis(
            connection_pool=BlockingConnectionPool.from_url(self.url, max_connections=POOL)
        )
        self.closing += [araw, astore.client, agclient]

        def raw(r: int, n: int) -> Sample:
            keys = [f"{self.prefix}:raw:many:{r}:{t}" for t in range(sessions)]
            s = self.arun(time_concurrent(sessions, per, lambda t, j: araw.rpush(keys[t], payloads[j])))
            assert sum(self.raw.llen(k) for k in keys) == sessions * per
            self.raw.delete(*keys)
            return s

        def rs(r: int, n: int) -> Sample:
            sids = self.arun(gather(*(astore.create(model="bench") for _ in range(sessions))))
            s = self.arun(time_concurrent(sessions, per, lambda t, j: astore.append(sids[t], msgs[j])))
            assert all(self.store.append(sid, msgs[-1]) == per for sid in sids)
            self.arun(gather(*(astore.delete(sid) for sid in sids)))
            return s

        def ag(r: int, n: int) -> Sample:
            objs = [self.ag(str(uuid.uuid4()), agclient) for _ in range(sessions)]
            s = self.arun(time_concurrent(sessions, per, lambda t, j: objs[t].add_items(items[j])))
            assert all(self.raw.llen(self.ag_key(o.session_id)) == per for o in objs)
            self.raw.delete(*(k for o in objs for k in (self.ag_key(o.session_id), o._session_key)))
            return s

        def floor(script: str) -> Runner:
            go, close = self.arun(open_floor(self.url, astore, script))
            self.closing_floors.append(close)

            def run(r: int, n: int) -> Sample:
                sids = self.arun(gather(*(astore.create(model="bench") for _ in range(sessions))))
                s = self.arun(time_concurrent(sessions, per, lambda t, j: go(sids[t], msgs[j])))
                if script == "append":  # every append landed (msgs[-1] again: a no-op, seq unchanged)
                    assert all(self.store.append(sid, msgs[-1]) == per for sid in sids)
                self.arun(gather(*(astore.delete(sid) for sid in sids)))
                return s

            return run

        systems: dict[str, Runner] = {RAW_A: raw, RS_A: rs, AG: ag}
        systems |= {AFLOOR_SCRIPT: floor("append"), AFLOOR_NOOP: floor("noop")}
        return Case(op, "appends", sessions * per, systems, baselines(list(systems)), AG)

    # -- memory ---------------------------------------------------------------------------------

    def memory(self, size: int = 1000) -> list[dict[str, Any]]:
        """``MEMORY USAGE`` (every element counted) of all keys of one ``size``-message history."""
        msgs = make_messages(SEED + 2, size)
        rows = []

        def usage(system: str, pattern: str, payload: float) -> None:
            keys = list(self.raw.scan_iter(match=pattern, count=1000))
            total = sum(self.raw.memory_usage(k, samples=0) or 0 for k in keys)
            rows.append(
                {
                    "system": system,
                    "keys": len(keys),
                    "bytes_per_message": total / size,
                    "payload_bytes": payload,
                }
            )
            self.raw.delete(*keys)

        json_mean = sum(map(len, as_json(msgs))) / size
        self.raw.rpush(f"{self.prefix}:raw:memory", *as_json(msgs))
        usage(f"{RAW} (JSON list)", f"{self.prefix}:raw:memory", json_mean)
        for codec in ("msgpack", "json"):
            store = SessionStore(self.raw, prefix=self.prefix, codec=codec)
            sid = store.create(model="bench")
            store.extend(sid, msgs)
            payload = message_sizes(codec)["stored_bytes"]
            usage(f"{RS} {codec}", f"{self.prefix}:{{{sid}}}:*", payload)
        agid = str(uuid.uuid4())
        self.arun(self.ag(agid).add_items(as_items(msgs)))
        usage(AG, f"{self.ag_prefix}:{agid}*", json_mean)
        return rows

    def cases(self) -> list[Case]:
        ops = self.cfg.ops
        return [
            self.write_case("append", "appends", ops, 1),
            self.write_case(f"extend x{BATCH}", "batches", ops // BATCH, BATCH),
            self.read_case("read 100", max(10, ops // 8), 100),
            self.read_case("read 1,000", max(5, ops // 40), 1000),
            self.read_case("last 20 of 1,000", max(10, ops // 2), 1000, -20),
            self.fresh_case(),
            self.writers_case(),
            self.concurrent_case(self.cfg.sessions, BATCH, f"asyncio, {self.cfg.sessions:,} sessions"),
            self.concurrent_case(50, max(20, ops // 10), "asyncio, 50 tasks on 50 sessions"),
            *self.listing_cases(),
        ]

    def listing_cases(self) -> list[Case]:
        """``ls`` and ``stats --json`` of ``listed`` sessions, this tree against ``before``'s."""
        if not self.cfg.listed:
            return []
        self.listing = Listing(self.url, self.prefix, self.cfg.listed)
        self.source = archive(self.cfg.before)
        where, rev, n = Path(self.source.name), self.cfg.before, f"{self.cfg.listed:,}"
        return [
            self.listing.case(f"ls {n} sessions", ("ls",), where, rev),
            self.listing.case(f"stats {n} sessions", ("stats", "--json"), where, rev),
        ]

    def cleanup(self) -> None:
        """Delete this run's keys (all under its unique prefix) and close every client."""
        if self.listing is not None:
            self.listing.cleanup()
            self.source.cleanup()
        leftovers = list(self.raw.scan_iter(match=f"{self.prefix}:*", count=1000))
        if leftovers:
            self.raw.delete(*leftovers)
        self.writers.close()
        for client in (self.araw, self.astore.client, self.acold.client, self.awarm.client, self.agclient):
            self.arun(client.aclose())
        for close in self.closing_floors:
            close()
        for client in self.closing:
            self.arun(client.aclose())
        self.loop.close()
        self.raw.close()
        for store in (self.store, self.cold, self.warm):
            store.close()


async def gather(*aws: Awaitable[Any]) -> list[Any]:
    return list(await asyncio.gather(*aws))


def parse_args(argv: Sequence[str] | None) -> tuple[argparse.Namespace, Config]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--quick", action="store_true", help="a smoke run: 3 small rounds (~25 s)")
    parser.add_argument("--rounds", type=int, help="interleaved rounds (default 5; --quick 3)")
    parser.add_argument("--ops", type=int, help="appends per system per round (default 2000; --quick 200)")
    parser.add_argument(
        "--codec", choices=("msgpack", "json"), default="msgpack", help="redis-sessions' codec"
    )
    pins = ("none", "same", "split")
    parser.add_argument("--pin", choices=pins, default="none", help="CPU placement (own server only)")
    parser.add_argument("--json", metavar="PATH", help="also write the results as JSON")
    parser.add_argument("--chart", metavar="PATH", help="also draw the ratios as a PNG (matplotlib)")
    parser.add_argument("--markdown", metavar="PATH", help="also write the tables as Markdown (for the docs)")
    parser.add_argument(
        "--listed", type=int, help="sessions for ls/stats (default 100000; --quick 2000; 0: skip)"
    )
    parser.add_argument(
        "--before",
        default="7cc5330",
        metavar="REV",
        help="git revision that ls/stats and append.lua are compared with (default: before issue 15)",
    )
    args = parser.parse_args(argv)
    quick = args.quick
    rounds = args.rounds or (3 if quick else 5)
    ops = args.ops or (200 if quick else 2000)
    if rounds < 1 or ops < 40:
        parser.error("need --rounds >= 1 and --ops >= 40")
    if args.pin != "none" and os.environ.get("REDIS_URL"):
        parser.error("--pin places the benchmark's own server: unset REDIS_URL")
    if args.pin == "split" and (os.cpu_count() or 1) < 2:
        parser.error("--pin split needs two CPUs")
    sessions = 100 if quick else 1000
    listed = args.listed if args.listed is not None else (2000 if quick else 100_000)
    cfg = Config(
        rounds, ops, 2 if quick else 10, ops // 2, sessions, args.codec, args.pin, listed, args.before
    )
    return args, cfg


def main(argv: Sequence[str] | None = None) -> int:
    args, cfg = parse_args(argv)
    with server(cfg.pin) as (url, source):
        bench = Bench(url, cfg)
        try:
            info = machine(bench.raw, source, "redis-sessions", redis_sessions.__file__)
            info |= {"msgspec": version("msgspec"), "openai-agents": version("openai-agents")}
            print(f"{cfg.rounds} rounds, {cfg.ops} appends per system per round ...", file=sys.stderr)
            t0 = time.monotonic()
            stats0 = command_stats(bench.raw)
            cases = bench.cases()
            print(f"  setup done ({time.monotonic() - t0:.0f} s)", file=sys.stderr)
            run(cases, cfg.rounds)
            server_times = server_us_per_call(stats0, command_stats(bench.raw))
            memory = bench.memory()
            script = script_times(bench.raw, cfg.before, cfg.rounds, max(500, cfg.ops))
            elapsed = time.monotonic() - t0
        finally:
            bench.cleanup()
    rows = [row for case in cases for row in summarize(case)]
    results = {
        "machine": info,
        "config": vars(cfg) | {"seed": SEED, "elapsed_s": round(elapsed), **message_sizes(cfg.codec)},
        "results": rows,
        "memory": memory,
        "server_us_per_call": server_times,
        "append_script": script,
    }
    results["targets"] = targets(rows)
    print(report(results))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=1)
            f.write("\n")
    if args.chart:
        chart(results, args.chart)
    if args.markdown:
        with open(args.markdown, "w") as f:
            f.write(markdown(results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
