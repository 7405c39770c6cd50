"""The one retry layer: a bounded tenacity policy for transport errors only.

redis-py retries every command by default (EVALSHA included); the stores turn that off on the clients
they are given, so a fault is retried here, once, by one policy. (``driver_fault``,
``broken_connection`` and ``turn_off_client_retry`` are redis-py workarounds: they live in
``compat``, re-exported here.)
Retrying is safe because every write is idempotent: appends carry message ids, ``create`` carries a
token, the rest set or delete values.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

import redis.asyncio.retry
import redis.exceptions
import redis.retry
import tenacity
from redis.backoff import NoBackoff

from .compat import broken_connection, driver_fault, turn_off_client_retry
from .errors import InvalidArgument

__all__ = [
    "ASYNC_NO_CLIENT_RETRY",
    "NO_CLIENT_RETRY",
    "REFUSED",
    "TRANSIENT",
    "RetryPolicy",
    "broken_connection",
    "driver_fault",
    "turn_off_client_retry",
]

TRANSIENT: Final = (
    redis.exceptions.ConnectionError,
    redis.exceptions.TimeoutError,
    redis.exceptions.ClusterDownError,
    redis.exceptions.TryAgainError,
    redis.exceptions.SlotNotCoveredError,
)
"""What is worth another try: the connection broke or timed out (includes BusyLoadingError), or a
Redis Cluster is between owners of a slot (CLUSTERDOWN, TRYAGAIN, an uncovered slot) during a
failover or resharding. MOVED and ASK never get here: the cluster client follows them itself."""

REFUSED: Final = (redis.exceptions.AuthenticationError, redis.exceptions.AuthorizationError)
"""Connection errors that another try cannot mend: wrong credentials or missing permissions."""

NO_CLIENT_RETRY: Final = redis.retry.Retry(NoBackoff(), 0)
"""Given to redis-py clients so that they do not retry underneath our policy."""
ASYNC_NO_CLIENT_RETRY: Final = redis.asyncio.retry.Retry(NoBackoff(), 0)
"""The same for ``redis.asyncio`` clients."""


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """How often and how patiently to retry a call whose connection failed.

    ``attempts`` counts the first try; waits grow exponentially from ``initial`` seconds up to
    ``max_wait``, each with up to ``jitter`` seconds of random spread so that many clients do not
    retry in lockstep after a shared fault.
    """

    attempts: int = 4
    initial: float = 0.05
    max_wait: float = 1.0
    jitter: float = 0.05

    def __post_init__(self) -> None:
        if self.attempts < 1:
            raise InvalidArgument(f"attempts must be at least 1, got {self.attempts}")

    def _options(self) -> dict[str, object]:
        return {
            "stop": tenacity.stop_after_attempt(self.attempts),
            "wait": tenacity.wait_exponential(multiplier=self.initial, max=self.max_wait)
            + tenacity.wait_random(0, self.jitter),
            "retry": tenacity.retry_if_exception_type(TRANSIENT)
            & tenacity.retry_if_not_exception_type(REFUSED),
            "reraise": True,
        }

    def retrying(self) -> tenacity.Retrying:
        """A fresh tenacity controller for one call."""
        return tenacity.Retrying(**self._options())  # type: ignore[arg-type]

    def async_retrying(self) -> tenacity.AsyncRetrying:
        """A fresh tenacity controller for one call on an event loop."""
        return tenacity.AsyncRetrying(**self._options())  # type: ignore[arg-type]
