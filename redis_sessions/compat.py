"""Workarounds for redis-py, quarantined: each names the versions it is for, and a test in
``tests/unit/test_compat.py`` fails once the installed redis-py no longer needs it (or is outside
the versions it was checked against), so that it is re-examined rather than carried on forever.
"""

from __future__ import annotations

import os
from typing import Any, Final

import redis

__all__ = ["CHECKED_UP_TO", "REDIS_PY", "driver_fault", "turn_off_client_retry"]

REDIS_PY: Final = tuple(int(part) for part in redis.__version__.split(".")[:2] if part.isdigit())
"""The installed redis-py as (major, minor)."""

CHECKED_UP_TO: Final = (8, 2)
"""The newest redis-py these workarounds were checked against (``tests/unit/test_compat.py``)."""

_CONNECTION_MODULES: Final = (
    os.path.join("redis", "connection.py"),
    os.path.join("redis", "asyncio", "connection.py"),
)


def turn_off_client_retry(client: Any, off: Any) -> None:
    """Give ``client`` (a Redis or RedisCluster, sync or asyncio) the ``off`` retry (no retries).

    redis-py 8.1 and 8.2: the synchronous ``set_retry`` fails on a ``BlockingConnectionPool`` (it
    walks a list that pool does not have); such a pool then gets the setting for the connections it
    makes from now on, and the ones it has already get it directly.
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

    redis-py 8.1 and 8.2: the asyncio cluster client sometimes sends on a connection whose stream
    another task has just reset, when many tasks make their first calls at once (``'NoneType'
    object has no attribute 'writelines'``; redis-py #3546 is a sibling). The connection is broken,
    not the call: the stores treat this as a connection error, which their retry policy handles.
    """
    if not isinstance(error, AttributeError | TypeError):
        return False
    tb = error.__traceback__
    while tb is not None and tb.tb_next is not None:
        tb = tb.tb_next
    return tb is not None and tb.tb_frame.f_code.co_filename.endswith(_CONNECTION_MODULES)
