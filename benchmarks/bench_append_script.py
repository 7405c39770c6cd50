"""Server time of ``append.lua`` per call and each command's share (issue 15), from ``INFO commandstats``.

    .venv/bin/python benchmarks/bench_append_script.py                       # this tree only
    .venv/bin/python benchmarks/bench_append_script.py --against 7cc5330     # and a commit's script, same run

Each round runs every variant back to back on its own new session (order rotated): ``--ops`` EVALSHAs
of one new message each, the command pre-built, so only the server's work differs. Variants: this
tree's ``append.lua``; ``--against REV``'s (read with ``git show``, preamble and all); a no-op script
with the same keys and arguments (the floor of any script); raw ``RPUSH`` of the same bytes. Sessions:
``plain`` (the defaults: no TTL, no cap), ``ttl`` (``ttl`` and ``max_messages`` set, so PEXPIREs and
trims run), ``leased`` (a fencing token checked on each call), ``quota`` (a ``max_session_bytes``
limit, so the byte total is read, checked and written) and ``tenant`` (a store with ``tenant_quota``:
the ledger's two keys passed, its room checked and the session's bytes and deadline recorded; not
run for ``--against``, whose script knows no ledger). Reported: the median over rounds of
the EVALSHA's µs per call, and, per append, the calls and µs of each command the script ran. The
server is the benchmark's own (``REDIS_URL`` is honoured, under a unique prefix). Server time only:
client time is the suite's business (``suite.py``).
"""

from __future__ import annotations

import argparse
import hashlib
import statistics
import subprocess
import sys
import uuid
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import redis
from _harness import command_stats, server, server_us_per_call
from _workload import SEED, make_messages

from redis_sessions import SessionStore, TenantQuota
from redis_sessions._scripts import SCRIPTS as SENT
from redis_sessions.keys import append_keys, script_keys

ROOT = Path(__file__).resolve().parent.parent
SCRIPTS = ROOT / "redis_sessions" / "scripts"
NOOP = "return {0, 0}"
# The least an atomic append idempotent by message id can do, with append.lua's keys and arguments:
# read the seq, ZADD NX each id and push what was new, write the seq (no TTL, trim, watchers, record,
# leases or limits): what a leaner append.lua could at best come down to.
MINIMAL = """local seq = tonumber(redis.call('HGET', KEYS[1], 'seq') or '0')
local n, fresh = seq, {}
for i = 6, #ARGV, 2 do
  if redis.call('ZADD', KEYS[3], 'NX', n + 1, ARGV[i]) == 1 then
    n = n + 1
    fresh[#fresh + 1] = ARGV[i + 1]
  end
end
if n > seq then
  redis.call('RPUSH', KEYS[2], unpack(fresh))
  redis.call('HSET', KEYS[1], 'seq', n)
end
return {0, n}"""


def with_preamble(text: str, preamble: str) -> str:
    """A script as the package sends it: the shared preamble put after its header comment."""
    lines = text.split("\n")
    end = next(i for i, line in enumerate(lines) if not line.startswith(("--", "#!")))
    return "\n".join([*lines[:end], "", preamble.rstrip("\n"), "\n".join(lines[end:])])


def at_revision(rev: str) -> str:
    """``append.lua`` as it was at ``rev``, with that revision's preamble."""

    def show(name: str) -> str:
        path = f"redis_sessions/scripts/{name}"
        return subprocess.run(
            ["git", "show", f"{rev}:{path}"], cwd=ROOT, check=True, capture_output=True, text=True
        ).stdout

    return with_preamble(show("append.lua"), show("_preamble.lua"))


def this_tree() -> str:
    """``append.lua`` as this tree's package sends it (with the preamble's functions it calls)."""
    return SENT["append"]


def measure(
    r: redis.Redis, sha: str | None, keys: Sequence[str], head: Sequence[Any], calls: list[tuple[Any, ...]]
) -> dict[str, Any]:
    """``len(calls)`` calls, each ending in (message id, data); EVALSHA (or RPUSH when ``sha`` is
    None) µs/call and the inner commands."""
    before = command_stats(r)
    if sha is None:
        for *_, data in calls:
            r.execute_command("RPUSH", keys[1], data)
    else:
        fixed = ("EVALSHA", sha, len(keys), *keys, *head)
        for tail in calls:
            reply = r.execute_command(*fixed, *tail)
            assert reply[0] == 0, reply
    stats = server_us_per_call(before, command_stats(r))
    stats.pop("info", None)
    return stats


