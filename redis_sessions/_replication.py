"""The optional durability knob: after a write, ``WAIT`` until replicas confirm it.

Redis replicates asynchronously: a write is acknowledged once the primary has it, and a failover
that promotes a replica which had not yet received it loses it, on Sentinel and Cluster alike.
With ``wait_replicas=n`` the stores send each write script and a ``WAIT n timeout`` together, on one
connection (``WAIT`` counts the replicas that have every write of *its* connection), and raise
``NotReplicated`` when fewer than ``n`` confirmed in time. ``WAIT`` narrows the window; it does not
make Redis strongly consistent (a replica may still be promoted before it applied what it
acknowledged receiving, and nothing is fsynced unless the servers are configured to).
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any, Final, NamedTuple

import redis.exceptions

from ._calls import Call
from ._core import ttl_ms
from .errors import InvalidArgument, NotReplicated

__all__ = ["WRITE_SCRIPTS", "Wait", "Waited", "handover", "wait_for"]

WRITE_SCRIPTS: Final = frozenset(
    {"create", "append", "set_metadata", "delete", "lease", "restore", "sync_mark", "pop", "tool_call"}
    | {"summarize", "fork"}
)
"""The scripts that change a session: the ones a ``WAIT`` follows."""


class Wait(NamedTuple):
    """How many replicas must confirm each write, and how long to wait for them."""

    replicas: int
    timeout_ms: int

    @property
    def command(self) -> tuple[str, int, int]:
        return ("WAIT", self.replicas, self.timeout_ms)

    def check(self, call: Call[Any], acknowledged: int) -> None:
        """``NotReplicated`` unless enough replicas confirmed the call's write."""
        if acknowledged < self.replicas:
            raise NotReplicated(call.op, call.sid, acknowledged, self.replicas, self.timeout_ms)


class Waited(NamedTuple):
    """A write script's reply together with ``WAIT``'s count of replicas that confirmed it."""

    reply: Any
    acknowledged: int


def wait_for(replicas: int, timeout: float | timedelta) -> Wait | None:
    """The knob as the stores take it: ``replicas=0`` (the default) turns it off."""
    if type(replicas) is not int or replicas < 0:
        raise InvalidArgument(f"wait_replicas must be an int >= 0, got {replicas!r}")
    return Wait(replicas, ttl_ms(timeout)) if replicas else None


_DEMOTED: Final = ("UNBLOCKED", "WAIT cannot be used with replica")


def handover(error: Exception) -> Exception:
    """``WAIT``'s error as the stores should see it: a node that stopped being the primary
    while (or before) it waited is a handover in progress, worth another try, not a failure."""
    if isinstance(error, redis.exceptions.ResponseError) and str(error).startswith(_DEMOTED):
        return redis.exceptions.TryAgainError(f"the primary changed during WAIT: {error}")
    return error
