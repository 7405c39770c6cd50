"""What the suite prints and draws: the table, the memory figures, the issue's targets, the chart."""

from __future__ import annotations

from typing import Any

from _procs import A_COLD, A_WARM, AG, COLD, RS, RS_A, WARM

X, D = "\u00d7", "\u2013"  # the tables' times sign and dash
FRESH, WRITERS = "read 1,000 fresh process", "4 processes, one session"

# (target, op (prefix), system, against "raw" (the row's baseline) or "ref" (RedisSession), at least).
# Issue 15's; "ls"/"stats" rows have the package at --before as their baseline.
TARGETS = [
    ("append ≥ 1.1x raw", "append", RS, "raw", 1.1),
    ("append ≥ 6x RedisSession", "append", RS, "ref", 6.0),
    ("extend x10 ≥ 1.0x raw (one RPUSH of 10)", "extend", RS, "raw", 1.0),
    ("asyncio, 50 tasks on 50 sessions ≥ 2x raw", "asyncio, 50 tasks", RS_A, "raw", 2.0),
    ("asyncio, many sessions ≥ 2x raw", "asyncio, 1,000", RS_A, "raw", 2.0),
    ("asyncio, many sessions ≥ 2x raw", "asyncio, 100 ", RS_A, "raw", 2.0),
    ("4 processes ≥ 1.0x raw, none lost or duplicated", WRITERS, RS, "raw", 1.0),
    ("read 1,000 fresh process, default store ≥ 3.5x raw", FRESH, RS, "raw", 3.5),
    ("last 20 of 1,000 cold, async ≥ 1.0x raw", "last 20", A_COLD, "raw", 1.0),
    ("ls ≥ 3x faster than before", "ls ", RS, "raw", 3.0),
    ("stats ≥ 3x faster than before", "stats ", RS, "raw", 3.0),
]


def _row(rows: list[dict[str, Any]], op: str, system: str) -> dict[str, Any] | None:
    return next((r for r in rows if r["op"].startswith(op) and r["system"] == system), None)


