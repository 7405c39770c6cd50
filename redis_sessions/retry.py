"""The one retry layer: a bounded tenacity policy for transport errors only.

redis-py retries every command by default (EVALSHA included); the stores turn that off on the clients
they are given, so a fault is retried here, once, by one policy. Retrying is safe because every write
is idempotent: appends carry message ids, ``create`` carries a token, the rest set or delete values.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any, Final

import redis.asyncio.retry
import redis.exceptions
import redis.retry
import tenacity
from redis.backoff import NoBackoff

from .errors import InvalidArgument

__all__ = [
    "ASYNC_NO_CLIENT_RETRY",
    "NO_CLIENT_RETRY",
    "REFUSED",
    "TRANSIENT",
    "RetryPolicy",
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

_CONNECTION_MODULES: Final = (
    os.path.join("redis", "connection.py"),
    os.path.join("redis", "asyncio", "connection.py"),
)


def turn_off_client_retry(client: Any, off: Any) -> None:
    """Give ``client`` (a Redis or RedisCluster, sync or asyncio) the ``off`` retry (no retries).

    ``set_retry`` of redis-py 8.1 fails on a ``BlockingConnectionPool`` (it walks a list that pool
    does not have); such a pool then gets the setting for the connections it makes from now on.
    """
    if hasattr(client, "get_retry"):
        if client.get_retry() is off:
            return
        try:
            client.set_retry(off)
        except AttributeError:
            client.get_connection_kwargs()["retry"] = off
            for connection in list(getattr(client.connection_pool, "_connections", ())):
                connection.retry = off
    else:  # a cluster client keeps its retry on itself
        client.set_retry(off)


def driver_fault(error: BaseException) -> bool:
    """An ``AttributeError``/``TypeError`` raised inside redis-py's connection code itself.

    redis-py 8.1's asyncio cluster client sometimes sends on a connection whose stream another
    task has just reset, when many tasks make their first calls at once (``'NoneType' object has
    no attribute 'writelines'``; redis-py #3546 is a sibling). The connection is broken, not the
    call: the stores treat this as a connection error, which their retry policy handles.
    """
    if not isinstance(error, AttributeError | TypeError):
        return False
    tb = error.__traceback__
    while tb is not None and tb.tb_next is not None:
        tb = tb.tb_next
    return tb is not None and tb.tb_frame.f_code.co_filename.endswith(_CONNECTION_MODULES)


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
