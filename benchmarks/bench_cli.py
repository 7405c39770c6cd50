"""The ``redis-sessions`` command on many sessions: wall time of ``ls``, ``ls --json``, ``stats``,
``export`` and ``import``, each run as a real process (interpreter start-up included).

Fills a private redis-server (or ``REDIS_URL``, under a fresh prefix) with ``--sessions`` sessions of
``--messages`` messages each (a user question, a tool call, its result, an answer, ...), written
with pipelined script calls, 1,000 sessions a round trip. Then runs each command once with its
output to a file, checks what it printed, and reports seconds and sessions per second.

    .venv/bin/python benchmarks/bench_cli.py [--sessions 100000] [--messages 4] [--no-import]
    .venv/bin/python benchmarks/bench_cli.py --against main --rounds 3 --no-import   # issue 15

``--against REV`` also runs ``ls`` and ``stats`` with the package as it was at that git revision
(``git archive`` into a temporary directory, put first on ``PYTHONPATH``), alternating with this
tree's in each of ``--rounds`` rounds, on the same sessions, and prints the medians and the median
of the per-round ratios.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import redis

from redis_sessions import AgentMessage, SessionStore, Text, ToolUse
from redis_sessions import _write as write  # the store's own calls, sent pipelined
from redis_sessions._scripts import SCRIPTS, SHAS
from redis_sessions.embedded import RedisServer

BATCH = 1000


def turn(n: int, k: int) -> list[AgentMessage]:
    call = f"call_{n}_{k}"
    return [
        AgentMessage.user(f"[{n}] question {k}: what is the weather in Oslo?"),
        AgentMessage.assistant([Text("Let me check."), ToolUse(call, "get_weather", {"city": "Oslo"})]),
        AgentMessage.tool_result(call, '{"temp_c": 7, "conditions": "light rain"}'),
        AgentMessage.assistant("It is 7 °C with light rain in Oslo."),
    ]


def fill(store: SessionStore, client: redis.Redis, sessions: int, messages: int) -> None:
    """``sessions`` sessions, created and filled through the store's scripts, pipelined."""
    for source in SCRIPTS.values():
        client.script_load(source)
    core = store.transport.core
    for start in range(0, sessions, BATCH):
        calls = []
        for n in range(start, min(sessions, start + BATCH)):
            sid = uuid.uuid4()
            history = [m for k in range(-(-messages // 4)) for m in turn(n, k)][:messages]
            model = "gpt-4o" if n % 3 else "claude-sonnet-4"
            calls.append(write.create(core, model, 0, None, {"n": str(n)}, sid))
            calls.append(write.extend(core, sid, history, None))
        with client.pipeline(transaction=False) as pipe:
            for call in calls:
                assert call.script is not None
                pipe.execute_command("EVALSHA", SHAS[call.script], len(call.keys), *call.keys, *call.args)
            replies = pipe.execute()
        for call, reply in zip(calls, replies, strict=True):
            call.parse(reply)  # raises if a script refused


def run(url: str, prefix: str, *args: str, output: Path, source: Path | None = None) -> float:
    """Seconds for ``python -m redis_sessions --url … --prefix … <args>``, stdout to ``output``
    (``source``: a directory holding another ``redis_sessions`` to run instead)."""
    # -P: the working directory is not put first on sys.path, or a run from the repository's root
    # would import this tree's package whatever PYTHONPATH names (both sides of --against the same).
    command = [sys.executable, "-P", "-m", "redis_sessions", "--url", url, "--prefix", prefix, *args]
    env = dict(os.environ)
    if source is not None:
        env["PYTHONPATH"] = os.pathsep.join([str(source), env.get("PYTHONPATH", "")])
    began = time.perf_counter()
    with output.open("wb") as out:
        done = subprocess.run(command, stdout=out, stderr=subprocess.PIPE, check=False, env=env)
    elapsed = time.perf_counter() - began
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(args)} failed ({done.returncode}): {done.stderr.decode()}")
    return elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sessions", type=int, default=100_000)
    parser.add_argument("--messages", type=int, default=4)
    parser.add_argument("--no-import", action="store_true", help="Skip timing import.")
    parser.add_argument("--against", metavar="REV", help="also time ls and stats at this git revision")
    parser.add_argument("--rounds", type=int, default=1, help="rounds of the --against comparison")
    args = parser.parse_args()
    with ExitStack() as stack:
        url = os.environ.get("REDIS_URL") or stack.enter_context(RedisServer()).url
        prefix, copy = f"rsbench-{uuid.uuid4().hex[:8]}", f"rsbench-{uuid.uuid4().hex[:8]}"
        client = stack.enter_context(redis.Redis.from_url(url))
        store = stack.enter_context(SessionStore(client, prefix=prefix))
        work = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="bench-cli-")))
        began = time.perf_counter()
        fill(store, client, args.sessions, args.messages)
        filled = time.perf_counter() - began
        print(f"filled {args.sessions:,} sessions x {args.messages} messages in {filled:.1f} s", flush=True)
        print(f"redis used_memory: {client.info('memory')['used_memory_human']}", flush=True)

        results: list[tuple[str, float]] = []

        def timed(name: str, *command: str, target: str | None = None, check: Any = None) -> Path:
            output = work / f"{name.replace(' ', '_')}.out"
            seconds = run(url, target or prefix, *command, output=output)
            if check is not None:
                check(output)
            results.append((name, seconds))
            print(f"{name:<16} {seconds:7.2f} s  {args.sessions / seconds:>10,.0f} sessions/s", flush=True)
            return output

        def rows(n: int) -> Any:
            return lambda out: _expect(sum(1 for _ in out.open("rb")), n)

        if args.against:
            source = work / "against"
            source.mkdir()
            archive = subprocess.run(
                ["git", "archive", args.against, "redis_sessions"],
                cwd=Path(__file__).resolve().parent.parent,
                check=True,
                capture_output=True,
            ).stdout
            subprocess.run(["tar", "-x", "-C", str(source)], input=archive, check=True)
            _expect_package(source, source / "redis_sessions")
            _compiled(source / "redis_sessions", Path(__file__).resolve().parent.parent / "redis_sessions")
            _expect_package(None, Path(__file__).resolve().parent.parent / "redis_sessions")
            compare(url, prefix, work, source, args.against, args.rounds, args.sessions)
        timed("ls", "ls", check=rows(args.sessions + 1))
        timed(
            "ls --json",
            "ls",
            "--json",
            check=lambda out: _expect(len(json.loads(out.read_bytes())), args.sessions),
        )
        timed(
            "stats --json",
            "stats",
            "--json",
            check=lambda out: _expect(json.loads(out.read_bytes())["sessions"], args.sessions),
        )
        dump = work / "all.jsonl"
        timed("export", "export", "-o", str(dump))
        _expect(sum(1 for _ in dump.open("rb")), args.sessions)
        print(f"export file: {dump.stat().st_size / 2**20:,.1f} MiB", flush=True)
        if not args.no_import:
            timed("import", "import", str(dump), target=copy)
            timed("import again", "import", str(dump), target=copy)
        if os.environ.get("REDIS_URL"):  # a shared server: remove what this run wrote
            for target in (prefix, copy):
                keys = list(client.scan_iter(match=f"{target}:*", count=10_000))
                for i in range(0, len(keys), 10_000):
                    client.unlink(*keys[i : i + 10_000])


