"""``open_client``: the clients a store makes for itself (``from_url``, ``from_cluster``,
``from_sentinel``), in one place.

The store calls it once when it is built; the asyncio store calls it again for every other event
loop it is used from (``_loops.LoopClients``), since a ``redis.asyncio`` client's connections
belong to the loop they were opened in. So the opening must be repeatable from the opener's name
and arguments alone. This module is the source of ``_open.py`` (``python tools/unasync.py``).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from redis.asyncio import BlockingConnectionPool, Redis
from redis.asyncio.cluster import RedisCluster
from redis.asyncio.sentinel import Sentinel

from .config import CLIENT_DEFAULTS

__all__ = ["Opened", "open_client"]

Opened = tuple[Any, tuple[Any, ...]]
"""A client, and every object of it the store must close (the client, a sentinel's connections)."""


def open_client(opener: str, args: Sequence[Any], options: dict[str, Any]) -> Opened:
    """A new client as ``AsyncSessionStore.<opener>(*args)`` makes it, with redis-py ``options``.

    ``from_url``: a blocking pool (callers beyond ``max_connections`` wait their turn instead of
    failing). ``from_cluster``: a ``RedisCluster`` found through one node. ``from_sentinel``: the
    primary a ``Sentinel`` names; ``sentinel_kwargs`` configures the connections to the sentinels.
    """
    if opener == "from_url":
        (url,) = args
        client = Redis.from_pool(BlockingConnectionPool.from_url(url, **options))
        return client, (client,)
    if opener == "from_cluster":
        (url,) = args
        cluster = RedisCluster.from_url(url, **options)
        return cluster, (cluster,)
    sentinels, service_name = args
    options = dict(options)
    sentinel_kwargs = {**CLIENT_DEFAULTS, **options.pop("sentinel_kwargs", {})}
    sentinel = Sentinel(sentinels, sentinel_kwargs=sentinel_kwargs, **options)  # type: ignore[no-untyped-call, unused-ignore]
    primary = sentinel.master_for(service_name)  # type: ignore[no-untyped-call, unused-ignore]
    return primary, (primary, *sentinel.sentinels)
