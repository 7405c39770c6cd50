"""The parts of the suite that run in other processes.

- ``fresh_read``: a new Python process reads histories it has never seen (nothing cached, first
  read of each session), one child per system per round; it prints its ``Sample`` as JSON.
- ``WriterPool``: four long-lived writer processes that append to one session at once. They are
  started once (spawn) and given one job per system per round; a barrier starts them together, and
  the aggregate rate is all their appends over the span from the first start to the last finish.

The Agents SDK is imported only where a job needs it (it takes ~2 s to import).
"""

from __future__ import annotations

import asyncio
import json
import multiprocessing as mp
import os
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict
from typing import Any

import msgspec
import redis
import redis.asyncio
from _harness import Sample, sample, time_async, time_sync
from _workload import SEED, as_items, as_json, make_messages
from bench_append_script import MINIMAL
from hiredis import pack_command

from redis_sessions import AgentMessage, AsyncSessionStore, SessionStore
from redis_sessions._scripts import SHAS  # the floor sends the store's own script
from redis_sessions.keys import append_keys, session_id, session_keys

RAW, RAW_A = "raw redis-py", "raw redis.asyncio"
RS, RS_A = "redis-sessions", "redis-sessions async"
AG = "Agents RedisSession"
COLD, WARM, A_COLD, A_WARM = (f"{s} {t}" for s in (RS, RS_A) for t in ("cold", "warm"))
AG_PREFIX = "ag"  # RedisSession keys: {prefix}:ag:{session id}, {prefix}:ag:{session id}:messages
# Floors of the fresh-process read (issue 15): no library, one LRANGE and one msgspec decode of the
# framed items into the message type, the messages dropped after each read or kept (as the history
# cache keeps them: a fresh process then touches new memory for every read).
FLOOR_READ, FLOOR_KEPT = "floor: LRANGE + decode", "floor: LRANGE + decode, kept"
# The append floors, as in suite.py: append.lua pre-packed by hiredis on one held connection, and the
# least an atomic append idempotent by message id can do, sent the same way.
FLOOR_SCRIPT, FLOOR_MINIMAL = "floor: append.lua, held conn", "floor: minimal idempotent script"


def agents_session() -> Any:
    """The Agents SDK's ``RedisSession`` class (the ``bench`` extra installs it)."""
    try:
        from agents.extensions.memory.redis_session import RedisSession
    except ImportError as exc:
        raise SystemExit(f"{exc}: install the benchmark extra: .venv/bin/pip install -e '.[bench]'") from exc
    return RedisSession


# -- reads in a fresh process -------------------------------------------------------------------


def fresh_read(system: str, url: str, prefix: str, targets: Sequence[str]) -> Sample:
    """Read each of ``targets`` (raw keys or session ids) once, timed, in this new process."""
    if system == RAW:
        client = redis.Redis.from_url(url)
        client.ping()
        lrange, loads = client.lrange, json.loads
        return time_sync(len(targets), lambda i: [loads(x) for x in lrange(targets[i], 0, -1)])
    if system in (FLOOR_READ, FLOOR_KEPT):
        client = redis.Redis.from_url(url)
        client.ping()
        decode, kept = msgspec.msgpack.Decoder(list[AgentMessage]).decode, []
        lrange, keys = client.lrange, [str(session_keys(prefix, t).messages) for t in targets]

        def read(i: int) -> list[AgentMessage]:
            items = lrange(keys[i], 0, -1)
            messages = decode(b"\xdc" + len(items).to_bytes(2, "big") + b"".join(items))
            if system == FLOOR_KEPT:
                kept.append(messages)
            return messages

        return time_sync(len(targets), read)
    if system in (RS, COLD):  # the default store keeps what it read (the history cache); cold does not
        client = redis.Redis.from_url(url)
        store = (
            SessionStore(client, prefix=prefix, cache_messages=0)
            if system == COLD
            else SessionStore(client, prefix=prefix)
        )
        store.client.ping()
        return time_sync(len(targets), lambda i: store.messages(targets[i]))
    return asyncio.run(_fresh_read_async(system, url, prefix, targets))


async def _fresh_read_async(system: str, url: str, prefix: str, targets: Sequence[str]) -> Sample:
    client = redis.asyncio.Redis.from_url(url)
    await client.ping()
    try:
        if system == RAW_A:
            lrange, loads = client.lrange, json.loads

            async def raw(i: int) -> list[Any]:
                return [loads(x) for x in await lrange(targets[i], 0, -1)]

            return await time_async(len(targets), raw)
        if system == RS_A:
            store = AsyncSessionStore(client, prefix=prefix)
            return await time_async(len(targets), lambda i: store.messages(targets[i]))
        session = agents_session()
        sessions = [session(t, redis_client=client, key_prefix=f"{prefix}:{AG_PREFIX}") for t in targets]
        return await time_async(len(targets), lambda i: sessions[i].get_items())
    finally:
        await client.aclose()


def run_fresh_read(system: str, url: str, prefix: str, targets: Sequence[str]) -> Sample:
    """Start a child process that runs ``fresh_read`` and return its ``Sample``."""
    spec = json.dumps({"system": system, "url": url, "prefix": prefix, "targets": list(targets)})
    done = subprocess.run(
        [sys.executable, __file__, "fresh-read", spec], capture_output=True, text=True, timeout=300
    )
    if done.returncode != 0:
        raise RuntimeError(f"fresh-read child for {system} failed:\n{done.stderr}")
    return Sample(**json.loads(done.stdout))


