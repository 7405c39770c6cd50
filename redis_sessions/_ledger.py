"""Sans-IO calls of the tenant ledgers (``tenant_quota``; ``redis_sessions.tenant``): the sessions
whose deadline passed, the sweep that drops the expired ones and sets, gives back or credits a
ledger's allowance (``tenant.lua``), a cluster's central grant, and the reads ``tenant_usage`` sums.
The scripts that create, append, trim, pop, restore, fork and delete keep the ledgers themselves
(``_preamble.lua``'s ``tenant_of`` / ``tenant_room`` / ``tenant_record`` / ``tenant_forget``).
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Sequence
from typing import Any, NamedTuple

from ._calls import Command, Pipeline, Script
from ._core import StoreCore
from ._protocol import OK
from .keys import session_keys, tenant_central, tenant_ledgers

__all__ = ["Counts", "Ledger", "candidates", "counts", "expired", "grant", "idle", "sweep"]

SWEEP = 500
"""Sessions past their deadline looked at per sweep (a sweep with more leaves the rest to the next)."""


class Ledger(NamedTuple):
    """A ledger after a sweep: what it counts, what it may hold, what it gave back."""

    sessions: int
    bytes: int
    allow_sessions: int
    allow_bytes: int
    back_sessions: int
    back_bytes: int


def expired(core: StoreCore, ledger: tuple[str, str], sid: uuid.UUID | None = None) -> Command[list[str]]:
    """The ids of the sessions in ``ledger`` whose deadline has passed (by this clock: the sweep
    checks each against the server's)."""
    now = int(time.time() * 1000)
    args = ("ZRANGEBYSCORE", ledger[1], "-inf", now, "LIMIT", 0, SWEEP)
    return Command("tenant", sid, ledger, args, lambda r: [x.decode() for x in r])


def sweep(
    core: StoreCore,
    ledger: tuple[str, str],
    sids: Sequence[str],
    mode: str,
    more: tuple[int, int] = (0, 0),
    sid: uuid.UUID | None = None,
) -> Script[Ledger]:
    """``tenant.lua`` on ``ledger``: the sessions ``sids`` out if they are gone; then ``mode``:
    'read', 'set' (the allowance is ``more``), 'return' (give back the idle allowance), 'credit'."""
    metas = tuple(session_keys(core.prefix, uuid.UUID(s)).meta for s in sids)

    def parse(reply: list[Any]) -> Ledger:
        return Ledger(*(int(n) for n in reply[1:7]))

    return Script("tenant", sid, "tenant", (*ledger, *metas), (mode, *more), parse)


def grant(
    core: StoreCore, sid: uuid.UUID, back: tuple[int, int], want: tuple[int, int]
) -> Script[tuple[int, int]]:
    """On a cluster, room from the prefix's central count: what a slot gave ``back`` returns to it,
    then ``want`` (and some to spare) is granted, never past the limits; ``TenantQuotaExceeded``
    (naming ``sid``, the session that asked) when a limit leaves no room."""
    assert core.tenant is not None
    limits = core.tenant.limits()
    spare = tuple(max(limit // 256, 0) for limit in limits)

    def parse(reply: list[Any]) -> tuple[int, int]:
        if reply[0] != OK:
            core.check(sid, reply)
        return int(reply[1]), int(reply[2])

    args = ("grant", *back, *want, *limits, *spare)
    return Script("tenant", sid, "tenant", (tenant_central(core.prefix),), args, parse)


class Counts(NamedTuple):
    """A tenant's ledgers summed, and its limits as Redis last enforced them (``None``: none, or
    never asked), and on a cluster what its slots were granted."""

    sessions: int
    bytes: int
    max_sessions: int | None
    max_bytes: int | None
    granted_sessions: int | None
    granted_bytes: int | None


def counts(core: StoreCore) -> Pipeline[Counts]:
    """Sessions and bytes summed over every ledger of the prefix (swept first: ``expired`` and
    ``sweep``), the limits last enforced (one server: the ledger's allowance is the limit; a
    cluster: the central count keeps them) and what a cluster granted; one pipelined round trip."""
    ledgers = tenant_ledgers(core.prefix, core.cluster)
    reads: list[tuple[Any, ...]] = []
    for ledger, live in ledgers:
        reads += [("ZCARD", live), ("HGET", ledger, "bytes")]
    if core.cluster:
        reads.append(("HMGET", tenant_central(core.prefix), "max_sessions", "max_bytes", "sessions", "bytes"))
    else:
        reads.append(("HMGET", ledgers[0][0], "allow_sessions", "allow_bytes"))

    def parse(replies: list[Any]) -> Counts:
        n = 2 * len(ledgers)
        sessions = sum(int(r) for r in replies[0:n:2])
        total = sum(int(r or 0) for r in replies[1:n:2])
        most_sessions, most_bytes = (
            None if raw is None or int(raw) < 0 else int(raw) for raw in replies[n][:2]
        )
        if not core.cluster:
            return Counts(sessions, total, most_sessions, most_bytes, None, None)
        granted = replies[n][2:]
        return Counts(sessions, total, most_sessions, most_bytes, int(granted[0] or 0), int(granted[1] or 0))

    return Pipeline("tenant", None, tuple(reads), parse)


def candidates(core: StoreCore) -> Pipeline[list[tuple[tuple[str, str], list[str]]]]:
    """Each ledger of the prefix with the sessions whose deadline passed (those with any)."""
    ledgers = tenant_ledgers(core.prefix, core.cluster)
    now = int(time.time() * 1000)
    reads = tuple(("ZRANGEBYSCORE", live, "-inf", now, "LIMIT", 0, SWEEP) for _, live in ledgers)

    def parse(replies: list[Any]) -> list[tuple[tuple[str, str], list[str]]]:
        return [(ledger, [x.decode() for x in r]) for ledger, r in zip(ledgers, replies, strict=True) if r]

    return Pipeline("tenant", None, reads, parse)


def idle(core: StoreCore) -> Pipeline[list[tuple[tuple[str, str], list[str]]]]:
    """Each ledger of the prefix that holds allowance beyond its usage or sessions past their
    deadline, with the latter (one pipelined round trip over all ledgers: a cluster at its limit)."""
    ledgers = tenant_ledgers(core.prefix, core.cluster)
    now = int(time.time() * 1000)
    reads: list[tuple[Any, ...]] = []
    for ledger, live in ledgers:
        reads += [
            ("ZCARD", live),
            ("HMGET", ledger, "bytes", "allow_sessions", "allow_bytes"),
            ("ZRANGEBYSCORE", live, "-inf", now, "LIMIT", 0, SWEEP),
        ]

    def parse(replies: list[Any]) -> list[tuple[tuple[str, str], list[str]]]:
        found = []
        for i, ledger in enumerate(ledgers):
            sessions, (used, allow_sessions, allow_bytes), dead = replies[3 * i : 3 * i + 3]
            spare = int(allow_sessions or 0) > int(sessions) or int(allow_bytes or 0) > int(used or 0)
            if spare or dead:
                found.append((ledger, [x.decode() for x in dead]))
        return found

    return Pipeline("tenant", None, tuple(reads), parse)
