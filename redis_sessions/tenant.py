"""``TenantQuota``: limits on a tenant's sessions and bytes, and ``TenantUsage``, what it holds.

The tenant is the key prefix: the unit a store, an ACL key pattern and ``redis-sessions stats``
already work on, and one a session cannot leave (a metadata field could be changed by
``set_metadata``). A store made with ``tenant_quota=TenantQuota(...)`` keeps, in the scripts that
create, append, trim, pop, restore, fork and delete, a *ledger* of the prefix's sessions and their
stored bytes: one on a single server, one per slot on a Redis Cluster (a script touches one slot).
See ``docs/store.md`` (Quotas) for what it guarantees on each.
"""

from __future__ import annotations

import dataclasses

from .errors import InvalidArgument

__all__ = ["TenantQuota", "TenantUsage"]


@dataclasses.dataclass(frozen=True, kw_only=True)
class TenantQuota:
    """The most sessions (``max_sessions``) and bytes of stored message bodies (``max_bytes``) the
    store's prefix may hold; ``None``: that one is not limited (but still counted)."""

    max_sessions: int | None = None
    max_bytes: int | None = None

    def __post_init__(self) -> None:
        for name in ("max_sessions", "max_bytes"):
            value = getattr(self, name)
            if value is not None and (type(value) is not int or value < 0):
                raise InvalidArgument(f"TenantQuota.{name} must be an int >= 0 or None, got {value!r}")

    def limits(self) -> tuple[int, int]:
        """The limits as the scripts take them (-1: none)."""
        return (
            -1 if self.max_sessions is None else self.max_sessions,
            -1 if self.max_bytes is None else self.max_bytes,
        )


@dataclasses.dataclass(frozen=True)
class TenantUsage:
    """What a tenant (``prefix``) holds: its live sessions and the bytes of their stored message
    bodies, summed over its ledgers after expired sessions are swept out; its limits (the asking
    store's ``tenant_quota``, or for a store without one those Redis last enforced; ``None``: none
    known); ``granted_*`` (a cluster only: what its slots may hold in all, at most the limits;
    ``None`` on one server)."""

    prefix: str
    sessions: int
    bytes: int
    max_sessions: int | None = None
    max_bytes: int | None = None
    granted_sessions: int | None = None
    granted_bytes: int | None = None