def compare(url: str, prefix: str, work: Path, source: Path, rev: str, rounds: int, sessions: int) -> None:
    """``ls`` and ``stats --json``, this tree against ``source`` (``rev``), alternating, ``rounds``
    times; medians of the seconds and of the per-round ratios."""
    for name, command in (("ls", ("ls",)), ("stats --json", ("stats", "--json"))):
        ours, theirs = [], []
        for r in range(rounds):
            order = [None, source] if r % 2 == 0 else [source, None]
            for where in order:
                seconds = run(url, prefix, *command, output=work / "compare.out", source=where)
                (ours if where is None else theirs).append(seconds)
            print(
                f"  {name} round {r + 1}: this tree {ours[-1]:.2f} s, at {rev} {theirs[-1]:.2f} s: "
                f"{theirs[-1] / ours[-1]:.2f}x (load {os.getloadavg()[0]:.2f})",
                flush=True,
            )
        ratio = statistics.median(t / o for o, t in zip(ours, theirs, strict=True))
        print(
            f"{name:<16} this tree {statistics.median(ours):6.2f} s, at {rev} "
            f"{statistics.median(theirs):6.2f} s: {ratio:.2f}x faster"
            f" ({sessions:,} sessions, {rounds} rounds)",
            flush=True,
        )


def _compiled(*packages: Path) -> None:
    """Byte-compile both trees first, as an installed package is: with PYTHONDONTWRITEBYTECODE set
    (as here), every run would compile each module from its source again (~60 ms of start-up)."""
    subprocess.run([sys.executable, "-m", "compileall", "-q", *map(str, packages)], check=True)


def _expect_package(source: Path | None, wanted: Path) -> None:
    """The ``redis_sessions`` a run with ``source`` imports is the one at ``wanted``."""
    env = dict(os.environ)
    if source is not None:
        env["PYTHONPATH"] = os.pathsep.join([str(source), env.get("PYTHONPATH", "")])
    probe = [sys.executable, "-P", "-c", "import redis_sessions; print(redis_sessions.__file__)"]
    found = Path(subprocess.run(probe, env=env, check=True, capture_output=True, text=True).stdout.strip())
    if found.parent.resolve() != wanted.resolve():
        raise SystemExit(f"a run would import {found.parent}, not {wanted}")


def _expect(found: int, wanted: int) -> None:
    if found != wanted:
        raise SystemExit(f"expected {wanted:,}, found {found:,}")


if __name__ == "__main__":
    main()
