"""``RedisSessionService`` against Google ADK's own session services, side by side.

    .venv/bin/pip install -e '.[bench]'
    .venv/bin/python benchmarks/bench_adk.py [--rounds 5] [--ops 300] [--json FILE]

Ours over an ``AsyncSessionStore`` and over a ``SessionStore`` (through ``asyncio.to_thread``)
against ADK's ``InMemorySessionService`` (one process only: nothing shared, nothing kept) and
``DatabaseSessionService`` on a SQLite file (``sqlite+aiosqlite``, the reference). Events are what
a run with a tool produces: user text, a function call, its response, the model's answer (about
200 bytes of text each); each appended event carries a session-state delta.

Same method as ``suite.py`` (its ``_harness``): interleaved rounds, system order rotated each round,
medians over rounds; *vs* is the median of per-round ops/s ratios against the database service.
``REDIS_URL``: that server, under a unique key prefix; otherwise a throw-away redis-server.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import sys
import tempfile
import uuid
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any, TypeVar

import redis
from _harness import Case, Sample, run, server, summarize, time_async, version
from bench_integrations import _text, table
from google.adk.events import Event, EventActions
from google.adk.sessions import BaseSessionService, InMemorySessionService
from google.adk.sessions.base_session_service import GetSessionConfig
from google.adk.sessions.database_session_service import DatabaseSessionService
from google.genai import types

from redis_sessions import AsyncSessionStore, SessionStore
from redis_sessions.integrations.adk import RedisSessionService

T = TypeVar("T")
APP = "bench"
REFERENCE = "DatabaseSessionService (SQLite)"


def adk_events(n: int, seed: int = 20240601) -> list[Event]:
    """``n`` events as a run with a tool produces them, over and over."""
    rng = random.Random(seed)
    out: list[Event] = []
    for i in range(n):
        kind = i % 4
        if kind == 0:
            part, author = types.Part(text=_text(rng, 200)), "user"
        elif kind == 1:
            args = {"path": f"/src/module_{i}.py", "query": _text(rng, 200)}
            part, author = (
                types.Part(function_call=types.FunctionCall(id=f"c{i}", name="read", args=args)),
                "agent",
            )
        elif kind == 2:
            answer = types.FunctionResponse(id=f"c{i - 1}", name="read", response={"text": _text(rng, 200)})
            part, author = types.Part(function_response=answer), "agent"
        else:
            part, author = types.Part(text=_text(rng, 200)), "agent"
        role = "user" if author == "user" else "model"
        out.append(
            Event(
                invocation_id=f"inv-{i // 4}",
                author=author,
                content=types.Content(role=role, parts=[part]),
                actions=EventActions(state_delta={"turn": i // 4}),
            )
        )
    return out


def _fresh(event: Event) -> Event:
    """A copy with a new id and time: every append is a new event."""
    return event.model_copy(update={"id": Event.new_id(), "timestamp": event.timestamp + random.random()})


class Bench:
    def __init__(self, url: str, ops: int, folder: Path) -> None:
        self.url, self.ops = url, ops
        self.prefix = f"rsbench-adk-{uuid.uuid4().hex[:8]}"
        self.loop = asyncio.Runner()
        self.events = adk_events(1000)
        self.store = SessionStore.from_url(url, prefix=self.prefix)
        self.astore = self.arun(self._astore())
        self.database = DatabaseSessionService(f"sqlite+aiosqlite:///{folder / 'sessions.db'}")
        self.services: dict[str, BaseSessionService] = {
            "RedisSessionService (async store)": RedisSessionService(self.astore),
            "RedisSessionService (sync store)": RedisSessionService(self.store),
            "InMemorySessionService": InMemorySessionService(),
            REFERENCE: self.database,
        }

    async def _astore(self) -> AsyncSessionStore:
        return AsyncSessionStore.from_url(self.url, prefix=self.prefix)

    def arun(self, coro: Coroutine[Any, Any, T]) -> T:
        return self.loop.run(coro)

    def cases(self) -> list[Case]:
        n, events = self.ops, self.events

        def create(service: BaseSessionService) -> Callable[[int, int], Sample]:
            def runner(r: int, count: int) -> Sample:
                user = f"c-{uuid.uuid4().hex}"
                return self.arun(
                    time_async(
                        count, lambda i: service.create_session(app_name=APP, user_id=user, state={"k": i})
                    )
                )

            return runner

        def append(service: BaseSessionService) -> Callable[[int, int], Sample]:
            def runner(r: int, count: int) -> Sample:
                session = self.arun(service.create_session(app_name=APP, user_id=f"a-{uuid.uuid4().hex}"))
                batch = [_fresh(events[i % len(events)]) for i in range(count)]
                return self.arun(time_async(count, lambda i: service.append_event(session, batch[i])))

            return runner

        def read(
            service: BaseSessionService, history: int, recent: int | None
        ) -> Callable[[int, int], Sample]:
            session = self.arun(service.create_session(app_name=APP, user_id=f"r-{uuid.uuid4().hex}"))
            for event in events[:history]:
                self.arun(service.append_event(session, _fresh(event)))
            config = GetSessionConfig(num_recent_events=recent)

            def get(i: int) -> Any:
                return service.get_session(
                    app_name=APP, user_id=session.user_id, session_id=session.id, config=config
                )

            return lambda r, count: self.arun(time_async(count, get))

        def case(
            op: str, count: int, build: Callable[[BaseSessionService], Callable[[int, int], Sample]]
        ) -> Case:
            systems = {name: build(service) for name, service in self.services.items()}
            return Case(op, "ops", count, systems, dict.fromkeys(systems), reference=REFERENCE)

        return [
            case("create_session", n, create),
            case("append_event", n, append),
            case("get_session of 100 events", n // 2, lambda s: read(s, 100, None)),
            case("get_session(recent 20) of 1,000", n // 5, lambda s: read(s, 1000, 20)),
        ]

    def cleanup(self) -> None:
        raw = redis.Redis.from_url(self.url)
        doomed = list(raw.scan_iter(match=f"{self.prefix}*", count=1000))
        for i in range(0, len(doomed), 500):
            raw.unlink(*doomed[i : i + 500])
        raw.close()
        self.store.close()
        self.arun(self.astore.aclose())
        self.arun(self.database.close())
        self.loop.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--ops", type=int, default=300, help="creates and appends per system per round")
    parser.add_argument("--pin", choices=("none", "same", "split"), default="none")
    parser.add_argument("--json", help="write every row (all rounds) to this file")
    args = parser.parse_args()
    with server(args.pin) as (url, where), tempfile.TemporaryDirectory() as folder:
        bench = Bench(url, args.ops, Path(folder))
        try:
            cases = bench.cases()
            run(cases, args.rounds)
            rows = [row for case in cases for row in summarize(case)]
        finally:
            bench.cleanup()
    versions = ", ".join(f"{d} {version(d)}" for d in ("redis", "google-adk", "sqlalchemy", "aiosqlite"))
    print(f"\nRedisSessionService vs ADK's own session services — {where}; {versions}")
    print(f"medians of {args.rounds} interleaved rounds; 'vs theirs' = median per-round ops/s ratio")
    print(f"against {REFERENCE}\n")
    print(table(rows))
    if args.json:
        with open(args.json, "w", encoding="utf-8") as f:
            json.dump({"where": where, "versions": versions, "rows": rows}, f, indent=1)


if __name__ == "__main__":
    sys.exit(main())
