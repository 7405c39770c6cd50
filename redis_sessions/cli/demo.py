"""``redis-sessions demo``: agent processes append to one conversation at once, then the checks
that nothing was lost, duplicated or reordered, and a reply streamed into it and watched live."""

from __future__ import annotations

import contextlib
import itertools
import multiprocessing
import shutil
import threading
import time
from collections.abc import Iterator, Sequence
from multiprocessing.process import BaseProcess
from multiprocessing.queues import Queue
from multiprocessing.synchronize import Barrier
from queue import Empty
from typing import Any

import click
from rich.console import Console
from rich.text import Text

from .. import AgentMessage, Appended, Delta, Session, SessionId, SessionStore
from ..embedded import embedded_redis
from ..models import Text as TextBlock
from ..models import ToolUse
from .common import Settings, open_store, redacted
from .render import ROLE_STYLE, render_block

__all__ = ["demo"]

PER_TURN = 4  # user question, assistant tool call, tool result, assistant answer
# (question, tool, tool input, tool output, answer): what an agent "does" in one turn.
TASKS: list[tuple[str, str, dict[str, Any], str, str]] = [
    ("What's the weather in Oslo?", "get_weather", {"city": "Oslo", "unit": "celsius"},
     '{"temp_c": 7, "conditions": "light rain"}', "It is 7 °C with light rain in Oslo."),
    ("How many orders shipped yesterday?", "run_sql", {"sql": "SELECT count(*) FROM orders", "day": -1},
     '{"rows": [[1284]]}', "1,284 orders shipped yesterday."),
    ("Find the docs for rate limits.", "search_docs", {"query": "rate limits", "limit": 3},
     '["api/limits.md", "guides/retries.md"]', "See api/limits.md; retries are in guides/retries.md."),
    ("Convert 250 EUR to JPY.", "convert_currency", {"amount": 250, "from": "EUR", "to": "JPY"},
     '{"amount": 40612.5, "rate": 162.45}', "250 EUR is about 40,612 JPY."),
]  # fmt: skip
Report = tuple[int, str | None, list[tuple[str, int]]]  # agent, error, (message id, seq returned)


def _turn(agent: int, turn: int) -> list[AgentMessage]:
    question, tool, tool_input, output, answer = TASKS[(agent + turn) % len(TASKS)]
    ids = [f"agent{agent}-{turn * PER_TURN + k:05d}" for k in range(PER_TURN)]
    call = f"call_{agent}_{turn}"
    return [
        AgentMessage.user(f"[agent {agent}, turn {turn + 1}] {question}", id=ids[0]),
        AgentMessage.assistant([TextBlock("Let me check."), ToolUse(call, tool, tool_input)], id=ids[1]),
        AgentMessage.tool_result(call, output, id=ids[2]),
        AgentMessage.assistant(answer, id=ids[3]),
    ]


def _agent(
    url: str, prefix: str, sid: str, agent: int, turns: int, start: Barrier, out: Queue[Report]
) -> None:
    """One agent process: append ``turns`` turns, then re-send one message as a lost reply would."""
    acks: list[tuple[str, int]] = []  # (id of the last message a call sent, the seq it returned)
    try:
        with SessionStore.from_url(url, prefix=prefix) as store:
            store.exists(sid)  # connect before the start line, so the appends really overlap
            start.wait(timeout=120)
            for turn in range(turns):
                user, call, result, answer = _turn(agent, turn)
                acks.append((user.id, store.append(sid, user)))
                acks.append((call.id, store.append(sid, call)))
                acks.append((answer.id, store.extend(sid, [result, answer])))  # a batch: all or nothing
            if store.append(sid, _turn(agent, 0)[0]) != acks[0][1]:  # a retry must not duplicate
                raise RuntimeError("re-sent message got a new seq: appends are not idempotent")
        out.put((agent, None, acks))
    except BaseException as exc:  # report anything; the parent decides PASS/FAIL
        start.abort()
        out.put((agent, f"{type(exc).__name__}: {exc}", acks))