# -- four writers, one session --------------------------------------------------------------------


def _writer_main(conn: Any, barrier: Any) -> None:
    if hasattr(os, "sched_setaffinity"):  # never pinned, whatever --pin did to the parent
        os.sched_setaffinity(0, range(os.cpu_count() or 1))
    while (job := conn.recv()) is not None:
        conn.send(_write(barrier, **job))


def _write(
    barrier: Any, system: str, url: str, prefix: str, target: str, writer: int, tag: str, n: int
) -> Any:
    msgs = make_messages(SEED + 7 + writer, n, id_prefix=f"{tag}w{writer}-")
    if system == AG:
        return asyncio.run(_write_agents(barrier, url, prefix, target, as_items(msgs)))
    if system == RS:  # built as an application builds it: from_url, so it holds its connection
        with SessionStore.from_url(url, prefix=prefix) as store:
            store.exists(target)
            return _timed(barrier, n, lambda i: store.append(target, msgs[i]))
    client = redis.Redis.from_url(url)
    client.ping()
    if system == RAW:
        payloads, rpush = as_json(msgs), client.rpush
        return _timed(barrier, n, lambda i: rpush(target, payloads[i]))
    with SessionStore(client, prefix=prefix) as store:  # the floors: only the store's encoding
        core, sid = store.transport.core, session_id(target)
    keys = append_keys(prefix, sid, False)
    sha = SHAS["append"] if system == FLOOR_SCRIPT else client.script_load(MINIMAL)
    fixed = ("EVALSHA", sha, len(keys), *keys, core.version, core.codec.name, "", "")
    conn = client.connection_pool.get_connection()
    try:

        def op(i: int) -> object:
            m = msgs[i]
            args = (str(core.tokens(sid, m)), m.id, core.encode(sid, m))
            conn.send_packed_command([pack_command((*fixed, *args))])
            return conn.read_response()

        return _timed(barrier, n, op)
    finally:
        client.connection_pool.release(conn)


def _timed(barrier: Any, n: int, op: Callable[[int], object]) -> dict[str, Any]:
    lat, clock = [0] * n, time.perf_counter_ns
    barrier.wait(60)
    cpu0, t0 = time.process_time_ns(), clock()
    for i in range(n):
        start = clock()
        op(i)
        lat[i] = clock() - start
    t1 = clock()
    return {"start": t0, "end": t1, "cpu": time.process_time_ns() - cpu0, "lat": lat}


async def _write_agents(barrier: Any, url: str, prefix: str, target: str, items: list[Any]) -> Any:
    client = redis.asyncio.Redis.from_url(url)
    await client.ping()
    session = agents_session()(target, redis_client=client, key_prefix=f"{prefix}:{AG_PREFIX}")
    lat, clock = [0] * len(items), time.perf_counter_ns
    barrier.wait(60)  # blocks the loop, which has nothing else to do yet
    cpu0, t0 = time.process_time_ns(), clock()
    for i, item in enumerate(items):
        start = clock()
        await session.add_items([item])
        lat[i] = clock() - start
    t1 = clock()
    await client.aclose()
    return {"start": t0, "end": t1, "cpu": time.process_time_ns() - cpu0, "lat": lat}


class WriterPool:
    """``writers`` processes, started once, appending to one target together on each ``run``."""

    def __init__(self, writers: int) -> None:
        ctx = mp.get_context("spawn")
        self.barrier = ctx.Barrier(writers)
        self.conns, self.procs = [], []
        for _ in range(writers):
            parent, child = ctx.Pipe()
            proc = ctx.Process(target=_writer_main, args=(child, self.barrier), daemon=True)
            proc.start()
            self.conns.append(parent)
            self.procs.append(proc)

    def run(self, system: str, url: str, prefix: str, target: str, tag: str, n: int) -> Sample:
        """Every writer appends ``n`` messages with ids ``{tag}w{writer}-{i:06d}`` to ``target``."""
        for w, conn in enumerate(self.conns):
            job = {"system": system, "url": url, "prefix": prefix, "target": target}
            conn.send(job | {"writer": w, "tag": tag, "n": n})
        results = [conn.recv() for conn in self.conns]
        wall = max(r["end"] for r in results) - min(r["start"] for r in results)
        lat = [x for r in results for x in r["lat"]]
        return sample(lat, wall, sum(r["cpu"] for r in results))

    def close(self) -> None:
        for conn in self.conns:
            conn.send(None)
        for proc in self.procs:
            proc.join(10)


def check_writers(ids: Sequence[str], tag: str, writers: int, n: int) -> dict[str, Any]:
    """What four writers left: every message once, and each writer's messages in its own order."""
    order: dict[int, list[int]] = {w: [] for w in range(writers)}
    for mid in ids:
        head, _, index = mid.rpartition("-")
        order[int(head.removeprefix(f"{tag}w"))].append(int(index))
    count, unique = len(ids), len(set(ids))
    in_order = all(seq == sorted(seq) for seq in order.values())
    ok = count == writers * n and unique == count and in_order
    return {
        "count": count,
        "expected": writers * n,
        "duplicates": count - unique,
        "in_order": in_order,
        "ok": ok,
    }


if __name__ == "__main__" and sys.argv[1:2] == ["fresh-read"]:
    spec = json.loads(sys.argv[2])
    print(json.dumps(asdict(fresh_read(spec["system"], spec["url"], spec["prefix"], spec["targets"]))))