def targets(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Each of the issue's targets with the measured median ratio and whether it is met."""
    out = []
    for target, op, system, against, need in TARGETS:
        row = _row(rows, op, system)
        if row is None:
            continue
        ratio = row["ratio_vs_raw"] if against == "raw" else row["ratio_vs_ref"]
        ratios = row["ratios"] if against == "raw" else row["ratios_vs_ref"]
        checks_ok = all(c["ok"] for c in row["checks"])
        floors = [r for r in rows if r["op"] == row["op"] and r["system"].startswith("floor:")]
        out.append(
            {
                "target": target,
                "op": row["op"],
                "system": system,
                "against": row["baseline"] if against == "raw" else AG,
                "need": need,
                "measured": ratio,
                "range": [min(ratios), max(ratios)],
                "met": ratio >= need and checks_ok,
                # the same case with no library (suite.py's floors), best first: what bounds it
                "floors": sorted(
                    ({"system": f["system"], "measured": f["ratio_vs_raw"]} for f in floors),
                    key=lambda f: -f["measured"],
                )
                if against == "raw"
                else [],
            }
        )
    return out


def _ratio(x: float | None) -> str:
    return "" if x is None else f"{x:.2f}x"


def table(rows: list[dict[str, Any]]) -> str:
    head = (
        f"{'op':<26} {'system':<25} {'ops/s':>9} {'p50 µs':>8} {'p99 µs':>8} {'CPU µs/op':>9} "
        f"{'vs raw':>7} {'(rounds)':>13} {'vs RedisS.':>10}"
    )
    lines = [head, "-" * len(head)]
    op = None
    for r in rows:
        spread = f"{min(r['ratios']):.2f}-{max(r['ratios']):.2f}" if r["system"] != r["baseline"] else ""
        lines.append(
            f"{r['op'] if r['op'] != op else '':<26} {r['system']:<25} {r['ops_per_s']:>9,.0f} "
            f"{r['p50_us']:>8,.0f} {r['p99_us']:>8,.0f} {r['cpu_us_per_op']:>9,.0f} "
            f"{_ratio(r['ratio_vs_raw']):>7} {spread:>13} {_ratio(r['ratio_vs_ref']):>10}"
        )
        op = r["op"]
    return "\n".join(lines)


def report(results: dict[str, Any]) -> str:
    m, cfg, rows = results["machine"], results["config"], results["results"]
    out = [
        "",
        f"redis-sessions @ {m['commit']} (redis_sessions/ last changed in {m['library_commit']}; codec "
        f"{cfg['codec']}) vs raw redis-py and the Agents SDK's RedisSession — {m['date']}",
        f"{m['nproc']} CPU ({m['cpu']}), load {m['loadavg'][0]:.2f}; Python {m['python']}, redis-server "
        f"{m['redis_server']} [{m['server']}], redis-py {m['redis_py']} (hiredis {m['hiredis']}), "
        f"msgspec {m['msgspec']}, openai-agents {m['openai-agents']}",
        f"messages as JSON: text {cfg['text_json_bytes']:.0f} B, tool call {cfg['tool_json_bytes']:.0f} B, "
        f"mean {cfg['json_bytes']:.0f} B ({cfg['codec']}: mean {cfg['stored_bytes']:.0f} B)",
        f"medians of {cfg['rounds']} interleaved rounds; vs raw / vs RedisSession = median of per-round "
        f"ops/s ratios (async systems vs raw redis.asyncio); {cfg['elapsed_s']} s",
        "",
        table(rows),
        "",
    ]
    for r in rows:
        for i, c in enumerate(r["checks"]):
            if i == 0 or not c["ok"]:
                out.append(
                    f"{r['op']}, {r['system']}: {len(r['checks'])} rounds, "
                    f"{'all correct' if all(x['ok'] for x in r['checks']) else 'WRONG'} "
                    f"(round 1: {c['count']}/{c['expected']} messages, {c['duplicates']} duplicates, "
                    f"per-writer order kept: {c['in_order']})"
                )
    out += ["", "Redis memory per stored message (MEMORY USAGE ... SAMPLES 0 of every key, 1,000 messages):"]
    for mem in results["memory"]:
        out.append(
            f"  {mem['system']:<28} {mem['bytes_per_message']:>6.0f} B/message "
            f"({mem['keys']} keys; encoded message {mem['payload_bytes']:.0f} B)"
        )
    st = results["server_us_per_call"]
    shown = [f"{k} {v['us_per_call']:.1f}" for k, v in sorted(st.items()) if v["calls"] >= 100]
    out += ["", "Redis server time per call over the run, µs: " + ", ".join(shown)]
    out += ["", "append.lua, server µs per call on a plain session (INFO commandstats, medians):"]
    for row in results.get("append_script", []):
        inner = ", ".join(
            f"{c} {v['calls_per_append']:g}x{v['us_per_call']:.2f}" for c, v in row["commands"].items()
        )
        out.append(f"  {row['variant']:<16} {row['us_per_call']:5.1f}  {inner}")
    out += ["", "Targets (issue 15):"]
    for t in results["targets"]:
        out.append(
            f"  {'met    ' if t['met'] else 'NOT met'} {t['target']:<58} {t['system']:<25} "
            f"{t['measured']:.2f}x vs {t['against']} (rounds {t['range'][0]:.2f}-{t['range'][1]:.2f})"
        )
        for f in t["floors"]:
            out.append(f"  {'':<66} {f['system']:<32} {f['measured']:.2f}x")
    return "\n".join(out)


COLORS = {RS: "#1f5fa8", COLD: "#1f5fa8", WARM: "#5b9bd5", RS_A: "#2e8b57", A_COLD: "#2e8b57"}
COLORS |= {A_WARM: "#7cc49a", AG: "#e07b39"}


def chart(results: dict[str, Any], path: str) -> None:
    """Ratios vs raw redis-py per operation and system (log scale), memory per message, targets."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = [r for r in results["results"] if r["system"] != r["baseline"]]
    m, cfg = results["machine"], results["config"]
    labels, values, colors, ypos, y, op = [], [], [], [], 0.0, None
    for r in rows:
        if op is not None and r["op"] != op:
            y += 0.6
        labels.append(f"{r['op']}  ·  {r['system']}" if r["op"] != op else r["system"])
        values.append(r["ratio_vs_raw"])
        colors.append(COLORS.get(r["system"], "#888888"))
        ypos.append(y)
        y, op = y + 1, r["op"]
    fig, axes = plt.subplot_mosaic(
        [["ratios", "memory"], ["ratios", "targets"]],
        figsize=(14, 0.27 * y + 2.2),
        width_ratios=[2.6, 1],
        height_ratios=[1, 2.2],
        layout="constrained",
    )
    ax, mx, tx = axes["ratios"], axes["memory"], axes["targets"]
    ax.barh(ypos, values, color=colors, height=0.8)
    ax.set_xscale("log")
    ax.axvline(1.0, color="black", linewidth=1)
    ax.set_yticks(ypos, labels, fontsize=7.5)
    ax.invert_yaxis()
    ax.set_xlabel("throughput ÷ raw redis-py's in the same round (median of rounds; log scale; 1 = raw)")
    ax.grid(axis="x", which="both", alpha=0.3)
    at = {(r["op"], r["system"]): yy for r, yy in zip(rows, ypos, strict=True)}
    need = {at[(t["op"], t["system"])]: t["need"] for t in results["targets"] if t["against"] != AG}
    for yy, v in zip(ypos, values, strict=True):
        ax.text(max(v, need.get(yy, 0)) * 1.06, yy, f"{v:.2f}\u00d7", va="center", fontsize=7)
    ax.set_xlim(min(values) / 1.5, max(values) * 2.2)
    ax.scatter(list(need.values()), list(need), marker="|", s=160, color="red", zorder=3)
    ax.scatter([], [], marker="|", s=160, color="red", label="issue 15 target")
    ax.legend(loc="lower right", fontsize=7.5)
    mem = results["memory"]
    mx.barh(range(len(mem)), [x["bytes_per_message"] for x in mem], color="#777777", height=0.6)
    mx.set_yticks(range(len(mem)), [x["system"] for x in mem], fontsize=7.5)
    mx.invert_yaxis()
    mx.set_xlabel("bytes per message", fontsize=8)
    mx.set_title("Redis memory, 1,000 messages (all keys)", fontsize=8)
    for i, x in enumerate(mem):
        mx.text(x["bytes_per_message"], i, f" {x['bytes_per_message']:.0f}", va="center", fontsize=7)
    mx.set_xlim(0, max(x["bytes_per_message"] for x in mem) * 1.3)
    tx.axis("off")
    lines = ["Issue 15 targets (median ratio, range over rounds)", ""]
    for t in results["targets"]:
        lines.append(f"{'met ' if t['met'] else 'NOT '} {t['target']}")
        lines.append(f"     {t['system']}: {t['measured']:.2f}x ({t['range'][0]:.2f}-{t['range'][1]:.2f})")
    tx.text(0, 1, "\n".join(lines), va="top", ha="left", family="monospace", fontsize=6)
    fig.suptitle(
        f"redis-sessions @ {m['commit']} (library {m['library_commit']}) vs raw redis-py and the OpenAI "
        f"Agents SDK's RedisSession (medians of {cfg['rounds']} interleaved rounds, --pin {cfg['pin']})\n"
        f"{m['date'][:10]} · {m['nproc']} CPU {m['cpu']} · "
        f"Python {m['python']} · redis-server {m['redis_server']} · redis-py {m['redis_py']} "
        f"(hiredis {m['hiredis']}) · openai-agents {m['openai-agents']} · codec {cfg['codec']}",
        fontsize=9,
    )
    fig.savefig(path, dpi=110)
    plt.close(fig)


def markdown(results: dict[str, Any]) -> str:
    """The run as the documentation's tables: every case, the targets, append.lua's server time."""
    m, cfg = results["machine"], results["config"]
    out = [
        f"redis-sessions @ `{m['commit']}` (library `{m['library_commit']}`), {m['date'][:16]}, "
        f"{m['nproc']} CPU {m['cpu']}, load {m['loadavg'][0]:.2f} at the start; Python {m['python']}, "
        f"redis-server {m['redis_server']}, redis-py {m['redis_py']} (hiredis {m['hiredis']}), "
        f"msgspec {m['msgspec']}, openai-agents {m['openai-agents']}; codec {cfg['codec']}, "
        f"--pin {cfg['pin']}, {cfg['rounds']} rounds, {cfg['elapsed_s']} s.",
        "",
        "| op | system | ops/s | p50 µs | p99 µs | CPU µs/op | vs baseline (rounds) | vs RedisSession |",
        "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    op = None
    for r in results["results"]:
        base = r["system"] == r["baseline"]
        ratio = (
            f"1.00{X}"
            if base
            else f"**{r['ratio_vs_raw']:.2f}{X}** ({min(r['ratios']):.2f}{D}{max(r['ratios']):.2f})"
        )
        ref = "" if r["ratio_vs_ref"] is None else f"{r['ratio_vs_ref']:.2f}{X}"
        name = r["op"] if r["op"] != op else ""
        out.append(
            f"| {name} | {r['system']} | {r['ops_per_s']:,.0f} | {r['p50_us']:,.0f} "
            f"| {r['p99_us']:,.0f} | {r['cpu_us_per_op']:,.0f} | {ratio} | {ref} |"
        )
        op = r["op"]
    out += [
        "",
        "| target | system | measured (rounds) | against | met? | floors: no library, same run |",
        "| --- | --- | ---: | --- | --- | --- |",
    ]
    for t in results["targets"]:
        out.append(
            f"| {t['target']} | {t['system']} | {t['measured']:.2f}{X} "
            f"({t['range'][0]:.2f}{D}{t['range'][1]:.2f}) "
            f"| {t['against']} | {'yes' if t['met'] else '**no**'} | "
            + "; ".join(f"{f['system'].removeprefix('floor: ')} {f['measured']:.2f}{X}" for f in t["floors"])
            + " |"
        )
    out += ["", f"| append.lua, plain session | server µs/call | commands per append (calls {X} µs) |"]
    out += ["| --- | ---: | --- |"]
    for row in results.get("append_script", []):
        inner = ", ".join(
            f"{c} {v['calls_per_append']:g}{X}{v['us_per_call']:.2f}" for c, v in row["commands"].items()
        )
        out.append(f"| {row['variant']} | {row['us_per_call']:.1f} | {inner} |")
    return "\n".join(out) + "\n"
