"""``make_room``: room in a tenant's ledger for a ``SessionStore``'s writes, and its usage.

GENERATED from ``_aio_quota.py`` by ``python tools/unasync.py``: do not edit; edit the source and
regenerate. See the source's docstring.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from typing import Any

from . import _ledger as ledgers
from ._calls import Call
from ._core import StoreCore
from .errors import TenantQuotaExceeded
from .keys import tenant_keys
from .tenant import TenantUsage

__all__ = ["make_room", "tenant_usage"]

Run = Callable[[Call[Any]], Any]


def make_room(run: Run, core: StoreCore, refusal: TenantQuotaExceeded) -> None:
    """Room for the write ``refusal`` turned away, or ``TenantQuotaExceeded`` when the tenant's
    limit leaves none (on one server: the refusal itself, once the allowance is the limit)."""
    assert core.tenant is not None
    sid = refusal.session_id
    assert sid is not None  # the refusal of a session's write names the session
    ledger = tenant_keys(core.prefix, sid, core.cluster)
    dead = run(ledgers.expired(core, ledger, sid))
    if not core.cluster:
        run(ledgers.sweep(core, ledger, dead, "set", core.tenant.limits(), sid))
        quota = core.tenant.max_sessions if refusal.limit == "max_sessions" else core.tenant.max_bytes
        if not dead and refusal.quota == quota:
            raise refusal  # refused by the limit itself, and nothing expired
        return
    swept = run(ledgers.sweep(core, ledger, dead, "return", (0, 0), sid))
    want = (1, 0) if refusal.limit == "max_sessions" else (0, refusal.size - refusal.usage)
    back = (swept.back_sessions, swept.back_bytes)
    try:
        more = run(ledgers.grant(core, sid, back, want))
    except TenantQuotaExceeded:  # at the limit: take back what other slots hold idle, ask once more
        more = run(ledgers.grant(core, sid, _reclaim(run, core, sid), want))
    run(ledgers.sweep(core, ledger, (), "credit", more, sid))


def _reclaim(run: Run, core: StoreCore, sid: uuid.UUID) -> tuple[int, int]:
    """On a cluster at its limit: every ledger swept and its idle allowance given back (one
    pipelined read of all ledgers, then one script per ledger that holds any); what came back."""
    back = [0, 0]
    for ledger, dead in run(ledgers.idle(core)):
        swept = run(ledgers.sweep(core, ledger, dead, "return", (0, 0), sid))
        back[0] += swept.back_sessions
        back[1] += swept.back_bytes
    return back[0], back[1]


def tenant_usage(run: Run, core: StoreCore) -> TenantUsage:
    """The tenant's live sessions and bytes, every ledger swept first."""
    for ledger, dead in run(ledgers.candidates(core)):
        run(ledgers.sweep(core, ledger, dead, "read", (0, 0), uuid.UUID(dead[0])))
    found: ledgers.Counts = run(ledgers.counts(core))
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
