"""What telemetry costs an append (issue 16): off against the package before telemetry, and on.

    .venv/bin/python benchmarks/bench_telemetry.py                  # 7 rounds, about a minute
    .venv/bin/python benchmarks/bench_telemetry.py --rounds 9 --blocks 40 --before REV

One process holds two copies of the package: this tree's ``redis_sessions`` and, imported as
``redis_sessions_before``, ``redis_sessions/`` as it was at ``--before`` (``git archive``; by default the
parent of the commit that added ``redis_sessions/telemetry.py``; the package imports itself only
relatively, so the copy runs as it is). Variants: ``before``; ``off``, this tree with no
``telemetry=`` (the default); ``api``, ``telemetry=Telemetry()`` with no SDK configured
(OpenTelemetry's no-op providers); ``sdk``, ``Telemetry`` on the SDK's tracer and meter providers with
exporters that drop everything (a batch span processor and a periodic metric reader, as a deployment
has them). A round times ``--blocks`` blocks of ``--block`` appends per variant, the variants
interleaved block by block (order rotated), so the machine's load falls on all of them alike; the
ratios are taken within each round and their median over rounds is reported, beside each variant's
median µs per append: by the process's CPU clock (the client's work, which is what telemetry adds
to, and steady on a loaded machine) and by the wall clock (Redis's time and the load included).
Modes: ``sync`` (``SessionStore.append``), ``async`` (one task: the lean line) and ``async50`` (50
tasks on 50 sessions: auto-pipelined). The server is the benchmark's own (``REDIS_URL`` is honoured).
"""

from __future__ import annotations

import argparse
import asyncio
import importlib
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from _harness import server
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import (
    MetricExporter,
    MetricExportResult,
    MetricsData,
    PeriodicExportingMetricReader,
)
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter, SpanExportResult

import redis_sessions
from redis_sessions import Telemetry

ROOT = Path(__file__).resolve().parent.parent
VARIANTS = ("before", "off", "api", "sdk")
MODES = ("sync", "async", "async50")
TEXT = "x" * 200


class Spans(SpanExporter):
    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        return SpanExportResult.SUCCESS


class Metrics(MetricExporter):
    def export(
        self, metrics_data: MetricsData, timeout_millis: float = 0, **kwargs: Any
    ) -> MetricExportResult:
        return MetricExportResult.SUCCESS

    def force_flush(self, timeout_millis: float = 0) -> bool:
        return True

    def shutdown(self, timeout_millis: float = 0, **kwargs: Any) -> None:
        pass


def sdk_telemetry() -> Telemetry:
    tracer = TracerProvider()
    tracer.add_span_processor(BatchSpanProcessor(Spans()))
    meter = MeterProvider(metric_readers=[PeriodicExportingMetricReader(Metrics(), 10_000)])
    return Telemetry(tracer_provider=tracer, meter_provider=meter)


def packages(before: Path) -> dict[str, tuple[Any, dict[str, Any]]]:
    """Each variant's package module and store options."""
    sys.path.insert(0, str(before))
    old = importlib.import_module("redis_sessions_before")
    return {
        "before": (old, {}),
        "off": (redis_sessions, {}),
        "api": (redis_sessions, {"telemetry": Telemetry()}),
        "sdk": (redis_sessions, {"telemetry": sdk_telemetry()}),
    }


def order(rotate: int) -> tuple[str, ...]:
    return VARIANTS[rotate % len(VARIANTS) :] + VARIANTS[: rotate % len(VARIANTS)]


def clocks() -> tuple[float, float]:
    """(wall, CPU of this process): the CPU clock counts only the client's work, whatever the
    load of the machine, and the client's work is what telemetry adds to."""
    return time.perf_counter(), time.process_time()


def since(start: tuple[float, float]) -> tuple[float, float]:
    wall, cpu = clocks()
    return wall - start[0], cpu - start[1]


Totals = dict[str, list[float]]  # variant -> [wall s, CPU s]


def add(total: Totals, variant: str, took: tuple[float, float]) -> None:
    total[variant][0] += took[0]
    total[variant][1] += took[1]


def sync_round(url: str, prefix: str, pkgs: dict[str, Any], blocks: int, block: int, r: int) -> Totals:
    stores = {
        v: pkg.SessionStore.from_url(url, prefix=f"{prefix}:{v}", **opts) for v, (pkg, opts) in pkgs.items()
    }
    try:
        sids = {v: store.create() for v, store in stores.items()}

        def run(variant: str) -> tuple[float, float]:
            store, sid, make = stores[variant], sids[variant], pkgs[variant][0].AgentMessage
            batch = [make.user(TEXT) for _ in range(block)]
            start = clocks()
            for m in batch:
                store.append(sid, m)
            return since(start)

        for v in stores:  # warm up: scripts loaded, connections made
            run(v)
        total: Totals = {v: [0.0, 0.0] for v in VARIANTS}
        for _ in range(blocks):
            for variant in order(r):
                add(total, variant, run(variant))
        return total
    finally:
        for store in stores.values():
            store.close()


