"""``redis-sessions stats``: how many sessions and messages, and the memory they take in Redis.

One pass over ``store.infos(memory=True)`` (SCAN and info.lua pages, relayed). A server
without ``MEMORY USAGE`` (fakeredis, some managed Redis) gets the counts without the bytes.
"""

from __future__ import annotations

import dataclasses
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import click

from .. import SessionInfo, SessionStore, StoreError, TenantUsage
from .._dirty import Lag, bound_record, lag
from .._sync_io import SyncTransport
from .common import Settings, collecting_no_garbage, connect, emit_json, make_console, size_text, when

__all__ = ["stats"]


@dataclass
class Tally:
    """The sums ``stats`` prints."""

    sessions: int = 0
    messages: int = 0
    appended: int = 0
    bytes: int | None = 0
    expiring: int = 0
    oldest: datetime | None = None
    newest: datetime | None = None
    by_model: Counter[str] = field(default_factory=Counter)
    held_by_model: Counter[str] = field(default_factory=Counter)
    record: str | None = None  # the backing record the prefix is bound to, if any
    lag: Lag = field(default_factory=lambda: Lag(0, 0, 0.0))  # what waits for write-behind

    def add(self, info: SessionInfo) -> None:
        self.sessions += 1
        self.messages += info.messages
        self.appended += info.seq
        self.bytes = None if self.bytes is None or info.bytes is None else self.bytes + info.bytes
        self.expiring += info.ttl is not None
        self.by_model[info.model] += 1
        self.held_by_model[info.model] += info.messages
        if info.updated_at is not None:
            self.oldest = min(self.oldest or info.updated_at, info.updated_at)
            self.newest = max(self.newest or info.updated_at, info.updated_at)

    def models(self) -> dict[str, dict[str, int]]:
        """Sessions and messages per model, the most used model first."""
        return {m: {"sessions": n, "messages": self.held_by_model[m]} for m, n in self.by_model.most_common()}


def tally(store: SessionStore) -> Tally:
    """Every session's numbers summed; without bytes where the server cannot say them."""
    total = Tally()
    try:
        for info in store.infos(memory=True):
            total.add(info)
    except StoreError as exc:
        if "unknown command" not in str(exc).lower():
            raise
        total = Tally(bytes=None)
        for info in store.infos():
            total.add(info)
    io = SyncTransport(store)
    total.record = bound_record(io)
    if total.record is not None:
        total.lag = lag(io)
    return total


@click.command(short_help="Count the sessions, their messages and the memory they use.")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
@click.option(
    "--tenant",
    is_flag=True,
    help="The prefix's tenant ledgers instead (tenant_quota): sessions, bytes of message bodies, limits.",
)
@click.pass_obj
def stats(settings: Settings, as_json: bool, tenant: bool) -> None:
    """Sessions, messages held and ever appended, bytes in Redis (MEMORY USAGE of each session's
    keys), how many expire, and the same per model; with a backing record, the write-behind
    backlog (sessions and messages not yet in the record, and the age of the oldest).

    With --tenant: what the prefix's tenant ledgers count (kept by stores made with
    tenant_quota; expired sessions are swept out first), with the limits Redis last enforced."""
    if tenant:
        with connect(settings) as store:
            usage = store.tenant_usage()
        _tenant(usage, as_json)
        return
    with collecting_no_garbage(), connect(settings) as store:
        total = tally(store)
    if as_json:
        emit_json(_json(settings, total))
        return
    from rich.text import Text  # not for --json

    console = make_console()
    n = total.sessions
    size = "unknown (the server has no MEMORY USAGE)"
    if total.bytes is not None:
        size = f"{size_text(total.bytes)} ({total.bytes:,} bytes)"
    lines = [
        ("sessions", f"{n:,}"),
        *_write_behind(total),
        ("messages", f"{total.messages:,} held, {total.appended:,} appended"),
        ("per session", f"{total.messages / n:,.1f} messages" if n else "-"),
        ("in Redis", size),
        ("expiring", f"{total.expiring:,} (the rest never expire)"),
        ("updated", f"{when(total.oldest)} .. {when(total.newest)}"),
    ]
    for label, value in lines:
        console.print(Text.assemble((f"{label:<12} ", "bold"), value))
    models = total.models()
    if models:
        console.print(Text("by model", style="bold"))
    width = max((len(model or "-") for model in models), default=0)
    for model, counts in models.items():
        line = f"{counts['sessions']:>9,} session(s) {counts['messages']:>11,} message(s)"
        console.print(Text.assemble("  ", ((model or "-").ljust(width), "cyan"), line))


def _tenant(usage: TenantUsage, as_json: bool) -> None:
    """``stats --tenant``: the ledgers' sums and the limits, as lines or one JSON object."""
    if as_json:
        emit_json(dataclasses.asdict(usage))
        return

    def limit(value: int | None, used: int) -> str:
        return "no limit" if value is None else f"of {value:,} ({100 * used / value if value else 100:.0f} %)"

    lines = [
        ("tenant", usage.prefix),
        ("sessions", f"{usage.sessions:,} {limit(usage.max_sessions, usage.sessions)}"),
        ("bytes", f"{usage.bytes:,} {limit(usage.max_bytes, usage.bytes)} of message bodies"),
    ]
    if usage.granted_sessions is not None:
        lines.append(
            ("granted", f"{usage.granted_sessions:,} sessions, {usage.granted_bytes:,} bytes to the slots")
        )
    from rich.text import Text

    console = make_console()
    for label, value in lines:
        console.print(Text.assemble((f"{label:<12} ", "bold"), value))


def _write_behind(total: Tally) -> list[tuple[str, str]]:
    """The write-behind line: only where a prefix is bound to a backing record."""
    if total.record is None:
        return []
    lag = total.lag
    behind = f"{lag.sessions:,} session(s), {lag.messages:,} message(s), oldest {lag.seconds:.1f} s"
    return [("write-behind", f"record {total.record}; backlog {behind}")]


def _json(settings: Settings, total: Tally) -> dict[str, Any]:
    return {
        "record": total.record,
        "backlog": None if total.record is None else total.lag._asdict(),
        "prefix": settings.prefix,
        "sessions": total.sessions,
        "messages": total.messages,
        "appended": total.appended,
        "bytes": total.bytes,
        "expiring": total.expiring,
        "oldest_update": total.oldest,
        "newest_update": total.newest,
        "models": total.models(),
    }
