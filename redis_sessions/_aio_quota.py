"""Room in a tenant's ledger (``tenant_quota``): what the transport does when a script answers that
the ledger of a session's slot has none (``Status.TENANT``), and the sums ``tenant_usage`` reports.

A ledger's allowance starts at 0, so the first write to it asks here. The sessions of the ledger
whose deadline has passed are swept first (the expired ones stop counting). Then, on one server,
the allowance becomes the limit itself: one ledger, an exact check, and the write is tried again.
On a cluster a slot gives back what its allowance holds beyond its usage and asks the central count
for what it lacks (with some to spare); granted, it is credited to the slot and the write tried
again. Refused, every slot's idle allowance is taken back (a read of all ledgers: paid only at the
limit) and the grant asked once more; refused again, its ``TenantQuotaExceeded`` is the answer.
What the slots were granted in all never passes the limit, so neither does the tenant's usage.
"""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable
from typing import Any

from . import _ledger as ledgers
from ._calls import Call
from ._core import StoreCore
from .errors import TenantQuotaExceeded
from .keys import tenant_keys
from .tenant import TenantUsage

__all__ = ["make_room", "tenant_usage"]

Run = Callable[[Call[Any]], Awaitable[Any]]


async def make_room(run: Run, core: StoreCore, refusal: TenantQuotaExceeded) -> None:
    """Room for the write ``refusal`` turned away, or ``TenantQuotaExceeded`` when the tenant's
    limit leaves none (on one server: the refusal itself, once the allowance is the limit)."""
    assert core.tenant is not None
    sid = refusal.session_id
    assert sid is not None  # the refusal of a session's write names the session
    ledger = tenant_keys(core.prefix, sid, core.cluster)
    dead = await run(ledgers.expired(core, ledger, sid))
    if not core.cluster:
        await run(ledgers.sweep(core, ledger, dead, "set", core.tenant.limits(), sid))
        quota = core.tenant.max_sessions if refusal.limit == "max_sessions" else core.tenant.max_bytes
        if not dead and refusal.quota == quota:
            raise refusal  # refused by the limit itself, and nothing expired
        return
    swept = await run(ledgers.sweep(core, ledger, dead, "return", (0, 0), sid))
    want = (1, 0) if refusal.limit == "max_sessions" else (0, refusal.size - refusal.usage)
    back = (swept.back_sessions, swept.back_bytes)
    try:
        more = await run(ledgers.grant(core, sid, back, want))
    except TenantQuotaExceeded:  # at the limit: take back what other slots hold idle, ask once more
        more = await run(ledgers.grant(core, sid, await _reclaim(run, core, sid), want))
    await run(ledgers.sweep(core, ledger, (), "credit", more, sid))


async def _reclaim(run: Run, core: StoreCore, sid: uuid.UUID) -> tuple[int, int]:
    """On a cluster at its limit: every ledger swept and its idle allowance given back (one
    pipelined read of all ledgers, then one script per ledger that holds any); what came back."""
    back = [0, 0]
    for ledger, dead in await run(ledgers.idle(core)):
        swept = await run(ledgers.sweep(core, ledger, dead, "return", (0, 0), sid))
        back[0] += swept.back_sessions
        back[1] += swept.back_bytes
    return back[0], back[1]


async def tenant_usage(run: Run, core: StoreCore) -> TenantUsage:
    """The tenant's live sessions and bytes, every ledger swept first."""
    for ledger, dead in await run(ledgers.candidates(core)):
        await run(ledgers.sweep(core, ledger, dead, "read", (0, 0), uuid.UUID(dead[0])))
    found: ledgers.Counts = await run(ledgers.counts(core))
    quota = core.tenant  # this store's limits; without any, those Redis last enforced
    return TenantUsage(
        core.prefix,
        found.sessions,
        found.bytes,
        found.max_sessions if quota is None else quota.max_sessions,
        found.max_bytes if quota is None else quota.max_bytes,
        found.granted_sessions,
        found.granted_bytes,
    )