async def async_round(
    url: str, prefix: str, pkgs: dict[str, Any], blocks: int, block: int, r: int, tasks: int
) -> Totals:
    stores = {
        v: pkg.AsyncSessionStore.from_url(url, prefix=f"{prefix}:{v}", **opts)
        for v, (pkg, opts) in pkgs.items()
    }
    try:
        sids = {v: [await store.create() for _ in range(tasks)] for v, store in stores.items()}

        async def writer(store: Any, sid: Any, batch: list[Any]) -> None:
            for m in batch:
                await store.append(sid, m)

        async def run(variant: str) -> tuple[float, float]:
            store, make = stores[variant], pkgs[variant][0].AgentMessage
            batches = [[make.user(TEXT) for _ in range(block // tasks)] for _ in range(tasks)]
            start = clocks()
            await asyncio.gather(
                *(writer(store, sid, b) for sid, b in zip(sids[variant], batches, strict=True))
            )
            return since(start)

        for v in stores:
            await run(v)
        total: Totals = {v: [0.0, 0.0] for v in VARIANTS}
        for _ in range(blocks):
            for variant in order(r):
                add(total, variant, await run(variant))
        return total
    finally:
        for store in stores.values():
            await store.aclose()


def archive(rev: str, into: Path) -> None:
    """``redis_sessions/`` at ``rev``, as ``into/redis_sessions_before``."""
    tar = subprocess.run(["git", "archive", rev, "redis_sessions"], cwd=ROOT, check=True, capture_output=True)
    subprocess.run(["tar", "-x", "-C", str(into)], input=tar.stdout, check=True)
    (into / "redis_sessions").rename(into / "redis_sessions_before")


def default_before() -> str:
    """The parent of the commit that added ``redis_sessions/telemetry.py``."""
    added = subprocess.run(
        ["git", "log", "--diff-filter=A", "--format=%h", "--", "redis_sessions/telemetry.py"],
        cwd=ROOT,
        check=True,
        capture_output=True,
        text=True,
    ).stdout.split()
    return f"{added[-1]}^" if added else "HEAD"


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--blocks", type=int, default=20, help="blocks per variant per round")
    parser.add_argument("--block", type=int, default=100, help="appends per block")
    parser.add_argument("--before", default=None, help="revision without telemetry (default: see the module)")
    parser.add_argument("--modes", default=",".join(MODES))
    parser.add_argument("--pin", choices=("none", "same", "split"), default="none")
    args = parser.parse_args(argv)
    rev = args.before or default_before()
    modes = args.modes.split(",")
    load = os.getloadavg()
    seconds: dict[tuple[str, str], list[list[float]]] = {(m, v): [] for m in modes for v in VARIANTS}
    with tempfile.TemporaryDirectory(prefix="rs-before-") as where, server(args.pin) as (url, described):
        archive(rev, Path(where))
        pkgs = packages(Path(where))
        prefix = f"bench-otel-{os.getpid()}"
        print(f"server: {described}; before = {rev}; load {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}")
        for r in range(args.rounds):
            for mode in modes:
                if mode == "sync":
                    got = sync_round(url, prefix, pkgs, args.blocks, args.block, r)
                else:
                    tasks = 1 if mode == "async" else 50
                    got = asyncio.run(async_round(url, prefix, pkgs, args.blocks, args.block, r, tasks))
                for variant, took in got.items():
                    seconds[mode, variant].append(took)
            print(f"round {r + 1}/{args.rounds} done", file=sys.stderr)
    end = os.getloadavg()
    ops = args.blocks * args.block
    print(
        f"load at the end {end[0]:.2f} {end[1]:.2f} {end[2]:.2f}; {args.rounds} rounds of {ops} appends each"
    )
    heads = [f"{v} µs" for v in VARIANTS] + [f"{v}/before" for v in VARIANTS[1:]]
    for clock, name in ((1, "client CPU per append"), (0, "wall time per append")):
        print(f"\n{name} (medians over rounds; ratios: the median of each round's ratio)")
        print(f"| mode | {' | '.join(heads)} |")
        print("|" + " --- |" * (1 + len(heads)))
        for mode in modes:
            runs = {v: [got[clock] for got in seconds[mode, v]] for v in VARIANTS}
            medians = [statistics.median(runs[v]) / ops * 1e6 for v in VARIANTS]
            ratios = [
                statistics.median(a / b for a, b in zip(runs[v], runs["before"], strict=True))
                for v in VARIANTS[1:]
            ]
            cells = [f"{m:.1f}" for m in medians] + [f"{x:.3f}" for x in ratios]
            print(f"| {mode} | {' | '.join(cells)} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