CONFIGS: dict[str, dict[str, Any]] = {
    "plain": {},
    "ttl": {"ttl": 3600, "max_messages": 100_000},
    "leased": {},
    "quota": {"max_session_bytes": 10**12},
    "tenant": {"tenant_quota": TenantQuota(max_sessions=10**9, max_bytes=10**15)},
}


def run_variants(
    r: redis.Redis, variants: dict[str, str], rounds: int, ops: int, configs: Sequence[str] = tuple(CONFIGS)
) -> dict[tuple[str, str], list[dict[str, Any]]]:
    """Each round, each session kind, each variant (and raw RPUSH), order rotated: the
    ``command_stats`` difference of ``ops`` appends, by (session kind, variant)."""
    prefix = f"rsbench-{uuid.uuid4().hex[:8]}"
    msgs = make_messages(SEED, 50)
    shas = {name: r.script_load(src) for name, src in variants.items()}
    # Scripts from before token counts (issue 20) take 6 keys and no counts argument; the no-op
    # script and raw RPUSH take this tree's layout.
    counted = {name: "tokens list" in src or src in (NOOP, MINIMAL) for name, src in variants.items()}
    assert all(shas[n] == hashlib.sha1(s.encode()).hexdigest() for n, s in variants.items())
    names = [*variants, "raw RPUSH"]
    results: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for rnd in range(rounds):
        for config in configs:
            store = SessionStore(r, prefix=prefix, **CONFIGS[config])
            core = store.transport.core
            order = names[rnd % len(names) :] + names[: rnd % len(names)]
            for name in order:
                if config == "tenant" and name.startswith("at "):
                    continue
                sid = store.create(model="bench")  # with tenant_quota: sets the ledger's allowance
                fence = store.lease(sid, "bench", 600).acquire().token if config == "leased" else ""
                head = (core.version, core.codec.name, "", fence)
                counts = counted.get(name, True)
                keys = append_keys(prefix, sid, False) if counts else script_keys(prefix, sid, False)
                keys += core.ledger(sid)  # none unless tenant_quota
                calls = []
                for i in range(ops):
                    m = msgs[i % len(msgs)]
                    pair = (f"m{i}", core.encode(sid, m))
                    calls.append((str(core.tokens(sid, m)), *pair) if counts else pair)
                results.setdefault((config, name), []).append(measure(r, shas.get(name), keys, head, calls))
                store.delete(sid)
                r.delete(keys[1])
    return results


def summary(results: dict[tuple[str, str], list[dict[str, Any]]], ops: int) -> list[dict[str, Any]]:
    """Medians over rounds: µs per call of each variant, and per append each inner command's calls
    and µs per call."""
    rows = []
    for (config, name), rounds in results.items():
        top = "rpush" if name == "raw RPUSH" else "evalsha"
        inner = {}
        for cmd in sorted({c for x in rounds for c in x} - {top}):
            per = statistics.median(x.get(cmd, {"calls": 0})["calls"] / ops for x in rounds)
            each = statistics.median(x[cmd]["us_per_call"] for x in rounds if cmd in x)
            inner[cmd] = {"calls_per_append": per, "us_per_call": each}
        us = statistics.median(x[top]["us_per_call"] for x in rounds)
        rows.append({"session": config, "variant": name, "us_per_call": us, "commands": inner})
    return rows


def table(rows: list[dict[str, Any]]) -> str:
    out = ["| session | variant | µs/call | commands run per append (calls x µs each) |"]
    out.append("| --- | --- | ---: | --- |")
    for row in rows:
        inner = ", ".join(
            f"{cmd} {v['calls_per_append']:g}x{v['us_per_call']:.2f}" for cmd, v in row["commands"].items()
        )
        out.append(f"| {row['session']} | {row['variant']} | {row['us_per_call']:.1f} | {inner} |")
    return "\n".join(out)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--against", metavar="REV", help="also measure append.lua at this git revision")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--ops", type=int, default=3000, help="appends per variant per round")
    args = parser.parse_args(argv)
    variants = {"this tree": this_tree(), "minimal idempotent": MINIMAL, "no-op script": NOOP}
    if args.against:
        variants[f"at {args.against}"] = at_revision(args.against)
    with server("none") as (url, source):
        r = redis.Redis.from_url(url)
        results = run_variants(r, variants, args.rounds, args.ops)
        r.close()
    print(f"server: {source}; {args.rounds} rounds x {args.ops} appends; medians over rounds\n")
    print(table(summary(results, args.ops)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