def _checks(session: Session, agents: int, turns: int, acks: list[tuple[str, int]]) -> list[tuple[bool, str]]:
    ids = [m.id for m in session.messages]
    total = agents * turns * PER_TURN
    expected = [[m.id for t in range(turns) for m in _turn(a, t)] for a in range(agents)]
    in_order = all([i for i in ids if i.startswith(f"agent{a}-")] == expected[a] for a in range(agents))
    return [
        (len(ids) == total, f"{len(ids)} messages stored, expected {agents}x{turns}x{PER_TURN} = {total}"),
        (len(set(ids)) == len(ids), f"{len(ids) - len(set(ids))} duplicate message ids"),
        (in_order, "every agent's messages appear in the order it appended them"),
        (session.seq == len(ids), f"seq is {session.seq}, message count {len(ids)}"),
        (all(0 < s <= len(ids) and ids[s - 1] == i for i, s in acks), "each returned seq is its message's"),
    ]


def _print_conversation(console: Console, session: Session, show: int) -> None:
    """The conversation, one line a message; the middle is elided when there are over ``show``."""
    meta = ", ".join(f"{k}={v}" for k, v in session.metadata.items())
    console.print(Text.assemble(("session ", "bold"), f"{session.id}  model={session.model}  {meta}"))
    console.print(Text.assemble(("system: ", "magenta"), session.system_message or ""))
    first = session.seq - len(session.messages) + 1
    hidden = len(session.messages) - show if 0 < show < len(session.messages) else 0
    for n, m in enumerate(session.messages):
        if hidden and n == show // 2:
            console.print(Text(f"{'':>5}  … {hidden} more messages …", style="dim"))
        if hidden and show // 2 <= n < show // 2 + hidden:
            continue
        agent = m.id.split("-", 1)[0] if m.id.startswith("agent") else ""
        line = Text(f"{first + n:>5}  {agent:<7} ")
        line.append(f"{m.role.value:<9} ", style=ROLE_STYLE.get(m.role.value, ""))
        line.append("  ".join(render_block(b) for b in m.content))
        console.print(line, no_wrap=True, overflow="ignore" if console.soft_wrap else "ellipsis")


SUMMARY = (
    "All agents answered their questions; nothing was lost, duplicated or reordered, "
    "and this reply was streamed through Redis while it was written."
)


def _streamed_reply(
    console: Console, store: SessionStore, sid: SessionId, after: int
) -> list[tuple[bool, str]]:
    """A reply streamed token by token (a fake model in a thread) while this process watches it live
    through Redis, as a browser connected to another worker would; the checks of what it saw."""
    tokens = [word + " " for word in SUMMARY.split(" ")]
    tokens[-1] = tokens[-1].rstrip()

    def model() -> None:
        with store.stream(sid) as reply:
            for token in tokens:
                reply.write(token)
                time.sleep(0.02)  # the fake model's pace: a token every 20 ms

    producer = threading.Thread(target=model, name="demo-model")
    producer.start()
    seen: list[tuple[int, str]] = []
    final: Appended | None = None
    console.print(Text("streamed reply, watched live: ", style="bold"), end="")
    try:
        for event in store.watch(sid, after, partial=True, timeout=10):
            if isinstance(event, Delta):
                seen.append((event.index, event.text))
                console.print(event.text, end="", soft_wrap=True)
            elif isinstance(event, Appended) and event.deltas is not None:
                final = event
                break
    finally:
        producer.join(30)
        console.print()
    ordered = [i for i, _ in seen] == list(range(len(tokens)))
    text = final.message.text if final is not None else None
    return [
        (ordered, f"streamed reply: {len(seen)} deltas watched live, each once and in order"),
        (final is not None and text == "".join(t for _, t in seen) == SUMMARY,
         f"its final message (seq {final.seq if final else '?'}) is the text of those deltas"),
    ]  # fmt: skip


def _collect(procs: Sequence[BaseProcess], results: Queue[Report]) -> list[Report]:
    """Every agent's report, in agent order; one that died without reporting is an error too."""
    reports: dict[int, Report] = {}
    while len(reports) < len(procs):
        alive = any(p.is_alive() for p in procs)  # checked first: a dead agent's report is queued
        try:
            report = results.get(timeout=0.5)
        except Empty:
            if not alive:
                break
            continue
        reports[report[0]] = report
    for a, p in enumerate(procs):
        p.join()
        reports.setdefault(a, (a, f"exited with code {p.exitcode} without a report", []))
    return [reports[a] for a in range(len(procs))]


