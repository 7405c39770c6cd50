"""The framework integrations against each framework's own Redis history, side by side.

    .venv/bin/pip install -e '.[bench]'
    .venv/bin/python benchmarks/bench_integrations.py [--rounds 5] [--ops 1000] [--json FILE]

OpenAI Agents SDK: ``RedisAgentSession`` (over an ``AsyncSessionStore``, and over a ``SessionStore``
through ``asyncio.to_thread``) against the SDK's own ``agents.extensions.memory.RedisSession``.
LangChain: ``RedisChatMessageHistory`` (over a ``SessionStore``) against langchain-community's
``RedisChatMessageHistory`` (plain lists: LPUSH / LRANGE of ``message_to_dict`` JSON). langchain-redis's
history needs the Redis Query Engine and RedisJSON (Redis Stack / Redis 8), so it is not measured on a
plain redis-server. A framework that is not installed is skipped, and says so.

Same method as ``suite.py`` (its ``_harness``): interleaved rounds, system order rotated each round,
medians over rounds; *vs* is the median of per-round ops/s ratios against the framework's own
history. Each write op gets a new session per round, deleted afterwards. ``REDIS_URL``: that server,
under a unique key prefix; otherwise a throw-away redis-server.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import sys
import uuid
import warnings
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

import redis
import redis.asyncio
from _harness import Case, Sample, run, server, summarize, time_async, time_sync, version

from redis_sessions import AsyncSessionStore, SessionStore

T = TypeVar("T")
Make = Callable[[str], Any]  # a framework session/history for a session id
Build = Callable[[Make], Callable[[int, int], Sample]]  # a case's timed runner for one system


def _case(op: str, count: int, makers: dict[str, Make], reference: str, build: Build) -> Case:
    """One operation timed on every system, against ``reference``."""
    systems = {name: build(make) for name, make in makers.items()}
    return Case(op, "ops", count, systems, dict.fromkeys(systems), reference=reference)


WORDS = ("the", "agent", "reads", "a", "file", "then", "calls", "tool", "and", "writes", "answer", "back")
TURN = 10  # items in a batch write: about one agent turn with a few tool calls


def _text(rng: random.Random, size: int) -> str:
    words: list[str] = []
    while sum(len(w) + 1 for w in words) < size:
        words.append(rng.choice(WORDS))
    return " ".join(words)[:size]


def agent_items(n: int, seed: int = 20240601) -> list[dict[str, Any]]:
    """``n`` SDK items as a run produces them: user text, function_call (~500-byte arguments),
    function_call_output, assistant output message, over and over."""
    rng = random.Random(seed)
    out: list[dict[str, Any]] = []
    for i in range(n):
        kind = i % 4
        if kind == 0:
            out.append({"role": "user", "content": _text(rng, 200)})
        elif kind == 1:
            args = {"path": f"/src/module_{i}.py", "query": _text(rng, 440)}
            out.append({
                "arguments": json.dumps(args, separators=(",", ":")), "call_id": f"call_{i}",
                "name": "read_file", "type": "function_call", "id": f"fc_{i}", "status": "completed",
            })  # fmt: skip
        elif kind == 2:
            out.append(
                {"call_id": f"call_{i - 1}", "output": _text(rng, 200), "type": "function_call_output"}
            )
        else:
            part = {"type": "output_text", "text": _text(rng, 200), "annotations": [], "logprobs": []}
            message = {"id": f"msg_{i}", "type": "message", "role": "assistant", "status": "completed"}
            out.append({**message, "content": [part]})
    return out


class Bench:
    def __init__(self, url: str, ops: int) -> None:
        self.url, self.ops = url, ops
        self.prefix = f"rsbench-int-{uuid.uuid4().hex[:8]}"
        self.loop = asyncio.Runner()
        self.items = agent_items(max(ops, 1000))
        self.store = SessionStore.from_url(url, prefix=self.prefix)
        self.astore = self.arun(self._astore())
        self.agclient = redis.asyncio.Redis.from_url(url)
        self.raw = redis.Redis.from_url(url)
        self.skipped: list[str] = []

    async def _astore(self) -> AsyncSessionStore:
        return AsyncSessionStore.from_url(self.url, prefix=self.prefix)

    def arun(self, coro: Coroutine[Any, Any, T]) -> T:
        return self.loop.run(coro)

    # -- OpenAI Agents SDK ------------------------------------------------------------------------

    def agents_cases(self) -> list[Case]:
        try:
            from agents.extensions.memory.redis_session import RedisSession

            from redis_sessions.integrations.openai_agents import RedisAgentSession
        except ImportError as exc:
            self.skipped.append(f"OpenAI Agents SDK: not installed ({exc})")
            return []
        makers: dict[str, Callable[[str], Any]] = {
            "RedisAgentSession (async store)": lambda sid: RedisAgentSession(sid, self.astore),
            "RedisAgentSession (sync store)": lambda sid: RedisAgentSession(sid, self.store),
            "Agents RedisSession": lambda sid: RedisSession(
                sid, redis_client=self.agclient, key_prefix=f"{self.prefix}:agents"
            ),
        }
        ref = "Agents RedisSession"
        n, items = self.ops, self.items

        def add(make: Callable[[str], Any], size: int) -> Callable[[int, int], Sample]:
            def runner(r: int, count: int) -> Sample:
                session = make(f"w-{uuid.uuid4().hex}")
                batches = [items[(i * size) % len(items) :][:size] for i in range(count)]
                done = self.arun(time_async(count, lambda i: session.add_items(batches[i])))
                self.arun(session.clear_session())
                return done

            return runner

        def read(make: Callable[[str], Any], history: int, limit: int | None) -> Callable[[int, int], Sample]:
            session = make(f"r-{history}-{uuid.uuid4().hex}")
            self.arun(session.add_items(items[:history]))

            def runner(r: int, count: int) -> Sample:
                return self.arun(time_async(count, lambda i: session.get_items(limit)))

            return runner

        def case(op: str, count: int, build: Build) -> Case:
            return _case(op, count, makers, ref, build)

        return [
            case("add_items (1 item)", n, lambda m: add(m, 1)),
            case(f"add_items ({TURN} items)", n // 2, lambda m: add(m, TURN)),
            case("get_items() of 100", n // 2, lambda m: read(m, 100, None)),
            case("get_items(limit=20) of 1,000", n // 2, lambda m: read(m, 1000, 20)),
        ]

    # -- LangChain ---------------------------------------------------------------------------------

    def langchain_cases(self) -> list[Case]:
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                from langchain_community.chat_message_histories import RedisChatMessageHistory as Community
            from langchain_core.messages import AIMessage, BaseMessage, HumanMessage, ToolMessage

            from redis_sessions.integrations.langchain import RedisChatMessageHistory
        except ImportError as exc:
            self.skipped.append(f"LangChain: langchain-core or langchain-community not installed ({exc})")
            return []
        messages: list[BaseMessage] = []
        for i, item in enumerate(self.items):
            if i % 4 == 0:
                messages.append(HumanMessage(item["content"]))
            elif i % 4 == 1:
                call = {"name": item["name"], "args": json.loads(item["arguments"]), "id": item["call_id"]}
                messages.append(AIMessage("", tool_calls=[call], id=f"lc_run--{i}"))
            elif i % 4 == 2:
                messages.append(ToolMessage(item["output"], tool_call_id=item["call_id"]))
            else:
                messages.append(AIMessage(item["content"][0]["text"], id=f"lc_run--{i}"))
        makers: dict[str, Callable[[str], Any]] = {
            "RedisChatMessageHistory (ours)": lambda sid: RedisChatMessageHistory(sid, self.store),
            "langchain-community": lambda sid: Community(sid, url=self.url, key_prefix=f"{self.prefix}:lc:"),
        }
        ref = "langchain-community"
        n = self.ops

        def add(make: Callable[[str], Any], size: int) -> Callable[[int, int], Sample]:
            def runner(r: int, count: int) -> Sample:
                history = make(f"w-{uuid.uuid4().hex}")
                batches = [messages[(i * size) % len(messages) :][:size] for i in range(count)]
                done = time_sync(count, lambda i: history.add_messages(batches[i]))
                history.clear()
                return done

            return runner

        def read(make: Callable[[str], Any], size: int) -> Callable[[int, int], Sample]:
            history = make(f"r-{size}-{uuid.uuid4().hex}")
            history.add_messages(messages[:size])
            return lambda r, count: time_sync(count, lambda i: history.messages)

        def case(op: str, count: int, build: Build) -> Case:
            return _case(op, count, makers, ref, build)

        return [
            case("add_messages (1 message)", n, lambda m: add(m, 1)),
            case(f"add_messages ({TURN} messages)", n // 2, lambda m: add(m, TURN)),
            case("messages of 100", n // 2, lambda m: read(m, 100)),
        ]

    def cleanup(self) -> None:
        doomed = list(self.raw.scan_iter(match=f"{self.prefix}*", count=1000))
        for i in range(0, len(doomed), 500):
            self.raw.unlink(*doomed[i : i + 500])
        self.store.close()
        self.arun(self.astore.aclose())
        self.arun(self.agclient.aclose())
        self.raw.close()
        self.loop.close()


def table(rows: list[dict[str, Any]]) -> str:
    head = f"{'op':<30} {'system':<32} {'ops/s':>9} {'p50 µs':>8} {'p99 µs':>8} {'vs theirs':>9}"
    out = [head, "-" * len(head)]
    last = None
    for row in rows:
        ratio = row["ratio_vs_ref"]
        out.append(
            f"{row['op'] if row['op'] != last else '':<30} {row['system']:<32} {row['ops_per_s']:>9,.0f} "
            f"{row['p50_us']:>8.0f} {row['p99_us']:>8.0f} {'' if ratio is None else f'{ratio:.2f}x':>9}"
        )
        last = row["op"]
    return "\n".join(out)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--ops", type=int, default=1000, help="single-item writes per system per round")
    parser.add_argument("--pin", choices=("none", "same", "split"), default="none")
    parser.add_argument("--json", help="write every row (all rounds) to this file")
    args = parser.parse_args()
    with server(args.pin) as (url, where):
        bench = Bench(url, args.ops)
        try:
            cases = bench.agents_cases() + bench.langchain_cases()
            run(cases, args.rounds)
            rows = [row for case in cases for row in summarize(case)]
        finally:
            bench.cleanup()
    versions = ", ".join(
        f"{d} {version(d)}" for d in ("redis", "openai-agents", "langchain-core", "langchain-community")
    )
    print(f"\nredis-sessions integrations vs the frameworks' own Redis histories — {where}; {versions}")
    print(f"medians of {args.rounds} interleaved rounds; 'vs theirs' = median per-round ops/s ratio\n")
    print(table(rows))
    for note in bench.skipped:
        print(f"skipped: {note}")
    if args.json:
        with open(args.json, "w", encoding="utf-8") as f:
            json.dump({"where": where, "versions": versions, "rows": rows}, f, indent=1)


if __name__ == "__main__":
    sys.exit(main())