@contextlib.contextmanager
def _server(console: Console, url: str | None) -> Iterator[str]:
    if url:
        console.print(f"Using Redis at {redacted(url)}")
        yield url
        return
    binary = shutil.which("redis-server")
    with contextlib.ExitStack() as stack:
        try:
            embedded = stack.enter_context(embedded_redis())
        except RuntimeError as exc:  # neither redis-server nor fakeredis, or the server did not start
            raise click.ClickException(str(exc).splitlines()[0]) from exc
        what = f"a throw-away {binary}" if binary else "fakeredis's TCP server (no redis-server on PATH)"
        console.print(f"No --url or REDIS_URL: started {what} at {embedded}")
        yield embedded


@click.command(short_help="Several processes share one conversation; check nothing is lost.")
@click.option("--agents", default=4, show_default=True, type=click.IntRange(1, 64), help="Agent processes.")
@click.option("--turns", default=25, show_default=True, type=click.IntRange(1), help="Turns per agent.")
@click.option("--show", default=16, show_default=True, type=click.IntRange(0), help="Messages shown, 0: all.")
@click.option("--keep", is_flag=True, help="Keep the session in Redis to look at.")
@click.pass_obj
def demo(settings: Settings, agents: int, turns: int, show: int, keep: bool) -> None:
    """Agent processes append to one conversation at once; print it and check nothing was lost;
    then stream a reply into it token by token while watching it live through Redis.

    Without --url or REDIS_URL it starts a throw-away server (redis-server, else fakeredis).
    Exits 0 when every check passes, 1 otherwise.
    """
    console = Console(markup=False)  # messages are data: "[...]" in them is not Rich markup
    console.soft_wrap = not console.is_terminal  # piped output: whole lines, no wrapping or cropping
    with _server(console, settings.url) as url, open_store(url, settings.prefix) as store:
        sid = store.create(
            "demo-llm", turns * PER_TURN, f"You are one of {agents} agents sharing this conversation.",
            metadata={"app": "redis-sessions demo", "agents": str(agents), "turns": str(turns)},
        )  # fmt: skip
        ctx = multiprocessing.get_context("spawn")
        start, results = ctx.Barrier(agents + 1), ctx.Queue()
        args = (url, settings.prefix, str(sid))
        procs = [ctx.Process(target=_agent, args=(*args, a, turns, start, results)) for a in range(agents)]
        for p in procs:
            p.daemon = True  # never outlive the demo
            p.start()
        with contextlib.suppress(threading.BrokenBarrierError):  # an agent failed: its report says why
            start.wait(timeout=120)
        began = time.perf_counter()
        reports = _collect(procs, results)
        elapsed = time.perf_counter() - began
        session = store.load(sid)
        if session is None:
            errors = "; ".join(f"agent {a}: {err}" for a, err, _ in reports if err)
            raise click.ClickException(
                f"session {sid} vanished during the demo ({errors or 'no agent failed'})"
            )
        _print_conversation(console, session, show)
        checks = [(False, f"agent {a}: {err}") for a, err, _ in reports if err]
        checks += _checks(session, agents, turns, [ack for _, _, acks in reports for ack in acks])
        checks += _streamed_reply(console, store, sid, session.seq)
        if keep:
            console.print(f"Kept session {sid}: its keys are {settings.prefix}:{{{sid}}}:*")
        else:
            store.delete(sid)
    for ok, what in checks:
        console.print(Text.assemble(("  ✓ " if ok else "  ✗ ", "green" if ok else "bold red"), what))
    writers = [m.id.split("-", 1)[0] for m in session.messages]
    turns_taken = sum(a != b for a, b in itertools.pairwise(writers))
    calls = sum(len(acks) for _, _, acks in reports)
    rate = f"{calls} append/extend calls in {elapsed:.2f} s ({calls / max(elapsed, 1e-9):,.0f}/s)"
    if all(ok for ok, _ in checks):
        summary = f"{len(writers)} messages from {agents} processes, writer changed {turns_taken} times"
        console.print(Text.assemble(("PASS", "bold green"), f": {summary}; {rate}"))
    else:
        failed = sum(not ok for ok, _ in checks)
        console.print(Text.assemble(("FAIL", "bold red"), f": {failed} check(s) failed, {rate}"))
        raise SystemExit(1)
